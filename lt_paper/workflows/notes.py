"""Teaching notes that follow the profile in use and the data its runs saw.

A notebook's Markdown cells say what the paper claims and where to look; two things they cannot know
are said here, at run time, and shown by ``NotebookOutputs.note``:

- "What this profile can show" speaks first of the profile the parameters name (``profile``), then of
  the others: a student reading the published ``cifar-cpu`` runs reads about ``cifar-cpu`` first.
- Where the data has an empty shot group (CIFAR-10-LT at imbalance 100 has no few-shot class: its
  smallest class has 50 training images, a few-shot class fewer than 20), the notes that point at
  *Few-shot* (the paper's tail) would point at an empty panel: the note names the group to look at
  instead, the rarest one that has classes, with its classes and their training counts.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..data import OLTR_SHOT_RULE, SHOT_GROUPS, shot_groups

GROUP_NAMES = {"many": "Many-shot", "medium": "Medium-shot", "few": "Few-shot"}

# What each reproduction profile can show, whatever the notebook.
PROFILE_SCOPES = {
    "smoke": "scikit-learn's 8×8 digits, 10 classes, one seed, 30 epochs on the CPU; a shot group holds a few "
             "classes and a few dozen test images, so a difference of a few points is noise: it shows the "
             "pipeline and the shape of the result, not the paper's effect.",
    "cifar-cpu": "the real CIFAR-10-LT images (imbalance 100) on a CPU with a reduced recipe (ResNet-8, a few "
                 "dozen epochs; every table and figure names it), over the seeds the parameters list: it shows "
                 "real images and the long-tail effect, not the paper's numbers.",
    "cifar": "CIFAR-10-LT with ResNet-32 and the 200-epoch recipe on a GPU, 3 seeds: it can show the direction "
             "of an effect with its seed spread.",
    "paper": "ImageNet-LT and iNaturalist-2018 with the paper's networks and recipe: the paper's setting, the "
             "only profile whose numbers compare with the paper's.",
}

_ROUNDING = ("Measured with `scripts/rounding_noise.py` (docs/equality.md): multiplying the "
             "initial weights by 1 + 1e-7 noise, or training through the batched ensemble, moved a smoke row's "
             "All by up to 2.8 points, and another seed moved it by up to 7.3.")
# What a notebook adds for a profile (after that profile's scope).
NOTEBOOK_SCOPES: dict[str, dict[str, str]] = {
    "table1_3_main_results": {"smoke": _ROUNDING},
    "table4_ala_ablation": {"smoke": _ROUNDING},
    "table5_router_ablation": {"smoke": _ROUNDING},
    "figure4_router_weights": {
        "smoke": "The experts of a small MoE on digits reach similar accuracies and the router trains for a few "
                 "epochs: the weights move little and the verdict is mostly a tie between near-equal experts.",
        "cifar-cpu": "The router gets more steps than on smoke; each seed is one draw, so read the verdict per "
                     "seed.",
        "cifar": "With 3 seeds it is the first profile where a verdict that holds on every seed means something.",
    },
}


def profile_note(notebook: str, profile: str | None) -> str:
    """Markdown: "What this profile can show", the profile in use first, then the other profiles."""
    extra = NOTEBOOK_SCOPES.get(notebook, {})

    def scope(name: str) -> str:
        return " ".join(part for part in (PROFILE_SCOPES[name], extra.get(name)) if part)

    if profile in PROFILE_SCOPES:
        first = f"`{profile}` (the profile in use): {scope(profile)}"
    else:
        first = (f"the parameters name profile {profile!r}, which is none of the reproduction profiles "
                 f"({', '.join(PROFILE_SCOPES)}): what it can show depends on the runs it reads.")
    others = "; ".join(f"`{name}`: {scope(name)}" for name in PROFILE_SCOPES if name != profile)
    return f"**What this profile can show.** {first}\n\nThe other profiles: {others}"


def empty_group_note(train_counts: Sequence[int], class_names: Sequence[str] | None = None,
                     many: int = OLTR_SHOT_RULE["many"], few: int = OLTR_SHOT_RULE["few"],
                     few_inclusive: bool = OLTR_SHOT_RULE["few_inclusive"]) -> str | None:
    """Markdown naming the shot groups without a class in ``train_counts`` (by the shot rule given,
    the engine's default) and the group to look at instead, the rarest that has classes (its classes
    with their training counts, ``class_names`` where known); None when no group is empty."""
    counts = np.asarray(train_counts, dtype=np.int64)  # (C,)
    masks = shot_groups(counts, many=many, few=few, few_inclusive=few_inclusive)
    empty = [g for g in SHOT_GROUPS if not masks[g].any()]
    if not empty:
        return None
    tail = next(g for g in reversed(SHOT_GROUPS) if masks[g].any())  # SHOT_GROUPS runs many -> few
    name = (lambda c: class_names[c]) if class_names is not None else (lambda c: f"class {c}")
    members = sorted(np.flatnonzero(masks[tail]), key=lambda c: -counts[c])
    listed = ", ".join(f"{name(c)}: {counts[c]}" for c in members)
    rule = {"few": f"fewer than {few}" if not few_inclusive else f"at most {few}", "medium":
            f"between {few} and {many}", "many": f"more than {many}"}
    missing = " and ".join(f"no {GROUP_NAMES[g].lower()} class ({rule[g]} training images)" for g in empty)
    return (f"**On these runs: {missing}.** The smallest class has {counts.min()} training images, so the "
            f"{', '.join(f'*{GROUP_NAMES[g]}*' for g in empty)} panels, columns and verdicts are empty. Where a "
            f"note points at {' or '.join(f'*{GROUP_NAMES[g]}*' for g in empty)}, look at "
            f"*{GROUP_NAMES[tail]}* instead: its classes ({listed} training images) are this dataset's tail.")


def reading_note(notebook: str, profile: str | None, train_counts: Sequence[int] | None = None,
                 class_names: Sequence[str] | None = None) -> str:
    """The profile note, preceded by the empty-group note when the runs' data has an empty group."""
    data = None if train_counts is None else empty_group_note(train_counts, class_names)
    return "\n\n".join(part for part in (data, profile_note(notebook, profile)) if part)


def runs_train_counts(runs: Mapping[str, Sequence[Mapping]]) -> list[int] | None:
    """The training counts per class of the first finished run in ``experiments.run_rows``' results
    (every run of a notebook trains on the same data); None when no row has a run."""
    return next((list(r["train_counts"]) for rs in runs.values() for r in rs if "train_counts" in r), None)
