"""The typed run configuration: one frozen dataclass, resolved from a preset plus overrides.

A run is fully described by its :class:`Config`. Its hash (over every field that can change the
result) names the run directory, so calling ``train`` twice with the same config reuses the finished
run. Fields added after runs were first recorded (``ADDED_FIELDS``) enter the hash only when set away
from their default, so adding a knob does not rename every existing run directory.

The fast path (DESIGN "Speed") is two such fields, ``compile`` and ``fused_optimizer``, plus the
device defaults of ``amp`` and ``channels_last``; :func:`fast_path_overrides` gives them for a device.
Both are hashed when on: CUDA graphs / Inductor kernels and a fused SGD kernel may round differently
from the eager default (the same recipe, not the same bits), so a fast run never reuses, and is never
reused as, a default-path run.

Schedule points are stored as fractions of ``epochs`` (the published recipes are 160/180 of 200 and
60/80 of 100 epochs), so that shortening a run for a smoke test keeps the recipe's shape; the resolved
epoch numbers are written next to the config in every run directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Fields that never change what a run computes: they are left out of the run hash.
RUNTIME_ONLY_FIELDS = ("num_workers", "eval_batch_size", "data_root", "download", "progress")
# Fields added after the first recorded runs, with their defaults: hashed only when set otherwise.
ADDED_FIELDS = {"compile": False, "fused_optimizer": False}

VALID_CHOICES = {
    "dataset": ("digits_lt", "cifar10_lt", "cifar100_lt", "imagenet_lt", "inat2018", "places_lt"),
    "arch": ("resnet8", "resnet20", "resnet32", "resnet50", "resnext50"),
    "router": ("instance", "mean"),
    "loss": ("ce", "focal", "la", "ldam", "ala", "ains", "acls", "focal_acls", "ldam_ains", "cos_ce"),
    "device": ("auto", "cpu", "cuda"),
}


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. Defaults are the CIFAR-LT / LDAM-DRW recipe (DESIGN decision 4)."""

    name: str = "custom"  # the preset it came from (informational; not hashed)
    # data
    dataset: str = "cifar10_lt"
    data_root: str | None = None  # image-folder tree, its .tar.gz, or torchvision's CIFAR files
    download: bool = False  # let torchvision download CIFAR (only when asked)
    imbalance: float = 100.0  # imbalance factor n_max / n_min of the train split (CIFAR-LT, digits)
    many_threshold: int = 100  # many-shot: n > 100 (decision 2)
    few_threshold: int = 20  # few-shot: n < 20, or n <= 20 with few_inclusive (paper Table 2)
    few_inclusive: bool = False
    # model
    arch: str = "resnet32"
    num_experts: int = 1  # 1: the plain network; >= 2: the MoE of section 3.2
    router: str = "instance"  # "instance" (paper) or "mean" (Table 5 ablation)
    shared_stages: int | None = None  # None: 1 for CIFAR ResNets (RIDE), 2 for ResNet-50/ResNeXt-50
    expert_width: float = 0.75  # experts' channels reduced by a quarter (section 3.2)
    # loss
    loss: str = "ala"
    drw: bool = True  # deferred re-weighting with class-balanced weights (LDAM-DRW)
    drw_at: float = 0.8  # fraction of epochs where DRW starts (160/200 CIFAR, 80/100 ImageNet-LT)
    drw_beta: float = 0.9999
    diversity_weight: float = 0.0  # RIDE's distribution-aware diversity term (RIDE uses -0.2)
    diversity_temperature: float = 1.0
    distill: bool = False  # knowledge distillation from ``teacher`` (decision 6)
    teacher: str | None = None  # run directory of a finished MoE teacher
    distill_temperature: float = 2.0
    # schedule (SGD, LDAM-DRW recipe)
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: int = 5  # linear warm-up from lr / warmup_epochs
    lr_decay_at: tuple[float, ...] = (0.8, 0.9)  # fractions of epochs
    lr_decay_factors: tuple[float, ...] = (0.01, 0.0001)  # lr multipliers from each decay on
    router_at: float | None = None  # fraction of epochs where the router switches on; None: last decay
    # runtime
    seed: int = 0
    device: str = "auto"  # "auto": cuda when available
    amp: bool | None = None  # bf16 autocast; None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    deterministic: bool = False  # torch.use_deterministic_algorithms (exact resume on GPU)
    compile: bool = False  # torch.compile the network: CUDA graphs ("reduce-overhead") on CUDA; one process
    fused_optimizer: bool = False  # SGD as one fused kernel (foreach where the device has none)
    num_workers: int = 4  # DataLoader workers for file datasets
    eval_batch_size: int | None = None
    progress: bool = True  # tqdm bars (rank 0)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Config))


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Return ``config`` with ``overrides`` set; an unknown key raises and lists the valid ones."""
    unknown = sorted(set(overrides) - set(FIELD_NAMES))
    if unknown:
        raise KeyError(
            f"unknown config key(s) {unknown}; valid keys are: {', '.join(FIELD_NAMES)}"
        )
    coerced = {k: _coerce(k, v) for k, v in overrides.items()}
    return validate(dataclasses.replace(config, **coerced))


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` from the command line; the value is read as JSON when it can be."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as a path or a preset name
    return key, value


def _coerce(key: str, value: Any) -> Any:
    """Bring values from JSON / the command line to the field's type (lists become tuples)."""
    if key in ("lr_decay_at", "lr_decay_factors"):
        if isinstance(value, (int, float)):
            value = [value]
        return tuple(float(v) for v in value)
    if value in ("none", "None", "null") and key in _OPTIONAL_FIELDS:
        return None
    if key in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_FLOAT_FIELDS = {
    f.name for f in dataclasses.fields(Config) if f.type in ("float", "float | None")
}
_OPTIONAL_FIELDS = {f.name for f in dataclasses.fields(Config) if "None" in str(f.type)}


