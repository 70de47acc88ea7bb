"""The TFLite interpreter: ai-edge-litert (LiteRT) first, tflite-runtime where that is what is installed.

int8 models take int8 input: raw pixels are quantized with the input tensor's own scale and zero
point, and int8 outputs are dequantized with the output tensor's, so callers always see float logits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError, first_line
from edgekd.fdcapture import captured_fds
from edgekd.runtimes.base import Runner, RuntimeMissing


def interpreter_class() -> tuple[Any, str]:
    """(Interpreter class, "runtime version") of the first TFLite runtime found."""
    try:
        from importlib.metadata import version

        from ai_edge_litert import interpreter as litert

        return litert.Interpreter, f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as tflr  # the older Pi package

        return tflr.Interpreter, f"tflite-runtime {getattr(tflr, '__version__', '?')}"
    except ImportError:
        raise RuntimeMissing("no TFLite runtime installed (pip install ai-edge-litert, or tflite-runtime)") from None


_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)' version '(\d+)'")


def explain_load_error(path: Path, exc: Exception, runtime: str) -> EdgekdError:
    """One line that says what to do, e.g. for an op version an older runtime lacks."""
    text = str(exc)
    m = _MISSING_OP.search(text)
    if m:
        op, ver = m.groups()
        return EdgekdError(
            f"{path.name} needs TFLite op {op} version {ver}, which {runtime} does not have; "
            "upgrade the runtime on this device (pip install -U ai-edge-litert) or export with an older converter"
        )
    return EdgekdError(f"cannot load {path.name} in {runtime}: {first_line(exc, 200)}")


# integer I/O dtypes: int8/uint8, and int16 for 16×8 files (int16 activations, int8 weights)
QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


class TFLiteRunner(Runner):
    layout = "NHWC"

    def __init__(self, path: Path, threads: int | None) -> None:
        super().__init__(path, threads)
        cls, self.runtime = interpreter_class()
        try:
            # num_threads must always be given: LiteRT otherwise runs one thread. The capture
            # keeps the runtime's "Created TensorFlow Lite XNNPACK delegate" line off the report.
            with captured_fds((2,)):
                self.interpreter = cls(model_path=str(path), num_threads=threads or 1)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise explain_load_error(path, exc, self.runtime) from None
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.in_scale, self.in_zero = self.inp["quantization"]
        self.out_scale, self.out_zero = self.out["quantization"]

    @property
    def quantized_input(self) -> bool:
        return np.dtype(self.inp["dtype"]) in QUANTIZED

    def prepare(self, image: np.ndarray) -> np.ndarray:
        x = image[None].astype(np.float32)  # (1, H, W, C) raw pixels
        if self.quantized_input:
            info = np.iinfo(self.inp["dtype"])
            x = np.clip(np.round(x / self.in_scale + self.in_zero), info.min, info.max)
        return x.astype(self.inp["dtype"])

    def invoke(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.inp["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.out["index"])

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        if np.dtype(self.out["dtype"]) in QUANTIZED and self.out_scale:
            return (y.astype(np.float32) - self.out_zero) * self.out_scale
        return y.astype(np.float32)

    @staticmethod
    def _quant(detail: dict[str, Any]) -> dict[str, Any]:
        scale, zero = detail["quantization"]
        quantized = np.dtype(detail["dtype"]) in QUANTIZED and scale
        return {"scale": float(scale) if quantized else None, "zero_point": int(zero) if quantized else None}

    @property
    def input_details(self) -> dict[str, Any]:
        return {
            "name": self.inp["name"],
            "shape": [int(v) for v in self.inp["shape"]],
            "dtype": np.dtype(self.inp["dtype"]).name,
            "layout": self.layout,
            **self._quant(self.inp),
        }

    @property
    def output_details(self) -> dict[str, Any]:
        return {
            "shape": [int(v) for v in self.out["shape"]],
            "dtype": np.dtype(self.out["dtype"]).name,
            **self._quant(self.out),
        }


def model_ops(path: str | Path) -> list[str]:
    """The builtin ops of a .tflite file in graph order, deduplicated (for support checks).

    Read from an interpreter without the default XNNPACK delegate, which would otherwise replace
    the nodes it takes with a single DELEGATE op."""
    cls, runtime = interpreter_class()
    kwargs: dict[str, Any] = {}
    try:
        from ai_edge_litert.interpreter import OpResolverType

        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    except ImportError:
        pass
    try:
        with captured_fds((2,)):
            interpreter = cls(model_path=str(path), **kwargs)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise explain_load_error(Path(path), exc, runtime) from None
    return list(dict.fromkeys(d["op_name"] for d in interpreter._get_ops_details()))


def undelegated_ops(path: str | Path, threads: int = 1) -> list[str]:
    """The builtin ops of a .tflite file that the runtime's default delegate (XNNPACK) leaves to its
    plain kernels, deduplicated, in graph order.

    The interpreter lists the original nodes and, after them, one DELEGATE node per partition the
    delegate took (inputs: the partition's inputs, outputs: what leaves it). A node still runs on
    its own exactly when one of its outputs is not produced by a DELEGATE node and is needed by a
    graph output, a node that runs on its own, or a DELEGATE node; found walking backwards."""
    cls, runtime = interpreter_class()
    try:
        with captured_fds((2,)):
            interpreter = cls(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise explain_load_error(Path(path), exc, runtime) from None
    nodes = interpreter._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    produced_by_delegate = {int(t) for n in delegates for t in n["outputs"]}
    needed = {int(d["index"]) for d in interpreter.get_output_details()} | {
        int(t) for n in delegates for t in n["inputs"]
    }
    own = []
    for node in reversed([n for n in nodes if n["op_name"] != "DELEGATE"]):
        outputs = {int(t) for t in node["outputs"]} - produced_by_delegate
        if outputs & needed:
            own.append(node)
            needed |= {int(t) for t in node["inputs"] if int(t) >= 0}
    return list(dict.fromkeys(n["op_name"] for n in reversed(own)))


def full_integer_problems(path: str | Path) -> list[str]:
    """Why ``path`` is not a full-integer model (empty when it is): int8 input and output tensors,
    no DEQUANTIZE op, and no float tensor anywhere (weights, activations, constants). A QUANTIZE
    between two integer tensors is a requantization (e.g. to the one scale an AVERAGE_POOL_2D
    needs), which TFLite Micro runs; one that reads a float tensor is caught by the float check.
    A "dynamic range" file fails all three, which is how TFLite Micro comes to reject it."""
    cls, runtime = interpreter_class()
    try:
        with captured_fds((2,)):
            interpreter = cls(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise explain_load_error(Path(path), exc, runtime) from None
    problems = []
    for kind, details in (("input", interpreter.get_input_details()), ("output", interpreter.get_output_details())):
        problems += [
            f"{kind} {d['name']} is {np.dtype(d['dtype']).name}" for d in details if np.dtype(d["dtype"]) != np.int8
        ]
    boundary = [op for op in model_ops(path) if op == "DEQUANTIZE"]
    if boundary:
        problems.append(f"has {', '.join(boundary)} ops")
    floats = [d["name"] for d in interpreter.get_tensor_details() if np.dtype(d["dtype"]).kind == "f"]
    if floats:
        problems.append(f"{len(floats)} float tensor(s), e.g. {floats[0][:80]!r}")
    return problems
