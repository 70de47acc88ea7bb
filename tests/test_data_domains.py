"""Domain shifts (data.shift) and unlabeled image folders (KD transfer sets)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import make_imagefolder
from edgekd.config import DataConfig
from edgekd.data import load_dataset
from edgekd.data.dataset import Split
from edgekd.data.shift import SHIFTS, apply_shift
from edgekd.data.unlabeled import UNLABELED, load_unlabeled
from edgekd.errors import DataError


def _split(c: int) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (6, c, 8, 8), dtype=np.uint8), np.arange(6))


@pytest.mark.parametrize("shift", [s for s in SHIFTS if s != "none"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_shift_is_deterministic_and_keeps_the_shape(shift: str, channels: int) -> None:
    s = _split(channels)
    a, b = apply_shift(s, shift, "train", 0), apply_shift(s, shift, "train", 0)
    assert a.images.dtype == np.uint8 and a.images.shape == s.images.shape
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, s.labels)
    if shift == "grayscale" and channels == 1:
        assert np.array_equal(a.images, s.images)  # already gray
    else:
        assert not np.array_equal(a.images, s.images)
    if shift == "grayscale" and channels == 3:
        assert np.array_equal(a.images[:, 0], a.images[:, 1]) and np.array_equal(a.images[:, 1], a.images[:, 2])
    if shift == "invert":
        assert np.array_equal(a.images.astype(int) + s.images, np.full(s.images.shape, 255))
    if shift in ("noise", "color_jitter"):  # random, but seeded per split
        assert not np.array_equal(a.images, apply_shift(s, shift, "test", 0).images)


def test_blur_smooths() -> None:
    s = _split(1)
    blurred = apply_shift(s, "blur", "train", 0).images.astype(float)
    assert np.abs(np.diff(blurred, axis=3)).mean() < 0.5 * np.abs(np.diff(s.images.astype(float), axis=3)).mean()


def test_shifted_dataset_has_its_own_statistics() -> None:
    plain = load_dataset(DataConfig(name="digits"))
    inverted = load_dataset(DataConfig(name="digits", shift="invert"))
    assert np.array_equal(inverted.test.images, 255 - plain.test.images)  # same images, same split
    assert np.array_equal(inverted.val.labels, plain.val.labels)
    assert inverted.mean[0] == pytest.approx(1 - plain.mean[0], abs=1e-5)
    assert inverted.describe()["shift"] == "invert" and "shift" not in plain.describe()


def _digit_pngs(folder: Path, n: int, offset: int = 0) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    images = np.round(load_digits().images * (255 / 16)).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(images[offset + i]).save(folder / f"img {i:03d}.png")


def test_unlabeled_flat_folder(tmp_path: Path) -> None:
    _digit_pngs(tmp_path / "flat", 7)
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    split = load_unlabeled(str(tmp_path / "flat"), (1, 8, 8))
    assert split.images.shape == (7, 1, 8, 8) and (split.labels == UNLABELED).all()


def test_unlabeled_imagefolder_uses_train_only_and_matches_shape(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "folder", {"a": 4, "b": 3}, size=(11, 13), mode="RGB")  # train 7, test 4
    split = load_unlabeled(str(root), (1, 8, 8))  # brought to the labeled data's 1×8×8
    assert split.images.shape == (7, 1, 8, 8) and (split.labels == UNLABELED).all()
    # class folders without train/test: every image
    assert len(load_unlabeled(str(root / "test"), (3, 11, 13))) == 4
    archive = tmp_path / "folder.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="folder")
    assert len(load_unlabeled(str(archive), (1, 8, 8))) == 7


def test_unlabeled_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="distill.transfer.set not found"):
        load_unlabeled(str(tmp_path / "missing"), (1, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images under"):
        load_unlabeled(str(tmp_path / "empty"), (1, 8, 8))
    _digit_pngs(tmp_path / "linked", 3)
    (tmp_path / "linked" / "sub").mkdir()
    (tmp_path / "linked" / "sub" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # was skipped silently
    with pytest.raises(DataError, match=r"linked/sub/gone\.png is a link that leads nowhere"):
        load_unlabeled(str(tmp_path / "linked"), (1, 8, 8))
