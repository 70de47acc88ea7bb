"""Model wrappers used at export and inference time."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class WithPreprocessing(nn.Module):
    """Takes raw pixel values (0–255, float) and applies the training normalization in the graph.

    ``(x/255 − mean)/std`` is one per-channel multiply-add, written as a depthwise 1×1 convolution
    (weight ``1/(255·std)``, bias ``−mean/std``) so that every converter emits a single op. For
    int8 this lets the input quantization be the identity on pixels (scale 1, zero point −128) and
    costs one requantization: as separate MUL and ADD ops (two requantizations) it cost a CIFAR-10
    ResNet-8 0.3 point of int8 top-1 agreement. Folding it into the first conv's weights would be
    wrong at the borders: zero padding in normalized space is not zero in pixel space.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        c = len(mean)
        m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.normalize = nn.Conv2d(c, c, 1, groups=c, bias=True)
        self.normalize.weight.data = (1.0 / (255.0 * s)).view(c, 1, 1, 1)
        self.normalize.bias.data = -m / s
        self.normalize.requires_grad_(False)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))  # (B, C, H, W) pixels → logits


def with_preprocessing(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    return WithPreprocessing(model, mean, std).eval()


class FlipTTA(nn.Module):
    """Test-time augmentation by horizontal flip: the mean of the logits of the image and of its
    mirror (a per-pixel output is mirrored back first). With ``translate`` (airbench's level 2) that
    mean gets half the weight and the other half is the mean of the same for the image shifted one
    pixel down-right and one pixel up-left (mirror-padded at the border; a per-pixel output is
    shifted back): six passes. For evaluation and for a teacher's soft targets only: it multiplies
    the cost and is never exported."""

    def __init__(self, model: nn.Module, translate: bool = False) -> None:
        super().__init__()
        self.model = model
        self.translate = translate
        if translate:
            # in the state_dict, so a teacher-output cache keyed on it tells the two apart
            self.register_buffer("tta_translate", torch.ones(1))

    def _flip_mean(self, x: torch.Tensor) -> torch.Tensor:
        mirrored = self.model(x.flip(3))
        if mirrored.dim() == 4:  # (B, K, H, W): per-pixel logits, back to the image's orientation
            mirrored = mirrored.flip(3)
        return 0.5 * (self.model(x) + mirrored)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._flip_mean(x)
        if not self.translate:
            return out
        h, w = x.shape[2:]
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        down_right = self._flip_mean(padded[:, :, :h, :w])  # content moved one pixel down and right
        up_left = self._flip_mean(padded[:, :, 2:, 2:])
        if out.dim() == 4:  # per-pixel: pixel (i, j) of the image is (i+1, j+1), resp. (i-1, j-1), there
            down_right = torch.nn.functional.pad(down_right[:, :, 1:, 1:], (0, 1, 0, 1), mode="replicate")
            up_left = torch.nn.functional.pad(up_left[:, :, :-1, :-1], (1, 0, 1, 0), mode="replicate")
        return 0.5 * out + 0.25 * (down_right + up_left)
