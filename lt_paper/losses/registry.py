"""Losses by name: the one table ``LOSSES`` of name -> (head, constructor), a plain dict (no reflection).

=============  ==========================================  ======  ==================================
name           loss                                        head    paper
=============  ==========================================  ======  ==================================
``ce``         CrossEntropyLoss                            linear  Table 4 #1, Table 1 CE
``focal``      FocalLoss(gamma=1)                          linear  Focal baseline (LDAM-DRW's)
``la``         LogitAdjustedLoss(tau=1)                    linear  Menon et al. 2021 (loss form)
``ldam``       ALALoss(instance_term=False, "ldam")        cosine  Table 4 #2 (LDAM; DRW via weight)
``ala``        ALALoss()                                   cosine  Table 4 #7, eq. 6
``ains``       ALALoss(instance_term=True, None)           cosine  Table 4 #3
``acls``       ALALoss(instance_term=False, "ala")         cosine  Table 4 #4
``focal_acls`` ALALoss(False, "ala", focal_gamma=1)        cosine  Table 4 #5
``ldam_ains``  ALALoss(instance_term=True, "ldam")         cosine  Table 4 #6
``cos_ce``     ALALoss(instance_term=False, None)          cosine  CE on s * cos (no adjustment)
=============  ==========================================  ======  ==================================

The paper does not state the focal gamma of Table 4 #5; ``focal_acls`` uses 1.0, the same as the
``focal`` baseline, LDAM-DRW's (override with ``build_loss("focal_acls", counts, focal_gamma=2.0)``).
Figure 2(b)'s analytic curve uses gamma = 2, "the commonly used formulation" (docs/decisions.md, decision 10).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from torch import nn

from .ala import ALALoss
from .baselines import CrossEntropyLoss, FocalLoss, LogitAdjustedLoss
from .validation import ClassCounts


class LossEntry(NamedTuple):
    """One registered loss: the head its model needs and how to build it from the class counts."""

    head: str  # "linear" or "cosine"
    build: Callable[..., nn.Module]  # (class_counts, **options) -> loss
    needs_counts: bool = True


def _ala(**fixed: Any) -> Callable[..., nn.Module]:
    """An ``ALALoss`` with ``fixed`` options (a Table 4 variant); the caller's options override them."""
    return lambda counts, **kw: ALALoss(counts, **{**fixed, **kw})


# The one table of losses (name -> head, constructor), in the order of the docstring's table.
LOSSES: dict[str, LossEntry] = {
    "ce": LossEntry("linear", lambda counts, **kw: CrossEntropyLoss(**kw), needs_counts=False),
    "focal": LossEntry("linear", lambda counts, **kw: FocalLoss(**{"gamma": 1.0, **kw}), needs_counts=False),
    "la": LossEntry("linear", lambda counts, **kw: LogitAdjustedLoss(counts, **kw)),
    "ldam": LossEntry("cosine", _ala(instance_term=False, class_term="ldam")),
    "ala": LossEntry("cosine", _ala(instance_term=True, class_term="ala")),
    "ains": LossEntry("cosine", _ala(instance_term=True, class_term=None)),
    "acls": LossEntry("cosine", _ala(instance_term=False, class_term="ala")),
    "focal_acls": LossEntry("cosine", _ala(instance_term=False, class_term="ala", focal_gamma=1.0)),
    "ldam_ains": LossEntry("cosine", _ala(instance_term=True, class_term="ldam")),
    "cos_ce": LossEntry("cosine", _ala(instance_term=False, class_term=None)),
}

LOSS_NAMES = tuple(LOSSES)
LOSS_HEADS: dict[str, str] = {name: entry.head for name, entry in LOSSES.items()}


def build_loss(name: str, class_counts: ClassCounts | None = None, **options: Any) -> nn.Module:
    """The loss called ``name`` for training counts ``class_counts`` (C,).

    ``options`` override the constructor's defaults (e.g. ``s``, ``tau``, ``gamma``, ``focal_gamma``);
    an unknown option raises TypeError from the constructor. The head the model needs is
    ``LOSS_HEADS[name]``.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSS_NAMES)}")
    if class_counts is None and LOSSES[name].needs_counts:
        raise ValueError(f"loss {name!r} needs class_counts (the per-class training sample counts)")
    return LOSSES[name].build(class_counts, **options)
