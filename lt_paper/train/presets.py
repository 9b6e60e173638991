"""Named configurations: one per cell of the paper's tables, plus CIFAR-LT and smoke analogues.

A preset name is ``<dataset>/<arch>/<method>``, e.g. ``cifar10_lt/resnet32/ala``,
``imagenet_lt/resnext50/ala_moe3``, ``inat2018/resnet50/ala_distill``. The MoE presets are also
reachable as ``<dataset>/<arch>_moe<K>/<loss>`` (``cifar100_lt/resnet32_moe3/ala``). The smoke presets
(``smoke/resnet8/<method>``) train on scikit-learn's digits on the CPU in seconds.

Methods (rows of Tables 1, 3, 4 and 5):

=================  ===========================================================================
ce, focal, la      plain linear classifier; cross-entropy, focal (gamma 1), logit adjustment (tau 1)
ldam_drw           LDAM + DRW on a cosine classifier (Table 1 #4, Table 4 #2)
ains, acls         Table 4 #3 (A = A_ins) and #4 (A = A_cls), with DRW as LDAM-DRW
focal_acls         Table 4 #5 (focal on the A_cls-adjusted logits)
ldam_ains          Table 4 #6 (A = A_ins * A_LDAM)
ala                the ALA loss, Table 4 #7 / Table 1 #9
ala_distill        ALA + distillation from a 6-expert MoE teacher (Table 1 #10); set ``teacher``
ala_moe{3,4,6}     ALA + MoE with the instance-aware router (Table 1 #13-14; 6 = the teacher)
ala_moe{3,4}_mean  the same MoE with the mean router (Table 5, MoE without router)
ride{3,4}          RIDE-style (LDAM-DRW experts + diversity term), mean aggregate (Table 5 RIDE*)
ride{3,4}_router   the same with our instance-aware router (Table 5 RIDE* + router)
=================  ===========================================================================

DRW is on for every cosine-classifier method (they follow "the same training strategies as LDAM")
and off for the linear baselines, whose published numbers were trained without it.
"""

from __future__ import annotations

import re

from .config import Config, validate

# The recipes of DESIGN decision 4 (schedule points as fractions of the epochs).
CIFAR_RECIPE = dict(
    epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, warmup_epochs=5,
    lr_decay_at=(0.8, 0.9), lr_decay_factors=(0.01, 0.0001), drw_at=0.8,
)
IMAGENET_LT_RECIPE = dict(
    dataset="imagenet_lt", epochs=100, batch_size=256, lr=0.1, weight_decay=2e-4, warmup_epochs=5,
    lr_decay_at=(0.6, 0.8), lr_decay_factors=(0.1, 0.01), drw_at=0.8,
)
INAT_RECIPE = dict(IMAGENET_LT_RECIPE, dataset="inat2018", batch_size=512, lr=0.2)
# Smoke: scikit-learn's 8x8 digits, long-tailed at IF 20 (130 ... 6 images per class). The shot
# thresholds are lowered so that each group holds several of the 10 classes (recorded per run).
SMOKE_RECIPE = dict(
    dataset="digits_lt", imbalance=20.0, many_threshold=60, few_threshold=20,
    epochs=30, batch_size=64, lr=0.1, weight_decay=2e-4, warmup_epochs=2,
    lr_decay_at=(0.8, 0.9), lr_decay_factors=(0.01, 0.0001), drw_at=0.8, device="cpu",
)

METHODS: dict[str, dict] = {
    "ce": dict(loss="ce", drw=False),
    "focal": dict(loss="focal", drw=False),
    "la": dict(loss="la", drw=False),
    "ldam_drw": dict(loss="ldam"),
    "ains": dict(loss="ains"),
    "acls": dict(loss="acls"),
    "focal_acls": dict(loss="focal_acls"),
    "ldam_ains": dict(loss="ldam_ains"),
    "ala": dict(loss="ala"),
    "ala_distill": dict(loss="ala", distill=True),  # + teacher=<run dir of ala_moe6>
}
for _k in (3, 4, 6):
    METHODS[f"ala_moe{_k}"] = dict(loss="ala", num_experts=_k, router="instance")
for _k in (3, 4):
    METHODS[f"ala_moe{_k}_mean"] = dict(loss="ala", num_experts=_k, router="mean")
    METHODS[f"ride{_k}"] = dict(loss="ldam", num_experts=_k, router="mean", diversity_weight=-0.2)
    METHODS[f"ride{_k}_router"] = dict(METHODS[f"ride{_k}"], router="instance")

SMOKE_ARCH = "resnet8"
DATASET_ARCHS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "smoke": (SMOKE_RECIPE, (SMOKE_ARCH,)),
    "cifar10_lt": (dict(CIFAR_RECIPE, dataset="cifar10_lt"), ("resnet32",)),
    "cifar100_lt": (dict(CIFAR_RECIPE, dataset="cifar100_lt"), ("resnet32",)),
    "imagenet_lt": (IMAGENET_LT_RECIPE, ("resnet50", "resnext50")),
    "inat2018": (INAT_RECIPE, ("resnet50",)),
}


def _build_table() -> dict[str, Config]:
    table = {}
    for prefix, (recipe, archs) in DATASET_ARCHS.items():
        for arch in archs:
            for method, fields in METHODS.items():
                name = f"{prefix}/{arch}/{method}"
                table[name] = validate(Config(name=name, arch=arch, **recipe, **fields))
    return table


_PRESETS = _build_table()
_MOE_ALIAS = re.compile(r"^(?P<prefix>[^/]+)/(?P<arch>[^/]+)_moe(?P<k>\d+)/(?P<loss>[^/]+)$")


class UnknownPresetError(KeyError):
    """An unknown preset name. A KeyError (callers catch it as one) whose ``str`` is the plain message:
    KeyError's own would print the quoted repr, with literal ``\\n`` for line breaks."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _unknown_preset_message(name: str) -> str:
    """One line on what is wrong with ``name``: its prefix, its arch for that prefix, or its method."""
    prefix, _, rest = name.partition("/")
    arch, _, method = rest.partition("/")
    hint = ("names are <prefix>/<arch>/<method>, e.g. 'smoke/resnet8/ala'; "
            "`python -m lt_paper presets` lists all")
    if prefix not in DATASET_ARCHS:
        return f"unknown preset {name!r}: prefix {prefix!r} is not one of {', '.join(DATASET_ARCHS)} ({hint})"
    archs = DATASET_ARCHS[prefix][1]
    if arch not in archs:
        return (f"unknown preset {name!r}: prefix {prefix!r} has presets for arch {', '.join(archs)} only "
                f"({hint})")
    return f"unknown preset {name!r}: method {method!r} is not one of {', '.join(METHODS)} ({hint})"


def presets() -> list[str]:
    """All preset names (the smoke ones contain 'smoke')."""
    return sorted(_PRESETS)


def get_preset(name: str) -> Config:
    """The config of preset ``name``; an unknown name raises and lists the valid ones."""
    if name in _PRESETS:
        return _PRESETS[name]
    alias = _MOE_ALIAS.match(name)
    if alias:
        canonical = f"{alias['prefix']}/{alias['arch']}/{alias['loss']}_moe{alias['k']}"
        if canonical in _PRESETS:
            return _PRESETS[canonical]
    raise UnknownPresetError(_unknown_preset_message(name))
