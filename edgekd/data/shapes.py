"""``shapes``: a generated binary-segmentation dataset, embedded (no download), seeded.

Every image is a textured background — a base colour, stripes of random period and direction, a
gradient and pixel noise — with 0–2 thin distractor lines (background too) and 1–3 filled shapes
(ellipses, rectangles, triangles, rotated) whose union is the mask. About one image in twelve has
no shape at all (an empty mask). Shape colours keep some distance from the background's, but not
always much, and the stripes and lines carry colour edges as strong as a shape's: a model must
use shape and texture, not a colour threshold, which leaves room between a teacher and a small
student.

Image ``i`` depends only on ``(seed, i)``, so a dataset of more samples extends a smaller one.
numpy only; about 0.5 ms per 32×32 image.
"""

from __future__ import annotations

import math

import numpy as np

KINDS = ("ellipse", "rectangle", "triangle")
EMPTY_SHARE = 1 / 12  # images without any shape: empty masks must be predicted empty


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each (H, W)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return y + 0.5, x + 0.5


def _shape_mask(
    kind: str, y: np.ndarray, x: np.ndarray, cy: float, cx: float, a: float, b: float, theta: float
) -> np.ndarray:
    """Boolean (H, W): the pixels whose centre lies inside the shape."""
    dy, dx = y - cy, x - cx
    c, s = math.cos(theta), math.sin(theta)
    u, v = (dx * c + dy * s) / a, (-dx * s + dy * c) / b  # the shape's own axes, unit half-sizes
    if kind == "ellipse":
        return u * u + v * v <= 1.0
    if kind == "rectangle":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    # triangle: three corners on the (a, b) ellipse at roughly 120° apart
    corners = [(math.cos(theta + k * 2 * math.pi / 3), math.sin(theta + k * 2 * math.pi / 3)) for k in range(3)]
    pts = [(cx + a * px, cy + b * py) for px, py in corners]
    inside_sign = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
        inside_sign.append((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0)
    return (inside_sign[0] & inside_sign[1] & inside_sign[2]) | (~inside_sign[0] & ~inside_sign[1] & ~inside_sign[2])


def _colour(rng: np.random.Generator, away_from: np.ndarray | None = None, min_distance: float = 0.0) -> np.ndarray:
    """A random RGB colour at least ``min_distance`` (Euclidean, 0–255 scale) from ``away_from``."""
    for _ in range(20):
        c = rng.uniform(20, 235, size=3)
        if away_from is None or np.linalg.norm(c - away_from) >= min_distance:
            return c
    return c  # a rare close colour: a hard example, not an error


def make_image(seed: int, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (3, H, W) image, uint8 (1, H, W) mask) of sample ``index``."""
    rng = np.random.default_rng([seed, index])
    h, w = size
    y, x = _grid(h, w)
    side = min(h, w)
    base = _colour(rng)
    # background texture: stripes (period 3–10 px, any direction) + a gradient + noise
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(3, 10) * side / 32
    stripes = np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period + rng.uniform(0, 2 * math.pi))
    tint = rng.uniform(-1, 1, size=3)
    image = base[:, None, None] + rng.uniform(15, 45) * stripes[None] * tint[:, None, None]
    g_angle = rng.uniform(0, 2 * math.pi)
    image = image + rng.uniform(0, 30) * ((x * math.cos(g_angle) + y * math.sin(g_angle)) / side - 0.5)[None]
    # distractor lines: colour edges that are not foreground
    for _ in range(rng.integers(0, 3)):
        theta, offset = rng.uniform(0, math.pi), rng.uniform(0.2, 0.8) * side
        dist = np.abs((x - w / 2) * math.cos(theta) + (y - h / 2) * math.sin(theta) - (offset - side / 2))
        line = dist <= rng.uniform(0.5, 1.2) * side / 32
        image[:, line] = _colour(rng)[:, None]
    mask = np.zeros((h, w), dtype=bool)
    n_shapes = 0 if rng.random() < EMPTY_SHARE else int(rng.integers(1, 4))
    for _ in range(n_shapes):
        kind = KINDS[int(rng.integers(0, len(KINDS)))]
        a, b = rng.uniform(0.12, 0.3, size=2) * side
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        inside = _shape_mask(kind, y, x, cy, cx, a, b, rng.uniform(0, math.pi))
        fill = _colour(rng, away_from=base, min_distance=60)
        # flat fill with its own fine noise: the texture differs from the striped background
        image[:, inside] = fill[:, None] + rng.normal(0, 6, size=(3, int(inside.sum())))
        mask |= inside
    image = image + rng.normal(0, rng.uniform(4, 14), size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask[None].astype(np.uint8)


def generate(n: int, size: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, H, W), masks uint8 (N, 1, H, W)) of samples 0 … n-1."""
    images = np.empty((n, 3, *size), dtype=np.uint8)
    masks = np.empty((n, 1, *size), dtype=np.uint8)
    for i in range(n):
        images[i], masks[i] = make_image(seed, i, size)
    return images, masks
