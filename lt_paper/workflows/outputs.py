"""What a notebook needs around its science: checked parameters, its output folder, figures and tables
shown where the reader is (JupyterLab, papermill's executed copy) and saved to disk, a summary.

``NotebookOutputs.from_parameters(notebook, globals())`` is the first code cell of every notebook: it
reads the parameters cell's values, stops with one line naming what is valid when a parameter cannot
work (:class:`ParameterError`), resolves relative paths against the project root, so that JupyterLab
(whose kernels start in ``notebooks/``), papermill and ``reproduce`` share one ``runs/`` cache and
one output tree, and gives each notebook its own output folder (``outputs/notebook/<notebook>``).

A notebook reading a publication's runs (``runs_dir`` is ``results/NAME/runs``: a profile's published
runs with ``train = False``) first checks that ``results/NAME`` and ``figures/NAME`` are one publication
(:func:`lt_paper.workflows.publication.whole_publication`: a publish killed between its two folder
exchanges is finished first), so that it never reads the runs of one publish beside the figures of another.

Runs trained with less than the paper's recipe on one of its datasets (the `cifar-cpu` profile: ResNet-8,
a few dozen epochs, on a CPU) are labelled wherever they are shown: every table title and figure title
of such a notebook, and the figure image itself, carries :func:`lt_paper.train.presets.reduced_recipe_label`
(network, epochs, "reduced recipe, not the paper's"), and its tables show the paper's numbers as a
reference without difference columns (:func:`lt_paper.analysis.as_reference`). The label follows the
parameters (prefix, arch, epochs, device), so a notebook reading published runs with ``train=False``
labels them as the profile that trained them did.

With ``train = False`` a notebook whose rows have no finished run fails, naming what ``runs_dir`` holds
(the wrong folder, or another profile's), unless the folder holds finished runs of the notebook's own
recipe for other rows: the notebook then opens, says so in a note and shows its rows as missing (Figure 4
beside the two single-network runs of the paper's recipe that a CPU trained).

Each notebook writes into that folder, which holds only what its last run produced: the tables and
figures an earlier run listed are removed when the next run starts. ``summary.json`` lists every table
and figure with a title, the numbers the notebook recorded, every run directory it read (``runs``: what
``publish`` copies, wherever the runs live) and its provenance. The reproduce command and the tests
read these files, never the notebook's cell outputs.
"""

from __future__ import annotations

import ast
import difflib
import html
import json
import os
import time
import warnings
from pathlib import Path

import pandas as pd

from ..analysis import EmptyGroupWarning, as_reference, save_figure, table_markdown
from ..analysis.tables import format_results, shows_index
from ..files.atomic import atomic_write_json
from .portable import strict_json
from .publication import Publication, whole_publication
from .profiles import PROFILE_KEYS, PUBLISHED_RUNS, check_profile, profile_parameters, profiles_running
from ..train.provenance import REPO_ROOT, provenance
from ..train.presets import reduced_recipe_label

# Relative paths in notebook parameters are relative to this folder: the repository root, or the
# folder this environment variable names (a copy of the results elsewhere, a shared runs cache).
ROOT_ENV = "LT_PAPER_ROOT"
# The parameters every notebook's parameters cell holds (notebooks add their own through ``extra``).
COMMON_PARAMETERS = ("profile", "prefix", "dataset", "arch", "epochs", "seeds", "device", "data_root",
                     "runs_dir", "train", "parallel", "run_overrides", "output_dir")
# The parameters that name a file or folder (resolved against the project root): name -> (whether None
# is allowed: data_root, no data needed; output_dir, the default folder), an example). counts_json is
# Figure 2's.
PATH_PARAMETERS = {"runs_dir": (False, "runs"), "data_root": (True, "data/downloads/cifar10-jpeg.tar.gz"),
                   "output_dir": (True, "outputs/mine"),
                   "counts_json": (False, "data/splits/ImageNet_LT_train_cls_freq.json")}
# The first line of the cell papermill injects after the parameters cell (``-p NAME VALUE``).
INJECTED_CELL_HEADER = "# Parameters\n"
# The run cache that JupyterLab, papermill and ``reproduce`` share, relative to the project root.
DEFAULT_RUNS_DIR = "runs"
# Figures are saved at 150 dpi and shown at 100 px per inch of figure width (matplotlib's inline size).
SHOWN_PX_PER_INCH = 100


