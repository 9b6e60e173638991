"""The typed run configuration: one frozen dataclass, resolved from a preset plus overrides.

A run is fully described by its :class:`Config`. Its hash (over every field that can change the
result) names the run directory, so calling ``train`` twice with the same config reuses the finished
run. Fields added after runs were first recorded (``ADDED_FIELDS``) enter the hash only when set away
from the value those earlier runs had, so adding a knob does not rename every existing run directory;
a field whose default differs from that value (``drop_last``) renames every run that uses the default,
as it should: those runs compute something else.

The fast path (docs/design.md, "Speed") is two such fields, ``compile`` and ``fused_optimizer``, plus the
device defaults of ``amp`` and ``channels_last``; :func:`fast_path_overrides` gives them for a device.
Both are hashed when on: CUDA graphs / Inductor kernels and a fused SGD kernel may round differently
from the eager default (the same recipe, not the same bits), so a fast run never reuses, and is never
reused as, a default-path run.

Schedule points are stored as fractions of ``epochs`` (the published recipes are 160/180 of 200 and
60/80 of 100 epochs), so that shortening a run for a smoke test keeps the recipe's shape; the resolved
epoch numbers are written next to the config in every run directory.

How runs are keyed: the run directory is named by :func:`config_hash` over the resolved config.
``data_root`` (a location) is not hashed: moving a tarball must not retrain. What the data *is* enters
through ``data_fingerprint``, which the trainers (``train``, ``train_ensemble``, ``campaign``) fill from the
source itself with ``train.identity.with_data_fingerprint`` before hashing
(``lt_paper.data.fingerprint``: size and sha256 of a tarball, the listing of an image folder, the split
files of ImageNet-LT / iNat / Places-LT, torchvision's checksums); so the same config on other data is
another run. The embedded digits leave it None, so the digits runs recorded before it existed keep
their hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Callable

from ..data import DATASETS, OLTR_SHOT_RULE
from ..losses import LOSS_NAMES
from ..models import ARCHITECTURES, ROUTER_NAMES

# Fields that never change what a run computes: they are left out of the run hash.
RUNTIME_ONLY_FIELDS = ("num_workers", "eval_batch_size", "data_root", "download", "progress")
# Fields that choose where and how a run's arithmetic is carried out, not what it computes: the device,
# bf16 autocast, the memory layout, torch.compile, the fused SGD kernel, deterministic kernels. They stay
# in the run hash (a run resumes, and ``train`` reuses it, only on the path it trained on: each path
# rounds differently), but :func:`recipe_hash` leaves them out: a ResNet-32 trained on a CPU in fp32 is
# the same experiment as the GPU profile's bf16 run of that preset and seed, and the notebooks and
# ``campaign`` read it as that run rather than train it again (``engine.find_finished_run``).
EXECUTION_FIELDS = ("device", "amp", "channels_last", "compile", "fused_optimizer", "deterministic")
# Fields added after the first recorded runs, with the value those runs had (what a saved config.json
# without the key means): hashed only when set otherwise. drop_last: runs recorded before the field
# existed left out the last partial batch; the default (LDAM-DRW's) keeps it.
ADDED_FIELDS = {"compile": False, "fused_optimizer": False, "aggregate_loss": True,
                "allow_incomplete_data": False, "data_fingerprint": None,
                "eval_every": 1, "drop_last": True}

# The names a config may use, from the registries that define them (one source each).
VALID_CHOICES = {
    "dataset": tuple(DATASETS),
    "arch": tuple(ARCHITECTURES),
    "router": ROUTER_NAMES,
    "loss": LOSS_NAMES,
    "device": ("auto", "cpu", "cuda"),
}


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. Defaults are the CIFAR-LT / LDAM-DRW recipe (docs/decisions.md, decision 4)."""

    name: str = "custom"  # the preset it came from (informational; not hashed)
    # data
    dataset: str = "cifar10_lt"
    data_root: str | None = None  # image-folder tree, its .tar.gz, or torchvision's CIFAR files
    download: bool = False  # let torchvision download CIFAR (only when asked)
    allow_incomplete_data: bool = False  # accept a CIFAR source smaller than the real set (tests, trials)
    data_fingerprint: str | None = None  # what the data is; filled from the source before hashing (see above)
    imbalance: float = 100.0  # imbalance factor n_max / n_min of the train split (CIFAR-LT, digits)
    many_threshold: int = OLTR_SHOT_RULE["many"]  # many-shot: n > 100 (docs/decisions.md, decision 2)
    few_threshold: int = OLTR_SHOT_RULE["few"]  # few-shot: n < 20, or n <= 20 with few_inclusive (Table 2)
    few_inclusive: bool = OLTR_SHOT_RULE["few_inclusive"]
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
    # eq. 8's L(sum_k w^k l^k) on the aggregate once the router is on; False for vanilla RIDE, whose
    # loss is per expert only (paper 4.4.2, Table 5 RIDE*)
    aggregate_loss: bool = True
    diversity_weight: float = 0.0  # RIDE's distribution-aware diversity term (RIDE uses -0.2)
    diversity_temperature: float = 1.0
    distill: bool = False  # knowledge distillation from ``teacher`` (decision 6)
    teacher: str | None = None  # run directory of a finished MoE teacher
    distill_temperature: float = 2.0
    # schedule (SGD, LDAM-DRW recipe)
    epochs: int = 200
    batch_size: int = 128
    drop_last: bool = False  # leave out the last, partial batch of an epoch (LDAM-DRW keeps it; decision 4)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: int = 5  # linear warm-up from lr / warmup_epochs
    lr_decay_at: tuple[float, ...] = (0.8, 0.9)  # fractions of epochs
    lr_decay_factors: tuple[float, ...] = (0.01, 0.0001)  # lr multipliers from each decay on
    router_at: float | None = None  # fraction of epochs where the router switches on; None: last decay
    eval_every: int = 1  # test every N epochs; the last epoch always (the headline, decision 7)
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
    """Return ``config`` with ``overrides`` set; an unknown key, a value of the wrong type or out of
    range raises with one line naming the key, the value and what is valid."""
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


