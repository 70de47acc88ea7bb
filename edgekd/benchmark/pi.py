"""What a Raspberry Pi bench needs to know about the board: its model, clocks, temperature and
whether the firmware throttled it during the run. Standard library only (runs on the Pi).

``vcgencmd`` (Raspberry Pi OS) is asked first; without it the kernel's /sys/class/thermal and
cpufreq files are read. ``root`` lets the tests point these readers at a fake tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

# `vcgencmd get_throttled` bits (Raspberry Pi firmware): 0–3 are the state now, 16–19 the same
# conditions latched since boot
THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm frequency capped",
    2: "throttled",
    3: "soft temperature limit",
    16: "under-voltage occurred",
    17: "arm frequency capping occurred",
    18: "throttling occurred",
    19: "soft temperature limit occurred",
}
NOW_MASK, LATCHED_MASK = 0xF, 0xF0000
# The Pi 4/5 firmware starts soft throttling at 80 °C (85 °C hard): without vcgencmd a reading this
# high is the sign that clocks were reduced
HOT_C = 80.0


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_text(errors="replace").strip("\x00 \n")
    except OSError:
        return None


def board_model(root: str | Path = "/") -> str | None:
    """e.g. "Raspberry Pi 4 Model B Rev 1.4" (device tree); None where there is no device tree."""
    return _read(Path(root), "proc/device-tree/model")


def is_raspberry_pi(root: str | Path = "/") -> bool:
    return (board_model(root) or "").startswith("Raspberry Pi")


def _vcgencmd(*args: str) -> str | None:
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _mhz(khz: str | None) -> float | None:
    return int(khz) / 1000 if khz and khz.isdigit() else None


def snapshot(root: str | Path = "/") -> dict[str, Any]:
    """Temperature, clocks and throttle state now."""
    root = Path(root)
    cpufreq = "sys/devices/system/cpu/cpu0/cpufreq"
    state: dict[str, Any] = {
        "source": "sysfs",
        "temp_c": None,
        "freq_mhz": _mhz(_read(root, f"{cpufreq}/scaling_cur_freq")),
        "max_mhz": _mhz(_read(root, f"{cpufreq}/scaling_max_freq")),
        "hw_max_mhz": _mhz(_read(root, f"{cpufreq}/cpuinfo_max_freq")),
        "governor": _read(root, f"{cpufreq}/scaling_governor"),
        "throttled": None,  # the get_throttled word, where vcgencmd exists
        "throttled_flags": [],
    }
    milli = _read(root, "sys/class/thermal/thermal_zone0/temp")
    if milli and milli.lstrip("-").isdigit():
        state["temp_c"] = int(milli) / 1000
    temp = _vcgencmd("measure_temp")  # temp=48.3'C
    if temp and "=" in temp:
        try:
            state["temp_c"] = float(temp.split("=", 1)[1].split("'")[0])
            state["source"] = "vcgencmd"
        except ValueError:
            pass
    word = _vcgencmd("get_throttled")  # throttled=0x50000
    if word and "=" in word:
        try:
            value = int(word.split("=", 1)[1], 16)
        except ValueError:
            value = None
        if value is not None:
            state["throttled"] = hex(value)
            state["throttled_flags"] = [name for bit, name in THROTTLE_BITS.items() if value >> bit & 1]
            state["source"] = "vcgencmd"
    clock = _vcgencmd("measure_clock", "arm")  # frequency(48)=1500398464
    if clock and "=" in clock and clock.split("=", 1)[1].isdigit():
        state["freq_mhz"] = int(clock.split("=", 1)[1]) / 1e6
    return state


def throttle_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Warnings when the run was (or may have been) throttled: firmware flags set now or newly
    latched during the run, a capped clock, or a temperature at the firmware's throttle point."""
    out = []
    b_word = int(before["throttled"], 16) if before.get("throttled") else 0
    a_word = int(after["throttled"], 16) if after.get("throttled") else 0
    new = [THROTTLE_BITS[bit] for bit in THROTTLE_BITS if (a_word & ~b_word) >> bit & 1 and 1 << bit & LATCHED_MASK]
    now = [THROTTLE_BITS[bit] for bit in THROTTLE_BITS if a_word >> bit & 1 and 1 << bit & NOW_MASK]
    if now or new:
        out.append(
            f"THROTTLED during the bench ({', '.join(now + new)}; get_throttled {after['throttled']}): latencies are "
            "pessimistic; cool the board (heatsink/fan) or fix the power supply and rerun"
        )
    temp = after.get("temp_c")
    if temp is not None and temp >= HOT_C and not (now or new):
        out.append(
            f"SoC at {temp:.1f} °C after the bench (throttling starts at {HOT_C:.0f} °C): latencies may be throttled; "
            "add cooling and rerun"
        )
    if after.get("max_mhz") and after.get("hw_max_mhz") and after["max_mhz"] < after["hw_max_mhz"]:
        out.append(
            f"CPU clock capped at {after['max_mhz']:.0f} MHz of {after['hw_max_mhz']:.0f} MHz (scaling_max_freq)"
        )
    return out


def emulation() -> str | None:
    """Set by deploy/arm64-emu's launcher: this "Pi" is qemu-user on another CPU, so times are not latencies."""
    return os.environ.get("EDGEKD_EMULATION") or None
