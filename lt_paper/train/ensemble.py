"""Many runs in one training step: the runs of a table trained together as one batched ensemble.

Why: a CIFAR-LT ResNet-32 step is launch-bound, so one run leaves a GPU mostly idle, and runs side by
side as processes only time-slice it. Here every kernel does the work of many runs: the members'
weights are stacked along a leading dimension and one ``torch.func.vmap(functional_call)`` runs them
all (a convolution over M members becomes one grouped convolution). Each member still computes what
its solo run computes: its own initial weights (``build_run`` seeded by its seed), its own batches
and augmentation (one train loader per seed, each a function of (seed, epoch) as in a solo run), its
own loss, DRW weights, teacher and diversity term (each member's ``Objective`` is the one
``engine.build_run`` builds, so whatever the objective does applies to members too), its own
BatchNorm statistics and its own slice of one SGD update (momentum and weight decay are elementwise,
so an SGD step over the stacked weights is M solo steps). Only the order of floating-point reductions
differs (a grouped convolution sums in another order than M separate ones), so members match their
solo runs to rounding, not bit for bit.

Which runs can share a step is ``train/grouping.py`` (:func:`~lt_paper.train.grouping.ensemble_key`);
:func:`train_ensemble` splits any list of configs into such groups and says so. How the networks are
stacked is ``train/stacking.py``: one vmapped forward per module structure (Table 4: two, the CE row's
linear head and the six cosine rows). This module trains the stack: every member's loss, one backward
over their sum (each member's gradient is its own: the sum's derivative is 1 for every member) and one
optimizer step over all stacked weights. The per-epoch settings (lr, router, DRW) and the step are the
solo engine's (``engine.epoch_settings``, ``engine.train_step``'s order of operations), so a member
sees what its solo run sees.

Fast path: bf16 autocast, a fused SGD over the stacked weights and ``torch.compile`` (CUDA graphs
on CUDA, with an eager fallback) apply as in a solo run; the data and its augmentation stay on the
device. ``channels_last`` does not: under ``vmap`` a channels-last activation sends global average
pooling to torch's per-member fallback loop (a "performance drop" warning, measured on the CPU with
torch 2.14), so an ensemble keeps its weights and images in the default layout whatever the config
says (the config, and so the run's hash, stay those of the solo run).

Run directories: every member gets the directory, files and hash its solo ``train`` run would (the
files are written by the engine's own ``finish_run``), so a later ``train(config)`` of a member
returns it as finished. While the ensemble trains, one atomic checkpoint holds it all
(``runs_dir/ensemble-<key>/checkpoint.pt``, key = the members' config hashes); an interrupted
ensemble rerun with the same unfinished members resumes from it and ends with the same numbers. A
member whose epoch loss is not finite stops with the solo engine's message (its last good epoch is
written to its own ``checkpoint.pt``, which a solo ``train`` resumes from); the others finish, then
:class:`EnsembleError` reports it.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn
from tqdm.std import tqdm  # plain text bars: tqdm.auto warns in a notebook without ipywidgets

from ..data import load_dataset, make_loaders
from . import distributed as D
from .checkpoint import CHECKPOINT_FORMAT, atomic_torch_save, save_checkpoint
from .config import Config, config_hash, to_dict
from .cpu_threads import ThreadChooser
from .engine import (CHECKPOINT, RunParts, apply_epoch_settings, batch_bars, build_optimizer, build_run, check_teacher_named,
                     compile_network, configure_backends, epoch_settings, finish_run, history_entry, is_eval_epoch,
                     is_finished, load_result, refuse_duplicate_runs, run_dir_for, seconds_left, shot_rule, start_run_dir, update_best)
from .evaluate import predict_members, records_and_metrics
from .guards import nonfinite_message
from .grouping import describe_split, group_indices
from .resolve import resolve_run_config
from .stacking import EnsembleNetwork

# Config fields in which the members of one ensemble may differ: they change only a member's loss,
# its data order or what is recorded. Every other field (including any added later) must be equal.
ENSEMBLE_DIR_PREFIX = "ensemble-"


class EnsembleError(FloatingPointError):
    """Members of an ensemble stopped (non-finite loss); the others finished and are cached.

    ``failures``: {member index: the solo engine's message}; ``results``: every result in config
    order, None for a member that failed.
    """

    def __init__(self, message: str, failures: dict[int, str], results: list):
        super().__init__(message)
        self.failures = failures
        self.results = results


# ------------------------------------------------------------------------------------- one step, one epoch
@dataclass(frozen=True)
class MemberSettings:
    """One epoch's settings for every member: the shared lr and router switch (equal in a group, see
    ``grouping.ensemble_key``) and each member's DRW switch (``drw_at`` and ``drw`` may differ)."""

    lr: float
    router_active: bool
    drw: tuple[bool, ...]


