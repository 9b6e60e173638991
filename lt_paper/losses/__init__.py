"""Losses of "Improving Long-Tailed Classification from Instance Level" and its baselines.

Every classification loss is called ``loss(logits, targets, weight=None)`` on the model's
``ModelOutput.logits`` (unscaled cosines for the cosine losses) and has ``scale``: evaluation computes
probabilities as ``softmax(scale * logits)``. ``weight`` (C,) are DRW class weights, reduced as
``sum_i w[y_i] l_i / sum_i w[y_i]``. Inputs are computed in float32 whatever their dtype.

Modules: ``terms`` (eq. 3, eq. 4, LDAM margins), ``ala`` (eq. 5-6 and the Table 4 variants),
``baselines`` (CE, focal, logit adjustment), ``reweighting`` (class-balanced DRW weights),
``distillation`` (KD, RIDE diversity), ``registry`` (``build_loss`` by name), ``figure2`` (the
curves of Figure 2).

Mixture of experts (paper eq. 8): call the same loss on every expert's logits and on the aggregate,
``L = sum_k loss(l^k, y) + loss(l, y)``; the instance term of each call then reads that output's own
target cosine.

Imports no other package of ``lt_paper`` (torch only).
"""

from .ala import CLASS_TERMS, ALALoss
from .baselines import CrossEntropyLoss, FocalLoss, LogitAdjustedLoss
from .distillation import DistillationLoss, ride_diversity_loss
from .figure2 import adjusting_terms, target_logit_gradients
from .reduction import ClassificationLoss, weighted_mean
from .registry import LOSS_HEADS, LOSS_NAMES, build_loss
from .reweighting import class_balanced_weights
from .terms import ala_class_term, instance_term, ldam_margins

__all__ = [
    "ALALoss",
    "CLASS_TERMS",
    "ClassificationLoss",
    "CrossEntropyLoss",
    "DistillationLoss",
    "FocalLoss",
    "LOSS_HEADS",
    "LOSS_NAMES",
    "LogitAdjustedLoss",
    "adjusting_terms",
    "ala_class_term",
    "build_loss",
    "class_balanced_weights",
    "instance_term",
    "ldam_margins",
    "ride_diversity_loss",
    "target_logit_gradients",
    "weighted_mean",
]
