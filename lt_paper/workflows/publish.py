"""``python -m lt_paper publish OUT NAME``: a ``reproduce`` output into ``results/NAME`` and ``figures/NAME``.

What goes where: each notebook's tables (Markdown, CSV) and ``summary.json`` (parameters, provenance,
wall time) to ``results/NAME/<notebook>/``, its PNGs to ``figures/NAME/<notebook>/``, the report to
``results/NAME/report.md`` with its images linked into ``figures/``, and the small files of every run the
notebooks read to ``results/NAME/runs/<run>/``: ``config.json``, ``metrics.json``, ``history.json`` and a
compact ``records.npz`` (:func:`compact_records`), so that published runs can be explored without training.
Which runs: those each notebook's ``summary.json`` lists under ``runs`` (its rows' runs and their
distillation teachers), wherever they live (the shared ``runs/`` holds other runs too: those stay out).
Executed notebooks, checkpoints and weights stay behind.

Nothing lost, nothing wrong served:

- ``NAME`` is one plain path component; only ``results/NAME`` and ``figures/NAME`` are ever replaced.
- The new content is assembled in full in staging folders beside them (the published content, merged
  with the new output), both stamped with one fresh publication id (``publication.json``), and swapped in
  (:class:`lt_paper.files.folder_swap.FolderSwap`): each folder by one exchange of directory entries, so
  ``results/NAME`` and ``figures/NAME`` are never missing and each is always the whole old or the whole
  new folder, even while a publish runs or after one was killed. The two switch back to back, one system
  call apart; a publish killed exactly between them leaves stamps that differ and a journal
  (``results/.NAME.publish.json``) in state ``swapping``, and a reader going through
  :func:`lt_paper.workflows.publication.whole_publication` (as notebooks reading published runs do)
  finishes the swap before reading: it sees the old publication or the new one, whole. A failure while
  staging leaves the old content and no staging folder; a publish killed at any point leaves the journal,
  from which the next publish of ``NAME`` (or such a reader) finishes the swap or rolls it back.
  Publishing touches no other file beside them. One publish of ``NAME`` at a time (lock file
  ``results/.NAME.publish.lock``). Where these files lie: :class:`lt_paper.workflows.publication.Publication`.
- Every run must be the run its folder is named after (folder name, config and config hash agree), with a
  ``metrics.json`` that says what its ``records.npz`` says and a ``records.npz`` of a run's arrays
  (``train.run_results``), checked before anything is written.
- A publication holds one profile and one dataset: an output of another (or of several) is refused.
- An output with only some of its profile's notebooks (``reproduce --only``) is refused unless
  ``partial=True``; it is then merged: the notebooks it lacks keep their published copies.
- Replacing a published notebook needs ``force=True``. Runs always merge (the seeds of several GPU
  sessions accumulate); a run already published under the same name (same config hash) with other
  metrics is refused rather than silently replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from ..files.atomic import atomic_write_bytes
from ..files.locks import lock_holder
from .outputs import load_summary
from .publication import Publication, write_stamps
from .portable import portable_text, strict_json
from ..train.provenance import REPO_ROOT
from .reproduce import PROFILES, jobs_for, output_lock_file
from ..train.run_results import verified_result
from ..train.run_files import read_metrics, read_npz

RUN_JSON_FILES = ("config.json", "metrics.json", "history.json")
# metrics.json keys that say where and how long a run ran, not what it computed
CIRCUMSTANTIAL_KEYS = ("provenance", "wall_time_s")


def compact_records(source: Path, target: Path) -> None:
    """Write ``source``'s records.npz to ``target`` in a compact form (about 1/4 of the size).

    Float arrays whose values all lie in [-1, 1] (probabilities, router weights, cosines) become float16:
    a relative error below 2^-11, far under what the figures resolve. Other float arrays (unbounded logits)
    stay float32. Integer arrays (labels, predictions, counts) stay integer, in the smallest type that
    holds them. :func:`lt_paper.analysis.load_run` reads both forms into the same dtypes.
    """
    arrays = read_npz(source)
    out = {}
    for key, a in arrays.items():
        if a.dtype.kind == "f":
            bounded = a.size > 0 and bool(np.all(np.abs(a) <= 1.0))  # False with any NaN
            out[key] = a.astype(np.float16 if bounded else np.float32)
        elif a.dtype.kind in "iu" and a.size:
            out[key] = a.astype(next(t for t in (np.int16, np.int32, np.int64)
                                     if np.iinfo(t).min <= a.min() and a.max() <= np.iinfo(t).max))
        else:
            out[key] = a
    atomic_write_bytes(target, lambda f: np.savez_compressed(f, **out))


def _notebook_folders(profile_dir: Path) -> list[Path]:
    return sorted(p for p in profile_dir.iterdir()
                  if p.is_dir() and p.name != "runs" and not p.name.startswith("."))


def check_output(profile_dir: Path, partial: bool) -> tuple[list[Path], list[str]]:
    """The notebook folders of a finished reproduce output, and the profile's notebooks it lacks.

    ValueError for a folder without its summary (a notebook that did not finish), a missing report, or
    missing notebooks without ``partial``; FileExistsError while a reproduce still writes there.
    """
    if not profile_dir.is_dir():
        raise FileNotFoundError(f"{profile_dir} does not exist (expected a reproduce output, e.g. "
                                f"outputs/smoke)")
    holder = lock_holder(output_lock_file(profile_dir))
    if holder is not None:
        raise FileExistsError(f"{profile_dir} is in use by pid {holder} (a reproduce still writes there)")
    folders = _notebook_folders(profile_dir)
    incomplete = [f.name for f in folders if not (f / "summary.json").is_file()]
    if not folders or incomplete or not (profile_dir / "report.md").is_file():
        raise ValueError(f"{profile_dir} is not a complete reproduce output (missing report.md or the "
                         f"summary.json of {incomplete or 'every notebook'})")
    profile, _ = publication_kind(folders, str(profile_dir))
    expected = [folder for _, folder, _ in jobs_for(profile)] if profile in PROFILES else []
    missing = [name for name in expected if name not in {f.name for f in folders}]
    if missing and not partial:
        raise ValueError(f"{profile_dir} is a partial {profile} output: it lacks {', '.join(missing)}; pass "
                         f"--partial (partial=True) to merge it, keeping the published copies of those")
    return folders, missing


def publication_kind(folders: list[Path], where: str) -> tuple[str, str]:
    """The one (profile, dataset) whose notebooks ``folders`` hold, from their ``summary.json`` parameters;
    ValueError naming ``where`` when they hold several (one publication, one profile and one dataset:
    its report, tables and runs describe one recipe on one dataset)."""
    kinds = {(str(p.get("profile")), str(p.get("dataset"))) for p in
             (load_summary(folder)["parameters"] for folder in folders)}
    if len(kinds) != 1:
        raise ValueError(f"{where} mixes notebooks of several profiles / datasets "
                         f"({', '.join(f'{p} on {d}' for p, d in sorted(kinds))}); a publication holds one")
    return kinds.pop()


def check_same_publication(folders: list[Path], results: Path) -> None:
    """ValueError unless the published ``results`` (if any) holds the profile and dataset of ``folders``:
    a notebook of another profile would sit under this one's report header, beside runs of another recipe."""
    published = _notebook_folders(results) if results.is_dir() else []
    published = [folder for folder in published if (folder / "summary.json").is_file()]
    if not published:
        return
    ours, theirs = publication_kind(folders, "the output"), publication_kind(published, str(results))
    if ours != theirs:
        raise ValueError(f"{results} is a publication of profile {theirs[0]} on {theirs[1]}; this output is "
                         f"profile {ours[0]} on {ours[1]}: publish it under another name (a publication holds "
                         f"one profile and one dataset)")


