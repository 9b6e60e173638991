"""Figures 1, 2 and 4 of the paper, and training curves, from run records and analytic curves.

Every function returns a ``matplotlib.figure.Figure`` built without ``pyplot`` (no global figure
registry, no backend state: the library never changes what a notebook or a test has set up);
Jupyter shows a Figure only as text, so notebooks display the saved PNG (``NotebookOutputs.figure``).
Styling: seaborn's whitegrid look and palettes as constants (``style``), applied in a local
``rc_context``, never globally.

- Figure 1 (a)-(c): ``plot_probability_curves``; (d): ``plot_probability_by_class``; the test images
  one method finds hard and the other easy: ``plot_sample_gallery``.
- Figure 2 (a): ``plot_adjusting_terms``; (b): ``plot_target_gradients``; both: ``plot_figure2``.
  The curves are computed by ``lt_paper.losses`` (``adjusting_terms``, ``target_logit_gradients``);
  these functions only draw the arrays they are given, keyed by legend label.
- Figure 3: ``lt_paper.analysis.diagram.draw_moe_diagram``.
- Figure 4: ``plot_router_weights``.
- Training curves: ``plot_training_curves``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from .groups import SHOT_GROUPS, class_groups, expert_group_accuracy, per_group_accuracy, record_groups, router_weight_by_group
from .records import RunRecord
from .samples import sample_like_train
from .style import DEEP, WHITEGRID, palette

GROUP_TITLES = {"many": "Many-shot", "medium": "Medium-shot", "few": "Few-shot", "all": "All"}


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` as PNG (or the format of ``path``'s suffix) at ``dpi``; creates parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _new_figure(ncols: int, nrows: int = 1, panel: tuple[float, float] = (4.0, 3.2),
                sharey: bool = False) -> tuple[Figure, np.ndarray]:
    with rc_context(WHITEGRID):
        fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False)
    return fig, axes


def _figure_and_axes(ax) -> tuple[Figure, Any]:
    """A new one-panel figure, or the figure of the given Axes (to compose panels)."""
    if ax is None:
        fig, axes = _new_figure(1)
        return fig, axes[0, 0]
    return ax.figure, ax


def _as_array(values: Any, name: str) -> np.ndarray:
    """numpy copy of an array-like or a (CPU) torch tensor, without importing torch."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"curve {name!r}: expected a 1-D array, got shape {arr.shape}")
    return arr


