"""What both benchmark sections share: the sizes ``--size`` picks, synthetic CIFAR-LT-shaped data, the
epoch timer, the timing of the engine's own run and of a batched ensemble, and the report's table writer.

``main_section`` (``--section main``) and ``cpu_section`` (``--section cpu``) import this module; it imports
neither of them.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..analysis.tables import to_markdown
from ..data import lt_counts, make_loaders
from ..data.containers import ArrayDataset, Augment, LongTailData
from ..train.config import Config
from ..train.engine import build_run, configure_backends, train_one_epoch
from ..train.ensemble import build_ensemble
from ..train.evaluate import predict
from ..train.parallel import BARRIER_TIMEOUT_S
from ..train.presets import CPU_ARCH
from ..train.resolve import resolve_run_config

PROJECTED_EPOCHS = 200
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class BenchSize:
    """What ``--size`` sets."""

    name: str
    arch: str
    num_classes: int
    n_max: int  # training images of the largest class (CIFAR-100: 500)
    imbalance: float
    test_per_class: int
    batch_size: int
    warmup_epochs: int
    timed_epochs: int  # per path in section 1
    table4_timed_epochs: int  # per run in section 2
    reference_workers: int
    resnext_batch: int
    resnext_px: int
    resnext_warmup: int
    resnext_steps: int
    threads: int | None = None  # CPU threads while measuring (None: torch's default)
    px: int = 32  # side of the synthetic images (CIFAR: 32)
    # the CPU section (``--section cpu``, lt_paper.bench.cpu_section): steps per timed epoch, test images, and
    # the side of the matrices whose product measures the fp32 ceiling
    cpu_steps: int = 12
    cpu_test: int = 1000
    matmul_n: int = 2048


SIZES = {
    "full": BenchSize("full", "resnet32", 100, 500, 100.0, 100, 128, warmup_epochs=1, timed_epochs=3,
                      table4_timed_epochs=2, reference_workers=4, resnext_batch=256, resnext_px=224,
                      resnext_warmup=3, resnext_steps=10),
    "short": BenchSize("short", "resnet32", 10, 5000, 100.0, 1000, 128, warmup_epochs=1, timed_epochs=1,
                       table4_timed_epochs=1, reference_workers=4, resnext_batch=64, resnext_px=224,
                       resnext_warmup=2, resnext_steps=5),
    "tiny": BenchSize("tiny", "resnet8", 10, 50, 10.0, 10, 32, warmup_epochs=1, timed_epochs=1,
                      table4_timed_epochs=1, reference_workers=1, resnext_batch=2, resnext_px=64,
                      resnext_warmup=1, resnext_steps=2, threads=1, px=16, cpu_steps=2, cpu_test=20,
                      matmul_n=256),
}


# ----------------------------------------------------------------------------------------------- data
def synthetic_long_tail(num_classes: int, n_max: int, imbalance: float, test_per_class: int, px: int = 32,
                        seed: int = 0) -> LongTailData:
    """Random uint8 images with CIFAR-LT's shape: ``lt_counts(n_max, C, imbalance)`` train images per
    class, ``test_per_class`` per class in the test set, CIFAR-100's normalisation and augmentation.
    Speed does not depend on the pixels; accuracy on these is meaningless."""
    counts = lt_counts(n_max, num_classes, imbalance)
    g = torch.Generator().manual_seed(seed)

    def split(per_class: list[int]) -> ArrayDataset:
        labels = torch.repeat_interleave(torch.arange(num_classes), torch.tensor(per_class))  # (N,)
        images = torch.randint(0, 256, (len(labels), 3, px, px), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, labels)

    return LongTailData(
        name=f"synthetic_{num_classes}class_lt", num_classes=num_classes,
        class_names=[f"class{c}" for c in range(num_classes)], train_counts=counts,
        train=split(counts), test=split([test_per_class] * num_classes), kind="array",
        mean=CIFAR100_MEAN, std=CIFAR100_STD, augment=Augment(crop=px, pad=4, flip=True),
        info={"source": "synthetic", "seed": seed})


@contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` intra-op CPU threads (None: unchanged), restoring them after.

    The tiny size measures single-threaded: on a shared CI machine a multi-threaded CPU step slows down
    many times over whenever another process holds a core (OpenMP threads wait for each other).
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class EpochTimes:
    """Timings of one path or run (seconds; means over the timed epochs)."""

    warmup_s: float  # the warm-up epochs, train + test, compilation included
    train_s: float
    eval_s: float
    images_per_epoch: int  # of every run together (an ensemble: members x images)
    start: float = 0.0  # wall clock (time.time) at the start and end of the timed epochs
    end: float = 0.0
    host_syncs: int | None = None  # in one training epoch (CUDA sync debug mode); None: not counted
    compiled: dict | None = None  # torch.compile counters after the run (see compile_counters)

    @property
    def epoch_s(self) -> float:
        return self.train_s + self.eval_s

    @property
    def images_per_s(self) -> float:
        return self.images_per_epoch / self.train_s

    @property
    def projected_s(self) -> float:
        return PROJECTED_EPOCHS * self.epoch_s


def time_epochs(train_epoch, evaluate, device: torch.device, warmup_epochs: int, timed_epochs: int,
                images_per_epoch: int, label: str, barrier=None, before_epoch=None) -> EpochTimes:
    """Warm up, wait at ``barrier`` (side by side), then time ``timed_epochs`` training + test passes.

    ``train_epoch(epoch)`` returns the epoch's loss (a number or a device tensor: read after the
    clock stops, so that reading it adds no sync to the timed epoch); a non-finite loss raises.
    ``before_epoch()``, if given, runs before every epoch, untimed (the engine's thread choice).
    """
    before_epoch = before_epoch or (lambda: None)
    t0 = time.perf_counter()
    for epoch in range(warmup_epochs):
        before_epoch()
        train_epoch(epoch)
        evaluate()
    synchronize(device)
    warmup = time.perf_counter() - t0
    if barrier is not None:
        barrier.wait(BARRIER_TIMEOUT_S)
    start = time.time()
    train_s, eval_s, losses = [], [], []
    for epoch in range(warmup_epochs, warmup_epochs + timed_epochs):
        before_epoch()
        t0 = time.perf_counter()
        losses.append(train_epoch(epoch))
        synchronize(device)
        t1 = time.perf_counter()
        evaluate()
        synchronize(device)
        train_s.append(t1 - t0)
        eval_s.append(time.perf_counter() - t1)
    end = time.time()
    if not all(math.isfinite(float(loss)) for loss in losses):
        raise FloatingPointError(f"{label}: training loss is not finite in the benchmark")
    return EpochTimes(warmup, float(np.mean(train_s)), float(np.mean(eval_s)), images_per_epoch, start, end)


# ------------------------------------------------------------------------------------- our engine's paths
def compile_counters() -> dict:
    """torch.compile's counters in this process: graphs compiled and CUDA-graph captures skipped (a
    skip means the step runs as Inductor kernels without CUDA graphs: still correct, less fast).
    These counters are torch internals (``torch._dynamo.utils.counters``); {} where they are missing."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return {}
    return {"graphs": int(counters["stats"]["unique_graphs"]),
            "cudagraph_skips": int(counters["inductor"]["cudagraph_skips"])}


