"""ImageFolder data: ``root/{train,test}[,val]/<class name>/*.<image>``, decoded once and cached.

Input size, channel count and classes come from the files: grayscale when every image is
grayscale, RGB otherwise; the images' own size when they agree (else the most common size, or
``data.image_size``). Decoded arrays are cached as ``.npy`` keyed by every file's path, size and
mtime, so a second run reads CIFAR-10 in well under a second instead of decoding 60k JPEGs.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from edgekd.atomic import write_with
from edgekd.data.archive import extract_once, find_layout_root, is_archive
from edgekd.data.cache import cache_root, fingerprint
from edgekd.data.dataset import Split
from edgekd.data.images import GRAY_MODES, image_files, open_image, read_image, refuse_broken_links
from edgekd.errors import DataError
from edgekd.limits import control_character_in


def resolve_root(root: str | None, cache_dir: str | None, log=print) -> Path:
    if not root:
        raise DataError("data.root is required for this dataset (a folder with train/ and test/, or an archive of one)")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"data root not found: {path}")
    if is_archive(path):
        path = extract_once(path, cache_dir, log=log)
    if not path.is_dir():
        raise DataError(f"data root is neither a folder nor a .tar.gz/.tgz/.tar/.zip archive: {path}")
    return find_layout_root(path)


def scan_split(split_dir: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names (sorted folder names) and the image files with their label index."""
    if not split_dir.is_dir():
        raise DataError(f"missing split folder: {split_dir} ({_holds(split_dir.parent)})")
    refuse_broken_links(p for p in split_dir.iterdir() if not p.name.startswith("."))  # hidden: never a class
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"no class folders in {split_dir} (expected {split_dir}/<class>/<image files>)")
    # a class folder's name becomes a label that every table, log and bundle prints as it is: a
    # newline or an escape sequence in one rewrote the terminal (and the bundle's manifest refuses it)
    unprintable = control_character_in(found)
    if unprintable is not None:
        raise DataError(
            f"class folder {unprintable!r} in {split_dir} has a control character (a newline, an escape) in its "
            "name; rename it"
        )
    if classes is None:
        if len(found) < 2:  # one class: every prediction right, a KD loss of 0, nothing learnt
            raise DataError(f"{split_dir} has one class folder ({found[0]}); classification needs at least 2 classes")
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(f"{split_dir} has classes that train/ lacks: {', '.join(extra)}")
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue  # a class may be absent from val/test; train defines the classes, so never there
        images = image_files(folder.iterdir())
        if not images:
            raise DataError(f"class folder '{name}' in {split_dir} has no images")
        files.extend(images)
        labels.extend([index] * len(images))
    return classes, files, np.asarray(labels, dtype=np.int64)


