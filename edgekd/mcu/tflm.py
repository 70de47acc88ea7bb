"""One int8 model through the TensorFlow Lite Micro interpreter on this host (the ``tflite-micro``
package): does every op have a TFLM kernel, how much tensor arena does it really use, and what
accuracy (mean IoU for a segmentation bundle) do TFLM's kernels give on the eval data.

Runs in a process of its own (``main``), like the CPU bench's measuring process: a crash inside the
native interpreter fails the row, not the bench. TFLM on x86 runs reference kernels, so no time is
measured here: an MCU's latency is estimated from the model (:mod:`edgekd.mcu.estimate`).
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.atomic import write_json
from edgekd.fdcapture import captured_fds

# print_allocations() (RecordingMicroAllocator) → "Arena allocation total 55984 bytes"
_ARENA = re.compile(r"Arena allocation total (\d+) bytes")
_MISSING = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'(?: version '(\d+)')?")
_FIRST_ARENA = 1 << 20  # bytes offered at first; usage does not depend on the offer, only fit does
_MAX_ARENA = 256 << 20


class TflmUnsupported(Exception):
    """TFLite Micro cannot prepare the model (an op without a kernel, an op version it lacks)."""


def tflm_version() -> str:
    from importlib.metadata import version

    return f"tflite-micro {version('tflite-micro')}"


def _open(path: Path) -> tuple[Any, str]:
    """(interpreter, what TFLM logged while preparing it), offering a bigger arena until it fits."""
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
            raise TflmUnsupported(f"TFLite Micro has no kernel for {op}" + (f" version {version}" if version else "") + f" ({tflm_version()})")
        if arena >= _MAX_ARENA or "arena" not in text.lower():
            lines = [line for line in text.strip().splitlines() if line.strip()] or ["TFLM failed to allocate tensors"]
            raise TflmUnsupported(f"TFLite Micro cannot prepare the model: {lines[-1][:200]}")
        arena *= 4  # the offer was too small for this model


def _quant(details: dict[str, Any]) -> tuple[float, int]:
    q = details["quantization_parameters"]
    return float(q["scales"][0]) if len(q["scales"]) else 0.0, int(q["zero_points"][0]) if len(q["zero_points"]) else 0


def measure(job: dict[str, Any]) -> dict[str, Any]:
    path = Path(job["file"])
    try:
        interpreter, _ = _open(path)
    except ImportError:
        return {"status": "skipped", "reason": "tflite-micro is not installed (pip install 'edgekd[mcu]')"}
    except TflmUnsupported as exc:
        return {"status": "failed", "stage": "load", "reason": str(exc), "runtime": tflm_version(), "tflm": {"ops_supported": False}}
    inp, out = interpreter.get_input_details(0), interpreter.get_output_details(0)
    shape = [int(v) for v in inp["shape"]]
    in_scale, in_zero = _quant(inp)
    out_scale, out_zero = _quant(out)
    dtype = np.dtype(inp["dtype"])
    info = np.iinfo(dtype) if dtype.kind in "iu" else None

    def run(image: np.ndarray) -> np.ndarray:
        x = image[None].astype(np.float32)  # raw pixels, as every edgekd model takes them
        if info is not None and in_scale:
            x = np.clip(np.round(x / in_scale + in_zero), info.min, info.max)
        interpreter.set_input(x.astype(dtype).reshape(shape), 0)
        interpreter.invoke()
        y = interpreter.get_output(0)
        return (y.astype(np.float32) - out_zero) * out_scale if out_scale else y.astype(np.float32)

    from edgekd.tasks import get_task

    task = get_task(job.get("task"))
    accuracy = accuracy_n = None
    scores: dict[str, float] = {}
    try:
        if job.get("eval"):
            from edgekd.benchmark.worker import load_eval

            images, labels = load_eval(job["eval"], task.targets_key)
            want = tuple(shape[1:])
            if tuple(images.shape[1:]) != want:
                return {"status": "failed", "stage": "eval", "reason": f"eval images are {'×'.join(map(str, images.shape[1:]))}, the model takes {'×'.join(map(str, want))}", "runtime": tflm_version()}
            logits = np.stack([run(img).reshape(-1) for img in images])  # (N, classes) or (N, H·W) pixel logits
            problem = task.check_outputs(logits, labels, job["num_classes"])
            if problem:
                return {"status": "failed", "stage": "eval", "reason": problem, "runtime": tflm_version()}
            scores = task.scores(logits, labels)
            accuracy, accuracy_n = scores[task.metric], int(len(labels))  # top-1 accuracy, or mean IoU
        else:
            run(np.zeros(shape[1:], np.uint8))  # one invoke: the arena report covers invoke-time buffers
        with captured_fds((1, 2)) as log:
            interpreter.print_allocations()
            text = log.read_text(errors="replace")
    except Exception as exc:  # noqa: BLE001 - prepared but does not run: the row fails
        return {"status": "failed", "stage": "run", "reason": f"{type(exc).__name__}: {str(exc).strip()[:200]}", "runtime": tflm_version()}
    arena = _ARENA.search(text)
    return {
        "status": "ok",
        "runtime": tflm_version(),
        "accuracy": accuracy,
        "accuracy_n": accuracy_n,
        **(task.row_fields(scores) if scores else {}),
        "tflm": {"ops_supported": True, "arena_bytes": int(arena.group(1)) if arena else None, "accuracy": accuracy},
    }


def main(argv: list[str]) -> int:
    """``JOB.json RESULT.json``, as :func:`edgekd.benchmark.worker.main`."""
    job_path, result_path = argv
    job = json.loads(Path(job_path).read_text())
    try:
        result = measure(job)
    except Exception as exc:  # noqa: BLE001
        result = {"status": "failed", "stage": "run", "reason": f"{type(exc).__name__}: {str(exc)[:300]}", "traceback": traceback.format_exc()}
    write_json(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
