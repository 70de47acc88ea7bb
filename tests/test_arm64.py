"""The Raspberry Pi code path on ARM64 without a Pi: qemu-user runs an arm64 Python 3.11 (Debian
packages) with the aarch64 wheels of numpy and ai-edge-litert (PyPI), set up by
deploy/arm64-emu/setup.sh. int8 outputs on ARM must match x86 within one quantization step and the
accuracy must be identical. Emulated run times are not latencies and are never checked as such."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.arm

# raw int8 outputs of a model for every eval image (or seeded random inputs), saved as .npy
OUTPUTS = """
import sys, numpy as np
from edgekd.runtimes.tflite_runner import TFLiteRunner
model, images, out = sys.argv[1:4]
r = TFLiteRunner(model, threads=1)
if images == "random":
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 256, size=r.input_details["shape"][1:], dtype=np.uint8) for _ in range(16)]
else:
    xs = np.load(images)["images"]
np.save(out, np.stack([r.invoke(r.prepare(x))[0] for x in xs]))
"""


@pytest.fixture(scope="module")
def emu() -> str:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing")
    proc = subprocess.run(
        ["bash", str(REPO / "deploy" / "arm64-emu" / "setup.sh")],
        env={**_env(), "HOST_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"deploy/arm64-emu/setup.sh failed: {proc.stderr[-2000:]}"
    assert "arm64-emu ready: aarch64" in proc.stdout
    return proc.stdout.strip().splitlines()[-1]


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO)}


def _outputs(python: str, model: Path, images: str, out: Path) -> np.ndarray:
    proc = subprocess.run(
        [python, "-c", OUTPUTS, str(model), images, str(out)], env=_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(out)


def _real_bundles() -> list[Path]:
    """Bundles made by `make distill export` (any CONFIG) in this checkout, plus EDGEKD_ARM_BUNDLES
    (space-separated folders): `make test-arm` checks every one of them on ARM64."""
    import os

    found = [p.parent for p in sorted((REPO / "artifacts").glob("*/manifest.json"))]
    found += [Path(p) for p in os.environ.get("EDGEKD_ARM_BUNDLES", "").split()]

    def classification(b: Path) -> bool:  # the check compares top-1 over eval labels
        return json.loads((b / "manifest.json").read_text()).get("task", "classification") == "classification"

    return [b for b in dict.fromkeys(found) if (b / "student_int8.tflite").is_file() and classification(b)]


@pytest.mark.parametrize("which", ["tiny", *[str(b) for b in _real_bundles()]])
def test_int8_outputs_on_arm64_match_x86(emu: str, tiny_bundle: Path, tmp_path: Path, which: str) -> None:
    bundle = tiny_bundle if which == "tiny" else Path(which)
    model, images = bundle / "student_int8.tflite", str(bundle / "eval.npz")
    arm = _outputs(emu, model, images, tmp_path / "arm.npy")
    x86 = _outputs(sys.executable, model, images, tmp_path / "x86.npy")
    assert arm.dtype == x86.dtype == np.int8 and arm.shape == x86.shape
    diff = int(np.abs(arm.astype(np.int32) - x86.astype(np.int32)).max())
    labels = np.load(images)["labels"]
    acc_arm, acc_x86 = float((arm.argmax(1) == labels).mean()), float((x86.argmax(1) == labels).mean())
    print(
        f"\n{bundle.name}: student_int8 on {len(labels)} eval images: max |ARM − x86| = {diff} int8 steps; accuracy "
        f"ARM {acc_arm:.4f}, x86 {acc_x86:.4f}"
    )
    assert diff <= 1, f"int8 outputs differ by {diff} quantization steps"
    assert acc_arm == acc_x86


def test_mlperf_resnet8_on_arm64_matches_x86(emu: str, tmp_path: Path) -> None:
    model = SHARED_DATA / "mlperf-tiny" / "resnet8_quant.tflite"
    if not model.is_file():
        pytest.skip(f"{model} is not there (shared data)")
    arm = _outputs(emu, model, "random", tmp_path / "arm.npy")
    x86 = _outputs(sys.executable, model, "random", tmp_path / "x86.npy")
    diff = int(np.abs(arm.astype(np.int32) - x86.astype(np.int32)).max())
    print(f"\nMLPerf Tiny ResNet-8, 16 seeded inputs: max |ARM − x86| = {diff} int8 steps")
    assert diff <= 1


def test_pi_bench_path_under_emulation(emu: str, tiny_bundle: Path, tmp_path: Path) -> None:
    """`edgekd bench --device rpi --force` end to end on arm64 (per-model processes included)."""
    from edgekd.benchmark import bench

    args = ["--formats", "tflite_int8,tflite_fp32", "--runs", "2", "--warmup", "1"]
    proc = subprocess.run(
        [
            emu,
            "-m",
            "edgekd",
            "bench",
            "--device",
            "rpi",
            "--force",
            "--artifacts",
            str(tiny_bundle),
            "--out",
            str(tmp_path / "arm"),
            "--json",
            str(tmp_path / "arm.json"),
            *args,
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    arm = json.loads((tmp_path / "arm.json").read_text())
    assert arm["host"]["machine"] == "aarch64" and "qemu-user" in arm["host"]["emulated"]
    assert any("EMULATED" in note and "not latencies" in note for note in arm["notes"])
    x86 = bench(
        artifacts=tiny_bundle,
        device="rpi",
        force=True,
        formats="tflite_int8,tflite_fp32",
        runs=2,
        warmup=1,
        out=tmp_path / "x86",
    )
    expected = {(r["model"], r["format"], r["threads"]): r["accuracy_frac"] for r in x86.results}
    got = {(r["model"], r["format"], r["threads"]): r for r in arm["results"]}
    assert set(got) == set(expected) and {k[2] for k in got} == {1, 4}
    for key, row in got.items():
        assert row["status"] == "ok", row
        assert (
            row["p50_us"] is None and row["throughput_per_s"] is None and row["emulated"]["p50_us"] > 0
        )  # never a latency
        assert row["accuracy_frac"] == expected[key], key


# the Predictor of an app on the Pi (edgekd.predict), on every eval image given as an array: the
# emulated install has numpy + ai-edge-litert only, and images at the model's size need no Pillow
PREDICT = """
import sys, numpy as np
from edgekd.predict import Predictor
bundle = sys.argv[1]
p = Predictor(bundle, threads=1)
with np.load(bundle + "/eval.npz") as d:
    images = d["images"]
print(" ".join(p.predict(img).label for img in images))
"""


def test_predictor_on_arm64_agrees_with_bench(emu: str, tiny_bundle: Path, tmp_path: Path) -> None:
    from edgekd.runtimes.tflite_runner import TFLiteRunner

    proc = subprocess.run(
        [emu, "-c", PREDICT, str(tiny_bundle)], env=_env(), capture_output=True, text=True, timeout=900, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(tiny_bundle / "eval.npz") as data:
        images, classes = data["images"], [str(c) for c in data["classes"]]
    expected = (
        TFLiteRunner(tiny_bundle / "student_int8.tflite", threads=1).predict(images).argmax(1)
    )  # bench's int8 evaluation
    assert proc.stdout.split() == [classes[i] for i in expected]
