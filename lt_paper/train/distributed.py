"""Process-group setup for ``torchrun``: NCCL on GPUs, gloo on the CPU; one process otherwise.

``torchrun`` sets RANK, LOCAL_RANK and WORLD_SIZE; without them the engine runs in one process and
nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import VALID_CHOICES


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (idempotent)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        atexit.register(shutdown)  # the end of a torchrun run: NCCL wants its group destroyed before exit
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def shutdown() -> None:
    """Leave the process group (``destroy_process_group``) if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_type(requested: str) -> str:
    """"cuda" or "cpu" for a config's ``device`` ("auto": cuda when available)."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def resolve_device(requested: str, info: DistInfo) -> torch.device:
    """The device a run (or ``evaluate --device``) asks for: this rank's GPU, or the CPU. Any other name
    ("banana", "cuda:1") is a ValueError rather than a run on the CPU that was not asked for."""
    if requested not in VALID_CHOICES["device"]:
        raise ValueError(f"device {requested!r} is not valid; valid: "
                         f"{', '.join(map(repr, VALID_CHOICES['device']))}")
    requested = device_type(requested)
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("config key 'device' is 'cuda' but no CUDA device is available (torch "
                             f"{torch.__version__}); use device=cpu or auto")
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` on every rank (in rank order); ``[obj]`` in one process."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
