"""A fast CIFAR-10 teacher in the shape of airbench94 (Keller Jordan, "94% on CIFAR-10 in 3.29
seconds on a single GPU", arXiv 2404.00498), written for edgekd.

Layout (32×32 input): a 2×2 *whitening* conv (24 filters, no padding: 31×31), GELU, then three
conv groups of widths 64-256-256, each conv3×3 → maxpool 2 → BN → GELU → conv3×3 → BN → GELU
(15, 7, 3 px), a global max pool, a bias-free linear classifier and a fixed 1/9 logit scale. As
airbench: the BatchNorms learn a bias but no scale, and each conv's first filters start as the
identity (``dirac``), which the airbench ablations credit with reaching 94 % in fewer epochs.
About 1.97 M parameters and 0.118 G MACs: a teacher, not a microcontroller student.

The whitening layer (optional, ``whiten=True``) is not trained: :meth:`AirbenchNet.data_init` sets
it from the training images' 2×2 patch statistics — the eigenvectors of the patch covariance,
scaled by 1/√(eigenvalue + ε), each with its negation (ZCA-like whitening: every direction of
pixel variation reaches the first GELU at unit scale). The statistics come from a fixed prefix of
the training split in float64, so the init is deterministic; the weights are ordinary tensors of
the state_dict, and the trainer records what they were computed from in the checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgekd.models.registry import MODELS


def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with its scale fixed at 1 (airbench's): only the bias learns, the GELU after it
    needs no scale, and bias_lr_scale then speeds up exactly the shifts."""
    bn = nn.BatchNorm2d(channels)
    bn.weight.requires_grad_(False)
    return bn


def _conv(c_in: int, c_out: int, dirac: bool) -> nn.Conv2d:
    """3×3 conv; with ``dirac`` its first min(c_in, c_out) filters start as the identity (airbench's
    init: each group starts near a pass-through of its input, which trains in fewer epochs)."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    if dirac:
        with torch.no_grad():
            nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, ceil: bool = False, dirac: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, dirac)
        self.pool = nn.MaxPool2d(2, ceil_mode=ceil)
        self.bn1 = _bn(c_out)
        self.conv2 = _conv(c_out, c_out, dirac)
        self.bn2 = _bn(c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))  # pooling before BN: 4× cheaper BN, as airbench
        return self.act(self.bn2(self.conv2(x)))


class AirbenchNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        widths: tuple[int, int, int] = (64, 256, 256),
        whiten: bool = True,
        ceil: bool = False,
        dirac: bool = True,
    ) -> None:
        super().__init__()
        self.whiten_channels = 2 * in_channels * 2 * 2  # every patch direction, ±
        self.whiten = nn.Conv2d(in_channels, self.whiten_channels, 2, padding=0, bias=True)
        self.whiten.requires_grad_(not whiten)  # frozen when it is set from the data
        self.whitened = whiten
        self.act = nn.GELU()
        c = self.whiten_channels
        groups = []
        for w in widths:
            groups.append(ConvGroup(c, w, ceil, dirac))
            c = w
        self.layers = nn.Sequential(*groups)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(c, num_classes, bias=False)
        self.scale = 1.0 / 9  # airbench's fixed logit scale: keeps early logits small with a max-pooled head

    @torch.no_grad()
    def data_init(self, images: torch.Tensor, eps: float = 5e-4) -> dict[str, Any]:
        """Set the whitening conv from normalized training images (N, C, H, W); returns what the
        checkpoint records. A no-op (empty record) when ``whiten=False``."""
        if not self.whitened:
            return {}
        x = images.double()
        c = x.shape[1]
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4)  # (P, C·2·2)
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending; deterministic for a symmetric matrix
        filters = (eigenvectors.T / torch.sqrt(eigenvalues[:, None] + eps)).reshape(-1, c, 2, 2)
        weight = torch.cat([filters, -filters]).float()
        self.whiten.weight.copy_(weight)
        # bias centres the outputs: the mean patch maps to 0 (GELU then sees both signs)
        mean_patch = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c, 2, 2).mean(0)
        self.whiten.bias.copy_(-(weight.double() * mean_patch).sum((1, 2, 3)).float())
        return {"whiten_images": int(len(images)), "whiten_eps": eps}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(x))  # (B, 24, H-1, W-1)
        x = self.layers(x)  # (B, 256, ~H/8, ~W/8)
        return self.fc(torch.flatten(self.pool(x), 1)) * self.scale


@MODELS.register("airbench")
def airbench(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    widths: tuple[int, int, int] | list[int] = (64, 256, 256),
    whiten: bool = True,
    dirac: bool = True,
) -> nn.Module:
    """airbench94-style fast CIFAR teacher: 2×2 whitening conv (set from data, frozen), conv groups
    64-256-256 with BN and GELU; kwargs widths, whiten, dirac"""
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"airbench widths are three positive channel counts, got {list(widths)}")
    shape = tuple(int(w) for w in widths)
    return AirbenchNet(num_classes, in_channels, shape, bool(whiten), ceil=_small(image_size), dirac=bool(dirac))


def _small(image_size: tuple[int, int]) -> bool:
    """Below 16 px, three floor-mode 2×2 pools after the 2×2 conv would reach 0 px: pool in
    ceil mode there (32 px keeps airbench's 31 → 15 → 7 → 3)."""
    return min(image_size) < 16


@MODELS.register("test_airbench")
def test_airbench(
    num_classes: int, in_channels: int, image_size: tuple[int, int], whiten: bool = True, dirac: bool = True
) -> nn.Module:
    """tiny airbench (widths 8-16-16) for tests"""
    return AirbenchNet(num_classes, in_channels, (8, 16, 16), whiten, ceil=_small(image_size), dirac=dirac)
