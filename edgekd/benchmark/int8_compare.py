"""Side-by-side timing of int8 ``.tflite`` files: the same input, interleaved rounds, 1 and 2 threads,
XNNPACK (LiteRT's default delegate) and the builtin kernels (no delegate: closer to what TFLite
Micro runs), plus each file's ops, MACs, MCU latency estimate and TFLite Micro arena.

Interleaving: every configuration opens one interpreter per file, warms each up, then runs
``rounds`` rounds in which every file gets ``runs/rounds`` timed invokes in turn, so a busy shared
machine slows every file alike. Only ``interpreter.invoke()`` is timed (perf_counter_ns).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.atomic import write_json

KERNELS = ("xnnpack", "builtin")


def open_interpreter(path: Path, threads: int, kernels: str) -> Any:
    """A LiteRT interpreter on ``kernels``: ``xnnpack`` (the default delegate) or ``builtin``."""
    from edgekd.fdcapture import captured_fds
    from edgekd.runtimes.tflite_runner import interpreter_class

    cls, _ = interpreter_class()
    kwargs: dict[str, Any] = {"num_threads": threads}
    if kernels == "builtin":
        from ai_edge_litert.interpreter import OpResolverType

        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with captured_fds((2,)):
        interpreter = cls(model_path=str(path), **kwargs)
        interpreter.allocate_tensors()
    return interpreter


def quantized_input(interpreter: Any, image: np.ndarray) -> np.ndarray:
    """Raw uint8 HWC pixels as the file's input tensor takes them (its own scale and zero point)."""
    detail = interpreter.get_input_details()[0]
    x = image[None].astype(np.float32)
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu" and scale:
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    return x.astype(dtype).reshape(detail["shape"])


def interleaved_latency(
    paths: Mapping[str, Path],
    image: np.ndarray | None,
    threads: int,
    kernels: str,
    runs: int = 300,
    warmup: int = 50,
    rounds: int = 6,
) -> dict[str, dict[str, float]]:
    """{name: median/p90/min/max ms and runs} of ``invoke()`` for every file, interleaved.
    ``image``: raw uint8 HWC pixels fed to every file; None: seeded random values of each file's
    own input shape (single-op models)."""
    interpreters = {}
    for name, path in paths.items():
        interpreter = open_interpreter(Path(path), threads, kernels)
        detail = interpreter.get_input_details()[0]
        if image is None:
            x = np.random.default_rng(0).integers(-128, 128, detail["shape"]).astype(detail["dtype"])
        else:
            x = quantized_input(interpreter, image)
        interpreter.set_tensor(detail["index"], x)
        for _ in range(warmup):
            interpreter.invoke()
        interpreters[name] = interpreter
    samples: dict[str, list[int]] = {name: [] for name in paths}
    per_round = -(-runs // rounds)
    for _ in range(rounds):
        for name, interpreter in interpreters.items():
            invoke, times = interpreter.invoke, samples[name]
            for _ in range(per_round):
                start = time.perf_counter_ns()
                invoke()
                times.append(time.perf_counter_ns() - start)
    out = {}
    for name, times in samples.items():
        ms = np.array(times, dtype=np.float64) / 1e6
        out[name] = {
            "median_ms": float(np.median(ms)),
            "p90_ms": float(np.percentile(ms, 90)),
            "min_ms": float(ms.min()),
            "max_ms": float(ms.max()),
            "runs": len(times),
        }
    return out


def op_slices(path: Path, folder: Path) -> dict[str, Path]:
    """One single-op ``.tflite`` per operator of ``path``, written to ``folder``, keyed by a
    signature of what the op computes (e.g. ``CONV_2D 32x32x16>32x32x16 k3 s1``; a repeat gets
    `` #2``), so the same op of two files of the same architecture gets the same key. Each slice keeps
    the op's own weights and quantization parameters: what it times is exactly that op's kernel,
    plus one invoke's overhead. Slices are named after the op's index: one folder per file. Needs
    ``ai_edge_litert`` (its flatbuffer tools)."""
    import copy

    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model(str(path))
    graph = model.subgraphs[0]
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):  # slices of two files in one folder would overwrite each other
        raise ValueError(f"op_slices needs an empty folder, {folder} is not")

    def constant(t: int) -> bool:
        buf = model.buffers[graph.tensors[t].buffer]
        return (buf.data is not None and len(buf.data) > 0) or bool(getattr(buf, "size", 0))

    def dims(t: int) -> str:
        return "x".join(str(int(d)) for d in graph.tensors[t].shape[1:])

    out: dict[str, Path] = {}
    seen: dict[str, int] = {}
    for i, op in enumerate(graph.operators):
        name = fb.opcode_to_name(model, op.opcodeIndex) or f"op{op.opcodeIndex}"
        inputs = [t for t in op.inputs if t >= 0 and not constant(t)]
        key = f"{name} {dims(inputs[0]) if inputs else '-'}>{dims(op.outputs[0])}"
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            key += f" k{int(graph.tensors[op.inputs[1]].shape[1])} s{op.builtinOptions.strideH}"
        seen[key] = seen.get(key, 0) + 1
        key = key if seen[key] == 1 else f"{key} #{seen[key]}"
        sliced = copy.deepcopy(model)
        sub = sliced.subgraphs[0]
        sub.operators, sub.inputs, sub.outputs = [sub.operators[i]], inputs, list(op.outputs)
        out[key] = folder / f"op{i:03d}.tflite"
        fb.write_model(sliced, str(out[key]))
    return out


