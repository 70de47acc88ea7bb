"""``quant_report.json``: where an int8 file loses precision, layer by layer, and what would help.

For every op of the int8 file the report runs it and its float sibling (``<role>_fp32.tflite``)
on the calibration images, keeps every intermediate tensor (LiteRT's
``experimental_preserve_all_tensors``) and compares each int8 op output, dequantized, with the
float op output it corresponds to:

* ``snr_db``: 10·log10(Σ float² / Σ (float − int8)²) over all images and elements;
* ``float_min``/``float_max``: the float activation range, ``int8_min``/``int8_max`` the range the
  int8 tensor can represent (its scale and zero point), ``clipped``: the share of float values
  outside it, ``scale``/``zero_point``;
* weights (conv, depthwise, fully connected): their float range, number of scales (1 = per
  tensor) and the ratio of the largest to the smallest per-channel scale.

Ops are paired through the graph, not by position: converters schedule independent branches in
different orders (onnx2tf puts a residual block's 1×1 shortcut before its 3×3 convolutions in the
float file and after them in the int8 one), so an int8 op is paired with the first unpaired float
op of the same kind (convolutions of either kind count as one, since converters choose between
CONV_2D and DEPTHWISE_CONV_2D differently), output shape and weight count whose inputs come from
the float ops its own inputs' producers were paired with. Layout ops (TRANSPOSE, PAD, RESHAPE)
and QUANTIZE/DEQUANTIZE are looked through: one converter writes them where another folds them.
The QAT file (``student_qat_int8``) is compared with the float student before QAT, so its SNR
also counts what QAT changed in the weights.

A pair can still hold two different functions of the same signal: onnx2tf writes a hard-sigmoid
as ``RELU_0_TO_1`` of the convolution before it with ``x/6 + 1/2`` folded into that convolution's
weights, where the QAT file keeps the convolution plain and adds ``+3, ReLU6, ·1/6`` after it.
Their SNR says nothing about int8 (−4 dB for a healthy layer) and its advice would be wrong. The
same when a converter folds an add into the op (edgekd's own ``+3`` of the hard-sigmoid, folded
into the convolution's bias by onnx2tf, kept as an ADD in the QAT file). So a pair whose outputs
are linearly related (correlation ≥ 0.9) with a slope far from 1 or a shift of more than a quarter
of the int8 tensor's range (:func:`_affine_twin`) is reported unpaired, with the relation, instead
of compared: no int8 rounding, clipping or zero point scales a tensor by a third or moves it by 64
steps.

The worst layers are flagged with the likely fix, from the numbers alone (see :func:`_advice`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.fdcapture import captured_fds

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
SKIP = ("QUANTIZE", "DEQUANTIZE", "DELEGATE")
LAYOUT = ("TRANSPOSE", "PAD", "PADV2", "RESHAPE")  # moves values only: looked through when pairing
LOW_SNR_DB = 20.0  # below this a layer's int8 error is ≥ 10 % of its signal (RMS): worth a look
SHOWN = 5  # worst layers printed (and at most flagged) per file
IMAGES = 64  # calibration images the report runs: enough for stable SNRs, seconds on a small model


def float_sibling(int8_name: str) -> str:
    """``student_int8.tflite`` → ``student_fp32.tflite``; the QAT file → the float student's."""
    role = int8_name.removesuffix("_int8.tflite").removesuffix("_int16x8.tflite").removesuffix("_qat")
    return f"{role}_fp32.tflite"


def _kind(op: str) -> str:
    if op in ("AVERAGE_POOL_2D", "MEAN"):  # a global average: the QAT file writes it as a MEAN
        return "AVERAGE"
    return "CONV" if op in ("CONV_2D", "DEPTHWISE_CONV_2D") else op


