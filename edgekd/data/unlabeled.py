"""Unlabeled images (a KD transfer set): every image under a folder, labels ignored.

Accepted layouts: a flat folder of images, an ImageFolder (``<class>/*``, or ``train/<class>/*``
whose ``train/`` alone is used so that a dataset's test images never leak in), nested folders, or
an archive of any of these. Images are decoded once (cached like ImageFolder data) and brought to
the labeled data's channels and size, so that both can share a batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.data.archive import extract_once, find_layout_root, is_archive
from edgekd.data.dataset import Split
from edgekd.data.imagefolder import load_split_cached, match_shape
from edgekd.data.images import IMAGE_SUFFIXES, image_files
from edgekd.errors import DataError

UNLABELED = -1  # the label an unlabeled image carries: cross-entropy ignores it, the soft term does not


def find_images(folder: Path) -> list[Path]:
    """Every image file below ``folder`` (hidden entries skipped), in a stable order."""
    return image_files(
        p for p in folder.rglob("*") if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def load_unlabeled(
    root: str, shape: tuple[int, int, int], cache_dir: str | None = None, key: str = "distill.transfer.set", log=print
) -> Split:
    """The images under ``root`` as uint8 (N, *shape) with every label :data:`UNLABELED`."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{key} not found: {path}")
    if is_archive(path):
        path = extract_once(path, cache_dir, log=log)
    if not path.is_dir():
        raise DataError(f"{key} is neither a folder nor a .tar.gz/.tgz/.tar/.zip archive: {path}")
    layout = find_layout_root(path)
    if (layout / "train").is_dir():
        path = layout / "train"
    files = find_images(path)
    if not files:
        raise DataError(f"{key}: no images under {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    split = load_split_cached(files, np.full(len(files), UNLABELED, dtype=np.int64), None, cache_dir, log)
    return match_shape(split, shape)
