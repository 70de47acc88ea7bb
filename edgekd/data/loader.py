"""Batches from uint8 splits, with normalization and augmentation done on the training device.

Where the data fits (CIFAR-sized), the uint8 images live on the device itself: each batch is an
index into them, augmented (random crop with zero padding, horizontal flip) and normalized there,
so a GPU's hot loop has no DataLoader workers and no host→device copies. Data too large for the
device stays in pinned host memory and is copied per batch; streamed ImageFolders
(:class:`edgekd.data.lazy.LazyImages`) are decoded by DataLoader worker processes.

Randomness is a function of (seed, epoch) alone, and augmentation parameters are drawn per
*sample* rather than per batch position (from ``view_seed``, the run's seed unless given: a fixed
one gives runs of different seeds the same views, and so the same cached teacher outputs). So epoch *e* sees the same
order and the same crops
whether or not the run was resumed before it, and a distributed run whose ranks each take a share
of every global batch sees exactly the images a single process would. With ``views=K`` epoch *e*
reuses the augmentation of view *e mod K*: a fixed set of views whose teacher outputs can be cached.
mixup/cutmix (:meth:`Batches.mixing`) follow the same rule: a per-sample partner, weight and box
per view, so the mixed views repeat too and the teacher sees exactly the student's mixed input.

Targets are class labels ``(N,)`` or, for segmentation, uint8 masks ``(N, 1, H, W)``: a mask gets
exactly its image's crop (zero padding: background) and flip, from the same per-sample parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from edgekd.data.dataset import Split


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one epoch of one stream (0 = order, 1 = augmentation)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + stream) % (2**63))


@dataclass(frozen=True)
class Shard:
    """This process's share of every batch in a distributed run: samples rank, rank+world, …"""

    rank: int = 0
    world: int = 1


