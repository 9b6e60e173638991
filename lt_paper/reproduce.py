"""``python -m lt_paper reproduce --profile smoke|cifar|paper``: every notebook, one report.

Each notebook of ``notebooks/`` runs through papermill with the profile's parameters. It writes into
a staging folder; only when it succeeds does the staging folder replace the notebook's previous
outputs, so a failing notebook is named, its error shown, and the earlier good outputs are kept.
Finally one Markdown report gathers every table and figure with their provenance.

Profiles:

* ``smoke``: scikit-learn's digits (embedded, no download), CPU, one seed; minutes on 2 cores.
* ``cifar``: CIFAR-10-LT (imbalance 100) with ResNet-32 on one GPU, the 200-epoch recipe, 3 seeds.
  Needs ``--data-root`` (the image-folder tree or its .tar.gz, or torchvision's CIFAR files).
* ``paper``: ImageNet-LT (ResNet-50, ResNeXt-50) and iNaturalist-2018 (ResNet-50); launch the
  command under ``torchrun`` for DDP. Needs ``--data-root``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from .analysis import provenance_markdown
from .outputs import load_summary
from .provenance import REPO_ROOT, provenance
from .train.checkpoint import atomic_write_bytes

NOTEBOOK_DIR = REPO_ROOT / "notebooks"

NOTEBOOKS = (
    "table1_3_main_results",
    "table4_ala_ablation",
    "table5_router_ablation",
    "figure1_hard_samples",
    "figure2_adjusting_terms",
    "figure3_moe_architecture",
    "figure4_router_weights",
)

_SMOKE = dict(prefix="smoke", dataset="digits_lt", arch="resnet8", epochs=30, seeds=[0], device="cpu",
              data_root=None)
# cifar: one GPU; a notebook's rows train as one batched ensemble (run_rows' default on CUDA: one
# ResNet-32 run leaves a GPU mostly idle)
_CIFAR = dict(prefix="cifar10_lt", dataset="cifar10_lt", arch="resnet32", epochs=200, seeds=[0, 1, 2],
              device="cuda", data_root=None, parallel=1)
_IMAGENET = dict(prefix="imagenet_lt", dataset="imagenet_lt", arch="resnext50", epochs=100, seeds=[0],
                 device="cuda", data_root=None)

# Notebook name -> list of (output folder, parameters). Table 1/3 runs once per dataset in `paper`.
PROFILES: dict[str, dict[str, list[tuple[str, dict]]]] = {
    "smoke": {nb: [(nb, dict(_SMOKE))] for nb in NOTEBOOKS},
    "cifar": {nb: [(nb, dict(_CIFAR))] for nb in NOTEBOOKS},
    "paper": {nb: [(nb, dict(_IMAGENET))] for nb in NOTEBOOKS},
}
PROFILES["paper"]["table1_3_main_results"] = [
    ("table1_imagenet_lt_resnet50", dict(_IMAGENET, arch="resnet50")),
    ("table1_imagenet_lt_resnext50", dict(_IMAGENET)),
    ("table3_inat2018_resnet50", dict(_IMAGENET, prefix="inat2018", dataset="inat2018", arch="resnet50")),
]


def jobs_for(profile: str, only: str | None = None) -> list[tuple[str, str, dict]]:
    """(notebook, output folder, parameters) for a profile; ``only`` keeps names containing it."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are {sorted(PROFILES)}")
    jobs = [(nb, folder, params) for nb, runs in PROFILES[profile].items() for folder, params in runs]
    if only:
        jobs = [j for j in jobs if only in j[0] or only in j[1]]
        if not jobs:
            raise ValueError(f"--only {only!r} matches no notebook; notebooks are {list(NOTEBOOKS)}")
    return jobs


def execute_notebook(notebook: str, output_dir: Path, parameters: dict, kernel: str | None = None) -> None:
    """Run one notebook with papermill; the executed copy lands beside its outputs."""
    import papermill as pm

    source = NOTEBOOK_DIR / f"{notebook}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"notebook {source} does not exist")
    output_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(source), str(output_dir / f"{notebook}.ipynb"),
                        parameters=dict(parameters, output_dir=str(output_dir)),
                        kernel_name=kernel or "python3", progress_bar=False, cwd=str(REPO_ROOT))


