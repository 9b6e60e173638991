"""The hard-sample explorer of ``notebooks/explore_hard_samples.ipynb``: ipywidgets over
:mod:`lt_paper.analysis.explorer`.

Two finished runs A and B, a shot group and a class are chosen with dropdowns; the panel shows a
summary line, the class's sorted p(true) curves, a grid of its hardest test images under A (with B's
prediction and p(true) beside A's), the images A and B disagree on most in both directions, and for a
selected image of an MoE run each expert's p(true) beside the router's weight. The records and the test
images are loaded once; a change redraws HTML and one small PNG, well under a second.

The whole panel is also plain HTML (:meth:`HardSampleExplorer.html`): the notebook's cell output carries
it beside the widget, so papermill's executed copy, ``reproduce`` and a notebook viewer without a kernel
show the default choice; JupyterLab shows the live widget. Each image tile carries ``data-index`` and
the summary its counts as ``data-*`` attributes, for the browser test to read back.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Callable, Mapping, Sequence

import numpy as np

from ..analysis import RunRecord
from ..analysis import explorer as ex
from ..analysis.figures import GROUP_TITLES, _new_figure
from ..analysis.style import DEEP

TILES = 6  # images per grid row
TILE_PX = 96  # each test image is shown this many pixels wide, pixels kept square
STYLE = ("<style>.lt-explorer .lt-grid{display:flex;flex-wrap:wrap;gap:8px}"
         ".lt-explorer figure{margin:0;width:150px;font-size:12px;line-height:1.3}"
         ".lt-explorer figure img{width:96px;height:96px;image-rendering:pixelated;display:block}"
         ".lt-explorer h4{margin:10px 0 4px 0}</style>")


def _png(array: np.ndarray) -> str:
    """A data URI of an (H, W[, 3]) uint8 image as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8).squeeze()).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class TestImages:
    """Test images by index, loaded through ``load`` (``experiments.load_test_images``' signature) and
    kept: the whole test set at once when it is small (CIFAR: 10,000 images of 32 px, under a second),
    else on request. Without the data, ``missing`` says why and tiles show text only."""

    def __init__(self, record: RunRecord, load: Callable, data_root=None, preload_up_to: int = 20_000):
        self.record, self.load, self.data_root = record, load, data_root
        self.cache: dict[int, np.ndarray] = {}
        self.missing: str | None = None
        if record.num_samples <= preload_up_to:
            self.get(range(record.num_samples))

    def get(self, indices) -> dict[int, np.ndarray]:
        wanted = [int(i) for i in indices if int(i) not in self.cache]
        if wanted and self.missing is None:
            try:
                images, _ = self.load(self.record, wanted, data_root=self.data_root, side=32)
                self.cache.update(images)
            except FileNotFoundError as err:
                self.missing = str(err)
        return {int(i): self.cache[int(i)] for i in indices if int(i) in self.cache}


def _method(label: str) -> str:
    """The method of a run label "<method>, seed <n>" (the whole label when it names no seed)."""
    return label.rsplit(", seed ", 1)[0]


