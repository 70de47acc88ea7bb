"""The runner interface and the file-name → runner mapping."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError


class RuntimeMissing(EdgekdError):
    """The runtime a format needs is not installed here (a bench row is skipped, not failed)."""


class Runner(ABC):
    """A loaded model file. ``invoke`` is the only thing a latency benchmark should time."""

    format: str  # onnx | pytorch | tflite_fp32 | tflite_int8 | …
    layout: str  # NHWC or NCHW
    runtime: str  # e.g. "onnxruntime 1.32.0"

    def __init__(self, path: Path, threads: int | None) -> None:
        self.path = Path(path)
        self.threads = threads

    @abstractmethod
    def prepare(self, image: np.ndarray) -> Any:
        """One uint8 HWC image → the model's input tensor (batch 1)."""

    @abstractmethod
    def invoke(self, x: Any) -> np.ndarray:
        """Run the model on a prepared input; returns its raw output (batch 1)."""

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        return y.astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Float outputs for uint8 NHWC images, one invoke per image, stacked: (N, …)."""
        return np.stack([self.dequantize(self.invoke(self.prepare(img)))[0] for img in images])

    @property
    def input_details(self) -> dict[str, Any]:
        return {}


def raw_nchw(image: np.ndarray) -> np.ndarray:
    """uint8 HWC → float32 (1, C, H, W) raw pixel values (normalization is folded into the model)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32))


def runner_format(file_name: str) -> str | None:
    """The format a bundle file holds, from its name (None for non-model files)."""
    name = Path(file_name).name
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(".pt"):
        return "pytorch"
    if name.endswith(".tflite"):
        stem = Path(name).stem
        return "tflite_" + stem.rsplit("_", 1)[1] if "_" in stem else "tflite"
    return None


def _loaders() -> dict[str, Callable[[Path, int | None], Runner]]:
    from edgekd.runtimes.onnx_runner import OnnxRunner
    from edgekd.runtimes.tflite_runner import TFLiteRunner
    from edgekd.runtimes.torch_runner import TorchRunner

    return {"onnx": OnnxRunner, "pytorch": TorchRunner, "tflite": TFLiteRunner}


def open_runner(path: str | Path, threads: int | None = None) -> Runner:
    """A runner for a model file; raises :class:`RuntimeMissing` if its runtime is absent."""
    path = Path(path)
    fmt = runner_format(path.name)
    if fmt is None:
        raise EdgekdError(f"{path.name} is not a model file (.onnx, .pt or .tflite)")
    if not path.is_file():
        raise EdgekdError(f"model file not found: {path}")
    runner = _loaders()[fmt.split("_")[0]](path, threads)
    runner.format = fmt
    return runner