def reproduce(profile: str = "smoke", out_root: str | Path = "outputs", only: str | None = None,
              runs_dir: str | None = None, data_root: str | None = None, kernel: str | None = None,
              overrides: dict | None = None) -> dict:
    """Execute the profile's notebooks; returns {"ok": [...], "failed": {folder: error}, "report": path}.

    Under ``torchrun`` every rank executes the same notebooks (their kernels inherit RANK / WORLD_SIZE,
    so each ``train`` call joins the process group); rank 0 alone writes the outputs and the report,
    the other ranks write into a scratch folder ``<out>/<profile>/.rank<N>`` that nothing reads.
    """
    rank = int(os.environ.get("RANK", "0"))
    out_root = Path(out_root) / profile
    runs_dir = runs_dir or str(Path(out_root) / "runs")
    if rank > 0:
        out_root = out_root / f".rank{rank}"
    ok, failed = [], {}
    for notebook, folder, params in jobs_for(profile, only):
        params = dict(params, runs_dir=str(Path(runs_dir).resolve()), profile=profile)
        if data_root is not None:
            params["data_root"] = str(Path(data_root).resolve())
        params.update(overrides or {})
        final, staging = out_root / folder, out_root / f".staging-{folder}"
        shutil.rmtree(staging, ignore_errors=True)
        started = time.perf_counter()
        print(f"[reproduce:{profile}] {folder} ...", flush=True)
        try:
            execute_notebook(notebook, staging, params, kernel)
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            failed[folder] = f"{type(e).__name__}: {e}"
            print(f"[reproduce:{profile}] FAILED {folder} (earlier outputs kept in {final}):\n{e}",
                  file=sys.stderr, flush=True)
            if not hasattr(e, "ename"):
                traceback.print_exc()
            continue
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        ok.append(folder)
        print(f"[reproduce:{profile}] ok {folder} ({time.perf_counter() - started:.0f} s)", flush=True)
    report = write_report(out_root, profile) if rank == 0 else None
    return {"ok": ok, "failed": failed, "report": str(report)}


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
    atomic_write_bytes(path, lambda f: f.write("\n".join(lines).encode()))
    return path


def publish(profile_dir: str | Path, name: str, repo_root: str | Path = REPO_ROOT, force: bool = False) -> dict:
    """Copy a complete ``reproduce`` output into ``results/<name>/`` and ``figures/<name>/``.

    Tables (Markdown, CSV), each notebook's ``summary.json`` (parameters, provenance, wall time) and
    every run's ``config.json`` / ``metrics.json`` / ``history.json`` go to ``results/<name>/``; the PNGs
    to ``figures/<name>/``; the report is rewritten there with links into ``figures/``. An incomplete
    output (a notebook without its summary) is refused, and existing results are replaced only with
    ``force``, after the new copy is complete.
    """
    profile_dir, repo_root = Path(profile_dir), Path(repo_root)
    folders = sorted(p for p in profile_dir.iterdir() if p.is_dir() and p.name not in ("runs",)
                     and not p.name.startswith("."))
    incomplete = [f.name for f in folders if not (f / "summary.json").is_file()]
    if not folders or incomplete or not (profile_dir / "report.md").is_file():
        raise ValueError(f"{profile_dir} is not a complete reproduce output (missing report.md or the "
                         f"summary.json of {incomplete or 'every notebook'})")
    results, figures = repo_root / "results" / name, repo_root / "figures" / name
    if (results.exists() or figures.exists()) and not force:
        raise FileExistsError(f"{results} or {figures} exists; pass force=True (--force) to replace it")
    staging_results, staging_figures = Path(f"{results}.staging"), Path(f"{figures}.staging")
    for path in (staging_results, staging_figures):
        shutil.rmtree(path, ignore_errors=True)
    for folder in folders:
        for item in folder.iterdir():
            if item.suffix == ".png":
                target = staging_figures / folder.name / item.name
            elif item.suffix in (".md", ".csv") or item.name == "summary.json":
                target = staging_results / folder.name / item.name
            else:
                continue  # the executed notebook copies stay in outputs/
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, target)
    runs = sorted(p for p in (profile_dir / "runs").glob("*") if (p / "metrics.json").is_file())
    for run in runs:
        for fname in ("config.json", "metrics.json", "history.json"):
            (staging_results / "runs" / run.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(run / fname, staging_results / "runs" / run.name / fname)
    # the report as reproduce wrote it (its provenance is that of the run), images linked into figures/
    figures_link = os.path.relpath(figures, results) + "/"
    report = (profile_dir / "report.md").read_text()
    for folder in folders:
        report = report.replace(f"]({folder.name}/", f"]({figures_link}{folder.name}/")
    (staging_results / "report.md").write_text(report)
    for staging, final in ((staging_results, results), (staging_figures, figures)):
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    return {"results": str(results), "figures": str(figures), "runs": len(runs), "notebooks": len(folders)}