def _holds(folder: Path) -> str:
    """What ``folder`` holds, for an error that says why a split was not found there."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()) if folder.is_dir() else []
    if not names:
        return f"{folder} is empty" if folder.is_dir() else f"{folder} is not a folder"
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return f"{folder} holds {shown}"


def _decode(args: tuple[list[str], tuple[int, int] | None]) -> list[tuple[np.ndarray, bool]]:
    """Worker: decode files to HWC uint8 RGB arrays (resized when a size is given) + was-grayscale."""
    from PIL import Image

    paths, size = args
    out = []
    for path in paths:
        img = read_image(path)  # mode L or RGB
        gray = img.mode == "L"
        img = img.convert("RGB")
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        out.append((np.asarray(img, dtype=np.uint8), gray))
    return out


def _decode_all(files: list[Path], size: tuple[int, int] | None) -> list[tuple[np.ndarray, bool]]:
    paths = [str(p) for p in files]
    workers = min(os.cpu_count() or 1, 8)
    if len(paths) < 2000 or workers < 2:
        return _decode((paths, size))
    chunk = max(256, len(paths) // (workers * 8))
    jobs = [(paths[i : i + chunk], size) for i in range(0, len(paths), chunk)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [item for part in pool.map(_decode, jobs) for item in part]


def decode_images(files: list[Path], image_size: int | None, log=print) -> np.ndarray:
    """Decode to uint8 (N, C, H, W); C is 1 when every image is grayscale."""
    fixed = (image_size, image_size) if image_size else None
    decoded = _decode_all(files, fixed)
    shapes = collections.Counter(arr.shape[:2] for arr, _ in decoded)
    if len(shapes) > 1:
        (h, w), _ = shapes.most_common(1)[0]
        log(
            f"images vary in size ({len(shapes)} sizes); resizing all to {h}x{w}, the most common (set data.image_size "
            "to choose)"
        )
        from PIL import Image

        decoded = [
            (
                arr
                if arr.shape[:2] == (h, w)
                else np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR)),
                g,
            )
            for arr, g in decoded
        ]
    stack = np.stack([arr for arr, _ in decoded]).transpose(0, 3, 1, 2)  # NHWC → NCHW
    if all(g for _, g in decoded):
        stack = stack[:, :1]
    return np.ascontiguousarray(stack)


def load_split_cached(
    files: list[Path], labels: np.ndarray, image_size: int | None, cache_dir: str | None, log=print
) -> Split:
    stats = [(str(p), st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()]]
    key = fingerprint("imagefolder-v2", image_size, stats)  # v2: 16-bit files by their top byte
    cached = cache_root(cache_dir) / "decoded" / f"{key}.npy"
    if cached.is_file():
        try:
            return Split(np.load(cached), labels)
        except (OSError, ValueError, AssertionError):
            log(f"decoded-image cache {cached} is unreadable; decoding again")
    log(f"decoding {len(files)} images from {files[0].parent.parent} (cached afterwards)")
    images = decode_images(files, image_size, log=log)
    write_with(cached, lambda fh: np.save(fh, images))
    return Split(images, labels)


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); a generous guess elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def probe(files: list[Path], image_size: int | None, n: int = 64) -> tuple[int, tuple[int, int]]:
    """(channels, (H, W)) from the headers of up to ``n`` files, evenly spaced (no decoding)."""
    picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(n, len(files)))]
    modes, sizes = [], collections.Counter()
    for path in picks:
        with open_image(path) as img:
            modes.append(img.mode)
            sizes[(img.size[1], img.size[0])] += 1
    channels = 1 if all(m in GRAY_MODES for m in modes) else 3
    size = (image_size, image_size) if image_size else sizes.most_common(1)[0][0]
    return channels, size


def load_imagefolder(
    root: str | None,
    image_size: int | None,
    cache_dir: str | None,
    log=print,
    storage: str = "memory",
    memory_limit_gb: float | None = None,
) -> tuple[Split, Split | None, Split, list[str], Path]:
    """(train, val or None, test, classes, resolved root).

    ``storage``: ``memory`` decodes everything once (cached); ``stream`` keeps file lists and
    decodes on access (:class:`LazyImages`); ``auto`` streams when the decoded images would take
    more than ``memory_limit_gb`` (default: half the available memory)."""
    base = resolve_root(root, cache_dir, log=log)
    classes, train_files, train_labels = scan_split(base / "train")
    _, test_files, test_labels = scan_split(base / "test", classes)
    val_scan = scan_split(base / "val", classes) if (base / "val").is_dir() else None
    if storage != "memory":
        channels, size = probe(train_files, image_size)
        n = len(train_files) + len(test_files) + (len(val_scan[1]) if val_scan else 0)
        need = n * channels * size[0] * size[1]
        limit = memory_limit_gb * (1 << 30) if memory_limit_gb else available_memory_bytes() / 2
        if storage == "stream" or need > limit:
            from edgekd.data.lazy import LazyImages

            log(
                f"streaming {n} images from {base} ({need / (1 << 30):.1f} GiB decoded; decoded on access by "
                "DataLoader workers)"
            )

            def lazy(files: list[Path], labels: np.ndarray) -> Split:
                return Split(LazyImages(files, channels, size), labels)

            val = lazy(val_scan[1], val_scan[2]) if val_scan else None
            return lazy(train_files, train_labels), val, lazy(test_files, test_labels), classes, base
    train = load_split_cached(train_files, train_labels, image_size, cache_dir, log)
    test = load_split_cached(test_files, test_labels, image_size, cache_dir, log)
    val = None
    if val_scan is not None:
        _, val_files, val_labels = val_scan
        val = load_split_cached(val_files, val_labels, image_size, cache_dir, log)
    # every split must feed the same model input as train (channels and size)
    test = match_shape(test, train.images.shape[1:])
    val = match_shape(val, train.images.shape[1:]) if val is not None else None
    return train, val, test, classes, base


def match_shape(split: Split, shape: tuple[int, ...]) -> Split:
    """Bring a split to the training split's channels and size (e.g. a stray RGB test image)."""
    if split.images.shape[1:] == tuple(shape):
        return split
    from PIL import Image

    c, h, w = shape
    out = []
    for img in split.images:
        arr = img.transpose(1, 2, 0)
        pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        pil = pil.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(pil, dtype=np.uint8)
        out.append(a[None] if c == 1 else a.transpose(2, 0, 1))
    return Split(np.stack(out), split.labels)
