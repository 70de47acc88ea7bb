"""`edgekd sweep`: one shared teacher, one distill run per (T, α), the winner chosen on val."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_overrides
from edgekd.config import load_config
from edgekd.train.sweep import sweep


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sweep") / "s"
    result = sweep(out=out, set=tiny_overrides(**{"student.epochs": 1}), temperatures=[1, 4], alphas=[0.5, 0.9])
    return out, result


def test_teacher_is_trained_once_and_shared(swept: tuple[Path, dict]) -> None:
    out, result = swept
    assert sorted(p.parent.name for p in out.rglob("teacher_last.pt")) == ["teacher"]  # trained in one place only
    shared = json.loads((out / "teacher" / "summary.json").read_text())["teacher"]
    assert shared["epochs"] == 2 and result["teacher"] == shared
    runs = [json.loads((out / p["run"] / "summary.json").read_text()) for p in result["points"]]
    assert len(runs) == 4
    for r in runs:
        assert (
            r["teacher"]["epochs"] == 0 and r["teacher"]["test_acc"] == shared["test_acc"]
        )  # loaded, the same teacher
    assert "baseline" in runs[0] and not any("baseline" in r for r in runs[1:])  # T and α do not change it: once
    assert result["baseline"] == runs[0]["baseline"]


def test_points_and_winner_chosen_on_val(swept: tuple[Path, dict]) -> None:
    out, result = swept
    assert [(p["temperature"], p["alpha"]) for p in result["points"]] == [(1, 0.5), (4, 0.5), (1, 0.9), (4, 0.9)]
    for p in result["points"]:
        s = json.loads((out / p["run"] / "summary.json").read_text())
        assert (s["distill"]["temperature"], s["distill"]["alpha"]) == (p["temperature"], p["alpha"])
        assert (p["val_acc"], p["test_acc"]) == (s["student"]["val_acc"], s["student"]["test_acc"])
    best_val = max(p["val_acc"] for p in result["points"])
    assert result["winner"] == next(p for p in result["points"] if p["val_acc"] == best_val)  # first of the best on VAL
    assert json.loads((out / "sweep.json").read_text()) == result
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_yaml_reproduces_the_winner(swept: tuple[Path, dict]) -> None:
    out, result = swept
    best = load_config(out / "best.yaml")
    w = result["winner"]
    assert (best.distill.temperature, best.distill.alpha) == (w["temperature"], w["alpha"])
    assert Path(best.teacher.checkpoint) == (out / "teacher" / "teacher.pt").resolve() and best.teacher.epochs == 0
    assert best.student.epochs == 1 and best.student.arch == "test_student"
    from edgekd.train.run import distill

    again = distill(config=best, out=out.parent / "again")
    assert again["student"]["val_acc"] == w["val_acc"] and again["student"]["test_acc"] == w["test_acc"]


def test_resumed_sweep_reuses_finished_points(swept: tuple[Path, dict]) -> None:
    out, result = swept
    stamp = (out / "T1_a0.5" / "student.pt").stat().st_mtime_ns
    again = sweep(out=out, resume=True, temperatures=[1, 4], alphas=[0.5, 0.9])
    assert again["points"] == result["points"] and again["winner"] == result["winner"]
    assert (out / "T1_a0.5" / "student.pt").stat().st_mtime_ns == stamp


def test_sweep_rejects_bad_grids(tmp_path: Path) -> None:
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match="--temperatures must be a number from 0.01 to 1000, got 0"):
        sweep(out=tmp_path / "a", set=tiny_overrides(), temperatures=[0, 2])
    # inside (0, 1000], but every method's loss is NaN there (logits / T overflow float32)
    with pytest.raises(ConfigError, match="--temperatures must be a number from 0.01 to 1000, got 1e-300"):
        sweep(out=tmp_path / "a", set=tiny_overrides(), temperatures=[1e-300])
    with pytest.raises(ConfigError, match="distill.temperature must be a number from 0.01 to 1000, got 0.001"):
        load_config(None, ["distill.temperature=0.001"])
    with pytest.raises(ConfigError, match=r"--temperatures must be a finite number .*got nan"):
        sweep(out=tmp_path / "a", set=tiny_overrides(), temperatures=[float("nan")])
    with pytest.raises(ConfigError, match=r"--alphas must be a number from 0 to 1, got 1.5"):
        sweep(out=tmp_path / "b", set=tiny_overrides(), alphas=[1.5])


def test_shared_teacher_checks_its_data_before_making_its_folder(tmp_path: Path) -> None:
    from edgekd.errors import EdgekdError
    from edgekd.train.sweep import train_shared_teacher

    overrides = tiny_overrides(**{"data.name": "cifar10", "data.root": str(tmp_path / "no-such-data")})
    with pytest.raises(EdgekdError, match="no-such-data"):
        train_shared_teacher(load_config(None, overrides), tmp_path / "teacher", resume=False)
    assert not (tmp_path / "teacher").exists()


def test_resume_continues_a_point_of_a_sweep_without_config(tmp_path: Path) -> None:
    """A nameless config is saved named "run": the resumed sweep derives the points' names (and
    configs) as the first run did, not from config.yaml's stem. α = -0 is the point T2_a0."""
    out = tmp_path / "s"
    sweep(out=out, set=tiny_overrides(**{"student.epochs": 1}), temperatures=[2], alphas=[-0.0])
    assert [p.name for p in out.glob("T*")] == ["T2_a0"]
    (out / "T2_a0" / "summary.json").unlink()  # as if interrupted during the point
    again = sweep(out=out, resume=True, temperatures=[2], alphas=[-0.0])
    assert load_config(out / "T2_a0" / "config.yaml").name == "run-T2_a0" and (out / "T2_a0" / "summary.json").is_file()
    assert [(p["alpha"], p["run"]) for p in again["points"]] == [(0.0, "T2_a0")]
    assert load_config(out / "best.yaml").name == "run-best"


