"""`edgekd search`: budget and space parsing, the Pareto front, and a tiny search end to end on
SQLite (over-budget candidates never train, a rerun continues the study, the winner exports and
fits per `edgekd bench --device mcu`)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from edgekd.errors import ConfigError
from edgekd.search.budget import Budget, BudgetError, parse_budget
from tests.conftest import tiny_overrides
from tests.test_cli import assert_one_line_error, edgekd_inproc

optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install 'edgekd[search]')")


# -- budget ---------------------------------------------------------------------------------------


def test_budget_parses_every_key_and_takes_the_profile_memories():
    b = parse_budget(
        "flash_kb=256,ram_kb=128,device=cortex-m7-216mhz,latency_ms=50,macs=12.5M,params=100k,host_ms=5,"
        "model_kb=100,rpi_ms=20"
    )
    assert b == Budget(
        flash_kb=256,
        model_kb=100,
        ram_kb=128,
        device="cortex-m7-216mhz",
        latency_ms=50,
        host_ms=5,
        rpi_ms=20,
        macs=12.5e6,
        params=1e5,
    )
    # a device alone: its flash and RAM are the limits; a bare core name means its default profile
    assert parse_budget("device=cortex-m4") == Budget(flash_kb=2048, ram_kb=640, device="cortex-m4-120mhz")
    assert parse_budget(None) == Budget() and Budget().limits() == {}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("flash=256", "unknown key 'flash'; did you mean 'flash_kb'?"),
        ("device=cortex-m7-261mhz", "did you mean 'cortex-m7-216mhz'?"),
        ("flash_kb=-1", "positive"),
        ("flash_kb=0", "positive"),
        ("flash_kb=nan", "positive"),
        ("ram_kb=lots", "not a number"),
        ("params=1e13", "above the largest"),
        ("latency_ms=50", "needs device="),
        ("flash_kb=1,flash_kb=2", "given twice"),
        ("flash_kb", "KEY=VALUE"),
    ],
)
def test_budget_rejects_bad_input(text, needle):
    with pytest.raises(BudgetError, match=needle.replace("(", r"\(").replace("?", r"\?")):
        parse_budget(text)


def test_budget_violations_name_each_limit():
    b = Budget(flash_kb=100, ram_kb=50, params=1000)
    assert b.violations({"flash_kb": 99.0, "ram_kb": 50.0, "params": 1000}) == []
    over = b.violations({"flash_kb": 101.0, "ram_kb": 10.0, "params": 5000})
    assert len(over) == 2 and over[0].startswith("flash_kb 101") and over[1].startswith("params 5,000")
    assert b.violations({"params": 10}) == ["flash_kb: not measured", "ram_kb: not measured"]


# -- space ----------------------------------------------------------------------------------------


def test_default_space_is_the_registry_student_families():
    from edgekd.search.space import load_space

    space = load_space(None)
    names = {c.arch for c in space.candidates()}
    assert {"plain2", "resnet8", "mobilenetv2_small"} <= names and space.size() == len(list(space.candidates())) == 27


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"familes": {}}, "unknown key 'familes'; did you mean 'families'"),
        ({"families": {"p": {"archs": ["plian2"]}}}, "did you mean 'plain2'"),
        ({"families": {"p": {"archs": ["plain2"], "widht": [1]}}}, "did you mean 'width'"),
        ({"families": {"p": {"archs": ["plain2"], "width": [0]}}}, r"\(0, 64\]"),
        ({"families": {"p": {"archs": ["plain2"], "width": [1, 1]}}}, "twice"),
        ({"families": {"p": {"archs": ["os:system"]}}}, "registry models only"),
        ({"families": {"p": {"archs": ["unet_tiny"]}}}, "segmentation"),
        ({"families": {"p": {"archs": ["plain2"]}}, "resolution": [0]}, r"\[1, 4096\]"),
        ({"families": {"p": {"width": [1]}}}, "needs archs"),
    ],
)
def test_space_rejects_bad_input(data, needle):
    from edgekd.search.space import space_from_dict

    with pytest.raises(ConfigError, match=needle):
        space_from_dict(data)


def test_pareto_front_keeps_the_non_dominated():
    from edgekd.search.report import pareto_front

    def p(k, acc, flash, lat):
        return {"candidate_key": k, "val_acc": acc, "figures": {"flash_kb": flash, "latency_ms": lat}}

    pts = [p("a", 0.9, 100, 10), p("b", 0.8, 50, 5), p("c", 0.8, 60, 6), p("d", 0.95, 200, 1), p("e", 0.9, 100, 10)]
    assert [q["candidate_key"] for q in pareto_front(pts, "latency_ms")] == ["b", "a", "e", "d"]


# -- CLI input errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--budget", "flash_kb=-3"], "flash_kb must be a positive number"),
        (["--budget", "ram=3"], "did you mean 'ram_kb'"),
        (["--trials", "0"], "trials must be an integer in [1, 100000]"),
        (["--worker"], "--worker joins a study"),
        (
            ["--worker", "--storage", "postgresql://u@h/db", "--trials", "3"],
            "a worker takes config, budget, space, trial count",
        ),
        (["--wait", "5"], "--wait is for a worker"),
        (["--budget", "rpi_ms=5"], "give it with --rpi-bench"),
        (["--budget", "params=10k", "--rpi-bench", "bench.json"], "add rpi_ms="),
        (["--worker", "--storage", "postgresql://u@h/db", "--wait", "-1"], "wait_s must be an integer"),
        (["--storage", "redis://x"], "must be a database URL"),
        # in memory: nothing to continue, and Optuna's heartbeat thread printed three tracebacks (exit 0)
        (["--storage", "sqlite:///:memory:"], "is not a database file"),
        (["--storage", "sqlite:///"], "is not a database file"),
        # found before the search folder is written (a corrected rerun was refused as "a different config")
        (["--teacher", "/nonexistent/teacher.pt"], "the teacher checkpoint /nonexistent/teacher.pt is not a file"),
        (["--storage", "postgresql://u@127.0.0.1:1/db"], "cannot open the study storage"),
        (["--budget", "FLASH_KB=5"], "did you mean 'flash_kb'"),
        (["--set", "distill.method=fitnets"], "not searchable"),
    ],
)
def test_search_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, args, needle):
    out = tmp_path / "s"
    proc = edgekd_inproc(capsys, "search", "--out", str(out), *args)
    assert proc.returncode == 2
    assert_one_line_error(proc, needle)
    assert not out.exists()


def test_worker_waits_for_the_study_then_names_what_is_missing(capsys, tmp_path):
    import time

    db = tmp_path / "study.db"
    start = time.monotonic()
    proc = edgekd_inproc(
        capsys, "search", "--worker", "--storage", f"sqlite:///{db}", "--wait", "2", "--out", str(tmp_path / "w")
    )
    assert proc.returncode == 2
    assert_one_line_error(proc, "no study 'edgekd-search'", "(waited 2 s)")
    assert time.monotonic() - start >= 2  # polled the storage until its time was up
    assert "waiting up to 2 s for study edgekd-search" in proc.stderr
    assert not db.exists()  # a worker joins a study: it never creates the database


def test_worker_checks_its_teacher_and_folder_before_connecting(capsys, tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "mine.txt").write_text("keep")
    url = f"sqlite:///{tmp_path / 'nowhere.db'}"  # no study: had the checks come after, this would be the error
    proc = edgekd_inproc(capsys, "search", "--worker", "--storage", url, "--teacher", str(tmp_path / "no.pt"))
    assert proc.returncode == 2
    assert_one_line_error(proc, f"--teacher {tmp_path / 'no.pt'} is not a file")
    proc = edgekd_inproc(capsys, "search", "--worker", "--storage", url, "--out", str(tmp_path / "user"))
    assert proc.returncode == 2
    assert_one_line_error(proc, "did not make (not a search folder: no search.json, and more than a worker's trials/)")
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == ["mine.txt"]
    assert not (tmp_path / "nowhere.db").exists()


def test_a_corrupt_search_json_is_one_line_and_a_corrupt_cache_is_measured_again(capsys, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "search.json").write_text('{"config": ')
    proc = edgekd_inproc(capsys, "search", "--out", str(tmp_path / "s"), "--budget", "params=10k")
    assert proc.returncode == 2
    assert_one_line_error(proc, "search.json is corrupt (Expecting value")
    assert (tmp_path / "s" / "search.json").read_text() == '{"config": '

    from edgekd.search.measure import measure_candidate
    from edgekd.search.space import Candidate

    cand = Candidate(family="tiny", arch="test_student", width=4, resolution=None)
    budget = parse_budget({"params": "10k"})
    shape = {"num_classes": 10, "in_channels": 1, "native_size": (8, 8), "cache_dir": tmp_path / "cache"}
    good = measure_candidate(cand, budget, **shape)
    (tmp_path / "cache" / f"{cand.key}.json").write_text("[1, 2")  # cut short
    assert measure_candidate(cand, budget, **shape) == good
    assert json.loads((tmp_path / "cache" / f"{cand.key}.json").read_text()) == good
    # parseable, other types: compared with the budget they were a TypeError in every trial
    for edit in ({"params": "lots"}, {"macs": [1]}, {"params": -1}, {"candidate": {"arch": "x"}}, {"ops": "CONV"}):
        (tmp_path / "cache" / f"{cand.key}.json").write_text(json.dumps({**good, **edit}))
        assert measure_candidate(cand, budget, **shape) == good, edit


def test_api_arguments_of_the_wrong_type_are_one_line(tmp_path):
    from edgekd.errors import EdgekdError
    from edgekd.search import search

    for kwargs, needle in (
        ({"budget": 5}, "budget must be KEY=VALUE"),
        ({"storage": 5}, "storage must be a string"),
        ({"study_name": 5}, "study_name must be a string"),
        ({"space": 5}, "space must be a YAML file's path or a mapping"),
    ):
        with pytest.raises(EdgekdError, match=needle):
            search(out=tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


def test_storage_in_a_users_sqlite_database_is_refused(capsys, tmp_path):
    import hashlib

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as con:
        con.execute("create table notes (t text)")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    proc = edgekd_inproc(capsys, "search", "--out", str(tmp_path / "s"), "--storage", f"sqlite:///{db}")
    assert proc.returncode == 2
    assert_one_line_error(proc, "is a SQLite database of other tables (notes), not an Optuna study")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and not (tmp_path / "s").exists()


def test_search_refuses_a_folder_it_did_not_make(capsys, tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    proc = edgekd_inproc(capsys, "search", "--out", str(tmp_path), "--budget", "params=10k")
    assert proc.returncode == 2
    assert_one_line_error(proc, "not a search folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


# -- end to end -------------------------------------------------------------------------------------

TINY_SPACE = "families:\n  tiny: {archs: [test_student], width: [2, 4, 16]}\n"


def tiny_search_args(tmp_path: Path, trials: int) -> dict:
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    return dict(
        set=tiny_overrides(**{"teacher.epochs": 1, "student.epochs": 2, "data.eval_batch_size": 512}),
        # width 16 has over 5,000 parameters: over the limit, so it must never be exported or trained
        budget="params=2000,flash_kb=64,device=cortex-m4-120mhz",
        space=str(space),
        trials=trials,
        trial_epochs=1,
        finalists=1,
        out=str(tmp_path / "search"),
        pruner="none",
    )


def _trial_states(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return sorted(con.execute("select number, state from trials").fetchall())


def test_tiny_search_end_to_end(tmp_path, capsys):
    from edgekd.search import search

    result = search(**tiny_search_args(tmp_path, trials=1))
    out = tmp_path / "search"
    assert sum(t["status"] == "trained" for t in result["trials"]) == 1
    # a rerun with more trials continues the study: finished trials are kept, not run again
    before = _trial_states(out / "study.db")
    result = search(**tiny_search_args(tmp_path, trials=2))
    after = _trial_states(out / "study.db")
    assert after[: len(before)] == before and len(after) > len(before)
    trained = [t for t in result["trials"] if t["status"] == "trained"]
    assert len(trained) == 2 and len({t["run"] for t in trained}) == 2
    over = [t for t in result["trials"] if t["status"] == "over_budget"]
    for t in over:  # checked before training: no run folder, no TFLite figures (params stopped it)
        assert t["candidate"]["width"] == 16 and t["run"] is None and "flash_kb" not in t["figures"]
        assert (
            len(t["violations"]) == 1
            and t["violations"][0].startswith("params 5,")
            and t["violations"][0].endswith("> 2,000")
        )
    for t in trained:
        f = t["figures"]
        assert f["params"] <= 2000 and 0 < f["flash_kb"] <= 64 and f["ram_kb"] > 0 and f["latency_ms"] > 0
        assert (Path(t["run"]) / "summary.json").is_file()
    # the teacher's outputs were computed once and shared through the per-resolution cache
    assert len(list((out / "teacher_cache" / "rnative").glob("student-*.pt"))) == 1
    for name in ("pareto.json", "pareto.md", "pareto.png", "search.json", "study.db"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "pareto.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert saved["best"]["run"] == str(out / "best") and saved["front"]
    assert "## Pareto front" in (out / "pareto.md").read_text()
    best_cfg = (out / "best" / "config.yaml").read_text()
    assert (
        "epochs: 2" in best_cfg and (out / "best" / "student.pt").is_file() and (out / "best" / "teacher.pt").is_file()
    )

    # a different budget on the same folder is refused before anything runs
    with pytest.raises(ConfigError, match="different budget"):
        search(**{**tiny_search_args(tmp_path, trials=3), "budget": "params=3000"})

    # the winner is a normal run folder: it exports, and its int8 model fits per the MCU bench
    bundle = tmp_path / "bundle"
    proc = edgekd_inproc(
        capsys,
        "export",
        "--run",
        str(out / "best"),
        "--out",
        str(bundle),
        "--set",
        "export.models=[student]",
        "--set",
        "export.formats=[tflite_int8]",
        "--allow-parity-failure",  # a 1-epoch student near chance: int8 flips are not what is tested
    )
    assert proc.returncode == 0, proc.stderr
    proc = edgekd_inproc(
        capsys,
        "bench",
        "--device",
        "mcu",
        "--artifacts",
        str(bundle),
        "--mcu",
        "cortex-m4-120mhz",
        "--flash-kb",
        "64",
        "--json",
        str(tmp_path / "mcu.json"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "mcu.json").read_text())["results"]
    row = next(r for r in rows if r["format"] == "tflite_int8")
    assert row["tflm"]["budget"]["fits"]
    best = next(p for p in saved["front"] if p["candidate_key"] == saved["best"]["candidate_key"])
    # the figures measured before training are those of the trained model
    assert abs(row["tflm"]["flash_bytes"] / 1024 - best["figures"]["flash_kb"]) < 1.0
    assert row["tflm"]["arena_bytes"] / 1024 == pytest.approx(best["figures"]["ram_kb"], abs=0.01)


def test_a_search_folder_edited_by_hand(tmp_path):
    """best/ is replaced by the winner: a user's file in it, or a file named best, is refused
    before anything runs (it was deleted, exit 0); an edited study is one line naming the trial."""
    from edgekd.errors import EdgekdError
    from edgekd.search import search

    args = tiny_search_args(tmp_path, trials=1)
    search(**args)
    out = tmp_path / "search"
    (out / "best" / "notes.txt").write_text("mine")
    with pytest.raises(EdgekdError, match=r"best is the search's winner folder, .* it holds notes.txt"):
        search(**args)
    assert (out / "best" / "notes.txt").read_text() == "mine"
    shutil.rmtree(out / "best")
    (out / "best").write_text("mine")
    with pytest.raises(EdgekdError, match="it is not a folder"):
        search(**args)
    assert (out / "best").read_text() == "mine"
    (out / "best").unlink()

    def edited(sql: str, needle: str) -> None:
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(out, copy)
        with sqlite3.connect(copy / "study.db") as con:
            con.execute(sql)
        with pytest.raises(EdgekdError, match=needle):
            search(**{**args, "out": str(copy)})

    edited("update trial_values set value = 1e999", r"study in .* is corrupt: trial 0: its val accuracy is inf")
    edited(
        "update trial_user_attributes set value_json = '{\"bogus\": 1}' where key = 'candidate'",
        r"is corrupt: trial 0: its candidate \{'bogus': 1\} is not the search space's",
    )
    edited(
        "update trial_user_attributes set value_json = 'NaN' where key = 'test_acc'",
        r"is corrupt: trial 0: it holds a NaN or infinite number at .attrs.test_acc",
    )


@pytest.mark.slow
def test_digits_search_of_12_trials_in_10_minutes_and_the_front_fits(tmp_path):
    """The benchmark: a 12-trial digits search (registry families, ≤ 64 KB flash on a Cortex-M4)
    within 10 minutes, then every front model exported and inside the budget per the MCU bench."""
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run(
        [sys.executable, "benchmarks/search.py", "--out", str(tmp_path / "search"), "--limit-s", "600"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "within" in proc.stdout and " NO" not in proc.stdout


def test_search_over_resolutions_trains_a_teacher_per_input_size(tmp_path):
    from edgekd.search import search

    space = tmp_path / "space.yaml"
    space.write_text("resolution: [8, 12]\nfamilies:\n  tiny: {archs: [test_student], width: [2]}\n")
    result = search(
        set=tiny_overrides(**{"teacher.epochs": 1}),
        budget="params=2000",
        space=str(space),
        trials=2,
        trial_epochs=1,
        finalists=0,
        out=str(tmp_path / "s"),
        pruner="none",
    )
    trained = [t for t in result["trials"] if t["status"] == "trained"]
    assert sorted(t["candidate"]["resolution"] for t in trained) == [8, 12]
    assert (tmp_path / "s" / "teacher-r8" / "teacher.pt").is_file() and (
        tmp_path / "s" / "teacher-r12" / "teacher.pt"
    ).is_file()
    for t in trained:  # each trial ran at its size, taught by the teacher of that size
        cfg = (Path(t["run"]) / "config.yaml").read_text()
        assert (
            f"image_size: {t['candidate']['resolution']}" in cfg and f"teacher-r{t['candidate']['resolution']}" in cfg
        )
    assert t["figures"]["macs"] > 0 and result["best"] is None


def test_lower_bounds_rule_out_a_candidate_without_exporting_it():
    from edgekd.search.measure import measure_candidate
    from edgekd.search.space import Candidate

    cand = Candidate("plain", "plain2", 1.0, None)  # 13 k conv/linear weights at 32×32 RGB: ≥ 12.7 KB int8
    kw = dict(num_classes=10, in_channels=3, native_size=(32, 32))
    f = measure_candidate(cand, Budget(model_kb=10), **kw)
    assert f["early_stop"] and "tflite" not in f and f["weight_bytes"] > 10 * 1024
    f = measure_candidate(cand, Budget(flash_kb=30, device="cortex-m4-120mhz"), **kw)  # 12.7 + 20 KB runtime base > 30
    assert f["early_stop"] and "tflite" not in f
    f = measure_candidate(cand, Budget(device="cortex-m0plus-64mhz", latency_ms=1, flash_kb=512, ram_kb=144), **kw)
    assert f["early_stop"] and "tflite" not in f  # 1.2 M MACs at ≥ 6.5 cycles each on 64 MHz: ≥ 100 ms
    from edgekd.search.measure import early_violations

    assert [
        v.split(" ")[0]
        for v in early_violations(f, Budget(model_kb=10, flash_kb=30, latency_ms=1, device="cortex-m0plus-64mhz"))
    ] == ["model_kb", "flash_kb", "latency_ms"]


def test_shipped_spaces_load():
    from edgekd.search.space import load_space
    from tests.conftest import REPO

    spaces = sorted((REPO / "configs" / "spaces").glob("*.yaml"))
    assert spaces
    for path in spaces:
        assert load_space(path).size() > 0


# -- rpi_ms: a Pi latency estimate from a recorded Pi bench ---------------------------------------


def test_rpi_calibration_takes_a_real_pi_bench_only(tiny_bundle, tmp_path):
    from edgekd.benchmark import bench
    from edgekd.search.rpi import rpi_calibration

    bench(
        artifacts=tiny_bundle,
        device="rpi",
        force=True,
        models="student",
        formats="tflite_int8",
        out=tmp_path / "forced",
        runs=3,
        warmup=1,
    )
    forced = tmp_path / "forced" / "bench.json"
    if "Raspberry Pi" not in (json.loads(forced.read_text())["host"].get("board") or ""):
        with pytest.raises(ConfigError, match="was not measured on a Raspberry Pi"):
            rpi_calibration(forced)
    # the same report as a Pi would write it: its board, and a known 1-thread median
    data = json.loads(forced.read_text())
    data["host"].update(board="Raspberry Pi 5 Model B Rev 1.0", emulated=None)
    rows = [r for r in data["results"] if r["format"] == "tflite_int8" and r["threads"] == 1]
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    rows[0]["p50_us"] = 2500.0
    pi = tmp_path / "pi" / "bench.json"
    pi.parent.mkdir()
    pi.write_text(json.dumps(data))
    cal = rpi_calibration(pi)
    assert cal["board"].startswith("Raspberry Pi 5") and cal["reference"] == rows[0]["file"]
    assert cal["pi_ms"] == 2.5 and cal["host_ms"] > 0 and cal["factor"] == round(2.5 / cal["host_ms"], 4)
    old = {**data, "schema": 2}
    pi.write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="schema 2, this edgekd reads schema 3"):
        rpi_calibration(pi)
    data["host"]["emulated"] = "qemu-aarch64"
    pi.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"not measured on a Raspberry Pi \(emulated"):
        rpi_calibration(pi)
    with pytest.raises(ConfigError, match="not a bench of `edgekd bench --device rpi`"):
        rpi_calibration(tiny_bundle / "manifest.json")


@pytest.mark.parametrize(
    "change, needle",
    [
        ("[" * 100_000 + "]" * 100_000, "is not JSON"),  # nested deeper than the parser goes: RecursionError
        ({"settings": 7}, "is not a bench of `edgekd bench --device rpi`"),
        ({"host": "pi"}, "is malformed: 'host' must be a mapping"),
        ({"results": [1]}, "is malformed: 'host' must be a mapping and 'results' a list of rows"),
        ({"bundle": 5}, "the benched model m_int8.tflite is not on this machine"),
        ({"bundle": {"path": 5}}, "the benched model m_int8.tflite is not on this machine"),
    ],
)
def test_rpi_calibration_refuses_a_malformed_bench_in_one_line(tmp_path, change, needle):
    """The --rpi-bench file may come from anywhere: a field of the wrong type was an
    AttributeError or TypeError traceback, deep nesting a RecursionError."""
    from edgekd.benchmark.row import SCHEMA
    from edgekd.search.rpi import rpi_calibration

    row = {"format": "tflite_int8", "threads": 1, "status": "ok", "file": "m_int8.tflite", "p50_us": 2500.0}
    bench = {"schema": SCHEMA, "settings": {"device": "rpi"}, "host": {"board": "Raspberry Pi 5"}, "results": [row]}
    path = tmp_path / "bench.json"
    path.write_text(change if isinstance(change, str) else json.dumps({**bench, **change}))
    with pytest.raises(ConfigError, match="^--rpi-bench: .*" + re.escape(needle)):
        rpi_calibration(path)


def test_rpi_ms_is_the_host_latency_times_the_factor(tmp_path):
    from edgekd.search.measure import _usable, measure_candidate
    from edgekd.search.space import Candidate

    cand = Candidate("tiny", "test_student", 2, None)
    budget = Budget(rpi_ms=1000)
    kw = dict(num_classes=10, in_channels=1, native_size=(8, 8), cache_dir=tmp_path)
    f = measure_candidate(cand, budget, rpi_factor=3.0, **kw)
    assert f["tflite"] and f["host_ms"] > 0 and f["rpi_ms"] == round(f["host_ms"] * 3.0, 4)
    assert budget.violations(f) == []
    assert Budget(rpi_ms=f["rpi_ms"] / 2).violations(f) == [f"rpi_ms {f['rpi_ms']:,.4g} > {f['rpi_ms'] / 2:,.4g}"]
    # cached figures serve the same calibration only
    assert _usable(f, budget, 3.0) and not _usable(f, budget, 4.0)
    with pytest.raises(ValueError, match="needs rpi_factor"):
        measure_candidate(cand, budget, **kw)


def test_a_killed_trial_is_counted_failed_not_training():
    from optuna.trial import TrialState

    from edgekd.search.report import shown_status, trial_rows

    study = optuna.create_study(direction="maximize")
    killed = study.ask()
    killed.set_user_attr("status", "training")  # set when its training began; its process then died
    study.tell(killed, state=TrialState.FAIL)
    done = study.ask()
    done.set_user_attr("status", "trained")
    study.tell(done, 0.5)
    assert [shown_status(r) for r in trial_rows(study)] == ["failed", "trained"]
