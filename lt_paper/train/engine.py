"""The training engine: ``train(config)`` turns a config into a finished, evaluated run directory.

One process on the CPU or one GPU::

    python -m lt_paper train --preset cifar10_lt/resnet32/ala --set data_root=data/cifar10-jpeg.tar.gz

Several GPUs on one machine (DDP, NCCL; the global batch stays ``batch_size``)::

    torchrun --standalone --nproc_per_node=8 -m lt_paper train --preset imagenet_lt/resnext50/ala \
        --set data_root=/data/ImageNet_LT

Several machines: the same on each node with ``--nnodes=N --node_rank=i --rdzv_backend=c10d
--rdzv_endpoint=HOST:PORT`` instead of ``--standalone`` (the runs directory must be shared).

A run lives in ``runs_dir/<dataset>-<arch>-<loss>[-moeK]-s<seed>-<hash>``, the hash being that of the
resolved config with its data fingerprint. The directory holds ``config.json``, ``checkpoint.pt`` (every
epoch whose weights are finite, atomically) while
it trains, and once finished ``model.pt``, ``history.json``, ``records.npz`` and ``metrics.json``;
``metrics.json`` is written last and marks the run finished. Calling ``train`` again with the same
config returns the finished run without training, resumes an unfinished one from its last
checkpoint (the epoch order and augmentation are functions of (seed, epoch), so a resumed run ends
with the same numbers), and ``force=True`` trains anew into a fresh directory: a finished run is never
overwritten. ``eval_every`` N tests every N-th epoch and always the last (the headline number); the
``best`` of ``metrics.json`` is the best test epoch among the evaluated ones. Many runs can also train
together in one batched step (``lt_paper.train.ensemble``), into the same directories and files.

Speed (docs/design.md, "Speed"): at CIFAR size one step is launch-bound, so the loop never waits for the GPU
inside an epoch (loss and accuracy are summed on the device; the labels are range-checked once per
dataset instead of once per loss call). ``compile=True`` wraps the network in
``torch.compile(mode="reduce-overhead")`` (CUDA graphs: one launch per forward and per backward) and
``fused_optimizer=True`` makes SGD one kernel; with bf16 autocast and channels_last (the CUDA defaults)
that is the fast path, ``config.fast_path_overrides("cuda")``. ``python -m lt_paper bench`` measures it
against the default path and a re-creation of the published loops.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.std import tqdm  # plain text bars: tqdm.auto warns in a notebook without ipywidgets

from ..data import SHOT_GROUPS, load_dataset, make_loaders
from ..files.atomic import atomic_write_bytes, atomic_write_json
from ..losses import LOSS_HEADS, build_loss, class_balanced_weights
from ..losses.validation import check_label_range
from ..models import build_model
from . import distributed as D
from .checkpoint import load_checkpoint, save_checkpoint
from .config import EXECUTION_FIELDS, Config, config_hash, shot_rule, to_dict
from .cpu_threads import ThreadChooser
from .evaluate import evaluate_model
from .guards import check_teacher, check_weights_belong, stop_if_not_finite
from .identity import check_same_data, recorded_data_source, with_data_fingerprint
from .objective import Objective
from .provenance import provenance
from .resolve import resolve_run_config
from .run_config import read_run_config, run_name
from .run_results import verified_result
from .schedule import Schedule

CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"
METRICS = "metrics.json"


def run_dir_for(runs_dir: Path, config: Config, force: bool) -> Path:
    """The run's directory: named from hashed fields only, so one config always maps to one place."""
    base = runs_dir / run_name(config)
    if not force:
        return base
    n = 1
    while Path(f"{base}-force{n}").exists():
        n += 1
    return Path(f"{base}-force{n}")


def refuse_duplicate_runs(configs) -> None:
    """ValueError when two of the resolved ``configs`` are the same run: trained at once (side by side
    or as one ensemble), they would write one directory from two places."""
    seen: dict[str, int] = {}
    for i, config in enumerate(configs):
        key = config_hash(config)
        if key in seen:
            raise ValueError(f"configs {seen[key]} and {i} are the same run ({config.name}, hash {key}); "
                             f"they would train into one directory at once")
        seen[key] = i


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / METRICS).is_file()


