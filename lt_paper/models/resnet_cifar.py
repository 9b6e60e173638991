"""CIFAR ResNets (He et al. 2016, section 4.2) as used by LDAM-DRW and RIDE: ResNet-8/20/32.

Depth 6n + 2: a 3x3 stem with 16 channels, three stages of n basic blocks with 16 / 32 / 64 planes
(strides 1 / 2 / 2), global average pooling. Shortcuts that change shape use "option A": subsample by
the stride and zero-pad the new channels, so the network has no projection parameters (ResNet-32 with
10 classes: 464,154 parameters, LDAM's "0.46M"). The basic block itself is torchvision's
``BasicBlock`` (conv-bn-relu-conv-bn + shortcut, relu), given the option-A shortcut as ``downsample``.
Any input of at least 8x8 pixels works (the smoke data set is 8x8 digits).
"""

from __future__ import annotations

from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from .stages import StagePlan

CIFAR_PLANES = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: ``x[:, :, ::stride, ::stride]`` with zero channels added to reach ``out_channels``.

    The new channels are split before / after the old ones ((out - in) // 2 before, the rest after), as
    in LDAM-DRW (16 -> 32 pads 8 + 8) and RIDE (16 -> 24 pads 4 + 4). Parameter-free.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"option-A shortcut cannot shrink {in_channels} to {out_channels} channels; "
                "raise expert_width or share fewer stages"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:  # (N, Cin, H, W) -> (N, Cout, ceil(H / s), ceil(W / s))
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, stride={self.stride}"


def cifar_stem(in_channels: int, out_channels: int = CIFAR_PLANES[0]) -> nn.Sequential:
    """3x3 conv (no bias) + BN + ReLU at full resolution."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def cifar_stage(index: int, in_channels: int, planes: int, blocks: int) -> nn.Sequential:
    """Stage ``index`` (0, 1, 2) of ``blocks`` basic blocks; the first subsamples unless ``index == 0``."""
    stride = 1 if index == 0 else 2
    layers = []
    for b in range(blocks):
        block_stride = stride if b == 0 else 1
        shortcut = None
        if block_stride != 1 or in_channels != planes:
            shortcut = ZeroPadShortcut(in_channels, planes, block_stride)
        layers.append(BasicBlock(in_channels, planes, stride=block_stride, downsample=shortcut))
        in_channels = planes
    return nn.Sequential(*layers)


def init_cifar_weights(module: nn.Module) -> None:
    """LDAM-DRW's ``_weights_init``: kaiming-normal (fan-in) for every conv and linear weight."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)


def cifar_resnet_plan(depth: int) -> StagePlan:
    """The 6n + 2 layer CIFAR ResNet (8, 20, 32, 44, 56, 110) as a :class:`StagePlan`."""
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (8, 20, 32, ...), got {depth}")
    blocks = (depth - 2) // 6
    return StagePlan(
        stem=cifar_stem,
        stem_channels=CIFAR_PLANES[0],
        stage=partial(cifar_stage, blocks=blocks),
        planes=CIFAR_PLANES,
        expansion=BasicBlock.expansion,
        default_shared_stages=1,  # RIDE shares stem + stage 1 for ResNet-32
        init_weights=init_cifar_weights,
    )


def resnet8_plan() -> StagePlan:
    return cifar_resnet_plan(8)


def resnet20_plan() -> StagePlan:
    return cifar_resnet_plan(20)


def resnet32_plan() -> StagePlan:
    return cifar_resnet_plan(32)
