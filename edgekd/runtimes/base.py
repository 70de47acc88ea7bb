"""The runner interface. Which runner opens which format is said by :mod:`edgekd.formats`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.paths import input_file


class RuntimeMissing(EdgekdError):
    """The runtime a format needs is not installed here (a bench row is skipped, not failed)."""


class Runner(ABC):
    """A loaded model file. ``invoke`` is the only thing a latency benchmark should time."""

    format: str  # onnx | pytorch | tflite_fp32 | tflite_int8 | …
    layout: str  # NHWC or NCHW
    runtime: str  # e.g. "onnxruntime 1.32.0"
    # opens files whose architecture the caller names (``arch=``, a PyTorch checkpoint): open_runner
    # passes its ``arch`` only to such runners
    takes_arch: bool = False

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

    @property
    def output_details(self) -> dict[str, Any]:
        return {}


def raw_nchw(image: np.ndarray) -> np.ndarray:
    """uint8 HWC → float32 (1, C, H, W) raw pixel values (normalization is folded into the model)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32))


def open_runner(
    path: str | Path,
    threads: int | None = None,
    format: str | None = None,  # noqa: A002
    runner: str | None = None,
    arch: Any = None,
) -> Runner:
    """A runner for a model file; raises :class:`RuntimeMissing` if its runtime is absent.

    ``format``: the file's format as the bundle's manifest records it; without it, the one
    :func:`edgekd.formats.format_for_file` finds. ``runner``: a ``"module:Class"`` to open it with instead of the
    format's own: a measuring process gets both from the bench that started it, whose registry
    may hold formats registered at run time. ``arch``: for a PyTorch checkpoint, the
    ``module:factory`` names the caller vouches for (a run's own config), as for
    :func:`edgekd.load_model`; a name written only in the file is never imported."""
    from edgekd.formats import format_for_file, get_format, load_attr, model_extensions

    path = Path(path)
    fmt = get_format(format) if format is not None and runner is None else None
    if format is None:
        fmt = format_for_file(path.name)
    if (fmt is None or not fmt.is_model) and runner is None:
        raise EdgekdError(f"{path.name} is not a model file ({', '.join(model_extensions())})")
    input_file(path, "model file")  # missing, a folder, a device or FIFO: said which
    cls = load_attr(runner) if runner is not None else fmt.runner_class()
    vouched = arch is not None and getattr(cls, "takes_arch", False)
    opened = cls(path, threads, arch=arch) if vouched else cls(path, threads)
    opened.format = format if format is not None else fmt.name if fmt is not None else path.suffix.lstrip(".")
    return opened