def _check_curves(x: np.ndarray, curves: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
    if not curves:
        raise ValueError(f"{what}: no curves given")
    out = {}
    for name, values in curves.items():
        arr = _as_array(values, name)
        if arr.shape != x.shape:
            raise ValueError(f"{what}: curve {name!r} has {arr.shape[0]} points, the x axis {x.shape[0]}")
        out[name] = arr
    return out


def _mark_empty_group(ax, group: str) -> None:
    """A panel for a shot group without test samples (CIFAR-10-LT at imbalance 100 has no few-shot
    class): say so in the panel instead of drawing NaN accuracies on meaningless axes. Tick marks are
    hidden per panel (tick_params), not removed: the panels may share their y axis."""
    ax.tick_params(left=False, bottom=False, labelleft=False, labelbottom=False)
    ax.grid(False)
    ax.text(0.5, 0.5, f"no {GROUP_TITLES.get(group, group).lower()} class\nin this dataset",
            ha="center", va="center", transform=ax.transAxes, color="0.3")


# ---------------------------------------------------------------------------------------------
# Figure 1


def plot_probability_curves(records: Mapping[str, RunRecord], groups: Sequence[str] = SHOT_GROUPS,
                            hard: float = 0.2, easy: float = 0.8) -> Figure:
    """Figure 1 (a)-(c): per shot group, the sorted ground-truth probabilities of each method.

    records: {method label: RunRecord}, e.g. {"CE": ce_run, "LDAM-DRW": ldam_run} (the paper's "LDAM"). One
    panel per group; x = sample index after sorting the group's ``p_gt`` ascending; the legend gives
    each method's accuracy on the group. Dashed lines mark the paper's hard (< 0.2) and easy (> 0.8)
    thresholds.
    """
    fig, axes = _new_figure(len(groups), sharey=True)
    colors = palette(DEEP, len(records))
    accuracy = {method: per_group_accuracy(record) for method, record in records.items()}
    masks = {method: record_groups(record) for method, record in records.items()}  # {group: (N,)} each
    for ax, g in zip(axes[0], groups):
        ax.set(title=f"{GROUP_TITLES.get(g, g)}", xlabel="sample index (sorted by p)", ylim=(-0.02, 1.02))
        if not any(m[g].any() for m in masks.values()):
            _mark_empty_group(ax, g)
            continue
        for color, (method, record) in zip(colors, records.items()):
            mask = masks[method][g]  # (N,)
            p_sorted = np.sort(record.p_gt[mask])  # (n_g,) ascending
            acc = accuracy[method][g]
            ax.plot(np.arange(p_sorted.size), p_sorted, color=color, lw=1.6,
                    label=f"{method} (acc {100 * acc:.1f}%)")
        for level in (hard, easy):
            ax.axhline(level, color="0.5", lw=0.8, ls="--")
        ax.legend(loc="upper left", fontsize=8)
    axes[0, 0].set_ylabel("predicted probability of the ground truth")
    return fig


def _default_subset_size(labels: np.ndarray, train_counts: np.ndarray) -> int:
    """Largest size for which no class needs more test samples than it has (test sets are balanced)."""
    counts = np.asarray(train_counts, dtype=float)
    available = np.bincount(labels, minlength=counts.size).astype(float)
    ratio = available[counts > 0] * counts.sum() / counts[counts > 0]
    return max(1, int(np.floor(ratio.min())))


# Figure 1(d): half the width of a class's column that its dots spread over (a column of 1,000 dots at
# one x would read as one line)
JITTER = 0.35


def plot_probability_by_class(records: Mapping[str, RunRecord], size: int | None = None,
                              seed: int = 0, class_names: Sequence[str] | None = None) -> Figure:
    """Figure 1 (d): p_gt of each sample against its class, classes sorted by train size.

    The samples are a test subset drawn with the train label distribution
    (``sample_like_train(labels, train_counts, size, seed)``; default ``size`` is the largest the
    balanced test set allows); the same subset for every method. The leftmost class is the one with the
    fewest train samples, as in the paper; each tick names its class (``class_names``, else its index)
    and its train count; vertical lines separate the few/medium/many groups. Each dot is shifted
    sideways by a random amount within ±``JITTER`` (drawn with ``seed``), so that a class's dots spread
    over its column instead of piling onto one vertical line.
    """
    first = next(iter(records.values()), None)
    if first is None:
        raise ValueError("plot_probability_by_class: no records given")
    for method, record in records.items():
        if not np.array_equal(record.label, first.label):
            raise ValueError(f"record {method!r} ({record.run_dir}) is over a different test set")
    if size is None:
        size = _default_subset_size(first.label, first.train_counts)
    subset = sample_like_train(first.label, first.train_counts, size, seed)  # (M,)
    order = np.argsort(first.train_counts, kind="stable")  # class ids, ascending class size
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)  # class id -> position on the x axis

    fig, axes = _new_figure(1, panel=(8.0, 3.6))
    ax = axes[0, 0]
    colors = palette(DEEP, len(records))
    jitter = np.random.default_rng(seed).uniform(-JITTER, JITTER, subset.size)  # (M,), the same for every method
    for color, (method, record) in zip(colors, records.items()):
        ax.scatter(rank[record.label[subset]] + jitter, record.p_gt[subset], s=5, alpha=0.4, color=color,
                   label=method, linewidths=0)
    sample_masks = record_groups(first)  # group boundaries on the x axis come from the class ranks
    for g in ("few", "medium", "many"):
        members = np.unique(first.label[sample_masks[g]])  # class ids of the group present in the test set
        if members.size == 0:
            continue
        lo, hi = rank[members].min(), rank[members].max()
        if g != "many":
            ax.axvline(hi + 0.5, color="0.4", lw=0.8, ls=":")
        ax.text((lo + hi) / 2, 1.0, g, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=8, color="0.3")
    names = list(class_names) if class_names is not None else [str(c) for c in range(order.size)]
    ax.set_xticks(np.arange(order.size), [f"{names[c]}\n{first.train_counts[c]}" for c in order], fontsize=8)
    ax.set(xlabel="class (train samples), sorted by train samples, ascending",
           ylabel="predicted probability of the ground truth", ylim=(-0.02, 1.02), xlim=(-0.6, order.size - 0.4))
    ax.grid(axis="x", visible=False)  # a grid line down the middle of each column would hide its dots
    ax.set_title(f"{subset.size} test samples drawn with the train distribution (seed {seed})", pad=16)
    ax.legend(loc="lower right", fontsize=8, markerscale=3)
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 2


