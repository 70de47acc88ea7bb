"""Image + mask folders for binary segmentation: ``root/{train,test}[,val]/{images,masks}/``.

An image ``images/<stem>.<png|jpg|…>`` is paired with ``masks/<stem>.png`` (or another lossless
format); any nonzero mask pixel is foreground, in any mode (grayscale, RGB, palette index; an
alpha channel is ignored). Images may have any size and channel count, as in ImageFolder: RGB
unless every training image is grayscale, and the most common training size (or
``data.image_size``) for every split, images resized bilinearly and masks by nearest neighbour. A
mask must have its image's size before that resize: a mask of another size is a broken pair.

The root may be an archive (extracted once into the cache); decoded images and masks are cached
as ``.npz`` keyed by every file's path, size and mtime.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from edgekd.atomic import write_with
from edgekd.data.cache import cache_root, fingerprint
from edgekd.data.dataset import Split
from edgekd.data.imagefolder import _decode_all, resolve_root
from edgekd.data.images import GRAY_MODES, IMAGE_SUFFIXES, open_image, refuse_broken_links
from edgekd.errors import DataError

# masks must be exact: JPEG's lossy edges would invent foreground pixels
MASK_SUFFIXES = {".png", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".pbm", ".ppm"}


def _files(folder: Path, suffixes: set[str]) -> dict[str, Path]:
    """stem → file; two files with one stem are ambiguous pairs."""
    out: dict[str, Path] = {}
    entries = sorted(folder.iterdir())
    refuse_broken_links(p for p in entries if p.suffix.lower() in suffixes)
    for path in entries:
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stem in out:
                raise DataError(
                    f"{out[path.stem].name} and {path.name} in {folder} share the stem {path.stem!r}: which one pairs "
                    "with its mask?"
                )
            out[path.stem] = path
    return out


def scan_pairs(split_dir: Path) -> tuple[list[Path], list[Path]]:
    """(image files, mask files), paired by stem, sorted by stem."""
    if not split_dir.is_dir():
        raise DataError(f"missing split folder: {split_dir}")
    images_dir, masks_dir = split_dir / "images", split_dir / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(
                f"{split_dir} has no {folder.name}/ folder (expected {split_dir}/images/<stem>.png|jpg and "
                f"{split_dir}/masks/<stem>.png)"
            )
    images = _files(images_dir, IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"no images in {images_dir}")
    masks = _files(masks_dir, MASK_SUFFIXES)
    missing = [stem for stem in images if stem not in masks]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"image {images[missing[0]]} has no mask: expected {masks_dir}/{missing[0]}.png{more}")
    stems = sorted(images)
    return [images[s] for s in stems], [masks[s] for s in stems]


def _size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header."""
    with open_image(path) as img:
        return img.size[1], img.size[0]


def check_sizes(images: list[Path], masks: list[Path]) -> list[tuple[int, int]]:
    """The (H, W) of every image; a mask of another size than its image is an error."""
    sizes = []
    for img, mask in zip(images, masks):
        si, sm = _size(img), _size(mask)
        if si != sm:
            raise DataError(f"mask {mask} is {sm[0]}×{sm[1]} (H×W) but its image {img.name} is {si[0]}×{si[1]}")
        sizes.append(si)
    return sizes


def decode_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) 0/1 at ``size``: any nonzero value of any channel (alpha aside) is foreground."""
    from PIL import Image

    with open_image(path, what="mask") as img:
        if img.mode in ("LA", "RGBA", "PA"):
            img = img.convert(img.mode[:-1] if img.mode != "PA" else "P")  # drop alpha: it is not the mask
        arr = np.asarray(img)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            # NaN != 0 would make an undefined pixel foreground
            raise DataError(f"cannot read mask {path}: it has NaN or infinite pixels (mode {img.mode})")
        fg = (arr != 0).any(axis=2) if arr.ndim == 3 else arr != 0
    if fg.shape != tuple(size):
        fg = (
            np.asarray(Image.fromarray(fg.astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.NEAREST))
            > 0
        )
    return fg.astype(np.uint8)


def decode_split(
    images: list[Path], masks: list[Path], size: tuple[int, int], channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, C, H, W) images, uint8 (N, 1, H, W) masks) at ``size`` with ``channels`` (1 or 3)."""
    decoded = _decode_all(images, size)  # RGB HWC, resized bilinearly where needed
    stack = np.stack([arr for arr, _ in decoded]).transpose(0, 3, 1, 2)  # NHWC → NCHW
    if channels == 1:
        # a gray file decodes to three equal channels; a stray colour image becomes its luma
        luma = np.tensordot(np.array([0.299, 0.587, 0.114]), stack.astype(np.float64), axes=(0, 1))
        stack = np.round(luma)[:, None].astype(np.uint8)
    mask_arr = np.stack([decode_mask(m, size) for m in masks])[:, None]
    return np.ascontiguousarray(stack), np.ascontiguousarray(mask_arr)


def load_split_cached(
    images: list[Path], masks: list[Path], size: tuple[int, int], channels: int, cache_dir: str | None, log=print
) -> Split:
    stats = [(str(p), st.st_size, st.st_mtime_ns) for p in (*images, *masks) for st in [p.stat()]]
    key = fingerprint("segfolder-v2", size, channels, stats)  # v2: 16-bit files by their top byte
    cached = cache_root(cache_dir) / "decoded" / f"{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                return Split.segmentation(z["images"], z["masks"])
        except (OSError, ValueError, KeyError, AssertionError):
            log(f"decoded-image cache {cached} is unreadable; decoding again")
    log(f"decoding {len(images)} images and masks from {images[0].parent.parent} (cached afterwards)")
    arr, mask_arr = decode_split(images, masks, size, channels)
    write_with(cached, lambda fh: np.savez(fh, images=arr, masks=mask_arr))
    return Split.segmentation(arr, mask_arr)


def load_segfolder(
    root: str | None, image_size: int | None, cache_dir: str | None, log=print
) -> tuple[Split, Split | None, Split, Path]:
    """(train, val or None, test, resolved root)."""
    base = resolve_root(root, cache_dir, log=log)
    scans = {name: scan_pairs(base / name) for name in ("train", "test")}
    if (base / "val").is_dir():
        scans["val"] = scan_pairs(base / "val")
    sizes = {name: check_sizes(*pair) for name, pair in scans.items()}
    if image_size:
        size = (image_size, image_size)
    else:
        counts = collections.Counter(sizes["train"])
        size = counts.most_common(1)[0][0]
        if len(counts) > 1:
            log(
                f"images vary in size ({len(counts)} sizes); resizing all to {size[0]}x{size[1]}, the most common (set "
                "data.image_size to choose)"
            )
    # channels from the training images' modes (headers only), so every split feeds the same input
    modes = []
    for path in scans["train"][0]:
        with open_image(path) as img:
            modes.append(img.mode)
    channels = 1 if all(m in GRAY_MODES for m in modes) else 3
    splits = {name: load_split_cached(*pair, size, channels, cache_dir, log) for name, pair in scans.items()}
    return splits["train"], splits.get("val"), splits["test"], base
