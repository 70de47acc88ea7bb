"""mixup / cutmix: per-sample, deterministic from (seed, view), the teacher sees the mixed view."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from edgekd.checkpoint import load_checkpoint
from edgekd.data.dataset import Split
from edgekd.data.loader import Batches
from edgekd.errors import ConfigError
from edgekd.train.run import distill


def split(n: int = 24) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), np.arange(n) % 3)


def batches(s: Split, **kw) -> Batches:
    base = dict(mean=(0.0,) * 3, std=(1.0,) * 3, batch_size=5, augment="none", num_classes=3, seed=3)
    return Batches(s, **{**base, **kw})


def by_sample(b: Batches) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    return {int(i): (x[k], y[k]) for idx, x, y in b.with_index() for k, i in enumerate(idx)}


def test_mixup_blends_each_sample_with_its_partner() -> None:
    s = split()
    b = batches(s, mixup=1.0, batch_size=24)
    mix = b.mixing(0)
    ((idx, x, y),) = list(b.with_index())
    imgs = torch.from_numpy(s.images).float() / 255
    lam, j = mix["lam"], mix["partner"]
    want = lam[:, None, None, None] * imgs + (1 - lam[:, None, None, None]) * imgs[j]
    assert torch.allclose(x, want, atol=1e-6)
    assert torch.allclose(y.sum(1), torch.ones(24))
    labels = torch.from_numpy(s.labels)
    assert torch.allclose(y[torch.arange(24), labels], torch.where(labels == labels[j], torch.ones(24), lam))
    assert 0 < lam.min() and lam.max() < 1 and not bool(mix["cut"].any())


def test_cutmix_pastes_a_box_and_weights_labels_by_area() -> None:
    s = split()
    b = batches(s, cutmix=1.0, batch_size=24)
    mix = b.mixing(0)
    ((_, x, y),) = list(b.with_index())
    imgs = torch.from_numpy(s.images).float() / 255
    for i in range(24):
        y0, y1, x0, x1, j = (int(mix[k][i]) for k in ("y0", "y1", "x0", "x1", "partner"))
        inside = torch.zeros(8, 8, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.equal(x[i][:, inside], imgs[j][:, inside]) and torch.equal(x[i][:, ~inside], imgs[i][:, ~inside])
        assert float(mix["lam"][i]) == pytest.approx(1 - inside.sum().item() / 64)
    assert bool(mix["cut"].all()) and torch.allclose(y.sum(1), torch.ones(24))


def test_mixing_is_per_sample_from_seed_and_view_whatever_the_batching() -> None:
    """Shuffled or not, any batch size, resumed or not: sample i's mixed view is the same."""
    s = split()
    kw = dict(mixup=0.4, cutmix=1.0, augment="crop_flip", crop_padding=2, views=3)
    a, b = batches(s, shuffle=True, **kw), batches(s, shuffle=False, batch_size=7, **kw)
    for epoch in (0, 4):  # view 0, view 1
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        sa, sb = by_sample(a), by_sample(b)
        assert sa.keys() == sb.keys() == set(range(24))
        assert all(torch.equal(sa[i][0], sb[i][0]) and torch.equal(sa[i][1], sb[i][1]) for i in range(24))
    a.set_epoch(0)
    c = by_sample(a)
    a.set_epoch(1)
    assert not all(torch.equal(c[i][0], x) for i, (x, _) in by_sample(a).items())
    cut = a.mixing(1)["cut"]
    assert 0 < int(cut.sum()) < 24  # both on: each sample takes one of the two


def test_mixing_refuses_masks() -> None:
    s = Split(np.zeros((4, 3, 8, 8), np.uint8), np.zeros(4, np.int64), masks=np.zeros((4, 1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="class labels"):
        batches(s, mixup=1.0)


def test_student_trains_with_mixup_cached_teacher_and_resumes_exactly(tmp_path: Path) -> None:
    """With data.views the teacher's outputs for the mixed views are cached, and they equal the
    teacher run on the student's mixed batches; an interrupted run resumes bit-identically."""
    sets = {
        "student.mixup": 0.4,
        "student.cutmix": 1.0,
        "data.views": 2,
        "data.augment": "crop",
        "distill.baseline": "false",
        "teacher.epochs": 1,
    }
    ref = tmp_path / "ref"
    distill(out=ref, set=tiny_overrides(**sets))
    rows = [json.loads(line) for line in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows].count("student") == 2 and all(np.isfinite(r["loss"]) for r in rows)
    cache = list((ref / "teacher_cache").glob("student-*.pt"))
    assert len(cache) == 1
    cached = torch.load(cache[0], weights_only=True)  # (views, N, classes)

    from edgekd.checkpoint import load_model
    from edgekd.config import load_config
    from edgekd.data import load_dataset

    cfg = load_config(None, tiny_overrides(**sets))
    data = load_dataset(cfg.data)
    teacher, _ = load_model(ref / "teacher.pt")
    teacher.eval()
    b = Batches(
        data.train,
        data.mean,
        data.std,
        64,
        augment=data.augment,
        crop_padding=data.crop_padding,
        shuffle=True,
        seed=cfg.seed,
        views=2,
        mixup=0.4,
        cutmix=1.0,
        num_classes=data.num_classes,
    )
    b.set_epoch(1)
    with torch.no_grad():
        for idx, x, _ in b.with_index():
            assert torch.allclose(teacher(x), cached[1][idx], atol=1e-5)

    out = tmp_path / "interrupted"

    def stop(record: dict, history: list) -> None:
        if record["stage"] == "student" and record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(out=out, set=tiny_overrides(**sets), on_epoch=[stop])
    distill(out=out, resume=True)
    a, c = (
        load_checkpoint(out / "student_last.pt")["state_dict"],
        load_checkpoint(ref / "student_last.pt")["state_dict"],
    )
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_negative_mixup_is_refused() -> None:
    from edgekd.config import load_config

    with pytest.raises(ConfigError, match="student.mixup must be a number from 0 to 1000, got -1"):
        load_config(None, tiny_overrides(**{"student.mixup": -1}))
