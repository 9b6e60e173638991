"""Shot groups and per-group statistics over the per-sample test records.

Shot groups (docs/decisions.md, decision 2): many ``n > 100``, medium ``20 <= n <= 100``, few ``n < 20`` train
samples per class (OLTR's rule); the paper's Table 2 writes few as ``n <= 20`` (``few_inclusive=True``).
The rule a run used is in its ``metrics.json`` (``RunRecord.shot_rule``) and is the default here, so
that numbers recomputed from ``records.npz`` agree with the engine's; ``regroup_metrics`` gives a
run's group accuracies under the other rule.

A group's accuracy is the mean of its classes' accuracies (the definition of OLTR / LDAM-DRW / RIDE
and of the engine's ``metrics.json``; equal to the sample accuracy on the balanced test sets of the
paper), "all" the sample accuracy. Mean router weights are averages over the group's test samples
(paper section 4.4.2, "average learned weights for each expert on different subsets").

An empty group (e.g. no few-shot class in a small smoke dataset) gives NaN and an
``EmptyGroupWarning``, never 0: a 0 would read as "the method fails on the tail", which is the one
conclusion the tables are there to test.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from ..data import SHOT_GROUPS, shot_groups
from ..train.evaluate import group_means
from .paper_numbers import GROUPS as GROUPS_WITH_ALL
from .records import RunRecord



class EmptyGroupWarning(RuntimeWarning):
    """A statistic was asked for a group with no samples; the result is NaN."""


def _rule(record: RunRecord, rule: dict) -> dict:
    unknown = set(rule) - {"many", "few", "few_inclusive"}
    if unknown:
        raise TypeError(f"unknown shot-rule argument(s) {sorted(unknown)}; valid: many, few, few_inclusive")
    return {**record.shot_rule, **rule}


def class_groups(record: RunRecord, **rule) -> dict[str, np.ndarray]:
    """Boolean masks over classes {"many", "medium", "few"} for a run, by the run's own shot rule
    unless overridden (``many=``, ``few=``, ``few_inclusive=``)."""
    merged = _rule(record, rule)
    masks = shot_groups(record.train_counts, many=merged["many"], few=merged["few"],
                        few_inclusive=merged["few_inclusive"])
    return {g: np.asarray(masks[g], dtype=bool) for g in SHOT_GROUPS}


def sample_groups(labels: np.ndarray, train_counts: np.ndarray, many: int = 100, few: int = 20,
                  few_inclusive: bool = False) -> dict[str, np.ndarray]:
    """Boolean masks over samples {"many", "medium", "few", "all"}: a sample is in its class's group."""
    labels = np.asarray(labels)  # (N,)
    class_masks = shot_groups(np.asarray(train_counts), many=many, few=few, few_inclusive=few_inclusive)
    masks = {g: np.asarray(class_masks[g], dtype=bool)[labels] for g in SHOT_GROUPS}  # (N,) each
    masks["all"] = np.ones(labels.shape[0], dtype=bool)
    return masks


def record_groups(record: RunRecord, **rule) -> dict[str, np.ndarray]:
    """Sample masks {"many", "medium", "few", "all"} for a run (its own shot rule unless overridden)."""
    merged = _rule(record, rule)
    return sample_groups(record.label, record.train_counts, many=merged["many"], few=merged["few"],
                         few_inclusive=merged["few_inclusive"])


def _warn_empty(what: str) -> None:
    warnings.warn(f"{what}: the group has no test samples; reporting NaN (not 0)", EmptyGroupWarning,
                  stacklevel=4)


