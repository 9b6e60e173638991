"""Routers of the Mixture-of-Experts: they turn the pooled trunk features into expert weights w (N, K).

The instance-aware router is the paper's contribution (section 3.2): global average pooling of the
shared trunk's output (the same input the experts see), one fully connected layer to K scores, softmax
over experts. It is zero-initialised so that it starts exactly as the mean of the experts, which is
what the aggregate is before the router is switched on (docs/decisions.md, decisions 9 and 11).
``MeanRouter`` fixes w = 1/K: the "mean router" ablation of Table 5 (and RIDE's aggregation).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def uniform_weights(features: Tensor, num_experts: int) -> Tensor:
    """(N, D) -> (N, K) float32 weights, every entry exactly 1 / K."""
    return torch.full((features.shape[0], num_experts), 1.0 / num_experts, dtype=torch.float32, device=features.device)


class InstanceRouter(nn.Module):
    """w = softmax(W f + b) over experts, f the pooled trunk features; W and b start at zero.

    Evaluated in float32 under autocast so that the weights sum to 1 to float32 precision; the layer
    is D x K, so this costs nothing.
    """

    def __init__(self, in_features: int, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.fc = nn.Linear(in_features, num_experts)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: Tensor) -> Tensor:  # (N, D) -> (N, K)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return torch.softmax(self.fc(features.float()), dim=1)


class MeanRouter(nn.Module):
    """w = 1/K for every sample; no parameters (Table 5's "mean router")."""

    def __init__(self, in_features: int, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts

    def forward(self, features: Tensor) -> Tensor:  # (N, D) -> (N, K)
        return uniform_weights(features, self.num_experts)


_ROUTERS = {"instance": InstanceRouter, "mean": MeanRouter}
ROUTER_NAMES = tuple(_ROUTERS)


def build_router(name: str, in_features: int, num_experts: int) -> nn.Module:
    """Router by name: ``"instance"`` or ``"mean"``; anything else raises ValueError listing both."""
    if name not in _ROUTERS:
        raise ValueError(f"unknown router {name!r}; valid routers: {', '.join(ROUTER_NAMES)}")
    return _ROUTERS[name](in_features, num_experts)
