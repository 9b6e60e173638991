"""How an epoch is ordered and split across ranks: one rule shared by both loader kinds.

Training: the order is ``randperm(N)`` from a generator seeded by ``epoch_seed(seed, epoch)``, so an epoch
is a pure function of (seed, epoch) and a resumed run sees exactly the batches it would have seen. Each
GLOBAL batch of ``batch_size`` consecutive positions is cut into ``world_size`` equal slices and rank
``r`` takes slice ``r``: a run on 1 or 8 GPUs trains on the same global batches (unlike
DistributedSampler's strided split, where the global batch depends on the world size).

The last, partial global batch (``N mod batch_size`` images) is kept, as LDAM-DRW's DataLoader keeps it
(docs/decisions.md, decision 4), unless the config asks for ``drop_last``. Every rank must take the same number
of steps and get an equal slice (DDP averages the ranks' gradients), so the partial batch is cut to a
multiple of ``world_size`` (at most ``world_size - 1`` images left out; none in one process), and it
is left out whole when that leaves fewer than 2 images per rank: BatchNorm would normalise a single
image by its own statistics and feed them into its running estimates. :func:`global_batch_sizes` is
the rule.

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


# a rank's slice of the last, partial global batch must hold at least this many images (BatchNorm)
MIN_LOCAL_BATCH = 2


def global_batch_sizes(n: int, batch_size: int, world_size: int = 1, drop_last: bool = False) -> list[int]:
    """The sizes of one epoch's global batches over ``n`` training images (rule in the module docstring).

    ValueError when no batch is left (a training set smaller than ``2 * world_size`` images, or smaller
    than one global batch with ``drop_last``).
    """
    local_batch_size(batch_size, world_size)  # checks that world_size divides batch_size
    full, rest = divmod(n, batch_size)
    rest = 0 if drop_last else rest - rest % world_size
    if rest < MIN_LOCAL_BATCH * world_size:
        rest = 0
    sizes = [batch_size] * full + ([rest] if rest else [])
    if not sizes:
        raise ValueError(f"training set of {n} images gives no training batch (global batch {batch_size}, "
                         f"{world_size} rank(s), drop_last={drop_last}); lower batch_size")
    return sizes


def rank_positions(sizes: list[int], rank: int, world_size: int) -> torch.Tensor:
    """(sum(sizes) // world_size,) int64 positions in the epoch order that ``rank`` reads.

    Global batch ``b`` (of ``sizes[b]`` images) covers the next ``sizes[b]`` positions of the epoch
    order; rank ``r`` reads the ``r``-th of its ``world_size`` equal slices.
    """
    check_rank(rank, world_size)
    parts, start = [], 0
    for size in sizes:
        local = size // world_size
        parts.append(torch.arange(start + rank * local, start + (rank + 1) * local, dtype=torch.int64))
        start += size
    return torch.cat(parts)


def contiguous_shard(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank's contiguous block of ``n`` items; sizes differ by at most one."""
    check_rank(rank, world_size)
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class GlobalBatchSampler(Sampler):
    """Train sampler for DataLoaders: yields this rank's slices of the (seed, epoch) global batches.

    Use with ``DataLoader(batch_size=batch_size // world_size)`` (``drop_last`` left False): every slice
    but the last partial one has that size, so each DataLoader batch is this rank's slice of one global
    batch.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 drop_last: bool = False):
        check_rank(rank, world_size)
        self.n, self.rank, self.world_size, self.seed = n, rank, world_size, seed
        self.sizes = global_batch_sizes(n, batch_size, world_size, drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.sizes) // self.world_size

    def __iter__(self) -> Iterator[int]:
        perm = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))  # (N,)
        positions = rank_positions(self.sizes, self.rank, self.world_size)
        return iter(perm[positions].tolist())


class ShardSampler(Sampler):
    """Evaluation sampler: this rank's contiguous block, in order, no padding."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.start, self.stop = contiguous_shard(n, rank, world_size)

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))
