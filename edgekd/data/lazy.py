"""Images decoded on access, for ImageFolders too large to hold decoded in memory (``data.storage=stream``).

:class:`LazyImages` looks like the uint8 (N, C, H, W) array the rest of edgekd expects — ``shape``,
``dtype``, ``len`` and numpy-style indexing with an int, a slice or an index array — but decodes
files only when indexed. Training reads it through a DataLoader with worker processes (see
:mod:`edgekd.data.loader`); export and bench index small subsets (calibration, eval.npz).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class LazyImages:
    def __init__(self, files: list[Path], channels: int, size: tuple[int, int]) -> None:
        self.files = [str(f) for f in files]
        self.channels = channels
        self.size = size  # (H, W)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.channels, *self.size)

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, i: int) -> np.ndarray:
        """One image as uint8 (C, H, W)."""
        from PIL import Image

        from edgekd.data.images import read_image

        h, w = self.size
        img = read_image(self.files[i]).convert("L" if self.channels == 1 else "RGB")
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
        return arr[None] if self.channels == 1 else arr.transpose(2, 0, 1)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return self.decode(int(index))
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        out = np.empty((len(index), self.channels, *self.size), dtype=np.uint8)
        for k, i in enumerate(index):
            out[k] = self.decode(int(i))
        return out

    def take(self, index: np.ndarray) -> LazyImages:
        """A lazy subset (no decoding)."""
        return LazyImages([self.files[int(i)] for i in np.asarray(index)], self.channels, self.size)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[np.arange(len(self))]
        return arr if dtype is None else arr.astype(dtype)

    def transpose(self, *axes: int) -> np.ndarray:
        return np.asarray(self).transpose(*axes)
