"""Batched on-device augmentation for "array" datasets: zero-padded random crop + horizontal flip.

This is LDAM-DRW's CIFAR transform (RandomCrop(32, padding=4) + RandomHorizontalFlip,
docs/decisions.md, decision 4) done for a whole batch at once on the device: torchvision pads the raw image with black (0) before
normalising, so we pad the uint8 batch with 0 and normalise afterwards, which gives identical pixels.
The step at CIFAR size is launch-bound (docs/design.md, "Speed"), so there is no Python loop over samples: one
pad, one advanced-indexing gather, one masked flip. The random parameters are drawn on the CPU from the
epoch generator (see ``sharding.py``) so they do not depend on the device or the number of ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_crop_flip(n: int, generator: torch.Generator, size: tuple[int, int], pad: int, crop: int,
                     flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample crop offsets (n, 2) int64 (row, col) into the padded image and flips (n,) bool."""
    height, width = size
    max_row, max_col = height + 2 * pad - crop, width + 2 * pad - crop
    if max_row < 0 or max_col < 0:
        raise ValueError(f"crop {crop} larger than the padded image {height + 2 * pad}x{width + 2 * pad}")
    rows = torch.randint(0, max_row + 1, (n,), generator=generator)
    cols = torch.randint(0, max_col + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return torch.stack([rows, cols], dim=1), flips


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int,
              crop: int) -> torch.Tensor:
    """Zero-pad by ``pad``, cut a ``crop`` x ``crop`` window at each sample's offset, flip where asked.

    images (B, C, H, W) any dtype; offsets (B, 2) int64 (row, col) of the window's top-left corner in
    the padded image; flips (B,) bool. Returns (B, C, crop, crop), same dtype and device.
    """
    b, c = images.shape[:2]
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images  # (B, C, H + 2p, W + 2p), zeros
    window = torch.arange(crop, device=images.device)  # (crop,)
    rows = (offsets[:, 0:1].to(images.device) + window)[:, None, :, None]  # (B, 1, crop, 1)
    cols = (offsets[:, 1:2].to(images.device) + window)[:, None, None, :]  # (B, 1, 1, crop)
    batch = torch.arange(b, device=images.device)[:, None, None, None]  # (B, 1, 1, 1)
    channel = torch.arange(c, device=images.device)[None, :, None, None]  # (1, C, 1, 1)
    out = padded[batch, channel, rows, cols]  # (B, C, crop, crop)
    return torch.where(flips.to(images.device)[:, None, None, None], out.flip(3), out)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 ``(x / 255 - mean) / std`` with mean, std (1, C, 1, 1) float32."""
    return (images.float().div_(255.0) - mean) / std
