"""TensorFlow Lite Micro on this host (the ``tflite-micro`` package): the interpreter a
microcontroller runs, with its reference kernels. Does every op have a TFLM kernel, how much tensor
arena does the model really use, what do TFLM's kernels compute.

The arena offered grows until the model fits (usage does not depend on the offer, only fit does).
TFLM on x86 runs reference kernels: its run times say nothing about a Cortex-M, so the MCU bench
times nothing here (latency is estimated by :mod:`edgekd.mcu.estimate`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.fdcapture import captured_fds
from edgekd.runtimes.base import Runner, RuntimeMissing

# print_allocations() (RecordingMicroAllocator) → "Arena allocation total 55984 bytes"
_ARENA = re.compile(r"Arena allocation total (\d+) bytes")
_MISSING = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'(?: version '(\d+)')?")
_FIRST_ARENA = 1 << 20  # bytes offered at first; usage does not depend on the offer, only fit does
_MAX_ARENA = 256 << 20


class TflmUnsupported(EdgekdError):
    """TFLite Micro cannot prepare the model (an op without a kernel, an op version it lacks)."""


def tflm_version() -> str:
    from importlib.metadata import version

    return f"tflite-micro {version('tflite-micro')}"


def open_interpreter(path: Path) -> tuple[Any, str]:
    """(TFLM interpreter, what TFLM logged while preparing it), offering a bigger arena until it fits."""
    from tflite_micro.python.tflite_micro import runtime

    arena = max(_FIRST_ARENA, 20 * path.stat().st_size)
    while True:
        with captured_fds((1, 2)) as log:
            try:
                return runtime.Interpreter.from_file(str(path), arena_size=arena), log.read_text(errors="replace")
            except RuntimeError:
                text = log.read_text(errors="replace")
        missing = _MISSING.search(text)
        if missing:
            op, version = missing.groups()
            raise TflmUnsupported(
                f"TFLite Micro has no kernel for {op}"
                + (f" version {version}" if version else "")
                + f" ({tflm_version()})"
            )
        if arena >= _MAX_ARENA or "arena" not in text.lower():
            lines = [line for line in text.strip().splitlines() if line.strip()] or ["TFLM failed to allocate tensors"]
            raise TflmUnsupported(f"TFLite Micro cannot prepare the model: {lines[-1][:200]}")
        arena *= 4  # the offer was too small for this model


def _quant(details: dict[str, Any]) -> tuple[float, int]:
    q = details["quantization_parameters"]
    return float(q["scales"][0]) if len(q["scales"]) else 0.0, int(q["zero_points"][0]) if len(q["zero_points"]) else 0


class TflmRunner(Runner):
    """An int8 (or float) .tflite file in TFLite Micro. Raises :class:`TflmUnsupported` when TFLM
    cannot prepare it, :class:`RuntimeMissing` when tflite-micro is not installed."""

    layout = "NHWC"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__(path, threads)  # TFLM runs on one core; threads is ignored
        try:
            self.interpreter, _ = open_interpreter(self.path)
        except ImportError:
            raise RuntimeMissing("tflite-micro is not installed (pip install 'edgekd[mcu]')") from None
        self.runtime = tflm_version()
        self.inp, self.out = self.interpreter.get_input_details(0), self.interpreter.get_output_details(0)
        self.shape = [int(v) for v in self.inp["shape"]]
        self.in_scale, self.in_zero = _quant(self.inp)
        self.out_scale, self.out_zero = _quant(self.out)
        self.dtype = np.dtype(self.inp["dtype"])

    def prepare(self, image: np.ndarray) -> np.ndarray:
        x = image[None].astype(np.float32)  # raw pixels, as every edgekd model takes them
        if self.dtype.kind in "iu" and self.in_scale:
            info = np.iinfo(self.dtype)
            x = np.clip(np.round(x / self.in_scale + self.in_zero), info.min, info.max)
        return x.astype(self.dtype).reshape(self.shape)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_input(x, 0)
        self.interpreter.invoke()
        return self.interpreter.get_output(0)

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        return (y.astype(np.float32) - self.out_zero) * self.out_scale if self.out_scale else y.astype(np.float32)

    @property
    def input_details(self) -> dict[str, Any]:
        return {"shape": self.shape, "dtype": self.dtype.name, "layout": self.layout}

    def arena_bytes(self) -> int | None:
        """Tensor arena the model used so far (after an invoke it covers invoke-time buffers)."""
        with captured_fds((1, 2)) as log:
            self.interpreter.print_allocations()
            text = log.read_text(errors="replace")
        arena = _ARENA.search(text)
        return int(arena.group(1)) if arena else None
