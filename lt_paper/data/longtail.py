"""Long-tailed class sizes, shot groups and the long-tailed subsampling rule.

docs/decisions.md, decision 3 (CIFAR-LT): class ``i`` of ``C`` keeps ``n_i = int(n_max * IF ** (-i / (C - 1)))``
images, and the images are chosen as LDAM-DRW's ``IMBALANCECIFAR10`` chooses them (``rand_number=0``):
``numpy.random.seed(0)`` once, then for each class in label order shuffle that class's indices with
``np.random.shuffle`` and keep the first ``n_i``. Every published CIFAR-LT number was measured on this
exact subset, so matching the RNG stream (not just the sizes) keeps our runs comparable with them.

docs/decisions.md, decision 2 (shot groups): many ``n > 100``, medium ``20 <= n <= 100``, few ``n < 20``, as every
published long-tailed codebase computes it (OLTR's rule; ImageNet-LT: 385 / 479 / 136 classes). The
paper's Table 2 writes ``n <= 20`` for few (385 / 469 / 146); ``few_inclusive=True`` gives that rule,
and results say which one they used. The two rules are named here, once, for the whole package.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Sequence

import numpy as np

SHOT_GROUPS = ("many", "medium", "few")
OLTR_SHOT_RULE = MappingProxyType({"many": 100, "few": 20, "few_inclusive": False})
"""many n > 100, few n < 20: the published codebases' rule and the default of ``shot_groups``."""
TABLE2_SHOT_RULE = MappingProxyType({"many": 100, "few": 20, "few_inclusive": True})
"""many n > 100, few n <= 20: the paper's Table 2 (the ImageNet-LT and iNaturalist presets)."""


def lt_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """Per-class training sizes of an exponentially long-tailed set (docs/decisions.md, decision 3).

    ``n_i = int(n_max * imbalance ** (-i / (num_classes - 1)))`` for ``i = 0 .. num_classes - 1``, so
    class 0 keeps ``n_max`` images and the last class ``n_max / imbalance`` (truncated). CIFAR-10 at
    IF 100 sums to 12,406 and CIFAR-100 to 10,847 (the sizes every CIFAR-LT paper reports).
    """
    if num_classes < 2:
        raise ValueError(f"lt_counts needs num_classes >= 2, got {num_classes}")
    if imbalance < 1:
        raise ValueError(f"lt_counts needs imbalance >= 1 (n_max / n_min), got {imbalance}")
    return [int(n_max * imbalance ** (-i / (num_classes - 1))) for i in range(num_classes)]


def shot_groups(train_counts: Sequence[int], many: int = OLTR_SHOT_RULE["many"],
                few: int = OLTR_SHOT_RULE["few"],
                few_inclusive: bool = OLTR_SHOT_RULE["few_inclusive"]) -> dict[str, np.ndarray]:
    """Boolean class masks ``{"many", "medium", "few"}`` by training-set size (docs/decisions.md, decision 2).

    many: ``n > many``; few: ``n < few`` (``n <= few`` with ``few_inclusive``, the paper's Table 2
    wording); medium: every other class. The three masks partition the classes.
    """
    counts = np.asarray(train_counts, dtype=np.int64)  # (C,)
    many_mask = counts > many
    few_mask = counts <= few if few_inclusive else counts < few
    medium_mask = ~(many_mask | few_mask)
    return {"many": many_mask, "medium": medium_mask, "few": few_mask}


def long_tail_indices(labels: Sequence[int], counts: Sequence[int], seed: int = 0) -> np.ndarray:
    """Indices of the long-tailed subset: LDAM-DRW's per-class shuffle-and-keep-first rule (decision 3).

    ``labels``: (N,) class of every image of the balanced source, in source order. For each class ``c``
    in label order, the positions of class ``c`` are shuffled with one ``RandomState(seed)`` (the same
    stream as ``numpy.random.seed(seed)`` + ``np.random.shuffle``, without touching numpy's global RNG)
    and the first ``counts[c]`` are kept. Returned in LDAM's order: class 0's picks, then class 1's, ...
    """
    labels = np.asarray(labels, dtype=np.int64)  # (N,)
    rng = np.random.RandomState(seed)
    picked = []
    for c, n in enumerate(counts):
        idx = np.where(labels == c)[0]
        if n < 1:
            raise ValueError(f"class {c} would keep {n} images: the imbalance factor is too large for "
                             f"this n_max (every class needs at least one training image)")
        if n > len(idx):
            raise ValueError(f"class {c} has {len(idx)} images but the long-tailed profile asks for {n}")
        rng.shuffle(idx)
        picked.append(idx[:n])
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