class HardSampleExplorer:
    """Explorer state (runs A and B, group, class, image) and its rendering; :meth:`widget` for JupyterLab."""

    def __init__(self, runs: Mapping[str, RunRecord], images: TestImages | None,
                 class_names: Sequence[str] | None = None, run_a: str | None = None, run_b: str | None = None,
                 class_name: str | None = None, tiles: int = TILES):
        if len(runs) < 1:
            raise ValueError("the explorer needs at least one finished run")
        ex.same_test_set(runs)
        self.runs, self.images, self.tiles = dict(runs), images, tiles
        first = next(iter(self.runs.values()))
        self.names = list(class_names) if class_names is not None else [f"class {c}" for c in range(first.num_classes)]
        self.options = ex.class_options(first, self.names)
        labels = list(self.runs)
        for which, label in (("run_a", run_a), ("run_b", run_b)):
            if label is not None and label not in self.runs:
                raise ValueError(f"{which} = {label!r} is not a finished run here; finished: {labels}")
        self.a = run_a or labels[0]
        # by default B is the first run of another method ("<method>, seed <n>"): CE against LDAM-DRW, not
        # CE seed 0 against CE seed 1; the same run twice when only one method has finished
        self.b = run_b or next((label for label in labels if _method(label) != _method(self.a)), self.a)
        if class_name is not None and class_name not in self.names:
            raise ValueError(f"class_name = {class_name!r} is not a class of this dataset; valid: {self.names}")
        rarest = next(options[-1][1] for g, options in reversed(self.options.items()) if options)
        self.class_id = rarest if class_name is None else self.names.index(class_name)
        self.image: int | None = None

    # ------------------------------------------------------------------ what is shown
    def group(self) -> str:
        return next(g for g, options in self.options.items() if self.class_id in [c for _, c in options])

    def class_label(self) -> str:
        return dict((c, text) for options in self.options.values() for text, c in options)[self.class_id]

    def state(self) -> dict:
        """Every number the panel shows for the current choice (what the notebook records)."""
        a, b, c = self.runs[self.a], self.runs[self.b], self.class_id
        hardest = ex.hardest(a, c)
        a_only, b_only = ex.hard_for_one(a, b, c), ex.hard_for_one(b, a, c)
        shown = [*hardest[:self.tiles], *a_only[:self.tiles], *b_only[:self.tiles]]
        image = self.image if self.image in shown else (int(shown[0]) if shown else None)
        return {"run_a": self.a, "run_b": self.b, "group": self.group(), "class": self.names[c], "class_id": c,
                "counts": ex.hard_counts(a, b, c), "hardest": [int(i) for i in hardest[:self.tiles]],
                "hard_for_a_only": {"found": int(a_only.size), "shown": [int(i) for i in a_only[:self.tiles]]},
                "hard_for_b_only": {"found": int(b_only.size), "shown": [int(i) for i in b_only[:self.tiles]]},
                "image": image, "images_shown": [int(i) for i in shown],
                "experts": {label: view.to_dict("list") for label in dict.fromkeys([self.a, self.b])
                            if image is not None and (view := ex.expert_view(self.runs[label], image, self.names))
                            is not None}}

    def summary_text(self) -> str:
        """The summary line of the current choice."""
        return ex.summary_line(self.a, self.b, self.class_label(), self.state()["counts"])

    def summary_html(self, state: dict) -> str:
        counts = state["counts"]
        line = ex.summary_line(self.a, self.b, self.class_label(), counts)
        data = " ".join(f'data-{k.replace("_", "-")}="{v}"' for k, v in counts.items())
        return f'<p class="lt-summary" data-class="{html.escape(state["class"])}" {data}><b>{html.escape(line)}</b></p>'

    def curves_figure(self):
        """The class's p(true) sorted ascending under A and B, the hard threshold dashed."""
        fig, axes = _new_figure(1, panel=(6.0, 2.4))
        ax = axes[0, 0]
        for color, label in zip(DEEP, dict.fromkeys([self.a, self.b])):
            p = ex.sorted_probabilities(self.runs[label], self.class_id)
            ax.plot(np.arange(p.size), p, color=color, lw=1.6, label=label)
        ax.axhline(ex.HARD, color="0.5", lw=0.8, ls="--")
        ax.set(xlabel=f"{self.names[self.class_id]} test images, sorted by p(true)", ylabel="p(true)", ylim=(-0.02, 1.02))
        ax.legend(fontsize=8, loc="upper left")
        return fig

    def curves_png(self) -> str:
        """:meth:`curves_figure` as a data URI."""
        buffer = io.BytesIO()
        self.curves_figure().savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    def tile(self, i: int) -> str:
        true = int(self.runs[self.a].label[i])
        lines = [f"#{i} true {self.names[true]}"]
        lines += [f"{label}: {self.names[int(self.runs[label].pred[i])]}, p(true)={float(self.runs[label].p_gt[i]):.2f}"
                  for label in dict.fromkeys([self.a, self.b])]
        picture = self.images.get([i]).get(i) if self.images is not None else None
        img = f'<img src="{_png(picture)}" alt="test image {i}">' if picture is not None else ""
        caption = "<br>".join(html.escape(line) for line in lines)
        return f'<figure class="lt-tile" data-index="{i}">{img}<figcaption>{caption}</figcaption></figure>'

    def grid(self, kind: str, title: str, indices: Sequence[int]) -> str:
        tiles = "".join(self.tile(int(i)) for i in indices) or "<p>none</p>"
        return f'<h4>{html.escape(title)}</h4><div class="lt-grid" data-grid="{kind}">{tiles}</div>'

    def grids_html(self, state: dict) -> str:
        n, c = self.tiles, self.names[self.class_id]
        a_only, b_only = state["hard_for_a_only"], state["hard_for_b_only"]
        return "".join([
            self.grid("hardest", f"The {len(state['hardest'])} hardest of the {state['counts']['images']} {c} test "
                      f"images under {self.a} (lowest p(true) first)", state["hardest"]),
            self.grid("a-only", f"Hard under {self.a}, not under {self.b}: {len(a_only['shown'])} of {a_only['found']}, "
                      f"the largest gain in p(true) first", a_only["shown"]),
            self.grid("b-only", f"Hard under {self.b}, not under {self.a}: {len(b_only['shown'])} of {b_only['found']}, "
                      f"the largest gain in p(true) first", b_only["shown"])]) if n else ""

    def image_html(self, state: dict) -> str:
        i = state["image"]
        if i is None:
            return "<p>No image to select.</p>"
        parts = [f'<h4 class="lt-image" data-index="{i}">Image #{i} (true {html.escape(self.names[int(self.runs[self.a].label[i])])})</h4>']
        for label in dict.fromkeys([self.a, self.b]):
            record = self.runs[label]
            view = ex.expert_view(record, i, self.names)
            if view is None:
                parts.append(f"<p>{html.escape(label)}: one network, no experts.</p>")
                continue
            parts.append(f"<p><b>{html.escape(label)}</b>: {html.escape(ex.router_reading(record, i))}</p>")
            parts.append(view.to_html(float_format=lambda v: f"{v:.3f}", classes="lt-experts"))
        return "".join(parts)

    def html(self) -> str:
        """The whole panel for the current choice, as static HTML."""
        state = self.state()
        return (f'<div class="lt-explorer">{STYLE}{self.summary_html(state)}'
                f'<img src="{self.curves_png()}" alt="p(true) curves">{self.grids_html(state)}'
                f'{self.image_html(state)}</div>')

    # ------------------------------------------------------------------ the live widget
    def widget(self):
        """The explorer as ipywidgets: dropdowns for A, B, group, class and image; HTML panes redrawn on change."""
        import ipywidgets as w

        runs = list(self.runs)
        run_a = w.Dropdown(options=runs, value=self.a, description="run A")
        run_b = w.Dropdown(options=runs, value=self.b, description="run B")
        groups = [(f"{GROUP_TITLES[g]} ({len(o)} classes)", g) for g, o in self.options.items() if o]
        group = w.Dropdown(options=groups, value=self.group(), description="group")
        klass = w.Dropdown(options=self.options[self.group()], value=self.class_id, description="class")
        image = w.Dropdown(description="image")
        summary, curves, grids, detail = w.HTML(), w.HTML(), w.HTML(), w.HTML()
        for widget, name in ((run_a, "lt-run-a"), (run_b, "lt-run-b"), (group, "lt-group"), (klass, "lt-class"),
                             (image, "lt-image-choice"), (summary, "lt-summary-pane"), (grids, "lt-grids-pane"),
                             (detail, "lt-detail-pane")):
            widget.add_class(name)
        busy = {"on": False}  # one redraw per user action, not one per option list refilled

        def redraw(*_):
            if busy["on"]:
                return
            busy["on"] = True
            try:
                self.a, self.b = run_a.value, run_b.value
                if klass.value is not None and klass.value != self.class_id:
                    self.class_id = klass.value
                state = self.state()
                image.options = [(f"#{i} ({self.names[int(self.runs[self.a].label[i])]})", i)
                                 for i in dict.fromkeys(state["images_shown"])]
                image.value = state["image"]
                curves.value = f'<img src="{self.curves_png()}" alt="p(true) curves">'
                grids.value = f'<div class="lt-explorer">{self.grids_html(state)}</div>'
                detail.value = f'<div class="lt-explorer">{self.image_html(state)}</div>'
                # the summary last: the page shows the new summary once every other pane has been redrawn
                summary.value = STYLE + self.summary_html(state)
            finally:
                busy["on"] = False

        def pick_group(change):
            busy["on"] = True
            try:
                klass.options = self.options[change["new"]]
                klass.value = self.options[change["new"]][-1][1]  # the group's smallest class
            finally:
                busy["on"] = False
            redraw()

        def pick_image(change):
            if busy["on"] or change["new"] is None:
                return
            self.image = change["new"]
            detail.value = f'<div class="lt-explorer">{self.image_html(self.state())}</div>'

        run_a.observe(redraw, "value")
        run_b.observe(redraw, "value")
        klass.observe(redraw, "value")
        group.observe(pick_group, "value")
        image.observe(pick_image, "value")
        redraw()
        return w.VBox([w.HBox([run_a, run_b]), w.HBox([group, klass]), summary, curves, grids, image, detail])


class WithStaticHtml:
    """Displays a widget, with ``html`` beside it in the same output: JupyterLab renders the widget, a
    viewer without a kernel (papermill's executed copy, ``reproduce``) the HTML."""

    def __init__(self, widget, static: str):
        self.widget, self.static = widget, static

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        return {**data, "text/html": self.static}
