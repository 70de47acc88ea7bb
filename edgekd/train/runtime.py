"""Device choice, mixed precision and seeding for training."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from edgekd.config import RuntimeConfig
from edgekd.errors import EdgekdError


def select_device(spec: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU. An explicit CUDA request without CUDA is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise EdgekdError(f"runtime.device: {spec!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EdgekdError(f"runtime.device is {spec!r} but CUDA is not available here; use runtime.device=auto or cpu")
    return device


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for full fp32. Mixed precision is a CUDA-only speed feature here:
    CPU runs stay fp32 so that they are bit-reproducible."""
    if device.type != "cuda" or setting == "off":
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(dtype: torch.dtype | None, device: torch.device):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def configure(runtime: RuntimeConfig, seed: int) -> torch.device:
    """Apply threads/determinism, seed every RNG, and return the training device."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    device = select_device(runtime.device)
    if runtime.deterministic:
        # cuBLAS needs this for deterministic matmuls; harmless elsewhere
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"
    seed_everything(seed)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
