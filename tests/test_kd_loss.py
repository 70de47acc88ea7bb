"""The Hinton KD loss against a hand computation, its T² gradient scale and batch-mean reduction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgekd.train.methods import CrossEntropy, HintonKD, kd_kl_loss


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference_kd(zs: np.ndarray, zt: np.ndarray, y: np.ndarray, t: float, alpha: float) -> tuple[float, float, float]:
    """(total, ce, soft) written out from the formula, one sample at a time."""
    ce = np.mean([-math.log(_softmax(zs[i : i + 1])[0, y[i]]) for i in range(len(y))])
    ps, pt = _softmax(zs / t), _softmax(zt / t)
    kl_per_sample = [sum(pt[i, k] * math.log(pt[i, k] / ps[i, k]) for k in range(zs.shape[1])) for i in range(len(y))]
    soft = t * t * np.mean(kl_per_sample)  # sum over classes, mean over the batch
    return (1 - alpha) * ce + alpha * soft, ce, soft


@pytest.mark.parametrize("t,alpha", [(1.0, 0.5), (4.0, 0.9), (8.0, 1.0), (2.0, 0.0)])
def test_kd_matches_hand_computation(t: float, alpha: float) -> None:
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(5, 7)) * 3, rng.normal(size=(5, 7)) * 3
    y = rng.integers(0, 7, size=5)
    parts = HintonKD(temperature=t, alpha=alpha)(torch.tensor(zs), torch.tensor(zt), torch.tensor(y))
    total, ce, soft = _reference_kd(zs, zt, y, t, alpha)
    assert parts["loss"].item() == pytest.approx(total, rel=1e-5)
    assert parts["task_loss"].item() == pytest.approx(ce, rel=1e-5)
    assert parts["kd_loss"].item() == pytest.approx(soft, rel=1e-5)


def test_soft_term_is_batch_mean_not_element_mean() -> None:
    """'mean' reduction would divide by batch × classes: the soft term must not shrink with more classes."""
    rng = np.random.default_rng(1)
    zs, zt = torch.tensor(rng.normal(size=(4, 100))), torch.tensor(rng.normal(size=(4, 100)))
    soft = kd_kl_loss(zs, zt, 1.0)
    ps, pt = torch.log_softmax(zs, 1), torch.softmax(zt, 1)
    per_sample = (pt * (pt.log() - ps)).sum(1)
    assert soft.item() == pytest.approx(per_sample.mean().item(), rel=1e-6)
    assert soft.item() != pytest.approx(per_sample.mean().item() / 100, rel=1e-2)
    # identical distributions: zero
    assert kd_kl_loss(zs, zs, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_t_squared_keeps_gradient_scale() -> None:
    """For large T the soft gradient ≈ (p_s − p_t)/T per logit ~ (z_s − z_t)/(N·T²); the T² factor makes
    the gradient magnitude roughly independent of T (Hinton et al. 2015, §2.1)."""
    rng = np.random.default_rng(2)
    zt = torch.tensor(rng.normal(size=(8, 10)))
    zs0 = torch.tensor(rng.normal(size=(8, 10)))
    norms = []
    for t in (4.0, 8.0, 16.0, 32.0):
        zs = zs0.clone().requires_grad_(True)
        kd_kl_loss(zs, zt, t).backward()
        norms.append(zs.grad.norm().item())
    # with T² the norms converge as T grows; without it they would fall by 4× per doubling of T
    assert max(norms[1:]) / min(norms[1:]) < 1.1
    zs = zs0.clone().requires_grad_(True)
    (kd_kl_loss(zs, zt, 16.0) / 16.0**2).backward()
    assert zs.grad.norm().item() < norms[2] / 100


def test_alpha_extremes() -> None:
    rng = np.random.default_rng(3)
    zs, zt = torch.tensor(rng.normal(size=(6, 4))), torch.tensor(rng.normal(size=(6, 4)))
    y = torch.tensor(rng.integers(0, 4, size=6))
    ce = CrossEntropy()(zs, None, y)["loss"]
    assert HintonKD(4.0, 0.0)(zs, zt, y)["loss"].item() == pytest.approx(ce.item())
    assert HintonKD(4.0, 1.0)(zs, zt, y)["loss"].item() == pytest.approx(kd_kl_loss(zs, zt, 4.0).item())


# -- variants: soft only, logit MSE, sigmoid; unlabeled samples ------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _bce(p_target: np.ndarray, z: np.ndarray) -> float:
    """Mean over elements of −[p·log σ(z) + (1−p)·log(1−σ(z))]."""
    q = _sigmoid(z)
    return float(np.mean(-(p_target * np.log(q) + (1 - p_target) * np.log(1 - q))))


def test_kd_soft_is_alpha_one() -> None:
    from types import SimpleNamespace

    from edgekd.train.methods import SoftOnlyKD

    rng = np.random.default_rng(4)
    zs, zt = torch.tensor(rng.normal(size=(6, 5))), torch.tensor(rng.normal(size=(6, 5)))
    y = torch.tensor(rng.integers(0, 5, size=6))
    method = SoftOnlyKD.from_config(SimpleNamespace(temperature=3.0, alpha=0.2), SimpleNamespace(label_smoothing=0.0))
    assert method.alpha == 1.0  # the configured α is ignored
    parts = method(zs, zt, y)
    assert parts["loss"].item() == pytest.approx(kd_kl_loss(zs, zt, 3.0).item())
    assert parts["task_loss"].item() > 0  # still logged


def test_kd_mse_matches_hand_computation() -> None:
    from edgekd.train.methods import LogitMSE, kd_mse_loss

    rng = np.random.default_rng(5)
    zs, zt = rng.normal(size=(4, 7)) * 2, rng.normal(size=(4, 7)) * 2
    y = rng.integers(0, 7, size=4)
    per_sample = ((zs - zt) ** 2).sum(axis=1)  # summed over classes …
    assert kd_mse_loss(torch.tensor(zs), torch.tensor(zt)).item() == pytest.approx(
        per_sample.mean(), rel=1e-6
    )  # … mean over the batch
    _, ce, _ = _reference_kd(zs, zt, y, 1.0, 0.0)
    parts = LogitMSE(temperature=8.0, alpha=0.7)(torch.tensor(zs), torch.tensor(zt), torch.tensor(y))
    assert parts["loss"].item() == pytest.approx(0.3 * ce + 0.7 * per_sample.mean(), rel=1e-5)
    # the temperature plays no part
    assert LogitMSE(temperature=1.0, alpha=0.7)(torch.tensor(zs), torch.tensor(zt), torch.tensor(y))[
        "loss"
    ].item() == pytest.approx(parts["loss"].item())


@pytest.mark.parametrize("t,lam", [(1.0, 0.5), (4.0, 0.9), (2.0, 0.0)])
def test_kd_sigmoid_matches_the_formula_on_masks(t: float, lam: float) -> None:
    """Per-pixel outputs: L = (1-λ)·BCE(y, σ(z_s)) + λ·T·BCE(σ(z_t/T), σ(z_s/T)), element mean."""
    from edgekd.train.methods import SigmoidKD

    rng = np.random.default_rng(6)
    zs, zt = rng.normal(size=(2, 1, 5, 5)) * 3, rng.normal(size=(2, 1, 5, 5)) * 3
    mask = (rng.random(size=(2, 1, 5, 5)) > 0.5).astype(np.float64)
    parts = SigmoidKD(temperature=t, alpha=lam)(torch.tensor(zs), torch.tensor(zt), torch.tensor(mask))
    hard = _bce(mask, zs)
    soft = t * _bce(_sigmoid(zt / t), zs / t)  # T, not T²
    assert parts["task_loss"].item() == pytest.approx(hard, rel=1e-6)
    assert parts["kd_loss"].item() == pytest.approx(soft, rel=1e-6)
    assert parts["loss"].item() == pytest.approx((1 - lam) * hard + lam * soft, rel=1e-6)


def test_kd_sigmoid_t_keeps_gradient_scale() -> None:
    """d/dz_s of T·BCE(σ(z_t/T), σ(z_s/T)) = (σ(z_s/T) − σ(z_t/T))/N: with T (not T²) the gradient
    is exactly the probability gap, which shrinks only as the sigmoids flatten, ≈ (z_s − z_t)/(4T)."""
    from edgekd.train.methods import sigmoid_kd_loss

    rng = np.random.default_rng(7)
    zt, zs0 = torch.tensor(rng.normal(size=(8, 3))), torch.tensor(rng.normal(size=(8, 3)))
    for t in (1.0, 4.0):
        zs = zs0.clone().requires_grad_(True)
        sigmoid_kd_loss(zs, zt, t).backward()
        expected = (torch.sigmoid(zs0 / t) - torch.sigmoid(zt / t)) / zs0.numel()
        assert torch.allclose(zs.grad, expected, atol=1e-9)


def test_kd_sigmoid_class_labels_are_one_vs_rest() -> None:
    from edgekd.train.methods import hard_bce

    rng = np.random.default_rng(8)
    z = torch.tensor(rng.normal(size=(5, 4)))
    y = torch.tensor([0, 3, 1, -1, 2])  # the fourth sample is unlabeled
    onehot = torch.nn.functional.one_hot(y.clamp_min(0), 4).double()
    keep = y >= 0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(z[keep], onehot[keep])
    assert hard_bce(z, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_unlabeled_samples_get_the_soft_term_only() -> None:
    """Label −1: CE averages over labeled samples only, the soft term over all; no labels → CE 0."""
    from edgekd.train.methods import task_ce

    rng = np.random.default_rng(9)
    zs, zt = torch.tensor(rng.normal(size=(6, 5))), torch.tensor(rng.normal(size=(6, 5)))
    y = torch.tensor([1, -1, 3, -1, 0, -1])
    keep = y >= 0
    assert task_ce(zs, y).item() == pytest.approx(torch.nn.functional.cross_entropy(zs[keep], y[keep]).item(), rel=1e-6)
    parts = HintonKD(4.0, 0.5)(zs, zt, y)
    assert parts["kd_loss"].item() == pytest.approx(kd_kl_loss(zs, zt, 4.0).item())  # every sample
    none = torch.full((6,), -1)
    assert task_ce(zs, none).item() == 0.0
    only_soft = HintonKD(4.0, 0.5)(zs.clone().requires_grad_(True), zt, none)
    assert torch.isfinite(only_soft["loss"]) and only_soft["loss"].item() == pytest.approx(
        0.5 * kd_kl_loss(zs, zt, 4.0).item()
    )
    assert CrossEntropy()(zs, None, none)["loss"].item() == 0.0


def test_ensemble_teacher_averages_softened_distributions() -> None:
    from torch import nn

    from edgekd.train.teachers import EnsembleTeacher

    class Fixed(nn.Module):
        def __init__(self, logits: torch.Tensor) -> None:
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits

    rng = np.random.default_rng(10)
    members = [torch.tensor(rng.normal(size=(3, 6)) * 3, dtype=torch.float32) for _ in range(3)]
    for t in (1.0, 4.0):
        out = EnsembleTeacher([Fixed(z) for z in members], temperature=t)(torch.zeros(3, 1))
        mean = torch.stack([torch.softmax(z / t, 1) for z in members]).mean(0)
        assert torch.allclose(torch.softmax(out / t, 1), mean, atol=1e-6)
    # the KD loss against the ensemble is the KL to the averaged distribution
    zs = torch.tensor(rng.normal(size=(3, 6)), dtype=torch.float32)
    t = 4.0
    mean = torch.stack([torch.softmax(z / t, 1) for z in members]).mean(0)
    kl = (mean * (mean.log() - torch.log_softmax(zs / t, 1))).sum(1).mean() * t * t
    out = EnsembleTeacher([Fixed(z) for z in members], temperature=t)(torch.zeros(3, 1))
    assert kd_kl_loss(zs, out, t).item() == pytest.approx(kl.item(), rel=1e-5)
