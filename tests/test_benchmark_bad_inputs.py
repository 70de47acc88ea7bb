"""Bad input to the benchmark scripts: one ``<script>: error: <why>`` line on stderr, exit 2.

Each case runs ``benchmarks/<script>.py`` as a subprocess with an unknown name, a count or a
fraction out of range, a missing input, or a corrupt one (text in a file named like the expected
.tflite/.pt/.npz/.tar.gz/.yaml). Every one is refused by the argument checks, before any
training, conversion or build: seconds each. Each asserts exit 2, exactly one non-empty stderr
line that starts with ``<script>: error:`` and names the problem, no traceback, and that the
case's scratch folder (the user's files, and where its outputs would go) is exactly as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.config import dump_yaml, load_config

REPO = Path(__file__).resolve().parents[1]

LEAN = ["--runs", "1", "--rounds", "1", "--warmup", "0"]  # would the comparison start, it would be short
WORKER = [
    "--train-root",
    "{tmp}/empty",
    "--teacher",
    "resnet20",
    "--teacher-weights",
    "{tmp}/fake.pt",
    "--student",
    "resnet8",
    "--images",
    "10",
]
SPEED = ["--work", "{tmp}/work", "--skip-torchdistill"]
# Every benchmark script, with the arguments it requires (an unknown flag is refused after them)
REQUIRED = {
    "lean_int8": ["--edgekd", "{tmp}/fake.tflite"],
    "mcu_emulate": [],
    "mcu_estimate": [],
    "memory_format": [],
    "methods_cifar10": [],
    "pipeline": [],
    "quant": [],
    "search": [],
    "speed_workers": ["plain", *WORKER],
    "tflite_backends": ["--run", "{tmp}/run", "--out", "{tmp}/out"],
    "tiny_cifar10": [],
    "train_speed": [],
}

# the scripts with --json, and what keeps each from starting work when the check would pass
JSON_SCRIPTS = ("lean_int8", "mcu_emulate", "memory_format", "tflite_backends", "train_speed")
JSON_EXTRA = {"train_speed": SPEED}

CASES = [
    # lean_int8: a count, a missing model, a corrupt model, corrupt eval data
    ("lean_int8", ["--edgekd", "{tmp}/fake.tflite", "--runs", "0"], "--runs must be an integer of at least 1, got 0"),
    ("lean_int8", ["--edgekd", "{tmp}/missing.tflite"], "edgekd: no such file"),
    (
        "lean_int8",
        ["--edgekd", "{tmp}/fake.tflite", "--reference", "{tmp}/fake.tflite", *LEAN],
        "fake.tflite is not a TFLite model",
    ),
    (
        "lean_int8",
        ["--edgekd", "{tmp}/fake.tflite", "--reference", "{tmp}/fake.tflite", "--eval", "{tmp}/fake.npz", *LEAN],
        "cannot read eval data fake.npz",
    ),
    # mcu_emulate: checked before the first (minutes-long) build, with or without the Arm toolchain
    ("mcu_emulate", ["--cores", "cortex-m4,cortex-m9"], "unknown core 'cortex-m9'; did you mean 'cortex-m7'?"),
    ("mcu_emulate", ["--artifacts", "{tmp}/mine"], "is not an edgekd bundle"),
    # memory_format: names and counts, before any model is built
    ("memory_format", ["--models", "resnet8,resnet9"], "unknown model 'resnet9'; did you mean 'resnet8'?"),
    ("memory_format", ["--seconds", "0"], "--seconds must be a number above 0, got 0"),
    ("memory_format", ["--threads", "1000"], "--threads must be an integer from 1 to"),
    # mcu_estimate
    ("mcu_estimate", ["--model", "{tmp}/fake.tflite"], "fake.tflite is not a TFLite model"),
    ("mcu_estimate", ["--model", "{tmp}/missing.tflite"], "No such file or directory"),
    # methods_cifar10: nothing of the teacher's is written before the checks
    ("methods_cifar10", ["--recipe", "gpuu", "--out", "{tmp}/out"], "unknown recipe 'gpuu'; did you mean 'gpu'?"),
    ("methods_cifar10", ["--rows", "kd,nokdd", "--out", "{tmp}/out"], "unknown row 'nokdd'; did you mean 'nokd'?"),
    (
        "methods_cifar10",
        ["--seeds", "0", "--data", "{tmp}/missing", "--out", "{tmp}/out"],
        "--seeds must be an integer of at least 1, got 0",
    ),
    ("methods_cifar10", ["--data", "{tmp}/missing", "--out", "{tmp}/out"], "CIFAR-10 not found in"),
    ("methods_cifar10", ["--data", "{tmp}/fake.tar.gz", "--out", "{tmp}/out"], "is not a readable archive"),
    (
        "methods_cifar10",
        ["--ta", "plain6,plain77", "--data", "{tmp}/cifar", "--out", "{tmp}/out"],
        "unknown model 'plain77'; did you mean 'plain7'?",
    ),
    # pipeline: the bench settings before the distill run (the missing config would be found first otherwise)
    (
        "pipeline",
        ["--config", "{tmp}/missing.yaml", "--runs", "0", "--out", "{tmp}/out"],
        "--runs must be an integer of at least 1, got 0",
    ),
    (
        "pipeline",
        ["--config", "{tmp}/missing.yaml", "--min-accuracy", "95", "--out", "{tmp}/out"],
        "--min-accuracy must be a number from 0 to 1",
    ),
    # search: its own checks, and the `edgekd search` refusals passed on as one line
    ("search", ["--config", "{tmp}/missing.yaml", "--out", "{tmp}/out"], "config file not found"),
    (
        "search",
        ["--budget", "flash_kb=64,device=cortex-m9", "--out", "{tmp}/out"],
        "unknown MCU profile 'cortex-m9'; did you mean 'cortex-m7'?",
    ),
    ("search", ["--out", "{tmp}/mine"], "not a search folder: no search.json"),  # and no search.log is left in it
    ("search", ["--fresh", "--out", "{tmp}/mine"], "is not a search folder; not deleting it"),
    (
        "search",
        ["--trial-epochs", "0", "--config", "{tmp}/missing.yaml", "--out", "{tmp}/out"],
        "--trial-epochs must be an integer of at least 1, got 0",
    ),
    # speed_workers (train_speed's reference loops)
    ("speed_workers", ["plainn", *WORKER], "unknown system 'plainn'; did you mean 'plain'?"),
    ("speed_workers", ["plain", *WORKER, "--teacher", "resnet21"], "unknown model 'resnet21'"),
    ("speed_workers", ["plain", *WORKER], "corrupt or unreadable checkpoint"),
    ("speed_workers", ["plain", *WORKER, "--alpha", "1.5"], "--alpha must be a number from 0 to 1"),
    # argparse's own refusals: one line too, not its usage block
    ("speed_workers", ["plain"], "the following arguments are required: --train-root"),
    ("speed_workers", ["plain", *WORKER, "--images", "ten"], "argument --images: invalid int value: 'ten'"),
    # tflite_backends: before any backend converts
    ("tflite_backends", ["--run", "{tmp}/mine", "--out", "{tmp}/out"], "is not a finished distill run"),
    (
        "tflite_backends",
        ["--run", "{tmp}/badrun", "--out", "{tmp}/out", "--backends", "onnx2tff"],
        "unknown TFLite backend 'onnx2tff'; did you mean 'onnx2tf'?",
    ),
    (
        "tflite_backends",
        ["--run", "{tmp}/badrun", "--out", "{tmp}/out", "--formats", "tflite_int9"],
        "unknown TFLite format 'tflite_int9'; did you mean 'tflite_int8'?",
    ),
    ("tflite_backends", ["--run", "{tmp}/badrun", "--out", "{tmp}/out"], "config.yaml is not valid YAML"),
    # --run is read only: a bundle per backend was written into it
    ("tflite_backends", ["--run", "{tmp}/run", "--out", "{tmp}/run"], "--out {tmp}/run is inside --run {tmp}/run"),
    (
        "tflite_backends",
        ["--run", "{tmp}/run", "--out", "{tmp}/run/cmp"],
        "is inside --run {tmp}/run, which is read only",
    ),
    (
        "tflite_backends",
        ["--run", "{tmp}/badrun", "--out", "{tmp}/out", "--warmup", "-1"],
        "--warmup must be an integer of at least 0, got -1",
    ),
    # tiny_cifar10: the data and the reference before the candidates' exports (minutes, files in --out)
    ("tiny_cifar10", ["--data", "{tmp}/missing", "--out", "{tmp}/out"], "--data {tmp}/missing: no such file or folder"),
    (
        "tiny_cifar10",
        ["--data", "{tmp}/cifar", "--reference", "{tmp}/missing.tflite", "--out", "{tmp}/out"],
        "--reference {tmp}/missing.tflite: no such file or folder",
    ),
    # a teacher-only override is read with the others, before the candidates' exports
    (
        "tiny_cifar10",
        [
            *("--data", "{tmp}/cifar", "--reference", "{tmp}/fake.tflite"),
            *("--teacher-set", "data.crop_fil=reflect", "--out", "{tmp}/out"),
        ],
        "did you mean 'data.crop_fill'?",
    ),
    # train_speed: nothing written to --work before the checks
    ("train_speed", ["--device", "gpu", *SPEED], "unknown device 'gpu'; did you mean 'cpu'?"),
    ("train_speed", ["--teacher", "resnet21", "--data", "{tmp}/missing", *SPEED], "unknown model 'resnet21'"),
    (
        "train_speed",
        ["--epochs", "0", "--data", "{tmp}/missing", *SPEED],
        "--epochs must be an integer of at least 1, got 0",
    ),
    ("train_speed", ["--alpha", "1.5", "--data", "{tmp}/missing", *SPEED], "--alpha must be a number from 0 to 1"),
    ("train_speed", ["--data", "{tmp}/missing", *SPEED], "no such folder or archive"),
    ("train_speed", ["--data", "{tmp}/fake.tar.gz", *SPEED], "is not a readable archive"),
    ("train_speed", ["--data", "{tmp}/empty", *SPEED], "no train/ folder in it"),
    # argparse's own refusals in every script: one line naming the script, not argparse's usage block
    *[
        (script, [*required, "--bogus"], f"unrecognized arguments: --bogus (see `{script}.py --help`)")
        for script, required in REQUIRED.items()
    ],
    # --json: a folder, or a file that is not the script's own report, refused before any measuring
    *[
        case
        for script in JSON_SCRIPTS
        for case in (
            (script, [*REQUIRED[script], *JSON_EXTRA.get(script, []), "--json", "{tmp}/mine"], "/mine is a folder"),
            (
                script,
                [*REQUIRED[script], *JSON_EXTRA.get(script, []), "--json", "{tmp}/mine/notes.txt"],
                "notes.txt is an existing file that is not an edgekd",
            ),
        )
    ],
    # a missing required argument, and a value of the wrong type
    ("lean_int8", [], "the following arguments are required: --edgekd"),
    ("tflite_backends", ["--run", "{tmp}/run"], "the following arguments are required: --out"),
    ("pipeline", ["--runs", "many"], "argument --runs: invalid int value: 'many'"),
    ("quant", ["--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'"),
    ("methods_cifar10", ["--seeds", "three"], "argument --seeds: invalid int value: 'three'"),
    ("tiny_cifar10", ["--seeds", "three"], "argument --seeds: invalid int value: 'three'"),
    ("train_speed", ["--epochs", "one"], "argument --epochs: invalid int value: 'one'"),
    ("search", ["--limit-s", "soon"], "argument --limit-s: invalid float value: 'soon'"),
]


def run_script(script: str, args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``benchmarks/<script>.py ARGS`` as a user runs it from ``cwd`` (edgekd importable), output captured."""
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{script}.py"), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_inputs(tmp: Path) -> None:
    """The user's files: text named like the inputs the scripts expect, a folder of their own, a
    run folder with a damaged config and one with a good one, an empty folder and an (empty)
    CIFAR-10 ImageFolder layout."""
    for name in ("fake.tflite", "fake.pt", "fake.npz", "fake.tar.gz"):
        (tmp / name).write_text("not what the name says\n")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep me\n")
    (tmp / "badrun").mkdir()
    (tmp / "badrun" / "config.yaml").write_text("student: [\n")
    (tmp / "badrun" / "summary.json").write_text("{}\n")
    (tmp / "run").mkdir()  # a finished run, as far as the checks read it: a config as edgekd saves one
    (tmp / "run" / "config.yaml").write_text(dump_yaml(load_config(None, ["name=mine"])))
    (tmp / "run" / "summary.json").write_text("{}\n")
    (tmp / "empty").mkdir()
    for split in ("train", "test"):
        (tmp / "cifar" / split).mkdir(parents=True)


