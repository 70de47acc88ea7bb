"""Compare TFLite backends on one distill run: the same student, the same calibration and test images,
converted by each backend, then size, parity against PyTorch, op set and invoke latency side by side.

Each backend runs in an interpreter that has it: litert-torch (jax, transformers) and onnx2tf
(TensorFlow) need not share an environment, so a backend missing here is converted by
``python -m edgekd.exporters.compare`` in the interpreter given as ``python``. Latency is measured
afterwards for every file in this one process, with the same runtime, interleaved in rounds so that
a busy shared machine slows every file alike.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError

# the module each backend imports: a backend whose module is missing here is converted elsewhere
BACKEND_MODULES = {"onnx2tf": "onnx2tf", "litert_torch": "litert_torch"}
DEFAULT_FORMATS = ("tflite_fp32", "tflite_int8", "tflite_fp16", "tflite_dynamic")


def backend_available(backend: str) -> bool:
    module = BACKEND_MODULES.get(backend)
    return module is None or importlib.util.find_spec(module) is not None


def convert_student(
    run: str | Path, backend: str, out: str | Path, formats: Sequence[str] = DEFAULT_FORMATS
) -> dict[str, Any]:
    """Export ``run``'s student with ``backend`` into the bundle ``out`` (parity failures allowed:
    they are what is being measured) and return its files' metrics, ops and the conversion time."""
    from edgekd.exporters.export import export
    from edgekd.exporters.timing import recorded_conversions
    from edgekd.formats import file_name

    sets = [f"export.backend={backend}", f"export.formats=[{','.join(formats)}]", "export.models=[student]"]
    try:
        with recorded_conversions() as calls:
            manifest = export(run=run, out=out, set=sets, allow_parity_failure=True)
    except EdgekdError as exc:
        return {"backend": backend, "error": f"export failed: {exc}"}
    from edgekd.runtimes.tflite_runner import full_integer_problems

    # everything the backend ran to get from the PyTorch model to its files: for onnx2tf that
    # includes the PyTorch → ONNX step, for litert_torch there is none
    seconds = sum(c["seconds"] for c in calls if c["function"] != "tflite_to_c_array")
    rows = []
    for fmt in formats:
        name = file_name("student", fmt)
        metrics, entry = manifest["metrics"][name], manifest["models"][name]
        rows.append(
            {
                "backend": backend,
                "format": fmt,
                "file": str(Path(out) / name),
                "bytes": manifest["files"][name]["bytes"],
                "top1_agreement": metrics["top1_agreement"],
                "max_abs_diff": metrics["max_abs_diff"],
                "test_acc": metrics["test_acc"],
                "n": metrics["n"],
                "parity_ok": metrics["ok"],
                "conversion_s": round(seconds, 2),
                "input_dtype": entry["input"]["dtype"],
                "output_dtype": entry["output"]["dtype"],
                "full_integer_problems": full_integer_problems(Path(out) / name) if fmt == "tflite_int8" else None,
                "ops": entry["ops"],
            }
        )
    reference_acc = manifest["metrics"][file_name("student", formats[0])]["reference_acc"]
    return {
        "backend": backend,
        "error": None,
        "reference_acc": reference_acc,
        "versions": manifest["versions"],
        "rows": rows,
    }