def find_finished_run(runs_dir: Path, config: Config, any_data: bool = False) -> Path | None:
    """The finished run of ``config`` (resolved, without its data fingerprint) in ``runs_dir``, or None.

    First the run itself. With the data on this machine, the run must have trained on that very data
    (its fingerprint is part of the run hash). Without it (published GPU runs read on a laptop), or with
    ``any_data`` (reading runs that trained on another copy of the same dataset), every hashed field but
    the data fingerprint must match. Failing that, the same recipe trained on another path
    (``config.recipe_hash``: another device, bf16 autocast or not, compiled or not): the CPU run of a GPU
    profile's preset is that preset's run. Two runs that match at the same step are an error naming them.
    """
    identified = None
    try:
        if not any_data:
            identified = with_data_fingerprint(config)
    except FileNotFoundError:
        pass
    if identified is not None:
        run_dir = run_dir_for(Path(runs_dir), identified, force=False)
        if is_finished(run_dir):
            return run_dir
        wanted, data_field = identified, ()
    else:
        wanted, data_field = config, ("data_fingerprint",)
    stem = run_dir_for(Path(runs_dir), wanted, force=False).name.rsplit("-", 1)[0]
    saved = [(run_dir, read_run_config(run_dir)) for run_dir in sorted(Path(runs_dir).glob(f"{stem}-*"))
             if is_finished(run_dir) and (run_dir / "config.json").is_file()]
    steps = ((data_field, "trained on different data; set data_root to the data to choose"),
             (data_field + EXECUTION_FIELDS, "trained the same recipe on different paths (device, amp, "
                                             "compile, ...); set device to choose"))
    for leave_out, ambiguity in steps[1:] if identified is not None else steps:
        key = config_hash(wanted, leave_out)
        matches = [run_dir for run_dir, c in saved if config_hash(c, leave_out) == key]
        if len(matches) > 1:
            raise ValueError(f"{len(matches)} finished runs of {config.name} (seed {config.seed}) in {runs_dir} "
                             f"{ambiguity}: {[m.name for m in matches]}")
        if matches:
            return matches[0]
    return None


def load_result(run_dir: Path) -> dict:
    """What ``train`` returns for a finished run: its ``metrics.json``, checked to be that run's (folder
    name, config and config hash agree) and to say what its ``records.npz`` says
    (``run_results.verified_result``); ValueError naming the run otherwise."""
    return {**verified_result(run_dir), "run_dir": str(run_dir)}


def build_for(config: Config, num_classes: int) -> nn.Module:
    """The model a config describes (the head follows the loss: linear for CE/focal/LA, else cosine)."""
    return build_model(config.arch, num_classes, head=LOSS_HEADS[config.loss], num_experts=config.num_experts,
                       router=config.router, shared_stages=config.shared_stages, expert_width=config.expert_width)


def teacher_config(teacher_dir: Path, student: Config, num_classes: int | None = None) -> Config:
    """The config of the finished run ``teacher_dir``, checked to be able to teach ``student``
    (``guards.check_teacher``); ``num_classes``: the student's, once its data is loaded (None: not yet)."""
    if not is_finished(teacher_dir):
        raise FileNotFoundError(f"config key 'teacher': {teacher_dir} is not a finished run (no {METRICS})")
    teacher_cfg = read_run_config(teacher_dir)
    teacher_classes = len(load_result(teacher_dir)["train_counts"])
    check_teacher(teacher_dir, teacher_cfg, student, teacher_classes, num_classes)
    return teacher_cfg


def load_teacher(teacher_dir: str, num_classes: int, device: torch.device, student: Config) -> nn.Module:
    """A finished run's model in eval mode, frozen (decision 6: an MoE teacher for distillation), checked
    to be an MoE trained on the student's data and classes."""
    teacher_dir = Path(teacher_dir)
    teacher_cfg = teacher_config(teacher_dir, student, num_classes)
    model = build_for(teacher_cfg, num_classes)
    load_checkpoint(teacher_dir / FINAL_MODEL, model)
    if model.spec.num_experts > 1:
        model.set_router_active(True)
    return model.to(device).eval().requires_grad_(False)