def train_ensemble_step(model: nn.Module, images: Sequence[Tensor], labels: Sequence[Tensor],
                        seed_index: Sequence[int], objectives: Sequence, optimizer: torch.optim.Optimizer, *,
                        amp: bool, class_weights: Sequence[Tensor | None], router_active: bool,
                        teachers: Sequence[nn.Module | None], compiled: bool = False
                        ) -> tuple[Tensor, list[Tensor]]:
    """One SGD step of every member on its own batch: ``images[s]``, ``labels[s]`` are the batch of
    seed ``s`` (member m reads seed ``seed_index[m]``). Returns the (M,) member losses and each member's
    logits, detached; the gradients stay in ``.grad`` until the next step (as ``engine.train_step``)."""
    size = len(objectives)
    stacked = images[0] if len(images) == 1 else torch.stack(list(images))  # (B, ...) or (S, B, ...)
    if compiled:
        torch.compiler.cudagraph_mark_step_begin()  # a new iteration for CUDA graphs
    with torch.autocast(stacked.device.type, dtype=torch.bfloat16, enabled=amp):
        outs = model(stacked)
        teacher_logits = [t(images[seed_index[m]]).logits if t is not None else None
                          for m, t in enumerate(teachers)]
    losses = torch.stack([objectives[m](outs[m], labels[seed_index[m]], class_weights[m], router_active,
                                        teacher_logits[m]) for m in range(size)])  # (M,)
    optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()  # d(sum)/d(loss_m) = 1: every member gets its own gradient
    optimizer.step()
    return losses.detach(), [out.logits.detach() for out in outs]


# ----------------------------------------------------------------------------------------- training
def train_ensemble(configs: Sequence[str | Config], runs_dir: str | os.PathLike = "runs", *,
                   max_members: int | None = None, **overrides) -> list[dict]:
    """Train ``configs`` together, batched; return for each exactly what ``train`` returns.

    ``configs``: preset names or Configs; ``overrides`` apply to all (unknown keys raise first).
    Finished runs are reused (``reused`` True) and skipped; the rest are split into groups that can
    share a step (printed when there is more than one; at most ``max_members`` each, None: no limit)
    and each group trains as one ensemble, one group after the other. Two
    configs that are the same run raise ValueError. One process, one device (no torchrun).
    Raises :class:`EnsembleError` after every group has finished if members stopped on a non-finite loss.
    """
    info = D.DistInfo()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("train_ensemble runs in one process; under torchrun use train()")
    resolved = []
    for c in configs:
        config = resolve_run_config(c, overrides)
        check_teacher_named(config)
        D.resolve_device(config.device, info)  # the device type the config names must be here
        resolved.append(config)
    refuse_duplicate_runs(resolved)

    runs_dir = Path(runs_dir)
    results: list[dict | None] = [None] * len(resolved)
    pending = []
    for i, config in enumerate(resolved):
        run_dir = run_dir_for(runs_dir, config, force=False)
        if is_finished(run_dir):
            results[i] = {**load_result(run_dir), "reused": True}
        else:
            pending.append(i)
    pending_configs = [resolved[i] for i in pending]
    groups = [[pending[j] for j in group] for group in group_indices(pending_configs, max_members)]
    if len(groups) > 1:
        print(describe_split([[resolved[i] for i in group] for group in groups]), flush=True)
    failures: dict[int, str] = {}
    for indices in groups:
        group_results, group_failures = train_group([resolved[i] for i in indices], runs_dir)
        for i, result in zip(indices, group_results):
            results[i] = result
        failures.update({indices[j]: message for j, message in group_failures.items()})
    if failures:
        first = min(failures)
        raise EnsembleError(f"{len(failures)} ensemble member(s) stopped; {resolved[first].name} "
                            f"(seed {resolved[first].seed}): {failures[first]}", failures, results)
    return results


def _ensemble_dir(runs_dir: Path, configs: Sequence[Config]) -> Path:
    key = hashlib.sha256(" ".join(sorted(config_hash(c) for c in configs)).encode()).hexdigest()[:12]
    return runs_dir / f"{ENSEMBLE_DIR_PREFIX}{key}"


