"""Lock files that say which live process holds a folder: ``reproduce`` writing an output folder,
``publish`` replacing a publication.

A lock file holds its owner's pid from the instant it exists (``atomic.atomic_create_bytes``: a
temporary file hard-linked to the lock's name; ``link`` fails when the name exists, like ``O_EXCL``). A
lock created empty and filled afterwards would be read as empty, hence stale, by a process starting at
the same moment, which would then delete it and take it too.

A lock whose process is gone (killed, machine rebooted) is stale and is taken over. Checking the holder
and replacing its lock are two steps, so they run under ``flock`` on the lock's folder: two processes
that both find the same stale lock would otherwise each delete the lock the other one just took.
Same host assumed (pids are local).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from .atomic import atomic_create_bytes, pid_alive, remove_stale_temporaries


def lock_holder(lock: str | Path) -> int | None:
    """The pid of the live process, other than this one, that holds lock file ``lock``; else None."""
    try:
        text = Path(lock).read_text().strip()
    except OSError:
        return None
    pid = int(text) if text.isdigit() else None
    return pid if pid is not None and pid != os.getpid() and pid_alive(pid) else None


@contextlib.contextmanager
def _folder_flock(folder: Path):
    """Exclusive ``flock`` on ``folder`` itself for the body (released when its descriptor closes)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _take(lock: Path, what: str) -> None:
    """Create ``lock`` holding this process's pid, taking over a stale one; FileExistsError when held."""
    with _folder_flock(lock.parent):
        remove_stale_temporaries(lock.parent, of=[lock.name])  # of takers killed before they linked
        while True:
            try:
                atomic_create_bytes(lock, str(os.getpid()).encode())
                return
            except FileExistsError:
                holder = lock_holder(lock)
                if holder is not None:
                    raise FileExistsError(f"{what} is in use by pid {holder} (lock file {lock})") from None
                lock.unlink(missing_ok=True)  # stale: its process is gone


@contextlib.contextmanager
def hold_lock(lock: str | Path, what: str):
    """Hold lock file ``lock`` while the body runs (module docstring).

    FileExistsError ``"<what> is in use by pid N (lock file ...)"`` when a live process holds it.
    """
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    _take(lock, what)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