# A field's annotation (a string: ``from __future__ import annotations``) split into its alternatives,
# e.g. "int | None" -> ("int", "None"); the type checks below are derived from these.
_FIELD_TYPES = {f.name: tuple(t.strip() for t in str(f.type).split("|")) for f in dataclasses.fields(Config)}
_NONE_WORDS = ("none", "None", "null")
_TYPE_WORDS = {"str": "a string", "bool": "true or false", "int": "an integer", "float": "a number",
               "tuple[float, ...]": "a list of numbers", "None": "none"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # bool is an int in Python; not here


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _type_error(key: str, value: Any) -> ValueError:
    if key in _RANGES:
        expected = _RANGES[key][1]
    else:
        expected = " or ".join(_TYPE_WORDS.get(t, t) for t in _FIELD_TYPES[key])
    return ValueError(f"config key {key!r}: {value!r} is not valid; expected {expected}")


def _coerce(key: str, value: Any) -> Any:
    """Check ``value`` against the field's annotation and bring it to that type (lists become tuples,
    ints become floats for float fields, "none"/null becomes None for optional fields)."""
    types = _FIELD_TYPES[key]
    if "None" in types and (value is None or value in _NONE_WORDS):
        return None
    if "tuple[float, ...]" in types:
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(_is_number(v) for v in items):
            raise _type_error(key, value)
        return tuple(float(v) for v in items)
    if "bool" in types and isinstance(value, bool):
        return value
    if "int" in types and _is_int(value):
        return value
    if "float" in types and _is_number(value):
        return float(value)
    if "str" in types and isinstance(value, str):
        return value
    raise _type_error(key, value)


# Ranges: key -> (test, what is valid). Choices are in VALID_CHOICES; None passes for optional fields.
# Upper bounds refuse what no run can use, before a run folder exists, rather than after an overflow
# or a diverged first epoch: SGD above lr 10 diverges for every network here (the recipes use 0.1-0.2;
# a float32 step cannot even hold 1e308), weight decay of 1 or more (times lr) flips the weights'
# sign every step, a decay "factor" above 1 is no decay, a temperature outside [0.01, 100] turns
# softmax into an argmax or a constant (and overflows a loss scaled by T^2), a diversity weight beyond
# +-10 (RIDE uses -0.2) swamps the loss. Epochs, batch sizes, experts and workers are bounded far above
# any recipe (200 epochs, batch 512, 6 experts) where a larger value would run for years or exhaust
# memory instead of failing; seeds fit the 32 bits every RNG here takes.
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "imbalance": (lambda v: v >= 1, "a number >= 1 (n_max / n_min)"),
    "many_threshold": (lambda v: v >= 0, "an integer >= 0"),
    "few_threshold": (lambda v: v >= 0, "an integer >= 0"),
    "num_experts": (lambda v: 1 <= v <= 64, "an integer in [1, 64]"),
    "shared_stages": (lambda v: v >= 0, "an integer >= 0 or none"),
    "expert_width": (lambda v: 0 < v <= 4, "a number in (0, 4]"),
    "drw_at": (lambda v: 0 <= v <= 1, "a fraction of epochs in [0, 1]"),
    "drw_beta": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "diversity_weight": (lambda v: -10 <= v <= 10, "a number in [-10, 10]"),
    "diversity_temperature": (lambda v: 0.01 <= v <= 100, "a number in [0.01, 100]"),
    "distill_temperature": (lambda v: 0.01 <= v <= 100, "a number in [0.01, 100]"),
    "epochs": (lambda v: 1 <= v <= 10_000, "an integer in [1, 10000]"),
    "eval_every": (lambda v: v >= 1, "an integer >= 1 (test every N-th epoch; the last always)"),
    "batch_size": (lambda v: 1 <= v <= 2**20, "an integer in [1, 1048576]"),
    "lr": (lambda v: 0 < v <= 10, "a number in (0, 10]"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "warmup_epochs": (lambda v: 0 <= v <= 10_000, "an integer in [0, 10000]"),
    "lr_decay_at": (lambda v: all(0 <= f <= 1 for f in v) and list(v) == sorted(v),
                    "increasing fractions of epochs in [0, 1]"),
    "lr_decay_factors": (lambda v: all(0 < f <= 1 for f in v), "numbers in (0, 1]"),
    "router_at": (lambda v: 0 <= v <= 1, "a fraction of epochs in [0, 1] or none"),
    "seed": (lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "num_workers": (lambda v: 0 <= v <= 256, "an integer in [0, 256]"),
    "eval_batch_size": (lambda v: 1 <= v <= 2**20, "an integer in [1, 1048576] or none"),
}


def validate(config: Config) -> Config:
    """Check every field's type, choices and range; errors name the key, the value and what is valid."""
    for key in FIELD_NAMES:
        _coerce(key, getattr(config, key))  # the type (a Config built directly is checked here too)
    for key, choices in VALID_CHOICES.items():
        if getattr(config, key) not in choices:
            raise ValueError(f"config key {key!r}: {getattr(config, key)!r} is not one of {choices}")
    for key, (ok, valid) in _RANGES.items():
        value = getattr(config, key)
        if value is not None and not ok(value):
            raise ValueError(f"config key {key!r}: {value!r} is out of range; valid: {valid}")
    if len(config.lr_decay_at) != len(config.lr_decay_factors):
        raise ValueError("config keys 'lr_decay_at' and 'lr_decay_factors' must have the same length, got "
                         f"{list(config.lr_decay_at)} and {list(config.lr_decay_factors)}")
    if config.few_threshold > config.many_threshold:
        raise ValueError(f"config keys 'few_threshold' ({config.few_threshold}) and 'many_threshold' "
                         f"({config.many_threshold}): the few-shot threshold must not exceed the many-shot "
                         f"one")
    return config


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a config saved by :func:`to_dict` (unknown keys raise, as for overrides). A key added
    after the config was saved takes the value runs had then (``ADDED_FIELDS``), not today's default,
    so that the rebuilt config hashes to the name of the run directory it came from."""
    return apply_overrides(Config(), {**ADDED_FIELDS, **d})


def config_hash(config: Config, leave_out: tuple[str, ...] = ()) -> str:
    """Hash of every field that can change the result (names and runtime knobs excluded); ``leave_out``
    names more fields to ignore (``recipe_hash``; a lookup across copies of a dataset)."""
    d = {k: v for k, v in to_dict(config).items() if k not in RUNTIME_ONLY_FIELDS + ("name",) + leave_out
         and not (k in ADDED_FIELDS and v == ADDED_FIELDS[k])}
    if d.get("teacher"):
        # the teacher's run directory NAME holds its config hash; where the runs directory lives (this
        # machine's path, a GPU machine's, results/<name>/runs) must not change the student's hash
        d["teacher"] = PurePath(d["teacher"]).name
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def recipe_hash(config: Config) -> str:
    """The hash of what a run computes, whatever path computed it: ``config_hash`` without the
    ``EXECUTION_FIELDS``. Two runs with the same recipe hash are the same experiment (same data, recipe,
    seed) trained on another device or kernel path."""
    return config_hash(config, leave_out=EXECUTION_FIELDS)


def shot_rule(config: Config) -> dict[str, Any]:
    """The shot-group thresholds of a run (docs/decisions.md, decision 2), as ``metrics_from_records`` takes them and
    ``metrics.json`` records them."""
    return dict(many=config.many_threshold, few=config.few_threshold, few_inclusive=config.few_inclusive)


def fast_path_overrides(device_type: str) -> dict[str, Any]:
    """The fast path's config fields on ``device_type`` ("cuda" or "cpu"): ``train(p, **fast_path_overrides("cuda"))``.

    CUDA: torch.compile with CUDA graphs, fused SGD, bf16 autocast, channels_last (docs/design.md, "Speed":
    an earlier probe on one H100 saw 0.44 s instead of 1.25 s per CIFAR-100-LT epoch). CPU: fused SGD
    only; compiling a ResNet-32 cost about 60 s on a 2-core build machine for no gain in training
    speed, and bf16 autocast and
    channels_last stay at the CPU defaults (off).
    """
    on_cuda = device_type == "cuda"
    return {"compile": on_cuda, "fused_optimizer": True, "amp": on_cuda, "channels_last": on_cuda}
