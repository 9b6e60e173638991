"""Per-sample analyses behind Figure 1: hard/easy shares and a test subset drawn like the train set.

Paper section 1 (Figure 1): "we roughly consider those samples with predicted probabilities < 0.2 as
hard samples, and those > 0.8 as easy samples". ``hard_easy_shares`` counts exactly that per shot
group, from ``p_gt`` (softmax of the loss's scale times the logits, at the ground-truth class).

Figure 1(d) plots one dot per sample against the class index sorted by class size. The paper samples
"a subset of the test set according to the label distribution of training set": ``sample_like_train``
draws a test subset whose per-class counts are proportional to the train counts, so a rare class may
get no dot, exactly as in a proportional draw (docs/decisions.md, decision 12). Raising every class to one dot
would over-represent the tail: on ImageNet-LT it raises 73 classes and doubles the few-shot share.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .groups import GROUPS_WITH_ALL, SHOT_GROUPS, EmptyGroupWarning, record_groups
from .records import RunRecord


def train_like_counts(train_counts: np.ndarray, size: int) -> np.ndarray:
    """Per-class sample counts proportional to ``train_counts``, summing to ``size``.

    Largest-remainder rounding of ``size * n_c / sum(n)``, so counts that divide exactly are
    reproduced exactly; a class whose share rounds to 0 gets 0 (proportional, as the paper samples).
    """
    counts = np.asarray(train_counts, dtype=float)  # (C,)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"train_counts must be a non-empty 1-D array of non-negative counts, got {counts}")
    quota = size * counts / counts.sum()  # (C,)
    n = np.floor(quota).astype(np.int64)
    remainder = int(size - n.sum())
    if remainder > 0:  # stable order: ties go to the lower class index
        n[np.argsort(-(quota - n), kind="stable")[:remainder]] += 1
    return n


def sample_like_train(labels: np.ndarray, train_counts: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted, into ``labels``) of a test subset whose class counts follow the train counts.

    Per class c, ``train_like_counts(train_counts, size)[c]`` samples are drawn without replacement
    with ``numpy.random.default_rng(seed)`` (deterministic for a seed). A class with fewer test
    samples than asked gives all it has, with a warning (proportionality is then broken; ask a
    smaller ``size``).
    """
    labels = np.asarray(labels)  # (N,)
    wanted = train_like_counts(train_counts, size)  # (C,)
    rng = np.random.default_rng(seed)
    chosen, short = [], []
    for c, k in enumerate(wanted):
        pool = np.flatnonzero(labels == c)
        if pool.size < k:
            short.append(c)
            k = pool.size
        chosen.append(rng.choice(pool, size=int(k), replace=False))
    if short:
        warnings.warn(f"sample_like_train: {len(short)} class(es) have fewer test samples than their "
                      f"train-proportional share (first: {short[:5]}); they contribute all they have",
                      RuntimeWarning, stacklevel=2)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def hard_easy_shares(records: Mapping[str, RunRecord], groups: Sequence[str] = GROUPS_WITH_ALL,
                     hard: float = 0.2, easy: float = 0.8) -> pd.DataFrame:
    """Share of hard (``p_gt < hard``) and easy (``p_gt > easy``) test samples per method and group.

    records: {method label: RunRecord}. Returns a frame indexed by (method, group) with columns
    ``samples`` (group size), ``hard`` and ``easy`` (fractions in [0, 1]; NaN plus an
    EmptyGroupWarning for an empty group).
    """
    if not hard <= easy:
        raise ValueError(f"hard threshold {hard} must not exceed easy threshold {easy}")
    rows, index = [], []
    for method, record in records.items():
        masks = record_groups(record)
        unknown = [g for g in groups if g not in masks]
        if unknown:
            raise KeyError(f"unknown group(s) {unknown}; valid: {list(masks)}")
        for g in groups:
            p = record.p_gt[masks[g]]  # (n_g,)
            if p.size == 0:
                warnings.warn(f"hard_easy_shares: {method!r} group {g!r} has no samples; shares are NaN",
                              EmptyGroupWarning, stacklevel=2)
                rows.append({"samples": 0, "hard": float("nan"), "easy": float("nan")})
            else:
                rows.append({"samples": int(p.size), "hard": float((p < hard).mean()),
                             "easy": float((p > easy).mean())})
            index.append((method, g))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["method", "group"]),
                        columns=["samples", "hard", "easy"])  # columns named even without records


def disagreeing_samples(hard_for: RunRecord, easy_for: RunRecord, groups: Sequence[str] = SHOT_GROUPS,
                        hard: float = 0.2, easy: float = 0.8) -> dict[str, np.ndarray]:
    """Per shot group, the test samples ``hard_for`` finds hard (``p_gt < hard``) and ``easy_for`` easy
    (``p_gt > easy``): ``{group: test-set indices, hardest first (by hard_for's p_gt)}``.

    Both records must cover the same test set in the same order (the engine writes records in
    dataset order, so a position in ``records.npz`` is the sample's index in the test set).
    """
    if hard_for.label.shape != easy_for.label.shape or not np.array_equal(hard_for.label, easy_for.label):
        raise ValueError(f"{hard_for.run_dir} and {easy_for.run_dir} do not cover the same test set "
                         f"({hard_for.num_samples} vs {easy_for.num_samples} samples or different labels)")
    masks = record_groups(hard_for)
    chosen = {}
    for g in groups:
        picked = np.flatnonzero(masks[g] & (hard_for.p_gt < hard) & (easy_for.p_gt > easy))  # (n,)
        chosen[g] = picked[np.argsort(hard_for.p_gt[picked], kind="stable")]
    return chosen
