"""Parity of an exported file against the PyTorch model it came from, on real test images.

Public helpers: :func:`parity_metrics` compares float outputs with reference logits and labels
(or masks: the metrics and bounds per task live in :mod:`edgekd.tasks`);
:func:`check_parity` runs a model file through its runtime and applies the bounds. int8 models are
fed quantized inputs and their outputs dequantized from the tensor details (see
:mod:`edgekd.runtimes.tflite_runner`), so every format is compared in the same float space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.tasks import Task, get_task


@dataclass(frozen=True)
class Bounds:
    fp32_max_abs_diff: float = 2e-3
    min_top1_agreement: float = 0.99
    max_acc_drop: float = 0.005
    min_logit_snr_db: float = 20.0  # approximate formats (int8, fp16, dynamic): see ExportConfig
    max_class_share: float = 0.9  # classification: above this share of one predicted class, collapsed


def parity_metrics(
    outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray, task: str | Task = "classification"
) -> dict[str, float]:
    """Float outputs against reference logits and the targets (see the task's ``parity_metrics``).

    classification: max/mean |Δlogit|, top-1 agreement with the reference, accuracy of both.
    segmentation: max/mean |Δlogit| per pixel, pixel agreement of the masks (logit > 0), mean IoU
    of the exported masks against PyTorch's, mean IoU and pixel accuracy of both against the masks.
    """
    return get_task(task).parity_metrics(outputs, reference, labels)


def out_of_bounds(
    fmt: str, metrics: dict[str, float], bounds: Bounds, task: str | Task = "classification"
) -> list[str]:
    """Human-readable reasons a format fails its bounds (empty when it passes).

    The bounds read per pixel for segmentation: ``min_top1_agreement`` bounds the pixel agreement
    of the masks, ``max_acc_drop`` the mean IoU lost, ``fp32_max_abs_diff`` every pixel's logit."""
    from edgekd.formats import find_format

    found = find_format(fmt)  # exact formats should reproduce PyTorch up to float rounding; the others approximate it
    return get_task(task).parity_problems(found is not None and found.exact, metrics, bounds)


def reference_logits(model: Any, images_nhwc: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """PyTorch logits of a raw-pixel model (preprocessing folded in) for uint8 NHWC images."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(images_nhwc), batch_size):
            x = torch.from_numpy(images_nhwc[start : start + batch_size].transpose(0, 3, 1, 2).astype(np.float32))
            out.append(model(x).float().numpy())
    return np.concatenate(out)


def check_parity(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray,
    bounds: Bounds,
    threads: int | None = None,
    task: str | Task = "classification",
    arch: Any = None,
) -> dict[str, Any]:
    """Run ``path`` on every image and return its metrics plus ``ok`` and ``problems``.
    ``labels``: class indices, or the masks for segmentation. ``arch``: the architectures a
    PyTorch file may be rebuilt with (:func:`edgekd.runtimes.open_runner`)."""
    from edgekd.runtimes import open_runner

    runner = open_runner(path, threads=threads, arch=arch)
    metrics: dict[str, Any] = parity_metrics(runner.predict(images), reference, labels, task)
    scale = getattr(runner, "out_scale", None)
    if scale and getattr(runner, "out", None) is not None and np.dtype(runner.out["dtype"]).itemsize == 1:
        # int8 outputs: the error in output quantization steps (one step is the finest change it can show)
        metrics["output_scale"] = float(scale)
        diff = metrics.get("max_abs_diff")  # None with NaN or infinite outputs: a failure the problems name
        metrics["max_abs_diff_steps"] = None if diff is None else round(diff / float(scale), 2)
    problems = out_of_bounds(runner.format, metrics, bounds, task)
    metrics.update(format=runner.format, ok=not problems, problems=problems)
    return metrics
