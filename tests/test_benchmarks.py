"""benchmarks/methods_cifar10.py end to end on a tiny CIFAR-shaped ImageFolder (seconds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import make_imagefolder

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_methods_cifar10_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = _load("methods_cifar10")
    classes = {f"c{i}": 3 for i in range(10)}  # 30 train / 20 test images, 32×32 RGB like CIFAR-10
    data = make_imagefolder(tmp_path / "cifar", classes, size=(32, 32), mode="RGB")
    out = tmp_path / "bench"
    result = bench.run_benchmark(
        recipe="cpu", seeds=2, epochs=1, data=str(data), out=out, device="cpu", threads=1, int8=False
    )
    assert [r["row"] for r in result["table"]] == ["nokd", "kd", "fitnets", "takd"]
    for r in result["table"]:
        assert r["seeds"] == 2 and 0 <= r["test_mean"] <= 100 and r["test_std"] >= 0
        assert r["int8_test_mean"] is None  # int8=False: no student exported
    # one teacher, trained once, shared by every row and seed
    assert sorted(str(p.relative_to(out)) for p in out.rglob("teacher_last.pt")) == ["teacher/teacher_last.pt"]
    assert result["teacher"]["arch"] == "plain10" and result["teacher"]["epochs"] == 1
    takd = [r for r in result["runs"] if r["row"] == "takd"]
    assert [link["arch"] for link in takd[0]["links"]] == ["plain6", "plain2"]
    # final-epoch figures, never a test-picked checkpoint
    kd0 = json.loads((out / "kd" / "seed0" / "summary.json").read_text())
    assert kd0["student"]["epoch"] == kd0["student"]["epochs"]
    assert json.loads((out / "results.json").read_text())["table"] == result["table"]
    # the cpu recipe's val-chosen KD settings and the students' (not the teacher's) warm-up epoch
    import yaml

    assert (result["settings"]["temperature"], result["settings"]["alpha"]) == bench.RECIPE_KD["cpu"] == (2.0, 0.9)
    kd_cfg = yaml.safe_load((out / "kd" / "seed0" / "config.yaml").read_text())
    assert kd_cfg["distill"]["temperature"] == 2.0 and kd_cfg["student"]["warmup_epochs"] == 1
    assert yaml.safe_load((out / "teacher" / "config.yaml").read_text())["teacher"]["warmup_epochs"] == 0
    printed = capsys.readouterr().out
    assert "FITNETS" in printed and "TAKD" in printed and "paper test %" in printed


def test_int8_column_is_the_exported_student(tmp_path: Path) -> None:
    """The int8 figure of a row is its student's full-integer TFLite model on the whole test split."""
    from conftest import tiny_overrides
    from edgekd.train.run import distill

    bench = _load("methods_cifar10")
    run = tmp_path / "run"
    distill(out=run, set=tiny_overrides(**{"distill.baseline": "false", "student.epochs": 4, "student.lr": 0.2}))
    acc = bench.int8_test_acc(run / "student.pt", run)
    manifest = json.loads((run / "int8-student" / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "config.yaml",
        "eval.npz",
        "quant_report.json",
        "student_int8.tflite",
        "student_int8_model_data.cc",
        "student_int8_model_data.h",
        "summary.json",
    ]
    assert acc == manifest["metrics"]["student_int8.tflite"]["test_acc"] and 0.1 < acc <= 1.0
    assert manifest["metrics"]["student_int8.tflite"]["n"] == 359  # the whole digits test split


def test_quant_bf16_row_is_a_float_reference_without_a_file() -> None:
    """benchmarks/quant.py's bf16 row: the float model's own decisions in bf16 (no file, so no
    size or latency: the table prints dashes, the JSON holds null)."""
    import numpy as np
    import torch

    bench = _load("quant")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10)).eval()
    images = np.random.default_rng(0).integers(0, 256, (64, 4, 4, 3), dtype=np.uint8)  # NHWC pixels
    with torch.no_grad():
        top1 = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float()).argmax(1).numpy()
    row = bench.bf16_row("tiny", model, images, top1, top1)
    assert row["model"] == "float in bf16 (PyTorch)" and row["bytes"] is None and row["ms"] is None
    assert 0.8 <= row["agree"] <= 1.0 and row["acc"] == row["agree"]  # labels = float decisions here
    line = bench.table([row]).splitlines()[-1]
    assert line.endswith("| — | — |") and f"{100 * row['agree']:.2f}" in line
    flipped = bench.bf16_row("tiny", model, images, top1, (top1 + 1) % 10)
    assert flipped["agree"] < 0.2  # measured against the decisions it is given, not against itself


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--students", "mnv3_cifr"], "unknown student 'mnv3_cifr'; did you mean 'mnv3_cifar'?"),
        (["--epochs", "0"], "--epochs must be an integer of at least 1, got 0"),
        (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
        (["--teacher", "no-such-teacher.pt"], "--teacher: no-such-teacher.pt not found"),
        (["--run", "resnet8"], "expected STUDENT=FOLDER"),
        (["--run", "resnet8={half}"], "is not a finished distill run (no config.yaml, summary.json)"),
    ],
)
def test_quant_bench_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, args, fragment) -> None:
    half = tmp_path / "half"  # a run folder with a student.pt (garbage) and nothing else
    half.mkdir()
    (half / "student.pt").write_text("not a checkpoint")
    quant = _load("quant")
    assert quant.main([a.format(half=half) for a in args] + ["--work", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("quant: error: ") and fragment in err[0], err
    assert not (tmp_path / "work").exists()  # nothing written
    assert (half / "student.pt").read_text() == "not a checkpoint"