def _listed_runs(folders: list[Path]) -> list[Path]:
    """The runs the notebooks read: the union of the ``runs`` their summaries list.

    ValueError naming the summary for a summary without that list (written before notebooks recorded
    their runs) and for a listed run that is gone or not finished (no ``metrics.json``); ValueError
    naming the run when it is not the run its folder is named after, or its ``metrics.json`` is not what
    its ``records.npz`` gives (``train.run_results.verified_result``).
    """
    runs: set[Path] = set()
    for folder in folders:
        listed = load_summary(folder).get("runs")
        if not isinstance(listed, list):
            raise ValueError(f"{folder / 'summary.json'} lists no 'runs' (written by an older lt_paper): "
                             f"run reproduce again to record the runs its notebooks read")
        for run in map(Path, listed):
            if not (run / "metrics.json").is_file():
                state = "not finished (no metrics.json)" if run.is_dir() else "missing"
                raise ValueError(f"{folder / 'summary.json'} lists run {run}, which is {state}: train it "
                                 f"again (reproduce) or restore it before publishing")
            verified_result(run)  # its own run, its metrics those of its records: checked before anything is written
            runs.add(run)
    return sorted(runs)


def _result_of(metrics_path: Path) -> dict:
    """What a run computed: its ``metrics.json`` (checked field by field) without the circumstances."""
    metrics = read_metrics(metrics_path)
    return {k: v for k, v in metrics.items() if k not in CIRCUMSTANTIAL_KEYS}


