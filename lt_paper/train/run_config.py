"""A run's ``config.json``, read as what it must be: the config the run trained with.

``metrics.json`` records the hash of that config (``config_hash``). A ``config.json`` edited after the
run finished no longer describes the weights and numbers beside it, so every reader that serves a
finished run (the run cache, ``evaluate``, ``publish``, a distillation teacher) reads its config
through :func:`read_run_config`, which refuses it naming the run. Runs whose ``metrics.json`` records
no hash cannot be checked and pass.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config, config_hash, from_dict
from .run_files import read_json


def recorded_config_hash(run_dir: Path) -> str | None:
    """The ``config_hash`` a finished run's ``metrics.json`` records, or None (unfinished, or not recorded)."""
    metrics_path = Path(run_dir) / "metrics.json"
    if not metrics_path.is_file():
        return None
    metrics = read_json(metrics_path)
    return metrics.get("config_hash") if isinstance(metrics, dict) else None


def read_run_config(run_dir: str | Path) -> Config:
    """The config in ``run_dir/config.json``, checked against the hash ``metrics.json`` records.

    FileNotFoundError without ``config.json``; ValueError, naming the file, for invalid JSON, a value
    that is not an object of config keys, an unknown key or value, and for a config that is not the one
    the run trained with (edited after it finished).
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds a JSON {type(raw).__name__}, not a config (an object of config "
                         f"keys, as the run wrote it)")
    try:
        config = from_dict(raw)
    except (KeyError, TypeError, ValueError) as err:  # unknown key (KeyError) or value: one line, the file
        raise ValueError(f"{path}: {err.args[0] if err.args else err}") from None
    recorded = recorded_config_hash(run_dir)
    if recorded is not None and config_hash(config) != recorded:
        raise ValueError(f"run {run_dir}: config.json is not the config the run trained with (it hashes to "
                         f"{config_hash(config)}, metrics.json records {recorded}): it was edited after the "
                         f"run finished. Restore it, or train the edited config as a new run")
    return config
