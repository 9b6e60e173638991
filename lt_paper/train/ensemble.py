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

Members of one ensemble share the step, so they must agree on everything the step depends on: the
data set, architecture, number of experts, batch size, epochs, learning-rate schedule, optimizer
settings, device and fast-path switches (:func:`ensemble_key`). They may differ in what only changes
the loss or the data order (``MEMBER_FIELDS``): seed, loss and variant, DRW, router type, the aggregate
loss, the diversity term, distillation. :func:`train_ensemble` splits any list of configs into such
groups (:func:`ensemble_groups`) and says so.

Different module structures in one group (a linear head for CE beside the cosine head of the other
Table 4 rows; an instance router beside a mean router) are handled by stacking each structure apart
(:class:`StackedNetworks`): one ensemble step runs one vmapped forward per structure (Table 4: two,
the CE row and the six cosine rows), then every member's loss, one backward over their sum (each
member's gradient is its own: the sum's derivative is 1 for every member) and one optimizer step over
all stacked weights.

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

import copy
import hashlib
import itertools
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.std import tqdm  # plain text bars: tqdm.auto warns in a notebook without ipywidgets

from ..data import load_dataset, make_loaders
from ..models import ModelOutput
from . import distributed as D
from .checkpoint import CHECKPOINT_FORMAT, atomic_write_bytes, save_checkpoint
from .config import Config, config_hash, to_dict
from .engine import (CHECKPOINT, RunParts, build_optimizer, build_run, check_teacher_named, compile_network,
                     configure_backends, finish_run, history_entry, is_eval_epoch, is_finished, load_result,
                     nonfinite_loss_message, refuse_duplicate_runs, resolve_config, resolve_runtime, run_dir_for,
                     shot_rule, start_run_dir, update_best)
from .evaluate import predict_members, records_and_metrics
from .identity import with_data_fingerprint
from .schedule import Schedule

# Config fields in which the members of one ensemble may differ: they change only a member's loss,
# its data order or what is recorded. Every other field (including any added later) must be equal.
MEMBER_FIELDS = ("name", "seed", "loss", "drw", "drw_at", "drw_beta", "diversity_weight",
                 "diversity_temperature", "distill", "teacher", "distill_temperature", "router",
                 "aggregate_loss", "many_threshold", "few_threshold", "few_inclusive", "progress")
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


# ------------------------------------------------------------------------------------------ grouping
def ensemble_key(config: Config) -> tuple:
    """What members of one ensemble must share: every config field but ``MEMBER_FIELDS``.

    Compare resolved configs (``engine.resolve_runtime``): ``amp=None`` and ``amp=True`` are the same
    on CUDA but different keys.
    """
    return tuple((k, repr(v)) for k, v in sorted(to_dict(config).items()) if k not in MEMBER_FIELDS)