def plot_adjusting_terms(class_sizes: Any, curves: Mapping[str, Any], ax=None, logx: bool = True) -> Figure:
    """Figure 2 (a): adjusting terms (ALA for a hard and an easy sample, LDAM, A_cls only) by class size.

    class_sizes: (C,) train counts; curves: {legend label: (C,) adjusting term per class}. Lines are
    drawn in order of increasing class size. With ``lt_paper.losses.adjusting_terms``::

        hard, easy = adjusting_terms(counts, -0.5), adjusting_terms(counts, 0.5)
        plot_adjusting_terms(counts, {"ALA (hard, cos -0.5)": hard["ala"], "ALA (easy, cos 0.5)": easy["ala"],
                                      "LDAM": hard["ldam"], "A_cls only": hard["acls_only"]})
    """
    sizes = _as_array(class_sizes, "class_sizes")
    curves = _check_curves(sizes, curves, "plot_adjusting_terms")
    fig, ax = _figure_and_axes(ax)
    order = np.argsort(sizes, kind="stable")
    colors = palette(DEEP, len(curves))
    for color, (name, values) in zip(colors, curves.items()):
        ax.plot(sizes[order], values[order], color=color, lw=1.8, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel="train samples of the class", ylabel="adjusting term A", title="(a) adjusting terms")
    ax.legend(fontsize=8)
    return fig


def plot_target_gradients(x: Any, curves: Mapping[str, Any], ax=None) -> Figure:
    """Figure 2 (b): gradient of the loss w.r.t. the target logit for ALA, FL, FL* (and CE) over ``x``.

    curves: {legend label: gradient over the grid ``x``}. With ``lt_paper.losses.target_logit_gradients``::

        g = target_logit_gradients(np.linspace(-30, 30, 601))
        plot_target_gradients(g["x"], {"ALA": g["ala"], "FL": g["focal"], "FL*": g["focal_star"], "CE": g["ce"]})
    """
    grid = _as_array(x, "x")
    curves = _check_curves(grid, curves, "plot_target_gradients")
    fig, ax = _figure_and_axes(ax)
    colors = palette(DEEP, len(curves))
    for color, (name, values) in zip(colors, curves.items()):
        ax.plot(grid, values, color=color, lw=1.8, label=name)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set(xlabel="target logit", ylabel="gradient of the target logit",
           title="(b) gradient of the target logit")
    ax.legend(fontsize=8)
    return fig


def plot_figure2(class_sizes: Any, term_curves: Mapping[str, Any], x: Any,
                 gradient_curves: Mapping[str, Any], logx: bool = True) -> Figure:
    """Both panels of Figure 2 side by side."""
    fig, axes = _new_figure(2, panel=(4.8, 3.6))
    plot_adjusting_terms(class_sizes, term_curves, ax=axes[0, 0], logx=logx)
    plot_target_gradients(x, gradient_curves, ax=axes[0, 1])
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 4


