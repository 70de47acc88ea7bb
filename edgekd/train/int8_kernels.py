"""TFLite's integer kernels where they do not round as a float quantize/dequantize graph does.

The QAT student's reference graph (:meth:`edgekd.train.qat.QATStudent.reference`) is a QDQ graph:
each op runs in float between a dequantize and a quantize. Two kinds of op round otherwise in
the int8 file, and are replaced here by their integer form:

* HARD_SWISH runs a 16-bit fixed-point form (``tensorflow/lite/kernels/internal/reference/
  hard_swish.h``, the same code in LiteRT's builtin kernels and in TFLite Micro; LiteRT's default
  CPU path leaves the op to them). It lands one step away from exact rounding on ~0.1 % of
  values, and through MobileNetV3's 11 blocks those steps changed the top-1 class of ~3 % of
  images. The code below follows that reference step for step (multiplier quantization, 16-bit
  saturating and rounding multiplies, the shift of the relu-ish factor); for an int8 input it is
  exact as a 256-entry table per op, built once when the graph is rewritten.
* CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED sum int8 × int8 products exactly in int32;
  LiteRT's default CPU path (XNNPACK) then requantizes in float32 (accumulator × per-channel
  scale, round half to even). The QDQ graph sums float32 products instead and lands a step off
  where the result lies within float32 error of a half step (0.066 % of the values of a small
  CNN). The integer form sums in float64 (exact for int8 products) and requantizes as XNNPACK.
  LiteRT's builtin kernels (ruy, gemmlowp-style fixed point, round half up) and the reference
  ones (TFLite Micro, round half away from zero) differ from both near half steps: the reference
  is exact for the runtime that checks parity, not for every runtime.
* ADD of two int8 tensors: XNNPACK scales each input by a 20–21-bit multiplier and rounds half
  up (:class:`IntegerAdd`); a sum within ~10⁻⁶ of a half step rounds the other way than in float.
  MUL, MEAN and SUM matched the QDQ graph on their own inputs in every file measured (every op's
  output made a graph output, so XNNPACK's own tensors could be read) and stay in float.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.train.pt2e import DQ_CHANNEL, DQ_TENSOR, Q_CHANNEL, Q_TENSOR, graph_constant

_HARDSWISH = ("aten.hardswish.default", "aten.hardswish_.default")
_CONV = "aten.conv2d.default"
_LINEAR = "aten.linear.default"
_ADD = ("aten.add.Tensor",)


def _quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (Q31 multiplier, exponent), round half away from zero."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    fixed = int(math.floor(abs(q) * 2**31 + 0.5)) * (1 if q >= 0 else -1)
    if fixed == 2**31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def _down_to_int16(m32: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if m32 >= 2**31 - 1 - 2**15:
        return 2**15 - 1
    return (m32 + 2**15) >> 16


def _div_toward_zero(a: np.ndarray, b: int) -> np.ndarray:
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def _rounding_doubling_high_mul16(a: np.ndarray, b: int) -> np.ndarray:
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    return np.where((a == -(2**15)) & (b == -(2**15)), 2**15 - 1, _div_toward_zero(ab + nudge, 1 << 15))


def _doubling_high_mul16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where((a == -(2**15)) & (b == -(2**15)), 2**15 - 1, _div_toward_zero(a * b, 1 << 15))


def _saturating_left_shift16(v: np.ndarray, n: int) -> np.ndarray:
    return np.clip(v * (1 << n), -(2**15), 2**15 - 1)


def _rounding_divide_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def hardswish_table(scale_in: float, zp_in: int, scale_out: float, zp_out: int) -> np.ndarray:
    """int8 output of TFLite's HARD_SWISH for every int8 input −128…127 (index: input + 128)."""
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(scale_in)
    out_mult, out_exp = _quantize_multiplier(float(f32(hires / f32(scale_out))))
    relu_mult, relu_exp = _quantize_multiplier(float(f32(hires / (f32(3.0) / f32(32768.0)))))
    out_mult16, relu_mult16 = _down_to_int16(out_mult), _down_to_int16(relu_mult)
    x = (np.arange(-128, 128, dtype=np.int64) - zp_in) * 128  # the input on the "hires" scale
    preshift = _rounding_doubling_high_mul16(x, out_mult16)
    reluish = x
    if relu_exp > 0:
        reluish = _saturating_left_shift16(reluish, relu_exp - 1)
    reluish = _rounding_doubling_high_mul16(reluish, relu_mult16)
    if relu_exp > 0:
        reluish = _saturating_left_shift16(reluish, 1)
    if relu_exp < 0:
        reluish = _rounding_divide_by_pot(reluish, -relu_exp)
    reluish = (reluish + (1 << 15)) >> 1  # [-1, 1] → [0, 1] on 15 bits
    out = _rounding_divide_by_pot(_doubling_high_mul16(reluish, preshift), -out_exp) + zp_out
    return np.clip(out, -128, 127).astype(np.int64)