def masked_mean(values: np.ndarray, mask: np.ndarray, what: str = "value") -> float | np.ndarray:
    """Mean of ``values[mask]`` along the first axis; NaN with an EmptyGroupWarning when mask is empty."""
    values = np.asarray(values, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        _warn_empty(what)
        return np.full(values.shape[1:], np.nan) if values.ndim > 1 else float("nan")
    return values[mask].mean(axis=0) if values.ndim > 1 else float(values[mask].mean())


def group_accuracy(correct: np.ndarray, labels: np.ndarray,
                   class_masks: Mapping[str, np.ndarray]) -> dict[str, float | np.ndarray]:
    """Top-1 accuracy in [0, 1] per group, as the engine's ``metrics.json`` computes it.

    A group's accuracy is the mean of its classes' accuracies over the classes that have test samples
    (the OLTR / LDAM-DRW / RIDE definition; on a balanced test set it equals the sample accuracy);
    "all" is the plain sample accuracy. ``correct`` is (N,) or (N, K) (one column per expert, giving
    (K,) arrays). A group without test samples gives NaN and an EmptyGroupWarning, never 0.
    """
    correct = np.asarray(correct, dtype=float)  # (N,) or (N, K)
    labels = np.asarray(labels)  # (N,)
    num_classes = len(next(iter(class_masks.values())))
    per_class_sum = np.zeros((num_classes, *correct.shape[1:]))
    np.add.at(per_class_sum, labels, correct)
    n_test = np.bincount(labels, minlength=num_classes)  # (C,)
    has_test = n_test > 0
    per_class = per_class_sum[has_test] / n_test[has_test].reshape(-1, *([1] * (correct.ndim - 1)))
    out: dict[str, float | np.ndarray] = {}
    for g, mask in class_masks.items():
        selected = np.asarray(mask, dtype=bool)[has_test]  # classes of g that have test samples
        if not selected.any():
            _warn_empty(f"accuracy of group {g!r}")
            out[g] = np.full(correct.shape[1:], np.nan) if correct.ndim > 1 else float("nan")
        else:
            mean = per_class[selected].mean(axis=0)
            out[g] = mean if correct.ndim > 1 else float(mean)
    out["all"] = masked_mean(correct, np.ones(labels.shape[0], dtype=bool), what="accuracy of group 'all'")
    return out


def per_group_accuracy(record: RunRecord, **rule) -> dict[str, float]:
    """{"many", "medium", "few", "all"} -> top-1 accuracy in [0, 1] recomputed from records.npz."""
    return group_accuracy(record.pred == record.label, record.label, class_groups(record, **rule))


def regroup_metrics(metrics: Mapping, many: int, few: int, few_inclusive: bool) -> dict[str, float]:
    """{"many", "medium", "few"} of a run's ``metrics.json`` recomputed under another shot rule.

    From the run's per-class accuracies (``per_class``, last epoch) and ``train_counts``, with the
    engine's definition (``lt_paper.train.evaluate.group_means``); the same numbers
    ``per_group_accuracy(load_run(run_dir), ...)`` recomputes from ``records.npz``.
    """
    missing = [k for k in ("per_class", "train_counts") if k not in metrics]
    if missing:
        raise KeyError(f"metrics have no {missing} (keys: {sorted(metrics)}); "
                       f"a run's metrics.json holds both")
    per_class = np.array([np.nan if v is None else v for v in metrics["per_class"]], dtype=float)  # (C,)
    return group_means(per_class, metrics["train_counts"], many=many, few=few, few_inclusive=few_inclusive)


def _require_moe(record: RunRecord, what: str) -> None:
    if not record.is_moe:
        raise ValueError(f"{what} needs an MoE run: {record.run_dir / 'records.npz'} has no "
                         f"expert_pred / router_weights")


def expert_group_accuracy(record: RunRecord, **rule) -> pd.DataFrame:
    """Accuracy in [0, 1] of each expert per group (same definition as ``group_accuracy``):
    index expert k = 1..K, columns many/medium/few/all."""
    _require_moe(record, "expert accuracy")
    correct = record.expert_pred == record.label[:, None]  # (N, K)
    data = group_accuracy(correct, record.label, class_groups(record, **rule))
    return pd.DataFrame(data, index=pd.RangeIndex(1, record.num_experts + 1, name="expert"))


def router_weight_by_group(record: RunRecord, **rule) -> pd.DataFrame:
    """Mean router weight w^k of each expert over the group's test samples (paper Fig. 4, w^k_many ...):
    index k = 1..K, columns many/medium/few/all."""
    _require_moe(record, "router weights")
    masks = record_groups(record, **rule)
    weights = np.asarray(record.router_weights, dtype=float)  # (N, K)
    data = {g: masked_mean(weights, m, what=f"router weight of group {g!r}") for g, m in masks.items()}
    return pd.DataFrame(data, index=pd.RangeIndex(1, record.num_experts + 1, name="expert"))


# Two experts' accuracies on the same images differ by c - b images, where c images only the first gets
# right and b only the second (McNemar's paired comparison). Were the two equally accurate, each of the
# b + c disagreements would go either way with probability 1/2, so c - b has standard deviation
# sqrt(b + c): a difference within TIE_Z of it (1.96: two-sided 5 %) is a tie, not a ranking. On the
# cifar-cpu MoE's medium group (2,000 images) experts 1 and 2 differ by 5 images (0.2 points) against an
# error of 34: a tie.
TIE_Z = 1.96
# Mean router weights of one expert that differ between groups by less than this (a shift of under 2 % of
# the output from one expert to another) are one weighting for every group.
GROUP_FLAT = 0.02


def paired_difference(right_a: np.ndarray, right_b: np.ndarray, z: float = TIE_Z) -> tuple[int, float]:
    """(images only ``a`` gets right minus images only ``b`` gets right, its sampling error
    ``z * sqrt(disagreements)``) for two boolean (N,) arrays over the same images."""
    right_a, right_b = np.asarray(right_a, dtype=bool), np.asarray(right_b, dtype=bool)
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    return only_a - only_b, z * float(np.sqrt(only_a + only_b))


def router_verdict(record: RunRecord, flat: float = 0.01, z: float = TIE_Z, **rule) -> pd.DataFrame:
    """Figure 4's claim per group: does the expert with the largest mean router weight have the best
    accuracy? Index: groups; columns: the top-weight expert and its weight, the spread of the mean
    weights (max - min), the most accurate expert and its accuracy (percent), the top-weight expert's
    closest rival (the other expert nearest to or above it), the difference in images the two get right
    on the group (top-weight minus rival, on the same images) and its sampling error
    (``paired_difference``), and ``agrees``:

    - "yes": the top-weight expert gets more images right than every other expert, each by more than
      the sampling error;
    - "no": some expert gets more images right than the top-weight expert, by more than the error;
    - "tie": neither: the accuracies that decide it differ by less than their sampling error;
    - "flat": the weights spread less than ``flat`` (the router hardly moved from the mean, so there is
      no top expert to speak of); "-": an empty group.
    """
    weights, accuracy = router_weight_by_group(record, **rule), expert_group_accuracy(record, **rule)
    masks = record_groups(record, **rule)
    right = record.expert_pred == record.label[:, None]  # (N, K)
    empty = {"top-weight expert": None, "its weight": np.nan, "weight spread": np.nan,
             "most accurate expert": None, "its accuracy %": np.nan, "closest rival": None,
             "difference (images)": np.nan, "sampling error (images)": np.nan, "agrees": "-"}
    rows = {}
    for g in weights.columns:
        if weights[g].isna().all() or accuracy[g].isna().all():
            rows[g] = dict(empty)
            continue
        top, best = int(weights[g].idxmax()), int(accuracy[g].idxmax())
        spread = float(weights[g].max() - weights[g].min())
        against = {k: paired_difference(right[masks[g], top - 1], right[masks[g], k - 1], z)
                   for k in weights.index if k != top}  # {other expert: (difference, error)}
        rival = min(against, key=lambda k: against[k][0])
        if spread < flat:
            agrees = "flat"
        elif any(d < -e for d, e in against.values()):
            agrees = "no"
        elif all(d > e for d, e in against.values()):
            agrees = "yes"
        else:
            agrees = "tie"
        rows[g] = {"top-weight expert": top, "its weight": float(weights[g][top]), "weight spread": spread,
                   "most accurate expert": best, "its accuracy %": 100 * float(accuracy[g][best]),
                   "closest rival": rival, "difference (images)": against[rival][0],
                   "sampling error (images)": against[rival][1], "agrees": agrees}
    verdict = pd.DataFrame.from_dict(rows, orient="index").rename_axis("group")
    # expert numbers stay whole numbers beside an empty group's missing value (not 1.000)
    verdict = verdict.astype({"top-weight expert": "Int64", "most accurate expert": "Int64", "closest rival": "Int64",
                              "difference (images)": "Int64"})
    # weights at 3 decimals, accuracies and errors at 1
    verdict.attrs["column_decimals"] = {"its accuracy %": 1, "sampling error (images)": 1}
    return verdict


def router_variation(record: RunRecord, group_flat: float = GROUP_FLAT, **rule) -> dict:
    """Whether the router weights the shot groups differently at all: the largest difference of one
    expert's mean weight between two groups that have images (``between_groups``, with the ``expert``
    and the two ``groups``), how much the weights vary from image to image (``per_image_std``: the
    standard deviation over the test images, averaged over experts) and ``reading``, one sentence:
    below ``group_flat`` it is one global weighting, not one that follows the groups."""
    weights = router_weight_by_group(record, **rule)[[g for g in SHOT_GROUPS]].dropna(axis=1, how="all")
    per_image_std = float(np.asarray(record.router_weights, dtype=float).std(axis=0).mean())
    if weights.shape[1] < 2:
        return {"between_groups": float("nan"), "expert": None, "groups": list(weights.columns),
                "per_image_std": per_image_std, "global": None,
                "reading": "only one shot group has images: nothing to compare between groups."}
    gaps = weights.max(axis=1) - weights.min(axis=1)  # (K,) per expert
    k = int(gaps.idxmax())
    hi, lo = str(weights.loc[k].idxmax()), str(weights.loc[k].idxmin())
    between = float(gaps[k])
    detail = (f"expert {k}: {weights.loc[k, hi]:.3f} on {hi}, {weights.loc[k, lo]:.3f} on {lo}; per image the "
              f"weights vary by a standard deviation of {per_image_std:.3f}")
    if between < group_flat:
        reading = (f"the mean weights differ between groups by at most {between:.3f} ({detail}), less than "
                   f"{group_flat}: one global weighting for every group, not one that follows the groups.")
    else:
        reading = (f"the mean weights differ between groups by up to {between:.3f} ({detail}): the router "
                   f"weights the groups differently.")
    return {"between_groups": between, "expert": k, "groups": [hi, lo], "per_image_std": per_image_std,
            "global": between < group_flat, "reading": reading}
