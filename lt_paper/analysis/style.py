"""The figures' look: seaborn's "whitegrid" style and its "deep" and "pastel" palettes, as constants.

Copied from seaborn 0.13 (``sns.axes_style("whitegrid")``, ``sns.color_palette("deep" | "pastel")``),
so that drawing a figure does not import seaborn, and with it scipy.stats: more than a second at every
notebook's start, for three constants.
"""

from __future__ import annotations

DEEP = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
        "#ccb974", "#64b5cd")
PASTEL = ("#a1c9f4", "#ffb482", "#8de5a1", "#ff9f9b", "#d0bbff", "#debb9b", "#fab0e4", "#cfcfcf",
          "#fffea3", "#b9f2f0")
# seaborn's whitegrid rc parameters, less its default colormap ("rocket" exists only once seaborn is
# imported; every figure here that maps values to colours names its colormap)
WHITEGRID = {
    "figure.facecolor": "white", "axes.labelcolor": ".15", "xtick.direction": "out",
    "ytick.direction": "out", "xtick.color": ".15", "ytick.color": ".15", "axes.axisbelow": True,
    "grid.linestyle": "-", "text.color": ".15", "font.family": ["sans-serif"],
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"],
    "lines.solid_capstyle": "round", "patch.edgecolor": "w", "patch.force_edgecolor": True,
    "xtick.top": False, "ytick.right": False, "axes.grid": True, "axes.facecolor": "white",
    "axes.edgecolor": ".8", "grid.color": ".8", "axes.spines.left": True, "axes.spines.bottom": True,
    "axes.spines.right": True, "axes.spines.top": True, "xtick.bottom": False, "ytick.left": False,
}


def palette(colors: tuple[str, ...], n: int) -> list[str]:
    """``n`` colours of ``colors``, cycling as seaborn's ``color_palette(name, n)`` does."""
    return [colors[i % len(colors)] for i in range(n)]
