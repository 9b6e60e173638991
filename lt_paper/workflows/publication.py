"""Where a publication lies and how a reader finds it whole: ``results/NAME`` with ``figures/NAME``.

A publication ``NAME`` is two top-level folders of the repository, ``results/NAME`` (tables, summaries,
report, runs) and ``figures/NAME`` (the PNGs the report links): real folders with fixed names, so that the
README can link them and GitHub renders them. ``publish`` replaces them together
(:mod:`lt_paper.workflows.publish`) under a journal (``results/.NAME.publish.json``) and a lock
(``results/.NAME.publish.lock``); :class:`Publication` names all four, in this one place.

Two folders cannot switch in one system call: a publish killed between its two folder exchanges leaves
the new ``results/NAME`` beside the old ``figures/NAME``, with a journal that says the swap is to be
finished. So each publish writes a stamp, ``publication.json``, into both folders (the same content: a
fresh random id, the UTC time, the profile and the dataset), and readers go through
:func:`whole_publication`: two stamps that agree are one publication; two that disagree, with the
journal in place, are an interrupted swap, which it finishes (under the lock) before reading on. The
reader thus sees the old publication or the new one, whole, even before the next publish recovers.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

from ..files.atomic import atomic_write_json
from ..files.folder_swap import SWAPPING, FolderSwap
from ..files.locks import hold_lock

RESULTS, FIGURES = "results", "figures"  # the repository's top-level folders of publications
STAMP = "publication.json"  # in both folders of a publication: which publish made it
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(name: str) -> str:
    """``name`` if it is one plain path component (letters, digits, ``_``, ``-``, ``.``); else ValueError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name.startswith("."):
        raise ValueError(f"publish name {name!r} is not valid: use one folder name of letters, digits, '_', "
                         f"'-' and '.' (not starting with '.'), e.g. 'smoke' or 'cifar10_lt'")
    return name


class Publication:
    """The files of publication ``name`` under ``repo_root``: ``results`` and ``figures`` (the two folders),
    ``runs`` (its published runs), ``journal`` and ``lock`` (those of ``publish``)."""

    def __init__(self, name: str, repo_root: str | Path):
        self.name, self.root = check_name(name), Path(repo_root)
        self.results, self.figures = self.root / RESULTS / name, self.root / FIGURES / name
        self.runs = self.results / "runs"
        self.journal = self.results.with_name(f".{name}.publish.json")
        self.lock = self.results.with_name(f".{name}.publish.lock")

    @classmethod
    def of_runs(cls, runs_dir: str | Path) -> "Publication | None":
        """The publication whose runs folder ``runs_dir`` is (``<root>/results/NAME/runs``), else None."""
        results = Path(runs_dir).parent
        if Path(runs_dir).name != "runs" or results.parent.name != RESULTS:
            return None
        try:
            return cls(results.name, results.parent.parent)
        except ValueError:  # not a publication's name
            return None

    def swap(self) -> FolderSwap:
        """The journalled swap that replaces both folders together."""
        return FolderSwap(self.journal, self.root, [self.results, self.figures])

    def hold(self):
        """Hold the publication's lock (``with publication.hold(): ...``): one publish or recovery at a time."""
        return hold_lock(self.lock, f"publication {self.name}")


def write_stamps(folders, profile: str, dataset: str) -> None:
    """Write the same new stamp into each of ``folders`` (the staging folders of one publish, before its
    commit, so that each folder carries the id of the publish that made it)."""
    stamp = {"id": secrets.token_hex(8), "published_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "profile": profile, "dataset": dataset}
    for folder in folders:
        atomic_write_json(Path(folder) / STAMP, stamp)


def _stamp(folder: Path) -> dict | None:
    """The stamp of ``folder``, or None where there is none; ValueError naming a stamp that is not one."""
    path = folder / STAMP
    try:
        stamp = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        stamp = err
    if not isinstance(stamp, dict):
        raise ValueError(f"{path} is not a publication stamp (a JSON object): publish {folder.name} again to "
                         f"rewrite it")
    return stamp


def _said(folder: Path, stamp: dict | None) -> str:
    if stamp is None:
        return f"{folder / STAMP} is missing"
    return f"{folder / STAMP} says id {stamp.get('id')!r} of {stamp.get('published_utc')}"


def whole_publication(name: str, repo_root: str | Path) -> tuple[Path, Path]:
    """``(results/NAME, figures/NAME)`` once they hold one publication (module docstring): both stamps the
    same, or both absent (a publication made before stamps existed is accepted as it is; one stamp without
    the other is a mismatch).

    Stamps that disagree while the journal of an interrupted publish says ``swapping`` (killed between its
    two folder exchanges): the swap is finished first, under the publication's lock (``FolderSwap.recover``,
    what the next publish would do). Stamps that still disagree (no journal: folders copied or committed by hand): ValueError naming both stamp files,
    changing nothing. A live publish holding the lock: FileExistsError naming its pid (read again once it
    is done).
    """
    publication = Publication(name, repo_root)
    results, figures, swap = publication.results, publication.figures, publication.swap()
    stamps = _stamp(results), _stamp(figures)
    if stamps[0] != stamps[1] and swap.state() == SWAPPING:
        with publication.hold():
            swap.recover()  # under the lock, whatever another recovery did meanwhile
        stamps = _stamp(results), _stamp(figures)
    if stamps[0] != stamps[1]:
        raise ValueError(f"publication {name} is two publications: {_said(results, stamps[0])}, "
                         f"{_said(figures, stamps[1])}; nothing was changed. Publish {name} again "
                         f"(python -m lt_paper publish OUTPUT {name} --force) to make them one")
    return results, figures
