"""Layers whose int8 TFLite graph is what a hand-written TFLite model would be.

Padding of strided convolutions (``padding`` argument of the registry's CNNs):

- ``same`` (the default for new models): TensorFlow's SAME padding, the extra row/column at the
  bottom/right. A 3×3 stride-2 convolution on an even input pads 0 on top/left and 1 at
  bottom/right, which TFLite's CONV_2D/DEPTHWISE_CONV_2D do themselves: no PAD op in the graph.
- ``torch``: PyTorch's symmetric ``padding=k//2``. A stride-2 convolution then reads a different
  window than SAME does, so converters write an explicit PAD op before it. Checkpoints written
  before the padding modes existed were trained this way and are rebuilt with it
  (:func:`edgekd.checkpoint.build_model`).

Stride-1 convolutions with odd kernels pad symmetrically in both modes (SAME is symmetric there).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

PADDINGS = ("same", "torch")
DEFAULT_PADDING = "same"  # new models; a checkpoint without a recorded padding mode means "torch"


def set_bn_momentum(model: nn.Module, momentum: float | None) -> int:
    """Set every batch-norm layer's running-statistics momentum (PyTorch's convention: the new
    batch's weight); None leaves the model's own. Returns how many layers were set. torchvision's
    MobileNetV3 builds its BN with 0.01, tuned for ImageNet-length runs: on a short recipe the
    running statistics barely leave their initial values and the eval-mode model stays at chance."""
    if momentum is None:
        return 0
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.momentum = momentum
    return len(layers)


def check_padding(padding: str) -> str:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    return padding


def check_width(width: float) -> float:
    """A channel multiplier (``width`` of the plain, ResNet and MobileNet families): a number above
    0. The channel counts are clamped to at least one (or eight) per layer, so a width of 0 or -1
    built a model of one-channel layers that trained to chance and exited 0."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a number above 0, got {width!r}")
    return width


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one axis under TensorFlow's SAME rule."""
    out = -(-size // stride)  # ceil
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow SAME padding (computed from the input size at each call).
    Same parameters and state-dict keys as ``nn.Conv2d``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom = same_pads(int(x.shape[-2]), kh, sh, dh)
        left, right = same_pads(int(x.shape[-1]), kw, sw, dw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))  # the ONNX exporter folds this into the Conv's pads
        return super().forward(x)


def conv2d(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    padding: str = DEFAULT_PADDING,
    groups: int = 1,
    bias: bool = False,
) -> nn.Conv2d:
    """A ``kernel``×``kernel`` convolution padded per ``padding`` (see the module docstring)."""
    if check_padding(padding) == "same" and stride > 1:
        return SameConv2d(c_in, c_out, kernel, stride, groups=groups, bias=bias)
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=bias)


class HardSigmoidInt8(nn.Module):
    """``hardsigmoid(x) = relu6(x + 3) / 6`` written as those three ops, for int8 files. TFLite has
    no hard-sigmoid kernel: litert-torch lowers ``aten.hardsigmoid`` to float arithmetic between a
    DEQUANTIZE and a QUANTIZE, and onnx2tf writes ``RELU_0_TO_1`` after the op before it (x/6 + 1/2
    folded into its weights), which TFLite Micro lacks. As an add, a ReLU6 and a multiply by a
    constant, both converters write int8 ADD (ReLU6 fused) and MUL, which TFLite Micro runs.
    The same function (to float rounding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) * (1.0 / 6.0)


def replace_modules(model: nn.Module, kind: type[nn.Module], make: Callable[[], nn.Module]) -> int:
    """Replace every ``kind`` module inside ``model`` (in place, at any depth) by ``make()``; how many."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, kind):
            setattr(model, name, make())
            count += 1
        else:
            count += replace_modules(child, kind, make)
    return count


def hardsigmoid_as_ops(model: nn.Module) -> int:
    """Replace every ``nn.Hardsigmoid`` in ``model`` (in place) by :class:`HardSigmoidInt8`; how many."""
    return replace_modules(model, nn.Hardsigmoid, HardSigmoidInt8)


class GlobalAvgPool(nn.Module):
    """Global average pooling to (B, C, 1, 1) written as one full-window average pool, which ONNX
    and TFLite keep as AVERAGE_POOL_2D (``nn.AdaptiveAvgPool2d(1)`` becomes a MEAN). No parameters:
    a drop-in replacement in existing checkpoints."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, (int(x.shape[-2]), int(x.shape[-1])))  # (B, C, H, W) → (B, C, 1, 1)
