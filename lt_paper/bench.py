"""``python -m lt_paper bench``: how fast a CIFAR-LT run trains, the published way and ours.

One report (Markdown, printed; ``--out FILE`` writes the same text) with the provenance of the machine:

1. ResNet-32, batch 128, cross-entropy, on CIFAR-100-LT-sized data: warm-up epoch, seconds per training
   epoch, seconds per test pass, training images/s, and the projected time of a 200-epoch run (each
   epoch = one training pass + one test pass, as both the published code and our engine do), for
   - the **reference-style loop**: a RE-CREATION of the structure of the published loops (LDAM-DRW's
     ``cifar_train.py``, which RIDE follows), not their code: the images as PIL images, torchvision
     transforms (RandomCrop(32, pad 4), flip, ToTensor, Normalize) in a DataLoader with 4 workers and
     pinned memory, cuDNN autotuning, fp32, eager, ``loss.item()`` every step, test batches of 100 with
     the predictions copied to the host per batch. Our ResNet-32, so only the loop differs;
   - **our default path**: the engine's own ``build_run`` / ``train_one_epoch`` / ``predict`` on the
     array loader (data and augmentation on the device), with the device defaults (bf16 autocast and
     channels_last on CUDA);
   - **our fast path**: the same plus ``fast_path_overrides`` (torch.compile with CUDA graphs, fused SGD).
2. The seven runs of Table 4 (CE, LDAM, A_ins, A_cls, Focal + A_cls, LDAM + A_ins, ALA; default path):
   one after another in this process, side by side as seven processes released together (see
   ``lt_paper.train.parallel``), and as one batched ensemble (``lt_paper.train.ensemble``: every
   kernel does the work of all seven runs); then the 21 runs of three seeds as one ensemble. Training
   images/s of all runs together and the projected wall time of 200 epochs of every run.
3. ResNeXt-50 32x4d training images/s at 224 px, batch 256, fp32 (TF32 on, as the engine runs CUDA)
   and bf16 + channels_last, on synthetic tensors already on the device (the network alone).

Sizes. ``--size full``: the sizes above, on synthetic uint8 images of CIFAR-100-LT's shape (10,847 train
images at imbalance 100, 10,000 test images, 32x32, 100 classes; no download), or the real set with
``--data-root``. ``--size short``: the same sections, sized for about 90 s on one H100 (the GPU window
script): synthetic images of CIFAR-10-LT's shape (12,406 train images, 10 classes), one warm-up and one
timed epoch per row, ResNeXt-50 at batch 64; not yet timed on a GPU. ``--size tiny``: a check that the
whole benchmark runs (CI, 2 CPU cores, under a minute): ResNet-8, 10 classes, 199 training images of
16x16, one timed epoch, ResNeXt-50 at batch 2 and 64 px; its numbers say nothing about a GPU. Every
timing excludes warm-up (the first epoch: cuDNN autotuning, compilation, CUDA-graph capture, DataLoader
start) and synchronises the device before reading a clock. On CUDA the report also counts the host
synchronisations in one fast-path training epoch (CUDA sync debug mode), the check that the loop never
waits for the GPU inside an epoch.

Run it as ``python -m lt_paper bench ...`` or ``python -m lt_paper.bench ...`` (the same options).

On a GPU, NOT YET MEASURED with this code (an earlier probe on one H100, outside this repository, saw
about 1.35 s/epoch for the reference loop, 1.25 s for the eager default and 0.44 s for the fast path
after about 23 s of compilation, at CIFAR-100-LT size)::

    python -m lt_paper bench --size short --device cuda --out results/bench-h100.md   # about 90 s
    python -m lt_paper bench --size full --device cuda --out results/bench-h100-full.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils import benchmark
from torch.utils.data import DataLoader, Dataset

from .analysis.tables import to_markdown
from .data import load_dataset, lt_counts, make_loaders
from .data.containers import ArrayDataset, Augment, LongTailData
from .models import build_model
from .provenance import provenance
from .train.config import Config, apply_overrides, fast_path_overrides
from .train.distributed import device_type
from .train.engine import build_run, configure_backends, resolve_runtime, train_one_epoch
from .train.ensemble import build_ensemble
from .train.evaluate import predict
from .train.parallel import BARRIER_TIMEOUT_S, run_side_by_side
from .train.presets import get_preset

PROJECTED_EPOCHS = 200
# Table 4 of the paper, rows 1-7 (presets of lt_paper.train.presets).
TABLE4_METHODS = ("ce", "ldam_drw", "ains", "acls", "focal_acls", "ldam_ains", "ala")
ENSEMBLE_SEEDS = (0, 1, 2)  # the 21-run ensemble: Table 4's rows x three seeds
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
REFERENCE_TEST_BATCH = 100  # LDAM-DRW's validation loader


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
    # the CPU section (``--section cpu``, lt_paper.bench_cpu): steps per timed epoch, test images, and
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


def bench_data(size: BenchSize, dataset: str, data_root: str | None) -> LongTailData:
    """The real set when ``data_root`` is given (CIFAR-LT, "array" kind), else synthetic data."""
    if data_root is None:
        return synthetic_long_tail(size.num_classes, size.n_max, size.imbalance, size.test_per_class, size.px)
    data = load_dataset(dataset, root=data_root, imbalance=size.imbalance)
    if data.kind != "array":
        raise ValueError(f"--dataset {dataset!r}: the benchmark needs an array dataset (CIFAR-LT, digits)")
    return data


def bench_config(size: BenchSize, method: str, device: torch.device, **overrides) -> Config:
    """The CIFAR-100-LT preset of ``method`` at this size, with the device's defaults resolved."""
    base = get_preset(f"cifar100_lt/resnet32/{method}")
    config = apply_overrides(base, dict(arch=size.arch, batch_size=size.batch_size, device=device.type,
                                        progress=False, **overrides))
    return resolve_runtime(config, device)


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