def validate(config: Config) -> Config:
    """Check choices and ranges; errors name the key and the valid values."""
    for key, choices in VALID_CHOICES.items():
        if getattr(config, key) not in choices:
            raise ValueError(f"config key {key!r}: {getattr(config, key)!r} is not one of {choices}")
    if len(config.lr_decay_at) != len(config.lr_decay_factors):
        raise ValueError("config keys 'lr_decay_at' and 'lr_decay_factors' must have the same length")
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError("config keys 'epochs' and 'batch_size' must be >= 1")
    if config.num_experts < 1:
        raise ValueError("config key 'num_experts' must be >= 1")
    if not 0.0 <= config.drw_at <= 1.0:
        raise ValueError("config key 'drw_at' is a fraction of epochs in [0, 1]")
    if config.router_at is not None and not 0.0 <= config.router_at <= 1.0:
        raise ValueError("config key 'router_at' is a fraction of epochs in [0, 1] (or None)")
    return config


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a config saved by :func:`to_dict` (unknown keys raise, as for overrides)."""
    return apply_overrides(Config(), {k: v for k, v in d.items()})


def config_hash(config: Config) -> str:
    """Hash of every field that can change the result (names and runtime knobs excluded)."""
    d = {k: v for k, v in to_dict(config).items() if k not in RUNTIME_ONLY_FIELDS + ("name",)
         and not (k in ADDED_FIELDS and v == ADDED_FIELDS[k])}
    if d.get("teacher"):  # the teacher run's name (its own config hash), not where its cache lies
        d["teacher"] = Path(d["teacher"]).name
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def fast_path_overrides(device_type: str) -> dict[str, Any]:
    """The fast path's config fields on ``device_type`` ("cuda" or "cpu"): ``train(p, **fast_path_overrides("cuda"))``.

    CUDA: torch.compile with CUDA graphs, fused SGD, bf16 autocast, channels_last (DESIGN "Speed":
    0.44 s instead of 1.25 s per CIFAR-100-LT epoch on an H100). CPU: fused SGD only; compiling a
    ResNet-32 costs about 60 s there for little or no gain (SETUP-FACTS), and bf16 autocast and
    channels_last stay at the CPU defaults (off).
    """
    on_cuda = device_type == "cuda"
    return {"compile": on_cuda, "fused_optimizer": True, "amp": on_cuda, "channels_last": on_cuda}
