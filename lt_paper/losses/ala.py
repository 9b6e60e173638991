"""Adaptive Logit Adjustment (ALA) loss, paper eq. 5-6, and every Table 4 variant as one class.

    L = -1/N sum_i log( e^{s (cos_iy - A_i)} / (e^{s (cos_iy - A_i)} + sum_{j != y_i} e^{s cos_ij}) )  (eq. 6)
    A_i = A_ins(cos_iy) * A_cls[y_i],  cos_iy = cos_{i,y_i}                                 (eq. 5)

Only the target logit is adjusted (following LDAM), and s = 30 is applied here and nowhere else
(docs/decisions.md, decision 1): the model returns unscaled cosines because A_ins reads them.

The variants of Table 4 are choices of the two factors, not separate classes:

=====================  =========================================================  =========
Table 4 row            constructor                                                 A
=====================  =========================================================  =========
#2 LDAM                ``ALALoss(c, instance_term=False, class_term="ldam")``      m_y
#3 A_ins               ``ALALoss(c, instance_term=True,  class_term=None)``        A_ins
#4 A_cls               ``ALALoss(c, instance_term=False, class_term="ala")``       A_cls
#5 Focal + A_cls       ``ALALoss(c, instance_term=False, class_term="ala",         A_cls
                       focal_gamma=g)``
#6 LDAM + A_ins        ``ALALoss(c, instance_term=True,  class_term="ldam")``      A_ins m_y
#7 ALA                 ``ALALoss(c)``                                              A_ins A_cls
cosine CE              ``ALALoss(c, instance_term=False, class_term=None)``        0
=====================  =========================================================  =========
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import terms
from .baselines import focal_from_cross_entropy
from .reduction import ClassificationLoss
from .validation import ClassCounts, as_class_counts, check_logits_targets

CLASS_TERMS = ("ala", "ldam", None)


class ALALoss(ClassificationLoss):
    """ALA loss (eq. 6) on unscaled cosine logits; LDAM and the Table 4 ablations by its switches.

    Args:
        class_counts: training samples per class (C,), all positive.
        s: the logit scale (30 in the paper and LDAM); ``scale`` equals it.
        instance_term: multiply by A_ins = (1 - cos_y) / 2 (eq. 3, detached). When False, A_ins = 1.
        class_term: "ala" (eq. 4), "ldam" (m_j = C / S_j^(1/4), max ``max_margin``) or None (A_cls = 1).
            With ``instance_term=False`` and ``class_term=None`` there is no adjustment at all (A = 0):
            cross-entropy on s * cos.
        focal_gamma: > 0 multiplies each sample's CE on the adjusted logits by (1 - p_y)^gamma, p the
            adjusted softmax (Table 4 #5, "Focal + A_cls").
        max_margin: LDAM's largest margin (0.5), only used with ``class_term="ldam"``.

    The per-class factor is a non-persistent buffer ``class_adjustment`` (C,), so ``.to(device)`` moves
    it and checkpoints do not carry it (it is a pure function of the counts).
    """

    def __init__(
        self,
        class_counts: ClassCounts,
        s: float = 30.0,
        instance_term: bool = True,
        class_term: str | None = "ala",
        focal_gamma: float = 0.0,
        max_margin: float = 0.5,
    ) -> None:
        super().__init__()
        if class_term not in CLASS_TERMS:
            raise ValueError(f"class_term must be one of {CLASS_TERMS}, got {class_term!r}")
        if not s > 0.0:
            raise ValueError(f"s must be > 0, got {s}")
        if not focal_gamma >= 0.0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        counts = as_class_counts(class_counts)  # (C,)
        self.num_classes = int(counts.numel())
        self.scale = float(s)
        self.use_instance_term = bool(instance_term)
        self.class_term = class_term
        self.focal_gamma = float(focal_gamma)
        self.max_margin = float(max_margin)
        if class_term == "ala":
            per_class = terms.ala_class_term(counts)
        elif class_term == "ldam":
            per_class = terms.ldam_margins(counts, max_margin)
        elif instance_term:
            per_class = torch.ones(self.num_classes)  # A = A_ins
        else:
            per_class = torch.zeros(self.num_classes)  # A = 0: plain CE on s * cos
        self.register_buffer("class_adjustment", per_class.float(), persistent=False)  # (C,)

    def target_adjustment(self, cos: Tensor, targets: Tensor) -> Tensor:
        """A_i = A_ins(cos_{i,y_i}) * A_cls[y_i] per sample (N,), float32, detached, in [0, 1]."""
        targets = targets.long()
        a = self.class_adjustment.float()[targets]  # (N,)
        if self.use_instance_term:
            target_cos = cos.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,)
            a = a * terms.instance_term(target_cos)
        return a

    def adjusted_logits(self, cos: Tensor, targets: Tensor) -> Tensor:
        """s * (cos - A one-hot(y)): the softmax logits of eq. 6 (N, C), float32; only (i, y_i) moves."""
        check_logits_targets(cos, targets, self.num_classes)
        return self._adjusted_logits(cos.float(), targets.long())

    def _adjusted_logits(self, cos: Tensor, targets: Tensor) -> Tensor:  # float32 (N, C), int64 (N,)
        a = self.target_adjustment(cos, targets)  # (N,)
        adjusted = cos.scatter_add(1, targets.unsqueeze(1), -a.unsqueeze(1))  # (N, C)
        return self.scale * adjusted

    def _per_sample(self, cos: Tensor, targets: Tensor) -> Tensor:  # (N, C), (N,) -> (N,)
        ce = F.cross_entropy(self._adjusted_logits(cos, targets), targets, reduction="none")
        return focal_from_cross_entropy(ce, self.focal_gamma)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, s={self.scale}, instance_term={self.use_instance_term}, "
            f"class_term={self.class_term!r}, focal_gamma={self.focal_gamma}"
            + (f", max_margin={self.max_margin}" if self.class_term == "ldam" else "")
        )
