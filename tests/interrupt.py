"""Kill a training process in the middle of an epoch, as a crash or a lost machine would."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import torch


def sigkill_mid_epoch(proc: subprocess.Popen, checkpoints: str, root: Path, after_epoch: int = 2) -> int:
    """SIGKILL ``proc`` shortly after the checkpoint matching ``root.glob(checkpoints)`` holds epoch
    ``after_epoch`` (0-indexed), i.e. inside the next epoch; returns the epoch of the last checkpoint."""
    deadline, found = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None:
        found = list(root.glob(checkpoints))
        if found and torch.load(found[0], weights_only=True)["epoch"] >= after_epoch:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    time.sleep(0.3)  # inside the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return torch.load(found[0], weights_only=True)["epoch"]
