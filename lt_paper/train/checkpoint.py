"""Atomic checkpoints that carry their architecture (docs/decisions.md, decision 8).

A checkpoint is written to a temporary file in the same directory and then renamed over the old one,
so a run killed at any instant leaves either the previous checkpoint or the new one, never half a
file. It is loaded with ``torch.load(weights_only=True)`` (no arbitrary pickles) and checked against
the architecture it is loaded into, so a checkpoint from another model fails with a message that
names the differing fields instead of a wall of missing-key errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files.atomic import atomic_write_bytes
from ..models import check_signature, model_signature

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, *, model: nn.Module, optimizer, epoch: int, config: dict,
                    config_hash: str, history: list, best: dict, wall_time_s: float) -> None:
    unwrapped = getattr(model, "module", model)
    state = {
        "format": CHECKPOINT_FORMAT,
        "config_hash": config_hash,
        "config": config,
        "model_spec": model_signature(unwrapped),
        "epoch": epoch,  # last completed epoch (0-indexed)
        "model": unwrapped.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history,
        "best": best,
        "wall_time_s": wall_time_s,
        "torch_rng": torch.get_rng_state(),
    }
    atomic_torch_save(path, state)


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically (:func:`atomic_write_bytes`: a failure keeps the old file).

    torch's zip writer reports a failed write (a full disk, a quota) as a RuntimeError ("unexpected pos
    ...") that names neither the cause nor the file: it is raised again as the OSError behind it (its
    errno, e.g. "No space left on device"), naming the file.
    """
    try:
        atomic_write_bytes(path, lambda f: torch.save(obj, f))
    except RuntimeError as err:
        cause = _os_error_behind(err)
        if cause is None or cause.errno is None:
            raise OSError(f"could not write {path} ({err}; disk full?)") from err
        raise OSError(cause.errno, f"{cause.strerror} (writing {path})") from err


def _os_error_behind(err: BaseException) -> OSError | None:
    """The first OSError in ``err``'s chain of causes and contexts, or None."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


def load_checkpoint(path: Path, model: nn.Module | None = None, map_location="cpu") -> dict:
    """Load a checkpoint; with ``model`` given, check its architecture and load the weights into it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, foreign pickle
        raise ValueError(f"checkpoint {path} is unreadable (corrupted or not an lt_paper checkpoint): {e}") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not an lt_paper checkpoint (format {CHECKPOINT_FORMAT})")
    if model is not None:
        check_signature(model, state["model_spec"], source=f"checkpoint {path}")
        getattr(model, "module", model).load_state_dict(state["model"])
    return state
