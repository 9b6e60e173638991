"""The plain network (the paper's "single expert"): stem, every stage at full width, pool, head."""

from __future__ import annotations

from torch import Tensor, nn

from .heads import build_head
from .output import ModelOutput
from .stages import StagePlan, build_stages, global_pool


class PlainNetwork(nn.Module):
    """A full-width ResNet with one head, returning ``ModelOutput(logits, None, None, features)``.

    This is the baseline network of every single-expert row of the paper and the student of the
    distillation (docs/decisions.md, decision 6). ``features`` are the pooled last-stage features (N, D).
    State-dict layout: ``stem.*``, ``stages.<i>.<block>.*``, ``head.*``.
    """

    num_experts = 1

    def __init__(self, plan: StagePlan, num_classes: int, head: str = "linear", in_channels: int = 3) -> None:
        super().__init__()
        self.stem = plan.stem(in_channels)
        self.stages, channels = build_stages(plan, 0, plan.num_stages, plan.stem_channels)
        self.head = build_head(head, channels, num_classes)
        self.feature_dim = channels
        plan.init_weights(self)

    def forward(self, x: Tensor) -> ModelOutput:  # x: (N, C_in, H, W)
        features = global_pool(self.stages(self.stem(x)))  # (N, D)
        return ModelOutput(self.head(features), None, None, features)  # logits (N, C)