def test_resume_continues_a_point_of_a_sweep_saved_without_a_name(tmp_path: Path) -> None:
    """Sweeps started without --config used to save `name: null`: read back, config.yaml's stem
    named them "config", and their interrupted point ("run-T2_a0.9") was refused as changed."""
    import re

    out = tmp_path / "s"
    sweep(out=out, set=tiny_overrides(**{"student.epochs": 1, "distill.baseline": "false"}), temperatures=[2])
    saved = (out / "config.yaml").read_text()
    assert re.search(r"^name: run$", saved, re.M)
    (out / "config.yaml").write_text(re.sub(r"^name: run$", "name: null", saved, flags=re.M))  # as they were
    (out / "T2_a0.9" / "summary.json").unlink()  # interrupted during the point
    again = sweep(out=out, resume=True, temperatures=[2])
    assert [p["run"] for p in again["points"]] == ["T2_a0.9"] and (out / "T2_a0.9" / "summary.json").is_file()
    assert load_config(out / "best.yaml").name == "run-best"


def copied(swept: tuple[Path, dict], tmp_path: Path) -> Path:
    """A copy of the module's finished sweep, somewhere else: it may be changed."""
    import shutil

    return Path(shutil.copytree(swept[0], tmp_path / "moved"))


def test_resume_after_the_sweep_folder_moved(swept: tuple[Path, dict], tmp_path: Path) -> None:
    out = copied(swept, tmp_path)
    (out / "T4_a0.9" / "summary.json").unlink()  # interrupted, then moved: it names the old teacher path
    stamp = (out / "T1_a0.5" / "student.pt").stat().st_mtime_ns
    again = sweep(out=out, resume=True, temperatures=[1, 4], alphas=[0.5, 0.9])
    teacher = str((out / "teacher" / "teacher.pt").resolve())
    assert load_config(out / "T4_a0.9" / "config.yaml").teacher.checkpoint == teacher
    assert load_config(out / "best.yaml").teacher.checkpoint == teacher
    assert (out / "T1_a0.5" / "student.pt").stat().st_mtime_ns == stamp  # finished points are read back
    assert [p["run"] for p in again["points"]] == [p["run"] for p in swept[1]["points"]]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"points": []}', "malformed: student.val_acc is missing"),
        ('{"student": {"val_acc": 0.5, "test_acc": 1}}', "malformed: wall_s.total is missing"),
        # edgekd writes no NaN or infinity: the reader refuses them before the sweep's own checks
        ('{"student": {"val_acc": NaN, "test_acc": 1}, "wall_s": {"total": 1}}', r"corrupt \(NaN is not a JSON"),
        ('{"student": {"val_acc": 1e999, "test_acc": 1}, "wall_s": {"total": 1}}', r"corrupt \(1e999 is not a finite"),
    ],
)
def test_resume_refuses_an_edited_point_summary(
    swept: tuple[Path, dict], tmp_path: Path, text: str, needle: str
) -> None:
    from edgekd.errors import EdgekdError

    out = copied(swept, tmp_path)
    (out / "T1_a0.5" / "summary.json").write_text(text)
    with pytest.raises(EdgekdError, match=rf"T1_a0.5/summary.json is {needle}.*move .*T1_a0.5 away"):
        sweep(out=out, resume=True, temperatures=[1, 4], alphas=[0.5, 0.9])


