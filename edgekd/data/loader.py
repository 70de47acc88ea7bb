"""Batches from in-memory uint8 splits, with normalization and augmentation done on the device.

The uint8 images are moved to the training device once; each batch is indexed, augmented (random
crop with zero padding, horizontal flip) and normalized there. On a GPU this keeps the hot loop
free of DataLoader workers and host→device copies; on a CPU it avoids per-sample Python work.

Randomness comes from a generator seeded by (seed, epoch), so epoch *e* sees the same order and
the same augmentations whether or not the run was interrupted and resumed before it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from edgekd.data.dataset import Split


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one epoch of one stream (0 = data order/augmentation)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + stream) % (2**63))


class Batches:
    """Iterable over (normalized float images, labels) for one split."""

    def __init__(
        self,
        split: Split,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        batch_size: int,
        device: torch.device | str = "cpu",
        augment: str = "none",
        crop_padding: int = 4,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.images = torch.from_numpy(split.images).to(self.device)  # uint8 (N, C, H, W)
        self.labels = torch.from_numpy(split.labels).to(self.device)
        c = self.images.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.batch_size = batch_size
        self.augment = augment
        self.pad = crop_padding if "crop" in augment else 0
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last and len(self.labels) > batch_size
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        return (images_u8.float() / 255.0 - self.mean) / self.std

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = epoch_generator(self.seed, self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment != "none":
                x = self._augment(x, g)
            yield self.normalize(x), self.labels[idx]

    def _augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.pad:
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))  # zero (black) padding, as torchvision's RandomCrop
            oy = torch.randint(0, 2 * p + 1, (b,), generator=g).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (b,), generator=g).to(x.device)
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
            batch = torch.arange(b, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)
        if "flip" in self.augment:
            flip = (torch.rand(b, generator=g) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x.contiguous()
