"""The host's answer that a microcontroller build must reproduce: the int8 output of the TFLite
Micro interpreter (the ``tflite-micro`` package) for sample images, quantized exactly as
deploy/mcu/main.cc quantizes them, and the tensor arena it used. :func:`pick_samples` chooses the
self-test images a config header embeds: ones the int8 model classifies as labelled where there are
such, so a correct run of the app is never reported as a mismatch.

Runs in-process (:func:`reference`) or as a worker process (``main``), like the bench's TFLM worker.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.atomic import write_json
from edgekd.mcu.codegen import Sample


def quantize_like_app(pixels: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """main.cc's QuantizePixel in numpy float32: pixel / scale + zero_point, round half away from
    zero by adding ±0.5 and truncating, clamp to int8 (np.round would round half to even)."""
    q = pixels.astype(np.float32) / np.float32(scale) + np.float32(zero_point)
    rounded = np.where(q >= 0, q + np.float32(0.5), q - np.float32(0.5)).astype(np.int32)  # astype truncates
    return np.clip(rounded, -128, 127).astype(np.int8)


def reference(model_path: str | Path, images: np.ndarray) -> dict[str, Any]:
    """{"arena_bytes", "outputs": (N, output values) int8, "classes": (N,)} for uint8 NHWC ``images``."""
    from edgekd.runtimes.tflm_runner import TflmRunner

    runner = TflmRunner(Path(model_path))
    if runner.dtype != np.int8 or np.dtype(runner.out["dtype"]) != np.int8:
        raise ValueError("the model's input and output must be int8 (a full-integer model)")
    scale, zero = (runner.in_scale or 1.0), runner.in_zero
    outputs = [
        np.asarray(runner.invoke(quantize_like_app(image, scale, zero).reshape(runner.shape)))
        .astype(np.int8)
        .reshape(-1)
        for image in images
    ]
    outs = np.stack(outputs) if outputs else np.zeros((0, 0), np.int8)
    return {"arena_bytes": runner.arena_bytes(), "outputs": outs, "classes": outs.argmax(1) if len(outs) else outs}


def pick_samples(
    model_path: str | Path, images: np.ndarray, labels: np.ndarray | None, count: int
) -> tuple[list[Sample], int | None]:
    """``count`` self-test samples and the arena used. With class labels, images the host's int8
    model classifies correctly come first (then the others, if too few); without, the first ones."""
    n = min(len(images), max(count * 8, count))  # a few candidates are enough to find correct ones
    ref = reference(model_path, images[:n])
    if labels is not None and labels.ndim == 1:
        right = [i for i in range(n) if int(ref["classes"][i]) == int(labels[i])]
        order = right + [i for i in range(n) if i not in right]
    else:
        order = list(range(n))
    chosen = order[:count]
    samples = [
        Sample(
            [int(v) for v in images[i].reshape(-1)],
            int(labels[i]) if labels is not None and labels.ndim == 1 else -1,
            [int(v) for v in ref["outputs"][i]],
        )
        for i in chosen
    ]
    return samples, ref["arena_bytes"]


def main(argv: list[str]) -> int:
    """``JOB.json RESULT.json``: job {"file", "eval" (npz), "targets_key", "count"} → {"status",
    "arena_bytes", "samples": [{"pixels", "label", "expected"}]}, the bench's worker protocol."""
    job_path, result_path = argv
    job = json.loads(Path(job_path).read_text())
    try:
        with np.load(job["eval"]) as data:
            images, targets = data["images"], data[job.get("targets_key", "labels")]
        labels = targets if targets.ndim == 1 else None
        samples, arena = pick_samples(job["file"], images, labels, int(job.get("count", 1)))
        result: dict[str, Any] = {"status": "ok", "arena_bytes": arena, "samples": [s.__dict__ for s in samples]}
    except Exception as exc:  # noqa: BLE001 - the caller writes a header without expected outputs
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
    write_json(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
