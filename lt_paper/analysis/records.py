"""Load one run directory written by the training engine into a ``RunRecord``.

The run-record format (what ``engine.finish_run`` writes): ``config.json`` (resolved config),
``metrics.json`` (top-1 in [0, 1] per group at the last epoch, ``best``, ``shot_rule``, ...),
``history.json`` (one dict per epoch) and ``records.npz`` (per test sample, in dataset order; its
arrays are listed and checked in ``train.run_files.read_records``).

Analysis reads only these files, never checkpoints or models, so tables and figures can be rebuilt
on a machine without a GPU from what a training run left on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import OLTR_SHOT_RULE
from ..train.run_files import read_json, read_json_object, read_metrics, read_records

RUN_FILES = ("config.json", "metrics.json", "history.json", "records.npz")


@dataclass(frozen=True, eq=False)
class RunRecord:
    """Everything a finished run left on disk. Arrays are over the test set in dataset order."""

    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    label: np.ndarray  # (N,) int64
    pred: np.ndarray  # (N,) int64
    p_gt: np.ndarray  # (N,) float32, softmax(scale * logits)[label]
    target_logit: np.ndarray  # (N,) float32, unscaled model output at the label (target cosine)
    train_counts: np.ndarray  # (C,) int64
    expert_p_gt: np.ndarray | None = None  # (N, K) float32, MoE only
    expert_pred: np.ndarray | None = None  # (N, K) int64, MoE only
    router_weights: np.ndarray | None = None  # (N, K) float32, MoE only

    @property
    def name(self) -> str:
        """The run directory's name (the engine names runs by their config hash)."""
        return self.run_dir.name

    @property
    def num_samples(self) -> int:
        return int(self.label.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.train_counts.shape[0])

    @property
    def num_experts(self) -> int:
        """K for an MoE run, 1 for a single network."""
        return 1 if self.expert_pred is None else int(self.expert_pred.shape[1])

    @property
    def is_moe(self) -> bool:
        return self.expert_pred is not None

    @property
    def shot_rule(self) -> dict[str, Any]:
        """The shot-group rule the run's metrics used (``metrics.json`` ``shot_rule``), else the default."""
        rule = dict(OLTR_SHOT_RULE)
        rule.update(self.metrics.get("shot_rule") or {})
        return rule


def load_run(run_dir: str | Path) -> RunRecord:
    """Read ``run_dir`` into a RunRecord.

    Raises FileNotFoundError naming the missing file, ValueError naming the file (and key) for a file
    that does not parse, a missing array or inconsistent shapes (e.g. ``pred`` shorter than ``label``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"run directory {run_dir} lacks {', '.join(missing)} "
                                f"(expected {', '.join(RUN_FILES)}; is the run finished?)")
    config = read_json_object(run_dir / "config.json")
    metrics = read_json_object(run_dir / "metrics.json")
    history = read_json(run_dir / "history.json")
    if not isinstance(history, list):
        raise ValueError(f"{run_dir / 'history.json'}: expected a list of per-epoch dicts, "
                         f"got {type(history).__name__}")

    arrays = read_records(run_dir / "records.npz")  # the arrays, their kinds and shapes checked
    # published runs store probabilities, cosines and weights as float16 (lt_paper.workflows.publish): read as float32
    as_float32 = lambda key: None if key not in arrays else arrays[key].astype(np.float32)  # noqa: E731
    return RunRecord(run_dir=run_dir, config=config, metrics=metrics, history=history,
                     label=arrays["label"].astype(np.int64), pred=arrays["pred"].astype(np.int64),
                     p_gt=as_float32("p_gt"), target_logit=as_float32("target_logit"),
                     train_counts=arrays["train_counts"].astype(np.int64),
                     expert_p_gt=as_float32("expert_p_gt"),
                     expert_pred=None if "expert_pred" not in arrays else arrays["expert_pred"].astype(np.int64),
                     router_weights=as_float32("router_weights"))


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    """Only ``metrics.json`` of a run (what the tables need), checked field by field
    (``train.run_files.read_metrics``); FileNotFoundError naming it if absent."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (is the run in {Path(run_dir)} finished?)")
    return read_metrics(path)
