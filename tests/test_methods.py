"""Every KD method end to end on digits with the tiny test models (seconds each).

Each run's student must be a plain model checkpoint, like any student: loadable into the bare
architecture, without teacher, regressor or ensemble weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from edgekd.checkpoint import load_checkpoint, load_model
from edgekd.config import load_config
from edgekd.errors import ConfigError
from edgekd.models import create_model
from edgekd.train.run import distill


def run(out: Path, **overrides: object) -> dict:
    return distill(out=out, set=tiny_overrides(**overrides))


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_plain_student(out: Path, name: str = "student", arch: str = "test_student") -> None:
    """``<name>.pt`` holds exactly the bare architecture's weights and nothing else."""
    model, ckpt = load_model(out / f"{name}.pt")
    assert ckpt["arch"] == arch and "train_state" not in ckpt
    bare = create_model(arch, 10, 1, (8, 8))
    assert set(ckpt["state_dict"]) == set(bare.state_dict())
    bare.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        assert bare(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.fixture(scope="module")
def teacher_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny teacher that the loss-variant runs share (loaded, not retrained)."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    run(out, **{"teacher.epochs": 3, "student.epochs": 1, "distill.baseline": "false"})
    return out / "teacher.pt"


# -- Hinton variants ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kd_soft", "kd_mse"])
def test_loss_variants_train_a_plain_student(method: str, teacher_pt: Path, tmp_path: Path) -> None:
    out = tmp_path / method
    summary = run(out, **{"distill.method": method, "teacher.checkpoint": str(teacher_pt), "teacher.epochs": 0, "distill.baseline": "false"})
    assert summary["distill"]["method"] == method
    kd = [r for r in metrics(out) if r["stage"] == "student"]
    assert len(kd) == 2 and all(r["kd_loss"] > 0 for r in kd)
    if method == "kd_soft":  # α = 1: the loss is the soft term alone
        assert all(r["loss"] == pytest.approx(r["kd_loss"], rel=1e-5) for r in kd)
    assert load_checkpoint(out / "student.pt")["method"] == method
    assert_plain_student(out)


def test_kd_sigmoid_trains_teacher_and_baseline_with_bce(tmp_path: Path) -> None:
    out = tmp_path / "sigmoid"
    summary = run(out, **{"distill.method": "kd_sigmoid", "teacher.epochs": 1, "student.epochs": 1})
    assert load_checkpoint(out / "teacher.pt")["method"] == "bce"  # soft targets σ(z_t/T) need a sigmoid teacher
    assert load_checkpoint(out / "baseline.pt")["method"] == "bce"
    assert load_checkpoint(out / "student.pt")["method"] == "kd_sigmoid"
    assert {"kd_loss", "task_loss"} <= set(next(r for r in metrics(out) if r["stage"] == "student"))
    assert 0 <= summary["student"]["test_acc"] <= 1
    assert_plain_student(out)


# -- transfer set -------------------------------------------------------------------------------


def test_transfer_set_adds_unlabeled_images(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "unlabeled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(100):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")  # another size: resized
    out = tmp_path / "transfer"
    summary = run(out, **{"distill.method": "transfer", "distill.transfer_set": str(folder), "teacher.epochs": 1, "student.epochs": 1})
    labeled = summary["data"]["sizes"]["train"]
    assert summary["transfer"] == {"root": str(folder), "unlabeled": 100, "labeled": labeled}
    assert load_checkpoint(out / "student.pt")["data"]["sizes"]["train"] == labeled + 100
    assert load_checkpoint(out / "baseline.pt")["data"]["sizes"]["train"] == labeled  # no teacher: labels only
    student = next(r for r in metrics(out) if r["stage"] == "student")
    assert 0 <= student["train_acc"] <= 1 and student["kd_loss"] > 0
    assert_plain_student(out)

    alone = run(tmp_path / "alone", **{"distill.method": "transfer", "distill.transfer_set": str(folder), "distill.transfer_labeled": "false",
                                      "teacher.epochs": 1, "student.epochs": 1, "distill.baseline": "false"})
    assert alone["transfer"]["labeled"] == 0
    assert all(r["task_loss"] == 0 for r in metrics(tmp_path / "alone") if r["stage"] == "student")  # soft term only
    with pytest.raises(ConfigError, match="needs distill.transfer_set"):
        run(tmp_path / "none", **{"distill.method": "transfer"})


# -- config ↔ method ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"source.name": "digits"}, "the `source` data section does nothing with distill.method=kd"),
    ],
)
def test_method_keys_are_checked_before_anything_runs(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        run(tmp_path / "run", **overrides)
    assert message in str(err.value)
    assert not (tmp_path / "run").exists()
