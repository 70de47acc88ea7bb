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


def test_translate_tta_is_airbench_level_2() -> None:
    """Half the flip mean of the image, a quarter each of the flip means of the image shifted one
    pixel down-right and up-left (mirror padding); per-pixel outputs shifted back."""
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 5 * 6, 5))
    x = torch.randn(3, 2, 5, 6)

    def flip_mean(m, v):
        return 0.5 * (m(v) + m(v.flip(3)))

    p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    want = 0.5 * flip_mean(head, x) + 0.25 * (flip_mean(head, p[:, :, :5, :6]) + flip_mean(head, p[:, :, 2:, 2:]))
    assert torch.allclose(FlipTTA(head, translate=True)(x), want, atol=1e-6)
    assert not torch.allclose(FlipTTA(head, translate=True)(x), FlipTTA(head)(x))
    # a per-pixel model that is shift-equivariant inside the image gives its own output back there
    seg = torch.nn.Conv2d(2, 1, 1, bias=False)
    y, plain = FlipTTA(seg, translate=True)(x), FlipTTA(seg)(x)
    assert y.shape == plain.shape and torch.allclose(y[:, :, 1:-1, 1:-1], plain[:, :, 1:-1, 1:-1], atol=1e-6)
    # the cache key of a teacher wrapped with it differs from flip alone's
    assert "tta_translate" in FlipTTA(head, translate=True).state_dict() and not any(
        "tta_translate" in k for k in FlipTTA(head).state_dict()
    )


def test_translate_tta_needs_flip_tta() -> None:
    from edgekd.config import load_config
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match="teacher.tta_translate adds to flip TTA: set teacher.tta_flip too"):
        load_config(None, tiny_overrides(**{"teacher.tta_translate": "true"}))


def test_teacher_with_translate_tta_scores_with_it(tmp_path: Path) -> None:
    from edgekd.checkpoint import load_model
    from edgekd.config import load_config
    from edgekd.data import load_dataset
    from edgekd.data.loader import Batches
    from edgekd.train.evaluate import evaluate

    sets = {
        "teacher.tta_flip": "true",
        "teacher.tta_translate": "true",
        "teacher.epochs": 1,
        "student.epochs": 1,
        "distill.baseline": "false",
    }
    summary = distill(out=tmp_path / "run", set=tiny_overrides(**sets))
    teacher, _ = load_model(tmp_path / "run" / "teacher.pt")
    data = load_dataset(load_config(None, tiny_overrides(**sets)).data)
    test = Batches(data.test, data.mean, data.std, 512)
    with_tta = evaluate(FlipTTA(teacher.eval(), translate=True), test).metrics["acc"]
    flip_only = evaluate(FlipTTA(teacher.eval()), test).metrics["acc"]
    assert summary["teacher"]["test_acc"] == pytest.approx(with_tta, abs=1e-6)
    assert with_tta != flip_only
