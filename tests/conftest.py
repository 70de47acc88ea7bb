"""Shared fixtures and the gates for slow / emulated-ARM tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# the shared data (CIFAR-10 copy, MLPerf Tiny model) beside the checkout, or where EDGEKD_SHARED_DATA
# points (a clone elsewhere); tests that need it skip, naming the path, when it is absent
SHARED_DATA = Path(os.environ.get("EDGEKD_SHARED_DATA") or REPO.parent / "shared" / "data")
CIFAR10_TARBALL = SHARED_DATA / "cifar10-jpg.tar.gz"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run slow tests on real data (CIFAR-10)")
    parser.addoption("--runarm", action="store_true", help="run emulated ARM64 (qemu-user) tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gates = {
        "slow": ("--runslow", "slow: real-data run of minutes; use `make test-slow` or --runslow"),
        "arm": ("--runarm", "arm: qemu-user ARM64 emulation; use `make test-arm` or --runarm"),
    }
    for marker, (flag, reason) in gates.items():
        if config.getoption(flag):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test session's own cache folder (extracted archives, decoded images): tests never read
    or pollute the user's ~/.cache/edgekd."""
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path_factory.getbasetemp() / "edgekd-cache"))


def tiny_overrides(**extra: object) -> list[str]:
    """--set overrides for a seconds-long digits run with the tiny test models."""
    base = {
        "data.name": "digits",
        "teacher.arch": "test_teacher",
        "teacher.epochs": 2,
        "student.arch": "test_student",
        "student.epochs": 2,
        "data.batch_size": 64,
        "runtime.device": "cpu",
        # one thread: tiny convolutions gain nothing from more, and on a shared 2-core machine
        # intra-op threads spinning against other jobs made each run ~10× slower
        "runtime.threads": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def make_imagefolder(
    root: Path,
    classes: dict[str, int],
    size: tuple[int, int] = (11, 13),
    mode: str = "L",
    splits=("train", "test"),
    seed: int = 0,
) -> Path:
    """Write a small ImageFolder: each class is a distinct brightness pattern, so it is learnable."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    for split in splits:
        for index, (name, count) in enumerate(classes.items()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            n = count if split == "train" else max(2, count // 2)
            for i in range(n):
                base = np.zeros((h, w), dtype=np.float64)
                base[:, (index * w) // len(classes) : ((index + 1) * w) // len(classes)] = 200
                arr = np.clip(base + rng.normal(0, 20, size=(h, w)), 0, 255).astype(np.uint8)
                img = Image.fromarray(arr, "L")
                if mode == "RGB":
                    img = img.convert("RGB")
                img.save(folder / f"img {i:03d}.png")
    return root


@pytest.fixture(scope="session")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 20000×10000 grayscale PNG (200 Mpixel, ~200 KB on disk): past edgekd's image limit
    and past Pillow's own decompression-bomb error. Made once (a few seconds); tests copy it."""
    from PIL import Image

    path = tmp_path_factory.mktemp("huge-image") / "huge.png"
    Image.new("L", (20000, 10000)).save(path)
    return path


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny digits run (teacher + student) to export; shared by the export tests."""
    from edgekd.train.run import distill

    out = tmp_path_factory.mktemp("export-run") / "tiny"
    # trained long enough that its logits are not flat: an untrained model's argmax flips under int8
    distill(
        out=out,
        set=tiny_overrides(
            **{"distill.baseline": "false", "student.epochs": 12, "student.lr": 0.2, "teacher.epochs": 6}
        ),
    )
    return out


@pytest.fixture(scope="session")
def tiny_bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported with the default formats, shared by the bench, Pi, MCU and deploy
    tests (the 4-channel int8 student may miss the 99 % parity bound; that is allowed here).
    Tests that alter it work on a copy."""
    from edgekd.exporters.export import export

    root = tmp_path_factory.mktemp("tiny-bundle")
    export(run=run_dir, out=root / "bundle", allow_parity_failure=True)
    return root / "bundle"


def reseal(bundle: Path) -> None:
    """Re-record a bundle manifest's checksums after a deliberate change, as if the export had written it."""
    import json

    from edgekd.bundle import MANIFEST, file_record

    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"] = {name: file_record(bundle / name) for name in manifest["files"]}
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def assert_tflm_matches_litert(model_path: Path, images, steps: int = 1) -> None:
    """TFLite Micro's reference kernels agree with LiteRT's optimized ones within ``steps``
    quantization steps on every image (int8 models)."""
    from tflite_micro.python.tflite_micro import runtime

    from edgekd.runtimes import open_runner

    interp = runtime.Interpreter.from_file(str(model_path), arena_size=256 * 1024)
    litert = open_runner(model_path)
    for img in images:
        x = litert.prepare(img)
        interp.set_input(x, 0)
        interp.invoke()
        assert np.abs(interp.get_output(0).astype(int) - litert.invoke(x).astype(int)).max() <= steps


def file_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative POSIX path → bytes): a folder compared before and after."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def eval_data(bundle: Path) -> dict[str, np.ndarray]:
    """The arrays of a bundle's eval.npz."""
    with np.load(bundle / "eval.npz") as data:
        return dict(data)


def with_eval_arrays(bundle: Path, dest: Path, **arrays: np.ndarray) -> dict[str, bytes]:
    """A resealed copy of ``bundle`` (without its bench reports) in ``dest`` whose eval.npz has
    ``arrays`` in place of its own; returns the copy's files, to compare after a refusal."""
    import shutil

    shutil.copytree(bundle, dest, ignore=shutil.ignore_patterns("bench"))
    np.savez(dest / "eval.npz", **{**eval_data(bundle), **arrays})
    reseal(dest)
    return file_tree(dest)