# ------------------------------------------------------------------------ reference-style loop (re-creation)
class PILImages(Dataset):
    """torchvision's CIFAR ``__getitem__``: a uint8 HWC array -> ``Image.fromarray`` -> ``transform``."""

    def __init__(self, data: ArrayDataset, transform):
        self.images = data.images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C) uint8
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def reference_loaders(data: LongTailData, batch_size: int, workers: int, device: torch.device):
    """LDAM-DRW's CIFAR loaders: PIL transforms in DataLoader workers, shuffle, no drop_last."""
    from torchvision import transforms

    normalize = transforms.Normalize(data.mean, data.std)
    train_tf = transforms.Compose([transforms.RandomCrop(data.augment.crop, padding=data.augment.pad),
                                   transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
    test_tf = transforms.Compose([transforms.ToTensor(), normalize])
    pin = device.type == "cuda"
    train = DataLoader(PILImages(data.train, train_tf), batch_size=batch_size, shuffle=True,
                       num_workers=workers, pin_memory=pin)
    test = DataLoader(PILImages(data.test, test_tf), batch_size=REFERENCE_TEST_BATCH, shuffle=False,
                      num_workers=workers, pin_memory=pin)
    return train, test


def reference_train_epoch(model, loader, optimizer, device) -> float:
    """LDAM-DRW's ``train``: fp32, eager, ``loss.item()`` every step (a host sync); the mean loss."""
    model.train()
    loss_sum, seen = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images).logits, labels)
        loss_sum += loss.item() * len(labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return loss_sum / seen


@torch.no_grad()
def reference_evaluate(model, loader, device) -> None:
    """LDAM-DRW's ``validate``, timed for its cost only."""
    model.eval()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images).logits
        # Computed and dropped on purpose: this is the published loop's per-batch work with its host
        # syncs (the loss meter's .item(), the predictions copied to the host), which is what is timed.
        F.cross_entropy(logits, labels).item()
        logits.argmax(1).cpu()


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
                images_per_epoch: int, label: str, barrier=None) -> EpochTimes:
    """Warm up, wait at ``barrier`` (side by side), then time ``timed_epochs`` training + test passes.

    ``train_epoch(epoch)`` returns the epoch's loss (a number or a device tensor: read after the
    clock stops, so that reading it adds no sync to the timed epoch); a non-finite loss raises.
    """
    t0 = time.perf_counter()
    for epoch in range(warmup_epochs):
        train_epoch(epoch)
        evaluate()
    synchronize(device)
    warmup = time.perf_counter() - t0
    if barrier is not None:
        barrier.wait(BARRIER_TIMEOUT_S)
    start = time.time()
    train_s, eval_s, losses = [], [], []
    for epoch in range(warmup_epochs, warmup_epochs + timed_epochs):
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