def merge_run(run: Path, target: Path, published_as: Path | None = None) -> bool:
    """Copy ``run``'s small files to ``target`` (True), or leave the same published run (False).

    ValueError when ``target`` holds the same run (same config hash) with another result; the message
    names ``published_as`` (where ``target`` is published; ``target`` itself by default).
    """
    result = _result_of(run / "metrics.json")  # a damaged metrics.json is refused before anything is copied
    if (target / "metrics.json").is_file():
        if _result_of(target / "metrics.json") != result:
            raise ValueError(f"run {run.name} is published with other metrics than {run}: same config "
                             f"hash, another result. Remove {run} from the output, or its published copy "
                             f"{published_as or target}, to choose")
        return False
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_JSON_FILES:
        shutil.copy2(run / name, target / name)
    compact_records(run / "records.npz", target / "records.npz")
    return True


def _sections(report: str) -> tuple[list[str], dict[str, list[str]]]:
    """A report's lines before the first ``## <notebook>`` heading, and each notebook's section."""
    head: list[str] = []
    sections: dict[str, list[str]] = {}
    current = None
    for line in report.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        (head if current is None else sections[current]).append(line)
    return head, sections


def merged_report(new: str, published: str | None) -> str:
    """The new report's header and sections, plus the published sections of notebooks it lacks."""
    head, sections = _sections(new)
    if published is not None:
        sections = {**_sections(published)[1], **sections}
    return "\n".join(head + [line for name in sorted(sections) for line in sections[name]]) + "\n"


def publish(profile_dir: str | Path, name: str, repo_root: str | Path = REPO_ROOT, force: bool = False,
            partial: bool = False) -> dict:
    """Publish a ``reproduce`` output as ``results/<name>`` and ``figures/<name>`` (module docstring).

    Returns ``{"results", "figures", "notebooks", "runs", "runs_copied", "runs_published", "missing",
    "recovered"}``: the notebooks of this output and the runs they read, how many runs were new, how many
    are now published under ``name``, the notebooks a partial output lacks, and what became of an
    interrupted earlier publish of ``name`` ("finished", "rolled back" or None).
    The output is checked before anything is written: a refused output leaves the repository as it was.
    """
    profile_dir, repo_root = Path(profile_dir), Path(repo_root)
    publication = Publication(name, repo_root)  # ValueError for a name that is not one plain folder
    for published in (publication.results.parent, publication.figures.parent):
        if profile_dir.resolve().is_relative_to(published.resolve()):
            raise ValueError(f"{profile_dir} is published content, not a reproduce output "
                             f"(e.g. outputs/smoke)")
    folders, missing = check_output(profile_dir, partial)
    runs = _listed_runs(folders)
    results, figures = publication.results, publication.figures
    swap = publication.swap()
    with publication.hold():
        recovered = swap.recover()  # first: whatever happens next, the publication is whole
        if recovered is not None:
            print(f"[publish] {name}: an interrupted publish was {recovered} (journal {swap.journal})",
                  file=sys.stderr, flush=True)
        check_same_publication(folders, results)
        _check_replaceable(folders, results, figures, force)
        staging = swap.begin()
        try:
            copied = _stage(profile_dir, folders, runs, staging, results, figures)
            make_portable(staging[results], {str(run.parent): os.path.relpath(publication.runs, repo_root)
                                             for run in runs}, repo_root)
            write_stamps(staging.values(), *publication_kind(folders, str(profile_dir)))
        except BaseException:
            swap.abandon()
            raise
        swap.commit()
    published_runs = sorted(p.name for p in publication.runs.glob("*") if p.is_dir())
    return {"results": str(results), "figures": str(figures), "notebooks": len(folders),
            "runs": len({run.name for run in runs}), "runs_copied": copied, "runs_published": len(published_runs),
            "missing": missing, "recovered": recovered}


