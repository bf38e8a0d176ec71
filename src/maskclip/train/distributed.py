"""torchrun / DistributedDataParallel plumbing for `maskclip train`.

Started by `torchrun --nproc-per-node N -m maskclip train ...` (or `python -m torch.distributed.run`),
every process finds RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR in its environment; several machines
work the same way through torchrun's rendezvous (`--nnodes`, `--rdzv-endpoint`). Without those
variables the run is a single process and nothing here touches torch.distributed.

Backend: NCCL when the processes use CUDA, gloo on CPU. Only rank 0 writes run-wide files (config,
progress, metrics, checkpoints); ranks agree on stopping through `any_rank` so a signal that reaches
them at slightly different times still stops all of them after the same iteration.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import torch
import torch.distributed as dist

from ..errors import MaskCLIPError
from ..validation import check_device

# Generous: rank 0 may compute many pseudo labels (or save a big checkpoint) while others wait.
PROCESS_GROUP_TIMEOUT = timedelta(hours=4)


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when present (this process's local GPU under torchrun), else CPU."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(name)
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MaskCLIPError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def setup(device: str | torch.device | None = "auto") -> DistContext:
    """Join the process group when launched by torchrun; otherwise a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=PROCESS_GROUP_TIMEOUT)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when `flag` is true on at least one."""
    if not ctx.distributed:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def shard(items: Sequence, ctx: DistContext) -> list:
    """This rank's share of `items`: every world_size-th one from position `rank` (deterministic, disjoint,
    sizes differ by at most one)."""
    return list(items[ctx.rank::ctx.world_size])


def gather(value: Any, ctx: DistContext) -> list:
    """Every rank's `value` (picklable), in rank order, on every rank; [value] in a single process."""
    if not ctx.distributed:
        return [value]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def mean_over_ranks(value: float, ctx: DistContext) -> float:
    if not ctx.distributed:
        return float(value)
    t = torch.tensor([float(value)], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / ctx.world_size