class IntegerHardSwish(nn.Module):
    """Between a dequantize and a quantize: the value whose quantization is the kernel's output."""

    def __init__(self, scale_in: float, zp_in: int, scale_out: float, zp_out: int) -> None:
        super().__init__()
        self.scale_in, self.zp_in, self.scale_out, self.zp_out = scale_in, zp_in, scale_out, zp_out
        self.register_buffer("table", torch.from_numpy(hardswish_table(scale_in, zp_in, scale_out, zp_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x / self.scale_in).long() + self.zp_in  # x is a dequantized int8 value: exact
        out = self.table[(q + 128).clamp(0, 255)]
        return ((out - self.zp_out) * self.scale_out).to(x.dtype)


_DROPOUT = ("aten.dropout.default", "aten.dropout_.default")


def _drop_inference_dropouts(graph: Any) -> int:
    """Remove each dropout of an eval-mode graph (``train=False``: the identity). The converter
    writes no op for it, so an op before it quantizes straight into the dropout's quantizer; in
    the graph it would stand between that op and its quantize (MobileNetV3's classifier:
    hard-swish → dropout → quantize) and hide the op from the rewrites below."""
    dropped = 0
    for n in list(graph.graph.nodes):
        if n.op == "call_function" and str(n.target) in _DROPOUT and len(n.args) >= 3 and n.args[2] is False:
            n.replace_all_uses_with(n.args[0])
            graph.graph.erase_node(n)
            dropped += 1
    return dropped


def emulate_integer_kernels(graph: Any) -> int:
    """Replace each hard-swish of a converted (QDQ) graph that sits between an int8 dequantize and
    quantize with :class:`IntegerHardSwish`, and each conv, linear and add likewise (see the module
    docstring); returns how many. For parity references only: the converter must see the plain
    ops to write TFLite's."""
    replaced = _drop_inference_dropouts(graph)
    for n in list(graph.graph.nodes):
        if n.op != "call_function" or str(n.target) not in _HARDSWISH:
            continue
        src = n.args[0]
        users = list(n.users)
        if not isinstance(src, torch.fx.Node) or str(src.target) != DQ_TENSOR or len(users) != 1:
            continue
        q = users[0]
        if str(q.target) != Q_TENSOR or any(isinstance(a, torch.fx.Node) for a in (*src.args[1:3], *q.args[1:3])):
            continue
        if src.args[5] != torch.int8 or q.args[5] != torch.int8:
            continue
        name = f"integer_hardswish_{replaced}"
        graph.add_submodule(
            name, IntegerHardSwish(float(src.args[1]), int(src.args[2]), float(q.args[1]), int(q.args[2]))
        )
        with graph.graph.inserting_after(n):
            new = graph.graph.call_module(name, (src,))
        n.replace_all_uses_with(new)
        graph.graph.erase_node(n)
        replaced += 1
    replaced += _emulate_integer_convs(graph)
    replaced += _emulate_integer_adds(graph)
    if replaced:
        graph.graph.eliminate_dead_code()  # the replaced ops' weight (de)quantize nodes
        graph.graph.lint()
        graph.recompile()
    return replaced


_CLAMPS = ("aten.relu.default", "aten.relu_.default", "aten.hardtanh.default", "aten.hardtanh_.default")


def _output_quantize(node: Any) -> Any:
    """The int8 quantize that ``node``'s value reaches, directly or through one ReLU/ReLU6; else None."""
    users = list(node.users)
    if len(users) == 1 and str(users[0].target) in _CLAMPS:
        users = list(users[0].users)
    if len(users) != 1 or str(users[0].target) != Q_TENSOR:
        return None
    q = users[0]
    if isinstance(q.args[1], torch.fx.Node) or q.args[5] != torch.int8:
        return None
    return q


def _emulate_integer_convs(graph: Any) -> int:
    replaced = 0
    for n in list(graph.graph.nodes):
        if n.op != "call_function" or str(n.target) not in (_CONV, _LINEAR):
            continue
        x, w = n.args[:2]
        b = n.args[2] if len(n.args) > 2 else None
        if not isinstance(x, torch.fx.Node) or str(x.target) != DQ_TENSOR or isinstance(x.args[1], torch.fx.Node):
            continue
        if x.args[5] != torch.int8 or (q := _output_quantize(n)) is None or (weights := _int_weight(graph, w)) is None:
            continue
        bias = None
        if b is not None:
            bias = _constant(graph, b)
            if bias is None:
                continue
            bias = bias.detach()
        name = f"integer_{'linear' if str(n.target) == _LINEAR else 'conv'}_{replaced}"
        conv_args = tuple(n.args[3:]) if str(n.target) == _CONV else ()
        graph.add_submodule(
            name, IntegerConv(str(n.target), *weights, bias, float(x.args[1]), float(q.args[1]), conv_args)
        )
        with graph.graph.inserting_after(n):
            new = graph.graph.call_module(name, (x,))
        n.replace_all_uses_with(new)
        graph.graph.erase_node(n)
        replaced += 1
    return replaced


class IntegerConv(nn.Module):
    """A conv2d or linear between an int8 dequantize and quantize, as LiteRT's default CPU path
    (XNNPACK) computes it: an exact int32 accumulation of the int8 input and weights plus the
    int32 bias, then ``round_half_even(float32(acc) × float32 scale)`` per output channel. The
    float graph adds float32 products instead, and lands a step off where the result lies within
    float32 error of a half step. Returns the float value whose quantization is the kernel's
    output (the quantize that follows stays in the graph, and with it any fused ReLU's clamp)."""

    def __init__(
        self,
        kind: str,
        weight: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: torch.Tensor | None,
        scale_in: float,
        scale_out: float,
        conv_args: tuple[Any, ...] = (),
    ) -> None:
        super().__init__()
        self.kind, self.scale_in, self.scale_out, self.conv_args = kind, scale_in, scale_out, conv_args
        self.register_buffer("weight", weight.double())
        step = float(scale_in) * weight_scale.double()
        self.register_buffer("bias", None if bias is None else torch.round(bias.double() / step))
        f32 = torch.float32
        # XNNPACK's per-channel requantization scale: input scale × kernel scale / output scale in float32
        scale = torch.tensor(scale_in, dtype=f32) * weight_scale.to(f32) / torch.tensor(scale_out, dtype=f32)
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x.double() / self.scale_in)  # input − zero point, exactly (x is a dequantized int8)
        if self.kind == _LINEAR:
            acc = torch.nn.functional.linear(q, self.weight, self.bias)
            scale = self.scale
        else:
            acc = torch.nn.functional.conv2d(q, self.weight, self.bias, *self.conv_args)
            scale = self.scale.view(-1, 1, 1)
        out = torch.round(acc.to(torch.float32) * scale)  # float64 sums of int products: exact
        return (out * self.scale_out).to(x.dtype)


def _constant(graph: Any, node: Any) -> torch.Tensor | None:
    """The tensor of a ``get_attr`` node; None for any other argument."""
    if not isinstance(node, torch.fx.Node) or node.op != "get_attr":
        return None
    return graph_constant(graph, str(node.target))


def _int_weight(graph: Any, w: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(int8 weight as int64, per-channel scale) of a per-channel, axis-0 weight dequantize whose
    input is a constant int8 tensor or the quantize of a constant float one; else None."""
    if not isinstance(w, torch.fx.Node) or str(w.target) != DQ_CHANNEL or w.args[3] != 0:
        return None
    scale, zp = _constant(graph, w.args[1]), _constant(graph, w.args[2])
    if scale is None or zp is None or bool((zp != 0).any()):
        return None
    src = w.args[0]
    if isinstance(src, torch.fx.Node) and str(src.target) == Q_CHANNEL:
        weight = _constant(graph, src.args[0])
        if weight is None:
            return None
        args = [_constant(graph, a) if isinstance(a, torch.fx.Node) else a for a in src.args[1:]]
        q = torch.ops.quantized_decomposed.quantize_per_channel(weight.detach(), *args)
    else:
        q = _constant(graph, src)
        if q is None:
            return None
    return q.detach().to(torch.int64), scale.detach()


def _f32_exponent(v: float) -> int:
    return int(np.array(v, dtype=np.float32).view(np.uint32)) >> 23 & 0xFF


class IntegerAdd(nn.Module):
    """An add of two int8 tensors between their dequantizes and a quantize, as XNNPACK computes it:
    each input's scale over the output's (float32) becomes a multiplier of 20–21 bits,
    ``(2^(s−1) + a·m_a + b·m_b) >> s`` (round half up). A multiplier that short is off the exact
    ratio by up to 2⁻²¹ of it: a sum within ~10⁻⁶ of a half step rounds the other way than in the
    QDQ graph (3 of 8,000 values of one MobileNetV3 residual add)."""

    def __init__(self, scale_a: float, scale_b: float, scale_out: float) -> None:
        super().__init__()
        f32 = np.float32
        a_out, b_out = f32(f32(scale_a) / f32(scale_out)), f32(f32(scale_b) / f32(scale_out))
        shift = 20 - (_f32_exponent(float(max(a_out, b_out))) - 127)
        if not 12 <= shift <= 30:
            raise ValueError(f"add scale ratio {max(a_out, b_out)} outside XNNPACK's range")
        self.scale_a, self.scale_b, self.scale_out, self.shift = scale_a, scale_b, scale_out, shift
        # float32 × a power of two is exact; lrintf rounds half to even, as np.rint
        self.mult_a, self.mult_b = int(np.rint(a_out * f32(2.0**shift))), int(np.rint(b_out * f32(2.0**shift)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        qa = torch.round(a.double() / self.scale_a).long()  # input − zero point, exactly
        qb = torch.round(b.double() / self.scale_b).long()
        acc = (1 << (self.shift - 1)) + qa * self.mult_a + qb * self.mult_b
        out = torch.div(acc, 1 << self.shift, rounding_mode="floor")  # the kernel's arithmetic shift
        return (out.double() * self.scale_out).to(a.dtype)


def _int8_dequantize(node: Any) -> bool:
    return (
        isinstance(node, torch.fx.Node)
        and str(node.target) == DQ_TENSOR
        and not isinstance(node.args[1], torch.fx.Node)
        and node.args[5] == torch.int8
    )


def _emulate_integer_adds(graph: Any) -> int:
    replaced = 0
    for n in list(graph.graph.nodes):
        if n.op != "call_function" or str(n.target) not in _ADD or len(n.args) != 2 or n.kwargs.get("alpha", 1) != 1:
            continue
        a, b = n.args
        if not (_int8_dequantize(a) and _int8_dequantize(b)) or (q := _output_quantize(n)) is None:
            continue
        try:
            module = IntegerAdd(float(a.args[1]), float(b.args[1]), float(q.args[1]))
        except ValueError:
            continue  # a ratio XNNPACK would not take: the op runs elsewhere, left in float
        name = f"integer_add_{replaced}"
        graph.add_submodule(name, module)
        with graph.graph.inserting_after(n):
            new = graph.graph.call_module(name, (a, b))
        n.replace_all_uses_with(new)
        graph.graph.erase_node(n)
        replaced += 1
    return replaced
