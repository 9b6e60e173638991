"""A ResNet described as a stem followed by stages, so that one class can cut it anywhere.

The plain network uses all stages at full width; the Mixture-of-Experts (docs/decisions.md, decision 5) shares the
stem and the first ``shared_stages`` stages and gives every expert its own copy of the remaining stages
at a reduced width. Both are built from the same :class:`StagePlan`, so the CIFAR and ImageNet variants
(and the single / MoE networks) never exist as copied classes: a family only says how to build its stem
and its i-th stage at a given width (see ``resnet_cifar.py`` and ``resnet_imagenet.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class StagePlan:
    """Recipe for a staged ResNet.

    Attributes:
        stem: ``stem(in_channels) -> module`` producing ``stem_channels`` channels.
        stem_channels: channels out of the stem.
        stage: ``stage(index, in_channels, planes) -> nn.Sequential`` of residual blocks; the stage
            outputs ``planes * expansion`` channels.
        planes: full-width planes of every stage (ResNet-32: 16/32/64; ResNet-50: 64/128/256/512).
        expansion: output channels per plane (1 for basic blocks, 4 for bottlenecks).
        default_shared_stages: stages in the MoE trunk when the caller does not say (RIDE's choice:
            1 for the CIFAR ResNets, 2 for ResNet-50 / ResNeXt-50).
        init_weights: ``init_weights(module)`` initialises the convolutions, norms and linear heads of
            the family (kaiming normal for CIFAR as in LDAM-DRW; torchvision's scheme for ImageNet).
    """

    stem: Callable[[int], nn.Module]
    stem_channels: int
    stage: Callable[[int, int, int], nn.Module]
    planes: tuple[int, ...]
    expansion: int
    default_shared_stages: int
    init_weights: Callable[[nn.Module], None]

    @property
    def num_stages(self) -> int:
        return len(self.planes)


def scaled_planes(planes: int, width: float) -> int:
    """Planes of a stage built at ``width`` times its full width (0.75: 32 -> 24, 256 -> 192)."""
    scaled = int(round(planes * width))
    if scaled < 1:
        raise ValueError(f"width {width} leaves {planes} planes with no channel")
    return scaled


def build_stages(
    plan: StagePlan, start: int, stop: int, in_channels: int, width: float = 1.0
) -> tuple[nn.Sequential, int]:
    """Stages ``start .. stop - 1`` of ``plan`` at ``width`` times full width.

    Returns the stages as one ``nn.Sequential`` (state-dict keys ``<i - start>.<block>...``) and the
    number of channels they output.
    """
    stages = nn.Sequential()
    channels = in_channels
    for index in range(start, stop):
        planes = scaled_planes(plan.planes[index], width)
        stages.append(plan.stage(index, channels, planes))
        channels = planes * plan.expansion
    return stages, channels


def global_pool(x: Tensor) -> Tensor:
    """(N, D, H, W) -> (N, D) global average pooling."""
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
