"""Deterministic domain shifts (``data.shift``): a second domain made from data we already have.

Domain adaptation needs a source and a target domain; offline, the target can be the same images
seen through a fixed corruption (digits → inverted digits, CIFAR-10 → blurred CIFAR-10). Every
shift keeps the array shape (N, C, H, W) and dtype uint8, so any model of the source fits the
target, and depends only on (shift, split name, split_seed): each run sees the same target images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from edgekd.data.dataset import Split

SHIFTS = ("none", "grayscale", "blur", "invert", "noise", "color_jitter")

NOISE_STD = 25.0  # Gaussian pixel noise on the 0–255 scale: clearly visible, digits stay legible
JITTER = 0.4  # colour jitter: brightness, contrast and saturation factors drawn from [1-J, 1+J]


def _rng(seed: int, split: str) -> np.random.Generator:
    # one stream per (seed, split): the same image gets the same corruption in every run
    return np.random.default_rng([seed, sum(map(ord, split))])


def _grayscale(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if x.shape[1] == 1:
        return x  # already gray: the shift is a no-op by definition
    # ITU-R 601 luma, replicated so that the channel count (and every model's stem) stays the same
    luma = np.tensordot(np.array([0.299, 0.587, 0.114]), x[:, :3].astype(np.float64), axes=(0, 1))
    return np.repeat(np.round(luma)[:, None], x.shape[1], axis=1).astype(np.uint8)


def _blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # separable [1, 2, 1]/4 binomial filter (≈ Gaussian σ 0.7), edge-replicated, applied twice
    # (σ ≈ 1): strong enough to matter at 8×8 and 32×32 without erasing the content
    y = x.astype(np.float64)
    for _ in range(2):
        for axis in (2, 3):
            p = np.pad(y, [(0, 0)] * axis + [(1, 1)] + [(0, 0)] * (3 - axis), mode="edge")
            lo, mid, hi = (np.take(p, range(i, i + y.shape[axis]), axis=axis) for i in range(3))
            y = (lo + 2 * mid + hi) / 4
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def _invert(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 255 - x


def _noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.round(x + rng.normal(0.0, NOISE_STD, size=x.shape)), 0, 255).astype(np.uint8)


def _color_jitter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, c = x.shape[:2]
    y = x.astype(np.float64)
    brightness, contrast, saturation = (rng.uniform(1 - JITTER, 1 + JITTER, size=(n, 1, 1, 1)) for _ in range(3))
    y = y * brightness
    mean = y.mean(axis=(1, 2, 3), keepdims=True)
    y = mean + (y - mean) * contrast
    if c == 3:  # saturation: blend with the image's own gray version
        gray = np.tensordot(np.array([0.299, 0.587, 0.114]), y, axes=(0, 1))[:, None]
        y = gray + (y - gray) * saturation
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


_FUNCTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "grayscale": _grayscale,
    "blur": _blur,
    "invert": _invert,
    "noise": _noise,
    "color_jitter": _color_jitter,
}


def apply_shift(split: Split, shift: str, split_name: str, seed: int) -> Split:
    """The split seen through ``shift`` (labels and masks unchanged: the shifts are photometric)."""
    if shift == "none":
        return split
    images = _FUNCTIONS[shift](split.images, _rng(seed, split_name))
    return dataclasses.replace(split, images=np.ascontiguousarray(images))
