"""One model measured in a process of its own: load it, check that the eval data fits its input,
warm up, time ``invoke``, evaluate accuracy, read the process's peak resident memory.

The CPU target runs ``measure`` in a fresh Python per model (see :mod:`edgekd.benchmark.targets`):
the peak memory of a row is then this model's runtime alone, not the runtimes loaded for the rows
before it, and thread settings read from the environment (``OMP_NUM_THREADS`` …) are in place
before the runtime loads. Imports only numpy, the standard library and :mod:`edgekd.runtimes`
(whose runtimes load inside the runners), so it runs on a Raspberry Pi with numpy + ai-edge-litert.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.atomic import write_json
from edgekd.benchmark.errors import BenchError
from edgekd.benchmark.stats import cv, is_noisy, latency_stats, spread
from edgekd.errors import EdgekdError, typed_first_line
from edgekd.runtimes import Runner, RuntimeMissing, open_runner
from edgekd.tasks import TaskError, get_task, read_eval


def _failed(stage: str, reason: str, **extra: Any) -> dict[str, Any]:
    # stage: load (the file does not open in its runtime, or is not what its format says), eval (the
    # eval data does not fit the model), run (it loaded but invoking it failed)
    return {"status": "failed", "stage": stage, "reason": reason, **extra}


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_bytes() -> int | None:
    """Current resident memory of this process (Linux), bytes."""
    kb = _status_kb("VmRSS")
    return None if kb is None else int(kb * 1024)


def peak_rss_bytes() -> tuple[int | None, str | None]:
    """(peak resident memory of this process in bytes, where it was read from).

    VmHWM is the high-water mark of this process image since its exec. getrusage's ru_maxrss is
    only the fallback (no /proc, e.g. macOS): after a fork+exec it can report the *parent's* peak,
    which would charge the launching process's memory to the model."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return int(kb * 1024), "VmHWM"
    try:
        import resource
    except ImportError:  # Windows
        return None, None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (int(peak) if sys.platform == "darwin" else int(peak) * 1024), "ru_maxrss"  # bytes on macOS, KB elsewhere


def load_eval(path: str | Path, targets: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, targets) from an ``eval.npz``-style file (:func:`edgekd.tasks.read_eval`);
    ``targets`` names them: ``labels`` (int class indices) or ``masks`` (uint8 N×H×W, segmentation)."""
    try:
        return read_eval(path, targets)
    except TaskError as exc:
        raise BenchError(str(exc)) from None


def input_hwc(details: dict[str, Any], layout: str | None = None) -> tuple[int, int, int] | None:
    """The (H, W, C) image an input tensor's ``details`` (shape, layout: a runner's or a manifest
    entry's ``input``) take, or None when not fixed; ``layout`` where the details name none."""
    shape, layout = details.get("shape"), details.get("layout", layout)
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 4
        or layout not in ("NCHW", "NHWC")
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape[1:])
    ):
        return None  # unknown or symbolic: the runtime will say if the data does not fit
    return (shape[2], shape[3], shape[1]) if layout == "NCHW" else (shape[1], shape[2], shape[3])


def expected_hwc(runner: Runner, manifest_input: dict[str, Any]) -> tuple[int, int, int] | None:
    """The (H, W, C) image a model takes, from the model file where its runtime says, else the manifest."""
    return input_hwc(runner.input_details or manifest_input, runner.layout)


def hwc_mismatch(
    images: np.ndarray, want: tuple[int, int, int] | None, name: str, details: dict[str, Any]
) -> str | None:
    """Why uint8 NHWC ``images`` do not fit a model that takes ``want`` (H, W, C), or None."""
    got = tuple(int(v) for v in images.shape[1:])
    if want is None or got == want:
        return None
    return (
        f"images are {'×'.join(map(str, got))} (H×W×C), {name} takes {'×'.join(map(str, want))} "
        f"(input {details.get('shape')} {details.get('layout')})"
    )


def format_problem(runner: Runner, job: dict[str, Any]) -> str | None:
    """Why the opened file is not what its format says, or None: an input or output tensor of another
    dtype than the format's (``job["io_dtype"]``). A float file saved as ``student_int8.tflite`` ran
    as an "ok" int8 row, with the float model's latency and accuracy."""
    want = job.get("io_dtype")
    if want is None:
        return None
    got = {"input": runner.input_details.get("dtype"), "output": runner.output_details.get("dtype")}
    wrong = [f"{kind} {dtype}" for kind, dtype in got.items() if dtype is not None and dtype != want]
    if not wrong:
        return None
    return (
        f"{Path(job['file']).name} is not a {job['format']} file: {', '.join(wrong)} "
        f"({job['format']} has {want} input and output; re-export the bundle)"
    )


