"""CIFAR ResNets (He et al. 2016, §4.2): 6n+2 layers in three stages of 16-32-64 channels.

``resnet8`` (n=1) has the shape of the MLPerf Tiny image-classification reference: 3×3 stem of 16,
one basic block per stage (16, 32/2, 64/2), 1×1 conv projection shortcuts where the shape changes,
global average pooling and a linear classifier. ``padding`` (:mod:`edgekd.models.layers`): ``same``
pads the stride-2 convolutions as TFLite does (no PAD op in the int8 graph), ``torch`` symmetrically.

``resnet8_s2`` moves ResNet-8's multiply-accumulates to lower resolutions: a stride-2 stem, then
stages of 32-64-128 channels at 16×16, 8×8 and 4×4 (for a 32×32 input): 12.28 M MACs against
resnet8's 12.50 M (−1.8 %), 4× the parameters. int8 kernels do far more MACs per second on few
pixels × many channels than on many pixels × 16 channels (XNNPACK: a 3×3 conv of 2.36 M MACs took
42 µs at 32×32×16, 11 µs at 16×16×32, 3.7 µs at 8×8×64), so the same MACs run faster.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.layers import DEFAULT_PADDING, GlobalAvgPool, check_padding, check_width, conv2d
from edgekd.models.registry import MODELS


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, padding: str = DEFAULT_PADDING) -> None:
        super().__init__()
        self.conv1 = conv2d(c_in, c_out, 3, stride, padding)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:  # projection (option B): exports cleanly, as in MLPerf Tiny
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int,
        in_channels: int,
        width: float = 1.0,
        padding: str = DEFAULT_PADDING,
        channels: tuple[int, int, int] = (16, 32, 64),
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        self.padding_mode_name = check_padding(padding)  # recorded in checkpoints (edgekd.checkpoint.model_payload)
        widths = [max(1, int(round(c * check_width(width)))) for c in channels]
        self.conv1 = conv2d(in_channels, widths[0], 3, stem_stride, padding)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        c = widths[0]
        stages = []
        for i, out in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(c, out, 2 if (i > 0 and j == 0) else 1, padding))
                c = out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16w, H/s, W/s), s = stem_stride
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64w, H/4s, W/4s)
        return self.fc(torch.flatten(self.pool(x), 1))


def _register_resnet(depth: int) -> None:
    n = (depth - 2) // 6

    def factory(
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        width: float = 1.0,
        padding: str = DEFAULT_PADDING,
    ) -> nn.Module:
        return CifarResNet(n, num_classes, in_channels, width, padding)

    factory.__name__ = f"resnet{depth}"
    factory.__doc__ = f"CIFAR ResNet-{depth}: {n} basic block(s) per stage, 16-32-64 channels (× width)"
    MODELS.register(f"resnet{depth}")(factory)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register_resnet(_depth)


@MODELS.register("resnet8_s2")
def resnet8_s2(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    width: float = 1.0,
    padding: str = DEFAULT_PADDING,
) -> nn.Module:
    """ResNet-8 with its MACs at lower resolution: stride-2 stem, 32-64-128 channels (× width); faster int8"""
    return CifarResNet(1, num_classes, in_channels, width, padding, channels=(32, 64, 128), stem_stride=2)
