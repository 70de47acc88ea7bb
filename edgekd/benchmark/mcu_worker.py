"""One int8 model through TFLite Micro on this host, in a process of its own (``main``), like the
CPU bench's measuring process: a crash inside the native interpreter fails the row, not the bench.

Says whether every op has a TFLM kernel, how much tensor arena the model really uses, and what
accuracy (mean IoU for a segmentation bundle) TFLM's kernels give on the eval data. No time is
measured: TFLM on x86 runs reference kernels (see :class:`edgekd.runtimes.tflm_runner.TflmRunner`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.benchmark.errors import BenchError
from edgekd.benchmark.worker import check_fits, load_eval
from edgekd.procs import worker_main
from edgekd.runtimes.base import RuntimeMissing
from edgekd.runtimes.tflm_runner import TflmRunner, TflmUnsupported, tflm_version


def measure(job: dict[str, Any]) -> dict[str, Any]:
    try:
        runner = TflmRunner(Path(job["file"]))
    except RuntimeMissing as exc:
        return {"status": "skipped", "reason": str(exc)}
    except TflmUnsupported as exc:
        return {
            "status": "failed",
            "stage": "load",
            "reason": str(exc),
            "runtime": tflm_version(),
            "tflm": {"ops_supported": False},
        }
    from edgekd.tasks import get_task

    task = get_task(job.get("task"))
    accuracy = accuracy_n = None
    scores: dict[str, float] = {}
    images = labels = None
    try:
        if job.get("eval"):
            images, labels = load_eval(job["eval"], task.targets_key)
            # the CPU bench's own check (dtype, labels in range, input size): data it fails fails here too
            check_fits(images, labels, runner, job)
    except BenchError as exc:
        return {"status": "failed", "stage": "eval", "reason": str(exc), "runtime": runner.runtime}
    try:
        if images is not None:
            logits = np.stack(
                [runner.dequantize(runner.invoke(runner.prepare(img))).reshape(-1) for img in images]
            )  # (N, classes) or (N, H·W) pixel logits
            problem = task.check_outputs(logits, labels, job["num_classes"])
            if problem:
                return {"status": "failed", "stage": "eval", "reason": problem, "runtime": runner.runtime}
            scores = task.scores(logits, labels)
            accuracy, accuracy_n = scores[task.metric], int(len(labels))  # top-1 accuracy, or mean IoU
        else:
            runner.invoke(
                runner.prepare(np.zeros(runner.shape[1:], np.uint8))
            )  # one invoke: the arena report covers invoke-time buffers
        arena = runner.arena_bytes()
    except Exception as exc:  # noqa: BLE001 - prepared but does not run: the row fails
        return {
            "status": "failed",
            "stage": "run",
            "reason": f"{type(exc).__name__}: {str(exc).strip()[:200]}",
            "runtime": runner.runtime,
        }
    return {
        "status": "ok",
        "runtime": runner.runtime,
        "accuracy_frac": accuracy,
        "accuracy_images": accuracy_n,
        **(task.row_fields(scores) if scores else {}),
        "tflm": {"ops_supported": True, "arena_bytes": arena, "accuracy_frac": accuracy},
    }


def main(argv: list[str]) -> int:
    """``JOB.json RESULT.json``, as :func:`edgekd.benchmark.worker.main`."""
    return worker_main(argv, measure, stage="run")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
