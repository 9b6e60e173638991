"""Linear-head baselines: cross-entropy (eq. 1), focal loss, and Menon et al.'s logit-adjusted loss.

All three take the raw logits of a linear classifier, so their ``scale`` is 1.0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .reduction import ClassificationLoss
from .validation import ClassCounts, as_class_counts


def focal_from_cross_entropy(ce: Tensor, gamma: float) -> Tensor:
    """Softmax focal loss from per-sample CE: ``(1 - p)^gamma * CE`` with ``p = exp(-CE)`` (N,).

    ``1 - p`` is computed as ``-expm1(-CE)`` so easy samples (CE ~ 1e-8) keep their precision.
    """
    if gamma == 0.0:
        return ce
    return (-torch.expm1(-ce)).pow(gamma) * ce


class CrossEntropyLoss(ClassificationLoss):
    """Softmax cross-entropy on the raw logits (paper eq. 1; Table 4 #1, the CE baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0

    def _per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:  # (N, C), (N,) -> (N,)
        return F.cross_entropy(logits, targets, reduction="none")


class FocalLoss(ClassificationLoss):
    """Softmax focal loss (Lin et al. 2017) ``-(1 - p_y)^gamma log p_y`` on the raw logits.

    gamma defaults to 1.0, not Lin et al.'s 2.0: the long-tailed "Focal" baseline that the
    published CIFAR-LT tables compare with (70.4 / 38.4 on CIFAR-10/100-LT) is LDAM-DRW's, which trains the softmax focal loss
    with gamma = 1; Lin et al.'s 2.0 (with alpha balancing) was tuned for sigmoid dense detection.
    Figure 2(b) plots "the commonly used formulation" with gamma = 2 instead
    (``figure2.target_logit_gradients``); docs/decisions.md, decision 10 keeps the two apart.
    The focal factor is not detached, as in both reference implementations.
    """

    def __init__(self, gamma: float = 1.0) -> None:
        super().__init__()
        if not gamma >= 0.0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.scale = 1.0

    def _per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:  # (N, C), (N,) -> (N,)
        return focal_from_cross_entropy(F.cross_entropy(logits, targets, reduction="none"), self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


class LogitAdjustedLoss(ClassificationLoss):
    """Menon et al. (2021) logit-adjusted loss: CE on ``logits + tau * log(prior)``, every class.

    ``prior_j = S_j / sum S``. Unlike LDAM/ALA the adjustment touches all logits and the head is linear;
    at test time the plain logits are used (``scale`` 1.0), which is what makes the loss Fisher-consistent
    for the balanced error. tau = 1 is the paper's default; tau = 0 is cross-entropy.
    """

    def __init__(self, class_counts: ClassCounts, tau: float = 1.0) -> None:
        super().__init__()
        counts = as_class_counts(class_counts)  # (C,) float64
        self.tau = float(tau)
        self.scale = 1.0
        self.num_classes = int(counts.numel())
        log_prior = torch.log(counts / counts.sum())  # (C,)
        self.register_buffer("log_prior", log_prior.float(), persistent=False)  # (C,)

    def _per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:  # (N, C), (N,) -> (N,)
        adjusted = logits + self.tau * self.log_prior.float()  # (N, C)
        return F.cross_entropy(adjusted, targets, reduction="none")

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}"
