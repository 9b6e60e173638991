"""Adjusting terms of the logit-adjustment losses: ALA's eq. 3 and eq. 4, and LDAM's margins.

A logit-adjustment loss (paper eq. 2) subtracts a positive term A from the target logit before the
softmax; everything that distinguishes LDAM, ALA and the Table 4 ablations is the choice of A:

- ``instance_term`` (eq. 3): ``A_ins = (1 - cos_y) / 2``, in [0, 1], large for hard samples (small
  target cosine). Detached: it is a per-sample weight on the margin, not a path for gradients (the
  paper: "we detach the gradient of cos theta_{iy_i}").
- ``ala_class_term`` (eq. 4): ``A_cls = log 2 / log(S_j / min S + 1)``, in (0, 1], exactly 1 for the
  rarest class, decreasing in S_j. The constant log 2 is what makes the rarest class reach 1.
- ``ldam_margins`` (Cao et al. 2019): ``m_j = C / S_j^(1/4)`` with C chosen so that ``max_j m_j`` is
  ``max_margin`` (0.5 as in LDAM-DRW).

All three are in units of cosine; the loss multiplies by s = 30 afterwards (docs/decisions.md, decision 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .validation import ClassCounts, as_class_counts


def instance_term(target_cos: Tensor) -> Tensor:
    """Eq. 3: ``A_ins = (1 - cos_y) / 2`` for target cosines of any shape; detached, float32, in [0, 1].

    The clamp only absorbs float rounding of normalised vectors (|cos| can exceed 1 by ~1e-7); the
    model contract is cos in [-1, 1].
    """
    return ((1.0 - target_cos.detach().float()) / 2.0).clamp(0.0, 1.0)


def ala_class_term(class_counts: ClassCounts) -> Tensor:
    """Eq. 4: ``A_cls[j] = log 2 / log(S_j / min S + 1)``, float32 (C,), in (0, 1], 1 at the rarest class."""
    counts = as_class_counts(class_counts)  # (C,) float64
    a_cls = math.log(2.0) / torch.log(counts / counts.min() + 1.0)  # (C,)
    return a_cls.float()


def ldam_margins(class_counts: ClassCounts, max_margin: float = 0.5) -> Tensor:
    """LDAM margins ``m_j = C / S_j^(1/4)`` with C such that ``max_j m_j = max_margin``; float32 (C,).

    ``max_margin = 0`` gives all-zero margins (LDAM then reduces to cross-entropy on s * cos).
    """
    if not max_margin >= 0.0:
        raise ValueError(f"max_margin must be >= 0, got {max_margin}")
    counts = as_class_counts(class_counts)  # (C,) float64
    m = counts.pow(-0.25)  # (C,)
    return (m * (max_margin / m.max())).float()
