"""Reading a file of tensors (checkpoints, pretrained weights): ``torch.load`` with ``weights_only``,
quietly. Below both :mod:`edgekd.checkpoint` and :mod:`edgekd.models`, which each read such files."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def load_tensors(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, without the warning torch prints for a
    plain (non-torch) pickle before it fails: the caller's one error line says what the file is."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def is_finite_tensor(tensor: Any) -> bool:
    """A tensor without NaN or ±inf (an integer or boolean one always is): the one test of weights,
    buffers and optimizer state read from a file. A NaN weight runs quietly through PyTorch and
    every exporter and only shows as NaN outputs (or a converter's garbled error) much later."""
    import torch

    return not (tensor.is_floating_point() or tensor.is_complex()) or bool(torch.isfinite(tensor).all())


def first_nonfinite(tensors: Any) -> str | None:
    """The name of the first tensor of a ``name → tensor`` mapping holding NaN or ±inf, else None
    (entries that are no tensor are the caller's to check)."""
    import torch

    for name, value in tensors.items():
        if isinstance(value, torch.Tensor) and not is_finite_tensor(value):
            return str(name)
    return None