class ParameterError(ValueError):
    """A notebook parameter that cannot work. In Jupyter it shows as its one-line message, without the
    traceback (IPython's ``_render_traceback_`` protocol): the fix is in the parameters cell, not in
    the library frames a traceback would list."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31mParameterError\x1b[0m: {self}"]


def project_root() -> Path:
    """Where relative notebook paths point: ``$LT_PAPER_ROOT`` if set, else the repository root (the
    working directory when the package is installed without its repository)."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    return REPO_ROOT if (REPO_ROOT / "notebooks").is_dir() else Path.cwd().resolve()


def resolve_path(path) -> str | None:
    """``path`` made absolute against :func:`project_root` (None stays None; ``~`` is expanded)."""
    if path is None:
        return None
    path = Path(path).expanduser()
    return str(path if path.is_absolute() else project_root() / path)


def apply_profile(p: dict, notebook: str) -> dict:
    """Fill the parameters ``p`` leaves None (prefix, dataset, arch, epochs, seeds, device, data_root,
    runs_dir) with those of its ``profile`` (:func:`lt_paper.workflows.profiles.profile_parameters`); returns what
    was filled. Values given beside the profile win, and each that differs from the profile's is named
    in one printed line (they name other runs than the profile's). ``runs_dir`` None: the profile's
    published runs with ``train = False``, else the shared cache ``runs``."""
    profile = p.get("profile")
    if profile is None or not any(p.get(k) is None for k in PROFILE_KEYS + ("runs_dir",) if k in p):
        return {}
    try:
        check_profile(profile, "profile =")
    except ValueError as err:
        raise ParameterError(str(err)) from None
    ran = profile_parameters(profile, notebook, train=p.get("train", True) is not False)
    filled = {k: ran[k] for k in PROFILE_KEYS + ("runs_dir",) if k in p and p[k] is None}
    own = {k: p[k] for k in PROFILE_KEYS if k in p and k not in filled and p[k] != ran[k]}
    p.update(filled)
    if own:
        # other seeds pick other runs of the same recipe; any other key names runs the profile did not train
        what = ("other seeds of the profile's recipe (seeds without a run show as missing)" if set(own) == {"seeds"}
                else "not the profile's runs")
        print(f"profile {profile!r} with your own {_assignments(own)} (the profile's: "
              f"{_assignments({k: ran[k] for k in own})}): {what}")
    return filled


def _assignments(values: dict) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in values.items()) or "nothing"


def check_parameters(p: dict, trains: bool = True) -> None:
    """Raise :class:`ParameterError` for a parameter set that cannot work, naming what is valid.

    ``prefix`` and ``arch`` must name presets (``python -m lt_paper presets``); ``dataset`` must be the
    one the prefix's presets train on (it labels tables and picks the paper's column, so a mismatch
    would mislabel reused runs); ``trains``: the notebook trains when ``train`` is True, and then a
    dataset other than the embedded digits needs ``data_root``.
    """
    from ..train.presets import DATASET_ARCHS

    prefix, arch, dataset = p.get("prefix"), p.get("arch"), p.get("dataset")
    if prefix not in DATASET_ARCHS:
        raise ParameterError(f"prefix = {prefix!r} is not a preset prefix; valid: "
                             f"{', '.join(map(repr, DATASET_ARCHS))}")
    recipe, archs = DATASET_ARCHS[prefix]
    if arch not in archs:
        raise ParameterError(f"arch = {arch!r} has no {prefix!r} presets; valid for prefix {prefix!r}: "
                             f"{', '.join(map(repr, archs))}")
    if dataset != recipe["dataset"]:
        raise ParameterError(f"dataset = {dataset!r} does not match prefix = {prefix!r}, whose presets train "
                             f"on {recipe['dataset']!r}: set dataset = {recipe['dataset']!r}, or change "
                             f"prefix (and arch) too")
    if "train" in p and not isinstance(p["train"], bool):
        raise ParameterError(f"train = {p['train']!r} must be True (train missing runs) or False "
                             f"(read finished runs only)")
    check_seeds(p.get("seeds"))
    check_paths(p)
    if trains and p.get("train", True) and dataset != "digits_lt" and not p.get("data_root"):
        raise ParameterError(f"dataset {dataset!r} needs data_root to train (the CIFAR .tar.gz or folder, "
                             f"the ImageNet-LT / iNaturalist root); or set train = False to read "
                             f"finished runs only")