def configure_backends(config: Config, device: torch.device) -> None:
    """Process-wide backend switches a run needs: determinism, cuDNN autotuning and TF32 on CUDA."""
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def build_optimizer(config: Config, params) -> torch.optim.SGD:
    """SGD with the recipe's momentum and weight decay (the schedule sets ``lr`` every epoch).

    ``fused_optimizer``: one fused kernel for the whole update (CUDA, and the CPU from torch 2.4); on a
    device without a fused SGD kernel, the multi-tensor ``foreach`` form (a few launches per step).
    Otherwise torch's default (foreach on CUDA, a per-parameter loop on the CPU).
    """
    params = list(params)
    kwargs = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if not config.fused_optimizer:
        return torch.optim.SGD(params, **kwargs)
    try:
        optimizer = torch.optim.SGD(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # "fused=True requires ... supported devices"
        return torch.optim.SGD(params, foreach=True, **kwargs)
    if config.momentum:
        # The fused kernel needs every momentum buffer to exist or none: an MoE router gets its first
        # gradient only when it switches on, mid-run, and would crash it. A zero buffer gives the same
        # first update as SGD's lazy one (buf = 0 * momentum + d_p = d_p, dampening 0).
        for p in params:
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return optimizer


def compile_network(network: nn.Module, config: Config, device: torch.device) -> nn.Module:
    """``torch.compile`` the network when ``config.compile``, else the network itself.

    CUDA: mode "reduce-overhead", i.e. CUDA graphs: the forward and the backward replay as one launch
    each, which is what a launch-bound ResNet-32 step needs (docs/design.md, "Speed": 0.44 s instead of 1.25 s
    per epoch after about 23 s of compilation). Elsewhere mode "default" (Inductor kernels, no graphs).
    ``dynamic=False``: the training batch has two shapes (full and the last, partial one, unless
    ``drop_last``), evaluation adds one graph per batch shape, and eval mode, DRW and the router
    switch-on one each: a handful of recompiles per run.
    The loss and the optimizer stay eager: a few dozen small launches per step.
    """
    if not config.compile:
        return network
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    return torch.compile(network, mode=mode, dynamic=False)


@dataclass
class RunParts:
    """What a training loop needs, built from a config and a dataset by :func:`build_run`."""

    network: nn.Module  # the bare network: checkpoints, set_router_active
    model: nn.Module  # what the loop calls: the network, DDP-wrapped and/or compiled
    objective: Objective
    optimizer: torch.optim.Optimizer
    teacher: nn.Module | None
    class_weights: torch.Tensor  # (C,) class-balanced weights for DRW, on the device


def build_run(config: Config, data, device: torch.device, info: D.DistInfo = D.DistInfo()) -> RunParts:
    """Network (seeded by ``config.seed``), loss, optimizer and teacher of a run, on ``device``.

    The labels of both splits are range-checked here, once, so that the loss can skip its per-call
    check (a host sync every step; ``ClassificationLoss.validate_labels``).
    """
    check_label_range(data.train.labels, data.num_classes, f"{data.name} train split")
    check_label_range(data.test.labels, data.num_classes, f"{data.name} test split")
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    network = build_for(config, data.num_classes).to(device)
    if config.channels_last:
        network = network.to(memory_format=torch.channels_last)
    loss = build_loss(config.loss, data.train_counts).to(device)
    loss.validate_labels = False  # checked once above
    objective = Objective(loss, config.diversity_weight, config.diversity_temperature,
                          config.distill_temperature if config.distill else None, config.aggregate_loss)
    teacher = load_teacher(config.teacher, data.num_classes, device, config) if config.distill else None
    optimizer = build_optimizer(config, network.parameters())
    model = network
    if info.distributed:
        model = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.num_experts > 1)  # the router idles until it switches on
    model = compile_network(model, config, device)
    class_weights = class_balanced_weights(data.train_counts, config.drw_beta).to(device)
    return RunParts(network, model, objective, optimizer, teacher, class_weights)


@dataclass(frozen=True)
class EpochSettings:
    """What the schedule sets for one epoch (``Schedule``): the learning rate, whether the MoE router is
    on, whether DRW's class weights are on."""

    lr: float
    router_active: bool
    drw: bool


def epoch_settings(config: Config, epoch: int) -> EpochSettings:
    """The schedule's settings for 0-indexed ``epoch`` of a run of ``config``."""
    schedule = Schedule.from_config(config)
    return EpochSettings(schedule.lr(epoch), schedule.router_active(epoch), schedule.drw_active(epoch))


def apply_epoch_settings(optimizer: torch.optim.Optimizer, network: nn.Module, settings: EpochSettings) -> None:
    """Set the epoch's learning rate on ``optimizer`` and switch ``network``'s router (an MoE) on or off."""
    for group in optimizer.param_groups:
        group["lr"] = settings.lr
    if hasattr(network, "set_router_active"):
        network.set_router_active(settings.router_active)


