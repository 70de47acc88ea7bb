"""Device choice, mixed precision and seeding for training."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.config import RuntimeConfig
from edgekd.errors import EdgekdError, first_line
from edgekd.train.distributed import World


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


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU computes bf16 natively (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for full fp32. ``auto`` is mixed precision on CUDA only: CPU runs stay
    fp32 (bit-reproducible) unless bf16 is asked for explicitly (fast on CPUs with AVX512-BF16/AMX)."""
    if setting == "off":
        return None
    if device.type != "cuda":
        if setting == "fp16":
            raise EdgekdError("runtime.amp=fp16 is for CUDA; on a CPU use bf16 or off")
        if setting == "bf16" and not cpu_has_native_bf16():
            from edgekd.ui import warn

            warn(
                "runtime.amp=bf16 on a CPU without native bf16 (AVX512-BF16/AMX) is emulated and slow; consider "
                "runtime.amp=off"
            )
        return torch.bfloat16 if setting == "bf16" else None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(dtype: torch.dtype | None, device: torch.device):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass(frozen=True)
class Runtime:
    """How this process trains: resolved from the ``runtime`` and ``data`` config sections."""

    device: torch.device
    amp: torch.dtype | None
    channels_last: bool
    compile_teacher: bool
    compile_student: bool
    teacher_cache: bool
    world: World = World()
    teacher_cache_dir: Path | None = None  # None: the run folder's teacher_cache/
    channels_last_auto: bool = False  # runtime.channels_last was left to edgekd (None), not set

    def describe(self) -> str:
        parts = [str(self.device)]
        if self.amp is not None:
            parts.append(str(self.amp).replace("torch.", ""))
        if self.channels_last:
            parts.append("channels_last")
        if self.compile_teacher or self.compile_student:
            parts.append(
                "compiled "
                + "+".join(n for n, on in (("teacher", self.compile_teacher), ("student", self.compile_student)) if on)
            )
        if self.world.size > 1:
            parts.append(f"{self.world.size} processes")
        return ", ".join(parts)


def configure(runtime: RuntimeConfig, seed: int) -> Runtime:
    """Apply threads/determinism, seed every RNG, and return how to train."""
    from edgekd.train import distributed

    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    device = distributed.device_for(select_device(runtime.device))
    world = distributed.world()
    if runtime.deterministic:
        # cuBLAS needs this for deterministic matmuls; harmless elsewhere
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"
    seed_everything(seed)
    return Runtime(
        device=device,
        amp=amp_dtype(runtime.amp, device),
        # NHWC on CPUs too: on a 2-core AMD EPYC (fp32) the registry's models trained 1.2–1.5× and ran
        # inference 1.2–1.8× as fast as NCHW, UNet training (0.83×) aside (benchmarks/memory_format.py)
        channels_last=True if runtime.channels_last is None else runtime.channels_last,
        channels_last_auto=runtime.channels_last is None,
        compile_teacher=runtime.compile_teacher,
        compile_student=runtime.compile_student,
        teacher_cache=runtime.teacher_cache,
        world=world,
        teacher_cache_dir=Path(runtime.teacher_cache_dir) if runtime.teacher_cache_dir else None,
    )


def for_models(rt: Runtime, models: Sequence[tuple[str, nn.Module | None]], input_shape: tuple[int, ...]) -> Runtime:
    """``rt`` for running ``models`` (named for messages) on batches of ``input_shape``: channels-last
    stays on only when every model accepts a channels-last batch. A forward that reshapes with
    ``.view`` (common in hand-written models) rejects NHWC strides: such a run goes NCHW, logged, or
    with a warning where ``runtime.channels_last=true`` asked for NHWC (the run is found out at its
    stage, maybe after a long teacher stage: a slower run beats a stopped one)."""
    if not rt.channels_last:
        return rt
    for name, model in models:
        why = None if model is None else _rejects_channels_last(model, input_shape, rt.device)
        if why is None:
            continue
        from edgekd.ui import log, warn

        if rt.channels_last_auto:
            log(f"{name}: NCHW tensors (its forward rejects channels-last ones: {why})")
        else:
            warn(
                f"runtime.channels_last=true, but the {name} does not run on channels-last tensors ({why}); "
                "it runs NCHW (set runtime.channels_last=false to silence this)"
            )
        return dataclasses.replace(rt, channels_last=False)
    return rt


@torch.no_grad()
def _rejects_channels_last(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> str | None:
    """Why ``model`` fails on a channels-last batch where it runs on a contiguous one (it is left in
    contiguous format then); None when it runs on both (or fails on both: that error is not the
    memory format's and surfaces as it is). Weights and batch both NHWC, as training has them: with
    one input channel only NHWC weights make the activations NHWC."""
    x = torch.zeros((2, *input_shape[1:]), device=device)
    was_training = model.training
    model.eval()  # no BatchNorm statistics move, no dropout draws from the seeded RNG
    try:
        try:
            model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
            return None
        except Exception as exc:  # noqa: BLE001 — any error: the NCHW pass below tells whose it is
            why = first_line(exc)
        try:
            model.to(memory_format=torch.contiguous_format)(x)
        except Exception:  # noqa: BLE001 — not the memory format's fault: training reports it as before
            return None
        return why
    finally:
        model.train(was_training)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