class _Model:
    """One TFLite file, every tensor kept: its ops (in execution order) and their outputs per image."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert import interpreter as litert

        with captured_fds((2,)):
            self.interp = litert.Interpreter(
                model_path=str(path), experimental_preserve_all_tensors=True, num_threads=1
            )
            self.interp.allocate_tensors()
        self.input = self.interp.get_input_details()[0]
        self.graph(
            self.interp.get_tensor_details(),
            self.interp._get_ops_details(),
            {d["index"] for d in self.interp.get_input_details()},
        )

    def graph(self, tensors: list[dict[str, Any]], every: list[dict[str, Any]], inputs: set[int]) -> None:
        self.tensors = {t["index"]: t for t in tensors}
        # DELEGATE nodes (listed after the ops they replaced) repeat those ops' outputs: not producers
        self.producer = {t: op for op in every if op["op_name"] != "DELEGATE" for t in op["outputs"]}
        self.ops = [op for op in every if op["op_name"] not in SKIP]
        self.inputs = inputs

    def sources(self, op: dict[str, Any]) -> list[int | str]:
        """Where ``op``'s activation inputs come from: the producing op's ``index`` (looking through
        layout and (de)quantize ops) or ``"input"``; constants (weights, biases) are left out."""
        found: list[int | str] = []
        for t in op["inputs"]:
            while t in self.producer and self.producer[t]["op_name"] in SKIP + LAYOUT:
                t = self.producer[t]["inputs"][0]
            if t in self.producer:
                found.append(int(self.producer[t]["index"]))
            elif t in self.inputs:
                found.append("input")
        return found

    def signature(self, op: dict[str, Any]) -> tuple[Any, ...]:
        """What a paired op must share: kind, output shape, number of weights (layout-free)."""
        weights = None
        if op["op_name"] in WEIGHTED and len(op["inputs"]) > 1 and op["inputs"][1] >= 0:
            weights = int(np.prod(self.tensors[op["inputs"][1]]["shape"]))
        shape = tuple(int(s) for s in self.tensors[op["outputs"][0]]["shape"])
        if _kind(op["op_name"]) == "AVERAGE":  # (1, 1, 1, C) from a pool, (1, C) from a MEAN without keepdims
            shape = tuple(s for s in shape if s != 1)
        return _kind(op["op_name"]), shape, weights

    def run(self, image: np.ndarray) -> None:
        x = image[None].astype(np.float32)
        scale, zero = self.input["quantization"]
        if np.dtype(self.input["dtype"]) != np.float32:
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self.input["dtype"])
        self.interp.set_tensor(self.input["index"], x)
        self.interp.invoke()

    def output(self, op: dict[str, Any]) -> np.ndarray:
        """The op's first output as float (dequantized when it is an integer tensor)."""
        index = op["outputs"][0]
        value = self.interp.get_tensor(index).astype(np.float32)
        scale, zero = self.tensors[index]["quantization"]
        return (value - zero) * scale if scale else value


def _pairs(int8: _Model, ref: _Model) -> list[tuple[int, int | None]]:
    """(int8 op position, float op position or None), paired through the graph (module docstring)."""
    position = {op["index"]: j for j, op in enumerate(ref.ops)}
    paired: dict[int, int] = {}  # int8 op index → float op index
    used: set[int] = set()
    for op in int8.ops:
        if op["op_name"] in LAYOUT:
            continue
        signature = int8.signature(op)
        # producers not paired (an op one converter has and the other lacks) constrain nothing
        wanted = [s if s == "input" else paired[s] for s in int8.sources(op) if s == "input" or s in paired]
        for cand in ref.ops:
            if cand["index"] in used or cand["op_name"] in LAYOUT or ref.signature(cand) != signature:
                continue
            have = ref.sources(cand)
            if all(wanted.count(s) <= have.count(s) for s in wanted):
                paired[op["index"]] = cand["index"]
                used.add(cand["index"])
                break
    return [(i, position[paired[op["index"]]] if op["index"] in paired else None) for i, op in enumerate(int8.ops)]


def _weights(model: _Model, op: dict[str, Any]) -> dict[str, Any] | None:
    if op["op_name"] not in WEIGHTED or len(op["inputs"]) < 2:
        return None
    t = model.tensors[op["inputs"][1]]
    q = t.get("quantization_parameters", {})
    scales = np.asarray(q.get("scales", []), dtype=np.float64)
    w = model.interp.get_tensor(t["index"]).astype(np.float64)
    if scales.size:
        axis = int(q.get("quantized_dimension", 0))
        shape = [1] * w.ndim
        if scales.size > 1:
            shape[axis] = scales.size
        w = w * scales.reshape(shape)
    return {
        "weight_min": float(w.min()),
        "weight_max": float(w.max()),
        "weight_scales": int(scales.size),
        "weight_scale_ratio": float(scales.max() / max(scales.min(), 1e-30)) if scales.size > 1 else 1.0,
    }


def _advice(layer: dict[str, Any]) -> str:
    """The likely fix for a weak layer, from its numbers."""
    if layer.get("weight_scales") == 1:
        return "per-channel weights"
    if layer["clipped"] > 0.01:
        return "wider activation range: min-max calibration on more images, or QAT"
    spread = layer["float_max"] - layer["float_min"]
    if layer.get("p999_abs", 0) and spread > 0 and 2 * layer["p999_abs"] < 0.25 * spread:
        return "outliers stretch the range: percentile or MSE calibration, or QAT"
    if layer["snr_db"] is not None and layer["snr_db"] < 12:
        return "int16 activations (16x8) for this model, or QAT"
    return "QAT (quantization-aware distillation)"


