"""Data: registered sources → one in-memory :class:`Dataset` with train/val/test splits."""

from __future__ import annotations

from edgekd.config import DataConfig
from edgekd.data.dataset import Dataset, Split
from edgekd.errors import DataError

__all__ = ["Dataset", "Split", "load_dataset", "resolve_augment"]


def resolve_augment(setting: str, channels: int, size: tuple[int, int]) -> str:
    """``auto`` → random crop + flip for 32×32 colour images (the CIFAR/SVHN recipe), none otherwise:
    flips would corrupt digits and crops matter little at 8×8."""
    if setting != "auto":
        return setting
    return "crop_flip" if channels == 3 and size == (32, 32) else "none"


def load_dataset(cfg: DataConfig, log=print) -> Dataset:
    from edgekd.data.shift import apply_shift
    from edgekd.data.sources import DATASETS
    from edgekd.data.split import channel_stats, split_off

    raw = DATASETS.get(cfg.name)(cfg, log=log)
    train, val, test = raw.train, raw.val, raw.test
    if val is None:
        if cfg.val_fraction <= 0:
            raise DataError("data.val_fraction is 0 and the data has no val split: model selection needs one")
        train, val = split_off(train, cfg.val_fraction, cfg.split_seed)
    if cfg.train_limit is not None and cfg.train_limit < len(train):
        _, train = split_off(train, cfg.train_limit / len(train), cfg.split_seed + 1)
    if len(train) == 0 or len(val) == 0 or len(test) == 0:
        raise DataError(f"dataset {cfg.name!r} has an empty split (train {len(train)}, val {len(val)}, test {len(test)})")
    mean, std = cfg.mean or raw.mean, cfg.std or raw.std
    if cfg.shift != "none" and train.lazy:
        raise DataError(f"data.shift needs decoded images; set data.storage=memory (the data is streamed from {cfg.root})")
    if cfg.shift != "none":
        # a shifted domain is a different distribution: declared statistics no longer describe it
        train, val, test = (apply_shift(s, cfg.shift, name, cfg.split_seed) for s, name in ((train, "train"), (val, "val"), (test, "test")))
        mean, std = cfg.mean, cfg.std
    if mean is None or std is None:
        # streamed images: estimated from 5,000 of them rather than decoding the whole set once more
        mean, std = channel_stats(train.images, max_images=5000 if train.lazy else None)
    channels = train.images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"normalization has {len(mean)} values but the images have {channels} channel(s)")
    size = (int(train.images.shape[2]), int(train.images.shape[3]))
    return Dataset(
        name=cfg.name,
        train=train,
        val=val,
        test=test,
        classes=raw.classes,
        mean=tuple(mean),
        std=tuple(std),
        augment=resolve_augment(cfg.augment, channels, size),
        crop_padding=cfg.crop_padding,
        source=raw.source,
        shift=cfg.shift,
    )
