"""Replace several folders by staged copies together, so that a crash at any point leaves all the old
ones or all the new ones once the next swap has run (``publish``: ``results/NAME`` with ``figures/NAME``).

Two folders cannot be renamed in one step, and a process killed with SIGKILL runs no cleanup. So every
swap keeps a journal, a small JSON file written atomically, that names each folder it will create or
rename: for each final folder, its staging folder and the name its old content moves to (the backup).
The journal goes through two states:

- ``staging``: the new content is being assembled in the staging folders; the final folders are
  untouched. An interrupted swap in this state is rolled back: its staging folders are removed.
- ``swapping`` (the commit point: the staging folders are complete): each final folder is renamed to its
  backup and its staging folder to the final name, then the backups are removed. An interrupted swap in
  this state is finished, from wherever it stopped.

The journal is removed last. ``FolderSwap.recover`` (run by the next swap, under the same lock) reads it
and rolls back or finishes; it touches the folders the journal names and nothing else, and refuses, changing
nothing, a journal that names anything but this swap's own folders or a state it cannot explain.
Callers hold a lock (``locks.hold_lock``) around recovery and the whole swap.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from pathlib import Path

from .atomic import atomic_write_json, remove_stale_temporaries

STAGING, SWAPPING = "staging", "swapping"


def _folder_names(final: Path, token: str) -> dict[str, Path]:
    """The three folders of one final folder in a swap: hidden siblings named after it and the swap."""
    return {"final": final, "staging": final.with_name(f".{final.name}.staging-{token}"),
            "backup": final.with_name(f".{final.name}.replaced-{token}")}


def _write(journal: Path, root: Path, state: str, entries: list[dict[str, Path]]) -> None:
    atomic_write_json(journal, {"state": state, "folders": [
        {key: path.relative_to(root).as_posix() for key, path in entry.items()} for entry in entries]})


def _read(journal: Path, root: Path, finals: list[Path]) -> tuple[str, list[dict[str, Path]]]:
    """The state and folders of ``journal``; ValueError naming it unless it describes a swap of exactly
    ``finals``, each with staging and backup folders named as :func:`_folder_names` names them."""
    def refuse(why: str) -> ValueError:
        return ValueError(f"swap journal {journal} {why}; nothing was changed. Look at the folders it names "
                          f"and remove it by hand once {', '.join(str(f) for f in finals)} are as they "
                          f"should be")

    try:
        data = json.loads(journal.read_text())
    except ValueError as err:
        raise refuse(f"is not valid JSON ({err})") from None
    if not isinstance(data, dict) or data.get("state") not in (STAGING, SWAPPING) \
            or not isinstance(data.get("folders"), list):
        raise refuse("holds no 'state' (staging or swapping) and 'folders' list")
    entries = []
    for entry in data["folders"]:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("final", "staging", "backup")):
            raise refuse(f"has a folder entry without final, staging and backup paths: {entry!r}")
        final = root / entry["final"]
        match = re.fullmatch(rf"\.{re.escape(final.name)}\.staging-([0-9a-f]+)", Path(entry["staging"]).name)
        if final not in finals or match is None \
                or {k: root / entry[k] for k in ("final", "staging", "backup")} != _folder_names(final, match[1]):
            raise refuse(f"names folders that are not this swap's: {entry!r}")
        entries.append(_folder_names(final, match[1]))
    if sorted(e["final"] for e in entries) != sorted(finals):
        raise refuse(f"swaps {[str(e['final']) for e in entries]}, not {[str(f) for f in finals]}")
    return data["state"], entries


def _finish(journal: Path, entries: list[dict[str, Path]]) -> None:
    """Swap every staging folder in (its final folder's old content to the backup name), then remove the
    backups and the journal. Each step checks what is on disk, so that it resumes where a crash left it."""
    for e in entries:
        if e["staging"].exists() and e["final"].exists() and e["backup"].exists():
            raise ValueError(f"swap journal {journal}: {e['final']}, {e['staging']} and {e['backup']} all "
                             f"exist, which no step of a swap leaves; nothing was changed")
        if not e["staging"].exists() and not e["final"].exists():
            raise ValueError(f"swap journal {journal}: neither {e['final']} nor its new content "
                             f"{e['staging']} exists; nothing was changed")
    for e in entries:
        if e["staging"].exists():
            if e["final"].exists():
                e["final"].rename(e["backup"])
            e["staging"].rename(e["final"])
    for e in entries:
        if e["backup"].exists():
            shutil.rmtree(e["backup"])
    journal.unlink()


def _roll_back(journal: Path, entries: list[dict[str, Path]]) -> None:
    """Remove the staging folders of a swap that did not reach its commit point, then the journal."""
    for e in entries:
        shutil.rmtree(e["staging"], ignore_errors=True)
    journal.unlink()


class FolderSwap:
    """The swap of folders ``finals`` recorded in ``journal``, whose paths are relative to ``root``.

    ``recover()`` first (under the caller's lock), then ``begin()`` -> fill the staging folders ->
    ``commit()``, or ``abandon()`` when filling them failed.
    """

    def __init__(self, journal: str | Path, root: str | Path, finals: list[Path]):
        self.journal, self.root, self.finals = Path(journal), Path(root), [Path(f) for f in finals]

    def recover(self) -> str | None:
        """Finish or roll back an interrupted swap: "finished", "rolled back", or None (no journal)."""
        remove_stale_temporaries(self.journal.parent, of=[self.journal.name])  # a journal write killed
        if not self.journal.exists():
            return None
        state, entries = _read(self.journal, self.root, self.finals)
        if state == SWAPPING:
            _finish(self.journal, entries)
            return "finished"
        _roll_back(self.journal, entries)
        return "rolled back"

    def begin(self) -> dict[Path, Path]:
        """Record the swap (state staging), then create an empty staging folder per final folder;
        returns ``{final: staging}``."""
        if self.journal.exists():
            raise FileExistsError(f"swap journal {self.journal} exists: recover() the interrupted swap first")
        token = secrets.token_hex(4)
        entries = [_folder_names(final, token) for final in self.finals]
        _write(self.journal, self.root, STAGING, entries)
        for e in entries:
            e["staging"].mkdir(parents=True)
        return {e["final"]: e["staging"] for e in entries}

    def commit(self) -> None:
        """The commit point: mark the swap as swapping, then swap the folders in. An error after it (a
        rename refused) leaves the journal, and the next ``recover()`` finishes the swap."""
        _, entries = _read(self.journal, self.root, self.finals)
        _write(self.journal, self.root, SWAPPING, entries)
        _finish(self.journal, entries)

    def abandon(self) -> None:
        """Roll back a begun swap (filling its staging folders failed): remove them and the journal."""
        _roll_back(self.journal, _read(self.journal, self.root, self.finals)[1])
