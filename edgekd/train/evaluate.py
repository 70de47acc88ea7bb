"""Loss and metrics of a model on a split: accuracy, and mean IoU for segmentation (:mod:`edgekd.tasks`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from edgekd.data.loader import Batches
from edgekd.tasks import Task, get_task
from edgekd.train.runtime import autocast


@dataclass(frozen=True)
class EvalResult:
    loss: float
    acc: float  # fraction 0–1: top-1 accuracy, or pixel accuracy for segmentation
    n: int
    metrics: dict[str, float] = field(default_factory=dict)  # every metric of the task, "acc" included (and "iou")
    key: str = "acc"  # the task's selection metric

    @property
    def score(self) -> float:
        """The metric that selects epochs and models: accuracy, or mean IoU for segmentation."""
        return self.metrics.get(self.key, self.acc)


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Batches, amp: torch.dtype | None = None, task: str | Task | None = None
) -> EvalResult:
    """Metrics of ``model`` on every sample of ``batches`` (all ranks' shares summed in a distributed run)."""
    task = get_task(task)
    was_training = model.training
    model.eval()
    sums = None
    for x, y in batches:
        with autocast(amp, batches.device):
            logits = model(x)
        part = task.eval_sums(logits, y)
        sums = part if sums is None else sums + part
    model.train(was_training)
    n = batches.num_samples
    if sums is None:  # this rank's share was empty
        sums = torch.zeros(len(task.sum_names), dtype=torch.float64, device=batches.device)
    if batches.shard.world > 1:  # each rank saw its share: sum the shares
        from edgekd.train.distributed import all_sum

        *totals, n = all_sum(torch.cat([sums, torch.tensor([float(n)], dtype=sums.dtype, device=sums.device)])).tolist()
        n = int(n)
    else:
        totals = sums.tolist()
    loss, metrics = task.eval_metrics(totals, n)
    return EvalResult(loss=loss, acc=metrics["acc"], n=n, metrics=metrics, key=task.metric)


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