def group_indices(configs: Sequence[Config], max_members: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` that can share a training step, grouped in order of first appearance;
    a group larger than ``max_members`` is cut into consecutive groups of at most that many."""
    if max_members is not None and max_members < 1:
        raise ValueError(f"max_members must be >= 1 or None, got {max_members}")
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(ensemble_key(config), []).append(i)
    step = max_members or len(configs) or 1
    return [group[j:j + step] for group in groups.values() for j in range(0, len(group), step)]


def ensemble_groups(configs: Sequence[Config], max_members: int | None = None) -> list[list[Config]]:
    """``configs`` split into groups that can share a training step (at most ``max_members`` each), in
    order of first appearance. Pass resolved configs (see :func:`ensemble_key`)."""
    return [[configs[i] for i in group] for group in group_indices(configs, max_members)]


def describe_split(groups: list[list[Config]]) -> str:
    """One line per group: its size, and the shared fields in which the groups differ."""
    keys = [dict(ensemble_key(g[0])) for g in groups]
    differing = sorted(k for k in keys[0] if len({key[k] for key in keys}) > 1)
    why = f"they differ in {', '.join(differing)}" if differing else "at most max_members per step"
    lines = [f"ensemble: {sum(map(len, groups))} runs in {len(groups)} groups that cannot share a step "
             f"({why}):"]
    for group, key in zip(groups, keys):
        shared = ", ".join(f"{k}={key[k]}" for k in differing)
        lines.append(f"  {len(group)} run(s) [{shared}]: " + ", ".join(f"{c.name} s{c.seed}" for c in group))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- networks
def structure_signature(network: nn.Module) -> tuple:
    """Networks with equal signatures stack: the same module types and the same state-dict shapes."""
    return (tuple(type(m).__name__ for m in network.modules()),
            tuple((k, tuple(v.shape), str(v.dtype)) for k, v in network.state_dict().items()))


def _attr(name: str) -> str:
    return name.replace(".", "__")  # a dotted state-dict name as a module attribute


class StackedNetworks(nn.Module):
    """M networks of one structure; each parameter and buffer is stacked to (M, ...) and the M forwards
    run as one ``vmap(functional_call)`` over a weightless template (on the meta device).

    ``forward(images)``: images (M, B, C, H, W), one batch per member, or (B, C, H, W) seen by every
    member; returns the non-None fields of ``ModelOutput``, each (M, B, ...). In training mode each
    member's BatchNorm normalises with its own batch statistics and updates its own running statistics
    (in place, in its slice of the stacked buffer), exactly as its solo network does.
    """

    def __init__(self, networks: Sequence[nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(list(networks))  # {name: (M, ...)}
        self.param_names, self.buffer_names = list(params), list(buffers)
        for name, value in params.items():
            self.register_parameter(_attr(name), nn.Parameter(value.detach()))
        for name, value in buffers.items():
            self.register_buffer(_attr(name), value)
        # the template is no submodule: its meta tensors are replaced by slices of the stacked ones
        object.__setattr__(self, "template", copy.deepcopy(networks[0]).to("meta"))
        self.size = len(networks)
        self.fields = (0, 1, 2, 3) if getattr(networks[0], "num_experts", 1) > 1 else (0, 3)  # non-None

    def train(self, mode: bool = True) -> "StackedNetworks":
        super().train(mode)
        self.template.train(mode)
        return self

    def set_router_active(self, active: bool) -> None:
        self.template.set_router_active(active)

    def _one(self, params: dict, buffers: dict, images: Tensor) -> tuple[Tensor, ...]:
        out = functional_call(self.template, (params, buffers), (images,))
        return tuple(out[f] for f in self.fields)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        params = {n: getattr(self, _attr(n)) for n in self.param_names}
        buffers = {n: getattr(self, _attr(n)) for n in self.buffer_names}
        per_member = 0 if images.dim() == 5 else None
        return vmap(self._one, in_dims=(0, 0, per_member), randomness="error")(params, buffers, images)

    def member_output(self, fields: tuple[Tensor, ...], position: int) -> ModelOutput:
        values = [None] * 4
        for f, value in zip(self.fields, fields):
            values[f] = value[position]
        return ModelOutput(*values)

    def member_state(self, position: int, state: dict | None = None) -> dict[str, Tensor]:
        """The state dict of member ``position`` (copies), from this module or from a saved ``state``."""
        state = self.state_dict() if state is None else state
        return {n: state[_attr(n)][position].clone() for n in self.param_names + self.buffer_names}


class EnsembleNetwork(nn.Module):
    """The members of an ensemble, stacked per structure; ``forward`` gives one ModelOutput per member.

    ``forward(images)``: images (S, B, C, H, W), one training batch per distinct seed (member m reads
    ``images[seed_index[m]]``), or (B, C, H, W) seen by every member (test batches).
    """

    def __init__(self, networks: Sequence[nn.Module], seed_index: Sequence[int]):
        super().__init__()
        by_structure: dict[tuple, list[int]] = {}
        for m, network in enumerate(networks):
            by_structure.setdefault(structure_signature(network), []).append(m)
        self.stack_members = list(by_structure.values())  # member indices of each stack
        self.stacks = nn.ModuleList(StackedNetworks([networks[m] for m in ms]) for ms in self.stack_members)
        self.slots = {m: (s, pos) for s, ms in enumerate(self.stack_members) for pos, m in enumerate(ms)}
        self.seed_index = list(seed_index)
        self.size = len(networks)

    def set_router_active(self, active: bool) -> None:
        for stack in self.stacks:
            if hasattr(stack.template, "set_router_active"):
                stack.set_router_active(active)

    def _stack_input(self, images: Tensor, members: list[int]) -> Tensor:
        if images.dim() == 4:
            return images  # shared by every member
        seeds = [self.seed_index[m] for m in members]
        if len(set(seeds)) == 1:
            return images[seeds[0]]  # (B, C, H, W): one batch for the whole stack, not M copies
        return images[seeds]  # (M_stack, B, C, H, W)

    def forward(self, images: Tensor) -> list[ModelOutput]:
        outs: list = [None] * self.size
        for stack, members in zip(self.stacks, self.stack_members):
            fields = stack(self._stack_input(images, members))
            for position, m in enumerate(members):
                outs[m] = stack.member_output(fields, position)
        return outs

    def nonfinite_members(self) -> set[int]:
        """Members whose parameters or buffers hold NaN or inf (one host synchronisation in all).

        The ensemble's version of the solo engine's ``guards.nonfinite_tensors``: BatchNorm's running
        statistics can overflow while the loss is still finite, and such a state must not be saved.
        """
        flags = []  # per stack: (M_stack,) bool, True where the member is finite
        for stack in self.stacks:
            tensors = [t for t in itertools.chain(stack.parameters(), stack.buffers()) if t.is_floating_point()]
            flags.append(torch.stack([torch.isfinite(t.detach()).flatten(1).all(1) for t in tensors]).all(0))
        finite = torch.cat(flags).tolist()  # stack order
        order = [m for members in self.stack_members for m in members]
        return {m for m, ok in zip(order, finite) if not ok}

    def member_state(self, m: int, state: dict | None = None) -> dict[str, Tensor]:
        """Member ``m``'s state dict, from the live weights or from a saved ensemble ``state``."""
        s, position = self.slots[m]
        prefix = f"stacks.{s}."
        own = None if state is None else {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return self.stacks[s].member_state(position, own)

    def member_optimizer_state(self, m: int, optimizer_state: dict) -> dict:
        """Member ``m``'s slice of a saved SGD state dict over ``self.parameters()``, in the layout of an
        SGD over the member's own network (``network.parameters()`` order), so a solo run can load it."""
        s, position = self.slots[m]
        first = sum(len(self.stacks[i].param_names) for i in range(s))
        count = len(self.stacks[s].param_names)
        state = {}
        for j in range(count):
            entry = optimizer_state["state"].get(first + j)
            if entry is not None:
                state[j] = {k: v[position].clone() if torch.is_tensor(v) and v.dim() > 0 else v
                            for k, v in entry.items()}
        groups = [dict(g, params=list(range(count))) for g in optimizer_state["param_groups"]]
        return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------------------- one epoch
def train_ensemble_epoch(model: nn.Module, loaders: Sequence, seed_index: Sequence[int], objectives: Sequence,
                         optimizer: torch.optim.Optimizer, device: torch.device, *, amp: bool,
                         class_weights: Sequence[Tensor | None], router_active: bool,
                         teachers: Sequence[nn.Module | None], compiled: bool = False,
                         progress: str | None = None, step_losses: list | None = None) -> Tensor:
    """One pass of every member over its own batches; float64 (M, 3) ``[loss sum, correct, samples]``.

    ``loaders``: one train loader per distinct seed (member m reads ``loaders[seed_index[m]]``), all
    with the same number of batches. As in ``engine.train_one_epoch``, nothing waits for the device.
    ``step_losses``: receives each step's (M,) member losses (detached), or None.
    """
    model.train()
    size = len(objectives)
    sums = torch.zeros(size, 2, device=device, dtype=torch.float64)  # (M, 2) loss sum, correct
    seen = 0
    for batches in tqdm(zip(*loaders), total=len(loaders[0]), desc=progress, leave=False,
                        disable=progress is None):
        images = [b[0] for b in batches]  # one (B, C, H, W) per seed
        stacked = images[0] if len(images) == 1 else torch.stack(images)  # (B, ...) or (S, B, ...)
        labels = [batches[seed_index[m]][1] for m in range(size)]  # (B,) per member
        if compiled:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration for CUDA graphs
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            outs = model(stacked)
            teacher_logits = [t(images[seed_index[m]]).logits if t is not None else None
                              for m, t in enumerate(teachers)]
        losses = torch.stack([objectives[m](outs[m], labels[m], class_weights[m], router_active,
                                            teacher_logits[m]) for m in range(size)])  # (M,)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # d(sum)/d(loss_m) = 1: every member gets its own gradient
        optimizer.step()
        batch = len(labels[0])
        correct = torch.stack([(outs[m].logits.detach().argmax(1) == labels[m]).sum() for m in range(size)])
        sums += torch.stack([losses.detach().double() * batch, correct.double()], dim=1)
        seen += batch
        if step_losses is not None:
            step_losses.append(losses.detach())
    return torch.cat([sums, torch.full((size, 1), float(seen), device=device, dtype=torch.float64)], dim=1)


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
        config = with_data_fingerprint(resolve_config(c, overrides))
        check_teacher_named(config)
        resolved.append(resolve_runtime(config, D.resolve_device(config.device, info)))
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
    atomic_write_bytes(path, lambda f: torch.save(state, f))


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

    def train_epoch(self, epoch: int, step_losses: list | None = None) -> tuple[Tensor, dict]:
        """Set the epoch's lr, router and DRW, train one epoch; float64 (M, 3) totals on the device and
        the epoch's settings (``lr``, ``router_active``, per-member ``drw``)."""
        lead = self.lead
        schedule = Schedule.from_config(lead)  # lr and router: equal in a group (ensemble_key)
        lr, router_active = schedule.lr(epoch), schedule.router_active(epoch)
        drw = [Schedule.from_config(c).drw_active(epoch) for c in self.configs]  # may differ per member
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.ensemble.set_router_active(router_active)
        for loader in self.train_loaders:
            loader.set_epoch(epoch)
        totals = train_ensemble_epoch(
            self.model, self.train_loaders, self.seed_index, [p.objective for p in self.parts], self.optimizer,
            self.device, amp=lead.amp,
            class_weights=[p.class_weights if on else None for p, on in zip(self.parts, drw)],
            router_active=router_active, teachers=[p.teacher for p in self.parts], compiled=lead.compile,
            progress=f"ensemble of {len(self.parts)}, epoch {epoch + 1}/{lead.epochs}" if lead.progress
            else None,
            step_losses=step_losses)
        return totals, {"lr": lr, "router_active": router_active, "drw": drw}

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
                state_only = math.isfinite(train_loss[m])  # a finite loss, but overflowing weights / statistics
                failed[m] = nonfinite_loss_message(
                    train_loss[m], epoch, run_dirs[m], checkpoint,
                    "weights or BatchNorm statistics are not finite" if state_only else None)
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
            histories[m].append(history_entry(epoch, settings["lr"], train_loss[m], train_acc[m],
                                              settings["router_active"], settings["drw"][m],
                                              metrics[m] if evaluated else None))
        if lead.progress:
            tested = " test acc " + " ".join(f"{metrics[m]['all']:.3f}" for m in active) if evaluated else ""
            tqdm.write(f"ensemble of {size}, epoch {epoch + 1}/{lead.epochs} lr {settings['lr']:.4g} loss "
                       + " ".join(f"{train_loss[m]:.4f}" for m in active) + tested)
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
    for m in range(size):
        if m in failed:
            continue
        networks[m].load_state_dict(ensemble.member_state(m))
        results[m] = finish_run(run_dirs[m], networks[m], configs[m], history=histories[m], best=bests[m],
                                records=records[m], metrics=metrics[m], train_counts=data.train_counts,
                                wall_time_s=wall, device=device)
    shutil.rmtree(ensemble_dir, ignore_errors=True)
    return results, failed
