"""Private bottom layer for ``torch.distributed``: rank, world size, barrier, reductions, process-group set-up.

Every function works without a process group (a single process: rank 0 of 1, collectives are no-ops), so library
code calls them unconditionally. Collectives move CPU tensors to the current CUDA device under NCCL (which only
reduces CUDA tensors) and back, so callers need not know the backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce_mean",
    "all_reduce_sum_",
    "barrier",
    "broadcast_",
    "is_distributed",
    "is_main",
    "rank",
    "setup_distributed",
    "teardown_distributed",
    "world_size",
]


def is_distributed() -> bool:
    """True when a default process group with more than one rank exists."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of ranks in the default group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the rank that writes files."""
    return rank() == 0


def barrier() -> None:
    """Waits for every rank; a no-op in a single process."""
    if is_distributed():
        dist.barrier()


def _collective_device(tensor: Tensor) -> torch.device:
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sums ``tensor`` over all ranks in place; returns it (unchanged in a single process)."""
    if is_distributed():
        device = _collective_device(tensor)
        if device == tensor.device:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        else:
            moved = tensor.to(device)
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            tensor.copy_(moved)
    return tensor


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over all ranks, as a new tensor."""
    out = all_reduce_sum_(tensor.clone())
    return out / world_size() if is_distributed() else out


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrites ``tensor`` in place with rank ``src``'s copy; returns it."""
    if is_distributed():
        device = _collective_device(tensor)
        if device == tensor.device:
            dist.broadcast(tensor, src=src)
        else:
            moved = tensor.to(device)
            dist.broadcast(moved, src=src)
            tensor.copy_(moved)
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits. ``created`` is True when :func:`setup_distributed` made the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    created: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistInfo:
    """Initialises the default process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but CUDA is not available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    created = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        created = True
    r, world = (rank(), world_size()) if dist.is_initialized() else (int(os.environ.get("RANK", "0")), world)
    return DistInfo(rank=r, world_size=world, local_rank=local_rank, device=dev, created=created)


def teardown_distributed(info: DistInfo) -> None:
    """Destroys the process group if :func:`setup_distributed` created it."""
    if info.created and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
