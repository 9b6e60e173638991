"""Files written whole or not at all: checkpoints, run records, reports, the decoded-image cache, lock
files.

A file is written to a temporary name beside it and flushed to disk, then renamed over its final name
(:func:`atomic_write_bytes`) or hard-linked to it, which fails when the name exists
(:func:`atomic_create_bytes`), so that a reader, or a process started after a crash, finds the old file
or the new one, never half of one. The temporary's name, ``.<name>.<pid>.<random>.tmp``, carries the
writer's pid: a later writer can remove what a killed one left (SIGKILL skips every cleanup) without
touching a temporary that a live process is still writing (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

# ".<final name>.<pid>.<mkstemp's random letters>.tmp"
TEMPORARY_NAME = re.compile(r"\.(?P<final>.+)\.(?P<pid>\d+)\.[a-z0-9_]+\.tmp")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _write_temporary(path: Path, write: Callable) -> str:
    """A temporary file beside ``path`` holding what ``write(file)`` wrote, flushed to disk, with the
    usual permissions (0666 less the umask; mkstemp's 0600 would hide results and caches from others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def atomic_write_bytes(path: str | Path, write: Callable) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``.

    An OSError without a file name (ENOSPC from ``write``) is raised again naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        tmp = _write_temporary(path, write)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:  # ENOSPC: say where
            raise OSError(err.errno, f"{err.strerror} (writing {path})") from err
        raise


def atomic_create_bytes(path: str | Path, data: bytes) -> None:
    """Create ``path`` holding ``data`` from its first instant; FileExistsError when ``path`` exists."""
    path = Path(path)
    tmp = _write_temporary(path, lambda f: f.write(data))
    try:
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented JSON, written atomically (:func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def remove_stale_temporaries(directory: str | Path, of: Iterable[str] | None = None) -> None:
    """Delete the temporaries that writers now dead left in ``directory``: those of the files named in
    ``of``, or all of them (same host assumed)."""
    finals = None if of is None else set(of)
    for tmp in Path(directory).glob(".*.tmp"):
        match = TEMPORARY_NAME.fullmatch(tmp.name)
        if match is not None and (finals is None or match["final"] in finals) and not pid_alive(int(match["pid"])):
            tmp.unlink(missing_ok=True)