def train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, objective: Objective,
               optimizer: torch.optim.Optimizer, *, amp: bool, class_weight: torch.Tensor | None,
               router_active: bool, teacher: nn.Module | None, compiled: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on one batch; returns the batch loss and the logits, detached, on the device.

    The gradients stay in the parameters' ``.grad`` until the next step clears them (tests read them).
    ``compiled``: ``model`` is ``torch.compile``'d (each step is marked as a new CUDA-graph iteration).
    """
    if compiled:
        torch.compiler.cudagraph_mark_step_begin()  # a new iteration for CUDA graphs
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(images)
        teacher_logits = teacher(images).logits if teacher is not None else None
    batch_loss = objective(out, labels, class_weight, router_active, teacher_logits)
    optimizer.zero_grad(set_to_none=True)
    batch_loss.backward()
    optimizer.step()
    return batch_loss.detach(), out.logits.detach()


def train_one_epoch(model: nn.Module, loader, objective: Objective, optimizer: torch.optim.Optimizer,
                    device: torch.device, *, amp: bool, channels_last: bool,
                    class_weight: torch.Tensor | None = None, router_active: bool = False,
                    teacher: nn.Module | None = None, compiled: bool = False,
                    progress: str | None = None) -> torch.Tensor:
    """One pass over ``loader`` (:func:`train_step` per batch); returns float64 ``[loss sum, correct,
    samples]`` (3,) on the device.

    Nothing here waits for the device: the sums stay on it until the caller reads them after the
    epoch, and tqdm only counts batches on the host. ``progress``: a tqdm description, or None.
    """
    model.train()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    seen = torch.zeros((), device=device, dtype=torch.float64)
    for images, labels, _ in tqdm(loader, desc=progress, leave=False, disable=progress is None):
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        batch_loss, logits = train_step(model, images, labels, objective, optimizer, amp=amp,
                                        class_weight=class_weight, router_active=router_active, teacher=teacher,
                                        compiled=compiled)
        # accumulated on the device: no host synchronisation inside the epoch
        loss_sum += batch_loss.double() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    return torch.stack([loss_sum, correct, seen])


def check_teacher_named(config: Config) -> None:
    """A distilled run must name a teacher that can teach it: a finished MoE run on the same data.

    Checked before any directory is created, so a bad teacher leaves nothing behind; the class count is
    checked again once the data is loaded (``load_teacher``).
    """
    if not config.distill:
        return
    if not config.teacher:
        raise ValueError(f"config {config.name!r} distils (distill=True) and needs config key 'teacher': the run "
                         f"directory of a finished MoE teacher (the paper uses 6 experts: preset "
                         f"{config.name.replace('ala_distill', 'ala_moe6')!r})")
    teacher_config(Path(config.teacher), config)


def start_run_dir(run_dir: Path, config: Config, info: D.DistInfo = D.DistInfo()) -> None:
    """Create an unfinished run's directory with its resolved ``config.json`` (rank 0)."""
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", to_dict(config))


