"""The epoch-level schedule: learning rate, DRW switch-on and router switch-on.

Resolved once from the config's fractions into epoch numbers (0-indexed), so that the training loop
holds no magic numbers. The LDAM-DRW reference code counts epochs from 1 and decays "after epoch
160"; with 0-indexed epochs that is ``epoch >= 160``, which is what ``int(round(0.8 * 200))`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config


@dataclass(frozen=True)
class Schedule:
    epochs: int
    base_lr: float
    warmup_epochs: int
    decay_epochs: tuple[int, ...]
    decay_factors: tuple[float, ...]
    drw_epoch: int | None  # None: no deferred re-weighting
    router_epoch: int | None  # None: not an MoE with a learned router

    @classmethod
    def from_config(cls, config: Config) -> "Schedule":
        decay_epochs = tuple(int(round(f * config.epochs)) for f in config.lr_decay_at)
        if config.router_at is not None:
            router_epoch = int(round(config.router_at * config.epochs))
        else:  # paper 4.2: "the router is not added to the training until the last lr decay"
            router_epoch = decay_epochs[-1] if decay_epochs else 0
        return cls(
            epochs=config.epochs,
            base_lr=config.lr,
            warmup_epochs=min(config.warmup_epochs, config.epochs),
            decay_epochs=decay_epochs,
            decay_factors=tuple(config.lr_decay_factors),
            drw_epoch=int(round(config.drw_at * config.epochs)) if config.drw else None,
            router_epoch=router_epoch if config.num_experts > 1 else None,
        )

    def lr(self, epoch: int) -> float:
        """Linear warm-up to ``base_lr`` over ``warmup_epochs`` (LDAM: lr * (e + 1) / 5), then steps."""
        # a pure function of the epoch rather than a torch LR scheduler: a resumed run needs no
        # scheduler state, so exact resume is trivial
        if epoch < self.warmup_epochs:
            return self.base_lr * (epoch + 1) / self.warmup_epochs
        factor = 1.0
        for at, f in zip(self.decay_epochs, self.decay_factors):
            if epoch >= at:
                factor = f
        return self.base_lr * factor

    def drw_active(self, epoch: int) -> bool:
        return self.drw_epoch is not None and epoch >= self.drw_epoch

    def router_active(self, epoch: int) -> bool:
        return self.router_epoch is not None and epoch >= self.router_epoch
