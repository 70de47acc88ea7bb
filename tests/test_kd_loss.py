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