def check_fits(images: np.ndarray, labels: np.ndarray, runner: Runner, job: dict[str, Any]) -> None:
    """Raise :class:`BenchError` saying how the eval data and the model disagree. ``labels``: the
    targets of the job's task (class indices, or masks)."""
    task = get_task(job.get("task"))
    try:
        task.check_images(images, labels)  # the bench's up-front check (run._check_eval) too
        task.check_eval(images, labels, job["num_classes"])
    except TaskError as exc:
        raise BenchError(str(exc)) from None
    detail = {"layout": runner.layout, **(job.get("input") or runner.input_details)}
    wrong = hwc_mismatch(images, expected_hwc(runner, job.get("input") or {}), Path(job["file"]).name, detail)
    if wrong:
        raise BenchError(f"eval data does not match the model input: {wrong}")


def time_invoke(runner: Runner, x: Any, warmup: int, runs: int) -> np.ndarray:
    """Per-run durations (ns) of ``runner.invoke(x)`` after ``warmup`` untimed runs.

    Only invoke is timed (input prepared once, outside the loop); perf_counter_ns is monotonic and
    the finest clock Python has; the garbage collector is paused so that a collection triggered by
    allocations elsewhere is not charged to the model."""
    for _ in range(warmup):  # first runs pay for lazy allocation, caches, XNNPACK packing, clock ramp-up
        runner.invoke(x)
    ns = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            start = clock()
            runner.invoke(x)
            ns[i] = clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return ns


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one model file; a dict with ``status`` ok / skipped / failed and what was measured.
    ``accuracy`` is the task's metric: top-1 accuracy, or mean IoU for segmentation (also ``miou``)."""
    base = rss_bytes()  # interpreter + numpy + edgekd, before the runtime loads
    task = get_task(job.get("task"))
    try:
        runner = open_runner(job["file"], threads=job["threads"], format=job.get("format"), runner=job.get("runner"))
    except RuntimeMissing as exc:
        return {"status": "skipped", "reason": str(exc)}
    except EdgekdError as exc:
        return _failed("load", str(exc))
    except Exception as exc:  # noqa: BLE001 - a runtime's own error for a file it cannot parse
        return _failed("load", typed_first_line(exc))
    problem = format_problem(runner, job)
    if problem:  # timed and scored, the row would stand for a model of another format
        return _failed("load", problem, runtime=runner.runtime)
    images = labels = None
    try:
        if job["eval"] is not None:
            images, labels = load_eval(job["eval"], task.targets_key)
            check_fits(images, labels, runner, job)
            first = images[0]
        else:  # a lone model: timing only, on a blank image of the model's input size
            hwc = expected_hwc(runner, job.get("input") or {})
            if hwc is None:
                raise BenchError(
                    f"{Path(job['file']).name} has no fixed input shape to time it with (give a bundle with eval data)"
                )
            first = np.zeros(hwc, np.uint8)
    except BenchError as exc:
        return _failed("eval", str(exc), runtime=runner.runtime)
    try:
        x = runner.prepare(first)  # batch 1: latency does not depend on which image
        ns = time_invoke(runner, x, job["warmup"], job["runs"])
        logits = runner.predict(images) if images is not None else None
    except Exception as exc:  # noqa: BLE001 - loaded but does not run: the row fails, the bench goes on
        return _failed("run", typed_first_line(exc), runtime=runner.runtime)
    scores: dict[str, float] = {}
    if logits is not None:
        problem = task.check_outputs(logits, labels, job["num_classes"])
        if problem:
            return _failed("eval", problem, runtime=runner.runtime)
        scores = task.scores(logits, labels)
    stats = latency_stats(ns)
    peak, source = peak_rss_bytes()
    return {
        "status": "ok",
        "runtime": runner.runtime,
        **stats,
        "spread_frac": spread(stats),
        "cv_frac": cv(stats),
        "noisy": is_noisy(stats),
        "throughput_per_s": 1e6 / stats["mean_us"],  # one stream at batch 1
        "accuracy_frac": scores.get(task.metric),  # top-1 accuracy; mean IoU for segmentation
        "accuracy_images": int(len(labels)) if labels is not None else None,
        **(task.row_fields(scores) if scores else {}),
        "peak_rss_bytes": peak,
        "base_rss_bytes": base,
        "rss_source": source,
    }


def main(argv: list[str]) -> int:
    """``JOB.json RESULT.json``: measure the job, write the result. A bug becomes a failed row with
    its traceback in the result, so that the parent can report it without losing the other rows."""
    job_path, result_path = argv
    job = json.loads(Path(job_path).read_text())
    try:
        result = measure(job)
    except Exception as exc:  # noqa: BLE001
        result = _failed("run", typed_first_line(exc), traceback=traceback.format_exc())
    write_json(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