def plot_router_weights(record: RunRecord, groups: Sequence[str] = SHOT_GROUPS, bar: str = "weight") -> Figure:
    """Figure 4: per shot group, each expert's mean router weight and its accuracy.

    The paper plots "the weights learned by the router and the performance of experts on different
    subsets. The accuracy of each expert on the subset is listed on the top of the bar": bars are the
    mean router weights w^k_group and the text on each bar is acc^k_group (``bar="weight"``, default).
    ``bar="accuracy"`` swaps them: bar height = expert accuracy (percent), mean weight on top.
    """
    if bar not in ("weight", "accuracy"):
        raise ValueError(f"bar must be 'weight' or 'accuracy', got {bar!r}")
    acc = 100.0 * expert_group_accuracy(record)  # (K, groups) percent
    weight = router_weight_by_group(record)  # (K, groups)
    fig, axes = _new_figure(len(groups), panel=(3.4, 3.2))
    colors = palette(DEEP, record.num_experts)
    experts = list(acc.index)
    for ax, g in zip(axes[0], groups):
        ax.set_title(GROUP_TITLES.get(g, g))
        if weight[g].isna().all():
            _mark_empty_group(ax, g)
            continue
        heights, labels = (weight[g], acc[g]) if bar == "weight" else (acc[g], weight[g])
        bars = ax.bar([f"expert {k}" for k in experts], heights.to_numpy(), color=colors)
        text = [f"{v:.1f}" if bar == "weight" else f"{v:.3f}" for v in labels]
        ax.bar_label(bars, labels=text, padding=2, fontsize=8)
        top = np.nanmax(heights.to_numpy()) if np.isfinite(heights.to_numpy()).any() else 1.0
        ax.set_ylim(0, top * 1.18 if top > 0 else 1.0)
        ax.tick_params(axis="x", labelsize=8)
    axes[0, 0].set_ylabel("mean router weight" if bar == "weight" else "expert accuracy (%)")
    fig.suptitle("router weight per expert (bars) and expert accuracy % (on top)" if bar == "weight"
                 else "expert accuracy % (bars) and mean router weight (on top)", fontsize=10)
    return fig


# JupyterLab's output area is about 950 px wide in a 1400 px window, and a figure is shown at 100 px per
# inch of its width (``outputs.SHOWN_PX_PER_INCH``): a figure up to 9 inches wide is shown at full size,
# where a 9 pt label is 12.5 px high. The gallery is laid out for that: 3 images per line, 3 inches each.
NOTEBOOK_WIDTH_IN = 9.0
GALLERY_COLUMNS = 3
GALLERY_FONT_PT = 9


def _gallery_heading(group: str, shown: int, found: int, ranked_by: str | None) -> str:
    """What a gallery row shows: "Many-shot: the 6 of 252 with the lowest p(true) under CE"."""
    title = GROUP_TITLES.get(group, group)
    if found == 0:
        return f"{title}: none found"
    if shown < found:
        order = f" with the lowest p(true) under {ranked_by}" if ranked_by else ""
        return f"{title}: the {shown} of {found}{order}"
    return f"{title}: all {found}" + (f", the lowest p(true) under {ranked_by} first" if ranked_by else "")


def plot_sample_gallery(picks: Mapping[str, Sequence[int]], images: Mapping[int, np.ndarray],
                        runs: Mapping[str, RunRecord], class_names: Sequence[str] | None = None,
                        per_group: int = 6, ranked_by: str | None = None,
                        columns: int = GALLERY_COLUMNS) -> Figure:
    """Test images in rows (``picks``: {row: test-set indices, in the order to show}; a shot group's
    row, e.g. from ``samples.disagreeing_samples``, or any label), the first ``per_group`` of each.

    Each row's heading says which images it shows: "Many-shot: the 6 of 252 with the lowest p(true)
    under CE" (``ranked_by``: the run whose probability ordered ``picks``; ``disagreeing_samples``
    orders by the run that finds them hard). Each image is titled with its test-set index, its true
    label and, per run in ``runs`` ({label: RunRecord}), the predicted label and ``p(true)``: the
    probability the run gives the true class. A shot group without any class in the data ("no few-shot
    class in this dataset", as the other figures' panels say) is one short line, not an empty image.
    ``images``: {index: (H, W, 3) uint8}. ``columns`` images per line (3: legible at JupyterLab's width,
    ``NOTEBOOK_WIDTH_IN``).
    """
    names = list(class_names) if class_names is not None else None
    label = (lambda c: names[c]) if names else str
    first = next(iter(runs.values()))
    class_masks = class_groups(first)
    rows = {g: list(indices)[:per_group] for g, indices in picks.items()}
    no_class = {g for g, shown in rows.items() if not shown and g in class_masks and not class_masks[g].any()}
    lines = {g: 0 if g in no_class else max(1, math.ceil(len(shown) / columns)) for g, shown in rows.items()}
    panel = NOTEBOOK_WIDTH_IN / columns
    heights = [0.5 if lines[g] == 0 else 0.45 + lines[g] * (panel + 0.75) for g in rows]
    with rc_context(WHITEGRID):
        fig = Figure(figsize=(NOTEBOOK_WIDTH_IN, sum(heights)), layout="constrained")
        subfigures = np.atleast_1d(fig.subfigures(len(rows), 1, height_ratios=heights))
        for sub, (group, shown) in zip(subfigures, rows.items()):
            if group in no_class:
                sub.suptitle(f"{GROUP_TITLES.get(group, group)}: no {GROUP_TITLES.get(group, group).lower()} "
                             f"class in this dataset", fontsize=GALLERY_FONT_PT + 1, color="0.3", x=0.02, ha="left")
                continue
            sub.suptitle(_gallery_heading(group, len(shown), len(picks[group]), ranked_by),
                         fontsize=GALLERY_FONT_PT + 1, fontweight="bold", x=0.02, ha="left")
            axes = sub.subplots(lines[group], columns, squeeze=False)
            for k, ax in enumerate(axes.flat):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if k >= len(shown):  # fewer images than panels: blank
                    ax.axis("off")
                    continue
                i = int(shown[k])
                image = np.asarray(images[i]).squeeze()
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
                title = [f"#{i} true {label(int(first.label[i]))}"]
                title += [f"{name}: {label(int(r.pred[i]))}, p(true)={float(r.p_gt[i]):.2f}"
                          for name, r in runs.items()]
                ax.set_title("\n".join(title), fontsize=GALLERY_FONT_PT)
    return fig


