"""Losses by name: the one string -> constructor table (a plain dict, no reflection).

=============  ==========================================  ======  ==================================
name           loss                                        head    paper
=============  ==========================================  ======  ==================================
``ce``         CrossEntropyLoss                            linear  Table 4 #1, Table 1 CE
``focal``      FocalLoss(gamma=1)                          linear  Focal baseline (LDAM-DRW's)
``la``         LogitAdjustedLoss(tau=1)                    linear  Menon et al. (DESIGN's table)
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
Figure 2(b)'s analytic curve uses gamma = 2, "the commonly used formulation" (README decision 10).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .ala import ALALoss
from .baselines import CrossEntropyLoss, FocalLoss, LogitAdjustedLoss
from .validation import ClassCounts

_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "ce": lambda counts, **kw: CrossEntropyLoss(**kw),
    "focal": lambda counts, **kw: FocalLoss(**{"gamma": 1.0, **kw}),
    "la": lambda counts, **kw: LogitAdjustedLoss(counts, **kw),
    "ldam": lambda counts, **kw: ALALoss(counts, **{"instance_term": False, "class_term": "ldam", **kw}),
    "ala": lambda counts, **kw: ALALoss(counts, **{"instance_term": True, "class_term": "ala", **kw}),
    "ains": lambda counts, **kw: ALALoss(counts, **{"instance_term": True, "class_term": None, **kw}),
    "acls": lambda counts, **kw: ALALoss(counts, **{"instance_term": False, "class_term": "ala", **kw}),
    "focal_acls": lambda counts, **kw: ALALoss(
        counts, **{"instance_term": False, "class_term": "ala", "focal_gamma": 1.0, **kw}
    ),
    "ldam_ains": lambda counts, **kw: ALALoss(counts, **{"instance_term": True, "class_term": "ldam", **kw}),
    "cos_ce": lambda counts, **kw: ALALoss(counts, **{"instance_term": False, "class_term": None, **kw}),
}

LOSS_HEADS: dict[str, str] = {
    "ce": "linear",
    "focal": "linear",
    "la": "linear",
    "ldam": "cosine",
    "ala": "cosine",
    "ains": "cosine",
    "acls": "cosine",
    "focal_acls": "cosine",
    "ldam_ains": "cosine",
    "cos_ce": "cosine",
}

LOSS_NAMES = tuple(_FACTORIES)
_NEEDS_COUNTS = frozenset(name for name in LOSS_NAMES if name not in ("ce", "focal"))


def build_loss(name: str, class_counts: ClassCounts | None = None, **options: Any) -> nn.Module:
    """The loss called ``name`` for training counts ``class_counts`` (C,).

    ``options`` override the constructor's defaults (e.g. ``s``, ``tau``, ``gamma``, ``focal_gamma``);
    an unknown option raises TypeError from the constructor. The head the model needs is
    ``LOSS_HEADS[name]``.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSS_NAMES)}")
    if class_counts is None and name in _NEEDS_COUNTS:
        raise ValueError(f"loss {name!r} needs class_counts (the per-class training sample counts)")
    return _FACTORIES[name](class_counts, **options)
