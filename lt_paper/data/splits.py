"""Split files of ImageNet-LT, iNaturalist-2018 and Places-LT: one ``relative/path.jpg label`` per line.

These files (from the OLTR / classifier-balancing releases) define the long-tailed sets: the training
split file *is* the long tail, so per-class training counts are counted from it. Parsing is strict
because a silently skipped or mis-parsed line changes the class counts, hence the shot groups and the
ALA class term: every malformed line raises ``ValueError`` naming the file and the 1-based line number.
Paths must stay inside the image root (no absolute path, no ``..`` part), and the file must be UTF-8.
Blank lines (e.g. a trailing newline) are ignored.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Sequence

import numpy as np


def read_split_entries(path: str | Path) -> tuple[list[str], list[int], list[int]]:
    """Parse a split file into ``(relative_paths, labels, line_numbers)`` (line numbers 1-based)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    paths: list[str] = []
    labels: list[int] = []
    line_numbers: list[int] = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not UTF-8 text ({err.reason} at byte {err.start})") \
                    from None
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 1:
                raise ValueError(f"{path}:{line_no}: missing label (expected 'relative/path label', "
                                 f"got {line.strip()!r})")
            if len(fields) > 2:
                raise ValueError(f"{path}:{line_no}: expected 2 fields 'relative/path label', got "
                                 f"{len(fields)}: {line.strip()!r}")
            rel_path, label_text = fields
            check_relative(rel_path, f"{path}:{line_no}")
            try:
                label = int(label_text)
            except ValueError:
                raise ValueError(f"{path}:{line_no}: label {label_text!r} is not an integer") from None
            if label < 0:
                raise ValueError(f"{path}:{line_no}: negative label {label}")
            paths.append(rel_path)
            labels.append(label)
            line_numbers.append(line_no)
    return paths, labels, line_numbers


def check_relative(rel_path: str, where: str) -> None:
    """ValueError unless ``rel_path`` stays inside the image root: no absolute path, no ``..`` part.

    Split files come from elsewhere; a line ``../../x`` or ``/etc/passwd`` would make the loader open a
    file outside the dataset.
    """
    posix, windows = PurePosixPath(rel_path), PureWindowsPath(rel_path)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise ValueError(f"{where}: path {rel_path!r} is absolute; split paths must be relative to the "
                         f"image root")
    if ".." in posix.parts or ".." in windows.parts:
        raise ValueError(f"{where}: path {rel_path!r} has a '..' part and leaves the image root")


def read_split(path: str | Path) -> tuple[list[str], list[int]]:
    """``(relative_paths, labels)`` of a ``relative/path.jpg label`` split file (public contract).

    Malformed lines (missing label, non-integer or negative label, extra fields, an absolute path or a
    ``..`` part, bytes that are not UTF-8) raise ``ValueError`` naming the file and line number.
    """
    paths, labels, _ = read_split_entries(path)
    return paths, labels


def check_labels(labels: Sequence[int], num_classes: int, path: str | Path,
                 line_numbers: Sequence[int] | None = None) -> None:
    """Raise ``ValueError`` naming ``path`` and the line of the first label outside ``[0, num_classes)``."""
    arr = np.asarray(labels, dtype=np.int64)
    bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
    if bad.size:
        i = int(bad[0])
        line = line_numbers[i] if line_numbers is not None else i + 1
        raise ValueError(f"{path}:{line}: label {int(arr[i])} out of range for {num_classes} classes "
                         f"({bad.size} such line(s) in the file)")


def class_counts(labels: Sequence[int], num_classes: int) -> list[int]:
    """Number of entries per class, ``num_classes`` long (classes absent from ``labels`` count 0)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()
