"""Reading one image file a user gave: training data (ImageFolder, segmentation folders, streamed
files) and ``edgekd predict`` open images here and nowhere else, so both see the same pixels.

* Size: an image of more than :data:`~edgekd.limits.MAX_IMAGE_PIXELS` is refused from its header,
  before anything is decoded (Pillow's own decompression-bomb check is an error that is not an
  OSError above 179 Mpixel and a printed warning from 89 Mpixel; neither reaches the user).
* Depth: 16-bit grayscale (modes ``I;16*``, and ``I`` holding 0…65535) becomes 8-bit by its top
  byte (``value >> 8``), as Pillow itself reads 16-bit RGB PNGs; Pillow's ``convert("L")`` would
  clip every value above 255 to white. Floating-point images (mode ``F``: a value range no file
  states, maybe NaN) and 32-bit integers outside 0…65535 are refused: no scaling of them is right
  for every file.

Imports numpy and the standard library; Pillow when an image is opened (``edgekd[rpi]`` has it).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import DataError, EdgekdError, first_line
from edgekd.limits import MAX_IMAGE_PIXELS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
# Pillow modes of one-channel files (read as grayscale; a dataset of only these is 1-channel)
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def refuse_broken_links(entries: Iterable[Path], error: type[EdgekdError] = DataError) -> None:
    """An ``error`` line for a link among ``entries`` that leads nowhere (its target gone, or a loop):
    ``is_file`` and ``is_dir`` are both false for one, so listings that keep files or folders left
    such an image or class out without a word."""
    for entry in entries:
        if entry.is_symlink() and not entry.exists():
            raise error(f"{entry} is a link that leads nowhere (its target is missing or it loops); remove or fix it")


def image_files(entries: Iterable[Path], error: type[EdgekdError] = DataError) -> list[Path]:
    """The image files among ``entries`` (by suffix), sorted; a link among them that leads nowhere
    is an ``error`` (:func:`refuse_broken_links`), never left out without a word."""
    named = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    refuse_broken_links(named, error)
    return sorted(p for p in named if p.is_file())


def _too_large(what: str, path: Any, pixels: int | None) -> str:
    size = f"{pixels} pixels" if pixels is not None else "more pixels than Pillow allows"
    return f"cannot read {what} {path}: too large ({size}; edgekd reads images of up to {MAX_IMAGE_PIXELS} pixels)"


@contextmanager
def open_image(path: str | Path, error: type[EdgekdError] = DataError, what: str = "image") -> Iterator[Any]:
    """The PIL image at ``path``, header read, nothing decoded yet; closed afterwards. A file Pillow
    cannot read, or one of more than MAX_IMAGE_PIXELS, is one ``error`` line naming it; so is an
    OSError/ValueError raised while the caller decodes it inside the ``with``."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 Mpixel, below its own error: the check below refuses those anyway
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:  # not an OSError; the message holds the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise error(_too_large(what, path, int(found.group(1)) if found else None)) from None
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} {path}: {first_line(exc)}") from None
    with img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise error(_too_large(what, path, width * height))
        try:
            yield img
        except (OSError, ValueError) as exc:  # truncated data, an unsupported conversion …
            raise error(f"cannot read {what} {path}: {first_line(exc)}") from None


def read_image(path: str | Path, error: type[EdgekdError] = DataError) -> Any:
    """The image file at ``path`` decoded, as a PIL image in mode ``L`` (a one-channel file) or
    ``RGB`` (any other); see the module's notes for sizes and bit depths."""
    with open_image(path, error) as img:
        img.load()
        return as_8bit(img, path, error)


def as_8bit(img: Any, name: Any, error: type[EdgekdError] = DataError) -> Any:
    """A PIL image as mode ``L`` (one-channel modes) or ``RGB`` (the others): 16-bit values by
    their top byte; float images, and 32-bit integers outside 0…65535, refused naming ``name``."""
    mode = img.mode
    if mode == "F":
        raise error(
            f"cannot read image {name}: floating-point pixels (mode F) have no fixed range; "
            "save it as an 8- or 16-bit image"
        )
    if mode == "I" or mode.startswith("I;16"):
        arr = np.asarray(img)
        if mode == "I" and arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise error(
                f"cannot read image {name}: 32-bit integer pixels from {int(arr.min())} to {int(arr.max())} "
                "(mode I); edgekd reads 8- and 16-bit images"
            )
        from PIL import Image

        return Image.fromarray((arr.astype(np.uint16) >> 8).astype(np.uint8))  # the top byte of 16
    if mode in ("L", "RGB"):
        return img
    try:
        return img.convert("L" if mode in GRAY_MODES else "RGB")
    except (OSError, ValueError) as exc:
        raise error(f"cannot read image {name}: {first_line(exc)}") from None