def _save_ensemble(path: Path, *, model: EnsembleNetwork, optimizer, epoch: int, configs, histories, bests,
                   failed: dict, wall_time_s: float) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "kind": "ensemble",
        "config_hashes": [config_hash(c) for c in configs],
        "epoch": epoch,  # last completed epoch (0-indexed)
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "histories": histories,
        "bests": bests,
        "failed": {str(m): message for m, message in failed.items()},
        "wall_time_s": wall_time_s,
        "torch_rng": torch.get_rng_state(),
    }
    atomic_torch_save(path, state)  # a full disk is an OSError naming the file


def _load_ensemble(path: Path, configs, device: torch.device) -> dict:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes
        raise ValueError(f"ensemble checkpoint {path} is unreadable (corrupted?): {e}") from e
    hashes = [config_hash(c) for c in configs]
    if not isinstance(state, dict) or state.get("kind") != "ensemble" or state.get("config_hashes") != hashes:
        raise ValueError(f"ensemble checkpoint {path} does not hold the runs {hashes}; remove it to start anew")
    return state


def _write_member_checkpoint(run_dir: Path, config: Config, network: nn.Module, model: EnsembleNetwork, m: int,
                             saved: dict) -> None:
    """Member ``m``'s state in a saved ensemble checkpoint, as a solo ``checkpoint.pt`` in its run dir."""
    network.load_state_dict(model.member_state(m, saved["model"]))
    optimizer = build_optimizer(config, network.parameters())
    optimizer.load_state_dict(model.member_optimizer_state(m, saved["optimizer"]))
    save_checkpoint(run_dir / CHECKPOINT, model=network, optimizer=optimizer, epoch=saved["epoch"],
                    config=to_dict(config), config_hash=config_hash(config), history=saved["histories"][m],
                    best=saved["bests"][m], wall_time_s=saved["wall_time_s"])


class EagerFallback(nn.Module):
    """A ``torch.compile``'d module that falls back to its eager original, once and saying so, when a
    call of the compiled form fails (a compiler that cannot handle ``vmap`` over a stacked network):
    the batched ensemble is the point, compilation only makes it faster. Errors of the eager form raise."""

    def __init__(self, eager: nn.Module, compiled: nn.Module):
        super().__init__()
        self.eager, self.current = eager, compiled

    def forward(self, images: Tensor):
        try:
            return self.current(images)
        except Exception as e:  # noqa: BLE001 - any compiler failure
            if self.current is self.eager:
                raise
            print(f"ensemble: torch.compile failed ({type(e).__name__}: {str(e)[:300]}); training eagerly",
                  flush=True)
            self.current = self.eager
            return self.eager(images)


def _guarded_compile(model: nn.Module, config: Config, device: torch.device) -> nn.Module:
    """``engine.compile_network`` for the ensemble (CUDA graphs on CUDA), with an eager fallback."""
    compiled = compile_network(model, config, device)
    return model if compiled is model else EagerFallback(model, compiled)


