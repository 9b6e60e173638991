"""What the hard-sample explorer shows, computed from run records alone (no widgets, no images).

``notebooks/explore_hard_samples.ipynb`` compares two finished runs A and B (a method and a seed each)
on one class: the class's sorted probabilities of the true class under both, its hardest test images
under A, the images A and B disagree on most (both ways), how many are hard under A, under B and under
both, and for one image of an MoE run each expert's probability of the true class beside the router's
weight for it. These functions compute those from ``RunRecord`` arrays; ``lt_paper.workflows.explore`` draws them
with ipywidgets. "Hard" is the paper's p(true) < 0.2 (section 1, Figure 1), where p(true) is a run's
probability of the image's true class (``RunRecord.p_gt``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .groups import class_groups
from .records import RunRecord

HARD = 0.2


def same_test_set(records: Mapping[str, RunRecord]) -> None:
    """ValueError naming the run unless every record covers the same test images in the same order."""
    first_label, first = next(iter(records.items()))
    for label, record in records.items():
        if not np.array_equal(record.label, first.label):
            raise ValueError(f"run {label!r} ({record.run_dir}) covers other test images than {first_label!r} "
                             f"({first.run_dir}): the explorer compares runs on the same test set")


def class_options(record: RunRecord, class_names: Sequence[str] | None = None) -> dict[str, list[tuple[str, int]]]:
    """Per shot group ("many", "medium", "few"), its classes as (``"ship (83 train images)"``, class id),
    the largest class first; a group without a class maps to []."""
    name = (lambda c: class_names[c]) if class_names is not None else (lambda c: f"class {c}")
    counts = record.train_counts
    return {g: [(f"{name(c)} ({counts[c]} train images)", int(c))
                for c in sorted(np.flatnonzero(mask), key=lambda c: (-counts[c], c))]
            for g, mask in class_groups(record).items()}


def class_images(record: RunRecord, c: int) -> np.ndarray:
    """Test-set indices of class ``c``'s images, in dataset order."""
    return np.flatnonzero(record.label == c)


def sorted_probabilities(record: RunRecord, c: int) -> np.ndarray:
    """p(true) of class ``c``'s test images under ``record``, ascending (a curve of Figure 1(a-c))."""
    return np.sort(record.p_gt[class_images(record, c)])


def hardest(record: RunRecord, c: int, n: int | None = None) -> np.ndarray:
    """Class ``c``'s test images, the lowest p(true) under ``record`` first (ties: dataset order); the
    first ``n`` (all with None)."""
    images = class_images(record, c)
    return images[np.argsort(record.p_gt[images], kind="stable")][:n]


def hard_counts(a: RunRecord, b: RunRecord, c: int, hard: float = HARD) -> dict[str, int]:
    """Of class ``c``'s test images: how many there are, and how many are hard (p(true) < ``hard``) under
    ``a``, under ``b`` and under both."""
    images = class_images(a, c)
    hard_a, hard_b = a.p_gt[images] < hard, b.p_gt[images] < hard
    return {"images": int(images.size), "hard_a": int(hard_a.sum()), "hard_b": int(hard_b.sum()),
            "hard_both": int((hard_a & hard_b).sum())}


def hard_for_one(hard_for: RunRecord, other: RunRecord, c: int, hard: float = HARD) -> np.ndarray:
    """Class ``c``'s test images that ``hard_for`` finds hard (p(true) < ``hard``) and ``other`` does not,
    where the two disagree most first: the largest gain in p(true) from ``hard_for`` to ``other``."""
    images = class_images(hard_for, c)
    picked = images[(hard_for.p_gt[images] < hard) & (other.p_gt[images] >= hard)]
    gain = other.p_gt[picked].astype(float) - hard_for.p_gt[picked]
    return picked[np.argsort(-gain, kind="stable")]


def summary_line(label_a: str, label_b: str, class_label: str, counts: Mapping[str, int],
                 hard: float = HARD) -> str:
    """One sentence: of the class's images, how many are hard under A, under B, under both."""
    return (f"{class_label}: {counts['images']} test images; hard (p(true) < {hard}) under {label_a}: "
            f"{counts['hard_a']}, under {label_b}: {counts['hard_b']}, under both: {counts['hard_both']}")


def expert_view(record: RunRecord, i: int, class_names: Sequence[str] | None = None) -> pd.DataFrame | None:
    """For test image ``i`` of an MoE run: per expert (index 1..K) its p(true), its prediction and the
    router's weight for it; None for a single network."""
    if not record.is_moe:
        return None
    name = (lambda c: class_names[c]) if class_names is not None else str
    return pd.DataFrame({"p(true)": record.expert_p_gt[i].astype(float),
                         "prediction": [name(int(p)) for p in record.expert_pred[i]],
                         "router weight": record.router_weights[i].astype(float)},
                        index=pd.RangeIndex(1, record.num_experts + 1, name="expert"))


def router_reading(record: RunRecord, i: int) -> str | None:
    """Whether the router weighted an expert that was right on image ``i`` (one whose prediction is the
    true class): the expert with the largest weight against the experts that are right; None for a
    single network."""
    if not record.is_moe:
        return None
    weights, p = record.router_weights[i], record.expert_p_gt[i]
    right = np.flatnonzero(record.expert_pred[i] == record.label[i])
    top = int(np.argmax(weights))
    head = f"the router gave its largest weight ({weights[top]:.2f}) to expert {top + 1} (p(true)={p[top]:.2f})"
    if right.size == 0:
        return f"{head}; no expert predicts the true class (the highest p(true) is {p.max():.2f})."
    if top in right:
        return f"{head}, which predicts the true class: the router weighted an expert that was right."
    listed = ", ".join(f"expert {k + 1} (p(true)={p[k]:.2f}, weight {weights[k]:.2f})" for k in right)
    return f"{head}, which is wrong; right: {listed}: the router did not weight the expert that was right."
