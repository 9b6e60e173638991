"""Named configurations: one per cell of the paper's tables, plus CIFAR-LT and smoke analogues.

A preset name is ``<dataset>/<arch>/<method>``, e.g. ``cifar10_lt/resnet32/ala``,
``imagenet_lt/resnext50/ala_moe3``, ``inat2018/resnet50/ala_distill``. The smoke presets
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
ala_nodrw          ALA without DRW (ours, not a paper row: measures what DRW adds to Table 4 #7)
ride{3,4}          vanilla RIDE (Table 5 RIDE*): LDAM-DRW experts + diversity term, mean aggregate,
                   no loss on the aggregate (``aggregate_loss=False``)
ride{3,4}_router   the same with our instance-aware router, trained by eq. 8's aggregate term
                   (Table 5 RIDE* + router)
=================  ===========================================================================

DRW is on for every cosine-classifier method (they follow "the same training strategies as LDAM")
and off for the linear baselines, whose published numbers were trained without it.

Router switch-on (docs/decisions.md, decision 9): ImageNet-LT and iNaturalist keep the paper's "last learning
rate decay" (epoch 80 of 100, lr 1e-3); the CIFAR-LT and smoke recipes switch it on at 0.8 of the
epochs (160 of 200, lr 1e-3), the same share of training and lr, because their last decay (180 of
200) leaves the router 20 epochs at lr 1e-5, too little to move it from uniform. Only the MoE presets
carry ``router_at``: a plain network has no router, and its run hash stays what it was.
Shot groups (docs/decisions.md, decision 2): the ImageNet-LT and iNaturalist presets report by the paper's
Table 2 (few ``n <= 20``); CIFAR-LT keeps the codebases' ``n < 20``.

CIFAR-LT also has ResNet-8 presets (``cifar10_lt/resnet8/<method>``): the reduced recipe of the
`cifar-cpu` profile (docs/real-data-on-a-laptop.md): a single network's epoch takes about 10 s on 2
CPU cores. It keeps the CIFAR recipe's shape (batch 128, lr 0.1, the decays, DRW and the router
switch-on at the same fractions of the epochs) on ResNet-8 for ``CPU_EPOCHS`` epochs; its warm-up is
LDAM-DRW's 5 of 200 epochs scaled to the shorter run, it tests every ``CPU_EVAL_EVERY`` epochs, and it
trains channels_last on the CPU (the fastest CPU path measured, ``python -m lt_paper bench --section cpu``).
"""

from __future__ import annotations

from .config import Config, validate

# The recipes of docs/decisions.md, decision 4 (schedule points as fractions of the epochs).
CIFAR_RECIPE = dict(
    epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, warmup_epochs=5,
    lr_decay_at=(0.8, 0.9), lr_decay_factors=(0.01, 0.0001), drw_at=0.8, router_at=0.8,
)
IMAGENET_LT_RECIPE = dict(
    dataset="imagenet_lt", epochs=100, batch_size=256, lr=0.1, weight_decay=2e-4, warmup_epochs=5,
    lr_decay_at=(0.6, 0.8), lr_decay_factors=(0.1, 0.01), drw_at=0.8, few_inclusive=True,
)
INAT_RECIPE = dict(IMAGENET_LT_RECIPE, dataset="inat2018", batch_size=512, lr=0.2)
# Smoke: scikit-learn's 8x8 digits, long-tailed at IF 20 (130 ... 6 images per class). The shot
# thresholds are lowered so that each group holds several of the 10 classes (recorded per run).
SMOKE_RECIPE = dict(
    dataset="digits_lt", imbalance=20.0, many_threshold=60, few_threshold=20,
    epochs=30, batch_size=64, lr=0.1, weight_decay=2e-4, warmup_epochs=2,
    lr_decay_at=(0.8, 0.9), lr_decay_factors=(0.01, 0.0001), drw_at=0.8, router_at=0.8, device="cpu",
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
    "ala_nodrw": dict(loss="ala", drw=False),
    "ala_distill": dict(loss="ala", distill=True),  # + teacher=<run dir of ala_moe6>
}
for _k in (3, 4, 6):
    METHODS[f"ala_moe{_k}"] = dict(loss="ala", num_experts=_k, router="instance")
