"""Knowledge distillation (docs/decisions.md, decision 6) and RIDE's expert-diversity term.

Both operate on s-scaled logits (``loss.scale * model_logits``): the softmax the student should match
is the one the loss trains, and for the cosine losses that is softmax(30 * cos), not softmax(cos).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _kl_batchmean(target_log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(P || Q) summed over the last dim and every leading dim but the first, divided by N."""
    return F.kl_div(log_q, target_log_p, reduction="sum", log_target=True) / target_log_p.shape[0]


class DistillationLoss(nn.Module):
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, batch mean; teacher detached.

    T = 2 (docs/decisions.md, decision 6). The T^2 factor (Hinton et al.) keeps the gradient magnitude of the soft
    term independent of T, so it adds to the student's own ALA loss without re-tuning a weight. The
    teacher is a frozen, trained MoE: it must receive no gradient, hence the detach.
    ``scale`` is 1.0 because the inputs are already scaled logits.
    """

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if not temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.scale = 1.0

    def forward(self, student_scaled_logits: Tensor, teacher_scaled_logits: Tensor) -> Tensor:
        """(N, C), (N, C) -> float32 scalar."""
        if student_scaled_logits.shape != teacher_scaled_logits.shape or student_scaled_logits.ndim != 2:
            raise ValueError(
                f"student and teacher logits must both be (N, C), got {tuple(student_scaled_logits.shape)} "
                f"and {tuple(teacher_scaled_logits.shape)}"
            )
        t = self.temperature
        log_q = F.log_softmax(student_scaled_logits.float() / t, dim=1)  # (N, C) student
        log_p = F.log_softmax(teacher_scaled_logits.detach().float() / t, dim=1)  # (N, C) teacher
        return t * t * _kl_batchmean(log_p, log_q)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def ride_diversity_loss(
    expert_scaled_logits: Tensor, temperature: float = 1.0, reference_scaled_logits: Tensor | None = None
) -> Tensor:
    """RIDE's diversity term: ``sum_k T^2 KL(softmax(ref / T) || softmax(expert_k / T))``, batch mean.

    ``expert_scaled_logits`` (N, K, C); ``ref`` is the mean over experts (N, C) unless
    ``reference_scaled_logits`` gives the aggregate another way (RIDE uses its model output, which is
    that mean). As in RIDE's code the reference is detached (computed under ``no_grad`` there): the term
    moves each expert relative to a fixed target. For the mean reference this changes nothing (the
    gradient through the mean cancels exactly: sum_k (log p - log q_k) is constant over classes), but it
    matters for any other reference, e.g. a router aggregate. The engine multiplies the result by
    RIDE's factor -0.2, so minimising the total pushes experts apart. RIDE's class-dependent
    temperature (during DRW) is not modelled: ``temperature`` is one scalar.
    """
    if expert_scaled_logits.ndim != 3:
        shape = tuple(expert_scaled_logits.shape)
        raise ValueError(f"expert_scaled_logits must be (N, K, C), got shape {shape}")
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    experts = expert_scaled_logits.float()  # (N, K, C)
    if reference_scaled_logits is None:
        ref = experts.mean(dim=1)  # (N, C)
    else:
        ref = reference_scaled_logits.float()  # (N, C)
    if ref.shape != (experts.shape[0], experts.shape[2]):
        raise ValueError(f"reference_scaled_logits must be (N, C), got shape {tuple(ref.shape)}")
    t = float(temperature)
    log_p = F.log_softmax(ref.detach() / t, dim=1).unsqueeze(1).expand_as(experts)  # (N, K, C)
    log_q = F.log_softmax(experts / t, dim=2)  # (N, K, C)
    return t * t * _kl_batchmean(log_p, log_q)
