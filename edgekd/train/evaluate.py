"""Accuracy and loss of a model on a split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.data.loader import Batches
from edgekd.train.runtime import autocast


@dataclass(frozen=True)
class EvalResult:
    loss: float
    acc: float  # fraction 0–1
    n: int


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, amp: torch.dtype | None = None) -> EvalResult:
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=batches.device)
    correct = torch.zeros((), device=batches.device, dtype=torch.long)
    for x, y in batches:
        with autocast(amp, batches.device):
            logits = model(x)
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = batches.num_samples
    if batches.shard.world > 1:  # each rank saw its share: sum the shares
        from edgekd.train.distributed import all_sum

        total_loss, correct, n = all_sum(torch.stack([total_loss, correct.float(), torch.tensor(float(n), device=batches.device)])).tolist()
        n = int(n)
    else:
        total_loss, correct = total_loss.item(), correct.item()
    return EvalResult(loss=total_loss / max(n, 1), acc=correct / max(n, 1), n=n)


@torch.no_grad()
def predict_logits(model: nn.Module, batches: Batches, amp: torch.dtype | None = None) -> torch.Tensor:
    """All logits of a split, in order, on the CPU (float32)."""
    was_training = model.training
    model.eval()
    out = []
    for x, _ in batches:
        with autocast(amp, batches.device):
            out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out)