def count_host_syncs(run_epoch, device: torch.device) -> int | None:
    """Synchronising CUDA calls made by ``run_epoch()`` (CUDA sync debug mode warnings); None off CUDA."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run_epoch()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    synchronize(device)
    return sum("synchroniz" in str(w.message) for w in caught)


def time_engine(config: Config, data: LongTailData, device: torch.device, warmup_epochs: int,
                timed_epochs: int, barrier=None, count_syncs: bool = False, before_epoch=None) -> EpochTimes:
    """Time one run of the engine (``build_run`` / ``train_one_epoch`` / ``predict``); ``before_epoch``: see
    ``time_epochs``."""
    configure_backends(config, device)
    train_loader, test_loader = make_loaders(data, config.batch_size, device, seed=config.seed,
                                             eval_batch_size=config.eval_batch_size, drop_last=config.drop_last)
    parts = build_run(config, data, device)

    def train_epoch(epoch: int) -> torch.Tensor:
        train_loader.set_epoch(epoch)
        return train_one_epoch(parts.model, train_loader, parts.objective, parts.optimizer, device,
                               amp=config.amp, channels_last=config.channels_last, compiled=config.compile)[0]

    def evaluate() -> None:
        predict(parts.model, test_loader, parts.objective.scale, device, config.amp, config.compile)

    times = time_epochs(train_epoch, evaluate, device, warmup_epochs, timed_epochs,
                        train_loader.images_per_epoch, config.name, barrier, before_epoch)
    epoch_after = warmup_epochs + timed_epochs
    if count_syncs:
        times.host_syncs = count_host_syncs(lambda: train_epoch(epoch_after), device)
    times.compiled = compile_counters() if config.compile else None
    return times


def time_ensemble(configs: list[Config], data: LongTailData, device: torch.device, warmup_epochs: int,
                  timed_epochs: int) -> EpochTimes:
    """Time ``configs`` trained as one ensemble (``lt_paper.train.ensemble``): one batched step for all."""
    configure_backends(configs[0], device)
    run = build_ensemble(configs, data, device)
    images = run.train_loaders[0].images_per_epoch * len(configs)
    return time_epochs(lambda epoch: run.train_epoch(epoch)[0][:, 0].sum(), run.predict, device, warmup_epochs,
                       timed_epochs, images, f"ensemble of {len(configs)}")


# ---------------------------------------------------------------------- the cifar-cpu profile on this CPU
PREFIX = "cifar10_lt"  # the cifar-cpu profile's presets (with ``presets.CPU_ARCH``)


def profile_config(method: str, size: BenchSize, **overrides) -> Config:
    """The cifar-cpu profile's preset of ``method`` on the CPU, at the benchmark's batch size."""
    return resolve_run_config(f"{PREFIX}/{CPU_ARCH}/{method}",
                              {"batch_size": size.batch_size, "progress": False, **overrides, "device": "cpu"},
                              data=False)


def profile_data(size: BenchSize) -> LongTailData:
    """The CPU benchmarks' synthetic images: 10 balanced classes, ``size.cpu_steps`` batches an epoch and
    about ``size.cpu_test`` test images (speed does not depend on the pixels or the imbalance)."""
    per_class = math.ceil(size.cpu_steps * size.batch_size / 10)
    return synthetic_long_tail(10, per_class, 1.0, max(1, size.cpu_test // 10), size.px)


def load_average() -> str:
    """The machine's load average (1 / 5 / 15 min), for a report: timings on a loaded CPU differ."""
    try:
        with open("/proc/loadavg") as f:
            return " / ".join(f.read().split()[:3]) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def markdown_table(header, rows) -> list[str]:
    """A Markdown table (the project's writer) as report lines; cells are already formatted."""
    return to_markdown(pd.DataFrame(rows, columns=header), index=False).rstrip("\n").splitlines()
