"""A run's identity beyond its recipe: the data it trains on (config.py, "How runs are keyed").

``with_data_fingerprint`` fills the config field ``data_fingerprint`` from the data source before the
run hash is taken; every path from a config to a run directory calls it (``train``, which side-by-side
runs use too, ``train_ensemble``, and ``campaign``'s plan). Resolving a config alone
(``resolve.resolve_run_config`` with ``data=False``) needs no data. ``check_same_data`` guards evaluating
or distilling from a run against data that changed since it trained.
"""

from __future__ import annotations

from ..data.fingerprint import DataSource, data_source
from .config import Config, apply_overrides


def data_source_of(config: Config) -> DataSource:
    """The data source a config reads (kind, fingerprint), computed from the source itself."""
    return data_source(config.dataset, config.data_root, config.download)


def recorded_data_source(config: Config) -> dict:
    """What ``metrics.json`` records as ``data_source``: the fingerprint the run hash already holds (the
    data is not read again), or, for a source left out of the hash (the embedded digits), its record."""
    if config.data_fingerprint is None:
        return data_source_of(config).as_record()
    kind, fingerprint = config.data_fingerprint.split(": ", 1)  # DataSource.config_value
    return {"kind": kind, "fingerprint": fingerprint}


def with_data_fingerprint(config: Config) -> Config:
    """``config`` with ``data_fingerprint`` set from its data source (None for the embedded digits)."""
    return apply_overrides(config, {"data_fingerprint": data_source_of(config).config_value})


def check_same_data(recorded: Config, current: Config, what: str) -> None:
    """ValueError when ``recorded`` (a run's saved config) trained on other data than ``current`` reads.

    Runs recorded before fingerprints existed (``data_fingerprint`` None) cannot be checked and pass.
    """
    if recorded.data_fingerprint is not None and recorded.data_fingerprint != current.data_fingerprint:
        raise ValueError(f"{what} was trained on data {recorded.data_fingerprint!r}, but {current.dataset} "
                         f"at {current.data_root} is now {current.data_fingerprint!r}")
