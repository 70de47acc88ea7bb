"""Real-data runs of the whole pipeline (minutes): `make test-slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CIFAR10_TARBALL, REPO
from edgekd.exporters.export import export
from edgekd.train.run import distill

pytestmark = pytest.mark.slow


def test_default_digits_recipe_end_to_end(tmp_path: Path) -> None:
    """What `make distill export` does: KD beats (or ties) the baseline and int8 keeps parity."""
    summary = distill(config=REPO / "configs" / "digits.yaml", out=tmp_path / "run")
    assert summary["student"]["test_acc"] >= summary["baseline"]["test_acc"]
    assert summary["teacher"]["test_acc"] > 0.95
    manifest = export(run=tmp_path / "run", out=tmp_path / "bundle")
    int8 = manifest["metrics"]["student_int8.tflite"]
    assert int8["top1_agreement"] >= 0.99
    # at most 2 of the 359 test images (0.56 point): the same run and int8 file lose 1 on a 2-core
    # Xeon and 2 on a 2-core AMD EPYC (float summation differs by CPU; the file is bit-identical
    # with the previous release's export there); the recipe's own gate is export.max_acc_drop 0.01
    assert int8["reference_acc"] - int8["test_acc"] <= 2 / 359 + 1e-6


@pytest.mark.skipif(not CIFAR10_TARBALL.is_file(), reason=f"needs {CIFAR10_TARBALL}")
def test_cifar10_from_the_shared_tarball(tmp_path: Path) -> None:
    """CIFAR-10 JPEGs (ImageFolder in a .tar.gz) → distill on a 5k subset → export with parity."""
    overrides = [
        f"data.root={CIFAR10_TARBALL}",
        "data.train_limit=5000",
        "teacher.arch=resnet8",
        "teacher.epochs=3",
        "student.arch=plain4",
        "student.epochs=3",
        "distill.baseline=false",
    ]
    summary = distill(config=REPO / "configs" / "cifar10-cpu.yaml", out=tmp_path / "run", set=overrides)
    assert summary["data"]["image_size"] == [32, 32] and summary["data"]["in_channels"] == 3
    assert summary["data"]["sizes"]["test"] == 10000 and summary["data"]["sizes"]["val"] == 5000
    # well above chance (0.1): 3 epochs on 5k augmented images gave teacher 38 %, student 27 % here
    assert summary["teacher"]["test_acc"] > 0.2 and summary["student"]["test_acc"] > 0.2
    # a 3-epoch student has many near-tie logits: int8 flips 3-4 % of them (96.4 % agreement here),
    # under the recipe's 98.5 % bound, which is for trained students
    manifest = export(
        run=tmp_path / "run",
        out=tmp_path / "bundle",
        set=["export.parity_samples=2000", "export.min_top1_agreement=0.95"],
    )
    for name in ("student.onnx", "student_fp32.tflite", "teacher_fp32.tflite"):
        assert manifest["metrics"][name]["max_abs_diff"] < 2e-3
    int8 = manifest["metrics"]["student_int8.tflite"]
    assert int8["top1_agreement"] >= 0.95  # a 3-epoch student (96.4 % here); trained ones reach ≥ 98.5 %
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["labels"][0] == "airplane"
