"""``python -m lt_paper reproduce --profile smoke|cifar|cifar-cpu|paper``: every notebook, one report.

Each notebook of ``notebooks/`` runs through papermill with the profile's parameters. It writes into
a staging folder; only when it succeeds does the staging folder replace the notebook's previous
outputs (the journalled swap of :mod:`lt_paper.files.folder_swap`, so that a reproduce killed at any point
leaves the old outputs or the new ones), so a failing notebook is named, its error shown, and the
earlier good outputs are kept; its executed copy stays in ``.failed-<folder>`` until it next succeeds.
Finally one Markdown report gathers every table and figure with their provenance.

Runs: the repository's ``runs/``, the cache the notebooks use by default in JupyterLab and papermill
(``runs_dir = "runs"``, resolved by :mod:`lt_paper.workflows.outputs`), so a run trained in one is reused by the
others; ``--runs-dir`` names another. Each notebook's ``summary.json`` lists the runs it read, which
is what ``publish`` copies.

Profiles:

* ``smoke``: scikit-learn's digits (embedded, no download), CPU, one seed; minutes on 2 cores.
* ``cifar``: CIFAR-10-LT (imbalance 100) with ResNet-32 on one GPU, the 200-epoch recipe, 3 seeds.
  Needs ``--data-root`` (the image-folder tree or its .tar.gz, or torchvision's CIFAR files).
* ``cifar-cpu``: the same CIFAR-10-LT images on a CPU with the reduced recipe of the ResNet-8 presets
  (``lt_paper.train.presets.CPU_RECIPE_CHANGES``), one seed; its tables and figures say so. Reads
  ``data/downloads/cifar10-jpeg.tar.gz`` unless ``--data-root`` names another source.
* ``paper``: ImageNet-LT (ResNet-50, ResNeXt-50) and iNaturalist-2018 (ResNet-50); launch the
  command under ``torchrun`` for DDP. Needs ``--data-root``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from ..analysis import provenance_markdown
from ..files.atomic import atomic_write_bytes, remove_stale_temporaries
from ..files.folder_swap import FolderSwap
from ..files.locks import hold_lock
from .outputs import DEFAULT_RUNS_DIR, check_paths, check_seeds, load_summary, resolve_path
from .profiles import CIFAR_CPU_DATA, NOTEBOOKS, PROFILES, jobs_for  # noqa: F401 (the names reproduce offers)
from ..train.provenance import REPO_ROOT, provenance

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def notebook_parameters(notebook: str) -> list[str]:
    """The names a notebook's cell tagged ``parameters`` assigns, read from the notebook file now (so
    that a parameter added to a notebook is accepted without a list to update here)."""
    path = NOTEBOOK_DIR / f"{notebook}.ipynb"
    cells = json.loads(path.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{path}: expected one cell tagged 'parameters', found {len(tagged)}")
    tree = ast.parse("".join(tagged[0]["source"]), filename=str(path))
    return [target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)]


# set by reproduce itself for every notebook, not by --set
RESERVED_PARAMETERS = ("output_dir",)


def split_overrides(overrides: dict, notebooks) -> tuple[dict, dict]:
    """Split ``reproduce --set`` values into notebook parameters and config keys for every run.

    A key a notebook declares is a notebook parameter; any other config key (``lr``, ``router_at`` ...)
    goes into the notebooks' ``run_overrides`` and is type-checked here. Anything else is an error, raised
    before a notebook runs, listing what is valid.
    """
    from ..train.config import FIELD_NAMES, Config, apply_overrides

    parameters = {p for nb in notebooks for p in notebook_parameters(nb)} - set(RESERVED_PARAMETERS)
    unknown = sorted(set(overrides) - parameters - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"reproduce --set: unknown key(s) {unknown}; valid: the notebook parameters "
                         f"{', '.join(sorted(parameters))} and the config keys {', '.join(FIELD_NAMES)}")
    config_keys = {k: v for k, v in overrides.items() if k not in parameters}
    apply_overrides(Config(), config_keys)  # one line naming the key and what is valid
    if "seeds" in overrides:  # checked here, before any notebook starts, as the notebooks check it
        check_seeds(overrides["seeds"], name="--set seeds")
    check_paths(overrides)  # the same for path parameters (runs_dir, data_root, output_dir, ...)
    return {k: v for k, v in overrides.items() if k in parameters}, config_keys


def output_lock_file(folder: Path) -> Path:
    """The lock file a reproduce holds while it writes ``folder``."""
    return Path(folder) / ".lock"


def output_lock(folder: Path):
    """Hold ``<folder>/.lock`` (it holds the pid from its first instant: :mod:`lt_paper.files.locks`) while a
    reproduce writes there.

    A second reproduce into the same folder fails at once, naming the pid that holds it; the lock of a
    process that died (killed, machine rebooted) is taken over.
    """
    return hold_lock(output_lock_file(folder), f"output folder {folder}")


def execute_notebook(notebook: str, output_dir: Path, parameters: dict, kernel: str | None = None) -> None:
    """Run one notebook with papermill; the executed copy lands beside its outputs."""
    import papermill as pm

    source = NOTEBOOK_DIR / f"{notebook}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"notebook {source} does not exist")
    output_dir.mkdir(parents=True, exist_ok=True)
    # the notebook's printed lines as they come (which row trains, each epoch with the seconds left):
    # a notebook training for half an hour is otherwise silent until it ends
    pm.execute_notebook(str(source), str(output_dir / f"{notebook}.ipynb"),
                        parameters=dict(parameters, output_dir=str(output_dir)),
                        kernel_name=kernel or "python3", progress_bar=False, cwd=str(REPO_ROOT),
                        stdout_file=sys.stdout, stderr_file=sys.stderr)


def reproduce(profile: str = "smoke", out_root: str | Path = "outputs", only: str | None = None,
              runs_dir: str | None = None, data_root: str | None = None, kernel: str | None = None,
              overrides: dict | None = None, train: bool = True) -> dict:
    """Execute the profile's notebooks; returns {"ok": [...], "failed": {folder: error}, "report": path}.

    ``runs_dir``: the run cache (None: the notebooks' default, the repository's ``runs/``; a relative
    path is relative to the working directory). ``train=False`` (``--no-train``): every notebook reads
    finished runs only (e.g. the published ones, ``--runs-dir results/<name>/runs``) and shows rows
    without a run as missing.

    Under ``torchrun`` every rank executes the same notebooks (their kernels inherit RANK / WORLD_SIZE,
    so each ``train`` call joins the process group); rank 0 alone writes the outputs and the report,
    the other ranks write into a scratch folder ``<out>/<profile>/.rank<N>`` that nothing reads.
    """
    rank = int(os.environ.get("RANK", "0"))
    out_root = Path(out_root) / profile
    runs_dir = str(Path(runs_dir).resolve()) if runs_dir else resolve_path(DEFAULT_RUNS_DIR)
    if rank > 0:
        out_root = out_root / f".rank{rank}"
    jobs = jobs_for(profile, only)
    parameters, config_keys = split_overrides(overrides or {}, {nb for nb, _, _ in jobs})
    with output_lock(out_root):
        if rank == 0:
            print(f"[reproduce:{profile}] runs: {runs_dir}", flush=True)
        ok, failed = _run_jobs(jobs, profile, out_root, runs_dir, data_root, kernel, parameters, config_keys,
                               train)
        report = write_report(out_root, profile) if rank == 0 else None
    return {"ok": ok, "failed": failed, "report": str(report)}


def _run_jobs(jobs, profile: str, out_root: Path, runs_dir: str, data_root: str | None, kernel: str | None,
              parameters: dict, config_keys: dict, train: bool) -> tuple[list[str], dict[str, str]]:
    """Execute each (notebook, folder, params) job into a staging folder; swap it in when it succeeds."""
    ok, failed = [], {}
    for notebook, folder, params in jobs:
        params = dict(params, runs_dir=runs_dir, profile=profile, train=train)
        if data_root is not None:
            params["data_root"] = str(Path(data_root).resolve())
        declared = set(notebook_parameters(notebook))
        params.update({k: v for k, v in parameters.items() if k in declared})
        if config_keys:
            params["run_overrides"] = {**params.get("run_overrides", {}), **config_keys}
        final, failed_copy = out_root / folder, out_root / f".failed-{folder}"
        # the journalled swap publish uses: a reproduce killed at any point leaves the old outputs or the
        # new ones, and the next reproduce (under the same output lock) finishes or rolls back its swap
        swap = FolderSwap(out_root / f".{folder}.swap.json", out_root, [final])
        swap.recover()
        staging = swap.begin()[final]
        started = time.perf_counter()
        print(f"[reproduce:{profile}] {folder} ...", flush=True)
        try:
            execute_notebook(notebook, staging, params, kernel)
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            shutil.rmtree(failed_copy, ignore_errors=True)
            staging.rename(failed_copy)  # the executed notebook, to see where it stopped
            swap.abandon()
            failed[folder] = f"{type(e).__name__}: {e}"
            kept = f"earlier outputs kept in {final}" if final.is_dir() else f"no earlier outputs in {final}"
            print(f"[reproduce:{profile}] FAILED {folder} ({kept}; this run's in {failed_copy}):\n{e}",
                  file=sys.stderr, flush=True)
            if not hasattr(e, "ename"):
                traceback.print_exc()
            continue
        swap.commit()
        shutil.rmtree(failed_copy, ignore_errors=True)
        ok.append(folder)
        print(f"[reproduce:{profile}] ok {folder} ({time.perf_counter() - started:.0f} s)", flush=True)
    return ok, failed


def write_report(out_root: Path, profile: str) -> Path:
    """One Markdown file with every table and figure found in the profile's output folders."""
    lines = [f"# lt-paper reproduction: profile `{profile}`", "", "Written by `python -m lt_paper reproduce`; "
             "each section names the parameters, device and commit of its notebook run.", ""]
    lines += ["Report provenance:", "", provenance_markdown(provenance()), ""]
    for folder in sorted(p for p in Path(out_root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / "summary.json").is_file():
            continue
        summary = load_summary(folder)
        lines += [f"## {folder.name}", "",
                  f"Parameters: `{summary['parameters']}`; wall time {summary.get('wall_time_s', 0):.0f} s; "
                  f"device {summary.get('provenance', {}).get('device', '?')}; "
                  f"commit {summary.get('provenance', {}).get('commit', '?')}.", ""]
        for table in summary["tables"]:
            lines += [(folder / table["markdown"]).read_text(), ""]
        for figure in summary["figures"]:
            lines += [f"### {figure['title']}", "", f"![{figure['title']}]({folder.name}/{figure['png']})", ""]
    path = Path(out_root) / "report.md"
    remove_stale_temporaries(out_root, of=[path.name])  # of a reproduce killed while writing it
    atomic_write_bytes(path, lambda f: f.write("\n".join(lines).encode()))
    return path
