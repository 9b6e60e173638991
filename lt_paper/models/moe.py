"""The Mixture-of-Experts network of paper section 3.2 (docs/decisions.md, decision 5, following RIDE).

    x -> stem -> shared stages (trunk) --+--> expert 1: its own later stages (reduced width) -> pool -> head -> l^1
                                         +--> ...
                                         +--> expert K -> l^K
                                         +--> global pool -> router -> w (N, K)
    l = sum_k w^k l^k                                                   (paper eq. 7)

The trunk is the stem plus the first ``shared_stages`` stages (RIDE: stem + stage 1 for the CIFAR
ResNet-32, stem + stages 1-2 for ResNet-50 / ResNeXt-50). Each expert owns the remaining stages with
``expert_width`` (0.75: "channels reduced by a quarter") times the planes: ResNet-32 experts have 24 / 48
channels instead of 32 / 64, ResNet-50 experts 192 / 384 bottleneck planes instead of 256 / 512.

Router schedule: the paper adds the router "until the last learning rate decay" (``router_at``: docs/decisions.md,
decision 9). Until then the aggregate is exactly the mean of the experts and the router is not called
(so it gets no gradient); the engine calls ``set_router_active(True)`` at the switch-on, after which the
loss L = sum_k L(l^k) + L(l) (eq. 8) trains it end to end. This state is a plain Python bool, not saved in the
state dict: the engine sets it from the epoch (also after a resume). Router ``"mean"`` always gives 1/K.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .heads import build_head
from .output import ModelOutput
from .routers import build_router, uniform_weights
from .stages import StagePlan, build_stages, global_pool


class Expert(nn.Module):
    """One expert: its own stages (reduced width) -> global pool -> its own head."""

    def __init__(self, stages: nn.Sequential, head: nn.Module) -> None:
        super().__init__()
        self.stages = stages
        self.head = head

    def forward(self, trunk: Tensor) -> Tensor:  # (N, D_trunk, H, W) -> (N, C)
        return self.head(global_pool(self.stages(trunk)))


class MixtureOfExperts(nn.Module):
    """Shared trunk + K experts + router; ``forward`` returns ``ModelOutput`` with all four fields.

    ``features`` are the pooled trunk features (the router's input), ``expert_logits`` (N, K, C) the
    unscaled head outputs of the experts, ``router_weights`` (N, K) the w of eq. 7 and ``logits`` (N, C)
    their weighted sum. With K = 1 and ``expert_width`` = 1 this computes exactly the plain network.
    State-dict layout: ``stem.*``, ``shared.<i>.*``, ``experts.<k>.stages.<j>.*``, ``experts.<k>.head.*``,
    ``router.*``.
    """

    def __init__(
        self,
        plan: StagePlan,
        num_classes: int,
        num_experts: int,
        head: str = "cosine",
        router: str = "instance",
        shared_stages: int | None = None,
        expert_width: float = 0.75,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        shared_stages = plan.default_shared_stages if shared_stages is None else shared_stages
        if not 0 <= shared_stages < plan.num_stages:
            raise ValueError(
                f"shared_stages must be in 0..{plan.num_stages - 1} for this architecture, got {shared_stages}"
            )
        if expert_width <= 0:
            raise ValueError(f"expert_width must be > 0, got {expert_width}")
        self.num_experts = num_experts
        self.shared_stages = shared_stages
        self.expert_width = expert_width
        self.router_active = False

        self.stem = plan.stem(in_channels)
        self.shared, trunk_channels = build_stages(plan, 0, shared_stages, plan.stem_channels)
        experts = []
        for _ in range(num_experts):
            stages, channels = build_stages(plan, shared_stages, plan.num_stages, trunk_channels, expert_width)
            experts.append(Expert(stages, build_head(head, channels, num_classes)))
        self.experts = nn.ModuleList(experts)
        self.feature_dim = trunk_channels
        for part in (self.stem, self.shared, self.experts):
            plan.init_weights(part)
        self.router = build_router(router, trunk_channels, num_experts)  # zero-initialised, after init

    def set_router_active(self, active: bool) -> None:
        """Switch the router on (aggregate with w = router(features)) or off (w = 1/K, router not called)."""
        self.router_active = bool(active)

    def forward(self, x: Tensor) -> ModelOutput:  # x: (N, C_in, H, W)
        trunk = self.shared(self.stem(x))  # (N, D, H', W')
        features = global_pool(trunk)  # (N, D)
        expert_logits = torch.stack([expert(trunk) for expert in self.experts], dim=1)  # (N, K, C)
        if self.router_active:
            weights = self.router(features)  # (N, K)
        else:
            weights = uniform_weights(features, self.num_experts)  # (N, K), exactly 1/K
        logits = (weights.unsqueeze(-1) * expert_logits).sum(dim=1)  # (N, C), eq. 7
        return ModelOutput(logits, expert_logits, weights, features)