# ---------------------------------------------------------------------------------------------
# training curves

CURVE_PANELS = ("train_loss", "lr", "test_all", "test_many", "test_medium", "test_few")
CURVE_TITLES = {"train_loss": "train loss", "lr": "learning rate", "train_acc": "train accuracy",
                "test_all": "test accuracy, all", "test_many": "test accuracy, many",
                "test_medium": "test accuracy, medium", "test_few": "test accuracy, few"}


def plot_training_curves(runs: Mapping[str, RunRecord | Sequence[Mapping[str, Any]]],
                         panels: Sequence[str] = CURVE_PANELS, ncols: int = 3) -> Figure:
    """One panel per ``history.json`` key (loss, lr, accuracy per group) over epochs, one line per run.

    runs: {label: RunRecord or its history list}. A missing key raises KeyError naming run, epoch and
    key. A None or NaN value is an epoch without that number (no test pass that epoch, with
    ``eval_every`` > 1; NaN: an empty group, as ``history.json`` writes it): it is left out, never drawn
    as 0, and the line joins the epochs that have one, each marked with a dot. A test-accuracy panel
    without any value says that its group is empty.
    """
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = _new_figure(min(ncols, len(panels)), nrows=nrows, panel=(3.6, 2.8))
    colors = palette(DEEP, len(runs))
    for i, key in enumerate(panels):
        ax = axes.flat[i]
        for color, (label, run) in zip(colors, runs.items()):
            history = run.history if isinstance(run, RunRecord) else run
            epochs, values = [], []
            for entry in history:
                if key not in entry:
                    raise KeyError(f"run {label!r}: history entry for epoch {entry.get('epoch', '?')} "
                                   f"has no {key!r} (keys: {sorted(entry)})")
                epoch = entry.get("epoch", len(epochs))
                if entry[key] is not None and math.isfinite(entry[key]):
                    epochs.append(epoch)
                    values.append(float(entry[key]))
            sparse = len(epochs) < len(history)  # e.g. a test pass every 5th epoch: show the points
            ax.plot(epochs, values, color=color, lw=1.4, label=label, marker="o" if sparse else None, ms=3)
        ax.set(title=CURVE_TITLES.get(key, key), xlabel="epoch")
        group = key.removeprefix("test_")
        drawn = any(len(line.get_xdata()) for line in ax.lines)
        if key.startswith("test_") and group in GROUP_TITLES and not drawn:
            _mark_empty_group(ax, group)
        positive = [v for line in ax.lines for v in line.get_ydata() if np.isfinite(v)]
        if key == "lr" and positive and min(positive) > 0:  # step decays read best on a log axis
            ax.set_yscale("log")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    return fig
