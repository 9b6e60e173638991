"""Reading the files a finished run left (``metrics.json``, ``records.npz``), checked on the way in.

The run-record format (what ``engine.finish_run`` writes): ``records.npz`` holds, per test sample in
dataset order, ``label``, ``pred``, ``p_gt``, ``target_logit``, and the run's ``train_counts``; MoE runs add
``expert_p_gt``, ``expert_pred``, ``router_weights`` of shape (N, K) (:data:`RECORD_ARRAYS`).

A run directory may have been copied, truncated by a full disk or overwritten by hand. What is read
here either comes back in the shape its readers rely on, or raises one ``ValueError`` line naming the
file (and the key): never a bare ``json`` or ``zipfile`` message without the file, a ``TypeError`` from
deep inside a table, or a damaged result served as a number.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# records.npz: array -> (its shape, "int" or "float"); N test samples, C classes, K experts. The MoE
# arrays come all three or none; nothing else belongs there.
REQUIRED_ARRAYS = {"label": ("N", "int"), "pred": ("N", "int"), "p_gt": ("N", "float"),
                   "target_logit": ("N", "float"), "train_counts": ("C", "int")}
EXPERT_ARRAYS = {"expert_p_gt": ("N, K", "float"), "expert_pred": ("N, K", "int"),
                 "router_weights": ("N, K", "float")}
RECORD_ARRAYS = {**REQUIRED_ARRAYS, **EXPERT_ARRAYS}
DTYPE_KINDS = {"int": "iu", "float": "f"}

# Every .npz (a zip archive) starts with a zip file header.
ZIP_MAGIC = b"PK\x03\x04"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _accuracy(value) -> bool:
    return _number(value) and 0 <= value <= 1


def _group_accuracy(value) -> bool:  # None or NaN: a group without classes (docs/decisions.md, decision 2)
    return value is None or (_number(value) and (math.isnan(value) or 0 <= value <= 1))


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The metrics.json fields a result needs (what ``train`` returns and the tables and the teacher check
# read): key -> (what it must be, the check). A class without test samples has no accuracy (None).
RESULT_FIELDS = {
    "all": ("a number in [0, 1]", _accuracy),
    **{group: ("a number in [0, 1], NaN or null", _group_accuracy) for group in ("many", "medium", "few")},
    "per_class": ("a list of numbers in [0, 1] (or nulls)",
                  lambda v: isinstance(v, list) and all(map(_group_accuracy, v))),
    "train_counts": ("a list of integers", lambda v: isinstance(v, list) and all(map(_integer, v))),
    "epoch": ("an integer", _integer),
}


def read_json(path: Path) -> Any:
    """The JSON document at ``path``; ValueError naming the file and line when it does not parse."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}: {err.msg}; truncated or edited?)") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text)") from None


def read_json_object(path: Path) -> dict:
    """``read_json`` for a file that must hold one JSON object (config.json, metrics.json)."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_metrics(path: Path) -> dict:
    """A finished run's ``metrics.json``, with every field of :data:`RESULT_FIELDS` present and typed;
    ValueError naming the file and the first key that is missing or wrong."""
    metrics = read_json_object(path)
    for key, (what, fits) in RESULT_FIELDS.items():
        if key not in metrics:
            raise ValueError(f"{path}: key {key!r} is missing (expected {what}); not a finished lt_paper run?")
        if not fits(metrics[key]):
            raise ValueError(f"{path}: key {key!r} is {metrics[key]!r:.60}, expected {what}")
    return metrics


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive at ``path``, without pickles; ValueError naming the file when
    it is not a readable archive (truncated, random bytes, a lone ``.npy`` or a pickle)."""
    path = Path(path)
    with path.open("rb") as f:  # a missing or unreadable file: the OSError names it
        head = f.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:  # np.load would read it as a .npy array, or refuse it as a pickle
        raise ValueError(f"{path}: not an .npz archive (empty, or overwritten with other data?)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as err:  # truncated or corrupted
        raise ValueError(f"{path}: damaged .npz archive ({type(err).__name__}: {err})") from None


def read_records(path: Path) -> dict[str, np.ndarray]:
    """A run's ``records.npz``: exactly the arrays of :data:`RECORD_ARRAYS` (the MoE ones all or none), of
    their kinds and consistent shapes, with labels and predictions that are classes of ``train_counts``.
    ValueError naming the file and the array otherwise (another run type's or a hand-made archive)."""
    path = Path(path)
    arrays = read_npz(path)
    expected = dict(REQUIRED_ARRAYS, **(EXPERT_ARRAYS if set(EXPERT_ARRAYS) & set(arrays) else {}))
    absent, other = [k for k in expected if k not in arrays], sorted(set(arrays) - set(expected))
    if absent or other:
        raise ValueError(f"{path}: not a run's records: " + "; ".join(
            part for part in (absent and f"missing array(s) {absent}", other and f"unexpected array(s) {other}")
            if part) + f" (expected {list(expected)})")
    n, classes = arrays["label"].shape[:1], arrays["train_counts"].shape
    k = arrays["expert_pred"].shape[1:2] if "expert_pred" in arrays else ()
    sizes = {"N": n, "C": classes, "N, K": n + k}
    for key, (shape, kind) in expected.items():
        a = arrays[key]
        if a.dtype.kind not in DTYPE_KINDS[kind] or a.shape != sizes[shape] or len(a.shape) != shape.count(",") + 1:
            raise ValueError(f"{path}: array {key!r} is {a.dtype} of shape {a.shape}, expected {kind} of shape "
                             f"({shape}) = {sizes[shape]}")
    num_classes = classes[0]
    for key in ("label", "pred", "expert_pred"):
        if key in arrays and arrays[key].size and not 0 <= arrays[key].min() <= arrays[key].max() < num_classes:
            raise ValueError(f"{path}: array {key!r} holds classes outside 0..{num_classes - 1} "
                             f"({num_classes} classes in 'train_counts')")
    return arrays
