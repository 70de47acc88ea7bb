"""Device-side batches: normalization, deterministic augmentation per (seed, epoch)."""

from __future__ import annotations

import numpy as np
import torch

from edgekd.data.dataset import Split
from edgekd.data.loader import Batches


def split(n: int = 10, c: int = 3, h: int = 6, w: int = 6) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, c, h, w), dtype=np.uint8), np.arange(n) % 3)


def test_normalization_and_order_without_augmentation() -> None:
    s = split()
    b = Batches(s, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), batch_size=4)
    xs, ys = zip(*list(b))
    assert [len(y) for y in ys] == [4, 4, 2] and len(b) == 3
    x = torch.cat(xs)
    expected = (torch.from_numpy(s.images).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected)


def test_augmentation_is_a_function_of_seed_and_epoch() -> None:
    s = split()
    kw = dict(mean=(0.0,) * 3, std=(1.0,) * 3, batch_size=5, augment="crop_flip", crop_padding=2, shuffle=True)
    a, b = Batches(s, seed=7, **kw), Batches(s, seed=7, **kw)
    a.set_epoch(3)
    b.set_epoch(3)
    first = [x for x, _ in a]
    assert all(torch.equal(x, y) for x, y in zip(first, [x for x, _ in b]))
    b.set_epoch(4)
    assert not all(torch.equal(x, y) for x, y in zip(first, [x for x, _ in b]))


def test_crop_is_a_shifted_window_of_the_padded_image() -> None:
    s = split(n=64)
    b = Batches(s, (0.0,) * 3, (1.0,) * 3, batch_size=64, augment="crop", crop_padding=2, shuffle=False)
    ((x, _),) = list(b)
    x = (x * 255).round().to(torch.uint8)
    padded = torch.nn.functional.pad(torch.from_numpy(s.images), (2, 2, 2, 2))
    for i in range(64):
        found = any(torch.equal(x[i], padded[i, :, dy : dy + 6, dx : dx + 6]) for dy in range(5) for dx in range(5))
        assert found, i
    assert not all(torch.equal(x[i], torch.from_numpy(s.images[i])) for i in range(64))  # it does move things


