"""A finished run's result, checked against what it rests on before anyone serves it.

``records.npz`` (every test sample's label and prediction) is the source of truth of a run's accuracies;
``metrics.json`` is computed from it when the run finishes (``evaluate.metrics_from_records``), and its
``best`` epoch from the per-epoch test accuracies in ``history.json``. :func:`verified_result` recomputes
the accuracies from the records, checks ``metrics.json`` and ``history.json`` against them and the run's
identity (``run_config.read_run_config``: folder name, config and config hash agree; the data source
``metrics.json`` records is the one the config's hash holds), and returns the result with the accuracies
recomputed from the records. A ``metrics.json`` edited to other numbers, a ``records.npz`` of another
run or of other arrays, a run folder copied under another run's name: each is one ``ValueError`` line
naming the run, never a number in a table.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from ..data import SHOT_GROUPS
from .config import shot_rule
from .evaluate import metrics_from_records
from .identity import recorded_data_source
from .run_config import read_run_config
from .run_files import read_json, read_metrics, read_records

ACCURACY_KEYS = ("all", *SHOT_GROUPS)
# How far a metrics.json accuracy may lie from the one recomputed from records.npz. Both come from the
# same integer arrays (label and pred stay integers in every form of records.npz, the published float16
# form included: only probabilities and cosines are rounded there) through the same function, and JSON
# keeps a float64 exactly; the recomputation differs at most by float64 summation order (about 1e-16
# per class averaged). 1e-9 allows that and is far below one test sample's weight (1 / N >= 1e-6 for
# any test set up to a million images), so any edit of a number is caught.
TOLERANCE = 1e-9


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """Equal accuracies: both missing (None or NaN: a group without classes) or numbers within ``TOLERANCE``."""
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    return _number(a) and _number(b) and abs(a - b) <= TOLERANCE


def _refuse(run_dir: Path, what: str) -> ValueError:
    return ValueError(f"run {run_dir}: {what}; the run's files were edited or mixed with another run's. "
                      f"Restore the run (or train it again) before reading it")


def verified_result(run_dir: str | Path) -> dict:
    """The checked ``metrics.json`` of the finished run ``run_dir``, its accuracies (``all``, ``many``,
    ``medium``, ``few``, ``per_class``) and ``train_counts`` recomputed from ``records.npz``.

    ValueError naming the run (or the file) when the run is not the one its folder is named after, when
    ``metrics.json`` or ``history.json`` disagree with the records or with each other, or when a file is
    missing, damaged or holds other arrays or keys than a run writes.
    """
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.json")  # first: a damaged file is named as such
    config = read_run_config(run_dir)  # folder name, config and config hash agree
    if config.data_fingerprint is not None and metrics.get("data_source") != recorded_data_source(config):
        raise _refuse(run_dir, f"metrics.json records data {metrics.get('data_source')!r:.120}, but its config "
                               f"trained on {config.data_fingerprint!r}")
    rule = shot_rule(config)
    if metrics.get("shot_rule", rule) != rule or metrics["epoch"] != config.epochs:
        raise _refuse(run_dir, f"metrics.json (shot rule {metrics.get('shot_rule')}, epoch {metrics['epoch']}) is "
                               f"not that of its config (shot rule {rule}, {config.epochs} epochs)")
    records = read_records(run_dir / "records.npz")
    counts = [int(n) for n in records["train_counts"]]
    if metrics["train_counts"] != counts:
        raise _refuse(run_dir, "metrics.json and records.npz hold other train_counts")
    with warnings.catch_warnings():  # an empty shot group was announced when the run trained; NaN here
        warnings.simplefilter("ignore")
        recomputed = metrics_from_records(records, counts, **rule)
    for key in ACCURACY_KEYS:
        if not _same(metrics[key], recomputed[key]):
            raise _refuse(run_dir, f"metrics.json says {key} = {metrics[key]!r}, its records.npz gives "
                                   f"{recomputed[key]!r}")
    if len(metrics["per_class"]) != len(counts) or not all(map(_same, metrics["per_class"], recomputed["per_class"])):
        raise _refuse(run_dir, "metrics.json's per_class accuracies are not those of its records.npz")
    _check_history(run_dir, metrics)
    return {**metrics, **{key: recomputed[key] for key in (*ACCURACY_KEYS, "per_class")}, "train_counts": counts}


def _check_history(run_dir: Path, metrics: dict) -> None:
    """``history.json``'s last epoch holds the final accuracies, and ``best`` is its best tested epoch (the
    first with the highest ``all``, as ``engine.update_best`` picks it) with that epoch's accuracies."""
    path = run_dir / "history.json"
    history = read_json(path)
    entries = isinstance(history, list) and all(isinstance(e, dict) for e in history)
    tested = [e for e in history if _number(e.get("test_all"))] if entries else []
    if not tested or len(history) != metrics["epoch"]:
        raise ValueError(f"{path}: expected one object per epoch ({metrics['epoch']}), the tested ones with "
                         f"'test_all'; found {len(history) if entries else type(history).__name__}")
    last = history[-1]
    if not all(_same(last.get(f"test_{key}"), metrics[key]) for key in ACCURACY_KEYS):
        raise _refuse(run_dir, "the last epoch of history.json does not hold the accuracies of metrics.json")
    best_epoch = max(tested, key=lambda e: e["test_all"])  # max keeps the first of equals
    best = metrics.get("best")
    if not isinstance(best, dict) or best.get("epoch") != best_epoch.get("epoch") or \
            not all(_same(best.get(key), best_epoch.get(f"test_{key}")) for key in ACCURACY_KEYS):
        raise _refuse(run_dir, f"metrics.json's best epoch {best!r:.120} is not history.json's best tested epoch "
                               f"({best_epoch.get('epoch')}, all = {best_epoch.get('test_all')!r})")
