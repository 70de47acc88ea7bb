"""The registered data sources: digits (embedded default), imagefolder, cifar10, svhn (classification);
shapes (generated) and segfolder (segmentation).

A source returns raw splits; :func:`edgekd.data.load_dataset` does the val split, the statistics
and the augmentation choice the same way for all of them. A source's ``task`` attribute (default
classification) says what its targets are before any data is read; ``generated`` that it makes
its images (and reads ``data.samples``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.config import DataConfig
from edgekd.data.dataset import Split
from edgekd.data.imagefolder import load_imagefolder
from edgekd.data.safe_pickle import load_plain
from edgekd.data.split import split_off
from edgekd.errors import DataError, first_line
from edgekd.registry import Registry

DATASETS: Registry = Registry("dataset", providers=["edgekd.data.sources"])

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Published statistics of the CIFAR-10 training set (0–1 pixels); declared so that every CIFAR-10
# run normalizes identically whatever its source format.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)


@dataclass
class RawData:
    train: Split
    val: Split | None  # None: carved out of train with data.val_fraction
    test: Split
    classes: list[str]
    mean: tuple[float, ...] | None = None  # declared statistics, else computed on train
    std: tuple[float, ...] | None = None
    source: dict = field(default_factory=dict)


def segmentation(fn):
    """Mark a source as yielding segmentation masks (config checks read it before loading)."""
    fn.task = "segmentation"
    return fn


@DATASETS.register("digits")
def digits(cfg: DataConfig, log=print) -> RawData:
    """scikit-learn's 8×8 handwritten digits (1,797 images): ships with the package, no download.
    Pixel values 0–16 are scaled to 0–255; test is a fixed stratified share (data.test_fraction)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train, test = split_off(Split(images, labels), cfg.test_fraction, cfg.split_seed)
    if cfg.image_size and cfg.image_size != 8:
        train, test = _resize(train, cfg.image_size), _resize(test, cfg.image_size)
    return RawData(train, None, test, [str(d) for d in range(10)], source={"name": "sklearn.datasets.load_digits"})


def _resize(split: Split, size: int) -> Split:
    from PIL import Image

    out = np.stack(
        [
            np.asarray(Image.fromarray(img[0]).resize((size, size), Image.Resampling.BILINEAR))[None]
            for img in split.images
        ]
    )
    return Split(out, split.labels)


@DATASETS.register("imagefolder")
def imagefolder(cfg: DataConfig, log=print) -> RawData:
    """Any ``root/{train,test}[,val]/<class>/*`` folder or archive of one."""
    train, val, test, classes, base = load_imagefolder(
        cfg.root, cfg.image_size, cfg.cache_dir, log=log, storage=cfg.storage, memory_limit_gb=cfg.memory_limit_gb
    )
    return RawData(train, val, test, classes, source={"root": str(base)})


def _is_imagefolder(root: Path) -> bool:
    from edgekd.data.archive import find_layout_root, is_archive

    return is_archive(root) or (root.is_dir() and (find_layout_root(root) / "train").is_dir())


def cifar10_on_disk(root: Path) -> bool:
    """``root`` holds CIFAR-10 in a layout :func:`cifar10` reads without downloading: the python
    pickles, an ImageFolder copy, or an archive of one (checked to be a readable archive)."""
    from edgekd.data.archive import check_archive, is_archive

    if is_archive(root):
        check_archive(root)
    return _is_imagefolder(root) or (root / "cifar-10-batches-py").is_dir()


@DATASETS.register("cifar10")
def cifar10(cfg: DataConfig, log=print) -> RawData:
    """CIFAR-10 from either its python pickles (``cifar-10-batches-py/``, downloaded by torchvision
    when ``data.download`` is true) or an ImageFolder copy of it (folder or .tar.gz)."""
    if not cfg.root:
        raise DataError("data.root is required for cifar10 (a folder, or an ImageFolder copy/archive of CIFAR-10)")
    root = Path(cfg.root).expanduser()
    if _is_imagefolder(root):
        raw = imagefolder(cfg, log)
        raw.mean, raw.std = CIFAR10_MEAN, CIFAR10_STD
        return raw
    batches = root / "cifar-10-batches-py"
    if not batches.is_dir():
        if not cfg.download:
            raise DataError(
                f"CIFAR-10 not found in {root} (expected cifar-10-batches-py/ or train/ + test/); set "
                "data.download=true when online"
            )
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    train = _read_cifar_batches([batches / f"data_batch_{i}" for i in range(1, 6)])
    test = _read_cifar_batches([batches / "test_batch"])
    return RawData(train, None, test, list(CIFAR10_CLASSES), CIFAR10_MEAN, CIFAR10_STD, source={"root": str(batches)})


