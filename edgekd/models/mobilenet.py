"""A MobileNetV2-style small student (Sandler et al. 2018), sized for 32×32 inputs and MCUs.

Inverted residual blocks (1×1 expand → 3×3 depthwise → 1×1 linear projection) with a CIFAR-style
stem (stride 1) and three stride-2 stages. ``act`` is ``relu`` (default) or ``relu6``; both fuse
into the int8 conv as a clamp. Measured as a KD student on digits (resnet20 teacher, 30 epochs,
seeds 0 and 1, full-integer int8 vs PyTorch on the 359 test images): ReLU top-1 agreement 100 %,
max |Δlogit| 0.65 / 0.60; ReLU6 100 %, 0.40 / 0.40 — ReLU6's bounded range did not hurt int8 here.
Measure again on your data before switching (`edgekd export` prints the int8 agreement).
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.layers import DEFAULT_PADDING, GlobalAvgPool, check_padding, check_width, conv2d
from edgekd.models.registry import MODELS

# (expansion t, output channels c, repeats n, first stride s) — a trimmed MobileNetV2 table
SMALL_STAGES = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1), (6, 160, 1, 2)]


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "relu6": nn.ReLU6}[name](inplace=True)


class InvertedResidual(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, stride: int, expand: int, act: str, padding: str = DEFAULT_PADDING
    ) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), _act(act)]
        layers += [
            conv2d(hidden, hidden, 3, stride, padding, groups=hidden),
            nn.BatchNorm2d(hidden),
            _act(act),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2Small(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: float = 0.5,
        last_channels: int = 256,
        act: str = "relu",
        padding: str = DEFAULT_PADDING,
    ) -> None:
        super().__init__()
        self.padding_mode_name = check_padding(padding)  # recorded in checkpoints (edgekd.checkpoint.model_payload)
        if act not in ("relu", "relu6"):
            raise ValueError(f"act must be relu or relu6, got {act!r}")
        check_width(width)

        def ch(c: int) -> int:  # round to a multiple of 8 (fast on SIMD kernels), never below 8
            return max(8, int(c * width + 4) // 8 * 8)

        c = ch(32)
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), _act(act))
        ]
        for t, c_out, n, s in SMALL_STAGES:
            for i in range(n):
                layers.append(InvertedResidual(c, ch(c_out), s if i == 0 else 1, t, act, padding))
                c = ch(c_out)
        last = max(c, int(last_channels * max(1.0, width)))
        layers.append(nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), _act(act)))
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@MODELS.register("mobilenetv2_small")
def mobilenetv2_small(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    width: float = 0.5,
    act: str = "relu",
    padding: str = DEFAULT_PADDING,
) -> nn.Module:
    """MobileNetV2-style student: trimmed stage table, width 0.5, ReLU (int8-friendly), SAME-padded stride-2 convs."""
    return MobileNetV2Small(num_classes, in_channels, width=width, act=act, padding=padding)
