"""The in-memory form every data source produces: raw uint8 images + int labels (+ masks), per split.

Images stay uint8 (N, C, H, W) until the batch loader normalizes them, so that the same arrays
feed training, int8 calibration and the bundle's ``eval.npz`` (which a device reads without torch).
Segmentation splits also hold uint8 masks (N, 1, H, W), 0/1; their ``labels`` then are one int per
image (1 when its mask has foreground) that splits and samples are stratified by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, C, H, W); or LazyImages (decoded on access, data.storage=stream)
    labels: np.ndarray  # int64 (N,): classes; for segmentation the stratum (has foreground)
    masks: np.ndarray | None = None  # uint8 (N, 1, H, W), 1 = foreground: segmentation targets

    def __post_init__(self) -> None:
        assert self.images.dtype == np.uint8 and self.images.ndim == 4, self.images.shape
        assert self.labels.ndim == 1 and len(self.labels) == len(self.images)
        if self.masks is not None:
            n, _, h, w = self.images.shape
            assert self.masks.dtype == np.uint8 and self.masks.shape == (n, 1, h, w), (
                self.masks.shape,
                self.images.shape,
            )

    @classmethod
    def segmentation(cls, images: np.ndarray, masks: np.ndarray) -> Split:
        """A split of images and their 0/1 masks, stratified by whether a mask has foreground."""
        strata = masks.reshape(len(masks), -1).any(axis=1).astype(np.int64)
        return cls(images, strata, masks)

    @property
    def targets(self) -> np.ndarray:
        """What a model learns to predict: the masks where there are some, else the labels."""
        return self.masks if self.masks is not None else self.labels

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lazy(self) -> bool:
        return not isinstance(self.images, np.ndarray)

    def take(self, index: np.ndarray) -> Split:
        images = self.images.take(index) if self.lazy else self.images[index]
        return Split(images, self.labels[index], None if self.masks is None else self.masks[index])


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
    crop_fill: str = "zero"  # zero | reflect: what the crop's padding holds
    flip: str = "random"  # random | alternate: how the flip augmentation flips from view to view
    source: dict = field(default_factory=dict)  # where the data came from, for the run's record
    shift: str = "none"  # data.shift applied to every split (a synthetic target domain)
    task: str = "classification"  # or segmentation (edgekd.tasks): what the targets are

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    @property
    def augmentation(self) -> dict[str, Any]:
        """The training augmentation as :class:`~edgekd.data.loader.Batches` takes it: one source for
        the trainer's batches and the teacher cache's views, which must be the same crops."""
        return {
            "augment": self.augment,
            "crop_padding": self.crop_padding,
            "crop_fill": self.crop_fill,
            "flip": self.flip,
        }

    def describe(self) -> dict:
        """What a checkpoint records about the data it was trained on."""
        return {
            "dataset": self.name,
            "task": self.task,
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
    if len({s.masks is None for s in splits}) > 1:
        raise ValueError("cannot concatenate splits with and without masks")  # a caller's bug
    masks = None if splits[0].masks is None else np.concatenate([s.masks for s in splits])
    return Split(np.concatenate([s.images for s in splits]), np.concatenate([s.labels for s in splits]), masks)