def test_resume_refuses_points_of_a_teacher_since_changed(swept: tuple[Path, dict], tmp_path: Path) -> None:
    """The points learned from the teacher the sweep trained first: one trained again (its folder
    removed) or replaced would not be theirs, and best.yaml would name it. Refused before training."""
    import shutil

    from edgekd.errors import EdgekdError

    out = copied(swept, tmp_path)
    shutil.copy(out / "T1_a0.5" / "student.pt", out / "teacher" / "teacher.pt")
    with pytest.raises(EdgekdError, match=r"teacher/teacher.pt changed, so its teacher is not the one .*T1_a0.5"):
        sweep(out=out, resume=True, temperatures=[1, 4], alphas=[0.5, 0.9])
    shutil.rmtree(out / "teacher")
    with pytest.raises(EdgekdError, match=r"teacher/summary.json is missing.*start a fresh sweep"):
        sweep(out=out, resume=True, temperatures=[1, 4], alphas=[0.5, 0.9])
    assert not (out / "teacher").exists()  # refused before the teacher was trained again


def test_resume_refuses_a_teacher_folder_swapped_in_whole(swept: tuple[Path, dict], tmp_path: Path) -> None:
    """Another sweep's teacher folder, its own summary.json matching its own files, passed the
    teacher's own record; sweep_teacher.json, outside teacher/, records which teacher the points had."""
    import hashlib
    import shutil

    from edgekd.errors import EdgekdError

    out = copied(swept, tmp_path)
    assert json.loads((out / "sweep_teacher.json").read_text()) == {
        "sha256": json.loads((out / "teacher" / "summary.json").read_text())["sha256"]
    }
    shutil.copy(out / "T1_a0.5" / "student.pt", out / "teacher" / "teacher.pt")  # another teacher …
    summary = json.loads((out / "teacher" / "summary.json").read_text())
    summary["sha256"]["teacher.pt"] = hashlib.sha256((out / "teacher" / "teacher.pt").read_bytes()).hexdigest()
    (out / "teacher" / "summary.json").write_text(json.dumps(summary))  # … with its own consistent record
    with pytest.raises(EdgekdError, match=r"teacher was replaced \(its files are not the ones .*sweep_teacher.json"):
        sweep(out=out, resume=True, temperatures=[1, 4], alphas=[0.5, 0.9])
    (out / "sweep_teacher.json").write_text('{"sha256": [1]}')
    with pytest.raises(EdgekdError, match=r"sweep_teacher.json is malformed"):
        sweep(out=out, resume=True, temperatures=[1, 4], alphas=[0.5, 0.9])
    (out / "sweep_teacher.json").unlink()  # a sweep from before the record: the teacher's own summary decides
    sweep(out=out, resume=True, temperatures=[1, 4], alphas=[0.5, 0.9])


def test_ensemble_sweep_loads_its_members_by_path(tmp_path: Path) -> None:
    """The members trained once go to every point as distill.ensemble.teacher_checkpoints (the keys
    were given as distill's own, a TypeError once the members were trained); moved, it resumes."""
    import shutil

    sets = tiny_overrides(**{"distill.method": "ensemble", "distill.ensemble.teacher_seeds": "[0,1]"})
    sweep(out=tmp_path / "s", set=[*sets, "student.epochs=1", "distill.baseline=false"], temperatures=[2])
    out = Path(shutil.move(tmp_path / "s", tmp_path / "moved"))
    (out / "T2_a0.9" / "summary.json").unlink()
    sweep(out=out, resume=True, temperatures=[2])
    members = [str((out / "teacher" / f"teacher{i}.pt").resolve()) for i in (1, 2)]
    for yaml in (out / "T2_a0.9" / "config.yaml", out / "best.yaml"):
        assert list(load_config(yaml).distill.ensemble.teacher_checkpoints) == members
