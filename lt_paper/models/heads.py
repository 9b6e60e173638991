"""Classifier heads: a plain linear layer and the cosine classifier used by LDAM / ALA.

docs/decisions.md, decision 1: the scale ``s`` (30) lives only in the loss. The cosine head therefore returns
cos(theta) in [-1, 1] and has no scale and no bias; the ALA instance term A_ins = (1 - cos_y) / 2
(paper eq. 3) reads these unscaled cosines directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CosineHead(nn.Module):
    """Cosine classifier: cos(theta_j) = <x / |x|, w_j / |w_j|>, no bias, no scale.

    Initialised like LDAM's ``NormedLinear``: uniform(-1, 1), then every class row renormalised to unit
    norm (the forward pass normalises anyway; the init only fixes the starting directions).

    The head is evaluated in float32 even under autocast: it is tiny, and in bfloat16 the cosines carry
    errors of ~4e-3, which the loss multiplies by s = 30 and which the instance term (1 - cos_y) / 2
    would read as "hardness". Outputs lie in [-1, 1] up to float32 rounding.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))  # (C, D)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0).renorm_(2, 0, 1e-5).mul_(1e5)

    def forward(self, features: Tensor) -> Tensor:  # (N, D) -> (N, C)
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = F.normalize(features.float(), dim=1)  # (N, D) unit rows
            w = F.normalize(self.weight.float(), dim=1)  # (C, D) unit rows
            return x @ w.t()  # (N, C) cosines

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


# "linear": the plain affine classifier x W^T + b of the CE / focal / logit-adjustment baselines
_HEADS = {"linear": nn.Linear, "cosine": CosineHead}
HEAD_NAMES = tuple(_HEADS)


def build_head(name: str, in_features: int, num_classes: int) -> nn.Module:
    """Head by name: ``"linear"`` or ``"cosine"``; anything else raises ValueError listing both."""
    if name not in _HEADS:
        raise ValueError(f"unknown head {name!r}; valid heads: {', '.join(HEAD_NAMES)}")
    return _HEADS[name](in_features, num_classes)