for _k in (3, 4):
    METHODS[f"ala_moe{_k}_mean"] = dict(loss="ala", num_experts=_k, router="mean")
    METHODS[f"ride{_k}"] = dict(loss="ldam", num_experts=_k, router="mean", diversity_weight=-0.2,
                                aggregate_loss=False)
    METHODS[f"ride{_k}_router"] = dict(METHODS[f"ride{_k}"], router="instance", aggregate_loss=True)

SMOKE_ARCH = "resnet8"
# The networks of the paper's recipes, per preset prefix (the smoke digits have no paper recipe).
PAPER_ARCHS: dict[str, tuple[str, ...]] = {
    "cifar10_lt": ("resnet32",), "cifar100_lt": ("resnet32",),
    "imagenet_lt": ("resnet50", "resnext50"), "inat2018": ("resnet50",),
}
# The reduced CIFAR-LT recipe that a CPU trains (the `cifar-cpu` profile, docs/real-data-on-a-laptop.md):
# network and epochs chosen by measurement on a 2-core machine; the schedule's fractions are
# the CIFAR recipe's, its 5 warm-up epochs of 200 scale with the epochs (at least 1).
CPU_ARCH = "resnet8"
CPU_EPOCHS = 40
CPU_EVAL_EVERY = 5
CPU_RECIPE_CHANGES = dict(
    epochs=CPU_EPOCHS, eval_every=CPU_EVAL_EVERY, device="cpu", channels_last=True,
    warmup_epochs=max(1, round(CIFAR_RECIPE["warmup_epochs"] * CPU_EPOCHS / CIFAR_RECIPE["epochs"])),
)
# prefix -> (its recipe, the networks it has presets for)
DATASET_ARCHS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "smoke": (SMOKE_RECIPE, (SMOKE_ARCH,)),
    "cifar10_lt": (dict(CIFAR_RECIPE, dataset="cifar10_lt"), PAPER_ARCHS["cifar10_lt"] + (CPU_ARCH,)),
    "cifar100_lt": (dict(CIFAR_RECIPE, dataset="cifar100_lt"), PAPER_ARCHS["cifar100_lt"] + (CPU_ARCH,)),
    "imagenet_lt": (IMAGENET_LT_RECIPE, PAPER_ARCHS["imagenet_lt"]),
    "inat2018": (INAT_RECIPE, PAPER_ARCHS["inat2018"]),
}
ARCH_TITLES = {"resnet8": "ResNet-8", "resnet20": "ResNet-20", "resnet32": "ResNet-32", "resnet50": "ResNet-50",
               "resnext50": "ResNeXt-50"}


def reduced_recipe_label(prefix: str, arch: str, epochs: int, device: str) -> str | None:
    """The label of a run set that trains one of the paper's datasets with less than the paper's recipe
    (another network or fewer epochs), e.g. "ResNet-8, 30 epochs, CPU, reduced recipe, not the paper's";
    None for the paper's recipe and for the smoke digits (which have no paper recipe to fall short of).
    Every table and figure of such runs carries it (``outputs.NotebookOutputs``)."""
    if prefix not in PAPER_ARCHS:
        return None
    recipe = DATASET_ARCHS[prefix][0]
    if arch in PAPER_ARCHS[prefix] and epochs == recipe["epochs"]:
        return None
    where = {"cpu": "CPU, ", "cuda": "GPU, "}.get(device, "")
    return f"{ARCH_TITLES.get(arch, arch)}, {epochs} epochs, {where}reduced recipe, not the paper's"


def recipe_for(prefix: str, arch: str) -> dict:
    """The recipe of the ``prefix/arch`` presets: the prefix's, reduced for CIFAR-LT's CPU network."""
    recipe = DATASET_ARCHS[prefix][0]
    if prefix.startswith("cifar") and arch == CPU_ARCH:
        return dict(recipe, **CPU_RECIPE_CHANGES)
    return recipe


def _build_table() -> dict[str, Config]:
    table = {}
    for prefix, (_, archs) in DATASET_ARCHS.items():
        for arch in archs:
            for method, fields in METHODS.items():
                name = f"{prefix}/{arch}/{method}"
                fields = {**recipe_for(prefix, arch), **fields}
                if fields.get("num_experts", 1) == 1:  # no router: keep the plain networks' run hashes
                    fields.pop("router_at", None)
                table[name] = validate(Config(name=name, arch=arch, **fields))
    return table


_PRESETS = _build_table()


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
    raise UnknownPresetError(_unknown_preset_message(name))
