"""Tiny ``test_*`` models so that the whole pipeline (distill → export → bench) runs in seconds."""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.layers import GlobalAvgPool
from edgekd.models.registry import MODELS


class TinyCNN(nn.Module):
    """conv-BN-ReLU ×2 with one max-pool, global pooling, linear head. ``norm=False`` drops batch
    norm: its per-batch statistics are the one thing a CPU DDP run (no SyncBatchNorm there) does
    not share with a single-process run, so equivalence tests use it."""

    def __init__(self, num_classes: int, in_channels: int, c1: int, c2: int, norm: bool = True) -> None:
        super().__init__()

        def bn(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if norm else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=not norm),
            bn(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=not norm),
            bn(c2),
            nn.ReLU(inplace=True),
        )
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(c2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@MODELS.register("test_student")
def test_student(
    num_classes: int, in_channels: int, image_size: tuple[int, int], width: int = 4, norm: bool = True
) -> nn.Module:
    """Tiny student for tests: 4→8 channels."""
    return TinyCNN(num_classes, in_channels, width, 2 * width, norm)


@MODELS.register("test_teacher")
def test_teacher(
    num_classes: int, in_channels: int, image_size: tuple[int, int], width: int = 16, norm: bool = True
) -> nn.Module:
    """Tiny teacher for tests: 16→32 channels."""
    return TinyCNN(num_classes, in_channels, width, 2 * width, norm)