def _convert_elsewhere(python: str, run: Path, backend: str, out: Path, formats: Sequence[str]) -> dict[str, Any]:
    """:func:`convert_student` in another interpreter, on this same edgekd source tree."""
    import edgekd

    source_root = str(Path(edgekd.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH", "")) if p)}
    with tempfile.TemporaryDirectory(prefix="edgekd-compare-") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [
            python,
            "-m",
            "edgekd.exporters.compare",
            str(run),
            backend,
            str(out),
            ",".join(formats),
            str(result_path),
        ]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)  # its log lines go to our stderr
        if proc.returncode != 0 or not result_path.is_file():
            return {"backend": backend, "error": f"export failed: {python} exited with {proc.returncode}"}
        return json.loads(result_path.read_text())


def invoke_latency(
    paths: Sequence[Path], image: np.ndarray, runs: int = 200, warmup: int = 50, rounds: int = 4
) -> dict[str, dict[str, Any]]:
    """Median and p90 of ``interpreter.invoke()`` alone (time.perf_counter_ns), one thread, per file.

    Every file gets ``warmup`` untimed invokes, then ``runs`` timed ones split into ``rounds``
    rounds that alternate between the files."""
    from edgekd.runtimes.tflite_runner import TFLiteRunner

    runners, samples, errors = {}, {}, {}
    for path in paths:
        try:
            runner = TFLiteRunner(Path(path), threads=1)
            runner.interpreter.set_tensor(runner.inp["index"], runner.prepare(image))
            for _ in range(warmup):
                runner.interpreter.invoke()
            runners[str(path)], samples[str(path)] = runner, []
        except (EdgekdError, ValueError, RuntimeError) as exc:
            errors[str(path)] = f"run failed: {exc}"
    per_round = -(-runs // rounds)  # ceil: at least ``runs`` in all
    for _ in range(rounds):
        for key, runner in runners.items():
            invoke, times = runner.interpreter.invoke, samples[key]
            for _ in range(per_round):
                start = time.perf_counter_ns()
                invoke()
                times.append(time.perf_counter_ns() - start)
    out: dict[str, dict[str, Any]] = {key: {"error": err} for key, err in errors.items()}
    for key, times in samples.items():
        ns = np.array(times, dtype=np.float64)
        out[key] = {
            "error": None,
            "median_ms": float(np.median(ns)) / 1e6,
            "p90_ms": float(np.percentile(ns, 90)) / 1e6,
            "runs": len(times),
        }
    return out


def host_info() -> dict[str, Any]:
    from edgekd.runtimes.tflite_runner import interpreter_class

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "runtime": interpreter_class()[1],
    }


def compare_tflite_backends(
    run: str | Path,
    out: str | Path,
    backends: Sequence[str] = ("onnx2tf", "litert_torch"),
    formats: Sequence[str] = DEFAULT_FORMATS,
    python: str | None = None,
    runs: int = 200,
    warmup: int = 50,
) -> dict[str, Any]:
    """Convert ``run``'s student with every backend (bundles under ``out/<backend>``), then time every
    file; returns {"host", "run", "results": [per backend], "rows": [per file]}."""
    run, out = Path(run), Path(out)
    results = []
    for backend in backends:
        bundle = out / backend
        if backend_available(backend):
            results.append(convert_student(run, backend, bundle, formats))
        elif python:
            results.append(_convert_elsewhere(python, run, backend, bundle, formats))
        else:
            results.append(
                {
                    "backend": backend,
                    "error": f"export failed: {BACKEND_MODULES[backend]} is not installed here (give --python)",
                }
            )
    rows = [row for r in results if not r["error"] for row in r["rows"]]
    image = _latency_image(out, results)
    if image is not None:
        latency = invoke_latency([Path(r["file"]) for r in rows], image, runs=runs, warmup=warmup)
        for row in rows:
            row["latency"] = latency[row["file"]]
    return {
        "host": host_info(),
        "run": str(run),
        "formats": list(formats),
        "latency": {"runs": runs, "warmup": warmup, "threads": 1},
        "results": results,
        "rows": rows,
    }


def _latency_image(out: Path, results: list[dict[str, Any]]) -> np.ndarray | None:
    """One held-out test image (raw uint8 HWC) from a written bundle: the same for every backend."""
    for r in results:
        if not r["error"]:
            return np.load(out / r["backend"] / "eval.npz")["images"][0]
    return None


def _child(argv: Sequence[str]) -> int:
    run, backend, out, formats, result_path = argv
    result = convert_student(run, backend, out, formats.split(","))
    from edgekd.atomic import write_json

    write_json(result_path, result)
    return 0


if __name__ == "__main__":  # the other interpreter's side of compare_tflite_backends(python=…)
    sys.exit(_child(sys.argv[1:]))