def snapshot(tmp: Path) -> dict[str, bytes | None]:
    """Every path under ``tmp`` with its bytes (None for a folder)."""
    return {str(p.relative_to(tmp)): None if p.is_dir() else p.read_bytes() for p in sorted(tmp.rglob("*"))}


def assert_one_error_line(proc: subprocess.CompletedProcess, script: str, fragment: str) -> None:
    """Exit 2 and exactly one non-empty stderr line, ``<script>: error: ...`` naming the problem."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{script}: error: "), lines[0]
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("script,args,fragment", CASES, ids=[f"{script}-{i}" for i, (script, _, _) in enumerate(CASES)])
def test_bad_input_is_one_error_line(tmp_path: Path, script: str, args: list[str], fragment: str) -> None:
    make_inputs(tmp_path)
    before = snapshot(tmp_path)
    proc = run_script(script, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_error_line(proc, script, fragment.replace("{tmp}", str(tmp_path)))
    assert snapshot(tmp_path) == before  # the user's files untouched, no output folder made


def test_methods_cifar10_reads_a_relative_data_path_from_the_current_folder(tmp_path: Path) -> None:
    """--data cifar is ./cifar, as --out is: it was resolved against the repository."""
    make_inputs(tmp_path)
    proc = run_script("methods_cifar10", ["--data", "missing", "--out", "out"], cwd=tmp_path)
    assert_one_error_line(proc, "methods_cifar10", f"CIFAR-10 not found in {tmp_path / 'missing'}")
    assert not (tmp_path / "out").exists()


def test_every_script_is_in_the_matrix() -> None:
    """A new benchmark script gets its argparse refusals checked too (the ``--bogus`` cases)."""
    assert set(REQUIRED) == {path.stem for path in (REPO / "benchmarks").glob("*.py")}


@pytest.mark.parametrize("script", sorted(REQUIRED))
def test_help_still_prints_usage(script: str) -> None:
    proc = run_script(script, ["--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {script}.py "), proc.stdout[:200]
    assert not proc.stderr.strip(), proc.stderr


def test_lean_int8_refuses_a_file_that_does_not_take_the_image(tiny_bundle: Path) -> None:
    """An 8×8 grayscale int8 file fed the default 32×32×3 image was a reshape traceback (exit 1)."""
    model = str(tiny_bundle / "student_int8.tflite")
    proc = run_script("lean_int8", ["--edgekd", model, "--reference", model, *LEAN])
    assert_one_error_line(proc, "lean_int8", "takes 8×8×1 inputs, the image is 32×32×3 (give its --eval images)")


def test_a_benchmark_replaces_its_own_report(tmp_path: Path) -> None:
    """--json names the script in the report ("benchmark"), and a second run replaces its own file."""
    report = tmp_path / "mf.json"
    args = ["--models", "plain2_digits", "--seconds", "0.05", "--repeats", "1", "--json", str(report)]
    for _ in range(2):
        proc = run_script("memory_format", args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        data = json.loads(report.read_text())
        assert data["benchmark"] == "memory_format"
        assert set(data["ratio_channels_last_over_nchw"]) == {"plain2_digits|train", "plain2_digits|infer"}
