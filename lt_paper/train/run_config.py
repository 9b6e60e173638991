"""A run's ``config.json``, read as what it must be: the config the run trained with, in the folder named
after it.

A run directory is named from its config (:func:`run_name`: dataset, network, loss, seed and the config
hash), and ``metrics.json`` records the hash of the config it trained with (``config_hash``). Three
things must agree before a run is served as the run of a config: the folder name, the config in
``config.json`` and the hash ``metrics.json`` records. A ``config.json`` edited after the run finished
no longer describes the weights and numbers beside it; a run folder copied or renamed under another
run's name holds another run's numbers. Every reader that serves a finished run (the run cache,
``evaluate``, ``publish``, a distillation teacher) reads its config through :func:`read_run_config`,
which refuses both, naming the run.
"""

from __future__ import annotations

import re
from pathlib import Path

from .config import Config, config_hash, from_dict
from .run_files import read_json

# ``train(force=True)`` trains a config again into ``<run name>-force<N>`` (``engine.run_dir_for``).
FORCED_SUFFIX = re.compile(r"-force[1-9][0-9]*")


def run_name(config: Config) -> str:
    """The folder name of ``config``'s run: ``<dataset>-<arch>-<loss>[-moeK[mean]]-s<seed>-<config hash>``
    (hashed fields only, so one config always maps to one place)."""
    moe = f"-moe{config.num_experts}{'' if config.router == 'instance' else 'mean'}" if config.num_experts > 1 else ""
    return f"{config.dataset}-{config.arch}-{config.loss}{moe}-s{config.seed}-{config_hash(config)}"


def is_run_name_of(name: str, config: Config) -> bool:
    """Whether a folder called ``name`` may hold ``config``'s run: its run name, or a forced retraining of it."""
    expected = run_name(config)
    return name == expected or (name.startswith(expected) and FORCED_SUFFIX.fullmatch(name[len(expected):]) is not None)


def recorded_config_hash(run_dir: Path) -> str | None:
    """The ``config_hash`` a finished run's ``metrics.json`` records, or None (unfinished, or not recorded)."""
    metrics_path = Path(run_dir) / "metrics.json"
    if not metrics_path.is_file():
        return None
    metrics = read_json(metrics_path)
    return metrics.get("config_hash") if isinstance(metrics, dict) else None


def read_run_config(run_dir: str | Path) -> Config:
    """The config in ``run_dir/config.json``, checked to be that run's: a finished run's ``metrics.json``
    records the config's hash, and its folder name is the config's run name.

    FileNotFoundError without ``config.json``; ValueError, naming the file or the run, for invalid JSON,
    a value that is not an object of config keys, an unknown key or value, a finished run whose
    ``metrics.json`` records no config hash (it cannot be checked), a config that is not the one the run
    trained with (edited after it finished), and a folder named after another config (a run copied or
    renamed under another run's name).
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
    finished = (run_dir / "metrics.json").is_file()
    recorded = recorded_config_hash(run_dir)
    if recorded is None and finished:
        raise ValueError(f"run {run_dir}: metrics.json records no config_hash, so its numbers cannot be tied to "
                         f"config.json; not a run lt_paper finished (train it again)")
    if recorded is not None and config_hash(config) != recorded:
        raise ValueError(f"run {run_dir}: config.json is not the config the run trained with (it hashes to "
                         f"{config_hash(config)}, metrics.json records {recorded}): it was edited after the "
                         f"run finished. Restore it, or train the edited config as a new run")
    # a finished run is served under its folder name; an unfinished one serves nothing (evaluate checks
    # its weights against config.json: guards.check_weights_belong)
    if finished and not is_run_name_of(run_dir.name, config):
        raise ValueError(f"run {run_dir}: the folder is named after another run; its config.json and metrics.json "
                         f"are those of {run_name(config)} (a run copied or renamed under another run's name). "
                         f"Move it back to {run_name(config)}, or remove it")
    return config
