"""The distill stage end to end on digits with the tiny test models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from edgekd.checkpoint import load_checkpoint, load_model
from edgekd.config import load_config
from edgekd.train.run import distill


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "tiny"
    distill(out=out, set=tiny_overrides())
    return out


def test_outputs_and_summary_schema(tiny_run: Path) -> None:
    for name in (
        "config.yaml",
        "summary.json",
        "metrics.jsonl",
        "teacher.pt",
        "student.pt",
        "baseline.pt",
        "student_last.pt",
        "student_best.pt",
    ):
        assert (tiny_run / name).is_file(), name
    summary = json.loads((tiny_run / "summary.json").read_text())
    for role in ("teacher", "student", "baseline"):
        rec = summary[role]
        for key in ("val_acc", "test_acc", "params", "macs", "wall_s", "arch"):
            assert key in rec, (role, key)
        assert 0.0 <= rec["val_acc"] <= 1.0 and 0.0 <= rec["test_acc"] <= 1.0
        assert rec["params"] > 0 and rec["macs"] > 0
    assert summary["teacher"]["arch"] == "test_teacher" and summary["student"]["arch"] == "test_student"
    assert set(summary["wall_s"]) >= {"teacher", "student", "baseline", "total"}
    # the tiny teacher learns digits well beyond chance (10 %) in 2 epochs
    assert summary["teacher"]["val_acc"] > 0.5
    # the resolved config reproduces the run
    cfg = load_config(tiny_run / "config.yaml")
    assert cfg.student.arch == "test_student" and cfg.runtime.device == "cpu"


def test_metrics_log_has_every_epoch(tiny_run: Path) -> None:
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in records] == [
        ("teacher", 1),
        ("teacher", 2),
        ("student", 1),
        ("student", 2),
        ("baseline", 1),
        ("baseline", 2),
    ]
    kd = [r for r in records if r["stage"] == "student"]
    assert all("kd_loss" in r and "task_loss" in r and "val_acc" in r for r in kd)
    assert all("kd_loss" not in r for r in records if r["stage"] == "baseline")


def test_student_checkpoint_stands_alone(tiny_run: Path) -> None:
    model, ckpt = load_model(tiny_run / "student.pt")
    assert ckpt["role"] == "student" and ckpt["arch"] == "test_student"
    assert not any(k.startswith("teacher") for k in ckpt["state_dict"])  # no teacher or wrapper weights
    assert "train_state" not in ckpt
    assert ckpt["data"]["mean"] and ckpt["data"]["std"] and ckpt["data"]["classes"] == [str(i) for i in range(10)]
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == json.loads((tiny_run / "summary.json").read_text())["student"]["params"]
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_resume_equals_uninterrupted(tmp_path: Path, tiny_run: Path) -> None:
    """Interrupt the KD student after its first epoch, resume, and get bit-identical weights."""
    out = tmp_path / "interrupted"

    def stop_after_first_student_epoch(record: dict, history: list) -> None:
        if record["stage"] == "student" and record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(out=out, set=tiny_overrides(), on_epoch=[stop_after_first_student_epoch])
    assert not (out / "student.pt").exists() and (out / "student_last.pt").is_file()
    summary = distill(out=out, resume=True)
    reference = json.loads((tiny_run / "summary.json").read_text())
    for role in ("teacher", "student", "baseline"):
        assert summary[role]["val_acc"] == reference[role]["val_acc"]
        assert summary[role]["test_acc"] == reference[role]["test_acc"]
    a = load_checkpoint(out / "student_last.pt")["state_dict"]
    b = load_checkpoint(tiny_run / "student_last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in records if r["stage"] == "student"] == [("student", 1), ("student", 2)]


def test_resume_of_a_finished_run_retrains_nothing(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    before = (copy / "student.pt").stat().st_mtime_ns
    summary = distill(out=copy, resume=True)
    assert (copy / "student.pt").stat().st_mtime_ns == before
    assert summary["student"]["test_acc"] == json.loads((tiny_run / "summary.json").read_text())["student"]["test_acc"]


def test_loaded_teacher_checkpoint_is_used_not_retrained(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "loaded"
    summary = distill(
        out=out,
        set=tiny_overrides(
            **{"teacher.checkpoint": str(tiny_run / "teacher.pt"), "teacher.epochs": 0, "distill.baseline": "false"}
        ),
    )
    reference = json.loads((tiny_run / "summary.json").read_text())
    assert summary["teacher"]["epochs"] == 0 and summary["teacher"]["wall_s"] == 0.0
    assert summary["teacher"]["test_acc"] == reference["teacher"]["test_acc"]
    assert summary["student"]["test_acc"] == reference["student"]["test_acc"]  # same teacher, same seed
    assert "baseline" not in summary and not (out / "baseline.pt").exists()
    assert load_checkpoint(out / "teacher.pt")["source"] == str(tiny_run / "teacher.pt")


def test_existing_run_needs_resume_or_overwrite(tiny_run: Path) -> None:
    from edgekd.errors import EdgekdError

    with pytest.raises(EdgekdError, match="already holds a run; use --resume"):
        distill(out=tiny_run, set=tiny_overrides())
    with pytest.raises(EdgekdError, match="different config .*distill.temperature"):
        distill(out=tiny_run, set=tiny_overrides(**{"distill.temperature": 9}), resume=True)
