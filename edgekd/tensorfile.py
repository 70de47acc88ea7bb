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