def check_paths(p: dict) -> None:
    """:class:`ParameterError` for a path parameter (:data:`PATH_PARAMETERS`) that is not a path: papermill
    passes what ``-p`` or a YAML file gives, a list or a number as readily as a string."""
    for name, (optional, example) in PATH_PARAMETERS.items():
        value = p.get(name)
        if name not in p or (value is None and optional) or (isinstance(value, (str, os.PathLike)) and str(value)):
            continue
        raise ParameterError(f"{name} = {value!r} is of type {type(value).__name__}; it must be a path (a "
                             f"non-empty string{', or None' if optional else ''}), e.g. {name} = \"{example}\"")


def check_seeds(seeds, name: str = "seeds") -> None:
    """:class:`ParameterError` unless ``seeds`` is a non-empty list of distinct ints (not booleans: True
    would pass as seed 1 beside a 1 and fail later in the config). A seed names one run: listed twice, it
    would count twice in a table's mean ± std (and its std would shrink) from one run."""
    if not isinstance(seeds, (list, tuple)) or not seeds or \
            not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ParameterError(f"{name} = {seeds!r} must be a non-empty list of ints >= 0, e.g. [0] or [0, 1, 2]")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ParameterError(f"{name} = {list(seeds)!r} repeats seed(s) {repeated}: each seed is one run and "
                             f"would count once per mention in mean ± std; list each seed once")


def check_injected_parameters(namespace: dict, known) -> None:
    """ParameterError for a name papermill injected (``-p NAME VALUE``) that is not one of the notebook's
    parameters (``known``), suggesting the closest one: papermill itself only warns and the notebook
    would run on its defaults. ``namespace``: the notebook's ``globals()``, whose ``In`` (IPython's
    input history) holds the injected cell; outside IPython there is nothing to check."""
    injected = [cell for cell in namespace.get("In") or [] if cell.startswith(INJECTED_CELL_HEADER)]
    if not injected:
        return
    tree = ast.parse(injected[-1])
    names = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
             if isinstance(t, ast.Name)]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ParameterError(f"unknown parameter {name!r} (papermill -p {name} ...): {hint}"
                                 f"this notebook's parameters are {', '.join(known)}")


