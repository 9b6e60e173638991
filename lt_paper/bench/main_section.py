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

import sys
import time

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils import benchmark
from torch.utils.data import DataLoader, Dataset

from ..data import load_dataset
from ..data.containers import ArrayDataset, LongTailData
from ..models import build_model
from ..train.config import Config, fast_path_overrides
from ..train.parallel import run_side_by_side
from ..train.presets import get_preset
from ..train.provenance import provenance
from ..train.resolve import resolve_run_config
from .core import (PROJECTED_EPOCHS, BenchSize, EpochTimes, markdown_table, synthetic_long_tail, time_engine,
                   time_ensemble, time_epochs, torch_threads)

# Table 4 of the paper, rows 1-7 (presets of lt_paper.train.presets).
TABLE4_METHODS = ("ce", "ldam_drw", "ains", "acls", "focal_acls", "ldam_ains", "ala")
ENSEMBLE_SEEDS = (0, 1, 2)  # the 21-run ensemble: Table 4's rows x three seeds
REFERENCE_TEST_BATCH = 100  # LDAM-DRW's validation loader


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
    return resolve_run_config(base, dict(arch=size.arch, batch_size=size.batch_size, device=device.type,
                                         progress=False, **overrides), data=False)


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
    lines += markdown_table(["path", "warm-up (s)", "train s/epoch", "test s/epoch", "train images/s",
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
    lines += markdown_table(["schedule", "runs", "train images/s (all runs)", f"measured wall, {epochs} epoch(s) (s)",
                     f"projected, {PROJECTED_EPOCHS} epochs of every run (s)"],
                    [[label, runs, f"{ips:.1f}", f"{wall:.3f}", f"{projected:.1f}"]
                     for label, runs, ips, wall, projected in rows])
    lines += ["", f"Projected {PROJECTED_EPOCHS}-epoch time vs sequential: side by side "
              f"{sequential_projected / side_projected:.2f}x, ensemble of {n} "
              f"{sequential_projected / ensemble.projected_s:.2f}x, ensemble of {n * k} "
              f"{k * sequential_projected / ensemble_all.projected_s:.2f}x. Measured wall excludes warm-up "
              f"(ensemble warm-up: {ensemble.warmup_s:.1f} s and {ensemble_all.warmup_s:.1f} s). "
              f"Seconds per epoch (train + test) of each run:", ""]
    lines += markdown_table(["run", "alone", "side by side"],
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
    lines += markdown_table(["precision", "batch", "px", "images/s"], rows)
    lines += ["", f"{size.resnext_warmup} warm-up step(s) excluded, {size.resnext_steps} timed; synthetic tensors "
              f"on the device, so the network alone (no data loading)."]
    return lines