def train(config: str | Config = "smoke/resnet8/ala", *, runs_dir: str | os.PathLike = "runs",
          force: bool = False, **overrides) -> dict:
    """Train and evaluate one run; return its metrics (``all``, ``many``, ``medium``, ``few``, ...)
    plus ``run_dir``. See the module docstring for caching, resuming and ``torchrun``."""
    config = resolve_run_config(config, overrides)
    info = D.setup(config.device)
    device = D.resolve_device(config.device, info)  # the device type the config names must be here
    check_teacher_named(config)
    if config.compile and info.distributed:
        raise ValueError("config key 'compile' is supported in one process only; under torchrun leave it "
                         "false (torch.compile with DDP is not measured here)")

    run_dir = D.broadcast_object(str(run_dir_for(Path(runs_dir), config, force)), info)
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        result = load_result(run_dir)
        result["reused"] = True
        return result
    # fewer threads while other processes share the cores; made here, so that loading the data is the
    # stretch its first choice reads
    threads = ThreadChooser() if device.type == "cpu" else None
    configure_backends(config, device)
    data = load_dataset(config.dataset, root=config.data_root, imbalance=config.imbalance,
                        download=config.download, allow_incomplete=config.allow_incomplete_data)
    train_loader, test_loader = make_loaders(
        data, config.batch_size, device, rank=info.rank, world_size=info.world_size, seed=config.seed,
        num_workers=config.num_workers, eval_batch_size=config.eval_batch_size, drop_last=config.drop_last)
    parts = build_run(config, data, device, info)
    # only now, with the data read and the network built: data or a network that cannot be (the wrong
    # image size, an imbalance the data cannot give, too many shared stages) leaves no run folder behind
    start_run_dir(run_dir, config, info)
    D.barrier(info)
    network, model, objective, optimizer = parts.network, parts.model, parts.objective, parts.optimizer
    chash = config_hash(config)

    start_epoch, history, best, wall_before = 0, [], {}, 0.0
    if (run_dir / CHECKPOINT).is_file():
        state = load_checkpoint(run_dir / CHECKPOINT, network, map_location=device)
        if state["config_hash"] != chash:
            raise ValueError(f"checkpoint {run_dir / CHECKPOINT} belongs to config {state['config_hash']}, not {chash}")
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
        wall_before = state["wall_time_s"]

    rule = shot_rule(config)
    t0 = time.perf_counter()
    records = None
    for epoch in range(start_epoch, config.epochs):
        if threads is not None:
            threads.choose()
        settings = epoch_settings(config, epoch)
        apply_epoch_settings(optimizer, network, settings)
        lr, router_active = settings.lr, settings.router_active
        class_weight = parts.class_weights if settings.drw else None
        train_loader.set_epoch(epoch)
        totals = train_one_epoch(
            model, train_loader, objective, optimizer, device, amp=config.amp, channels_last=config.channels_last,
            class_weight=class_weight, router_active=router_active, teacher=parts.teacher, compiled=config.compile,
            progress=f"epoch {epoch + 1}/{config.epochs}" if config.progress and info.is_main and batch_bars() else None)
        totals = D.all_reduce_sum(totals, info)
        train_loss, train_acc = (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()
        stop_if_not_finite(train_loss, network, epoch, run_dir / CHECKPOINT, info)  # before it is saved

        metrics = None
        if is_eval_epoch(config, epoch):
            records, metrics = evaluate_model(model, test_loader, objective.scale, device, config.amp,
                                              config.compile, data.train_counts, rule, info)
            best = update_best(best, epoch, metrics)
        history.append(history_entry(epoch, lr, train_loss, train_acc, router_active, class_weight is not None,
                                     metrics))
        if info.is_main and config.progress:
            tested = f" test acc {metrics['all']:.3f}" if metrics is not None else ""
            tqdm.write(f"epoch {epoch + 1}/{config.epochs} lr {lr:.4g} loss {train_loss:.4f} "
                       f"train acc {train_acc:.3f}{tested}, {seconds_left(t0, epoch + 1 - start_epoch, config.epochs - epoch - 1)}")
        if info.is_main:
            save_checkpoint(run_dir / CHECKPOINT, model=network, optimizer=optimizer, epoch=epoch,
                            config=to_dict(config), config_hash=chash, history=history, best=best,
                            wall_time_s=wall_before + time.perf_counter() - t0)
        D.barrier(info)

    if records is None:  # resumed after the last epoch's checkpoint but before metrics.json
        records, metrics = evaluate_model(model, test_loader, objective.scale, device, config.amp,
                                          config.compile, data.train_counts, rule, info)
    wall = wall_before + time.perf_counter() - t0
    result = finish_run(run_dir, network, config, history=history, best=best, records=records, metrics=metrics,
                        train_counts=data.train_counts, wall_time_s=wall, device=device, info=info)
    D.barrier(info)
    return result


def batch_bars() -> bool:
    """Batch progress bars on a terminal only: elsewhere (a notebook, papermill, a log file) a bar is a stream
    of carriage returns (in Jupyter, red stderr boxes), and the per-epoch lines say enough."""
    return sys.stderr.isatty()


def seconds_left(started: float, epochs_done: int, epochs_left: int) -> str:
    """"N s left" for ``epochs_left`` more epochs at the mean pace of the ``epochs_done`` since ``started``
    (a ``time.perf_counter()``), the end of each epoch's progress line."""
    return f"{(time.perf_counter() - started) / max(epochs_done, 1) * epochs_left:.0f} s left"


def is_eval_epoch(config: Config, epoch: int) -> bool:
    """Test after 0-indexed ``epoch``? Every ``eval_every``-th epoch, and always the last (the headline)."""
    return (epoch + 1) % config.eval_every == 0 or epoch == config.epochs - 1


def update_best(best: dict, epoch: int, metrics: dict) -> dict:
    """The best test epoch so far (over the evaluated epochs only), given this epoch's metrics."""
    if not best or metrics["all"] > best["all"]:
        return {"epoch": epoch + 1, **{g: metrics[g] for g in ("all", *SHOT_GROUPS)}}
    return best


def history_entry(epoch: int, lr: float, train_loss: float, train_acc: float, router_active: bool, drw: bool,
                  metrics: dict | None) -> dict:
    """One ``history.json`` entry; the test accuracies are None in an epoch that was not evaluated.
    ``threads``: torch's intra-op CPU threads in the epoch (``cpu_threads``: they change the rounding)."""
    return {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
            "router_active": router_active, "drw": drw, "threads": torch.get_num_threads(),
            **{f"test_{g}": None if metrics is None else metrics[g] for g in ("all", *SHOT_GROUPS)}}


def finish_run(run_dir: Path, network: nn.Module, config: Config, *, history: list, best: dict, records: dict,
               metrics: dict, train_counts, wall_time_s: float, device: torch.device,
               info: D.DistInfo = D.DistInfo(), trained_as: dict | None = None) -> dict:
    """Write a trained run's files and return its result (what ``train`` returns).

    ``model.pt``, ``history.json`` and ``records.npz`` first, ``metrics.json`` last (it marks the run
    finished), then the training checkpoint is removed. Only rank 0 writes. ``metrics.json`` holds the
    last epoch's numbers (the headline, decision 7) and ``best``: the best test epoch over the evaluated
    epochs (every ``eval_every``-th and the last), which is what published CIFAR baselines reported.
    ``trained_as`` says how it trained: ``{"mode": "alone"}`` (the default; ``world_size`` says how many
    processes) or, from ``train_ensemble``, ``{"mode": "ensemble", "member": i, "size": N, "members":
    [the N run directory names]}``.
    """
    chash = config_hash(config)
    result = {
        **{g: metrics[g] for g in ("all", *SHOT_GROUPS)},
        "per_class": metrics["per_class"],
        "epoch": config.epochs,
        "best": best,
        "shot_rule": shot_rule(config),
        "train_counts": list(train_counts),
        "config_hash": chash,
        "data_source": recorded_data_source(config),
        "wall_time_s": wall_time_s,
        "world_size": info.world_size,
        "trained_as": trained_as or {"mode": "alone"},
        "provenance": provenance(device, world_size=info.world_size),
    }
    if info.is_main:
        save_checkpoint(run_dir / FINAL_MODEL, model=network, optimizer=None, epoch=config.epochs - 1,
                        config=to_dict(config), config_hash=chash, history=history, best=best,
                        wall_time_s=wall_time_s)
        atomic_write_json(run_dir / "history.json", history)
        arrays = {**records, "train_counts": np.asarray(train_counts, dtype=np.int64)}
        atomic_write_bytes(run_dir / "records.npz", lambda f: np.savez_compressed(f, **arrays))
        atomic_write_json(run_dir / METRICS, result)  # last: marks the run finished
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return {**result, "run_dir": str(run_dir), "reused": False}


def evaluate_run(run_dir: str | os.PathLike, device: str = "auto") -> dict:
    """Re-evaluate a finished run's final model on its test set (``python -m lt_paper evaluate``)."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)  # as trained: its hash names the weights
    info = D.DistInfo()
    dev = D.resolve_device(device if device != "auto" else config.device, info)
    on_cuda = dev.type == "cuda"  # bf16 and channels_last as trained, where this device has them
    amp, channels_last = bool(config.amp) and on_cuda, bool(config.channels_last) and on_cuda
    weights = run_dir / FINAL_MODEL if (run_dir / FINAL_MODEL).is_file() else run_dir / CHECKPOINT
    check_same_data(config, with_data_fingerprint(config), f"run {run_dir}")
    data = load_dataset(config.dataset, root=config.data_root, imbalance=config.imbalance, download=False,
                        allow_incomplete=config.allow_incomplete_data)
    _, test_loader = make_loaders(data, config.batch_size, dev, seed=config.seed,
                                  num_workers=config.num_workers, eval_batch_size=config.eval_batch_size)
    model = build_for(config, data.num_classes)
    state = load_checkpoint(weights, model)
    check_weights_belong(state, weights, run_dir, config_hash(config))
    if config.num_experts > 1:
        model.set_router_active(Schedule.from_config(config).router_active(state["epoch"]))
    model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    scale = build_loss(config.loss, data.train_counts).scale
    _, metrics = evaluate_model(model, test_loader, scale, dev, amp, False, data.train_counts,
                                shot_rule(config), info)
    return {**metrics, "run_dir": str(run_dir), "weights": str(weights), "epoch": state["epoch"] + 1}
