"""Stronger logit-only KD losses: DKD and DIST.

Both read the teacher's logits alone (no features), so their teacher outputs can be cached
(``data.views``) exactly like Hinton KD's. Both add their KD term to the full hard-label
cross-entropy (weight 1, as in the papers' code) instead of Hinton's (1-α)/α mix, so
``distill.alpha`` means nothing to them; each has its own weights (``distill.dkd.*``,
``distill.dist.*``). Targets may be class indices (label ``-1``: unlabeled) or soft label rows
(mixup/cutmix): the "target class" DKD decouples on is then the dominant class, and for an
unlabeled sample the teacher's top class.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from edgekd.train.methods import METHODS, DistillMethod, task_ce


def target_classes(targets: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """(N,) class index per sample: the label, the dominant class of a soft label row, or the
    teacher's top class where there is no label (-1)."""
    if targets.dtype.is_floating_point and targets.dim() == 2:  # soft rows (mixup/cutmix)
        labeled = targets.sum(1) > 0
        cls = targets.argmax(1)
    else:
        labeled = targets >= 0
        cls = targets.clamp_min(0)
    return torch.where(labeled, cls, teacher_logits.argmax(1))


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    gt: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled KD (Zhao et al. 2022, "Decoupled Knowledge Distillation", CVPR): (α·TCKD, β·NCKD).

    With p = softmax(z/T) and t the target class:
      TCKD = T²·KL(b_t ‖ b_s), b = [p_t, 1 − p_t] (the binary target-vs-rest distribution);
      NCKD = T²·KL(p̂_t ‖ p̂_s), p̂ = softmax over the non-target classes of z/T.
    Both are summed over classes and averaged over the batch (``batchmean``), as Hinton's term.
    """
    t = temperature
    zs, zt = student_logits.float() / t, teacher_logits.float() / t
    mask = F.one_hot(gt, zs.shape[1]).bool()  # (N, C): the target class
    ps, pt = zs.softmax(1), zt.softmax(1)
    bs = torch.stack([(ps * mask).sum(1), (ps * ~mask).sum(1)], 1).clamp_min(1e-12)  # (N, 2)
    bt = torch.stack([(pt * mask).sum(1), (pt * ~mask).sum(1)], 1).clamp_min(1e-12)
    tckd = (bt * (bt.log() - bs.log())).sum(1).mean() * (t * t)
    # non-target distributions: the target logit removed (−inf) before the softmax; the 0·(−inf)
    # of the target column is avoided by zeroing its terms explicitly
    neg = torch.finfo(zs.dtype).min
    log_ps_nt = zs.masked_fill(mask, neg).log_softmax(1)
    log_pt_nt = zt.masked_fill(mask, neg).log_softmax(1)
    kl = torch.where(mask, torch.zeros_like(zs), log_pt_nt.exp() * (log_pt_nt - log_ps_nt))
    nckd = kl.sum(1).mean() * (t * t)
    return alpha * tckd, beta * nckd


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``: (N,)."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float, gamma: float, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DIST (Huang et al. 2022, "Knowledge Distillation from A Stronger Teacher", NeurIPS): (β·inter, γ·intra).

    With Y = softmax(Z/T) of shape (N, C):
      inter = T²·(1 − mean_i ρ(Y_s[i, :], Y_t[i, :]))  (each sample's class ranking: inter-class relation)
      intra = T²·(1 − mean_c ρ(Y_s[:, c], Y_t[:, c]))  (each class across the batch: intra-class relation)
    ρ is the Pearson correlation; matching correlations rather than the distributions themselves
    lets a student much weaker than its teacher keep its own scale.
    """
    t = temperature
    ys = (student_logits.float() / t).softmax(1)
    yt = (teacher_logits.float() / t).softmax(1)
    inter = (1.0 - pearson_rows(ys, yt).mean()) * (t * t)
    intra = (1.0 - pearson_rows(ys.T, yt.T).mean()) * (t * t)
    return beta * inter, gamma * intra


@METHODS.register("dkd")
class DecoupledKD(DistillMethod):
    """DKD (Zhao et al. 2022): CE + α·TCKD + β·NCKD (α = distill.dkd.alpha, β = distill.dkd.beta,
    T = distill.temperature)."""

    config_section = "dkd"
    uses_alpha = False

    def __init__(
        self, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        # not `alpha`: that name means Hinton's soft-term weight (recorded in checkpoints as such)
        self.temperature, self.tckd_weight, self.nckd_weight, self.label_smoothing = (
            temperature,
            alpha,
            beta,
            label_smoothing,
        )

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> DecoupledKD:
        return cls(distill.temperature, distill.dkd.alpha, distill.dkd.beta, stage.label_smoothing)

    def forward(self, student_logits, teacher_logits, targets):
        task = task_ce(student_logits, targets, self.label_smoothing)
        tckd, nckd = dkd_loss(
            student_logits,
            teacher_logits,
            target_classes(targets, teacher_logits),
            self.tckd_weight,
            self.nckd_weight,
            self.temperature,
        )
        kd = tckd + nckd
        return {
            "loss": task + kd,
            "task_loss": task.detach(),
            "kd_loss": kd.detach(),
            "tckd": tckd.detach(),
            "nckd": nckd.detach(),
        }


@METHODS.register("dist")
class DISTKD(DistillMethod):
    """DIST (Huang et al. 2022): CE + β·inter + γ·intra Pearson relation losses (β = distill.dist.beta,
    γ = distill.dist.gamma, T = distill.temperature)."""

    config_section = "dist"
    uses_alpha = False

    def __init__(
        self, temperature: float = 4.0, beta: float = 2.0, gamma: float = 2.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.temperature, self.beta, self.gamma, self.label_smoothing = temperature, beta, gamma, label_smoothing

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> DISTKD:
        return cls(distill.temperature, distill.dist.beta, distill.dist.gamma, stage.label_smoothing)

    def forward(self, student_logits, teacher_logits, targets):
        task = task_ce(student_logits, targets, self.label_smoothing)
        inter, intra = dist_loss(student_logits, teacher_logits, self.beta, self.gamma, self.temperature)
        kd = inter + intra
        return {
            "loss": task + kd,
            "task_loss": task.detach(),
            "kd_loss": kd.detach(),
            "inter": inter.detach(),
            "intra": intra.detach(),
        }
