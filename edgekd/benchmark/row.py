"""One bench row: one model file measured at one thread count. A typed record whose field names
carry their units; ``bench.json`` (``"schema": 2``) is written from it (:meth:`BenchRow.to_dict`)
and the README's "bench.json" section documents each field.

Rows read like the JSON they become (``row["latency_ms"]["p50"]``, ``row.get("tflm")``), so the
report, the plot and callers of :func:`edgekd.bench` treat a live report and a loaded JSON alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SCHEMA = 2  # bench.json's layout: 2 = rows written from BenchRow, with "schema" at the top


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
        None  # failed at: load | eval | run | fit (over the MCU budget) | unsupported (a format the device does not take)
    )
    unsupported: bool | None = (
        None  # True: failed because the target cannot run this model (--allow-unsupported excuses it)
    )
    runtime: str | None = None  # "onnxruntime 1.24.1", "ai-edge-litert 2.3.0", …
    latency_ms: dict[str, float] | None = None  # invoke time, ms: {min, p50, p90, p99, mean, std}
    throughput: float | None = None  # inferences per second at batch 1 (1000 / mean latency_ms)
    spread: float | None = None  # (p90 − p50) / p50
    cv: float | None = None  # std / mean
    noisy: bool | None = None  # spread or cv above the noise thresholds (edgekd.benchmark.stats)
    accuracy: float | None = None  # fraction: top-1 accuracy, or mean IoU for a segmentation bundle
    accuracy_n: int | None = None  # images the accuracy was measured on
    peak_rss_mb: float | None = None  # peak resident memory of the measuring process, MB
    base_rss_mb: float | None = None  # its resident memory before the runtime loaded, MB
    rss_source: str | None = None  # VmHWM (Linux) | ru_maxrss
    gmacs_per_s: float | None = None  # macs / p50 latency, 10⁹ per second
    below_floor: bool | None = None  # accuracy under --min-accuracy (None: no floor given)
    # present only where measured (left out of the JSON when None):
    miou: float | None = None  # segmentation: mean IoU (also in accuracy)
    fg_iou: float | None = None  # segmentation: foreground IoU
    pixel_accuracy: float | None = None  # segmentation: fraction of pixels right
    emulated_ms: dict[str, float] | None = None  # rpi under qemu-user: run times of the emulator, never a latency
    tflm: dict[str, Any] | None = (
        None  # mcu: ops_supported, arena_bytes, flash_bytes, est_latency_ms per profile, budget …
    )
    traceback: str | None = None  # a bug in the measuring process
    parity_problems: list[str] | None = None  # why the export's parity check failed (parity_ok false)
    int8_slower: bool | None = None  # a tflite_int8 row slower (p50) than the same model's tflite_fp32 row
    int8_unaccelerated_ops: list[str] | None = (
        None  # with int8_slower: ops the runtime's delegate leaves to plain kernels
    )

    OPTIONAL = (
        "miou",
        "fg_iou",
        "pixel_accuracy",
        "emulated_ms",
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