def time_reference(data: LongTailData, size: BenchSize, device: torch.device) -> EpochTimes:
    """Time the reference-style loop (cuDNN autotuning on, as LDAM-DRW sets it)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(size.arch, data.num_classes, head="linear").to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    train_loader, test_loader = reference_loaders(data, size.batch_size, size.reference_workers, device)
    return time_epochs(lambda epoch: reference_train_epoch(model, train_loader, optimizer, device),
                       lambda: reference_evaluate(model, test_loader, device), device, size.warmup_epochs,
                       size.timed_epochs, len(data.train), "reference-style loop")


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
                timed_epochs: int, barrier=None, count_syncs: bool = False) -> EpochTimes:
    """Time one run of the engine (``build_run`` / ``train_one_epoch`` / ``predict``)."""
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
                        train_loader.images_per_epoch, config.name, barrier)
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


def _table4_worker(job: dict, barrier) -> EpochTimes:
    """One Table 4 run in a side-by-side process (module level, so that it pickles by name)."""
    size, device = job["size"], torch.device(job["device"])
    data = bench_data(size, job["dataset"], job["data_root"])
    return time_engine(job["config"], data, device, size.warmup_epochs, size.table4_timed_epochs, barrier)


# ----------------------------------------------------------------------------------------------- ResNeXt
def resnext_images_per_s(device: torch.device, batch: int, px: int, warmup: int, steps: int, amp: bool,
                         channels_last: bool) -> float:
    """Training images/s of ResNeXt-50 32x4d (1000 classes, linear head) on a fixed synthetic batch."""
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model("resnext50", 1000).to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    images = torch.randn(batch, 3, px, px, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images).logits
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    # torch.utils.benchmark synchronises CUDA around the timed steps
    seconds_per_step = benchmark.Timer(stmt="step()", globals={"step": step},  # Timer defaults to 1 thread
                                       num_threads=torch.get_num_threads()).timeit(steps).mean
    return batch / seconds_per_step


# ------------------------------------------------------------------------------------------------ report
def _table(header, rows) -> list[str]:
    """A Markdown table (the project's writer) as report lines; cells are already formatted."""
    return to_markdown(pd.DataFrame(rows, columns=header), index=False).rstrip("\n").splitlines()


def run_bench(size: BenchSize, device: torch.device, dataset: str = "cifar100_lt", data_root: str | None = None,
              compile_mode: str = "auto", threads_per_process: int | None = None, progress=print) -> str:
    """Measure everything and return the report (Markdown). ``compile_mode``: "auto" (compile in the fast
    path on CUDA only), "on" or "off"; ``progress(message)`` reports each step."""
    began = time.perf_counter()

    def step(message: str) -> None:
        progress(f"[{time.perf_counter() - began:6.1f} s] bench: {message}")

    with torch_threads(size.threads):
        if device.type == "cuda":
            torch.cuda.set_device(device.index or 0)
        data = bench_data(size, dataset, data_root)
        source = (f"{data.name} from {data_root}" if data_root else
                  f"synthetic images of CIFAR-LT shape ({size.num_classes} classes, imbalance {size.imbalance:g})")
        lines = [f"# lt_paper bench: size {size.name}, {provenance(device)['device']}", "",
                 f"Data: {source}: {len(data.train)} train / {len(data.test)} test images "
                 f"{tuple(data.train.images.shape[1:])}. Model {size.arch}, batch {size.batch_size}, "
                 f"cross-entropy. An epoch is one training pass plus one test pass; "
                 f"{size.warmup_epochs} warm-up epoch(s) excluded, then the mean of {size.timed_epochs}.", ""]
        lines += _loops_section(size, data, device, compile_mode, step)
        lines += _table4_section(size, data, device, dataset, data_root, threads_per_process, step)
        lines += _resnext_section(size, device, step)
        info = provenance(device, bench_size=size.name, cuda=torch.version.cuda, threads=torch.get_num_threads(),
                          argv=" ".join(sys.argv))
    lines += ["", "## Provenance", "", *(f"- {k}: {v}" for k, v in info.items())]
    step("done")
    return "\n".join(lines) + "\n"


def _describe(c: Config) -> str:
    return (f"amp {'bf16' if c.amp else 'off'}, channels_last {'on' if c.channels_last else 'off'}, "
            f"compile {'on' if c.compile else 'off'}, fused SGD {'on' if c.fused_optimizer else 'off'}")


def _loops_section(size: BenchSize, data: LongTailData, device: torch.device, compile_mode: str, step) -> list[str]:
    """Section 1: the reference-style loop, our default path and our fast path on one run."""
    default_config = bench_config(size, "ce", device)
    fast = fast_path_overrides(device.type)
    if compile_mode != "auto":
        fast["compile"] = compile_mode == "on"
    fast_config = bench_config(size, "ce", device, **fast)
    step("reference-style loop")
    reference = time_reference(data, size, device)
    step("our default path")
    default = time_engine(default_config, data, device, size.warmup_epochs, size.timed_epochs)
    step("our fast path")
    fastest = time_engine(fast_config, data, device, size.warmup_epochs, size.timed_epochs, count_syncs=True)
    workers = f"{size.reference_workers} worker{'s' if size.reference_workers != 1 else ''}"
    paths = ((f"reference-style loop (re-creation: PIL transforms in a DataLoader with {workers}, fp32, eager, "
              ".item() every step)", reference),
             (f"our default path (array loader on the device; {_describe(default_config)})", default),
             (f"our fast path ({_describe(fast_config)})", fastest))
    rows = [[label, f"{t.warmup_s:.3f}", f"{t.train_s:.4f}", f"{t.eval_s:.4f}", f"{t.images_per_s:.1f}",
             f"{t.projected_s:.1f}"] for label, t in paths]
    lines = ["## One run, three loops", ""]
    lines += _table(["path", "warm-up (s)", "train s/epoch", "test s/epoch", "train images/s",
                     f"projected {PROJECTED_EPOCHS} epochs (s)"], rows)
    lines += ["", f"Fast path vs reference-style loop: {reference.projected_s / fastest.projected_s:.2f}x over "
              f"{PROJECTED_EPOCHS} epochs (warm-up and compilation excluded)."]
    if fastest.compiled:
        lines += [f"torch.compile in this process: {fastest.compiled['graphs']} graphs compiled, CUDA-graph "
                  f"capture skipped {fastest.compiled['cudagraph_skips']} times."]
    if fastest.host_syncs is None:
        lines += ["Host synchronisations are counted on CUDA only."]
    else:
        steps = fastest.images_per_epoch // size.batch_size
        lines += [f"Host synchronisations in one fast-path training epoch of {steps} steps (CUDA sync debug "
                  f"mode; the loader's copies of the epoch's order to the device count here): {fastest.host_syncs}."]
    return lines


def _table4_section(size: BenchSize, data: LongTailData, device: torch.device, dataset: str,
                    data_root: str | None, threads_per_process: int | None, step) -> list[str]:
    """Section 2: Table 4's runs one after another, side by side, as one ensemble; then 21 runs (three
    seeds) as one ensemble. Sequential and side by side are measured on the 7 runs only; their 21-run
    rows are three times the 7-run ones (a seed does not change a run's speed)."""
    configs = [bench_config(size, m, device) for m in TABLE4_METHODS]
    epochs = size.table4_timed_epochs
    alone: list[EpochTimes] = []
    for method, config in zip(TABLE4_METHODS, configs):
        step(f"Table 4 {method}, alone")
        alone.append(time_engine(config, data, device, size.warmup_epochs, epochs))
    n = len(configs)
    step(f"Table 4, {n} runs side by side")
    jobs = [dict(config=c, size=size, device=str(device), dataset=dataset, data_root=data_root) for c in configs]
    together = run_side_by_side(_table4_worker, jobs, start_together=True, labels=list(TABLE4_METHODS),
                                threads_per_process=threads_per_process or size.threads)
    step(f"Table 4, {n} runs as one ensemble")
    ensemble = time_ensemble(configs, data, device, size.warmup_epochs, epochs)
    seeded = [bench_config(size, m, device, seed=s) for s in ENSEMBLE_SEEDS for m in TABLE4_METHODS]
    step(f"Table 4 x {len(ENSEMBLE_SEEDS)} seeds, {len(seeded)} runs as one ensemble")
    ensemble_all = time_ensemble(seeded, data, device, size.warmup_epochs, epochs)

    images = alone[0].images_per_epoch * epochs  # per run over the timed epochs
    sequential_wall = sum(t.end - t.start for t in alone)
    side_wall = max(t.end for t in together) - min(t.start for t in together)
    sequential_projected = sum(t.projected_s for t in alone)  # one run after the other
    side_projected = max(t.projected_s for t in together)  # all at once: the slowest decides
    k = len(ENSEMBLE_SEEDS)
    sequential_ips = n * images / sum(t.train_s * epochs for t in alone)
    rows = [("one run alone (CE)", 1, images / (alone[0].train_s * epochs), alone[0].end - alone[0].start,
             alone[0].projected_s),
            ("sequential (one process, one run at a time)", n, sequential_ips, sequential_wall,
             sequential_projected),
            (f"side by side ({n} processes on one device)", n, n * images / side_wall, side_wall, side_projected),
            (f"ensemble of {n} (one batched step)", n, ensemble.images_per_s, ensemble.end - ensemble.start,
             ensemble.projected_s),
            (f"sequential, {k} seeds (x{k} the {n}-run row)", n * k, sequential_ips, k * sequential_wall,
             k * sequential_projected),
            (f"side by side, {k} seeds (x{k} the {n}-run row)", n * k, n * images / side_wall, k * side_wall,
             k * side_projected),
            (f"ensemble of {n * k} (one batched step)", n * k, ensemble_all.images_per_s,
             ensemble_all.end - ensemble_all.start, ensemble_all.projected_s)]
    lines = ["", f"## Table 4: its {n} runs (default path): one after another, side by side, one ensemble", ""]
    lines += _table(["schedule", "runs", "train images/s (all runs)", f"measured wall, {epochs} epoch(s) (s)",
                     f"projected, {PROJECTED_EPOCHS} epochs of every run (s)"],
                    [[label, runs, f"{ips:.1f}", f"{wall:.3f}", f"{projected:.1f}"]
                     for label, runs, ips, wall, projected in rows])
    lines += ["", f"Projected {PROJECTED_EPOCHS}-epoch time vs sequential: side by side "
              f"{sequential_projected / side_projected:.2f}x, ensemble of {n} "
              f"{sequential_projected / ensemble.projected_s:.2f}x, ensemble of {n * k} "
              f"{k * sequential_projected / ensemble_all.projected_s:.2f}x. Measured wall excludes warm-up "
              f"(ensemble warm-up: {ensemble.warmup_s:.1f} s and {ensemble_all.warmup_s:.1f} s). "
              f"Seconds per epoch (train + test) of each run:", ""]
    lines += _table(["run", "alone", "side by side"],
                    [[m, f"{a.epoch_s:.4f}", f"{b.epoch_s:.4f}"] for m, a, b in zip(TABLE4_METHODS, alone, together)])
    return lines


def _resnext_section(size: BenchSize, device: torch.device, step) -> list[str]:
    """Section 3: ResNeXt-50 32x4d training throughput, fp32 and bf16 + channels_last."""
    step("ResNeXt-50")
    rows = []
    for label, amp, channels_last in (("fp32 (TF32 on CUDA)", False, False), ("bf16 + channels_last", True, True)):
        if device.type == "cuda":
            torch.cuda.empty_cache()
        ips = resnext_images_per_s(device, size.resnext_batch, size.resnext_px, size.resnext_warmup,
                                   size.resnext_steps, amp, channels_last)
        rows.append([label, size.resnext_batch, size.resnext_px, f"{ips:.1f}"])
    lines = ["", "## ResNeXt-50 32x4d training throughput", ""]
    lines += _table(["precision", "batch", "px", "images/s"], rows)
    lines += ["", f"{size.resnext_warmup} warm-up step(s) excluded, {size.resnext_steps} timed; synthetic tensors "
              f"on the device, so the network alone (no data loading)."]
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lt_paper bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: the real sizes (a GPU); short: sized for about 90 s on an H100 (not yet "
                             "measured); tiny: a seconds-long check (CPU, CI)")
    parser.add_argument("--device", default=None, help="cuda, cuda:N, cpu or auto (default; main section only)")
    parser.add_argument("--out", default=None, help="also write the report here, e.g. results/bench-h100-full.md")
    parser.add_argument("--data-root", default=None,
                        help="real CIFAR-LT data instead of synthetic images (main section only)")
    parser.add_argument("--dataset", default=None, choices=["cifar10_lt", "cifar100_lt"],
                        help="which set --data-root holds (default cifar100_lt; main section only)")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="torch.compile in the fast path (auto: on CUDA only; about 60 s on a CPU)")
    parser.add_argument("--section", choices=["main", "cpu"], default="main",
                        help="main: the sections above (default); cpu: the cifar-cpu profile's network on this "
                             "CPU beside the fp32 matmul ceiling, each CPU path, the projected profile time "
                             "(lt_paper.bench_cpu; --size full: about 2 minutes on an idle 2-core machine)")
    parser.add_argument("--threads-per-process", type=int, default=None,
                        help="CPU threads of each side-by-side process, at least 1 (default: cores / 7; tiny: 1; "
                             "main section only)")
    return parser