@dataclass
class EnsembleRun:
    """What an ensemble's loop needs, built by :func:`build_ensemble`: every member's solo parts, the
    stacked network, one optimizer over all stacked weights, the loaders (one train loader per seed)."""

    configs: list[Config]
    device: torch.device
    parts: list[RunParts]  # each member as ``engine.build_run`` builds its solo run
    ensemble: EnsembleNetwork
    model: nn.Module  # what the loop calls: the ensemble, or its compiled form
    optimizer: torch.optim.Optimizer
    train_loaders: list  # one per distinct seed
    test_loader: object
    seed_index: list[int]  # member -> its seed's loader

    @property
    def lead(self) -> Config:
        return self.configs[0]  # the fields every member shares (ensemble_key)

    def begin_epoch(self, epoch: int) -> MemberSettings:
        """Set 0-indexed ``epoch``'s lr and router switch as each member's solo run would
        (``engine.epoch_settings``), and the loaders' epoch; return the settings."""
        solo = [epoch_settings(c, epoch) for c in self.configs]
        settings = MemberSettings(solo[0].lr, solo[0].router_active, tuple(s.drw for s in solo))
        apply_epoch_settings(self.optimizer, self.ensemble, solo[0])
        for loader in self.train_loaders:
            loader.set_epoch(epoch)
        return settings

    def step(self, images: Sequence[Tensor], labels: Sequence[Tensor], settings: MemberSettings
             ) -> tuple[Tensor, list[Tensor]]:
        """One step on one batch per seed (:func:`train_ensemble_step`) with ``settings``."""
        return train_ensemble_step(
            self.model, images, labels, self.seed_index, [p.objective for p in self.parts], self.optimizer,
            amp=self.lead.amp, class_weights=[p.class_weights if on else None for p, on in zip(self.parts, settings.drw)],
            router_active=settings.router_active, teachers=[p.teacher for p in self.parts],
            compiled=self.lead.compile)

    def train_epoch(self, epoch: int) -> tuple[Tensor, MemberSettings]:
        """Train 0-indexed ``epoch``: float64 (M, 3) ``[loss sum, correct, samples]`` totals on the device
        and the epoch's settings. As in ``engine.train_one_epoch``, nothing waits for the device."""
        settings = self.begin_epoch(epoch)
        self.model.train()
        size, lead = len(self.parts), self.lead
        sums = torch.zeros(size, 2, device=self.device, dtype=torch.float64)  # (M, 2) loss sum, correct
        seen = 0
        progress = f"ensemble of {size}, epoch {epoch + 1}/{lead.epochs}" if lead.progress and batch_bars() else None
        for batches in tqdm(zip(*self.train_loaders), total=len(self.train_loaders[0]), desc=progress,
                            leave=False, disable=progress is None):
            labels = [b[1] for b in batches]
            losses, logits = self.step([b[0] for b in batches], labels, settings)
            batch = len(labels[0])
            correct = torch.stack([(logits[m].argmax(1) == labels[self.seed_index[m]]).sum() for m in range(size)])
            sums += torch.stack([losses.double() * batch, correct.double()], dim=1)
            seen += batch
        totals = torch.cat([sums, torch.full((size, 1), float(seen), device=self.device, dtype=torch.float64)], 1)
        return totals, settings

    def predict(self) -> list[dict]:
        """Every member's test records (this process's shard), from one batched pass."""
        self.ensemble.eval()
        scales = [p.objective.scale for p in self.parts]
        return predict_members(self.model, self.test_loader, scales, self.device, self.lead.amp,
                               self.lead.compile)


def build_ensemble(configs: Sequence[Config], data, device: torch.device) -> EnsembleRun:
    """The ensemble of resolved, compatible ``configs`` on ``data``, ready to train on ``device``."""
    lead = configs[0]
    seeds = sorted({c.seed for c in configs})
    seed_index = [seeds.index(c.seed) for c in configs]
    loaders = [make_loaders(data, lead.batch_size, device, seed=s, num_workers=lead.num_workers,
                            eval_batch_size=lead.eval_batch_size, drop_last=lead.drop_last) for s in seeds]
    parts = [build_run(c, data, device) for c in configs]
    for p in parts:  # see "channels_last" in the module docstring
        p.network.to(memory_format=torch.contiguous_format)
    ensemble = EnsembleNetwork([p.network for p in parts], seed_index)
    optimizer = build_optimizer(lead, ensemble.parameters())
    model = _guarded_compile(ensemble, lead, device)
    return EnsembleRun(list(configs), device, parts, ensemble, model, optimizer, [pair[0] for pair in loaders],
                       loaders[0][1], seed_index)


