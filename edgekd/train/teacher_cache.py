"""The teacher-output cache: when the student's inputs repeat, run the frozen teacher once.

The student sees the same input for a sample every epoch when augmentation is off, and the same
one every K epochs with ``data.views=K`` (a fixed set of augmented views). The teacher is frozen,
so its outputs for those inputs never change: they are computed once per view, kept on the
training device (V × N × classes floats; V × N × 1 × H × W for segmentation masks) and stored
beside the run in ``teacher_cache/``; beyond ``MAX_CACHE_BYTES`` the teacher runs every step.

The file's key covers everything the outputs depend on — the teacher's weights, the training
images and labels, and the transform (augmentation, padding, views, the views' seed,
normalization) — so a changed teacher, dataset or transform misses the cache and the stale file is
replaced. Nothing about the student is in it: with ``data.view_seed`` fixed, students of every
architecture and seed see the same views, and runs pointed at one ``runtime.teacher_cache_dir``
compute the teacher's outputs once for all of them.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.data import Dataset
from edgekd.data.loader import Batches
from edgekd.tensorfile import is_finite_tensor, load_tensors
from edgekd.train import distributed
from edgekd.train.runtime import Runtime, autocast
from edgekd.ui import log, progress

MAX_CACHE_BYTES = 2 << 30  # beyond this the outputs are recomputed every step instead


def views_of(data: Dataset, views: int | None, mixing: bool = False) -> int | None:
    """How many distinct inputs per sample the student sees: 1 without augmentation, K with
    ``data.views=K``, None when every epoch draws new augmentations (nothing to cache).
    mixup/cutmix draw new partners per view, so they repeat only with ``data.views``."""
    if data.augment == "none" and not mixing:
        return 1
    return views


def fingerprint_model(model: nn.Module) -> str:
    h = hashlib.sha256()
    model = getattr(model, "_orig_mod", model)  # a compiled teacher has the same weights under other names
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint_data(data: Dataset) -> str:
    h = hashlib.sha256()
    images = data.train.images
    if isinstance(images, np.ndarray):
        h.update(np.ascontiguousarray(images).tobytes())
    else:  # streamed: the file list stands for the content (their mtimes are in the decode cache key)
        h.update("\n".join(images.files).encode())
    h.update(np.ascontiguousarray(data.train.labels).tobytes())
    return h.hexdigest()


def cache_key(teacher: nn.Module, data: Dataset, views: int, view_seed: int, mix: dict | None = None) -> str:
    """The cache file's key: teacher weights + training data + the views' transform and seed."""
    transform = repr(
        (data.augment, data.crop_padding, views, view_seed, data.mean, data.std, data.image_size, data.in_channels)
    )
    if data.crop_fill != "zero":  # other crops; zero-filled runs keep their existing keys
        transform += repr(("crop_fill", data.crop_fill))
    if data.flip != "random":  # other flips; runs with random flips keep their existing keys
        transform += repr(("flip", data.flip))
    if mix:  # mixed views are other inputs; unmixed runs keep their existing keys
        transform += repr(sorted(mix.items()))
    h = hashlib.sha256("\n".join([fingerprint_model(teacher), fingerprint_data(data), transform]).encode())
    return h.hexdigest()[:20]


@torch.no_grad()
def compute_outputs(
    teacher: nn.Module, data: Dataset, views: int, view_seed: int, rt: Runtime, batch_size: int, mix: dict | None = None
) -> torch.Tensor:
    """(views, N, …) teacher outputs, in sample order, for every view's augmentation (and mixing)."""
    batches = Batches(
        data.train,
        data.mean,
        data.std,
        batch_size,
        rt.device,
        **data.augmentation,
        shuffle=False,
        seed=view_seed,
        views=views,
        channels_last=rt.channels_last,
        **(mix or {}),
    )
    out: list[torch.Tensor] = []
    # minutes on a CPU for a large teacher and many views: a bar over every batch of every view
    with progress("teacher outputs", views * len(batches)) as bar:
        for view in range(views):
            batches.set_epoch(view)
            chunks = []
            for _, x, _ in batches.with_index():
                with autocast(rt.amp, rt.device):
                    chunks.append(teacher(x).float())
                bar.update(view=f"{view + 1}/{views}")
            out.append(torch.cat(chunks))
    return torch.stack(out)


def teacher_outputs(
    teacher: nn.Module,
    data: Dataset,
    views: int,
    view_seed: int,
    rt: Runtime,
    out_dir: Path,
    stage: str,
    batch_size: int,
    mix: dict | None = None,
) -> torch.Tensor | None:
    """The cached outputs for ``stage``'s training data, computed (and stored) on first use."""
    from edgekd.tasks import get_task

    # classes per image, or a logit per pixel for segmentation: (V, N, 1, H, W) floats
    shape = (views, len(data.train), *get_task(data.task).output_shape(data.num_classes, data.image_size))
    n_bytes = math.prod(shape) * 4
    if n_bytes > MAX_CACHE_BYTES:
        log(f"{stage}: teacher cache would take {n_bytes / (1 << 30):.1f} GiB; running the teacher every step instead")
        return None
    folder = rt.teacher_cache_dir or out_dir / "teacher_cache"
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(teacher, data, views, view_seed, mix)
    path = folder / f"{stage}-{key}.pt"
    if path.is_file():
        outputs, why = _read(path, rt, shape)
        if outputs is not None:
            log(f"{stage}: teacher outputs from cache {path}")
            return outputs
        # the cache is derived data: a damaged file (a killed write, a full disk) is recomputed
        log(f"{stage}: teacher cache {path} is unusable ({why}); computing it again")
    if rt.world.main:
        for stale in folder.glob(f"{stage}-*.pt"):
            # only this stage's cache files (a shared runtime.teacher_cache_dir may hold anything else)
            if re.fullmatch(rf"{re.escape(stage)}-[0-9a-f]{{20}}\.pt", stale.name) and stale.is_file():
                stale.unlink()
        log(f"{stage}: computing the teacher's outputs once ({views} view(s) × {len(data.train)} images) → {path}")
        outputs = compute_outputs(teacher, data, views, view_seed, rt, batch_size, mix)
        from edgekd.atomic import write_with

        write_with(path, lambda fh: torch.save(outputs.cpu(), fh))
    distributed.barrier()
    if rt.world.main:
        return outputs
    return load_tensors(path).to(rt.device)


def _read(path: Path, rt: Runtime, shape: tuple[int, ...]) -> tuple[torch.Tensor | None, str]:
    """(the cached outputs, "") or (None, why they cannot be used). The whole shape and the dtype
    are checked, not only the views and images: another class count (a file copied from another
    stage or edited) failed inside the KD loss with a traceback, and integer or boolean outputs
    trained on quietly as if they were the teacher's logits."""
    import pickle

    from edgekd.errors import first_line

    try:
        outputs = load_tensors(path)  # a plain pickle is "unusable", without torch's warning first
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        return None, first_line(exc, 120)
    if not isinstance(outputs, torch.Tensor) or tuple(outputs.shape) != shape:
        return None, f"expected outputs of shape {tuple(shape)} ({shape[0]} view(s) × {shape[1]} images)"
    if outputs.dtype != torch.float32:  # compute_outputs stores float32, whatever the autocast
        return None, f"expected float32 outputs, found {str(outputs.dtype).removeprefix('torch.')}"
    if not is_finite_tensor(outputs):
        return None, "it holds NaN or infinite values"
    return outputs.to(rt.device), ""