# The options only the main section uses: --section cpu measures this CPU on synthetic images of the
# cifar-cpu profile's shape, so it has no device, data, dataset or side-by-side processes to set.
MAIN_SECTION_ONLY = {"device": "--device", "data_root": "--data-root", "dataset": "--dataset",
                     "threads_per_process": "--threads-per-process"}


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the defaults filled in; for an option the chosen section cannot use or a value it cannot
    run with, one line ``error: ...`` and exit status 2 at once, before any section starts (as the other
    subcommands refuse bad input)."""
    def refuse(message: str):
        parser.exit(2, f"error: {message}\n")

    if args.section == "cpu":
        given = [flag for key, flag in MAIN_SECTION_ONLY.items()
                 if getattr(args, key) is not None and not (key == "device" and args.device in ("cpu", "auto"))]
        if given:
            refuse(f"--section cpu measures this CPU on synthetic images and uses no {', '.join(given)}; "
                         f"leave them out (they belong to --section main)")
    if args.threads_per_process is not None and args.threads_per_process < 1:
        refuse(f"--threads-per-process {args.threads_per_process}: at least 1 thread per process")
    if args.data_root is not None and not Path(args.data_root).expanduser().exists():
        refuse(f"--data-root {args.data_root}: no such file or folder (a CIFAR .tar.gz or folder)")
    device = args.device or "auto"
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        refuse(f"--device {device!r}: use cuda, cuda:N, cpu or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        refuse(f"--device {device}: no CUDA device here (use cpu or auto)")
    return argparse.Namespace(**dict(vars(args), device=device, dataset=args.dataset or "cifar100_lt"))


def main(argv: list[str] | None = None) -> int:
    """``python -m lt_paper bench [--size tiny|short|full] [--section main|cpu] [--device D] [--out FILE] ...``;
    returns 0."""
    parser = build_parser()
    args = check_arguments(parser, parser.parse_args(argv))
    if args.section == "cpu":
        from .bench_cpu import run_cpu_bench

        report = run_cpu_bench(SIZES[args.size], compile_mode=args.compile,
                               progress=lambda m: print(m, file=sys.stderr, flush=True))
    else:
        report = run_bench(SIZES[args.size], torch.device(device_type(args.device)), dataset=args.dataset,
                           data_root=args.data_root, compile_mode=args.compile,
                           threads_per_process=args.threads_per_process,
                           progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
