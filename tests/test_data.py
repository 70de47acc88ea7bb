"""Data sources: digits split, ImageFolder (grayscale, odd sizes, spaces, archives), CIFAR-10/SVHN files."""

from __future__ import annotations

import pickle
import re
import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import make_imagefolder
from edgekd.config import DataConfig
from edgekd.data import load_dataset
from edgekd.errors import DataError


def test_digits_split_is_fixed_stratified_and_disjoint() -> None:
    a = load_dataset(DataConfig(name="digits"))
    b = load_dataset(DataConfig(name="digits"))
    assert (a.in_channels, a.image_size, a.num_classes) == (1, (8, 8), 10)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert np.array_equal(a.test.images, b.test.images) and np.array_equal(a.val.labels, b.val.labels)
    # every class in every split, in about the same proportion
    for split in (a.train, a.val, a.test):
        counts = np.bincount(split.labels, minlength=10)
        assert counts.min() > 0 and counts.max() / counts.min() < 1.5
    # no image appears in two splits
    rows = lambda s: {img.tobytes() for img in s.images}  # noqa: E731
    assert not (rows(a.test) & rows(a.train))
    assert a.augment == "none"  # flips would corrupt digits
    assert len(a.mean) == 1 and 0 < a.mean[0] < 1
    c = load_dataset(DataConfig(name="digits", split_seed=1))
    assert not np.array_equal(a.test.labels, c.test.labels)


def test_imagefolder_grayscale_odd_size_spaces(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "my data", {"class one": 6, "class two": 6, "three": 6}, size=(11, 13))
    data = load_dataset(DataConfig(name="imagefolder", root=str(root), val_fraction=0.2))
    assert data.classes == ["class one", "class two", "three"]
    assert data.in_channels == 1 and data.image_size == (11, 13)
    assert len(data.train) + len(data.val) == 18 and len(data.test) == 9
    assert data.augment == "none"
    assert data.describe()["sizes"] == {"train": len(data.train), "val": len(data.val), "test": 9}


