"""Flip test-time augmentation: the wrapper by hand, and a teacher evaluated and teaching with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from edgekd.models.wrappers import FlipTTA
from edgekd.train.run import distill


def test_flip_tta_averages_the_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 4, 5))
    x = torch.randn(2, 2, 3, 4)
    assert torch.allclose(FlipTTA(head)(x), 0.5 * (head(x) + head(x.flip(3))))
    seg = torch.nn.Conv2d(2, 1, (1, 2), padding=(0, 1), bias=False)  # not mirror-symmetric
    y = FlipTTA(seg)(x)
    assert y.shape == seg(x).shape and torch.allclose(y, 0.5 * (seg(x) + seg(x.flip(3)).flip(3)))


def test_teacher_with_flip_tta_scores_and_teaches_with_it(tmp_path: Path) -> None:
    from edgekd.checkpoint import load_model
    from edgekd.config import load_config
    from edgekd.data import load_dataset
    from edgekd.data.loader import Batches
    from edgekd.train.evaluate import evaluate

    sets = {"teacher.tta_flip": "true", "teacher.epochs": 1, "student.epochs": 1, "distill.baseline": "false"}
    summary = distill(out=tmp_path / "run", set=tiny_overrides(**sets))
    teacher, _ = load_model(tmp_path / "run" / "teacher.pt")
    data = load_dataset(load_config(None, tiny_overrides(**sets)).data)
    test = Batches(data.test, data.mean, data.std, 512)
    with_tta = evaluate(FlipTTA(teacher.eval()), test).metrics["acc"]
    without = evaluate(teacher.eval(), test).metrics["acc"]
    assert summary["teacher"]["test_acc"] == pytest.approx(with_tta, abs=1e-6)
    assert with_tta != without  # digits are not mirror-symmetric: the figure is the TTA one