def make_portable(folder: Path, places: dict[str, str], repo_root: Path) -> None:
    """Rewrite the published text files under ``folder`` (reports, tables, summaries, run configs) so that
    they name no folder of this machine (:func:`lt_paper.workflows.portable.portable_text`: the runs folders in
    ``places`` become the published runs folder) and every ``summary.json`` is strict JSON."""
    for path in sorted(folder.rglob("*")):
        in_a_run = path.parent.parent.name == "runs"  # a run's metrics and history are compared, not rewritten
        if path.suffix not in (".json", ".md", ".csv") or not path.is_file() or (in_a_run and path.name != "config.json"):
            continue
        text = path.read_text()
        portable = portable_text(text, places, repo_root)
        if path.name == "summary.json":
            portable = json.dumps(strict_json(json.loads(portable)), indent=2, default=str)
        if portable != text:
            atomic_write_bytes(path, lambda f: f.write(portable.encode()))


def _check_replaceable(folders: list[Path], results: Path, figures: Path, force: bool) -> None:
    """ValueError unless ``results`` and ``figures`` are plain folders (or absent); FileExistsError when
    they hold notebooks of this output and ``force`` is off."""
    for final in (results, figures):
        if final.is_symlink() or (final.exists() and not final.is_dir()):
            raise ValueError(f"{final} is not a plain folder; publish replaces only folders it wrote")
    replaced = sorted({f.name for f in folders if (results / f.name).exists() or (figures / f.name).exists()})
    if replaced and not force:
        raise FileExistsError(f"{results} already holds notebook(s) {', '.join(replaced)}; pass --force "
                              f"(force=True) to replace them (runs are merged either way)")


def _stage(profile_dir: Path, folders: list[Path], runs: list[Path], staging: dict[Path, Path], results: Path,
           figures: Path) -> int:
    """Fill the staging folders: the published content, merged with the output's notebooks, report and
    runs. Returns how many runs were new."""
    for final, stage in staging.items():
        if final.exists():
            shutil.copytree(final, stage, symlinks=True, dirs_exist_ok=True)
    copied = sum(merge_run(run, staging[results] / "runs" / run.name, results / "runs" / run.name)
                 for run in runs)
    for folder in folders:
        for stage in staging.values():
            shutil.rmtree(stage / folder.name, ignore_errors=True)
        for item in sorted(folder.iterdir()):
            if item.suffix == ".png":
                target = staging[figures] / folder.name / item.name
            elif item.suffix in (".md", ".csv") or item.name == "summary.json":
                target = staging[results] / folder.name / item.name
            else:
                continue  # the executed notebook copies stay in the output folder
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, target)
    # the report as reproduce wrote it (its provenance is that of the run), images linked into figures/
    figures_link = os.path.relpath(figures, results) + "/"
    report = (profile_dir / "report.md").read_text()
    for folder in folders:
        report = report.replace(f"]({folder.name}/", f"]({figures_link}{folder.name}/")
    published = results / "report.md"
    report = merged_report(report, published.read_text() if published.is_file() else None)
    (staging[results] / "report.md").write_text(report)
    return copied
