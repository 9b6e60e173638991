"""ImageNet ResNet-50 and ResNeXt-50 (32x4d) from torchvision's ``Bottleneck`` block.

Layout as torchvision's ``resnet50`` / ``resnext50_32x4d`` (7x7 stride-2 stem + 3x3 max pool, stages of
3 / 4 / 6 / 3 bottlenecks with 64 / 128 / 256 / 512 planes, strides 1 / 2 / 2 / 2, 1x1 conv + BN
projection where the shape changes), so parameter counts match torchvision exactly (25,557,032 and
25,028,904 with a 1000-class linear head). Only the stem and stage assembly live here; the block is
torchvision's, and the same stage builder produces the MoE experts' reduced-width stages.
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.models.resnet import Bottleneck

from .stages import StagePlan

IMAGENET_PLANES = (64, 128, 256, 512)
RESNET50_BLOCKS = (3, 4, 6, 3)


def imagenet_stem(in_channels: int, out_channels: int = 64) -> nn.Sequential:
    """7x7 stride-2 conv (no bias) + BN + ReLU + 3x3 stride-2 max pool: 224 px -> 56 px."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )


def bottleneck_stage(
    index: int, in_channels: int, planes: int, blocks: tuple[int, ...], groups: int, width_per_group: int
) -> nn.Sequential:
    """Stage ``index`` of bottlenecks; the first block projects (1x1 conv + BN) when the shape changes.

    With ``groups`` > 1 this is the ResNeXt block: its 3x3 conv has ``planes * width_per_group / 64 *
    groups`` channels in ``groups`` groups (always divisible by ``groups``, so reduced expert widths work).
    """
    stride = 1 if index == 0 else 2
    out_channels = planes * Bottleneck.expansion
    layers = []
    for b in range(blocks[index]):
        block_stride = stride if b == 0 else 1
        projection = None
        if block_stride != 1 or in_channels != out_channels:
            projection = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=block_stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        layers.append(
            Bottleneck(
                in_channels, planes, stride=block_stride, downsample=projection, groups=groups,
                base_width=width_per_group,
            )
        )
        in_channels = out_channels
    return nn.Sequential(*layers)


def init_imagenet_weights(module: nn.Module) -> None:
    """torchvision's ResNet init: kaiming-normal (fan-out, ReLU) convs, BN weight 1 / bias 0.

    Linear heads keep PyTorch's default init, as in torchvision.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def bottleneck_resnet_plan(
    blocks: tuple[int, ...] = RESNET50_BLOCKS, groups: int = 1, width_per_group: int = 64
) -> StagePlan:
    """A bottleneck ResNet / ResNeXt as a :class:`StagePlan`."""
    return StagePlan(
        stem=imagenet_stem,
        stem_channels=IMAGENET_PLANES[0],
        stage=partial(bottleneck_stage, blocks=tuple(blocks), groups=groups, width_per_group=width_per_group),
        planes=IMAGENET_PLANES,
        expansion=Bottleneck.expansion,
        default_shared_stages=2,  # paper section 3.2 / RIDE: stem + first two stages shared
        init_weights=init_imagenet_weights,
    )


def resnet50_plan() -> StagePlan:
    return bottleneck_resnet_plan(RESNET50_BLOCKS)


def resnext50_32x4d_plan() -> StagePlan:
    return bottleneck_resnet_plan(RESNET50_BLOCKS, groups=32, width_per_group=4)
