"""Model wrappers used at export and inference time."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class WithPreprocessing(nn.Module):
    """Takes raw pixel values (0–255, float) and applies the training normalization in the graph.

    ``(x/255 − mean)/std`` is written as one multiply-add per channel, ``x·a + b``: two cheap ops
    that every runtime supports, and for int8 it lets the input quantization be the identity on
    pixels (scale 1, zero point −128). Folding it into the first conv's weights would be wrong at
    the borders: zero padding in normalized space is not zero in pixel space.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        c = len(mean)
        m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * s)).view(1, c, 1, 1))
        self.register_buffer("shift", (-m / s).view(1, c, 1, 1))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.scale + self.shift)  # (B, C, H, W) pixels → logits


def with_preprocessing(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    return WithPreprocessing(model, mean, std).eval()