SAME_SIGNAL = 0.9  # correlation of a pair's outputs above which they carry one signal
SLOPE = (0.75, 4 / 3)  # int8 rounding and clipping never scale a tensor by more than this
SHIFT = 0.25  # nor move it by more than this share of its int8 range (64 steps)


def _fit_sums(f: np.ndarray, q: np.ndarray, unsaturated: np.ndarray) -> tuple[float, ...]:
    """The sums :func:`_affine_twin` takes, over the elements where the int8 value is not at either
    end of its range (``unsaturated``): clipping is int8's own error, and would steepen the fit."""
    f, q = f[unsaturated], q[unsaturated]
    return (f.size, q.sum(), f.sum(), q @ q, f @ f, q @ f)


def _affine_twin(
    n: float, sq: float, sf: float, sqq: float, sff: float, sqf: float, span: float = 0.0
) -> tuple[float, float] | None:
    """(a, b) of ``float ≈ a·int8 + b`` when the two outputs carry one signal through another affine
    function (a converter folded a multiply or an add into the op); None when they are comparable.
    From :func:`_fit_sums`: n, Σq, Σf, Σq², Σf², Σqf; ``span``: the int8 tensor's range (255·scale,
    0 for a float tensor: no shift test)."""
    if n < 2:
        return None
    cov = sqf / n - (sq / n) * (sf / n)
    var_q, var_f = sqq / n - (sq / n) ** 2, sff / n - (sf / n) ** 2
    if var_q <= 0 or var_f <= 0:
        return None  # a constant output: nothing to fit
    slope = cov / var_q
    shift = sf / n - slope * sq / n
    if cov / math.sqrt(var_q * var_f) < SAME_SIGNAL:
        return None
    if not SLOPE[0] <= slope <= SLOPE[1] or (span > 0 and abs(shift) > SHIFT * span):
        return slope, shift
    return None


