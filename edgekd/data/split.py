"""Seeded, stratified splits and per-channel statistics (numpy only)."""

from __future__ import annotations

import numpy as np

from edgekd.data.dataset import Split


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): ``fraction`` of every class is held out, at least one per class
    when the class has two or more samples. Deterministic for a given seed and label array."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        n_held = int(round(fraction * len(idx)))
        if fraction > 0 and n_held == 0 and len(idx) >= 2:
            n_held = 1
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def split_off(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    keep, held = stratified_split(split.labels, fraction, seed)
    return split.take(keep), split.take(held)


def channel_stats(
    images: np.ndarray, chunk: int = 4096, max_images: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to 0–1 (chunked: CIFAR-sized data fits easily,
    but float64 copies of the whole set would not for larger folders). ``max_images`` estimates
    them from an evenly spaced subset (streamed folders: decoding everything once is too slow)."""
    if max_images is not None and len(images) > max_images:
        images = images[np.linspace(0, len(images) - 1, max_images).astype(np.int64)]
    c = images.shape[1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    count = 0
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].astype(np.float64) / 255.0
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x * x).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 1e-12))
    return tuple(float(round(m, 6)) for m in mean), tuple(float(round(s, 6)) for s in std)
