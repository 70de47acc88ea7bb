"""`edgekd search` on a real PostgreSQL server started here (pgserver: the server binaries in a
wheel), a main process and two workers on one study, one worker killed with SIGKILL mid-trial:
its trial ends failed and is retried, no finished trial is lost, none runs twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_overrides

optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install 'edgekd[search]')")
pytest.importorskip("psycopg", reason="psycopg (the PostgreSQL driver) is not installed: pip install 'edgekd[search]'")
pgserver = pytest.importorskip(
    "pgserver", reason="pgserver (PostgreSQL server binaries in a wheel) is not installed: pip install 'edgekd[dev]'"
)

SPACE = "families:\n  tiny: {archs: [test_student], width: [1, 2, 3, 4, 5, 6, 8]}\n"
TRIALS = 6
STUDY = "pg-test"


@pytest.fixture
def postgres_url():
    # a short folder of its own under /tmp: the server's Unix socket path must stay under 108
    # bytes, and as root pgserver hands the folder to its own system user (pytest's base temp
    # folder is private to root)
    folder = Path(tempfile.mkdtemp(prefix="edgekd-pg-"))
    server, errors = None, []
    for _ in range(2):  # a second try: a first start on a fresh machine has been seen to fail once
        try:
            server = pgserver.get_server(folder, cleanup_mode="stop")
            break
        except Exception as exc:  # noqa: BLE001 - say exactly why the server did not start
            detail = (getattr(exc, "stderr", None) or "").strip().splitlines()[-1:]  # initdb/pg_ctl say why
            errors.append(f"{type(exc).__name__}: {exc} {' '.join(detail)}")
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
    if server is None:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pgserver could not start a PostgreSQL server in {folder}: {' / '.join(errors)}")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _edgekd(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekd", "search", *args],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    proc.stdout_log = str(log)  # type: ignore[attr-defined] - for failure messages
    return proc


def _wait(predicate, timeout: float, what: str, procs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() is not None and p.returncode != 0:
                pytest.fail(f"{what}: a process exited with {p.returncode}: {_tails(p)}")
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}: {' | '.join(_tails(p) for p in procs)}")


def _tails(proc: subprocess.Popen) -> str:
    """The last lines of a process's log, for a failure message."""
    log = Path(proc.stdout_log)  # type: ignore[attr-defined]
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    return f"{log.name}: " + " / ".join(lines[-5:])


def _load(url: str):
    try:
        study = optuna.load_study(study_name=STUDY, storage=url)
    except KeyError:
        return None
    return study if study.user_attrs.get("edgekd_search") else None


# slow: up to minutes, and its timing against the workers' heartbeats is not yet stable enough for
# the default suite (one run in four timed out here); `make test-slow` runs it
@pytest.mark.slow
def test_workers_share_a_postgres_study_and_survive_kill9(tmp_path, postgres_url):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "search"
    sets = [a for kv in tiny_overrides(**{"teacher.epochs": 1, "student.epochs": 6}) for a in ("--set", kv)]
    common = ["--storage", postgres_url, "--study-name", STUDY, "--heartbeat", "3", "--out", str(out)]
    main = _edgekd(
        "--config",
        "configs/digits.yaml",
        *sets,
        "--space",
        str(space),
        "--budget",
        "params=3000",
        "--trials",
        str(TRIALS),
        "--trial-epochs",
        "3",
        "--finalists",
        "0",
        "--pruner",
        "none",
        *common,
        log=tmp_path / "main.log",
    )
    procs = [main]
    try:
        _wait(lambda: _load(postgres_url), 300, "the main process to start the study", procs)
        victim = _edgekd("--worker", *common, log=tmp_path / "victim.log")
        other = _edgekd("--worker", *common, log=tmp_path / "other.log")
        procs += [victim, other]
        victim_id = f":{victim.pid}"

        def victim_training():
            study = _load(postgres_url)
            return next(
                (
                    t
                    for t in study.get_trials(deepcopy=False)
                    if str(t.user_attrs.get("worker", "")).endswith(victim_id)
                    and t.user_attrs.get("status") == "training"
                    and t.state.name == "RUNNING"
                ),
                None,
            )

        # A tiny trial can finish between seeing it run and the kill: freeze the victim first, and
        # kill it only if the trial is still running then (else let it go on to its next trial).
        for _attempt in range(20):
            killed = _wait(victim_training, 300, "the victim worker to be mid-trial", procs)
            os.kill(victim.pid, signal.SIGSTOP)
            trials_now = _load(postgres_url).get_trials(deepcopy=False)
            if next(t for t in trials_now if t.number == killed.number).state.name == "RUNNING":
                break
            os.kill(victim.pid, signal.SIGCONT)
        else:
            pytest.fail("the victim worker never stayed mid-trial long enough to be killed")
        before = {t.number: t.state.name for t in trials_now if t.state.name in ("COMPLETE", "PRUNED")}
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(30)
        assert main.wait(600) == 0, (tmp_path / "main.log").read_text()[-3000:]
        assert other.wait(300) == 0, (tmp_path / "other.log").read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)

    trials = _load(postgres_url).get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    # the killed trial failed (its heartbeat stopped) and was queued again once; the retry finished
    assert by_number[killed.number].state.name == "FAIL"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and retries[0].params == killed.params
    # no finished trial lost: what was finished before the kill is finished after it
    assert all(by_number[n].state.name == s for n, s in before.items())
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    trained = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get("status") == "trained"]
    assert len(trained) >= TRIALS
    # none run twice: every trained trial has its own run folder, written by one process
    runs = [t.user_attrs["run"] for t in trained]
    assert len(set(runs)) == len(runs)
    for t in trained:
        assert (Path(t.user_attrs["run"]) / "summary.json").is_file()
    assert not any(t.user_attrs["worker"].endswith(victim_id) for t in trained)
    # the trials were shared: the surviving worker ran some (trained, or answered from a finished twin)
    ran = {t.user_attrs.get("worker") for t in trials if t.state.name == "COMPLETE"}
    assert any(w.endswith(f":{other.pid}") for w in ran), ran
    log = (tmp_path / "other.log").read_text()
    assert "ran trials" in log
    assert (out / "pareto.json").is_file()
