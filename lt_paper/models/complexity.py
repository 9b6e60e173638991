"""Model size and cost: parameter count and forward FLOPs for one sample."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (distinct) parameters; ``trainable_only`` counts those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_size: Sequence[int] = (3, 32, 32)) -> int:
    """Forward FLOPs for one sample of shape ``input_size`` (C, H, W), by ``torch.utils.flop_counter``.

    Convention of ``FlopCounterMode``: 2 FLOPs per multiply-accumulate, convolutions and matrix products
    only (batch norm, ReLU, pooling and residual adds are not counted). Runs in eval mode under
    ``no_grad`` on the model's device and dtype, then restores the training mode. An MoE is measured in
    its current router state (the router is a D x K layer: negligible either way).
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.zeros(1, *input_size, device=device, dtype=dtype)  # (1, C, H, W)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
