"""Replace several folders by staged copies together, so that a crash at any point leaves all the old
ones or all the new ones once the next swap has run (``publish``: ``results/NAME`` with ``figures/NAME``;
``reproduce``: a notebook's output folder).

A process killed with SIGKILL runs no cleanup. So every swap keeps a journal, a small JSON file written
atomically, that names each folder it will create or rename: for each final folder, its staging folder
and the name its old content moves to (the backup), and, once the staging folder is complete, the
identity (device and inode) of that staging folder, which a rename keeps. The journal goes through two
states:

- ``staging``: the new content is being assembled in the staging folders; the final folders are
  untouched. An interrupted swap in this state is rolled back: its staging folders are removed.
- ``swapping`` (the commit point: the staging folders are complete): each staging folder takes its
  final folder's place, then the old content is removed. An interrupted swap in this state is finished,
  from wherever it stopped: the recorded identity says which folder holds the new content.

Each staging folder takes its final folder's place in one step, ``renameat2(RENAME_EXCHANGE)`` (Linux
3.15 and later, on the usual local file systems): the final name always names a whole folder, the old
one or the new one, and the old content lands at the staging name. Where the exchange is not supported
(another system, a file system that refuses it) the fallback is two renames, final to backup and staging
to final, between which the final name is briefly missing (a reader retries; a crash there is finished by
the next swap). Several folders still switch one after another, back to back: between two exchanges (two
consecutive system calls) the final names show a new folder beside an old one, and a crash exactly there
leaves them so, with the journal in state ``swapping``, until a recovery finishes the swap. A reader who
must see all old or all new tells the two apart by content the swap carries (``publish`` stamps both
folders with one id: ``lt_paper.workflows.publication``) and, seeing them differ while ``state()`` is
``swapping``, runs ``recover()`` under the lock before reading on.

The journal is removed last. ``FolderSwap.recover`` (run by the next swap, under the same lock) reads it
and rolls back or finishes; it touches the folders the journal names and nothing else, and refuses, changing
nothing, a journal that names anything but this swap's own folders or a state it cannot explain.
Callers hold a lock (``locks.hold_lock``) around recovery and the whole swap.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path

from .atomic import atomic_write_json, remove_stale_temporaries

STAGING, SWAPPING = "staging", "swapping"
RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def _renameat2():
    """libc's ``renameat2`` (glibc 2.28+), or None where there is none (another system, another libc)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap the folders named ``a`` and ``b`` in one step (``renameat2(RENAME_EXCHANGE)``): True, or
    False, changing nothing, where this system or file system cannot (the caller then renames twice)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"{os.strerror(code)} (exchanging {a} and {b})", str(a))


def _identity(path: Path) -> list[int] | None:
    """The device and inode of folder ``path`` (kept by a rename), or None when it does not exist."""
    try:
        st = path.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]


def _folder_names(final: Path, token: str) -> dict[str, Path]:
    """The three folders of one final folder in a swap: hidden siblings named after it and the swap."""
    return {"final": final, "staging": final.with_name(f".{final.name}.staging-{token}"),
            "backup": final.with_name(f".{final.name}.replaced-{token}")}


def _write(journal: Path, root: Path, state: str, entries: list[dict]) -> None:
    atomic_write_json(journal, {"state": state, "folders": [
        {key: value.relative_to(root).as_posix() if isinstance(value, Path) else value
         for key, value in entry.items()} for entry in entries]})


def _read(journal: Path, root: Path, finals: list[Path]) -> tuple[str, list[dict]]:
    """The state and folders of ``journal``; ValueError naming it unless it describes a swap of exactly
    ``finals``, each with staging and backup folders named as :func:`_folder_names` names them (and, once
    swapping, the identity of its new content)."""
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
        new = entry.get("new")
        if new is not None and not (isinstance(new, list) and len(new) == 2 and all(type(n) is int for n in new)):
            raise refuse(f"has a folder entry whose 'new' is not a [device, inode] pair: {entry!r}")
        entries.append(dict(_folder_names(final, match[1]), new=new))
    if sorted(e["final"] for e in entries) != sorted(finals):
        raise refuse(f"swaps {[str(e['final']) for e in entries]}, not {[str(f) for f in finals]}")
    return data["state"], entries


def _holds_new(path: Path, entry: dict) -> bool:
    """Whether ``path`` is the entry's new content (a journal written before identities were recorded:
    the new content is wherever the staging folder is, as that swap never exchanged)."""
    if entry["new"] is None:
        return path == entry["staging"] and path.exists()
    return _identity(path) == entry["new"]


def _finish(journal: Path, entries: list[dict]) -> None:
    """Put every new folder in its final place (the old content to the staging or backup name), then
    remove the old content and the journal. Each step checks what is on disk, so that it resumes where a
    crash left it; the new folders switch in back to back, before any removal."""
    for e in entries:
        if not _holds_new(e["final"], e) and not _holds_new(e["staging"], e):
            raise ValueError(f"swap journal {journal}: neither {e['final']} nor {e['staging']} holds the new "
                             f"content it records; nothing was changed")
    for e in entries:
        if _holds_new(e["final"], e):
            continue  # switched in before the crash
        if not e["final"].exists():
            e["staging"].rename(e["final"])
        elif not exchange(e["staging"], e["final"]):  # the fallback: two renames
            e["final"].rename(e["backup"])
            e["staging"].rename(e["final"])
    for e in entries:
        for old in (e["staging"], e["backup"]):  # what the final folders held before
            if old.exists():
                shutil.rmtree(old)
    journal.unlink()


def _roll_back(journal: Path, entries: list[dict]) -> None:
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

    def state(self) -> str | None:
        """The state of the swap's journal ("staging" or "swapping"), or None when there is none (no swap
        begun, or its journal already removed); ValueError naming a journal that is not this swap's."""
        try:
            return _read(self.journal, self.root, self.finals)[0]
        except FileNotFoundError:
            return None

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
        """The commit point: record each complete staging folder's identity (state swapping), then switch
        the folders in. An error after it (a rename refused) leaves the journal, and the next
        ``recover()`` finishes the swap."""
        _, entries = _read(self.journal, self.root, self.finals)
        for e in entries:
            e["new"] = _identity(e["staging"])
        _write(self.journal, self.root, SWAPPING, entries)
        _finish(self.journal, entries)

    def abandon(self) -> None:
        """Roll back a begun swap (filling its staging folders failed): remove them and the journal."""
        _roll_back(self.journal, _read(self.journal, self.root, self.finals)[1])
