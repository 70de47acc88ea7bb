"""Distributed data parallel (``torchrun --nproc_per_node N -m edgekd distill …``).

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; :func:`init` then joins the process group (NCCL on GPUs,
gloo on CPUs). Every rank trains on its share of each global batch (``data.batch_size`` is the
global batch, split evenly), gradients are averaged by DistributedDataParallel, metrics are summed
across ranks, and only rank 0 writes files. A single process (no torchrun) is world size 1 and
every function here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgekd.data.loader import Shard
from edgekd.errors import EdgekdError
from edgekd.limits import MAX_PORT


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.size)


_world = World()


def world() -> World:
    return _world


def init(device_spec: str) -> World:
    """Join the process group when launched by torchrun; returns this process's place in it."""
    global _world
    size, rank, local = launch_env()
    if size == 1:
        _world = World()
        return _world
    use_cuda = torch.cuda.is_available() and device_spec != "cpu"
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    _world = World(rank, size, local)
    return _world


def launch_env() -> tuple[int, int, int]:
    """(WORLD_SIZE, RANK, LOCAL_RANK) as torchrun sets them; (1, 0, 0) without torchrun. Values
    set by hand that torchrun would never set are one line, before any process group is joined."""
    env = os.environ
    launch = "launch several processes with `torchrun --nproc_per_node N -m edgekd distill …`, or unset these variables"

    def integer(name: str, default: str, low: int, high: int | None = None) -> int:
        text = env.get(name, default).strip()
        try:
            value = int(text)
        except ValueError:
            what = (
                "WORLD_SIZE/RANK must be integers" if name in ("WORLD_SIZE", "RANK") else f"{name} must be an integer"
            )
            raise EdgekdError(f"{what} set by torchrun ({name} is {text!r}): {launch}") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise EdgekdError(f"{name} must be an integer {span} (set by torchrun), got {value}: {launch}")
        return value

    size = integer("WORLD_SIZE", "1", 1)
    if size == 1:
        return 1, 0, 0
    # env:// rendezvous needs every one of these; torch's own error for a missing one is a long traceback
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not env.get(name, "").strip()]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise EdgekdError(
            f"WORLD_SIZE is {size} but {', '.join(missing)} {verb} not set (torchrun sets them): {launch}"
        )
    rank = integer("RANK", "0", 0, size - 1)
    integer("MASTER_PORT", "0", 1, MAX_PORT)
    return size, rank, integer("LOCAL_RANK", "0", 0)


def device_for(device: torch.device) -> torch.device:
    """Each rank takes the GPU of its local rank."""
    if device.type == "cuda" and _world.size > 1:
        return torch.device("cuda", _world.local_rank)
    return device


def check_batch(batch_size: int) -> None:
    if _world.size > 1 and batch_size % _world.size:
        raise EdgekdError(
            f"data.batch_size {batch_size} is the global batch: it must divide evenly over {_world.size} processes"
        )


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place); the tensor itself on a single process."""
    if _world.size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_max(tensor: torch.Tensor) -> torch.Tensor:
    """Maximum over ranks (in place); the tensor itself on a single process."""
    if _world.size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def barrier() -> None:
    if _world.size > 1:
        dist.barrier()


def wrap(module: torch.nn.Module, device: torch.device, find_unused: bool = False) -> torch.nn.Module:
    """DistributedDataParallel around the trained module. On GPUs batch norm is synchronized
    across ranks (SyncBatchNorm has no CPU kernels, so CPU ranks normalize their own share).
    ``find_unused``: some parameters get no gradient in this stage (FitNets hint training)."""
    if _world.size <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return DistributedDataParallel(module, device_ids=[device.index], find_unused_parameters=find_unused)
    return DistributedDataParallel(module, find_unused_parameters=find_unused)


def shutdown() -> None:
    if _world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
