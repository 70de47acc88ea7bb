"""Training speed and scale: the teacher-output cache and DistributedDataParallel (gloo, CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import REPO, tiny_overrides
from edgekd.checkpoint import load_checkpoint
from edgekd.train.run import distill


def _teacher_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count forward calls of the tiny teacher class during the student stage."""
    from edgekd.models import tiny

    calls: list[int] = []
    original = tiny.TinyCNN.forward

    def counting(self, x):
        if self.fc.in_features == 32:  # the teacher (16→32 channels), not the student
            calls.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(tiny.TinyCNN, "forward", counting)
    return calls


def test_teacher_cache_equals_running_the_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    base = tiny_overrides(**{"distill.baseline": "false"})
    calls = _teacher_calls(monkeypatch)
    plain = distill(out=tmp_path / "plain", set=base + ["runtime.teacher_cache=false"])
    plain_calls = sum(calls)
    calls.clear()
    cached = distill(out=tmp_path / "cached", set=base)
    assert cached["student"]["test_acc"] == pytest.approx(plain["student"]["test_acc"], abs=0.01)
    a = load_checkpoint(tmp_path / "cached" / "student.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "plain" / "student.pt")["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)
    files = list((tmp_path / "cached" / "teacher_cache").glob("student-*.pt"))
    assert len(files) == 1
    n_train = cached["data"]["sizes"]["train"]
    # without the cache the teacher runs on every step (2 epochs of full batches of 64); with it,
    # once over the training images — everything else (its own training, scoring) is the same
    per_step = 2 * (n_train // 64) * 64
    assert plain_calls - sum(calls) == per_step - n_train
    outputs = torch.load(files[0], weights_only=True)
    assert outputs.shape == (1, n_train, 10)


def test_cache_is_reused_and_invalidated(tmp_path: Path, capsys) -> None:
    base = tiny_overrides(**{"distill.baseline": "false"})
    run = tmp_path / "run"
    distill(out=run, set=base)
    first = sorted((run / "teacher_cache").glob("*.pt"))
    capsys.readouterr()
    # resuming the student stage reads the stored outputs instead of recomputing them
    (run / "student.pt").unlink()
    distill(out=run, resume=True)
    assert "teacher outputs from cache" in capsys.readouterr().err
    # a different teacher (another seed) → another key: the stale file is replaced
    distill(out=run, set=base + ["seed=1"], overwrite=True)
    second = sorted((run / "teacher_cache").glob("*.pt"))
    assert len(second) == 1 and second != first


def test_a_teacher_cache_of_another_shape_or_dtype_is_computed_again(tmp_path: Path, capsys) -> None:
    """Only the views and images of a cached file were checked: another class count failed
    inside the KD loss with a traceback, and integer outputs were trained on as the teacher's."""
    run = tmp_path / "run"
    distill(out=run, set=tiny_overrides(**{"distill.baseline": "false"}))
    (cache,) = (run / "teacher_cache").glob("student-*.pt")
    good = torch.load(cache, weights_only=True)
    for bad, why in ((good[..., :5].clone(), "of shape"), (good.round().long(), "found int64")):
        torch.save(bad, cache)
        (run / "student.pt").unlink()
        capsys.readouterr()
        distill(out=run, resume=True)
        err = capsys.readouterr().err
        assert "is unusable (expected" in err and why in err and "computing it again" in err
        assert torch.equal(torch.load(cache, weights_only=True), good)


def test_views_cache_several_augmented_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tiny_overrides(
        **{"distill.baseline": "false", "data.augment": "crop", "data.crop_padding": 1, "student.epochs": 4}
    )
    distill(out=tmp_path / "fresh", set=base)  # new augmentation every epoch: nothing to cache
    assert not (tmp_path / "fresh" / "teacher_cache").exists()
    calls = _teacher_calls(monkeypatch)
    distill(out=tmp_path / "uncached", set=base + ["data.views=2", "runtime.teacher_cache=false"])
    uncached = sum(calls)
    calls.clear()
    summary = distill(out=tmp_path / "views", set=base + ["data.views=2"])
    (file,) = (tmp_path / "views" / "teacher_cache").glob("student-*.pt")
    n_train = summary["data"]["sizes"]["train"]
    assert torch.load(file, weights_only=True).shape == (2, n_train, 10)
    # 4 epochs of per-step teacher calls replaced by one pass over 2 views
    assert uncached - sum(calls) == 4 * (n_train // 64) * 64 - 2 * n_train
    # the cached views are exactly what the student saw: same result as running the teacher
    a = load_checkpoint(tmp_path / "views" / "student.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "uncached" / "student.pt")["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)


def test_teacher_cache_is_shared_by_student_seeds_and_archs(tmp_path: Path, capsys) -> None:
    """With data.view_seed fixed and one runtime.teacher_cache_dir, the teacher's outputs for the
    views are computed once: a second student seed and a second student architecture read the
    same file, untouched. The key follows the views' seed, so without data.view_seed a new run
    seed means new views and a new file."""
    from edgekd.train import teacher_cache

    teacher_run = tmp_path / "teacher"
    distill(out=teacher_run, set=tiny_overrides(**{"distill.baseline": "false", "student.epochs": 1}))
    shared = tmp_path / "shared_cache"
    base = tiny_overrides(
        **{
            "distill.baseline": "false",
            "data.augment": "crop",
            "data.crop_padding": 1,
            "data.views": 2,
            "teacher.checkpoint": json.dumps(str(teacher_run / "teacher.pt")),
            "teacher.epochs": 0,
            "runtime.teacher_cache_dir": json.dumps(str(shared)),
        }
    )
    computed: list[int] = []
    original = teacher_cache.compute_outputs

    def counting(teacher, data, views, view_seed, *args, **kwargs):
        computed.append(view_seed)
        return original(teacher, data, views, view_seed, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(teacher_cache, "compute_outputs", counting)
        distill(out=tmp_path / "seed0", set=base + ["seed=0", "data.view_seed=0"])
        (file,) = shared.glob("student-*.pt")
        stamp = (file.stat().st_mtime_ns, file.stat().st_ino)
        capsys.readouterr()
        seed1 = distill(out=tmp_path / "seed1", set=base + ["seed=1", "data.view_seed=0"])
        wider = distill(out=tmp_path / "wider", set=base + ["seed=2", "data.view_seed=0", "student.kwargs={width: 6}"])
        assert computed == [0]  # once, for the first run only
        assert capsys.readouterr().err.count("teacher outputs from cache") == 2
        assert [p.name for p in shared.glob("student-*.pt")] == [file.name]
        assert (file.stat().st_mtime_ns, file.stat().st_ino) == stamp  # read, never rewritten
        assert seed1["student"]["params"] < wider["student"]["params"]  # the second student really is another net
        # the views' seed defaults to the run's: seed 3 draws other views, so its own outputs
        (shared / "student-mine.pt").write_text("a user's file in the shared folder")  # not a cache file
        distill(out=tmp_path / "seed3", set=base + ["seed=3"])
        assert computed == [0, 3]
        assert (shared / "student-mine.pt").read_text() == "a user's file in the shared folder"
        assert [p.name for p in shared.glob("student-*.pt")] != [file.name]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DRIVER = textwrap.dedent(
    """
    import json, sys
    from edgekd.train.run import distill

    out, overrides = sys.argv[1], sys.argv[2:]

    class Stop(Exception):
        pass

    def stop(record, history):
        if record["stage"] == "student" and record["epoch"] == 1:
            raise Stop

    try:  # interrupted after the student's first epoch …
        distill(out=out, set=overrides, on_epoch=[stop])
    except Stop:
        pass
    summary = distill(out=out, resume=True)  # … and resumed, in the same process group
    print("SUMMARY " + json.dumps(summary))
    """
)


def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    """torchrun --nproc_per_node 2 (gloo on CPU), interrupted and resumed, equals one process with
    the same global batch. Models without batch norm: CPU ranks normalize their own half-batch."""
    overrides = tiny_overrides(
        **{
            "teacher.kwargs": "{norm: false}",
            "student.kwargs": "{norm: false}",
            "distill.baseline": "false",
            "data.batch_size": 64,
            "runtime.teacher_cache": "false",
        }
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(driver),
        str(tmp_path / "ddp"),
        *overrides,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert len(summaries) == 2
    drop_time = lambda rec: {k: v for k, v in rec.items() if k != "wall_s"}  # noqa: E731 - each rank times itself
    assert drop_time(summaries[0]["student"]) == drop_time(summaries[1]["student"])  # ranks agree
    assert "2 processes" in summaries[0]["device"]

    single = distill(out=tmp_path / "single", set=overrides)
    for role in ("teacher", "student"):
        assert summaries[0][role]["val_acc"] == pytest.approx(single[role]["val_acc"], abs=0.01), role
        assert summaries[0][role]["test_acc"] == pytest.approx(single[role]["test_acc"], abs=0.01), role
    a = load_checkpoint(tmp_path / "ddp" / "student.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "single" / "student.pt")["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3) for k in a), max(
        (a[k] - b[k]).abs().max().item() for k in a
    )
    # only rank 0 wrote: one metrics record per epoch, no duplicates
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in records] == [
        ("teacher", 1),
        ("teacher", 2),
        ("student", 1),
        ("student", 2),
    ]


def test_global_batch_must_split_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.errors import EdgekdError
    from edgekd.train import distributed

    monkeypatch.setattr(distributed, "_world", distributed.World(0, 3, 0))
    with pytest.raises(
        EdgekdError, match="data.batch_size 64 is the global batch: it must divide evenly over 3 processes"
    ):
        distributed.check_batch(64)


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE/RANK must be integers set by torchrun (WORLD_SIZE is 'abc')"),
        ({"WORLD_SIZE": "-5"}, "WORLD_SIZE must be an integer of at least 1"),
        ({"WORLD_SIZE": "2"}, "RANK, MASTER_ADDR, MASTER_PORT are not set"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR, MASTER_PORT are not set"),
        ({"WORLD_SIZE": "2", "RANK": "x", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}, "(RANK is 'x')"),
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}, "RANK must be"),
        ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "http"}, "MASTER_PORT"),
    ],
    ids=["size-abc", "size-negative", "no-rank", "no-master", "rank-x", "rank-too-high", "port-http"],
)
def test_torchrun_variables_set_by_hand_are_one_line(
    env: dict[str, str], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """WORLD_SIZE and its companions are checked before any process group is joined (they were
    int() and environ[] tracebacks, and torch's own for a missing MASTER_ADDR)."""
    from edgekd.cli import main

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def joined(*args, **kwargs):  # a process group that waits for peers that never come: a hang
        raise AssertionError("joined a process group")

    monkeypatch.setattr(torch.distributed, "init_process_group", joined)
    assert (
        main(["distill", "--out", str(tmp_path / "run"), *[x for kv in tiny_overrides() for x in ("--set", kv)]]) == 2
    )
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]
    assert "Traceback" not in err and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_compiled_teacher_and_student_train(tmp_path: Path) -> None:
    """runtime.compile_teacher/compile_student: torch.compile (inductor's C++ backend on a CPU; a
    minute of compiling, hence slow) trains to the same result as eager within float tolerance."""
    base = tiny_overrides(**{"distill.baseline": "false", "runtime.teacher_cache": "false"})
    eager = distill(out=tmp_path / "eager", set=base)
    compiled = distill(
        out=tmp_path / "compiled", set=base + ["runtime.compile_teacher=true", "runtime.compile_student=true"]
    )
    assert compiled["student"]["val_acc"] == pytest.approx(eager["student"]["val_acc"], abs=0.03)
    assert "compiled teacher+student" in compiled["device"]
    a = load_checkpoint(tmp_path / "compiled" / "student.pt")["state_dict"]
    assert not any(k.startswith("_orig_mod") for k in a)  # saved as the plain student
