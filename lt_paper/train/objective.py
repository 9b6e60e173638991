"""The training objective: one loss for a plain network, eq. 8 for the MoE, plus KD and diversity.

Kept apart from the loop so that the composition of the paper's terms is readable in one place:

* plain network: ``L(l)``;
* MoE before the router switches on: ``sum_k L(l^k)`` (the aggregate is the experts' mean and is not
  supervised: "the router is not added to the training until the last learning rate decay");
* MoE from then on, eq. 8: ``sum_k L(l^k) + L(sum_k w^k l^k)`` (the mean router of Table 5 uses the
  same objective with w fixed at 1/K). ``aggregate_loss=False`` drops the second term: vanilla RIDE
  (Table 5's RIDE*, "the vanilla RIDE (without knowledge distillation)") supervises its experts only;
* RIDE-style experts add RIDE's diversity term ``diversity_weight * sum_k T^2 KL(ref || expert_k)``,
  whose reference ``ref`` is the model's output as in RIDE: the experts' mean until the router switches
  on, the routed logits from then on;
* distillation (decision 6) adds ``T^2 KL(teacher || student)`` on the s-scaled logits.
"""

from __future__ import annotations

import torch

from ..losses import DistillationLoss, ride_diversity_loss
from ..models import ModelOutput


class Objective:
    def __init__(self, loss, diversity_weight: float = 0.0, diversity_temperature: float = 1.0,
                 distill_temperature: float | None = None, aggregate_loss: bool = True):
        self.loss = loss
        self.scale = float(loss.scale)
        self.diversity_weight = diversity_weight
        self.diversity_temperature = diversity_temperature
        self.distill = DistillationLoss(distill_temperature) if distill_temperature else None
        self.aggregate_loss = aggregate_loss

    def __call__(self, out: ModelOutput, targets: torch.Tensor, class_weight: torch.Tensor | None,
                 router_active: bool, teacher_logits: torch.Tensor | None = None) -> torch.Tensor:
        if out.expert_logits is None:
            total = self.loss(out.logits, targets, weight=class_weight)
        else:
            num_experts = out.expert_logits.shape[1]
            total = sum(self.loss(out.expert_logits[:, k], targets, weight=class_weight)
                        for k in range(num_experts))
            if router_active and self.aggregate_loss:
                total = total + self.loss(out.logits, targets, weight=class_weight)
            if self.diversity_weight:
                # before the switch-on the output is exactly the experts' mean: keep the mean itself
                reference = self.scale * out.logits.float() if router_active else None  # (N, C)
                total = total + self.diversity_weight * ride_diversity_loss(
                    self.scale * out.expert_logits.float(), self.diversity_temperature, reference)
        if teacher_logits is not None:
            total = total + self.distill(self.scale * out.logits.float(), self.scale * teacher_logits.float())
        return total
