"""``make_loaders``: train and test loaders yielding ``(images, labels, indices)`` on the device.

"array" data (CIFAR-LT, digits): the whole uint8 set is moved to ``device`` once and every batch is
gathered, cropped, flipped and normalised there. At CIFAR size the step is launch-bound and a DataLoader
with workers is slower than indexing tensors already in memory (measured on the 2-core build machines;
docs/design.md, "Speed").

"files" data (ImageNet-LT, iNat-2018, Places-LT): a torch DataLoader with the samplers of
``sharding.py`` and PIL transforms in worker processes. To keep an epoch a pure function of
(seed, epoch) whatever ``num_workers`` is, the augmentation of sample ``i`` runs under a private RNG
seeded by (seed, epoch, i).

Both: the train order comes from ``epoch_seed(seed, epoch)``; the GLOBAL batch is ``batch_size`` and rank
``r`` gets the ``r``-th slice of each global batch; the last, partial global batch is kept as LDAM-DRW
keeps it, unless ``drop_last`` (``sharding.global_batch_sizes``: cut to a multiple of the world size,
left out when a rank would get fewer than 2 images). ``images_per_epoch``: the images one epoch trains
on, over all ranks. The test loader gives each rank one
contiguous block without padding; ``eval_batch_size`` is per rank (default twice the per-rank training
batch). ``images`` float32 (B, C, H, W) normalised, ``labels`` int64 (B,), ``indices`` int64 (B,) dataset
indices, all three on ``device``.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .augment import crop_flip, normalize, sample_crop_flip
from .containers import ArrayDataset, Augment, LongTailData
from .sharding import (GlobalBatchSampler, ShardSampler, check_rank, contiguous_shard, epoch_generator,
                       epoch_seed, global_batch_sizes, local_batch_size, rank_positions)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _stats(values, device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # (1, C, 1, 1)


class ArrayTrainLoader:
    """Shuffled, augmented, rank-sliced global batches of an ``ArrayDataset`` held on ``device``."""

    def __init__(self, data: ArrayDataset, batch_size: int, device, mean, std, augment: Augment,
                 rank: int = 0, world_size: int = 1, seed: int = 0, drop_last: bool = False):
        check_rank(rank, world_size)
        self.sizes = global_batch_sizes(len(data), batch_size, world_size, drop_last)  # global batches
        self.images_per_epoch = sum(self.sizes)
        self.device = torch.device(device)
        self.images = data.images.to(self.device)  # (N, C, H, W) uint8, moved once
        self.labels = data.labels.to(self.device)  # (N,) int64
        self.mean, self.std = _stats(mean, self.device), _stats(std, self.device)
        self.augment = augment
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[Batch]:
        n, _, height, width = self.images.shape
        generator = epoch_generator(self.seed, self.epoch)
        perm = torch.randperm(n, generator=generator)  # (N,) epoch order
        # one crop/flip draw per epoch position, for every rank alike: independent of world_size
        offsets, flips = sample_crop_flip(n, generator, (height, width), self.augment.pad,
                                          self.augment.crop, self.augment.flip)  # (N, 2), (N,)
        positions = rank_positions(self.sizes, self.rank, self.world_size)
        order = perm[positions].to(self.device)  # (this rank's images,)
        offsets, flips = offsets[positions].to(self.device), flips[positions].to(self.device)
        start = 0
        for size in self.sizes:
            part = slice(start, start + size // self.world_size)
            start = part.stop
            idx = order[part]  # (B,)
            images = crop_flip(self.images[idx], offsets[part], flips[part], self.augment.pad,
                               self.augment.crop)  # (B, C, crop, crop) uint8
            yield normalize(images, self.mean, self.std), self.labels[idx], idx


class ArrayTestLoader:
    """This rank's contiguous block of an ``ArrayDataset``, in order, normalised, no augmentation."""

    def __init__(self, data: ArrayDataset, batch_size: int, device, mean, std, rank: int = 0,
                 world_size: int = 1):
        self.start, self.stop = contiguous_shard(len(data), rank, world_size)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.images = data.images[self.start:self.stop].to(self.device)  # (n_shard, C, H, W) uint8
        self.labels = data.labels[self.start:self.stop].to(self.device)  # (n_shard,)
        self.mean, self.std = _stats(mean, self.device), _stats(std, self.device)

    def set_epoch(self, epoch: int) -> None:
        """Nothing depends on the epoch at test time; accepted for a uniform loader interface."""

    def __len__(self) -> int:
        return -(-(self.stop - self.start) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for lo in range(0, self.stop - self.start, self.batch_size):
            hi = min(lo + self.batch_size, self.stop - self.start)
            idx = torch.arange(self.start + lo, self.start + hi, device=self.device)  # (B,)
            yield normalize(self.images[lo:hi], self.mean, self.std), self.labels[lo:hi], idx


class IndexedDataset(Dataset):
    """``dataset[i] -> (image, label, i)``; with ``seed`` set, sample i's transform uses its own RNG.

    The RNG is seeded by (seed, epoch, i) inside ``torch.random.fork_rng`` so the global RNG of the
    worker is left as it was and the augmentation does not depend on which worker ran it.
    """

    def __init__(self, dataset: Dataset, seed: int | None = None):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        if self.seed is None:
            image, label = self.dataset[i]
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(epoch_seed(self.seed, self.epoch, i))
                image, label = self.dataset[i]
        return image, label, i


class FileLoader:
    """A DataLoader over a split-file dataset whose batches are moved to ``device``."""

    def __init__(self, dataset: IndexedDataset, sampler, batch_size: int, device, num_workers: int):
        self.device = torch.device(device)
        self.dataset, self.sampler = dataset, sampler
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                 pin_memory=self.device.type == "cuda")

    @property
    def images_per_epoch(self) -> int:
        """Training images per epoch over all ranks (a train loader: its sampler is a GlobalBatchSampler)."""
        return sum(self.sampler.sizes)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for images, labels, indices in self.loader:
            yield (images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True),
                   indices.to(self.device, non_blocking=True))


def make_loaders(data: LongTailData, batch_size: int, device, rank: int = 0, world_size: int = 1,
                 seed: int = 0, num_workers: int = 4, eval_batch_size: int | None = None,
                 drop_last: bool = False):
    """``(train_loader, test_loader)`` for ``data`` (contract in the module docstring).

    ``batch_size`` is the global training batch (ValueError unless ``world_size`` divides it);
    ``drop_last`` leaves out the last, partial global batch (config key ``drop_last``);
    ``eval_batch_size`` is per rank and defaults to ``2 * batch_size // world_size``. ``num_workers``
    only matters for "files" data.
    """
    local = local_batch_size(batch_size, world_size)
    check_rank(rank, world_size)
    eval_batch_size = eval_batch_size or 2 * local
    if data.kind == "array":
        train = ArrayTrainLoader(data.train, batch_size, device, data.mean, data.std, data.augment,
                                 rank, world_size, seed, drop_last)
        test = ArrayTestLoader(data.test, eval_batch_size, device, data.mean, data.std, rank, world_size)
        return train, test
    if data.kind == "files":
        sampler = GlobalBatchSampler(len(data.train), batch_size, rank, world_size, seed, drop_last)
        train = FileLoader(IndexedDataset(data.train, seed=seed), sampler, local, device, num_workers)
        test = FileLoader(IndexedDataset(data.test), ShardSampler(len(data.test), rank, world_size),
                          eval_batch_size, device, num_workers)
        return train, test
    raise ValueError(f"{data.name}: unknown data kind {data.kind!r}; expected 'array' or 'files'")
