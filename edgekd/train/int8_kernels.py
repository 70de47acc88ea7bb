"""TFLite's integer kernels where they do not round as a float quantize/dequantize graph does.

The QAT student's reference graph (:meth:`edgekd.train.qat.QATStudent.reference`) is a QDQ graph:
each op runs in float between a dequantize and a quantize. For most TFLite int8 ops that rounds
exactly as the kernel does. HARD_SWISH is the exception: its kernel runs a 16-bit fixed-point
form (``tensorflow/lite/kernels/internal/reference/hard_swish.h``, the same code in LiteRT's
builtin kernels and in TFLite Micro; LiteRT's default CPU path matched it on every value
measured). It lands one step away from exact rounding on ~0.1 % of values, and through
MobileNetV3's 11 blocks those steps changed the top-1 class of ~3 % of images.

The code below follows that reference step for step (multiplier quantization, 16-bit
saturating and rounding multiplies, the shift of the relu-ish factor). For an int8 input it
is exact as a 256-entry table per op, built once when the graph is rewritten.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

_DQ = "quantized_decomposed.dequantize_per_tensor.default"
_Q = "quantized_decomposed.quantize_per_tensor.default"
_HARDSWISH = ("aten.hardswish.default", "aten.hardswish_.default")


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


def emulate_integer_kernels(graph: Any) -> int:
    """Replace each hard-swish of a converted (QDQ) graph that sits between an int8 dequantize and
    quantize with :class:`IntegerHardSwish`; returns how many. For parity references only: the
    converter must see the plain ``aten.hardswish`` to write a HARD_SWISH op."""
    replaced = 0
    for n in list(graph.graph.nodes):
        if n.op != "call_function" or str(n.target) not in _HARDSWISH:
            continue
        src = n.args[0]
        users = list(n.users)
        if not isinstance(src, torch.fx.Node) or str(src.target) != _DQ or len(users) != 1:
            continue
        q = users[0]
        if str(q.target) != _Q or any(isinstance(a, torch.fx.Node) for a in (*src.args[1:3], *q.args[1:3])):
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
    if replaced:
        graph.graph.lint()
        graph.recompile()
    return replaced
