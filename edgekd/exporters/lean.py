"""Rewrite a raw-pixel model (:class:`edgekd.models.wrappers.WithPreprocessing`) into the same
function with fewer TFLite ops, before it is exported. Each rewrite is exact (the fp32 parity bound
checks it on every export):

- **Flatten without TRANSPOSE.** ``nn.Flatten`` on an NCHW feature map larger than 1×1 reads
  channel-major; TFLite tensors are NHWC, so converters insert a TRANSPOSE before the fully
  connected layer. Flattening in NHWC order instead, with the Linear's input columns permuted to
  match, computes the same logits and maps to a plain RESHAPE + FULLY_CONNECTED.
- **Input normalization folded into the first convolution, where exact.** ``(x/255 − mean)/std``
  is ``a·x + b`` per channel. When the model's input goes only to one ungrouped convolution, the
  scale ``a`` always folds into its weights. The shift ``b`` folds into its bias only when the
  convolution pads nothing or ``b`` is 0 (``data.mean`` all zeros): zero padding of the normalized
  image is padding with the *mean* pixel, which no zero-padded convolution on raw pixels
  reproduces at the borders. Otherwise the normalization stays one op (a 1×1 depthwise
  convolution, see :class:`~edgekd.models.wrappers.WithPreprocessing`).
- **Hard-sigmoid as ADD, ReLU6, MUL.** onnx2tf writes ``nn.Hardsigmoid`` (MobileNetV3's
  squeeze-excitation gate) as ``RELU_0_TO_1`` with x/6 + 1/2 folded into the op before it; TFLite
  Micro has no ``RELU_0_TO_1``, so the int8 file of every MobileNetV3 failed the MCU check.
  ``relu6(x + 3) · 1/6`` (:class:`~edgekd.models.layers.HardSigmoidInt8`) becomes an int8 ADD with
  ReLU6 fused and a MUL, which it runs; the QAT graph uses the same ops.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgekd.models.fold import fold_normalization
from edgekd.models.layers import hardsigmoid_as_ops


class NhwcFlatten(nn.Module):
    """(B, C, H, W) → (B, H·W·C), channel fastest: the order of a TFLite NHWC tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def _flatten_inputs(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, tuple[int, ...]]:
    """Input shape of every ``nn.Flatten`` of ``model`` on ``example``."""
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def record(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:  # None: the output stays
        shapes.setdefault(mod, tuple(args[0].shape))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Flatten)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def nhwc_flatten(model: nn.Module, example: torch.Tensor) -> int:
    """Replace, in place, every ``nn.Sequential`` pair ``Flatten → Linear`` over a 4-D map larger
    than 1×1 by ``NhwcFlatten → Linear`` with permuted columns; returns how many were replaced."""
    shapes = _flatten_inputs(model, example)
    done = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            flat, fc = seq[i], seq[i + 1]
            shape = shapes.get(flat)
            if not (isinstance(flat, nn.Flatten) and isinstance(fc, nn.Linear) and shape and len(shape) == 4):
                continue
            if flat.start_dim != 1 or flat.end_dim != -1 or shape[2] * shape[3] == 1:
                continue
            _, c, h, w = shape
            with torch.no_grad():  # column c·H·W + y·W + x moves to y·W·C + x·C + c
                fc.weight.copy_(
                    fc.weight.view(fc.out_features, c, h, w).permute(0, 2, 3, 1).reshape(fc.out_features, -1)
                )
            seq[i] = NhwcFlatten()
            done += 1
    return done


def lean_for_export(wrapped: nn.Module, input_shape: tuple[int, int, int, int]) -> tuple[nn.Module, list[str]]:
    """(the rewritten raw-pixel model, the rewrites applied, e.g. ``["nhwc_flatten"]``).
    ``wrapped`` is left as it is: parity compares the files against it."""
    from edgekd.models.wrappers import WithPreprocessing

    lean = copy.deepcopy(wrapped).eval()
    applied = []
    example = torch.zeros(input_shape)
    if nhwc_flatten(lean, example):
        applied.append("nhwc_flatten")
    if hardsigmoid_as_ops(lean):
        applied.append("hardsigmoid_ops")
    if isinstance(lean, WithPreprocessing):
        folded = fold_normalization(lean, tuple(input_shape[2:]))
        if folded is not None:
            lean, applied = folded, [*applied, "folded_normalization"]
    return lean, applied
