"""The in-memory form every data source produces: raw uint8 images + int labels, per split.

Images stay uint8 (N, C, H, W) until the batch loader normalizes them, so that the same arrays
feed training, int8 calibration and the bundle's ``eval.npz`` (which a device reads without torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, C, H, W); or LazyImages (decoded on access, data.storage=stream)
    labels: np.ndarray  # int64 (N,)

    def __post_init__(self) -> None:
        assert self.images.dtype == np.uint8 and self.images.ndim == 4, self.images.shape
        assert self.labels.ndim == 1 and len(self.labels) == len(self.images)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lazy(self) -> bool:
        return not isinstance(self.images, np.ndarray)

    def take(self, index: np.ndarray) -> Split:
        images = self.images.take(index) if self.lazy else self.images[index]
        return Split(images, self.labels[index])


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: tuple[float, ...]  # per channel, on 0–1 pixels
    std: tuple[float, ...]
    augment: str  # resolved: none | crop | flip | crop_flip
    crop_padding: int = 4
    source: dict = field(default_factory=dict)  # where the data came from, for the run's record
    shift: str = "none"  # data.shift applied to every split (a synthetic target domain)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    def describe(self) -> dict:
        """What a checkpoint records about the data it was trained on."""
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": list(self.image_size),
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            **({"shift": self.shift} if self.shift != "none" else {}),
        }


def concat(*splits: Split) -> Split:
    """One split holding the samples of all (e.g. labeled data + an unlabeled transfer set)."""
    return Split(np.concatenate([s.images for s in splits]), np.concatenate([s.labels for s in splits]))
