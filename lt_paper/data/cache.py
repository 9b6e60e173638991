"""On-disk cache of decoded image arrays (``.npz``), so 60,000 JPEGs are decoded once, not every run.

Decoding the CIFAR-10 JPEG tarball takes about 8 s on 2 cores; loading the cached uint8 arrays takes a
fraction of a second. The cache key is the content fingerprint of the source (``content_hash.py``), so
a source whose bytes changed is decoded again, whatever its path, size or mtime. Files are written
atomically (``lt_paper.files.atomic``), so an interrupted write never leaves a half-written cache that a later
run would trust; the temporary a killed write left is removed by the next write of the same cache file,
and nothing else in the folder is touched (it may be shared, ``$LT_PAPER_CACHE``).
The directory is ``cache_dir`` when given, else ``$LT_PAPER_CACHE``, else ``~/.cache/lt_paper``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..files.atomic import atomic_write_bytes, remove_stale_temporaries


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$LT_PAPER_CACHE``, else ``~/.cache/lt_paper``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LT_PAPER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lt_paper"


def _key_digest(key: object) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def cached_arrays(prefix: str, key: object, build: Callable[[], dict[str, np.ndarray]],
                  cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, from ``<cache>/<prefix>-<hash(key)>.npz`` when it exists.

    ``key`` must be JSON-serialisable and identify the source. String arrays are stored as numpy unicode
    arrays (no pickle), so loading needs ``allow_pickle=False`` only.
    """
    directory = resolve_cache_dir(cache_dir)
    path = directory / f"{prefix}-{_key_digest(key)}.npz"
    if directory.is_dir():  # only this cache file's: a shared cache folder holds other processes' files
        remove_stale_temporaries(directory, of=[path.name])
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # unreadable cache file: rebuild and overwrite it
    arrays = build()
    atomic_write_bytes(path, lambda f: np.savez(f, **arrays))
    return arrays


def cached_json(prefix: str, key: object, build: Callable[[], object], cache_dir: str | Path | None = None):
    """``build()``'s JSON-serialisable value, kept in ``<cache>/<prefix>-<hash(key)>.json`` (small values
    that are slow to compute, such as the sha256 of a large tarball)."""
    path = resolve_cache_dir(cache_dir) / f"{prefix}-{_key_digest(key)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass  # absent or unreadable: compute it again
    value = build()
    atomic_write_bytes(path, lambda f: f.write(json.dumps(value).encode()))
    return value
