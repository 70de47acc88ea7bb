"""DKD and DIST: the losses against by-hand computations on tiny tensors, and training on digits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from edgekd.config import load_config
from edgekd.errors import ConfigError
from edgekd.train.logit_methods import DISTKD, DecoupledKD, dist_loss, dkd_loss
from edgekd.train.methods import METHODS, check_method_config
from edgekd.train.run import distill

ZS = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
ZT = [[2.0, 0.0, 1.0], [1.0, 0.5, 0.0]]
GT = [1, 2]


def softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return num / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def by_hand_dkd(t: float) -> tuple[float, float]:
    tckd = nckd = 0.0
    for zs, zt, g in zip(ZS, ZT, GT):
        ps, pt = softmax([v / t for v in zs]), softmax([v / t for v in zt])
        tckd += kl([pt[g], 1 - pt[g]], [ps[g], 1 - ps[g]])
        rest = [i for i in range(3) if i != g]
        nckd += kl(softmax([zt[i] / t for i in rest]), softmax([zs[i] / t for i in rest]))
    n = len(ZS)
    return tckd / n * t * t, nckd / n * t * t


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_dkd_matches_the_formula_by_hand(t: float) -> None:
    tckd, nckd = dkd_loss(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(GT), 1.0, 8.0, t)
    want_t, want_n = by_hand_dkd(t)
    assert tckd.item() == pytest.approx(want_t, rel=1e-5)
    assert nckd.item() == pytest.approx(8.0 * want_n, rel=1e-5)
    # the module: CE + α·TCKD + β·NCKD
    parts = DecoupledKD(t, 0.5, 2.0)(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(GT))
    ce = sum(-math.log(softmax(z)[g]) for z, g in zip(ZS, GT)) / 2
    assert parts["loss"].item() == pytest.approx(ce + 0.5 * want_t + 2.0 * want_n, rel=1e-5)


def test_dkd_is_zero_when_student_equals_teacher_and_has_gradients() -> None:
    z = torch.tensor(ZS)
    tckd, nckd = dkd_loss(z, z, torch.tensor(GT), 1.0, 8.0, 4.0)
    assert tckd.item() == pytest.approx(0, abs=1e-6) and nckd.item() == pytest.approx(0, abs=1e-6)
    zs = torch.tensor(ZS, requires_grad=True)
    sum(dkd_loss(zs, torch.tensor(ZT), torch.tensor(GT), 1.0, 8.0, 4.0)).backward()
    assert torch.isfinite(zs.grad).all() and zs.grad.abs().sum() > 0


def test_dkd_unlabeled_uses_the_teacher_top_class_and_soft_rows_their_dominant_class() -> None:
    m = DecoupledKD(4.0, 1.0, 8.0)
    zs, zt = torch.tensor(ZS), torch.tensor(ZT)
    teacher_top = zt.argmax(1)  # [0, 0]
    a = m(zs, zt, torch.tensor([-1, -1]))
    b = m(zs, zt, teacher_top)
    assert a["kd_loss"].item() == pytest.approx(b["kd_loss"].item())
    assert a["task_loss"].item() == 0.0  # no labels: no CE
    soft = torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.4, 0.6]])  # dominant: 1, 2 = GT
    c = m(zs, zt, soft)
    assert c["kd_loss"].item() == pytest.approx(m(zs, zt, torch.tensor(GT))["kd_loss"].item())


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_dist_matches_the_formula_by_hand(t: float) -> None:
    ys = [softmax([v / t for v in z]) for z in ZS]
    yt = [softmax([v / t for v in z]) for z in ZT]
    inter = (1 - sum(pearson(a, b) for a, b in zip(ys, yt)) / 2) * t * t
    cols = range(3)
    intra = (1 - sum(pearson([r[c] for r in ys], [r[c] for r in yt]) for c in cols) / 3) * t * t
    got_inter, got_intra = dist_loss(torch.tensor(ZS), torch.tensor(ZT), 2.0, 3.0, t)
    assert got_inter.item() == pytest.approx(2.0 * inter, rel=1e-5)
    assert got_intra.item() == pytest.approx(3.0 * intra, rel=1e-5)
    parts = DISTKD(t, 1.0, 1.0)(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(GT))
    ce = sum(-math.log(softmax(z)[g]) for z, g in zip(ZS, GT)) / 2
    assert parts["loss"].item() == pytest.approx(ce + inter + intra, rel=1e-5)


def test_dist_is_zero_on_agreement() -> None:
    """Equal distributions correlate perfectly (up to float32 rounding, times T² = 16)."""
    z = torch.tensor(ZS)
    inter, intra = dist_loss(z, z, 1.0, 1.0, 4.0)
    assert inter.item() == pytest.approx(0, abs=1e-4) and intra.item() == pytest.approx(0, abs=1e-4)


def test_keys_are_owned_and_checked() -> None:
    assert METHODS.get("dkd").config_section == "dkd" and METHODS.get("dist").config_section == "dist"
    with pytest.raises(ConfigError, match=r"distill\.dist\.beta does nothing with distill.method=dkd.*dist"):
        check_method_config(load_config(None, tiny_overrides(**{"distill.method": "dkd", "distill.dist.beta": 1})))
    check_method_config(load_config(None, tiny_overrides(**{"distill.method": "dist", "distill.dist.beta": 1})))
    with pytest.raises(ConfigError, match="distill.dkd.beta must be a number from 0 to 1000000, got -1"):
        load_config(None, tiny_overrides(**{"distill.method": "dkd", "distill.dkd.beta": -1}))


@pytest.mark.parametrize("method", ["dkd", "dist"])
def test_training_with_the_method_runs_on_digits(method: str, tmp_path: Path) -> None:
    out = tmp_path / method
    summary = distill(
        out=out,
        set=tiny_overrides(
            **{"distill.method": method, "teacher.epochs": 2, "student.epochs": 2, "distill.baseline": "false"}
        ),
    )
    assert summary["distill"]["method"] == method
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kd = [r for r in rows if r["stage"] == "student"]
    assert len(kd) == 2 and all(r["kd_loss"] > 0 and math.isfinite(r["loss"]) for r in kd)
    part = "nckd" if method == "dkd" else "intra"
    assert all(part in r for r in kd)
