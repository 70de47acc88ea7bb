"""The CLI: help texts, and bad input answered with one line and a non-zero exit (no traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_imagefolder, tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def edgekd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh process (what a user sees, tracebacks included)."""
    return subprocess.run(
        [sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=300
    )


def edgekd_inproc(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """The same entry point in this process (no torch import per call): exit code and output."""
    from edgekd.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgekd: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_help_lists_verbs_and_keys() -> None:
    top = edgekd("--help")
    assert top.returncode == 0
    for verb in ("distill", "sweep", "models", "methods", "datasets"):
        assert verb in top.stdout
    sub = edgekd("distill", "--help")
    assert sub.returncode == 0
    for text in (
        "--config",
        "--out",
        "--set",
        "--resume",
        "data.name",
        "teacher.checkpoint",
        "distill.temperature",
        "distill.baseline",
        "distill.fitnets.hint_layer",
        "distill.takd.assistants",
        "distill.takd.ta_select",
        "distill.transfer.set",
        "data.shift",
        "source",
    ):
        assert text in sub.stdout, text
    sweep = edgekd("sweep", "--help")
    assert sweep.returncode == 0
    for text in ("--temperatures", "--alphas", "sweep.json", "best.yaml", "VAL"):
        assert text in sweep.stdout, text


def test_distill_help_documents_every_method() -> None:
    """The method list in `distill --help` is read from the methods' source (help must not import
    torch): every registered method, with its docstring."""
    from edgekd.cli import methods_help
    from edgekd.train.methods import METHODS

    text = methods_help()
    listed = {
        line.split()[0]
        for line in text.split("\n\n")[0].splitlines()[1:]
        if line.startswith("  ") and not line.startswith("   ")
    }
    assert listed == set(METHODS.names())
    assert " ".join(METHODS.get("kd").__doc__.split())[:40] in " ".join(text.split())
    import dataclasses

    from edgekd.config import METHOD_SECTIONS

    # each method's own section, its every key listed under the method (up to the next method)
    blocks: dict[str, str] = {}
    current = None
    for line in text.split("\n\n")[0].splitlines()[1:]:
        if line.startswith("  ") and not line.startswith("   "):
            current = line.split()[0]
        if current is not None:
            blocks[current] = blocks.get(current, "") + line + "\n"
    owned = {METHODS.get(n).config_section for n in METHODS.names()} - {None}
    assert owned == set(METHOD_SECTIONS)  # every section belongs to a method, every method's section exists
    for name in METHODS.names():
        section = METHODS.get(name).config_section
        keys = [f.name for f in dataclasses.fields(METHOD_SECTIONS[section])] if section else []
        for key in keys:
            assert f"distill.{section}.{key} = " in blocks[name], (name, key)


def test_unknown_key_in_a_method_section_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    proc = edgekd_inproc(capsys, "distill", "--set", "distill.fitnets.hint_layr=layer2", "--out", out)
    assert_one_line_error(proc, "unknown key 'distill.fitnets.hint_layr'", "did you mean 'distill.fitnets.hint_layer'?")
    proc = edgekd_inproc(capsys, "distill", "--set", "distill.dkd_bta=1", "--out", out)  # an old flat name, misspelt
    assert_one_line_error(proc, "did you mean 'distill.dkd.beta'?")
    assert not (tmp_path / "run").exists()


def test_models_and_methods_listing() -> None:
    proc = edgekd("models", "resnet8")
    assert proc.returncode == 0 and "12,501,632" in proc.stdout  # the MLPerf Tiny ResNet-8 MAC count
    proc = edgekd("models", "nomatch*")
    assert_one_line_error(proc, "no model matches")
    proc = edgekd("methods")
    assert proc.returncode == 0 and "kd" in proc.stdout


def test_models_at_the_largest_input_allocate_nothing_of_its_size() -> None:
    """plain10's classifier grows with the input: at 3x4096x4096 its weights alone are 34 GB and the
    activations of 64 channels several more. The listing builds and counts on the meta device, so
    it runs in a process whose data segment (heap and anonymous mappings) is limited to 6 GB."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (6 << 30, 6 << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "models", "plain10", "--input", "64x4096x4096"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        preexec_fn=limit,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "2,149,856,522" in proc.stdout  # its parameters, counted on the meta device


def test_count_macs_leaves_the_model_as_it_was() -> None:
    import torch

    from edgekd.models import count_macs, create_model

    model = create_model("resnet8", 10, 3, (32, 32)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_macs(model, (1, 3, 32, 32)) == 12_501_632
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--set", "distill.temprature=4"], ["unknown key 'distill.temprature'", "did you mean 'distill.temperature'"]),
        (["--set", "distill.alpha=lots"], ["distill.alpha expects a number"]),
        (["--set", "student.arch=resnet9"], ["unknown model 'resnet9'", "did you mean 'resnet8'", "available:"]),
        (["--set", "data.name=imagenet"], ["unknown dataset 'imagenet'", "available:"]),
        (
            ["--set", "data.name=imagefolder", "--set", "data.root=/no/such/folder"],
            ["data root not found: /no/such/folder"],
        ),
        (
            ["--set", "teacher.checkpoint=/no/such.pt", "--set", "teacher.epochs=0"],
            ["checkpoint not found: /no/such.pt"],
        ),
        (["--set", "distill.method=kdd"], ["unknown KD method 'kdd'", "did you mean 'kd'"]),
        (
            [
                "--set",
                "distill.method=fitnets",
                "--set",
                "distill.fitnets.hint_layer=feature.1",
                "--set",
                "distill.fitnets.guided_layer=features.1",
            ],
            [
                "distill.fitnets.hint_layer: the teacher (test_teacher) has no module 'feature.1'",
                "did you mean 'features.1'?",
                "valid paths:",
            ],
        ),
        (
            ["--set", "distill.method=takd", "--set", "distill.takd.assistants=[plain66]"],
            ["unknown model 'plain66'", "did you mean 'plain6'"],
        ),
        (["--set", "data.shift=sepia"], ["data.shift: 'sepia' is not one of"]),
        (["--config", "/no/such.yaml"], ["config file not found"]),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], needles: list[str]
) -> None:
    overrides = [x for kv in tiny_overrides() for x in ("--set", kv)]
    assert_one_line_error(edgekd_inproc(capsys, "distill", "--out", str(tmp_path / "run"), *overrides, *args), *needles)


def test_corrupt_and_mismatched_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    overrides = [x for kv in tiny_overrides(**{"teacher.epochs": 0}) for x in ("--set", kv)]
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    proc = edgekd("distill", "--out", str(tmp_path / "a"), *overrides, "--set", f"teacher.checkpoint={corrupt}")
    assert_one_line_error(proc, "corrupt or unreadable checkpoint")
    # random bytes: the unpickler's "Unsupported operand" is damage, not "pickled Python objects"
    corrupt.write_bytes(bytes(range(253, 256)) * 300)
    proc = edgekd("distill", "--out", str(tmp_path / "a"), *overrides, "--set", f"teacher.checkpoint={corrupt}")
    assert_one_line_error(proc, "corrupt or unreadable checkpoint")
    # a text file: the unpickler fails with a bare KeyError number, named as such
    corrupt.write_text("junk\n")
    proc = edgekd("distill", "--out", str(tmp_path / "a"), *overrides, "--set", f"teacher.checkpoint={corrupt}")
    assert_one_line_error(proc, "corrupt or unreadable checkpoint", "not a PyTorch checkpoint (KeyError while")

    # a checkpoint trained for 3-channel 32x32 CIFAR-like data offered to 1-channel 8x8 digits
    import torch

    from edgekd.checkpoint import model_payload, save_checkpoint
    from edgekd.models import create_model

    info = {
        "num_classes": 10,
        "in_channels": 3,
        "image_size": [32, 32],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "classes": list("abcdefghij"),
    }
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(
        wrong, model_payload(create_model("test_teacher", 10, 3, (32, 32)), "test_teacher", {}, info, "teacher")
    )
    proc = edgekd_inproc(
        capsys, "distill", "--out", str(tmp_path / "b"), *overrides, "--set", f"teacher.checkpoint={wrong}"
    )
    assert_one_line_error(
        proc, "trained for 3-channel 32x32 input, 10 classes", "the data has 1-channel 8x8 input, 10 classes"
    )

    # right shapes, wrong architecture: the weights do not fit
    bare = tmp_path / "bare.pt"
    torch.save(create_model("resnet8", 10, 1, (8, 8)).state_dict(), bare)
    proc = edgekd_inproc(
        capsys, "distill", "--out", str(tmp_path / "c"), *overrides, "--set", f"teacher.checkpoint={bare}"
    )
    assert_one_line_error(proc, "does not match the model")


def test_sweep_bad_grid_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:  # argparse's own usage error
        edgekd_inproc(capsys, "sweep", "--out", str(tmp_path / "s"), "--temperatures", "1,hot")
    assert exit_.value.code == 2 and "expected comma-separated numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # an empty entry was skipped: a sweep without the point meant there
        edgekd_inproc(capsys, "sweep", "--out", str(tmp_path / "s"), "--temperatures", "2,,4")
    assert exit_.value.code == 2 and "got '2,,4'" in capsys.readouterr().err
    assert_one_line_error(
        edgekd_inproc(capsys, "sweep", "--out", str(tmp_path / "s"), "--alphas", "2"),
        "--alphas must be a number from 0 to 1, got 2",
    )
    for grid, needle in (
        (["--temperatures", "2,4,2"], "--temperatures lists 2 more than once"),
        (["--temperatures", "1.0000001,1.0000002"], "--temperatures lists 1 more than once"),  # one folder, T1
        (["--temperatures", "1e30"], "--temperatures must be a number from 0.01 to 1000, got 1e+30"),
    ):
        assert_one_line_error(edgekd_inproc(capsys, "sweep", "--out", str(tmp_path / "s"), *grid), needle)
    assert not (tmp_path / "s").exists()  # refused before the teacher's folder is made


def test_empty_class_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_imagefolder(tmp_path / "data", {"cat": 4, "dog": 4})
    for f in (root / "train" / "dog").iterdir():
        f.unlink()
    overrides = [
        x for kv in tiny_overrides(**{"data.name": "imagefolder", "data.root": str(root)}) for x in ("--set", kv)
    ]
    assert_one_line_error(
        edgekd_inproc(capsys, "distill", "--out", str(tmp_path / "run"), *overrides),
        "class folder 'dog'",
        "has no images",
    )


def test_cli_distill_runs_and_prints_summary(tmp_path: Path) -> None:
    overrides = [x for kv in tiny_overrides(**{"teacher.epochs": 1, "student.epochs": 1}) for x in ("--set", kv)]
    proc = edgekd("distill", "--out", str(tmp_path / "run"), *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distill summary" in proc.stdout and "KD gain over the no-KD baseline" in proc.stdout
    assert (tmp_path / "run" / "summary.json").is_file()
    shutil.rmtree(tmp_path / "run")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "--device", "MCU"], "unknown bench target 'MCU'; did you mean 'mcu'?"),
        (["bench", "--device", "mcu", "--mcu", "CORTEX-M4"], "did you mean 'cortex-m4'?"),
        (["mcu", "build", "--core", "CORTEX-M4"], "did you mean 'cortex-m4'?"),
    ],
)
def test_did_you_mean_ignores_case(
    capsys: pytest.CaptureFixture, tiny_bundle: Path, args: list[str], needle: str
) -> None:
    """A name in the wrong case is suggested in the right one (difflib alone found nothing close to
    'CORTEX-M4' among 'cortex-m4', …); the lookup itself still takes the name as written."""
    proc = edgekd_inproc(capsys, *args, "--artifacts", str(tiny_bundle))
    assert_one_line_error(proc, needle, "available:")


def test_did_you_mean_prefers_the_same_name_in_another_case() -> None:
    from edgekd.registry import did_you_mean

    assert did_you_mean("Mcu", ["mcux", "mcu"]) == "; did you mean 'mcu'?"
    assert did_you_mean("DISTIL", ["distill", "export"]) == "; did you mean 'distill'?"
    assert did_you_mean("zzz", ["distill"]) == ""


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "give a command: distill, sweep, search, export, bench, mcu, deploy, predict"),
        (["mcu"], "give an action: build (see `edgekd mcu --help`)"),
    ],
)
def test_no_command_is_the_help_and_one_error_line(capsys: pytest.CaptureFixture, args: list[str], needle: str) -> None:
    """The help still goes to stdout; stderr now has the one error line of any other bad input."""
    proc = edgekd_inproc(capsys, *args)
    assert_one_line_error(proc, needle)
    assert proc.stdout.startswith(f"usage: {' '.join(['edgekd', *args])} ")