def test_imagefolder_rgb_archive_and_cache(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = make_imagefolder(tmp_path / "src" / "cifar-like", {"a": 4, "b": 4}, size=(32, 32), mode="RGB")
    archive = tmp_path / "cifar-like.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="cifar-like")  # wrapped in one top-level folder, like many archives
    logs: list[str] = []
    data = load_dataset(DataConfig(name="imagefolder", root=str(archive)), log=logs.append)
    assert data.in_channels == 3 and data.image_size == (32, 32)
    assert data.augment == "crop_flip"  # 32×32 RGB: the CIFAR recipe
    assert any("extracting" in m for m in logs) and any("decoding" in m for m in logs)
    logs.clear()
    again = load_dataset(DataConfig(name="imagefolder", root=str(archive)), log=logs.append)
    assert not any("extracting" in m or "decoding" in m for m in logs), logs  # both cached
    assert np.array_equal(again.train.images, data.train.images)


def test_imagefolder_mixed_sizes_and_explicit_size(tmp_path: Path) -> None:
    from PIL import Image

    root = make_imagefolder(tmp_path / "d", {"x": 5, "y": 5}, size=(16, 16))
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "train" / "x" / "odd.png")
    logs: list[str] = []
    data = load_dataset(DataConfig(name="imagefolder", root=str(root)), log=logs.append)
    assert data.image_size == (16, 16) and any("vary in size" in m for m in logs)
    data = load_dataset(DataConfig(name="imagefolder", root=str(root), image_size=12))
    assert data.image_size == (12, 12) and data.test.images.shape[2:] == (12, 12)


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data root not found"):
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="data.root is required"):
        load_dataset(DataConfig(name="imagefolder"))
    root = make_imagefolder(tmp_path / "d", {"x": 3, "y": 3})
    (root / "test" / "zebra").mkdir()
    (root / "test" / "zebra" / "z.png").write_bytes((root / "test" / "x" / "img 000.png").read_bytes())
    with pytest.raises(DataError, match="classes that train/ lacks: zebra"):
        load_dataset(DataConfig(name="imagefolder", root=str(root)))
    root2 = make_imagefolder(tmp_path / "e", {"x": 3, "y": 3}, splits=("train",))
    (root2 / "tset").mkdir()  # a misspelt split: the line says what the root holds
    with pytest.raises(DataError, match=r"missing split folder: .*e/test \(.*e holds train/, tset/\)$"):
        load_dataset(DataConfig(name="imagefolder", root=str(root2)))
    root3 = make_imagefolder(tmp_path / "f", {"x": 3, "y": 3})
    (root3 / "train" / "x" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        load_dataset(DataConfig(name="imagefolder", root=str(root3)))
    root4 = make_imagefolder(tmp_path / "g", {"x": 3})  # one class: nothing to classify
    with pytest.raises(DataError, match=r"g/train has one class folder \(x\); classification needs at least 2"):
        load_dataset(DataConfig(name="imagefolder", root=str(root4)))
    # a class name is printed as it is in every table and bundle: no newline or escape in it
    root5 = make_imagefolder(tmp_path / "h", {"x": 3, "y\x1b[2Jz": 3})
    with pytest.raises(DataError, match=r"class folder 'y\\x1b\[2Jz' in .*h/train has a control character"):
        load_dataset(DataConfig(name="imagefolder", root=str(root5)))


def test_a_source_with_one_class_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any classification source, not only ImageFolder: one class trains to "100 %" and a KD loss of 0."""
    from edgekd.data.dataset import Split
    from edgekd.data.sources import DATASETS, RawData

    split = Split(np.zeros((20, 1, 8, 8), np.uint8), np.zeros(20, np.int64))
    DATASETS.names()  # the built-in sources registered first
    monkeypatch.setitem(DATASETS._entries, "one-class", lambda cfg, log=print: RawData(split, None, split, ["only"]))
    with pytest.raises(DataError, match="'one-class' has 1 class\\(es\\); classification needs at least 2"):
        load_dataset(DataConfig(name="one-class"))


@pytest.mark.parametrize("storage", ["memory", "stream"])
def test_imagefolder_image_too_large(tmp_path: Path, huge_png: Path, storage: str) -> None:
    """A 200-Mpixel PNG (Pillow's DecompressionBombError, not an OSError) is one line naming it."""
    root = make_imagefolder(tmp_path / "d", {"x": 3, "y": 3})
    shutil.copy(huge_png, root / "train" / "x" / "huge.png")
    with pytest.raises(DataError, match=r"cannot read image .*huge.png: too large \(200000000 pixels; edgekd reads"):
        load_dataset(DataConfig(name="imagefolder", root=str(root), storage=storage))


def test_image_pixel_limit_is_edgekds_and_prints_no_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow warns from its MAX_IMAGE_PIXELS (89 Mpixel by default) up to twice that; edgekd has its
    own limit, checked from the header, and lets no warning through. Shown at 8×8 with both lowered."""
    import PIL.Image

    from edgekd.data.imagefolder import decode_images

    path = tmp_path / "a.png"
    PIL.Image.fromarray(np.full((8, 8), 7, np.uint8)).save(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 40)  # Pillow warns from 41 pixels, errs from 81
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_images([path], None).max() == 7
        from edgekd.data import images

        monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 63)
        with pytest.raises(DataError, match=r"a.png: too large \(64 pixels; edgekd reads images of up to 63 pixels\)"):
            decode_images([path], None)


def test_16_bit_images_keep_their_top_byte_float_ones_are_refused(tmp_path: Path) -> None:
    """Pillow's convert() clips 16-bit values to 255 (a binarised image); edgekd keeps value >> 8, in
    memory and streamed alike. Float pixels (mode F, NaN here) and 32-bit values past 65535 are refused."""
    from PIL import Image

    from edgekd.data.imagefolder import decode_images
    from edgekd.data.lazy import LazyImages

    values = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    files = {
        "g16.png": Image.fromarray(values),  # mode I;16
        "g16b.tif": Image.fromarray(values.astype(">u2")),  # mode I;16B
        "g32.tif": Image.fromarray(values.astype(np.int32)),  # mode I, values within 16 bits
    }
    for name, img in files.items():
        img.save(tmp_path / name)
    paths = [tmp_path / name for name in files]
    assert [Image.open(p).mode for p in paths] == ["I;16", "I;16B", "I"]
    want = (values >> 8).astype(np.uint8)
    decoded = decode_images(paths, None)
    assert decoded.shape == (3, 1, 8, 8) and all(np.array_equal(img[0], want) for img in decoded)
    lazy = LazyImages(paths, 1, (8, 8))
    assert all(np.array_equal(lazy[i][0], want) for i in range(3))
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"cannot read image .*nan.tif: floating-point pixels \(mode F\)"):
        decode_images([tmp_path / "nan.tif"], None)
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(DataError, match=r"wide.tif: 32-bit integer pixels from 70000 to 70000 \(mode I\)"):
        LazyImages([tmp_path / "wide.tif"], 1, (8, 8))[0]


def test_cifar10_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 20))}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20
    assert data.classes[0] == "airplane" and data.mean == (0.4914, 0.4822, 0.4465)
    with pytest.raises(DataError, match="set data.download=true"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "empty")))
    # a batch's labels and pixels are checked, not cast: a label past 9 failed inside the loss, a
    # label count other than the images' in an assert, a huge label overflowed, a float was cut
    good = {b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), b"labels": [1] * 20}
    for change, needle in (
        ({b"labels": [15] * 20}, "labels must be 0-9, got 15 to 15"),
        ({b"labels": [-1] + [1] * 19}, "labels must be 0-9, got -1 to 1"),
        ({b"labels": [1] * 19}, r"labels must be one integer per image, got int64 of shape \[19\] for 20 images"),
        ({b"labels": [2**70] * 20}, "labels must be one integer per image, got object"),
        ({b"labels": [0.5] * 20}, "labels must be one integer per image, got float64"),
        ({b"data": rng.random((20, 3072)) * 300}, "data must be pixels 0-255 as uint8, got float64"),
    ):
        with open(folder / "data_batch_2", "wb") as fh:
            pickle.dump({**good, **change}, fh)
        with pytest.raises(DataError, match=f"cannot read CIFAR-10 batch .*data_batch_2: its {needle}"):
            load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


def test_svhn_mat_files(tmp_path: Path) -> None:
    import scipy.io

    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 10)):
        x = rng.integers(0, 255, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1))  # SVHN labels digit 0 as 10
        scipy.io.savemat(tmp_path / f"{name}_32x32.mat", {"X": x, "y": y})
    data = load_dataset(DataConfig(name="svhn", root=str(tmp_path)))
    assert data.image_size == (32, 32) and data.in_channels == 3
    assert set(np.unique(data.test.labels)) <= set(range(10))
    assert data.augment == "crop_flip"
    # checked, not cast: a label count other than the images' was an assert's traceback, a file that
    # is no .mat scipy's MatReadError traceback, a label 0 or -5 wrapped into a digit by the % 10
    x, y = rng.integers(0, 255, (32, 32, 3, 30), dtype=np.uint8), np.full((30, 1), 3.0)  # MATLAB's doubles
    for change, needle in (
        ({"y": y[:29]}, r"y must be one integer label per image, got float64 \[29, 1\]"),
        ({"y": y - 5}, "y must be labels 1-10, got -2 to -2"),
        ({"y": y / 2}, "y must be one integer label per image, got float64"),
        ({"X": x * 1.5}, "X must be pixels 0-255 as uint8, got float64"),
    ):
        scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y, **change})
        with pytest.raises(DataError, match=f"cannot read SVHN file .*train_32x32.mat: its {needle}"):
            load_dataset(DataConfig(name="svhn", root=str(tmp_path)))
    (tmp_path / "train_32x32.mat").write_text("not a mat file\n")
    with pytest.raises(DataError, match="cannot read SVHN file .*train_32x32.mat: "):
        load_dataset(DataConfig(name="svhn", root=str(tmp_path)))
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    assert set(np.unique(load_dataset(DataConfig(name="svhn", root=str(tmp_path))).train.labels)) == {3}


def test_train_limit_keeps_a_stratified_subset() -> None:
    full = load_dataset(DataConfig(name="digits"))
    small = load_dataset(DataConfig(name="digits", train_limit=200))
    assert abs(len(small.train) - 200) <= 10  # rounded per class
    assert np.array_equal(small.val.labels, full.val.labels) and np.array_equal(small.test.images, full.test.images)
    assert np.bincount(small.train.labels, minlength=10).min() >= 15


@pytest.mark.parametrize("name", ["images.tar.gz", "images.zip"])
def test_a_file_that_is_no_archive_is_one_line(tmp_path: Path, name: str) -> None:
    fake = tmp_path / name
    fake.write_text("not an archive\n")
    logs: list[str] = []
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="imagefolder", root=str(fake)), log=logs.append)
    assert str(err.value) == f"{fake} is not a readable archive (tar.gz, tgz, tar or zip)"
    assert not any("extracting" in line for line in logs)


def test_a_damaged_archive_is_one_line_and_nothing_is_cached(tmp_path: Path) -> None:
    """tarfile takes a damaged header past the first for the archive's end, without a word: the
    archive was extracted in part (test/ only here), cached so, and its other images were never
    read. A zip member's unknown compression method was a NotImplementedError traceback."""
    import gzip
    import io
    import zipfile

    src = make_imagefolder(tmp_path / "src", {"a": 3, "b": 3})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(src / "test", arcname="data/test")
        tf.add(src / "train", arcname="data/train")
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        header = next(m for m in tf.getmembers() if m.name == "data/train").offset
    raw = bytearray(buf.getvalue())
    raw[header + 148 : header + 156] = b"garbage!"  # the header's checksum field
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(gzip.compress(bytes(raw)))

    zipped = tmp_path / "unknown-method.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(src / "train" / "a" / "img 000.png", "data/train/a/img 000.png")
    data = bytearray(zipped.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 10 : central + 12] = (99).to_bytes(2, "little")  # compression method 99
    zipped.write_bytes(bytes(data))

    from edgekd.data.cache import cache_root

    for archive, needle in ((damaged, "damaged after byte"), (zipped, "compression method")):
        before = set((cache_root() / "extracted").glob("*")) if (cache_root() / "extracted").is_dir() else set()
        with pytest.raises(DataError, match=rf"^cannot extract {re.escape(str(archive))}: .*{needle}"):
            load_dataset(DataConfig(name="imagefolder", root=str(archive)), log=lambda *_: None)
        after = set((cache_root() / "extracted").glob("*")) if (cache_root() / "extracted").is_dir() else set()
        assert after == before  # nothing extracted in part and kept


@pytest.mark.parametrize("where", ["image", "loop", "class"])
def test_imagefolder_refuses_links_that_lead_nowhere(tmp_path: Path, where: str) -> None:
    """A link whose target is gone (or a loop) is neither a file nor a folder: the image, or the
    whole class, was left out of the data without a word; now it is one line naming the link."""
    root = make_imagefolder(tmp_path / "d", {"x": 3, "y": 3})
    if where == "image":
        link = root / "train" / "x" / "gone.png"
        link.symlink_to(tmp_path / "moved-away.png")
    elif where == "loop":
        link = root / "test" / "y" / "loop.jpg"
        link.symlink_to(link)
    else:
        link = root / "train" / "z"
        link.symlink_to(tmp_path / "class-on-an-unmounted-disk")
    (root / "train" / ".Trash").symlink_to(tmp_path / "gone")  # hidden entries are never classes: ignored
    before = sorted(str(p) for p in root.rglob("*"))
    with pytest.raises(DataError, match=rf"{re.escape(str(link))} is a link that leads nowhere"):
        load_dataset(DataConfig(name="imagefolder", root=str(root), cache_dir=str(tmp_path / "cache")))
    assert sorted(str(p) for p in root.rglob("*")) == before and not (tmp_path / "cache").exists()
    link.unlink()  # the hidden dangling link alone: the data loads
    assert len(load_dataset(DataConfig(name="imagefolder", root=str(root), cache_dir=str(tmp_path / "c2"))).train) > 0
