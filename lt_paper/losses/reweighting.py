"""Class-balanced weights (Cui et al. 2019) for deferred re-weighting (DRW, docs/decisions.md, decision 4).

``w_j = (1 - beta) / (1 - beta^{S_j})`` (the inverse "effective number" of samples), normalised so that
``sum_j w_j = C`` as in LDAM-DRW, so that switching DRW on keeps the loss on the same scale on average
over classes. beta = 0.9999 is LDAM-DRW's value; beta = 0 gives all-ones (no re-weighting).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .validation import ClassCounts, as_class_counts


def class_balanced_weights(class_counts: ClassCounts, beta: float = 0.9999) -> Tensor:
    """Per-class weights (C,) float32, summing to C, largest for the rarest class (for beta > 0)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    counts = as_class_counts(class_counts)  # (C,) float64
    log_beta = torch.log(torch.tensor(beta, dtype=torch.float64))  # -inf for beta = 0: all-ones weights
    effective_num = -torch.expm1(counts * log_beta)  # (C,) 1 - beta^n, accurate when beta^n is near 1
    weights = (1.0 - beta) / effective_num  # (C,)
    return (weights / weights.sum() * counts.numel()).float()