def _as_pixels(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as uint8 once they are integers 0-255: checked, not cast (a float or out-of-range
    pixel of a dataset file was cut or wrapped quietly). ``what``: the array's name in the file."""
    if values.dtype.kind not in "iu" or (values.size and (values.min() < 0 or values.max() > 255)):
        raise ValueError(f"its {what} must be pixels 0-255 as uint8, got {values.dtype}")
    return values.astype(np.uint8)


def _read_cifar_batches(paths: list[Path]) -> Split:
    images, labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                batch = load_plain(fh)  # the official format, read as data only: a planted pickle runs nothing
            if not isinstance(batch, dict):
                raise TypeError(f"it holds a {type(batch).__name__}, not a batch dict")
            data, classes = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
            # checked, not cast: a float or out-of-range pixel or label was cut or wrapped quietly, a
            # label past 9 failed inside the loss and a label count other than the images' in an
            # assert, both with a traceback, and a label past int64 overflowed
            pixels = _as_pixels(data, "data")
            if classes.dtype.kind not in "iu" or classes.ndim != 1 or len(classes) * 3072 != data.size:
                raise ValueError(
                    f"its labels must be one integer per image, got {classes.dtype} of shape {list(classes.shape)} "
                    f"for {data.size / 3072:g} images"
                )
            if classes.size and (classes.min() < 0 or classes.max() >= len(CIFAR10_CLASSES)):
                raise ValueError(f"its labels must be 0-9, got {int(classes.min())} to {int(classes.max())}")
            images.append(pixels.reshape(-1, 3, 32, 32))
            labels.append(classes.astype(np.int64))
        except (OSError, KeyError, pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
            raise DataError(f"cannot read CIFAR-10 batch {path}: {first_line(exc, 200)}") from None
    return Split(np.concatenate(images), np.concatenate(labels))


@DATASETS.register("svhn")
def svhn(cfg: DataConfig, log=print) -> RawData:
    """SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``; downloaded by torchvision when
    ``data.download`` is true). Label 10 in the files means digit 0."""
    if not cfg.root:
        raise DataError("data.root is required for svhn")
    root = Path(cfg.root).expanduser()
    splits = {}
    for name in ("train", "test"):
        path = root / f"{name}_32x32.mat"
        if not path.is_file():
            if not cfg.download:
                raise DataError(f"SVHN file not found: {path}; set data.download=true when online")
            import torchvision

            torchvision.datasets.SVHN(str(root), split=name, download=True)
        splits[name] = _read_svhn(path)
    return RawData(
        splits["train"],
        None,
        splits["test"],
        [str(d) for d in range(10)],
        SVHN_MEAN,
        SVHN_STD,
        source={"root": str(root)},
    )


def _read_svhn(path: Path) -> Split:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
        pixels, digits = np.asarray(mat["X"]), np.asarray(mat["y"])
        # checked, not cast (as CIFAR-10's batches): a float pixel was cut, a label outside 1-10 wrapped
        # into a digit by the % 10, and a label count other than the images' was an assert's traceback
        images = np.ascontiguousarray(_as_pixels(pixels, "X").transpose(3, 2, 0, 1))  # HWCN → NCHW
        # MATLAB saves numbers as double by default: whole-numbered floats are labels too
        whole = digits.dtype.kind in "iu" or (digits.dtype.kind == "f" and bool(np.all(np.mod(digits, 1) == 0)))
        if not whole or digits.size != len(images):
            raise ValueError(f"its y must be one integer label per image, got {digits.dtype} {list(digits.shape)}")
        if digits.size and (digits.min() < 1 or digits.max() > 10):
            raise ValueError(f"its y must be labels 1-10, got {int(digits.min())} to {int(digits.max())}")
        labels = digits.astype(np.int64).reshape(-1) % 10
    # scipy's MatReadError (a truncated or foreign file) is no ValueError
    except (OSError, KeyError, ValueError, scipy.io.matlab.MatReadError) as exc:
        raise DataError(f"cannot read SVHN file {path}: {first_line(exc, 200)}") from None
    return Split(images, labels)


SHAPES_SAMPLES = 2000  # data.samples default: a seconds-long generation, enough to learn from
SHAPES_SIZE = 32


@DATASETS.register("shapes")
@segmentation
def shapes(cfg: DataConfig, log=print) -> RawData:
    """Generated binary segmentation (no download): ellipses, rectangles and triangles (the mask) on striped,
    noisy backgrounds with distractor lines; RGB, data.image_size (32) square, data.samples (2,000) images,
    seeded by data.split_seed; test = data.test_fraction."""
    from edgekd.data.shapes import generate

    n = cfg.samples or SHAPES_SAMPLES
    side = cfg.image_size or SHAPES_SIZE
    if side < 8:
        raise DataError(f"shapes: data.image_size must be at least 8, got {side}")
    images, masks = generate(n, (side, side), cfg.split_seed)
    train, test = split_off(Split.segmentation(images, masks), cfg.test_fraction, cfg.split_seed)
    return RawData(
        train, None, test, ["foreground"], source={"name": "edgekd.data.shapes", "samples": n, "seed": cfg.split_seed}
    )


shapes.generated = True


@DATASETS.register("segfolder")
@segmentation
def segfolder(cfg: DataConfig, log=print) -> RawData:
    """Binary segmentation from root/{train,test}[,val]/images/<stem>.png|jpg + masks/<stem>.png (nonzero =
    foreground), a folder or an archive of one; channels and size come from the files."""
    from edgekd.data.segfolder import load_segfolder

    if cfg.storage == "stream":
        raise DataError(
            "data.storage=stream is for imagefolder; segfolder decodes images and masks into memory (cached)"
        )
    train, val, test, base = load_segfolder(cfg.root, cfg.image_size, cfg.cache_dir, log=log)
    return RawData(train, val, test, ["foreground"], source={"root": str(base)})
