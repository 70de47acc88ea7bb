"""One bench row: one model file measured at one thread count. A typed record whose field names
carry their units (``_us`` microseconds, ``_bytes``, ``_per_s``, ``_frac`` a dimensionless ratio:
0.9 = 90 %; counts are named for what they count); ``bench.json`` (``"schema": 3``) is written from
it (:meth:`BenchRow.to_dict`) and the README's "bench.json" section documents each field.

Rows read like the JSON they become (``row["p50_us"]``, ``row.get("tflm")``), so the report, the
plot and callers of :func:`edgekd.bench` treat a live report and a loaded JSON alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# bench.json's layout, which readers check before reading rows: 2 = rows written from BenchRow
# (latency_ms {min, p50, …} in ms, peak_rss_mb, accuracy, throughput); 3 = flat unit-suffixed fields
# (p50_us, peak_rss_bytes, accuracy_frac, throughput_per_s, …)
SCHEMA = 3


def check_schema(report: dict[str, Any], where: str) -> dict[str, Any]:
    """``report`` (a loaded bench.json) when its rows have this edgekd's field names; a report of
    another layout raises ValueError naming both (a schema-2 row has ``latency_ms``, not ``p50_us``)."""
    got = report.get("schema") if isinstance(report, dict) else None
    if got != SCHEMA:
        raise ValueError(
            f"{where} is a bench.json of schema {got!r}, this edgekd reads schema {SCHEMA} (bench the bundle again)"
        )
    return report


LATENCY_FIELDS = ("min_us", "p50_us", "p90_us", "p99_us", "mean_us", "std_us")


@dataclass
class BenchRow:
    model: str  # role: student | teacher | baseline (a lone model file: its stem)
    format: str  # a name from edgekd.formats: pytorch | onnx | tflite_fp32 | tflite_int8 | …
    file: str  # the model file's name in the bundle
    threads: int  # the runtime's thread count for this row
    size_bytes: int | None  # the model file
    macs: int | None  # multiply-accumulates per inference (from the export's summary, or the .tflite file)
    parity_ok: bool | None  # the export's own parity check of this file (None: a lone model)
    status: str | None = None  # ok | skipped | failed
    reason: str | None = None  # why skipped / failed
    stage: str | None = (
        # failed at: load | eval | run | fit (over the MCU budget) | unsupported (a format the device does not take)
        None
    )
    unsupported: bool | None = (
        None  # True: failed because the target cannot run this model (--allow-unsupported excuses it)
    )
    runtime: str | None = None  # "onnxruntime 1.24.1", "ai-edge-litert 2.3.0", …
    # invoke time at batch 1, microseconds (None: not timed, e.g. mcu rows or an emulated Pi)
    min_us: float | None = None
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    mean_us: float | None = None
    std_us: float | None = None
    throughput_per_s: float | None = None  # inferences per second at batch 1 (1e6 / mean_us)
    spread_frac: float | None = None  # (p90 − p50) / p50
    cv_frac: float | None = None  # std / mean
    noisy: bool | None = None  # spread or cv above the noise thresholds (edgekd.benchmark.stats)
    accuracy_frac: float | None = None  # top-1 accuracy, or mean IoU for a segmentation bundle
    accuracy_images: int | None = None  # images the accuracy was measured on
    peak_rss_bytes: int | None = None  # peak resident memory of the measuring process
    base_rss_bytes: int | None = None  # its resident memory before the runtime loaded
    rss_source: str | None = None  # VmHWM (Linux) | ru_maxrss
    gmacs_per_s: float | None = None  # macs / p50 latency, 10⁹ per second
    below_floor: bool | None = None  # accuracy under --min-accuracy (None: no floor given)
    # present only where measured (left out of the JSON when None):
    miou_frac: float | None = None  # segmentation: mean IoU (also in accuracy_frac)
    fg_iou_frac: float | None = None  # segmentation: foreground IoU
    pixel_accuracy_frac: float | None = None  # segmentation: pixels right
    emulated: dict[str, float] | None = (
        None  # rpi under qemu-user: {min_us, p50_us, …} run times of the emulator, never a latency
    )
    tflm: dict[str, Any] | None = (
        None  # mcu: ops_supported, arena_bytes, flash_bytes, accuracy_frac, est_latency_us per profile, budget …
    )
    traceback: str | None = None  # a bug in the measuring process
    parity_problems: list[str] | None = None  # why the export's parity check failed (parity_ok false)
    int8_slower: bool | None = None  # a tflite_int8 row slower (p50) than the same model's tflite_fp32 row
    int8_unaccelerated_ops: list[str] | None = (
        None  # with int8_slower: ops the runtime's delegate leaves to plain kernels
    )

    OPTIONAL = (
        "miou_frac",
        "fg_iou_frac",
        "pixel_accuracy_frac",
        "emulated",
        "tflm",
        "traceback",
        "parity_problems",
        "int8_slower",
        "int8_unaccelerated_ops",
    )

    def update(self, result: dict[str, Any]) -> None:
        """Take a measuring process's result; a key that is not a field is a bug, not data to keep."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(result) - names)
        if unknown:
            raise KeyError(f"bench row has no field {unknown[0]!r}")
        for key, value in result.items():
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in self.OPTIONAL:
            if out[key] is None:
                del out[key]
        return out

    # read like the JSON row
    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def keys(self) -> list[str]:
        return list(self.to_dict())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()