def tflm_arena(path: Path) -> dict[str, Any]:
    """TFLite Micro on this host, in a process of its own: {"arena_bytes"} or {"error"}."""
    with tempfile.TemporaryDirectory(prefix="edgekd-arena-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        write_json(job, {"file": str(path), "task": "classification", "num_classes": 0})
        subprocess.run(
            [sys.executable, "-m", "edgekd.benchmark.mcu_worker", str(job), str(result)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not result.is_file():
            return {"error": "the TFLite Micro process crashed"}
        got = json.loads(result.read_text())
    if got.get("status") != "ok":
        return {"error": got.get("reason", got.get("status"))}
    return {"arena_bytes": got["tflm"]["arena_bytes"]}


def describe(path: Path) -> dict[str, Any]:
    """Ops, MACs, bytes and the MCU estimate of one file (no runtime needed)."""
    from edgekd.mcu.estimate import cycles_by_op, estimates_ms, unpriced_ops
    from edgekd.tflite_file import read_tflite

    model = read_tflite(path)
    return {
        "file": str(path),
        "bytes": model.size_bytes,
        "macs": model.total_macs,
        "ops": [op.name for op in model.ops],
        "mcu_estimate_ms": estimates_ms(model),
        "mcu_cycles_by_op": {k: round(v) for k, v in cycles_by_op(model).items()},
        "mcu_unpriced_ops": unpriced_ops(model),
    }


def top1(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of an int8 file on raw uint8 NHWC images (one invoke each, XNNPACK)."""
    interpreter = open_interpreter(path, 1, "xnnpack")
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    hits = 0
    for image, label in zip(images, labels):
        interpreter.set_tensor(inp["index"], quantized_input(interpreter, image))
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out["index"]).reshape(-1)) == label)
    return hits / max(len(labels), 1)


def compare_int8(
    files: Mapping[str, Path],
    image: np.ndarray,
    threads: Sequence[int] = (1, 2),
    kernels: Sequence[str] = KERNELS,
    runs: int = 300,
    warmup: int = 50,
    rounds: int = 6,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    arena: bool = True,
) -> dict[str, Any]:
    """Every file described, timed in every (kernels, threads) configuration, and (with
    ``eval_data`` = (images, labels)) scored; returns {"files", "latency": [rows]}."""
    report: dict[str, Any] = {"files": {name: describe(Path(p)) for name, p in files.items()}, "latency": []}
    for name, path in files.items():
        if arena:
            report["files"][name]["tflm"] = tflm_arena(Path(path))
        if eval_data is not None:
            report["files"][name]["top1"] = top1(Path(path), *eval_data)
            report["files"][name]["top1_n"] = len(eval_data[1])
    for k in kernels:
        for t in threads:
            timing = interleaved_latency(files, image, t, k, runs, warmup, rounds)
            report["latency"].append({"kernels": k, "threads": t, "files": timing})
    return report
