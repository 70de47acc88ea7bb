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


def _forged_history(ts: dict) -> None:
    for key in ("lr", "loss"):
        ts["history"][0][key] = float("nan")


# train_state changes that edgekd never writes, and what the one error line names
FORGED_TRAIN_STATES = [
    ("epoch-a-string", lambda ts: ts.__setitem__("epoch", "1"), "train_state.epoch must be an integer from 0 to 2"),
    ("epoch-huge", lambda ts: ts.__setitem__("epoch", 10**9), "train_state.epoch must be an integer from 0 to 2"),
    ("epoch-negative", lambda ts: ts.__setitem__("epoch", -3), "train_state.epoch must be an integer from 0 to 2"),
    ("no-optimizer", lambda ts: ts.pop("optimizer"), "train_state lacks optimizer"),
    ("history-a-number", lambda ts: ts.__setitem__("history", 5), "history is not a list of epoch records"),
    ("history-too-long", lambda ts: ts["history"].append(dict(ts["history"][0])), "2 records for 1 epochs"),
    ("history-nan", _forged_history, "train_state.history[0]"),
    ("wall-nan", lambda ts: ts.__setitem__("wall_s", float("nan")), "train_state.wall_s must be a finite number"),
    ("best-val-nan", lambda ts: ts.__setitem__("best_val", float("nan")), "train_state.best_val must be a finite"),
    ("best-epoch-ahead", lambda ts: ts.__setitem__("best_epoch", 2), "train_state.best_epoch"),
    ("method-foreign", lambda ts: ts.__setitem__("method", {"foo": torch.zeros(2)}), "method state does not fit"),
    ("scaler-a-string", lambda ts: ts.__setitem__("scaler", "x"), "train_state.scaler"),
    ("optimizer-a-string", lambda ts: ts.__setitem__("optimizer", "x"), "optimizer state does not fit"),
    (
        "optimizer-hyperparameter-a-string",
        lambda ts: ts["optimizer"]["param_groups"][0].__setitem__("momentum", "x"),
        "optimizer group 0 momentum",
    ),
    (
        "optimizer-state-nan",
        lambda ts: ts["optimizer"]["state"][0]["momentum_buffer"].fill_(float("nan")),
        "momentum_buffer holds non-finite values",
    ),
]


def _interrupted(tiny_run: Path, run: Path, change) -> Path:
    """A copy of ``tiny_run`` as if stopped after the student's first epoch, its student_last.pt's
    train_state then changed by ``change``."""
    import shutil

    shutil.copytree(tiny_run, run)
    for name in ("student.pt", "baseline.pt", "summary.json"):
        (run / name).unlink()
    ckpt = torch.load(run / "student_last.pt", weights_only=True)
    ts = ckpt["train_state"]
    ts.update(epoch=1, best_epoch=1, history=ts["history"][:1])
    change(ts)
    torch.save(ckpt, run / "student_last.pt")
    return run


@pytest.mark.parametrize("change, needle", [pytest.param(c, n, id=i) for i, c, n in FORGED_TRAIN_STATES])
def test_resume_checks_the_training_state(
    change, needle: str, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A ``*_last.pt`` whose train_state edgekd could not have written is a corrupt checkpoint,
    one line, exit 2: not a traceback deep in torch, nor a run that reports epochs it never
    trained (epoch 10**9 finished at once, epoch -3 trained 5 epochs of a 2-epoch recipe)."""
    from edgekd.cli import main

    run = _interrupted(tiny_run, tmp_path / "run", change)
    capsys.readouterr()
    assert main(["distill", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert f"corrupt checkpoint {run / 'student_last.pt'}: " in lines[0] and needle in lines[0], lines[0]
    assert not (run / "student.pt").exists() and not (run / "summary.json").exists()


def test_resume_refuses_another_models_optimizer_state(tiny_run: Path, tmp_path: Path) -> None:
    """torch loads an optimizer state with as many tensors as the model has parameters; the
    teacher's (other shapes) failed only at the first step, inside SGD."""
    from edgekd.errors import CheckpointError

    teacher = torch.load(tiny_run / "teacher_last.pt", weights_only=True)["train_state"]["optimizer"]
    run = _interrupted(tiny_run, tmp_path / "run", lambda ts: ts.__setitem__("optimizer", teacher))
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint .*student_last.pt: optimizer state .* another"):
        distill(out=run, resume=True)
