"""Training engine: typed config and presets, the loop, checkpoints, evaluation records, ensembles.

May import ``data``, ``models``, ``losses`` and ``files``; never ``analysis``, ``workflows``, ``bench`` or
``cli``. ``resolve.resolve_run_config`` is the one place a run's config is resolved; ``provenance`` (the
commit, versions and device a run records) lives here because every run writes it and everything above
reads it.
"""

from .config import Config, config_hash
from .engine import evaluate_run, train
from .ensemble import EnsembleError, train_ensemble
from .grouping import ensemble_groups
from .presets import get_preset, presets

__all__ = ["Config", "EnsembleError", "config_hash", "ensemble_groups", "evaluate_run", "get_preset", "presets",
           "train", "train_ensemble"]