def train_group(configs: Sequence[Config], runs_dir: Path) -> tuple[list[dict | None], dict[int, str]]:
    """Train one group of compatible, unfinished, resolved configs as one ensemble.

    Returns (results in order, None for a failed member; {member: message} of failed members).
    """
    info = D.DistInfo()
    lead = configs[0]
    device = D.resolve_device(lead.device, info)
    run_dirs = [run_dir_for(runs_dir, c, force=False) for c in configs]
    for run_dir, config in zip(run_dirs, configs):
        start_run_dir(run_dir, config)
    ensemble_dir = _ensemble_dir(runs_dir, configs)
    ckpt_path = ensemble_dir / CHECKPOINT
    ensemble_dir.mkdir(parents=True, exist_ok=True)

    # fewer threads while other processes share the cores; its first choice reads the loading stretch
    threads = ThreadChooser() if device.type == "cpu" else None
    configure_backends(lead, device)
    data = load_dataset(lead.dataset, root=lead.data_root, imbalance=lead.imbalance, download=lead.download,
                        allow_incomplete=lead.allow_incomplete_data)
    run = build_ensemble(configs, data, device)
    ensemble, optimizer, networks = run.ensemble, run.optimizer, [p.network for p in run.parts]
    rules = [shot_rule(c) for c in configs]

    size = len(configs)
    start_epoch, failed, wall_before = 0, {}, 0.0
    histories: list[list] = [[] for _ in configs]
    bests: list[dict] = [{} for _ in configs]
    if ckpt_path.is_file():
        state = _load_ensemble(ckpt_path, configs, device)
        ensemble.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, histories, bests = state["epoch"] + 1, state["histories"], state["bests"]
        failed = {int(m): message for m, message in state["failed"].items()}
        wall_before = state["wall_time_s"]

    t0 = time.perf_counter()
    records: list = [None] * size
    metrics: list = [None] * size
    for epoch in range(start_epoch, lead.epochs):
        if threads is not None:
            threads.choose()
        totals, settings = run.train_epoch(epoch)
        totals = totals.cpu()
        train_loss, train_acc = (totals[:, 0] / totals[:, 2]).tolist(), (totals[:, 1] / totals[:, 2]).tolist()
        nonfinite_state = ensemble.nonfinite_members()
        saved = None  # the last good epoch's ensemble checkpoint, read once for every member that stops
        for m in range(size):
            if m not in failed and (not math.isfinite(train_loss[m]) or m in nonfinite_state):
                checkpoint = run_dirs[m] / CHECKPOINT
                if epoch > 0:  # the last good epoch, from the ensemble checkpoint, where a solo run keeps it
                    saved = saved or _load_ensemble(ckpt_path, configs, device)
                    _write_member_checkpoint(run_dirs[m], configs[m], networks[m], ensemble, m, saved)
                what = (f"training loss is {train_loss[m]}" if not math.isfinite(train_loss[m])
                        else "weights or BatchNorm statistics are not finite")  # a finite loss, overflowing state
                failed[m] = nonfinite_message(what, epoch, checkpoint)
                print(f"ensemble: member {configs[m].name} (seed {configs[m].seed}) stopped: {failed[m]}",
                      flush=True)
        active = [m for m in range(size) if m not in failed]
        if not active:
            break

        evaluated = is_eval_epoch(lead, epoch)
        if evaluated:
            shards = run.predict()
            for m in active:
                records[m], metrics[m] = records_and_metrics(shards[m], data.train_counts, rules[m], info)
                bests[m] = update_best(bests[m], epoch, metrics[m])
        for m in active:
            histories[m].append(history_entry(epoch, settings.lr, train_loss[m], train_acc[m],
                                              settings.router_active, settings.drw[m],
                                              metrics[m] if evaluated else None))
        if lead.progress:
            tested = " test acc " + " ".join(f"{metrics[m]['all']:.3f}" for m in active) if evaluated else ""
            tqdm.write(f"ensemble of {size}, epoch {epoch + 1}/{lead.epochs} lr {settings.lr:.4g} loss "
                       + " ".join(f"{train_loss[m]:.4f}" for m in active) + tested
                       + f", {seconds_left(t0, epoch + 1 - start_epoch, lead.epochs - epoch - 1)}")
        _save_ensemble(ckpt_path, model=ensemble, optimizer=optimizer, epoch=epoch, configs=configs,
                       histories=histories, bests=bests, failed=failed,
                       wall_time_s=wall_before + time.perf_counter() - t0)

    if any(records[m] is None for m in range(size) if m not in failed):
        # resumed after the last epoch's checkpoint but before the members' files were written
        shards = run.predict()
        for m in range(size):
            if m not in failed:
                records[m], metrics[m] = records_and_metrics(shards[m], data.train_counts, rules[m], info)
    wall = wall_before + time.perf_counter() - t0
    results: list[dict | None] = [None] * size
    names = [run_dir.name for run_dir in run_dirs]  # recorded in each member's metrics.json
    for m in range(size):
        if m in failed:
            continue
        networks[m].load_state_dict(ensemble.member_state(m))
        results[m] = finish_run(run_dirs[m], networks[m], configs[m], history=histories[m], best=bests[m],
                                records=records[m], metrics=metrics[m], train_counts=data.train_counts,
                                wall_time_s=wall, device=device,
                                trained_as={"mode": "ensemble", "member": m, "size": size, "members": names})
    shutil.rmtree(ensemble_dir, ignore_errors=True)
    return results, failed
