"""KD methods: ``nn.Module``s that turn (student output, teacher output, targets) into loss parts.

Every method returns a dict with at least ``loss`` (what is back-propagated); the other entries
(``task_loss``, ``kd_loss``, …) are logged. A method that needs intermediate features registers
forward hooks on the models in :meth:`DistillMethod.attach` (by module path), so users' models need
no rewriting. Methods may own trainable parameters (e.g. a FitNets regressor); the trainer adds them
to the optimizer, and they are never part of the saved student.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.registry import Registry

METHODS: Registry = Registry("KD method", providers=["edgekd.train.methods"])


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft term T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), averaged over the batch.

    ``reduction='batchmean'`` sums over classes and divides by the batch size: the mathematically
    correct KL. ``'mean'`` would also divide by the number of classes and silently shrink the term.
    The T² keeps its gradient scale independent of T (the soft gradients scale as 1/T²).
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


class DistillMethod(nn.Module):
    """Base class. ``needs_teacher`` False means the trainer never runs a teacher (plain training)."""

    needs_teacher = True

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> DistillMethod:
        """Build from the ``distill`` and student ``stage`` config sections."""
        raise NotImplementedError

    def attach(self, student: nn.Module, teacher: nn.Module | None) -> None:
        """Register forward hooks on the models (features by module path). Default: none."""

    def detach(self) -> None:
        """Remove what :meth:`attach` registered."""

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


@METHODS.register("ce")
class CrossEntropy(DistillMethod):
    """Plain supervised training on hard labels: the teacher's recipe and the no-KD baseline."""

    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> CrossEntropy:
        return cls(label_smoothing=stage.label_smoothing)

    def forward(self, student_logits, teacher_logits, targets):
        loss = F.cross_entropy(student_logits.float(), targets, label_smoothing=self.label_smoothing)
        return {"loss": loss, "task_loss": loss.detach()}


@METHODS.register("kd")
class HintonKD(DistillMethod):
    """Hinton et al. 2015: ``(1-α)·CE(y, z_s) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))``."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> HintonKD:
        return cls(distill.temperature, distill.alpha, stage.label_smoothing)

    def forward(self, student_logits, teacher_logits, targets):
        task = F.cross_entropy(student_logits.float(), targets, label_smoothing=self.label_smoothing)
        soft = kd_kl_loss(student_logits, teacher_logits, self.temperature)
        loss = (1.0 - self.alpha) * task + self.alpha * soft
        return {"loss": loss, "task_loss": task.detach(), "kd_loss": soft.detach()}


def build_method(name: str, distill: Any, stage: Any) -> DistillMethod:
    return METHODS.get(name).from_config(distill, stage)
