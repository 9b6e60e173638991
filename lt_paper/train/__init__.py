"""Training engine: typed config and presets, the loop, checkpoints, evaluation records."""

from .config import Config, config_hash
from .engine import evaluate_run, train
from .presets import get_preset, presets

__all__ = ["Config", "config_hash", "evaluate_run", "get_preset", "presets", "train"]
