"""How an epoch is ordered and split across ranks: one rule shared by both loader kinds.

Training: the order is ``randperm(N)`` from a generator seeded by ``epoch_seed(seed, epoch)``, so an epoch
is a pure function of (seed, epoch) and a resumed run sees exactly the batches it would have seen. Each
GLOBAL batch of ``batch_size`` consecutive positions is cut into ``world_size`` equal slices and rank
``r`` takes slice ``r``: a run on 1 or 8 GPUs trains on the same global batches (unlike
DistributedSampler's strided split, where the global batch depends on the world size). The last
incomplete global batch is dropped.

Evaluation: rank ``r`` gets one contiguous block of the dataset, sizes differing by at most one, with no
padding or repetition, so the union over ranks is exactly the test set (DistributedSampler would pad by
repeating samples and bias the accuracy).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int, *more: int) -> int:
    """A 63-bit seed that depends on ``(seed, epoch, *more)`` only (numpy SeedSequence mixing)."""
    state = np.random.SeedSequence([seed, epoch, *more]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from (seed, epoch); CPU so the stream is the same on every device."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch))


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Per-rank share of the global batch; ValueError unless ``world_size`` divides ``batch_size``."""
    if world_size < 1 or batch_size < 1 or batch_size % world_size:
        raise ValueError(f"the global batch size {batch_size} must be a positive multiple of "
                         f"world_size {world_size}")
    return batch_size // world_size


def check_rank(rank: int, world_size: int) -> None:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")


def rank_positions(num_batches: int, batch_size: int, rank: int, world_size: int) -> torch.Tensor:
    """(num_batches * batch_size // world_size,) int64 positions in the epoch order that ``rank`` reads.

    Global batch ``b`` covers positions ``[b * batch_size, (b + 1) * batch_size)``; rank ``r`` reads the
    ``r``-th of its ``world_size`` equal slices.
    """
    local = local_batch_size(batch_size, world_size)
    starts = torch.arange(num_batches, dtype=torch.int64) * batch_size + rank * local  # (num_batches,)
    return (starts[:, None] + torch.arange(local, dtype=torch.int64)[None, :]).reshape(-1)


def contiguous_shard(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank's contiguous block of ``n`` items; sizes differ by at most one."""
    check_rank(rank, world_size)
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class GlobalBatchSampler(Sampler):
    """Train sampler for DataLoaders: yields this rank's slices of the (seed, epoch) global batches.

    Use with ``DataLoader(batch_size=batch_size // world_size, drop_last=True)``: each DataLoader batch is
    then this rank's slice of one global batch.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        check_rank(rank, world_size)
        self.n, self.batch_size, self.rank, self.world_size, self.seed = n, batch_size, rank, world_size, seed
        self.local = local_batch_size(batch_size, world_size)
        self.num_batches = n // batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.local

    def __iter__(self) -> Iterator[int]:
        perm = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))  # (N,)
        positions = rank_positions(self.num_batches, self.batch_size, self.rank, self.world_size)
        return iter(perm[positions].tolist())


class ShardSampler(Sampler):
    """Evaluation sampler: this rank's contiguous block, in order, no padding."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.start, self.stop = contiguous_shard(n, rank, world_size)

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))