class Batches:
    """Iterable over (normalized float images, targets) — or (…, sample indices) — for one split.
    Targets are the split's labels, or its masks where it has some (see :attr:`Split.targets`)."""

    def __init__(
        self,
        split: Split,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        batch_size: int,
        device: torch.device | str = "cpu",
        augment: str = "none",
        crop_padding: int = 4,
        crop_fill: str = "zero",
        flip: str = "random",
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        views: int | None = None,
        shard: Shard = Shard(),
        placement: str = "auto",
        workers: int = 0,
        channels_last: bool = False,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        num_classes: int = 0,
        view_seed: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.n = len(split)
        self.lazy = split.lazy
        self.where = self._placement(split, placement)
        if self.lazy:
            self.images = split.images
        else:
            self.images = self._place(standard_strides(torch.from_numpy(split.images)))
        # masks are augmented with their images, so they live where the images do (streamed
        # images: on the device, a mask is a third of an RGB image's bytes); labels are tiny
        self.per_pixel = split.masks is not None
        targets = torch.from_numpy(split.targets)
        self.targets_on_host = self.per_pixel and self.where == "host"
        self.targets = self._place(targets) if self.targets_on_host else targets.to(self.device)
        c = split.images.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.batch_size = batch_size
        self.augment = augment
        self.pad = crop_padding if "crop" in augment else 0
        if crop_fill not in ("zero", "reflect"):
            raise ValueError(f"crop_fill is zero or reflect, got {crop_fill!r}")
        self.reflect = crop_fill == "reflect"
        if flip not in ("random", "alternate"):
            raise ValueError(f"flip is random or alternate, got {flip!r}")
        self.alternate = flip == "alternate"
        self.shuffle = shuffle
        self.seed = seed
        # the augmentation's own seed (data.view_seed): fixed views shared by runs of other seeds
        self.view_seed = seed if view_seed is None else view_seed
        self.drop_last = drop_last and self.n > batch_size
        self.views = views
        self.shard = shard
        self.workers = workers
        self.channels_last = channels_last
        self.epoch = 0
        # mixup/cutmix: Beta(α, α) concentrations (0: off); mixed batches carry soft label rows
        self.mixup, self.cutmix, self.num_classes = mixup, cutmix, num_classes
        if (mixup or cutmix) and (self.lazy or self.per_pixel or num_classes < 2):
            raise ValueError("mixup/cutmix need in-memory images with class labels (not streamed images, not masks)")
        if shard.world > 1 and self.drop_last and batch_size % shard.world:
            raise ValueError(f"batch size {batch_size} must divide evenly over {shard.world} processes")

    def _placement(self, split: Split, placement: str) -> str:
        """device: uint8 images on the training device; host: in (pinned) host memory; files: streamed.
        ``auto`` keeps them on a GPU when they take less than half its free memory."""
        if split.lazy:
            return "files"
        if self.device.type != "cuda":
            return "device"  # host memory is the device's memory
        if placement in ("device", "host"):
            return placement
        free, _total = torch.cuda.mem_get_info(self.device)
        return "device" if split.images.nbytes < free // 2 else "host"  # leave room for training

    def _place(self, host: torch.Tensor) -> torch.Tensor:
        """A host tensor on the device, or pinned on the host (``where == "host"``)."""
        if self.where == "device":
            return host.to(self.device)
        return host.pin_memory() if self.device.type == "cuda" else host

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples this process sees in one pass (its shard)."""
        return len(range(self.shard.rank, self.n, self.shard.world))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def view(self) -> int:
        """The augmentation view of the current epoch."""
        return self.epoch % self.views if self.views else self.epoch

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = (images_u8.float() / 255.0 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else standard_strides(x)

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))

    def batch_indices(self) -> Iterator[torch.Tensor]:
        """This process's sample indices for every batch of the epoch (CPU tensors)."""
        order = self.order()
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size][self.shard.rank :: self.shard.world]
            if len(idx):  # a short last batch may leave a rank nothing
                yield idx

    def augmentation(self, view: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Per-sample (row offset, column offset, flip) for every sample of the split, for ``view``."""
        if self.augment == "none":
            return None
        oy, ox, flip = self._draw(view)
        if self.alternate:
            # airbench's alternating flip: view 0's flips, inverted on odd views, so any two
            # consecutive epochs show every image both ways (random flips repeat a side half the time)
            flip = self._draw(0)[2] ^ bool(view % 2)
        return oy.to(self.device), ox.to(self.device), flip.to(self.device)

    def _draw(self, view: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``view``'s random (row offset, column offset, flip) per sample, on the host."""
        g = epoch_generator(self.view_seed, view, stream=1)
        oy = torch.randint(0, 2 * self.pad + 1, (self.n,), generator=g)
        ox = torch.randint(0, 2 * self.pad + 1, (self.n,), generator=g)
        return oy, ox, torch.rand(self.n, generator=g) < 0.5

    def mixing(self, view: int) -> dict[str, torch.Tensor] | None:
        """Per-sample mixing for ``view``: partner index, own weight λ and cutmix box (rows y0:y1,
        columns x0:x1; empty for a mixup sample), all on the device.

        Drawn per *sample* from (view_seed, view) alone, like the crops: the mixed view of sample i is
        the same whatever batch it falls in, so resumed runs match and the teacher's outputs for
        the mixed views can be cached. With both on, each sample takes one of the two (p = 0.5).
        """
        if not (self.mixup or self.cutmix):
            return None
        import numpy as np

        n = self.n
        h, w = self.images.shape[2:]
        rng = np.random.default_rng([self.view_seed, view, 2])  # stream 2: mixing
        partner = rng.permutation(n)
        if self.mixup and self.cutmix:
            cut = rng.random(n) < 0.5
        else:
            cut = np.full(n, self.cutmix > 0)
        lam_mix = rng.beta(self.mixup, self.mixup, n) if self.mixup else np.ones(n)
        lam_cut = rng.beta(self.cutmix, self.cutmix, n) if self.cutmix else np.ones(n)
        # cutmix box of area (1-λ)·H·W around a uniform centre, clipped; λ is then the kept area
        ratio = np.sqrt(1.0 - lam_cut)
        ch, cw = (h * ratio).astype(np.int64), (w * ratio).astype(np.int64)
        cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
        y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        y0, y1, x0, x1 = (np.where(cut, v, 0) for v in (y0, y1, x0, x1))  # mixup samples: empty box
        lam = np.where(cut, 1.0 - (y1 - y0) * (x1 - x0) / (h * w), lam_mix)
        out = {"partner": partner, "lam": lam.astype(np.float32), "cut": cut, "y0": y0, "y1": y1, "x0": x0, "x1": x1}
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in out.items()}

    def _mix(
        self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, mix: dict[str, torch.Tensor], params
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a normalized batch with each sample's partner (augmented by its own view
        parameters); targets become soft label rows λ·onehot(y) + (1-λ)·onehot(y_partner)."""
        j = mix["partner"][idx]
        xb = self.images[j] if self.where == "device" else self.images[j.cpu()].to(self.device)
        if params is not None:
            xb = self._augment(xb, *[q[j] for q in params])
        xb = self.normalize(xb)
        lam, cut = mix["lam"][idx], mix["cut"][idx]
        h, w = x.shape[2:]
        rows = torch.arange(h, device=x.device)[None, :]
        cols = torch.arange(w, device=x.device)[None, :]
        in_rows = (rows >= mix["y0"][idx][:, None]) & (rows < mix["y1"][idx][:, None])  # (B, H)
        in_cols = (cols >= mix["x0"][idx][:, None]) & (cols < mix["x1"][idx][:, None])  # (B, W)
        box = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
        blended = lam[:, None, None, None] * x + (1.0 - lam[:, None, None, None]) * xb
        x = torch.where(cut[:, None, None, None], torch.where(box, xb, x), blended)
        yb = self.targets[j]
        onehot = torch.nn.functional.one_hot
        soft = lam[:, None] * onehot(y.clamp_min(0), self.num_classes) * (y >= 0)[:, None]
        soft = soft + (1.0 - lam[:, None]) * onehot(yb.clamp_min(0), self.num_classes) * (yb >= 0)[:, None]
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()
        return x, soft

    def _uint8_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(CPU indices, uint8 images on the device) per batch."""
        if self.where == "files":
            from torch.utils.data import DataLoader

            batches = list(self.batch_indices())
            loader = DataLoader(
                _Decoder(self.images),
                batch_sampler=[b.tolist() for b in batches],
                num_workers=self.workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=False,
            )
            for idx, x in zip(batches, loader):
                yield idx, x.to(self.device, non_blocking=True)
            return
        for idx in self.batch_indices():
            if self.where == "device":
                yield idx, self.images[idx.to(self.device)]
            else:  # pinned host memory: gather on the host, copy asynchronously
                yield idx, self.images[idx].to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, x, y in self.with_index():
            yield x, y

    def with_index(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(sample indices on the device, normalized images, targets) per batch."""
        params = self.augmentation(self.view)
        mix = self.mixing(self.view)
        for cpu_idx, x in self._uint8_batches():
            idx = cpu_idx.to(self.device)
            y = self.targets[cpu_idx].to(self.device, non_blocking=True) if self.targets_on_host else self.targets[idx]
            if params is not None:
                p = [q[idx] for q in params]
                x = self._augment(x, *p)
                if self.per_pixel:
                    y = self._augment(y, *p)  # the same crop window and flip as its image
            x = self.normalize(x)
            if mix is not None:
                x, y = self._mix(x, y, idx, mix, params)
            yield idx, x, y

    def _augment(self, x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Crop and/or flip a (B, C, H, W) batch of any dtype: uint8 images or masks."""
        b, _, h, w = x.shape
        if self.pad:
            p = self.pad
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
            batch = torch.arange(b, device=x.device)[:, None, None]
            if self.reflect:
                # indices into the unpadded image, mirrored at the border without repeating the edge
                # pixel (torch's "reflect" padding, airbench's), so any dtype works (uint8, masks)
                x = x.permute(0, 2, 3, 1)[batch, _mirror(rows - p, h), _mirror(cols - p, w)].permute(0, 3, 1, 2)
            else:
                padded = torch.nn.functional.pad(x, (p, p, p, p))  # zero (black) padding, as torchvision's RandomCrop
                x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)
        if "flip" in self.augment:
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x.contiguous()


def standard_strides(t: torch.Tensor) -> torch.Tensor:
    """``t`` with row-major strides. A one-channel array that numpy calls C-contiguous may carry a
    channel stride of 1 (e.g. from a transpose): torch then reads its batches as channels-last,
    convolutions answer in NHWC and a model's ``.view`` fails on them. Copied only then."""
    expected, step = [], 1
    for n in reversed(t.shape):
        expected.insert(0, step)
        step *= n
    return t if list(t.stride()) == expected else t.clone(memory_format=torch.contiguous_format)


def _mirror(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of a side of ``n`` pixels shifted past its ends, reflected back inside (-1 → 1,
    n → n-2); valid for shifts under ``n``."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


class _Decoder(torch.utils.data.Dataset):
    """Worker-side decoding of streamed images to uint8 (C, H, W) tensors."""

    def __init__(self, images) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images.decode(i))
