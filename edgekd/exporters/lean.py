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

from edgekd.models.layers import GlobalAvgPool, SameConv2d, hardsigmoid_as_ops, same_pads


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


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """(path, conv) when the model's input feeds exactly one ``nn.Conv2d`` and nothing else."""
    from torch import fx

    class Tracer(fx.Tracer):  # our layers read input sizes as ints: kept whole, like torch's own
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, (SameConv2d, GlobalAvgPool)) or super().is_leaf_module(m, qualname)

    try:
        graph = Tracer().trace(model)
    except Exception:  # noqa: BLE001 - a model fx cannot trace (data-dependent control flow): nothing to fold
        return None
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1 or len(inputs[0].users) != 1:
        return None
    user = next(iter(inputs[0].users))
    if user.op != "call_module":
        return None
    conv = model.get_submodule(user.target)
    return (user.target, conv) if type(conv) in (nn.Conv2d, SameConv2d) else None


def _pads_nothing(conv: nn.Conv2d, size: tuple[int, int]) -> bool:
    if isinstance(conv, SameConv2d):
        return not any(
            same_pads(n, k, s, d) != (0, 0) for n, k, s, d in zip(size, conv.kernel_size, conv.stride, conv.dilation)
        )
    return conv.padding_mode == "zeros" and all(p == 0 for p in conv.padding) and not isinstance(conv.padding, str)


def fold_normalization(wrapped: nn.Module, image_size: tuple[int, int]) -> nn.Module | None:
    """``wrapped.model`` with ``wrapped.normalize`` folded into its first convolution, or None
    where that would not be exact (see the module docstring)."""
    norm: nn.Conv2d = wrapped.normalize
    scale, shift = norm.weight.detach().view(-1), norm.bias.detach()  # a, b per channel
    model = copy.deepcopy(wrapped.model)
    found = _first_conv(model)
    if found is None:
        return None
    path, conv = found
    if conv.groups != 1 or conv.in_channels != scale.numel():
        return None
    if bool(shift.abs().max() > 0) and not _pads_nothing(conv, image_size):
        return None
    with torch.no_grad():
        weight = conv.weight.detach().clone()  # (O, C, kh, kw)
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        bias += (weight * shift.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
        folded = copy.deepcopy(conv)
        folded.weight = nn.Parameter(weight * scale.view(1, -1, 1, 1), requires_grad=False)
        folded.bias = nn.Parameter(bias, requires_grad=False)
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, folded)
    return model.eval()


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
