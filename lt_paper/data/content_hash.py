"""What an image source holds: the sha256 of its bytes, so that runs and the decoded-image cache follow
the content of the data, not its path, names, sizes or mtimes.

Two sources of the same names and sizes (two CIFAR folders of other pixels, a tarball rewritten in place
with its old size and mtime restored) are different data, and a fingerprint of the listing, or a cache
keyed by (path, size, mtime), takes them for the same. So:

- a source of up to ``HASH_EVERY_TIME_BYTES`` is hashed in full each time it is asked for: nothing about
  it is trusted from an earlier look. That covers CIFAR: measured on the shared 2-core build machine,
  4 s for the 60,000-image CIFAR-10 JPEG folder (55 MB; 11 s with a cold file cache), 0.03 s for its
  19 MB tarball;
- a larger source is hashed once, and its hash is kept in the cache (``cache.cached_json``) under the
  stat identity of every file in it: path, device, inode, size, mtime and ctime. Rewriting a file in
  place, or renaming another one over it, changes its ctime or its inode, and ctime cannot be set back
  by hand (``touch`` and ``os.utime`` set only mtime and atime), so a changed file is hashed again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from .cache import cached_json
from .verify import sha256_file

HASH_EVERY_TIME_BYTES = 1 << 30  # 1 GiB: a few seconds of sha256 on one core


def stat_identity(path: Path) -> list:
    """What changes whenever ``path``'s bytes may have: device, inode, size, mtime and ctime (ns)."""
    stat = path.stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _sha256(identity: list, total_bytes: int, compute: Callable[[], str]) -> str:
    """``compute()``, the sha256 of a source of ``total_bytes``: every time for a small source, else kept
    in the cache under ``identity`` (module docstring)."""
    if total_bytes <= HASH_EVERY_TIME_BYTES:
        return compute()
    return cached_json("content-sha256", identity, compute)


def file_fingerprint(path: Path) -> str:
    """``"<size> bytes, sha256 <hex>"`` of one file (a tarball)."""
    path = Path(path)
    size = path.stat().st_size
    sha = _sha256([str(path.resolve()), *stat_identity(path)], size, lambda: sha256_file(path))
    return f"{size} bytes, sha256 {sha}"


def files_fingerprint(root: Path, files: list[Path]) -> str:
    """``"<n> files, content sha256 <hex>"`` of ``files`` under ``root`` (an image-folder tree): the sha256
    of the sorted ``relative/path sha256`` lines, so names and bytes both count."""
    root = Path(root)
    relative = sorted((p.relative_to(root).as_posix(), p) for p in files)
    identity = [str(root.resolve())] + [[name, *stat_identity(p)] for name, p in relative]
    total = sum(entry[3] for entry in identity[1:])  # the sizes

    def compute() -> str:
        listing = "\n".join(f"{name} {sha256_file(p)}" for name, p in relative)
        return hashlib.sha256(listing.encode()).hexdigest()

    return f"{len(files)} files, content sha256 {_sha256(identity, total, compute)}"