class NotebookOutputs:
    def __init__(self, directory, notebook: str, parameters: dict):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._remove_previous_outputs()
        self.started = time.perf_counter()
        self.summary = {"notebook": notebook, "parameters": parameters, "tables": [], "figures": [],
                        "records": {}, "notes": {}, "runs": []}
        self.run_kwargs: dict = {}  # from_parameters: the keyword arguments of experiments.run_rows
        self.data_root: str | None = None  # from_parameters: the resolved data_root
        self.recipe_label: str | None = None  # from_parameters: a reduced recipe's label, else None

    @classmethod
    def from_parameters(cls, notebook: str, namespace: dict, extra: tuple[str, ...] = (),
                        trains: bool = True, labelled: bool = True) -> "NotebookOutputs":
        """The notebook's outputs from its parameters cell (``namespace``: the notebook's ``globals()``).

        Checks the parameters (:func:`check_parameters`), records them (common ones plus ``extra``),
        resolves ``runs_dir``, ``data_root`` and ``output_dir`` against :func:`project_root`
        (``output_dir`` None: ``outputs/notebook/<notebook>``; a publication's ``runs_dir``: ValueError
        unless it is one whole publication, module docstring) and sets ``run_kwargs``: the keyword
        arguments of ``run_rows`` (runs_dir, train, parallel and the config overrides for every run:
        epochs, device, data_root and ``run_overrides``). ``labelled``: False for a notebook whose outputs
        do not depend on the network or the training recipe (Figure 2's formulas): no recipe label.
        """
        check_injected_parameters(namespace, COMMON_PARAMETERS + tuple(extra))
        # An empty shot group (CIFAR-10-LT at imbalance 100 has no few-shot class) is drawn as such by
        # every figure and shown as "-" in every table; its warning, raised again by each statistic,
        # would only cover the notebook in red boxes.
        warnings.filterwarnings("ignore", category=EmptyGroupWarning)
        parameters = {k: namespace[k] for k in COMMON_PARAMETERS + tuple(extra) if k in namespace}
        filled = apply_profile(parameters, notebook)
        namespace.update(filled)  # the notebook's later cells read prefix, arch, seeds ... as filled
        try:
            check_parameters(parameters, trains=trains)
        except ParameterError as err:
            given = {k: parameters[k] for k in PROFILE_KEYS if k in parameters and k not in filled}
            if filled and given:  # say which values came from the profile and which were given beside it
                named = {k: v for k, v in filled.items() if k in ("prefix", "dataset", "arch")} or filled
                raise ParameterError(f"profile = {parameters['profile']!r} sets {_assignments(named)}, "
                                     f"which your {_assignments(given)} contradict: {err}") from None
            raise
        runs_dir = resolve_path(parameters.get("runs_dir", DEFAULT_RUNS_DIR))
        published = Publication.of_runs(runs_dir)
        if published is not None:  # a publication's runs: read from one whole publication, never a mix
            whole_publication(published.name, published.root)
        directory = resolve_path(parameters.get("output_dir") or Path("outputs", "notebook", notebook))
        out = cls(directory, notebook, parameters)
        overrides = dict(epochs=parameters["epochs"], device=parameters["device"],
                         data_root=resolve_path(parameters.get("data_root")),
                         **(parameters.get("run_overrides") or {}))
        out.data_root = overrides["data_root"]
        if labelled:
            out.recipe_label = reduced_recipe_label(parameters["prefix"], parameters["arch"], parameters["epochs"],
                                                    parameters["device"])
        out.run_kwargs = dict(runs_dir=runs_dir, train=parameters.get("train", True),
                              parallel=parameters.get("parallel", 1), **overrides)
        if trains:
            mode = "trains what is missing" if out.run_kwargs["train"] else "train=False: finished runs only"
            print(f"runs: {runs_dir} ({mode})")
        print(f"outputs: {out.dir}")
        if out.recipe_label:
            print(f"recipe: {out.recipe_label} (every table and figure here says so)")
        return out

    def labelled(self, title: str) -> str:
        """``title`` with the reduced recipe's label appended (unchanged for the paper's recipe)."""
        return f"{title} [{self.recipe_label}]" if self.recipe_label else title

    def run_rows(self, prefix: str, arch: str, rows: dict[str, str], seeds) -> dict[str, list[dict]]:
        """``experiments.run_rows`` with this notebook's ``run_kwargs``; the run directories it returns
        (and their distillation teachers) join ``runs`` in ``summary.json``."""
        from .experiments import finished_runs_held, run_rows, runs_used

        results = run_rows(prefix, arch, rows, seeds=seeds, **self.run_kwargs)
        if not self.run_kwargs["train"] and not any(results.values()):
            runs_dir, epochs = self.run_kwargs["runs_dir"], self.run_kwargs["epochs"]
            others = finished_runs_held(runs_dir).get((prefix, arch, epochs), [])  # none in a missing folder
            if not others:  # the wrong folder, or an empty one: say what it holds
                raise ParameterError(no_runs_message(runs_dir, prefix, arch, epochs, seeds))
            # the right folder, in which only other notebooks' rows have trained so far (the CPU's two runs
            # of the paper's recipe, read by Figure 4): the notebook opens and says so
            self.note("no_runs", f"**Nothing to show yet.** None of this notebook's rows ({', '.join(rows)}) "
                      f"has a finished run of {prefix}/{arch}, {epochs} epochs, seed(s) {list(seeds)} in "
                      f"`{runs_dir}`, which holds {len(others)} finished run(s) of this recipe, of other rows "
                      "or seeds. `train = False` trains nothing; `train = True` trains the missing rows.")
        self.summary["runs"] = sorted(set(self.summary["runs"]) | set(runs_used(results)))
        self._flush()
        return results

    def path(self, path) -> str | None:
        """A path parameter (e.g. a counts file) resolved like runs_dir: against the project root."""
        return resolve_path(path)

    def table(self, name: str, frame: pd.DataFrame, title: str, decimals: int = 1) -> None:
        """Save ``frame`` as ``name.md`` and ``name.csv`` and show it (HTML; missing values as "-").
        A reduced recipe labels the title and turns the paper's columns into a reference (module docstring)."""
        from IPython.display import display

        title = self.labelled(title)
        if self.recipe_label:
            frame = as_reference(frame, self.recipe_label)

        markdown = f"### {title}\n\n{table_markdown(frame, decimals=decimals)}\n"
        (self.dir / f"{name}.md").write_text(markdown)
        frame.to_csv(self.dir / f"{name}.csv", index=shows_index(frame))
        self.summary["tables"].append({"name": name, "title": title, "markdown": f"{name}.md",
                                       "csv": f"{name}.csv"})
        self._flush()
        caption = frame.attrs.get("caption")
        body = format_results(frame, decimals=decimals).to_html(na_rep="-", index=shows_index(frame))
        note = f"<p><small>{html.escape(caption)}</small></p>" if caption else ""
        display({"text/html": f"<h4>{html.escape(title)}</h4>{note}{body}", "text/markdown": markdown},
                raw=True)

    def figure(self, name: str, fig, title: str) -> None:
        """Save ``fig`` as ``name.png`` and show that PNG under its title.

        The figures are matplotlib ``Figure`` objects made without pyplot (no global state), which
        Jupyter would show only as the text ``<Figure size ...>``: the saved PNG is displayed instead,
        so JupyterLab and papermill's executed copy carry an ``image/png`` output.
        """
        from IPython.display import Image, Markdown, display

        title = self.labelled(title)
        if self.recipe_label:  # on the image too: a PNG shown on its own still says what trained it
            fig.text(0.01, 0.0, self.recipe_label, ha="left", va="top", fontsize=8, style="italic")
        path = save_figure(fig, self.dir / f"{name}.png")
        self.summary["figures"].append({"name": name, "title": title, "png": f"{name}.png"})
        self._flush()
        display(Markdown(f"**{title}**"))
        display(Image(filename=str(path), width=round(fig.get_figwidth() * SHOWN_PX_PER_INCH)))

    def note(self, name: str, markdown: str) -> None:
        """Show a teaching note written at run time (``lt_paper.workflows.notes``: it follows the profile in use and
        the data) as Markdown, and keep it in ``summary.json`` under ``notes``."""
        from IPython.display import Markdown, display

        self.summary["notes"][name] = markdown
        self._flush()
        display(Markdown(markdown))

    def record(self, key: str, value) -> None:
        """A number or small structure the notebook measured (the tests assert on these)."""
        self.summary["records"][key] = value
        self._flush()

    def finish(self, device=None) -> dict:
        """Add wall time and provenance to ``summary.json``, print one line about it, return it."""
        self.summary["wall_time_s"] = time.perf_counter() - self.started
        self.summary["provenance"] = provenance(device)
        self._flush()
        s = self.summary
        print(f"{len(s['tables'])} table(s), {len(s['figures'])} figure(s) in {self.dir} "
              f"({s['wall_time_s']:.1f} s, commit {s['provenance']['commit']})")
        return self.summary

    def _flush(self) -> None:
        atomic_write_json(self.dir / "summary.json", strict_json(self.summary))  # NaN (an empty group): null

    def _remove_previous_outputs(self) -> None:
        """Remove the tables, figures and summary an earlier run listed in this folder's ``summary.json``
        (only those: the folder may hold other files, e.g. papermill's executed copy)."""
        summary = self.dir / "summary.json"
        try:
            previous = json.loads(summary.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(previous, dict):
            return
        names = [t[k] for t in previous.get("tables", []) for k in ("markdown", "csv")]
        names += [f["png"] for f in previous.get("figures", [])]
        for name in names:
            if Path(name).name == name:  # a file of this folder, nothing else
                (self.dir / name).unlink(missing_ok=True)
        summary.unlink()


def no_runs_message(runs_dir, prefix: str, arch: str, epochs: int, seeds) -> str:
    """One line for ``train = False`` finding no finished run for any row: what ``runs_dir`` holds instead
    and the profile that reads it (or that it does not exist, and where the published runs are)."""
    from .experiments import finished_runs_held

    wanted = f"no finished run of {prefix}/{arch}, {epochs} epochs, seed(s) {list(seeds)} for any row"
    if not Path(runs_dir).is_dir():
        published = ", ".join(f"{path} (profile = {name!r})" for name, path in PUBLISHED_RUNS.items()
                              if Path(resolve_path(path)).is_dir())
        return (f"runs_dir {runs_dir} does not exist: {wanted} (train = False trains nothing); the published "
                f"runs: {published}, or set profile and leave runs_dir = None")
    held = finished_runs_held(runs_dir)
    if not held:
        return f"runs_dir {runs_dir} holds no finished run: {wanted} (train = False trains nothing)"
    parts = []
    for (p, a, e), run_seeds in sorted(held.items(), key=lambda kv: -len(kv[1])):
        profiles = profiles_running(p, a, e)
        hint = f": set profile = {profiles[0]!r}" if profiles else f": set prefix = {p!r}, arch = {a!r}, epochs = {e}"
        parts.append(f"{len(run_seeds)} runs of {p}/{a}, {e} epochs, seeds {sorted(set(run_seeds))}{hint}")
    return f"runs_dir {runs_dir} has {wanted}; it holds " + "; ".join(parts)


def load_summary(directory) -> dict:
    return json.loads((Path(directory) / "summary.json").read_text())
