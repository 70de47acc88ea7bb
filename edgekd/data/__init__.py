"""Data: registered sources → one in-memory :class:`Dataset` with train/val/test splits."""

from __future__ import annotations

from edgekd.config import DataConfig
from edgekd.data.dataset import Dataset, Split
from edgekd.errors import DataError

__all__ = ["Dataset", "Split", "dataset_task", "load_dataset", "resolve_augment"]


def resolve_augment(setting: str, channels: int, size: tuple[int, int], task: str = "classification") -> str:
    """``auto`` → what the task's data calls for (:meth:`edgekd.tasks.Task.auto_augment`):
    classification: random crop + flip for 32×32 colour images (the CIFAR/SVHN recipe), none
    otherwise; segmentation: crop + flip (the masks move with their images)."""
    if setting != "auto":
        return setting
    from edgekd.tasks import get_task

    return get_task(task).auto_augment(channels, size)


def dataset_task(name: str) -> str:
    """The task of a registered data source (known before its data is read: configs are checked first)."""
    from edgekd.data.sources import DATASETS

    return getattr(DATASETS.get(name), "task", "classification")


def load_dataset(cfg: DataConfig, log=print) -> Dataset:
    from edgekd.data.shift import apply_shift
    from edgekd.data.sources import DATASETS
    from edgekd.data.split import channel_stats, split_off

    source = DATASETS.get(cfg.name)
    if cfg.samples is not None and not getattr(source, "generated", False):
        raise DataError(
            f"data.samples sets how many images a generated dataset makes; {cfg.name!r} reads its images from files"
        )
    raw = source(cfg, log=log)
    task = dataset_task(cfg.name)
    if task == "classification" and len(raw.classes) < 2:  # any source; ImageFolder says so before decoding
        raise DataError(f"dataset {cfg.name!r} has {len(raw.classes)} class(es); classification needs at least 2")
    train, val, test = raw.train, raw.val, raw.test
    if val is None:
        if cfg.val_fraction <= 0:
            raise DataError("data.val_fraction is 0 and the data has no val split: model selection needs one")
        train, val = split_off(train, cfg.val_fraction, cfg.split_seed)
    if cfg.train_limit is not None and cfg.train_limit < len(train):
        _, train = split_off(train, cfg.train_limit / len(train), cfg.split_seed + 1)
    if len(train) == 0 or len(val) == 0 or len(test) == 0:
        raise DataError(
            f"dataset {cfg.name!r} has an empty split (train {len(train)}, val {len(val)}, test {len(test)})"
        )
    mean, std = cfg.mean or raw.mean, cfg.std or raw.std
    if cfg.shift != "none" and train.lazy:
        raise DataError(
            f"data.shift needs decoded images; set data.storage=memory (the data is streamed from {cfg.root})"
        )
    if cfg.shift != "none":
        # a shifted domain is a different distribution: declared statistics no longer describe it
        train, val, test = (
            apply_shift(s, cfg.shift, name, cfg.split_seed)
            for s, name in ((train, "train"), (val, "val"), (test, "test"))
        )
        mean, std = cfg.mean, cfg.std
    if mean is None or std is None:
        # streamed images: estimated from 5,000 of them rather than decoding the whole set once more
        mean, std = channel_stats(train.images, max_images=5000 if train.lazy else None)
    if task == "segmentation" and any(s.masks is None for s in (train, val, test)):
        raise DataError(
            f"dataset {cfg.name!r} is a segmentation source but a split has no masks"
        )  # a source's bug, said plainly
    channels = train.images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"normalization has {len(mean)} values but the images have {channels} channel(s)")
    size = (int(train.images.shape[2]), int(train.images.shape[3]))
    augment = resolve_augment(cfg.augment, channels, size, task)
    if cfg.crop_fill == "reflect" and "crop" in augment and cfg.crop_padding >= min(size):
        # a mirror at the border reaches at most one image side less a pixel
        raise DataError(
            f"config: data.crop_padding {cfg.crop_padding} with data.crop_fill=reflect must be smaller than the "
            f"images' {min(size)} px"
        )
    return Dataset(
        name=cfg.name,
        train=train,
        val=val,
        test=test,
        classes=raw.classes,
        mean=tuple(mean),
        std=tuple(std),
        augment=augment,
        crop_padding=cfg.crop_padding,
        crop_fill=cfg.crop_fill,
        flip=cfg.flip,
        source=raw.source,
        shift=cfg.shift,
        task=task,
    )
