"""What machine a benchmark ran on: CPU, cores, frequency governor, memory, OS, Python, runtimes.

Standard library only, read from /proc and /sys where Linux has them (a Raspberry Pi included);
anything unreadable is ``None`` rather than guessed. Runtime versions come from the installed
package metadata, so nothing heavy is imported to learn them.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from edgekd import __version__

# packages whose versions decide bench numbers (the runtimes and the array library feeding them)
PACKAGES = ("numpy", "torch", "onnxruntime", "ai-edge-litert", "tflite-runtime")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00 \n")
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name; on ARM boards, which often lack one, the board or CPU part."""
    info = _read("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; a container may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _khz_to_mhz(text: str | None) -> int | None:
    return int(text) // 1000 if text and text.isdigit() else None


def host_info() -> dict[str, Any]:
    cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq"
    host: dict[str, Any] = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        # "performance" keeps the clock fixed; "ondemand"/"schedutil" ramp it up under load, which
        # is one reason for the warm-up runs (None: not exposed, e.g. in most VMs and containers)
        "governor": _read(f"{cpufreq}/scaling_governor"),
        "cpu_max_mhz": _khz_to_mhz(_read(f"{cpufreq}/cpuinfo_max_freq")),
        "board": _read("/proc/device-tree/model"),  # e.g. "Raspberry Pi 4 Model B Rev 1.4"
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "edgekd": __version__,
        "packages": {},
    }
    host["memory_mb"] = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            host["memory_mb"] = int(line.split()[1]) // 1024
    host["load_avg"] = None
    try:
        # other work on the machine at the start: a load near the core count means noisy timings
        host["load_avg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    for dist in PACKAGES:
        try:
            host["packages"][dist] = version(dist)
        except PackageNotFoundError:
            pass
    return host
