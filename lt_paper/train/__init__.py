"""Training engine: typed config and presets, the loop, checkpoints, evaluation records, ensembles."""

from .config import Config, config_hash
from .engine import evaluate_run, train
from .ensemble import EnsembleError, train_ensemble
from .grouping import ensemble_groups
from .presets import get_preset, presets

__all__ = ["Config", "EnsembleError", "config_hash", "ensemble_groups", "evaluate_run", "get_preset", "presets",
           "train", "train_ensemble"]