def layer_report(int8_path: Path, float_path: Path | None, images: np.ndarray) -> dict[str, Any]:
    """The report of one int8 file, on ``images`` (uint8 NHWC raw pixels)."""
    int8 = _Model(int8_path)
    ref = _Model(float_path) if float_path is not None and Path(float_path).is_file() else None
    pairs = _pairs(int8, ref) if ref is not None else [(i, None) for i in range(len(int8.ops))]
    n = len(int8.ops)
    sig, err = np.zeros(n), np.zeros(n)
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    clipped, count = np.zeros(n), np.zeros(n)
    moments = np.zeros((n, 6))  # per pair: count, Σq, Σf, Σq², Σf², Σqf (see _affine_twin)
    qlo, qhi = np.full(n, np.inf), np.full(n, -np.inf)  # the int8 outputs' own range: for an affine twin
    samples: list[list[np.ndarray]] = [[] for _ in range(n)]
    for image in images:
        int8.run(image)
        if ref is not None:
            ref.run(image)
        for i, j in pairs:
            q = int8.output(int8.ops[i])
            f = ref.output(ref.ops[j]) if j is not None else q
            scale, zero = int8.tensors[int8.ops[i]["outputs"][0]]["quantization"]
            lo[i], hi[i] = min(lo[i], float(f.min())), max(hi[i], float(f.max()))
            qlo[i], qhi[i] = min(qlo[i], float(q.min())), max(qhi[i], float(q.max()))
            unsaturated = np.ones(q.shape, dtype=bool)
            if scale:
                clipped[i] += np.count_nonzero(
                    (f < (-128 - zero) * scale - 0.5 * scale) | (f > (127 - zero) * scale + 0.5 * scale)
                )
                unsaturated = (q > (-128 - zero + 0.5) * scale) & (q < (127 - zero - 0.5) * scale)
            count[i] += f.size
            if j is not None:
                f64, q64 = f.astype(np.float64).ravel(), q.astype(np.float64).ravel()
                sig[i] += float(np.sum(f64**2))
                err[i] += float(np.sum((f64 - q64) ** 2))
                if f64.size == q64.size:
                    moments[i] += _fit_sums(f64, q64, unsaturated.ravel())
            samples[i].append(np.abs(f).ravel()[:: max(1, f.size // 256)])
    layers = []
    twins = {}  # int8 op position → (a, b) of its float twin's a·int8 + b
    for i, j in pairs:
        scale = int8.tensors[int8.ops[i]["outputs"][0]]["quantization"][0]
        twin = _affine_twin(*moments[i], span=255 * scale) if j is not None else None
        if twin is not None:
            twins[i] = twin
    pairs = [(i, None if i in twins else j) for i, j in pairs]
    for i in twins:  # reported like an unpaired op: its own range, nothing outside it
        lo[i], hi[i], clipped[i] = qlo[i], qhi[i], 0.0
    for i, j in pairs:
        op = int8.ops[i]
        t = int8.tensors[op["outputs"][0]]
        scale, zero = t["quantization"]
        snr = None
        if j is not None:
            snr = round(10 * math.log10(sig[i] / err[i]), 2) if err[i] > 0 else (float("inf") if sig[i] > 0 else None)
            snr = None if snr == float("inf") else snr  # exact: no error to speak of (JSON has no infinity)
        layer: dict[str, Any] = {
            "index": i,
            "op": op["op_name"],
            "tensor": t["name"][-80:],
            "shape": [int(s) for s in t["shape"]],
            "snr_db": snr,
            "exact": bool(j is not None and err[i] == 0),
            "float_min": round(float(lo[i]), 6),
            "float_max": round(float(hi[i]), 6),
            "scale": float(scale),
            "zero_point": int(zero),
            "int8_min": round(float((-128 - zero) * scale), 6),
            "int8_max": round(float((127 - zero) * scale), 6),
            "clipped": round(float(clipped[i] / max(count[i], 1)), 6),
            "p999_abs": round(float(np.quantile(np.concatenate(samples[i]), 0.999)), 6) if samples[i] else 0.0,
            "reference": "float" if j is not None else None,
            "reference_tensor": ref.tensors[ref.ops[j]["outputs"][0]]["name"][-80:] if j is not None else None,
        }
        if i in twins:  # paired, but the float op computes another affine function of it (module docstring)
            a, b = twins[i]
            sign = "+" if b >= 0 else "−"
            layer["unpaired"] = f"the float op's output is {a:.3g}·this {sign} {abs(b):.3g} (folded in)"
        layer.update(_weights(int8, op) or {})
        layers.append(layer)
    scored = sorted((x for x in layers if x["snr_db"] is not None), key=lambda x: x["snr_db"])
    worst = [x for x in scored if x["snr_db"] < LOW_SNR_DB][:SHOWN]
    for x in worst:
        x["flag"] = _advice(x)
    return {
        "reference": Path(float_path).name if ref is not None else None,
        "images": int(len(images)),
        "matched_layers": sum(1 for _, j in pairs if j is not None),
        "layers": layers,
        "worst": [x["index"] for x in worst],
    }


def bundle_quant_report(folder: Path, images: np.ndarray) -> dict[str, Any] | None:
    """``quant_report.json``'s content for every int8 file in ``folder``; None when there is none."""
    files = sorted(p.name for p in folder.glob("*.tflite") if p.name.endswith(("_int8.tflite", "_int16x8.tflite")))
    if not files:
        return None
    return {
        "images": int(len(images)),
        "split": "train (calibration images)",
        "low_snr_db": LOW_SNR_DB,
        "files": {name: layer_report(folder / name, folder / float_sibling(name), images) for name in files},
    }


def print_quant_report(report: dict[str, Any]) -> None:
    from edgekd.ui import print_table

    for name, r in report["files"].items():
        shown = sorted((x for x in r["layers"] if x["snr_db"] is not None), key=lambda x: x["snr_db"])[:SHOWN]
        rows = [
            [
                x["index"],
                x["op"],
                f"{x['snr_db']:.1f}",
                f"[{x['float_min']:.3g}, {x['float_max']:.3g}]",
                f"{x['scale']:.3g}",
                f"{100 * x['clipped']:.2f}",
                x.get("weight_scales", "—"),
                x.get("flag", ""),
            ]
            for x in shown
        ]
        if not rows:  # no float sibling in the bundle (e.g. export.formats without tflite_fp32): nothing to compare
            print(f"int8 layers of {name}: no SNR (no float file in the bundle to compare with; add tflite_fp32)")
            continue
        title = f"int8 layers of {name} vs {r['reference']} ({r['images']} calibration images, lowest SNR first)"
        print_table(title, ["#", "op", "SNR dB", "float range", "scale", "clipped %", "w scales", "likely fix"], rows)
        twins = [x["index"] for x in r["layers"] if "unpaired" in x]
        if twins:
            print(
                f"  not compared: {len(twins)} op(s) (# {', '.join(map(str, twins[:8]))}"
                f"{', …' if len(twins) > 8 else ''}) whose float twin computes a scaled or shifted copy "
                "(a multiply or add folded in, e.g. of a hard-sigmoid); see quant_report.json"
            )
