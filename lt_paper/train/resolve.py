"""The one place a run's config is resolved: preset + overrides + machine -> the config it trains with.

Every path from a preset name to a run folder goes through :func:`resolve_run_config`: ``train``,
``train_ensemble``, ``train_side_by_side``, the campaign's plan, the notebooks' rows and the lookup of a
finished run (``workflows.experiments``), the benchmark. So a run's hash and folder name are computed
from one sequence of steps wherever it is trained or looked for:

1. the preset (a name of :mod:`lt_paper.train.presets`, or a :class:`Config`) with the overrides applied
   (unknown keys or bad values raise, naming the key);
2. the data fingerprint (``identity.with_data_fingerprint``), part of the run hash; left out with
   ``data=False`` where the data may be missing (published runs read on a machine without the data:
   ``engine.find_finished_run`` then matches every other hashed field);
3. the machine's defaults: ``device`` becomes the device type that runs ("auto": CUDA when available), ``amp`` and ``channels_last`` left
   at None become on for CUDA and off for the CPU, so the saved config says what actually ran.

Resolving a resolved config again gives it back unchanged.
"""

from __future__ import annotations

from .config import Config, apply_overrides
from .distributed import device_type
from .identity import with_data_fingerprint
from .presets import get_preset


def resolve_run_config(preset: str | Config, overrides: dict | None = None, *, data: bool = True) -> Config:
    """The config ``train(preset, **overrides)`` trains and names its run folder by.

    The device is the type the config asks for ("auto": CUDA when available here); whether it is present
    is not asked (``train`` checks that, with ``distributed.resolve_device``), so that a plan or a lookup
    of GPU runs works on a laptop. ``data``: add the data fingerprint (reads the data source; False where
    the data may be absent).
    """
    base = get_preset(preset) if isinstance(preset, str) else preset
    if not isinstance(base, Config):
        raise TypeError(f"config must be a preset name or a Config, not {type(preset).__name__}")
    config = apply_overrides(base, overrides or {})
    if data:
        config = with_data_fingerprint(config)
    device = device_type(config.device)
    on_cuda = device == "cuda"
    return apply_overrides(config, {
        "device": device,
        "amp": on_cuda if config.amp is None else config.amp,
        "channels_last": on_cuda if config.channels_last is None else config.channels_last,
    })
