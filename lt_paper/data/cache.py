"""On-disk cache of decoded image arrays (``.npz``), so 60,000 JPEGs are decoded once, not every run.

Decoding the CIFAR-10 JPEG tarball takes about 8 s on 2 cores; loading the cached uint8 arrays takes a
fraction of a second. The cache key is a hash of what identifies the source (path, size, mtime; for a
folder every file's), so an edited source is decoded again. Files are written to a temporary name and
renamed, so an interrupted write never leaves a half-written cache that a later run would trust.
The directory is ``cache_dir`` when given, else ``$LT_PAPER_CACHE``, else ``~/.cache/lt_paper``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$LT_PAPER_CACHE``, else ``~/.cache/lt_paper``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LT_PAPER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lt_paper"


def file_identity(path: str | Path) -> list:
    """What identifies a file's content cheaply: absolute path, size, mtime (ns)."""
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def _key_digest(key: object) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(directory: Path) -> None:
    """Delete ``*.tmp.npz`` files left by a decode that was killed (SIGKILL skips every cleanup).

    Each temporary name carries its writer's pid (``<name>.<pid>.<random>.tmp.npz``); only files of a
    dead process are removed, so a decode running side by side keeps its file. Same host assumed.
    """
    for tmp in directory.glob("*.tmp.npz"):
        parts = tmp.name.split(".")
        pid = int(parts[-4]) if len(parts) >= 4 and parts[-4].isdigit() else None
        if pid is None or not pid_alive(pid):
            tmp.unlink(missing_ok=True)


def cached_arrays(prefix: str, key: object, build: Callable[[], dict[str, np.ndarray]],
                  cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, from ``<cache>/<prefix>-<hash(key)>.npz`` when it exists.

    ``key`` must be JSON-serialisable and identify the source. String arrays are stored as numpy unicode
    arrays (no pickle), so loading needs ``allow_pickle=False`` only.
    """
    directory = resolve_cache_dir(cache_dir)
    path = directory / f"{prefix}-{_key_digest(key)}.npz"
    if directory.is_dir():
        remove_stale_temporaries(directory)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # unreadable cache file: rebuild and overwrite it
    arrays = build()
    _write_atomically(path, lambda f: np.savez(f, **arrays), ".tmp.npz")
    return arrays


def _write_atomically(path: Path, write: Callable, suffix: str) -> None:
    """``write(file)`` into ``<stem>.<pid>.<random><suffix>`` beside ``path``, then rename it to ``path``;
    the temporary file is removed on any failure (and, after a SIGKILL, by the next start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.stem}.{os.getpid()}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cached_json(prefix: str, key: object, build: Callable[[], object], cache_dir: str | Path | None = None):
    """``build()``'s JSON-serialisable value, kept in ``<cache>/<prefix>-<hash(key)>.json`` (small values
    that are slow to compute, such as the sha256 of a large tarball)."""
    path = resolve_cache_dir(cache_dir) / f"{prefix}-{_key_digest(key)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass  # absent or unreadable: compute it again
    value = build()
    _write_atomically(path, lambda f: f.write(json.dumps(value).encode()), ".tmp")
    return value
