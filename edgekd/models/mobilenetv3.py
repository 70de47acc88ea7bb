"""A MobileNetV3-small-style student (Howard et al. 2019) sized for 32×32 inputs.

MobileNetV3-small's block table (inverted residuals, 3×3/5×5 depthwise convolutions, squeeze-
excitation with a hard-sigmoid gate, hard-swish in the later blocks) with a CIFAR-style start: the
stem and the first block keep stride 1, so a 32×32 input leaves the last block at 4×4 instead of
torchvision's 1×1 (torchvision's ``mobilenet_v3_small`` on CIFAR-10 sees almost nothing after its
fifth stride-2 layer). Strided convolutions pad TensorFlow's way by default (see
:mod:`edgekd.models.layers`).

It is the registry's hard case for int8: hard-swish and the squeeze-excitation product leave
activations with wide, skewed ranges that post-training int8 handles worse than ReLU networks —
the student that ``distill.qat`` is measured on in README.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.layers import DEFAULT_PADDING, GlobalAvgPool, check_padding, conv2d
from edgekd.models.registry import MODELS

# MobileNetV3-small's table (kernel, expanded channels, output channels, squeeze-excitation,
# activation, stride); the first two strides are 1 here (torchvision: 2, 2) for 32×32 inputs.
SMALL_BLOCKS = [
    (3, 16, 16, True, "relu", 1),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 2),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
]


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "hardswish": nn.Hardswish}[name](inplace=True)


def _divisible(c: float, divisor: int = 8) -> int:
    """Round to a multiple of 8 (SIMD-friendly), never below 8 nor more than 10 % under ``c``."""
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * c else out


class SqueezeExcitation(nn.Module):
    """Channel gate: global average → 1×1 reduce (ReLU) → 1×1 expand → hard-sigmoid → scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = _divisible(channels / 4)
        self.pool = GlobalAvgPool()
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class Block(nn.Module):
    def __init__(
        self, c_in: int, kernel: int, hidden: int, c_out: int, se: bool, act: str, stride: int, padding: str
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), _act(act)]
        layers += [conv2d(hidden, hidden, kernel, stride, padding, groups=hidden), nn.BatchNorm2d(hidden), _act(act)]
        if se:
            layers.append(SqueezeExcitation(hidden))
        layers += [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3Small(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: float = 1.0,
        head_channels: int = 1024,
        dropout: float = 0.2,
        padding: str = DEFAULT_PADDING,
    ) -> None:
        super().__init__()
        self.padding_mode_name = check_padding(padding)  # recorded in checkpoints (edgekd.checkpoint.model_payload)
        if not 0 < width <= 4:
            raise ValueError(f"width must be in (0, 4], got {width!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        c = _divisible(16 * width)
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.Hardswish(inplace=True))
        ]
        for kernel, hidden, c_out, se, act, stride in SMALL_BLOCKS:
            c_next = _divisible(c_out * width)
            layers.append(Block(c, kernel, _divisible(hidden * width), c_next, se, act, stride, padding))
            c = c_next
        last = _divisible(576 * width)
        layers.append(
            nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.Hardswish(inplace=True))
        )
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        head = _divisible(head_channels * width)
        self.classifier = nn.Sequential(
            nn.Linear(last, head), nn.Hardswish(inplace=True), nn.Dropout(dropout), nn.Linear(head, num_classes)
        )
        for m in self.modules():  # torchvision's MobileNetV3 initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@MODELS.register("mobilenetv3_small")
def mobilenetv3_small(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    width: float = 0.5,
    head_channels: int = 1024,
    dropout: float = 0.2,
    padding: str = DEFAULT_PADDING,
) -> nn.Module:
    """MobileNetV3-small-style student for 32×32 inputs: hard-swish, squeeze-excitation, width 0.5."""
    return MobileNetV3Small(
        num_classes, in_channels, width=width, head_channels=head_channels, dropout=dropout, padding=padding
    )
