"""The data containers every loader returns: ``Augment``, ``ArrayDataset`` and ``LongTailData``.

Two kinds of data exist: "array" sets (CIFAR-LT, digits) that fit in device memory as one
uint8 tensor and are augmented on the device, and "files" sets (ImageNet-LT, iNaturalist-2018, Places-LT)
whose images stay on disk and go through PIL transforms in DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .longtail import OLTR_SHOT_RULE, shot_groups


@dataclass(frozen=True)
class Augment:
    """Training augmentation of a dataset.

    Array kind: zero-pad by ``pad`` then take a random ``crop`` x ``crop`` window, then a random
    horizontal flip when ``flip`` (LDAM-DRW's CIFAR recipe: crop 32, pad 4, flip; docs/decisions.md, decision 4).
    Files kind: ``random_resized`` means RandomResizedCrop(crop) + flip, done by the dataset's transform.
    """

    crop: int
    pad: int = 0
    flip: bool = True
    random_resized: bool = False


class ArrayDataset(Dataset):
    """A whole image set as tensors: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,).

    Indexing returns ``(uint8 image (C, H, W), int label)``; the device loader never indexes one sample
    at a time, it gathers whole batches from ``images``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be int64 ({images.shape[0]},), got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        self.images = images  # (N, C, H, W) uint8
        self.labels = labels  # (N,) int64

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


@dataclass
class LongTailData:
    """A long-tailed training set with its (balanced) test set and everything a run needs to know.

    ``train_counts[c]`` is the number of training images of class ``c``; ``many``/``few`` are the shot
    thresholds (docs/decisions.md, decision 2) used by ``groups``. ``info`` records provenance (source path, imbalance
    factor, sampling seed, split files) for the run records.
    """

    name: str
    num_classes: int
    class_names: list[str]
    train_counts: list[int]
    train: Any
    test: Any
    kind: str  # "array" | "files"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment
    many: int = OLTR_SHOT_RULE["many"]
    few: int = OLTR_SHOT_RULE["few"]
    info: dict = field(default_factory=dict)

    def groups(self, few_inclusive: bool = False) -> dict[str, np.ndarray]:
        """Shot-group class masks of this training set (``shot_groups`` with this data's thresholds)."""
        return shot_groups(self.train_counts, many=self.many, few=self.few, few_inclusive=few_inclusive)
