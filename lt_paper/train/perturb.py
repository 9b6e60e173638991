"""A solo run with its initial weights perturbed: the yardstick for what rounding does to a whole run.

A batched ensemble member computes its solo run's steps to rounding (grouped convolutions sum in
another order); over a chaotic recipe such differences grow, as they do between a run and the same
run started from weights multiplied by ``1 + relative * noise``. ``tests/test_ensemble.py`` compares a
member's drift with that perturbed run's drift, and ``scripts/rounding_noise.py`` measures how far it
moves a smoke run's final accuracies.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from . import engine


@contextmanager
def perturbed_initial_weights(relative: float = 1e-7, seed: int = 1234) -> Iterator[None]:
    """Inside the block, every network the engine builds (``engine.build_for``) has its initial weights
    multiplied by ``1 + relative * n``, n standard normal from a generator seeded by ``seed``."""
    real = engine.build_for

    def build_for(config, num_classes):
        network = real(config, num_classes)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in network.parameters():
                param.mul_(1 + relative * torch.randn(param.shape, generator=generator))
        return network

    engine.build_for = build_for
    try:
        yield
    finally:
        engine.build_for = real
