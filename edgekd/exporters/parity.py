"""Parity of an exported file against the PyTorch model it came from, on real test images.

Public helpers: :func:`parity_metrics` compares float outputs with reference logits and labels;
:func:`check_parity` runs a model file through its runtime and applies the bounds. int8 models are
fed quantized inputs and their outputs dequantized from the tensor details (see
:mod:`edgekd.runtimes.tflite_runner`), so every format is compared in the same float space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# formats that should reproduce PyTorch up to float rounding; the others are approximations
EXACT_FORMATS = frozenset({"pytorch", "onnx", "tflite_fp32"})


@dataclass(frozen=True)
class Bounds:
    fp32_max_abs_diff: float = 2e-3
    min_top1_agreement: float = 0.99
    max_acc_drop: float = 0.005


def parity_metrics(outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """max/mean |Δlogit|, top-1 agreement with the reference, and accuracy of both on ``labels``."""
    diff = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
    pred, ref_pred = outputs.argmax(1), reference.argmax(1)
    return {
        "n": int(len(labels)),
        "test_acc": round(float((pred == labels).mean()), 6),
        "reference_acc": round(float((ref_pred == labels).mean()), 6),
        "top1_agreement": round(float((pred == ref_pred).mean()), 6),
        "max_abs_diff": float(f"{diff.max():.6g}"),
        "mean_abs_diff": float(f"{diff.mean():.6g}"),
    }


def out_of_bounds(fmt: str, metrics: dict[str, float], bounds: Bounds) -> list[str]:
    """Human-readable reasons a format fails its bounds (empty when it passes)."""
    problems = []
    if fmt in EXACT_FORMATS and metrics["max_abs_diff"] > bounds.fp32_max_abs_diff:
        problems.append(f"max |Δlogit| {metrics['max_abs_diff']:.3g} > {bounds.fp32_max_abs_diff:g}")
    if metrics["top1_agreement"] < bounds.min_top1_agreement:
        problems.append(f"top-1 agreement {100 * metrics['top1_agreement']:.2f}% < {100 * bounds.min_top1_agreement:.2f}%")
    drop = metrics["reference_acc"] - metrics["test_acc"]
    if drop > bounds.max_acc_drop:
        problems.append(f"accuracy drop {100 * drop:.2f} points > {100 * bounds.max_acc_drop:.2f}")
    return problems


def reference_logits(model: Any, images_nhwc: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """PyTorch logits of a raw-pixel model (preprocessing folded in) for uint8 NHWC images."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(images_nhwc), batch_size):
            x = torch.from_numpy(images_nhwc[start : start + batch_size].transpose(0, 3, 1, 2).astype(np.float32))
            out.append(model(x).float().numpy())
    return np.concatenate(out)


def check_parity(path: Path, images: np.ndarray, labels: np.ndarray, reference: np.ndarray, bounds: Bounds, threads: int | None = None) -> dict[str, Any]:
    """Run ``path`` on every image and return its metrics plus ``ok`` and ``problems``."""
    from edgekd.runtimes import open_runner

    runner = open_runner(path, threads=threads)
    metrics: dict[str, Any] = parity_metrics(runner.predict(images), reference, labels)
    problems = out_of_bounds(runner.format, metrics, bounds)
    metrics.update(format=runner.format, ok=not problems, problems=problems)
    return metrics
