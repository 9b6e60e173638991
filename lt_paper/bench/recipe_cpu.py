"""``bench --section recipe-cpu``: the paper's recipe (the ``cifar`` profile's ResNet-32 LDAM-DRW preset,
200 epochs, tested after every epoch; ``--preset`` names another) on this CPU, one path per row, and what
one run would take.

Why a table of its own: such a run costs hours on a CPU, and its path is chosen once. The path (memory
layout, fused SGD, torch.compile) is part of the run hash, so a run resumed in a later chunk must keep
it. Each row trains in a fresh process (OpenMP reads its thread count once, and Inductor's in-memory
caches must not carry over), with ``OMP_NUM_THREADS`` fixed: compiled CPU kernels keep the thread count
they were generated for, so a compiled run is given its threads for the whole chunk (all cores on an
idle machine, one while other work shares it).

Rows: eager, channels_last, channels_last + fused SGD, and with ``--compile on`` torch.compile +
channels_last twice: with an empty Inductor cache (the first epoch compiles) and again with the cache
the first left behind (``TORCHINDUCTOR_CACHE_DIR``: what every later chunk on the same machine meets).
Each row: training and test images/s, the first epoch's extra seconds (compilation), and the projected
seconds of one run of the recipe, which the first epoch's extra is added to once per chunk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import torch

from ..train.config import Config
from ..train.provenance import provenance
from ..train.resolve import resolve_run_config
from .core import BenchSize, load_average, markdown_table
from .cpu_section import CIFAR10_LT_TRAIN, CIFAR10_TEST, evaluations
from .cpu_section import run_seconds as projected_seconds
from .shared_cpu import measure_setting

RECIPE = "cifar10_lt/resnet32/ldam_drw"
PATHS = {  # label -> config fields
    "eager": dict(channels_last=False),
    "channels_last": dict(channels_last=True),
    "channels_last + fused SGD": dict(channels_last=True, fused_optimizer=True),
}
COMPILED = dict(channels_last=True, compile=True)


def recipe_config(size: BenchSize, preset: str = RECIPE, **fields) -> Config:
    """``preset``'s config on the CPU (its own batch size); the tiny size swaps in its small network and
    batch (seconds-long, for the test suite)."""
    overrides = dict(device="cpu", progress=False, **fields)
    if size.name == "tiny":
        overrides.update(arch=size.arch, batch_size=size.batch_size)
    return resolve_run_config(preset, overrides, data=False)


def run_seconds(config: Config, measured: dict) -> float:
    """One run of ``config``'s recipe at a child's measured rates (``cpu_section.run_seconds``), the first
    epoch's extra once."""
    return projected_seconds(config, measured["images_per_s"], measured["test_images_per_s"],
                             measured["first_epoch_extra_s"])


def run_recipe_bench(size: BenchSize, compile_mode: str = "auto", progress=print, command: str = "",
                     preset: str = RECIPE) -> str:
    """Measure every path at every thread count; the report (Markdown) with provenance, ``command`` among it
    (the command as typed: the report is published, so not this machine's path of the module)."""
    began = time.perf_counter()
    cores = os.cpu_count() or 1
    thread_counts = [1] if size.name == "tiny" or cores == 1 else [cores, 1]
    cache = tempfile.mkdtemp(prefix="lt_paper-inductor-")
    rows = []
    try:
        for threads in thread_counts:
            paths = [(label, fields, {}) for label, fields in PATHS.items()]
            if compile_mode == "on":
                shutil.rmtree(cache, ignore_errors=True)  # each thread count compiles its own kernels
                paths += [(f"torch.compile + channels_last, {state} Inductor cache", COMPILED,
                           {"TORCHINDUCTOR_CACHE_DIR": cache}) for state in ("empty", "warm")]
            for label, fields, variables in paths:
                progress(f"[{time.perf_counter() - began:6.1f} s] bench recipe-cpu: {label}, {threads} thread(s)")
                config = recipe_config(size, preset, **fields)
                measured = measure_setting(size, config, dict(variables, OMP_NUM_THREADS=str(threads)))
                rows.append([label, threads, f"{measured['images_per_s']:.0f}",
                             f"{measured['test_images_per_s']:.0f}", f"{measured['first_epoch_extra_s']:.1f}",
                             f"{CIFAR10_LT_TRAIN / measured['images_per_s']:.1f}",
                             f"{run_seconds(config, measured) / 3600:.2f}"])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    config = recipe_config(size, preset)
    lines = [f"# lt_paper bench, the paper's recipe on this CPU: size {size.name}, "
             f"{provenance(torch.device('cpu'))['device']}", "",
             f"`{preset}` ({config.arch}, {config.epochs} epochs, batch {config.batch_size}, tested every "
             f"{config.eval_every} epoch(s)) on synthetic {size.px}x{size.px} images, {size.cpu_steps} steps per "
             f"timed epoch, one warm-up epoch, in a fresh process per row with OMP_NUM_THREADS set. Projected "
             f"hours: {config.epochs} epochs of the {CIFAR10_LT_TRAIN:,} CIFAR-10-LT training images and "
             f"{evaluations(config)} test passes of {CIFAR10_TEST:,} images, plus the first epoch's "
             f"extra seconds once (a run trained in chunks pays it once per chunk). Load average at the start: "
             f"{load_average()}.", ""]
    lines += markdown_table(["path", "threads", "train images/s", "test images/s", "first-epoch extra (s)",
                             "s per epoch (train)", "projected h per run"], rows)
    info = provenance(torch.device("cpu"), bench_size=size.name, load_average_end=load_average(), command=command)
    return "\n".join([*lines, "", "## Provenance", "", *(f"- {k}: {v}" for k, v in info.items())]) + "\n"
