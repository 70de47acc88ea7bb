"""Teacher-side wrappers: input re-normalization and multi-teacher ensembles.

Neither is ever saved as a student: they only produce soft targets during training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from edgekd.errors import CheckpointError


class Renormalized(nn.Module):
    """A model fed data normalized with other statistics: ``(x·σ_d + μ_d − μ_t) / σ_t`` on the way in.

    Batches arrive normalized with the data's statistics; a teacher trained elsewhere (another
    dataset, a source domain) expects its own. The model stays reachable as ``edgekd_inner`` so
    that module paths (FitNets hints) are the user's own.
    """

    def __init__(self, model: nn.Module, data_mean, data_std, own_mean, own_std) -> None:
        super().__init__()
        c = len(own_mean)
        self.edgekd_inner = model
        self.register_buffer("scale", (torch.tensor(data_std) / torch.tensor(own_std)).view(1, c, 1, 1))
        self.register_buffer(
            "shift", ((torch.tensor(data_mean) - torch.tensor(own_mean)) / torch.tensor(own_std)).view(1, c, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.edgekd_inner(x * self.scale + self.shift)


def with_input_stats(model: nn.Module, ckpt: dict[str, Any], data, log=None) -> nn.Module:
    """``model`` as is when its checkpoint's normalization is the data's, else wrapped in :class:`Renormalized`."""
    own_mean, own_std = ckpt["data"]["mean"], ckpt["data"]["std"]
    if list(own_mean) == list(data.mean) and list(own_std) == list(data.std):
        return model
    if len(own_mean) != data.in_channels:
        raise CheckpointError(f"teacher normalization has {len(own_mean)} channels, the data {data.in_channels}")
    if log is not None:
        log(f"{ckpt.get('role', 'teacher')}: re-normalizing inputs to the statistics it was trained with")
    return Renormalized(model, data.mean, data.std, own_mean, own_std).eval()


class EnsembleTeacher(nn.Module):
    """Several teachers as one: the soft target is the mean of their softened distributions.

    Returns ``T·log(mean_i softmax(z_i/T))``: logits whose ``softmax(·/T)`` is exactly that mean,
    so every soft-target loss (``kd_kl_loss`` at the same T) uses the averaged distribution
    unchanged. Built with T = 1 it gives the usual probability-averaging ensemble for evaluation.
    """

    def __init__(self, members: Sequence[nn.Module], temperature: float = 1.0) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        log_probs = torch.stack([torch.log_softmax(m(x).float() / t, dim=1) for m in self.members])  # (M, B, K)
        return t * (torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(self.members)))))
