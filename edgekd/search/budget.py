"""The device budget of a search: ``flash_kb=256,ram_kb=128,device=cortex-m7-216mhz,latency_ms=50``.

Every key is optional; a candidate fits when each given limit holds. ``device`` names an MCU profile
(:mod:`edgekd.mcu.profiles`): its flash and RAM become the limits unless given, and ``latency_ms``
is compared with the profile's latency ESTIMATE. Standard library only (the CLI parses the budget
before anything heavy is imported).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.limits import MAX_KB
from edgekd.registry import did_you_mean


class BudgetError(EdgekdError):
    """A budget string that cannot be read, or a value out of range."""


@dataclass(frozen=True)
class Budget:
    flash_kb: float | None = (
        None  # int8 model flatbuffer + TFLite Micro runtime estimate (as `edgekd bench --device mcu`)
    )
    model_kb: float | None = None  # the int8 model flatbuffer alone (MLPerf Tiny's "≤ 100 KB int8")
    ram_kb: float | None = None  # TFLite Micro tensor arena, measured on the int8 model
    device: str | None = None  # MCU profile: default flash/RAM, and the core/clock of latency_ms
    latency_ms: float | None = None  # MCU latency estimate on `device`
    host_ms: float | None = None  # int8 TFLite median latency measured on this host, 1 thread
    # Raspberry Pi int8 latency, ESTIMATED: host_ms × (Pi / host latency of one reference model
    # from a recorded `edgekd bench --device rpi`); the search cannot run candidates on a Pi
    rpi_ms: float | None = None
    macs: float | None = None  # multiply-accumulates of one inference
    params: float | None = None  # parameters

    def limits(self) -> dict[str, float]:
        """{figure name: upper limit} of every limit in force."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "device" and getattr(self, f.name) is not None
        }

    def needs_tflite(self) -> bool:
        """Whether checking this budget needs the int8 TFLite model (flash, arena or latency)."""
        return any(
            getattr(self, k) is not None for k in ("flash_kb", "model_kb", "ram_kb", "latency_ms", "host_ms", "rpi_ms")
        )

    def violations(self, figures: dict[str, Any]) -> list[str]:
        """What ``figures`` (a candidate's measurements) exceed; empty when the candidate fits."""
        over = []
        for key, limit in self.limits().items():
            value = figures.get(key)
            if value is None:
                over.append(f"{key}: not measured")
            elif value > limit:
                over.append(f"{key} {value:,.4g} > {limit:,.4g}")
        return over

    def describe(self) -> str:
        parts = [f"{k}={v:g}" for k, v in self.limits().items()]
        return ",".join(([f"device={self.device}"] if self.device else []) + parts) or "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


KEYS = [f.name for f in dataclasses.fields(Budget)]
# the largest value accepted per key: far above any microcontroller or edge board, so a typo
# (kilobytes given in bytes, say) is caught instead of silently allowing everything
MAXIMA = {
    "flash_kb": MAX_KB,  # as bench's --flash-kb/--ram-kb: 1 GB is no microcontroller
    "model_kb": MAX_KB,
    "ram_kb": MAX_KB,
    "latency_ms": 3.6e6,
    "host_ms": 3.6e6,
    "rpi_ms": 3.6e6,
    "macs": 1e15,
    "params": 1e12,
}
_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9}  # macs=12.5M, params=100k


def _number(key: str, raw: str) -> float:
    text = raw.strip().lower().replace("_", "")
    scale = 1.0
    if key in ("macs", "params") and text and text[-1] in _SUFFIX:
        text, scale = text[:-1], _SUFFIX[text[-1]]
    try:
        value = float(text) * scale
    except ValueError:
        raise BudgetError(f"budget: {key}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"budget: {key} must be a positive number, got {raw!r}")
    if value > MAXIMA[key]:
        raise BudgetError(f"budget: {key}={raw} is above the largest accepted value {MAXIMA[key]:g}")
    return value


def parse_budget(text: str | dict[str, Any] | Budget | None) -> Budget:
    """``"flash_kb=256,ram_kb=128,device=cortex-m7-216mhz,latency_ms=50"`` (or a mapping) → :class:`Budget`."""
    from edgekd.mcu.profiles import PROFILES

    if isinstance(text, Budget):
        return text
    if text is None or text == "":
        return Budget()
    if isinstance(text, str):
        pairs: dict[str, str] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not value.strip():
                raise BudgetError(f"budget: expected KEY=VALUE, got {item.strip()!r} (keys: {', '.join(KEYS)})")
            if key in pairs:
                raise BudgetError(f"budget: {key} given twice")
            pairs[key] = value.strip()
    elif isinstance(text, Mapping):
        pairs = {str(k): str(v) for k, v in text.items() if v is not None}
    else:
        raise BudgetError(f"budget must be KEY=VALUE,… text or a mapping, got {type(text).__name__}")
    values: dict[str, Any] = {}
    for key, raw in pairs.items():
        if key not in KEYS:
            # the one did-you-mean (case ignored: FLASH_KB → flash_kb)
            raise BudgetError(f"budget: unknown key {key!r}{did_you_mean(key, KEYS)} (keys: {', '.join(KEYS)})")
        if key == "device":
            if raw not in PROFILES:
                raise BudgetError(f"budget: {PROFILES.unknown_message(raw)}")
            values[key] = PROFILES.get(raw).name  # a bare core name means its default profile
        else:
            values[key] = _number(key, raw)
    if "latency_ms" in values and "device" not in values:
        raise BudgetError(
            "budget: latency_ms is an MCU estimate and needs device=PROFILE (e.g. device=cortex-m4-120mhz); host_ms is "
            "measured here"
        )
    if "device" in values:  # the profile's memories are the budget unless given
        profile = PROFILES.get(values["device"])
        values.setdefault("flash_kb", float(profile.flash_kb))
        values.setdefault("ram_kb", float(profile.ram_kb))
    return Budget(**values)
