"""Figure 3: the Mixture-of-Experts architecture (paper section 3.2), drawn with matplotlib patches.

input -> shared trunk (stem + first stages) -> K experts (remaining stages at 3/4 width + cosine head,
logits l^k) and, from the same trunk output, the instance-aware router (global average pooling ->
one linear layer -> softmax over experts -> w) -> aggregate l = sum_k w^k l^k (eq. 7).

Tensor shapes are arguments, not constants, so a notebook can pass the shapes it measured from a real
``lt_paper.models.build_model(...)`` forward pass (docs/decisions.md, decision 5 makes the shared stages a
parameter: 2 for ResNet-50/ResNeXt-50, 1 for ResNet-32).
"""

from __future__ import annotations

from typing import Mapping

from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from .style import PASTEL, palette

SHAPE_KEYS = ("input", "trunk", "expert", "logits", "weights")
"""Keys of ``shapes``: input image, trunk output, expert feature map, per-expert logits, router weights."""


def _box(ax, x: float, y: float, w: float, h: float, text: str, color, fontsize: float = 9) -> None:
    """Rounded box with its lower-left corner at (x, y) and centred text."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.15",
                                facecolor=color, edgecolor="0.25", lw=1.0))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str | None = None,
           head: bool = True) -> None:
    """Arrow (or plain line, ``head=False``) from start to end; ``label`` just after the start."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>" if head else "-", mutation_scale=10,
                                 color="0.25", lw=1.0, shrinkA=0, shrinkB=0))
    if label:
        ax.text(start[0] + 0.25 * (end[0] - start[0]), start[1] + 0.25 * (end[1] - start[1]) + 0.08, label,
                ha="left", va="bottom", fontsize=8)


def _with_shape(text: str, shapes: Mapping[str, str], key: str) -> str:
    return f"{text}\n{shapes[key]}" if shapes.get(key) else text


def draw_moe_diagram(num_experts: int = 3, trunk_label: str = "stem + stages 1-2",
                     expert_label: str = "stages 3-4 (3/4 width)\n+ cosine head",
                     shapes: Mapping[str, str] | None = None) -> Figure:
    """Figure 3 as a Figure. ``shapes`` maps keys of ``SHAPE_KEYS`` to text, e.g.
    ``{"input": "3×224×224", "trunk": "512×28×28", "expert": "1536×7×7", "logits": "1000",
    "weights": "3"}``; missing keys are simply not shown.
    """
    if num_experts < 1:
        raise ValueError(f"num_experts must be >= 1, got {num_experts}")
    shapes = dict(shapes or {})
    unknown = set(shapes) - set(SHAPE_KEYS)
    if unknown:
        raise ValueError(f"unknown shape key(s) {sorted(unknown)}; valid: {list(SHAPE_KEYS)}")
    colors = palette(PASTEL, 8)
    fig = Figure(figsize=(12.0, 7.6), layout="constrained")
    ax = fig.subplots()
    ax.set(xlim=(0, 16.4), ylim=(0, 10), aspect="equal")  # equal: the sum node stays a circle
    ax.set_axis_off()

    mid = 6.2  # vertical centre of the main path
    _box(ax, 0.2, mid - 0.7, 1.7, 1.4, _with_shape("input x", shapes, "input"), colors[7])
    _box(ax, 2.5, mid - 1.2, 2.6, 2.4, _with_shape(f"shared trunk\n{trunk_label}", shapes, "trunk"), colors[0])
    _arrow(ax, (1.9, mid), (2.5, mid))

    # experts, stacked in the upper part
    top, bottom = 9.8, 3.6
    slot = (top - bottom) / num_experts
    h = min(1.6, 0.8 * slot)
    sum_xy = (13.2, mid)
    for k in range(num_experts):
        yc = top - slot * (k + 0.5)
        _box(ax, 6.0, yc - h / 2, 3.4, h, _with_shape(f"expert {k + 1}: {expert_label}", shapes, "expert"),
             colors[1], fontsize=8 if num_experts <= 4 else 7)
        _arrow(ax, (5.1, mid), (6.0, yc))
        logit_text = f"$l^{{{k + 1}}}$" + (f"\n{shapes['logits']}" if shapes.get("logits") else "")
        _box(ax, 10.1, yc - 0.4, 1.2, 0.8, logit_text, colors[2], fontsize=8)
        _arrow(ax, (9.4, yc), (10.1, yc))
        _arrow(ax, (11.3, yc), (sum_xy[0] - 0.55, sum_xy[1]), label=f"$\\times w^{{{k + 1}}}$")

    # router, below the experts, fed by the same trunk output
    ry = 1.0
    _arrow(ax, (3.8, mid - 1.2), (3.8, ry + 0.45), head=False)
    _arrow(ax, (3.8, ry + 0.45), (6.0, ry + 0.45))
    for i, step in enumerate(("GAP", "FC", "softmax")):
        _box(ax, 6.0 + 1.2 * i, ry, 1.0, 0.9, step, colors[3], fontsize=8)
        if i:
            _arrow(ax, (6.0 + 1.2 * i - 0.2, ry + 0.45), (6.0 + 1.2 * i, ry + 0.45))
    ax.text(8.2, ry - 0.35, "instance-aware router", ha="center", va="top", fontsize=8)
    w_text = "$w$" + (f" ({shapes['weights']})" if shapes.get("weights") else "")
    _box(ax, 10.1, ry, 1.2, 0.9, w_text, colors[3], fontsize=8)
    _arrow(ax, (9.4, ry + 0.45), (10.1, ry + 0.45))
    _arrow(ax, (11.3, ry + 0.45), (sum_xy[0], sum_xy[1] - 0.55))

    # aggregate (eq. 7) and output
    ax.add_patch(Circle(sum_xy, 0.55, facecolor=colors[4], edgecolor="0.25", lw=1.0))
    ax.text(*sum_xy, "$\\Sigma$", ha="center", va="center", fontsize=14)
    _box(ax, 14.6, mid - 0.6, 1.6, 1.2, "$l = \\sum_k w^k l^k$", colors[5], fontsize=9)
    _arrow(ax, (sum_xy[0] + 0.55, mid), (14.6, mid))
    ax.set_title(f"Mixture of {num_experts} experts with an instance-aware router (paper Fig. 3, eq. 7)",
                 fontsize=10)
    return fig
