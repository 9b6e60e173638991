"""Provenance of a result: commit, device, library versions, time. Attached to every run and report."""

from __future__ import annotations

import datetime
import functools
import platform
import subprocess
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]  # lt_paper/train/provenance.py -> the repository


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit, with '+dirty' when tracked files differ from it; 'unknown' outside git.

    Asked once per process, and with the nbstripout clean filter replaced by ``cat``: through the real
    filter ``git status`` starts Python once per notebook (18 s in a fresh clone, past the timeout).
    A notebook saved with outputs therefore counts as a change, which it is.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-c", "filter.nbstripout.clean=cat", "status", "--porcelain",
                                "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device | str | None = None) -> str:
    """The device that did the work: a CUDA device's name, else this machine's CPU. A notebook that only
    reads finished GPU runs (``train=False``) on a machine without CUDA ran on the CPU, and says so."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device=None, **extra) -> dict:
    import torchvision

    info = {
        "commit": git_commit(),
        "device": device_name(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": __import__("numpy").__version__,
        "host": platform.node(),
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info
