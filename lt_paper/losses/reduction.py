"""The one reduction every loss uses, and the base class that applies it.

Contract of every loss in ``lt_paper.losses``: ``loss(logits, targets, weight=None)``; with class
weights ``w`` (DRW, docs/decisions.md, decision 4) the batch loss is ``sum_i w[y_i] l_i / sum_i w[y_i]``, which is
exactly what ``F.cross_entropy(..., weight=w)`` computes and what LDAM-DRW's code relies on; without
weights it is the plain mean. Keeping it in one place makes every loss (CE, focal, LA, ALA and its
variants) reweight identically.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .validation import check_logits_targets, check_weight


def weighted_mean(per_sample: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
    """``sum_i w[y_i] l_i / sum_i w[y_i]`` (plain mean when ``weight`` is None); float32 scalar."""
    per_sample = per_sample.float()  # (N,)
    if weight is None:
        return per_sample.mean()
    w = weight.to(device=per_sample.device, dtype=torch.float32)[targets]  # (N,)
    return (w * per_sample).sum() / w.sum()


class ClassificationLoss(nn.Module):
    """Base of the per-sample classification losses: validate, cast to float32, reduce.

    Subclasses implement ``_per_sample(logits (N, C) float32, targets (N,)) -> (N,)`` and set
    ``scale`` (the factor that turns the model's logits into softmax logits: 30 for the cosine losses,
    1 for the linear ones; evaluation uses ``softmax(scale * logits)``) and ``num_classes`` (None when
    the loss does not depend on C).

    Logits arriving in bfloat16/float16 (autocast) are cast to float32 here: the cosine losses multiply
    by s = 30, so a bfloat16 rounding of 4e-3 in a cosine would become 0.1 in a logit.
    """

    scale: float = 1.0
    num_classes: int | None = None
    # Per-call check that every target is in [0, C): one host sync per call. The training engine
    # checks the dataset's labels once (``check_label_range``) and sets this to False, so that an
    # epoch runs without host synchronisation; direct users keep the clear error.
    validate_labels: bool = True

    def _per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def per_sample_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Unreduced loss (N,) in float32, after the input checks."""
        check_logits_targets(logits, targets, self.num_classes, check_range=self.validate_labels)
        return self._per_sample(logits.float(), targets.long())

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
        """Scalar loss; ``weight`` (C,) optional class weights (DRW), see ``weighted_mean``."""
        per_sample = self.per_sample_loss(logits, targets)  # (N,)
        check_weight(weight, logits.shape[1])
        return weighted_mean(per_sample, targets.long(), weight)
