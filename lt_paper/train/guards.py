"""Checks that stop a run before it serves or keeps something wrong.

- ``stop_if_not_finite``: a diverged epoch (non-finite loss, weights or BatchNorm statistics) stops the
  run before its state is written, so the checkpoint on disk is always the last finite one.
- ``check_teacher``: a distillation teacher must be a finished MoE run on the same data and classes.
- ``check_weights_belong``: a model file must carry the config hash of the run it is evaluated in.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import torch
from torch import nn

from . import distributed as D
from .config import Config


def nonfinite_tensors(module: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers holding NaN or inf.

    One host synchronisation in all: the per-tensor flags are stacked on the device and read once.
    """
    named = [(n, t) for n, t in itertools.chain(module.named_parameters(), module.named_buffers())
             if t.is_floating_point()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in named])  # (T,) bool
    if bool(finite.all()):
        return []
    return [n for (n, _), ok in zip(named, finite.tolist()) if not ok]


def kept_checkpoint(path: Path) -> str:
    """Says which checkpoint a stopped run keeps (the last one written, finite by construction)."""
    if not Path(path).is_file():
        return "no checkpoint was kept (no epoch ended with finite weights)"
    epoch = torch.load(path, map_location="cpu", weights_only=True)["epoch"]
    return f"the last good checkpoint (epoch {epoch + 1}, finite weights and buffers) is kept at {path}"


def stop_if_not_finite(train_loss: float, network: nn.Module, epoch: int, checkpoint: Path,
                       info: D.DistInfo = D.DistInfo()) -> None:
    """FloatingPointError when epoch ``epoch``'s loss or ``network``'s state is not finite (any rank).

    Called once per epoch before the checkpoint is written: a non-finite state (e.g. BatchNorm's
    running_var = inf after a huge learning rate, with a still finite loss) never overwrites a good one.
    """
    bad = nonfinite_tensors(network)
    flag = torch.tensor([float(bool(bad) or not math.isfinite(train_loss))])
    if info.distributed:  # every rank stops together (buffers may differ between ranks)
        flag = D.all_reduce_sum(flag.to(next(network.parameters()).device), info).cpu()
    if flag.item() == 0:
        return
    if not math.isfinite(train_loss):
        what = f"training loss is {train_loss}"
    elif bad:
        shown = ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
        what = f"{len(bad)} parameter/buffer tensor(s) are not finite ({shown})"
    else:
        what = "another rank's parameters or buffers are not finite"
    raise FloatingPointError(nonfinite_message(what, epoch, checkpoint))


def nonfinite_message(what: str, epoch: int, checkpoint: Path) -> str:
    """Why a run stopped in 0-indexed ``epoch`` (``what`` is not finite) and which checkpoint it keeps
    (solo runs and ensemble members alike: the member's checkpoint is where a solo run keeps its own)."""
    return f"{what} in epoch {epoch + 1} of run {Path(checkpoint).parent}; {kept_checkpoint(checkpoint)}"


def check_teacher(teacher_dir: Path, teacher: Config, student: Config, teacher_classes: int,
                  num_classes: int | None) -> None:
    """ValueError unless ``teacher`` (a finished run's config) can teach ``student`` (decision 6): an MoE
    (``num_experts`` >= 2) trained on the same dataset, long tail and data, with the same classes
    (``num_classes``: the student's; None before its data is loaded)."""
    problems = []
    if teacher.num_experts < 2:
        problems.append(f"it is a single network (num_experts {teacher.num_experts}), not an MoE")
    if (teacher.dataset, teacher.imbalance) != (student.dataset, student.imbalance):
        problems.append(f"it trained on {teacher.dataset} (imbalance {teacher.imbalance}), this run on "
                        f"{student.dataset} (imbalance {student.imbalance})")
    elif teacher.data_fingerprint != student.data_fingerprint:
        problems.append(f"it trained on other data ({teacher.data_fingerprint!r}, this run reads "
                        f"{student.data_fingerprint!r})")
    if num_classes is not None and teacher_classes != num_classes:
        problems.append(f"it has {teacher_classes} classes, this run {num_classes}")
    if problems:
        raise ValueError(f"config key 'teacher': {teacher_dir} cannot teach this run: {'; '.join(problems)}")


def check_weights_belong(state: dict, weights: Path, run_dir: Path, expected_hash: str) -> None:
    """ValueError when a loaded checkpoint was written by another config than the run's ``config.json``
    (hash ``expected_hash``): the weights were copied from another run, or, when the run directory is
    named after the weights' config (``engine.run_dir_for``), config.json was edited."""
    found = state.get("config_hash")
    if found == expected_hash:
        return
    if found is not None and found in Path(run_dir).name.split("-"):
        raise ValueError(f"run {run_dir}: config.json is not the config its weights {Path(weights).name} "
                         f"trained with (it hashes to {expected_hash}; the weights and the run's name say "
                         f"{found}): config.json was edited. Restore it")
    raise ValueError(f"{weights} belongs to config {found}, not to the run in {run_dir} "
                     f"(config {expected_hash}): it was copied from another run")
