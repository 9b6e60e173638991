"""``digits_lt``: a long-tailed set cut from scikit-learn's digits, the smoke profile's real data.

scikit-learn ships the 1,797 8x8 handwritten digits (10 classes, about 180 per class) inside the
package, so this set needs no download and trains on a CPU in seconds. It follows docs/decisions.md, decision 3
like CIFAR-LT:

- test (balanced): the first 40 images of each class in dataset order, kept in dataset order;
- train: from the remaining images (at least 134 per class), ``lt_counts(130, 10, imbalance)`` picked
  with the LDAM-DRW rule (numpy seed 0, per-class shuffle, keep the first ``n_i``);
- pixels 0..16 scaled to 0..255 uint8 and replicated to 3 channels, so the CIFAR ResNets run unchanged;
- mean/std from the training split (the CIFAR constants would be wrong for white-on-black digits);
- augmentation: crop 8 with zero padding 1 and NO flip (a mirrored 2, 3, 7 ... is not that digit).
"""

from __future__ import annotations

import numpy as np
import torch

from .containers import ArrayDataset, Augment, LongTailData
from .longtail import long_tail_indices, lt_counts

NUM_CLASSES = 10
TEST_PER_CLASS = 40
N_MAX = 130


def load_digits_lt(imbalance: float = 100, many: int = 100, few: int = 20) -> LongTailData:
    """The digits long-tailed set as an "array" LongTailData (see the module docstring)."""
    from sklearn.datasets import load_digits  # imported here: only this dataset needs scikit-learn

    digits = load_digits()
    labels = digits.target.astype(np.int64)  # (1797,)
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    images = np.repeat(pixels[:, None], 3, axis=1)  # (1797, 3, 8, 8)

    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(NUM_CLASSES):
        is_test[np.flatnonzero(labels == c)[:TEST_PER_CLASS]] = True
    test_idx = np.flatnonzero(is_test)  # dataset order
    pool_idx = np.flatnonzero(~is_test)  # candidates for the long-tailed train set, dataset order

    counts = lt_counts(N_MAX, NUM_CLASSES, imbalance)
    train_idx = pool_idx[long_tail_indices(labels[pool_idx], counts, seed=0)]

    train_images = images[train_idx]
    scaled = train_images.astype(np.float64) / 255.0  # (N, 3, 8, 8)
    mean = tuple(float(m) for m in scaled.mean(axis=(0, 2, 3)))
    std = tuple(float(s) for s in scaled.std(axis=(0, 2, 3)))

    def to_dataset(idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(torch.from_numpy(np.ascontiguousarray(images[idx])), torch.from_numpy(labels[idx]))

    return LongTailData(
        name="digits_lt", num_classes=NUM_CLASSES, class_names=[str(c) for c in range(NUM_CLASSES)],
        train_counts=counts, train=to_dataset(train_idx), test=to_dataset(test_idx), kind="array",
        mean=mean, std=std, augment=Augment(crop=8, pad=1, flip=False), many=many, few=few,
        info={"source": "sklearn.datasets.load_digits", "imbalance": imbalance, "n_max": N_MAX,
              "test_per_class": TEST_PER_CLASS, "train_source_indices": train_idx.tolist(),
              "test_source_indices": test_idx.tolist(),
              "sampling": "LDAM-DRW: numpy seed 0, per-class shuffle, keep first n_i (docs/decisions.md, decision 3)"})