def test_reflect_crop_is_a_window_of_the_mirror_padded_image_and_masks_follow() -> None:
    s = split(n=64)
    kw = dict(batch_size=64, augment="crop", crop_padding=2, shuffle=False)
    b = Batches(s, (0.0,) * 3, (1.0,) * 3, crop_fill="reflect", **kw)
    ((x, _),) = list(b)
    x = (x * 255).round().to(torch.uint8)
    # torch's reflect padding (edge pixel not repeated; airbench's), computed on floats
    padded = torch.nn.functional.pad(torch.from_numpy(s.images).float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    zero = torch.nn.functional.pad(torch.from_numpy(s.images), (2, 2, 2, 2))
    params = b.augmentation(0)
    for i in range(64):
        dy, dx = int(params[0][i]), int(params[1][i])
        assert torch.equal(x[i], padded[i, :, dy : dy + 6, dx : dx + 6]), i
    # the same draws as zero fill: only what the border holds differs, and it does somewhere
    z = Batches(s, (0.0,) * 3, (1.0,) * 3, **kw)
    ((xz, _),) = list(z)
    xz = (xz * 255).round().to(torch.uint8)
    for i in range(64):
        dy, dx = int(params[0][i]), int(params[1][i])
        assert torch.equal(xz[i], zero[i, :, dy : dy + 6, dx : dx + 6]), i
    assert not torch.equal(x, xz)
    # a mask gets its image's very window (uint8 index arithmetic, any dtype)
    masks = np.random.default_rng(1).integers(0, 2, (64, 1, 6, 6), dtype=np.uint8)
    seg = Split(s.images, np.zeros(64, dtype=np.int64), masks=masks)
    ((xs, ys),) = list(Batches(seg, (0.0,) * 3, (1.0,) * 3, crop_fill="reflect", **kw))
    mpad = torch.nn.functional.pad(torch.from_numpy(masks).float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    for i in range(64):
        dy, dx = int(params[0][i]), int(params[1][i])
        assert torch.equal(ys[i].to(torch.uint8).reshape(1, 6, 6), mpad[i, :, dy : dy + 6, dx : dx + 6]), i


def test_flip_only_mirrors() -> None:
    s = split(n=64)
    b = Batches(s, (0.0,) * 3, (1.0,) * 3, batch_size=64, augment="flip")
    ((x, _),) = list(b)
    x = (x * 255).round().to(torch.uint8)
    orig = torch.from_numpy(s.images)
    same = [torch.equal(x[i], orig[i]) for i in range(64)]
    flipped = [torch.equal(x[i], orig[i].flip(2)) for i in range(64)]
    assert all(a or f for a, f in zip(same, flipped)) and 10 < sum(flipped) < 54


def test_views_repeat_augmentation_every_k_epochs() -> None:
    s = split(n=16)
    b = Batches(s, (0.0,) * 3, (1.0,) * 3, batch_size=16, augment="crop_flip", crop_padding=2, views=2)

    def epoch(e: int) -> torch.Tensor:
        b.set_epoch(e)
        ((x, _),) = list(b)
        return x

    assert torch.equal(epoch(0), epoch(2)) and torch.equal(epoch(1), epoch(5))
    assert not torch.equal(epoch(0), epoch(1))


def test_view_seed_fixes_the_views_not_the_order() -> None:
    """data.view_seed: runs of two seeds see the same per-sample views in their own orders."""
    s = split(n=32)
    kw = dict(batch_size=32, augment="crop_flip", crop_padding=2, views=2, shuffle=True)

    def sample_views(seed: int, view_seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        b = Batches(s, (0.0,) * 3, (1.0,) * 3, seed=seed, view_seed=view_seed, **kw)
        b.set_epoch(1)
        ((idx, x, _),) = list(b.with_index())
        return x[idx.argsort()], idx  # back in sample order

    a, order_a = sample_views(0, 7)
    b, order_b = sample_views(1, 7)
    assert torch.equal(a, b) and not torch.equal(order_a, order_b)
    c, _ = sample_views(1, None)  # the run's seed: other views
    assert not torch.equal(a, c)


def test_shards_split_every_batch_between_processes() -> None:
    """Two ranks together see exactly the single-process batches, with identical augmentation."""
    s = split(n=40)
    kw = dict(
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        batch_size=8,
        augment="crop_flip",
        crop_padding=2,
        shuffle=True,
        seed=3,
        drop_last=True,
    )
    from edgekd.data.loader import Shard

    whole = Batches(s, **kw)
    ranks = [Batches(s, shard=Shard(r, 2), **kw) for r in range(2)]
    for b in (whole, *ranks):
        b.set_epoch(4)
    for (i0, x0, _y0), (i1, x1, _), (i2, x2, _) in zip(
        whole.with_index(), ranks[0].with_index(), ranks[1].with_index()
    ):
        assert sorted(torch.cat([i1, i2]).tolist()) == sorted(i0.tolist())
        for idx, x in ((i1, x1), (i2, x2)):
            pos = [i0.tolist().index(v) for v in idx.tolist()]
            assert torch.equal(x, x0[pos])
    assert ranks[0].num_samples + ranks[1].num_samples == whole.num_samples


def test_streamed_images_match_decoded_ones(tmp_path) -> None:
    """A LazyImages split through DataLoader workers yields what the in-memory split yields."""
    from conftest import make_imagefolder
    from edgekd.data.imagefolder import load_imagefolder

    root = make_imagefolder(tmp_path / "d", {"a": 6, "b": 6}, size=(12, 12), mode="RGB")
    mem, _, _, _, _ = load_imagefolder(str(root), None, None, log=lambda m: None, storage="memory")
    lazy, _, _, _, _ = load_imagefolder(str(root), None, None, log=lambda m: None, storage="stream")
    assert lazy.lazy and lazy.images.shape == mem.images.shape
    kw = dict(mean=(0.5,) * 3, std=(0.2,) * 3, batch_size=5, augment="crop_flip", crop_padding=2, shuffle=True, seed=1)
    a, b = Batches(mem, **kw), Batches(lazy, workers=2, **kw)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_alternate_flip_shows_every_image_both_ways_in_two_epochs() -> None:
    """data.flip=alternate (airbench's): view 0 flips as random flips do, every odd view inverts
    those flips, every even view repeats them; the crops are those of random flips."""
    s = split(n=64)
    kw = dict(mean=(0.0,) * 3, std=(1.0,) * 3, batch_size=64, augment="crop_flip", crop_padding=2, seed=3)
    alt, rnd = Batches(s, flip="alternate", **kw), Batches(s, **kw)
    first = alt.augmentation(0)[2]
    assert torch.equal(first, rnd.augmentation(0)[2]) and 10 < int(first.sum()) < 54
    for view in (1, 2, 3, 6):
        a, r = alt.augmentation(view), rnd.augmentation(view)
        assert torch.equal(a[2], first ^ bool(view % 2)), view
        assert torch.equal(a[0], r[0]) and torch.equal(a[1], r[1])  # the same crops
    # random flips repeat a side for about half the images from one view to the next
    assert not torch.equal(rnd.augmentation(1)[2], ~rnd.augmentation(0)[2])
    # the batches themselves: each image of epoch 1 is the mirror-flip pair of epoch 0's (before its crop)
    flat = Batches(s, flip="alternate", mean=(0.0,) * 3, std=(1.0,) * 3, batch_size=64, augment="flip")
    flat.set_epoch(0)
    ((x0, _),) = list(flat)
    flat.set_epoch(1)
    ((x1, _),) = list(flat)
    assert torch.equal(x0.flip(3), x1)


def test_the_teacher_cache_key_says_which_flips_its_views_had() -> None:
    """Views with alternating flips are other images: their cached teacher outputs get another key;
    random flips (and the crop settings of old) keep the key they always had."""
    import dataclasses

    from edgekd.config import DataConfig
    from edgekd.data import load_dataset
    from edgekd.models import create_model
    from edgekd.train.teacher_cache import cache_key

    data = load_dataset(DataConfig(name="digits", augment="flip"))
    teacher = create_model("test_teacher", 10, 1, data.image_size).eval()
    alternate = dataclasses.replace(data, flip="alternate")
    assert load_dataset(DataConfig(name="digits", augment="flip", flip="alternate")).flip == "alternate"
    assert cache_key(teacher, data, 2, 0) != cache_key(teacher, alternate, 2, 0)
    assert cache_key(teacher, data, 2, 0) == cache_key(teacher, dataclasses.replace(data, flip="random"), 2, 0)
