"""``python -m lt_paper bench --section cpu``: how fast the `cifar-cpu` profile trains on this CPU.

The report (Markdown) measures, on synthetic images of CIFAR's shape (speed does not depend on the
pixels), the profile's network (``presets.CPU_ARCH``) with batch 128 and a cosine head (the ALA preset):

1. the fp32 matrix-multiply rate of this machine, measured before and after the section (the ceiling
   that convolutions, lowered to matrix products on a CPU, can approach; the two readings show how
   steady the machine was);
2. training images/s of each CPU path: eager (torch's default memory format), channels_last (the
   profile's path), channels_last with a fused SGD step, channels_last on one thread, torch.compile
   (only with ``--compile on``: its first epoch compiles, about a minute on 2 cores), and the four
   single networks of the core set as one batched ensemble (``train_ensemble``; channels_last does not
   apply there) against the same four one after another. Beside each: the arithmetic rate it reaches
   (3 x the forward FLOPs per image: forward plus a backward of twice its cost) and its share of the
   ceiling, the figure to improve; the first-epoch overhead (compilation, allocation) and the projected
   seconds of one profile run (``CPU_EPOCHS`` epochs of the 12,406 CIFAR-10-LT IF 100 training images,
   a test pass of the 10,000 test images every ``CPU_EVAL_EVERY`` epochs and at the end);
3. per network of the profile (single, 3, 4 and 6 experts) on the profile's path: training and test
   images/s, seconds per epoch and per run, how many runs of each the core set and the whole profile
   hold, and the projected time of both. The distilled student counts as a single network plus the
   6-expert teacher's forward pass over each training image. Not counted: the campaign's probes (about
   4 epochs per network), decoding the tarball once (cached afterwards), Python and notebook start-up;
4. a shared machine (sizes short and full): the single network under each thread setting (the engine's
   own choice, torch's default with OpenMP's default and passive wait policy, one thread), alone and
   beside one busy process per core (``lt_paper.bench.shared_cpu``).

Timings exclude a warm-up epoch and cover a few dozen steps (``--size``: 12 steps of 128 images per
timed epoch, two timed epochs; ``tiny``: a seconds-long check for CI, meaningless as a measurement). A
CPU shared with other work slows down several times over, and unevenly: report the machine's load
with the numbers, and repeat.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import torch
from torch.utils import benchmark

from ..models.complexity import count_flops
from ..train.config import Config
from ..train.engine import build_for
from ..train.presets import CPU_ARCH, get_preset
from ..train.provenance import provenance
from ..workflows.experiments import TEACHER_METHOD
from ..workflows.rows import CORE_METHODS, NOTEBOOK_ROWS
from .core import (PREFIX, BenchSize, load_average, markdown_table, profile_config, profile_data, time_engine,
                   time_ensemble, torch_threads)
from .shared_cpu import shared_machine_table

CIFAR10_LT_TRAIN = 12_406  # training images of CIFAR-10-LT at imbalance 100 (docs/decisions.md, decision 3)
CIFAR10_TEST = 10_000
KINDS = {"single network": "ala", "MoE, 3 experts": "ala_moe3", "MoE, 4 experts": "ala_moe4",
         "MoE, 6 experts": "ala_moe6"}  # the profile's networks, each measured with the ALA loss


def matmul_gflops(n: int, repeats: int = 5) -> float:
    """fp32 GFLOP/s of an (n, n) x (n, n) matrix product on the CPU with torch's current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: allocation, thread pool start
    timer = benchmark.Timer("a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads())
    return 2 * n ** 3 / timer.timeit(repeats).mean / 1e9


def evaluations(config: Config) -> int:
    """Test passes of a run: every ``eval_every``-th epoch and the last (``engine.is_eval_epoch``)."""
    return config.epochs // config.eval_every + (config.epochs % config.eval_every != 0)


def run_seconds(config: Config, train_ips: float, test_ips: float, overhead_s: float = 0.0) -> float:
    """Projected seconds of one profile run at these rates (CIFAR-10-LT IF 100 sizes)."""
    return (overhead_s + config.epochs * CIFAR10_LT_TRAIN / train_ips
            + evaluations(config) * CIFAR10_TEST / test_ips)


def profile_run_counts(rows: str) -> Counter:
    """Runs of the profile (one seed) per network kind: "single network", "MoE, K experts" or
    "distilled" (the student; its teacher counts as a 6-expert MoE). ``rows``: "all" or "core"."""
    methods = {m for notebook_rows, _ in NOTEBOOK_ROWS.values() for m in notebook_rows.values()
               if rows == "all" or m in CORE_METHODS}
    counts: Counter = Counter()
    for method in methods:
        config = get_preset(f"{PREFIX}/{CPU_ARCH}/{method}")
        if config.distill:
            counts["distilled"] += 1
            if TEACHER_METHOD not in methods:  # the teacher trains for the student, not for a row
                teacher = get_preset(f"{PREFIX}/{CPU_ARCH}/{TEACHER_METHOD}")
                counts[f"MoE, {teacher.num_experts} experts"] += 1
        elif config.num_experts > 1:
            counts[f"MoE, {config.num_experts} experts"] += 1
        else:
            counts["single network"] += 1
    return counts


def run_cpu_bench(size: BenchSize, compile_mode: str = "auto", progress=print) -> str:
    """Measure and return the report (Markdown); ``compile_mode`` "on" adds the torch.compile path."""
    began = time.perf_counter()

    def step(message: str) -> None:
        progress(f"[{time.perf_counter() - began:6.1f} s] bench cpu: {message}")

    cpu = torch.device("cpu")
    with torch_threads(size.threads):
        threads = torch.get_num_threads()
        data = profile_data(size)
        step("matmul ceiling")
        ceiling_before = matmul_gflops(size.matmul_n)
        profile = profile_config("ala", size)
        flops = 3 * count_flops(build_for(profile, 10), (3, size.px, size.px))  # per training image
        lines = [f"# lt_paper bench, CPU section: size {size.name}, {provenance(cpu)['device']}", "",
                 f"The `cifar-cpu` profile's network ({CPU_ARCH}, {profile.epochs} epochs, batch {size.batch_size}, "
                 f"{size.px}x{size.px} synthetic images, cosine head) on {threads} thread(s); "
                 f"{size.cpu_steps} steps per timed epoch, one warm-up epoch excluded. Load average at the start: "
                 f"{load_average()}.", ""]
        paths = _paths(size, data, compile_mode, step)
        kinds = {}
        for kind, method in KINDS.items():
            step(kind)
            kinds[kind] = time_engine(profile_config(method, size), data, cpu, 1, 2)
        ceiling_after = matmul_gflops(size.matmul_n)
        ceiling = (ceiling_before + ceiling_after) / 2
        lines += [f"fp32 matmul ceiling ({size.matmul_n} x {size.matmul_n}): {ceiling_before:.1f} GFLOP/s before, "
                  f"{ceiling_after:.1f} after this section; the share below is of their mean, {ceiling:.1f}. "
                  f"Training FLOPs per image: 3 x {flops // 3:,} (forward).", ""]
        lines += _paths_table(paths, profile, flops, ceiling, len(data.test))
        lines += _kinds_table(kinds, profile, len(data.test))
        if size.name == "tiny":  # eight fresh processes of seconds each: not for CI's seconds-long check
            lines += ["", "The shared-machine table (every thread setting alone and beside busy processes) is "
                          "measured at sizes short and full only."]
        else:
            lines += shared_machine_table(size, profile, step)
        info = provenance(cpu, bench_size=size.name, threads=threads, load_average_end=load_average(),
                          argv=" ".join(sys.argv))
    lines += ["", "## Provenance", "", *(f"- {k}: {v}" for k, v in info.items())]
    step("done")
    return "\n".join(lines) + "\n"


def _paths(size: BenchSize, data, compile_mode: str, step) -> list[tuple[str, object, int]]:
    """(label, EpochTimes, runs) per CPU path, one ALA run each (the ensemble rows: four runs)."""
    cpu = torch.device("cpu")
    eager = dict(channels_last=False)
    paths = []
    for label, overrides, threads in (("eager (default memory format)", eager, None),
                                      ("channels_last (the profile's path)", {}, None),
                                      ("channels_last + fused SGD", dict(fused_optimizer=True), None),
                                      ("channels_last, 1 thread", {}, 1)):
        step(label)
        with torch_threads(threads):
            paths.append((label, time_engine(profile_config("ala", size, **overrides), data, cpu, 1, 2), 1))
    if compile_mode == "on":
        step("torch.compile")
        paths.append(("torch.compile + channels_last (first epoch compiles)",
                      time_engine(profile_config("ala", size, compile=True), data, cpu, 1, 2), 1))
    singles = [m for m in CORE_METHODS if get_preset(f"{PREFIX}/{CPU_ARCH}/{m}").num_experts == 1]
    step(f"{len(singles)} core single networks, one after another")
    alone = [time_engine(profile_config(m, size), data, cpu, 1, 2) for m in singles]
    step(f"{len(singles)} core single networks as one ensemble")
    together = time_ensemble([profile_config(m, size) for m in singles], data, cpu, 1, 2)
    paths.append((f"{len(singles)} core single networks one after another (channels_last)", _sequential(alone),
                  len(singles)))
    paths.append((f"{len(singles)} core single networks as one batched ensemble", together, len(singles)))
    return paths


def _sequential(times: list) -> object:
    """The EpochTimes of runs trained one after another: their times add up."""
    first = times[0]
    return type(first)(warmup_s=sum(t.warmup_s for t in times), train_s=sum(t.train_s for t in times),
                       eval_s=sum(t.eval_s for t in times), images_per_epoch=sum(t.images_per_epoch for t in times))


def _overhead(times) -> float:
    """First-epoch cost beyond an ordinary epoch (compilation, allocation), seconds, >= 0."""
    return max(times.warmup_s - times.train_s - times.eval_s, 0.0)


def _paths_table(paths, profile: Config, flops: int, ceiling: float, test_images: int) -> list[str]:
    rows = []
    for label, t, runs in paths:
        achieved = t.images_per_s * flops / 1e9
        # one profile run each, all ``runs`` one after another or batched: the same total images
        wall = run_seconds(profile, t.images_per_s / runs, test_images / t.eval_s) + _overhead(t)
        rows.append([label, f"{t.images_per_s:.0f}", f"{achieved:.1f}", f"{100 * achieved / ceiling:.0f}",
                     f"{_overhead(t):.1f}", f"{runs * CIFAR10_LT_TRAIN / t.images_per_s:.1f}", f"{wall:.0f}"])
    lines = ["## Training paths (one ALA run; the last two rows: the core set's single networks together)", ""]
    lines += markdown_table(["path", "train images/s", "GFLOP/s", "% of ceiling", "first-epoch overhead (s)",
                     "s per CIFAR-10-LT epoch (train)", f"projected s, {profile.epochs}-epoch run(s)"], rows)
    return lines


def _kinds_table(kinds: dict, profile: Config, test_images: int) -> list[str]:
    """Per network kind: rates, seconds per run, and the core set's and whole profile's projection."""
    rates = {kind: (t.images_per_s, test_images / t.eval_s) for kind, t in kinds.items()}
    single_train, single_test = rates["single network"]
    teacher_test = rates["MoE, 6 experts"][1]
    # the student: a single network's step plus the teacher's forward pass over each training image
    rates["distilled"] = (1 / (1 / single_train + 1 / teacher_test), single_test)
    core, whole = profile_run_counts("core"), profile_run_counts("all")
    rows, core_s, whole_s = [], 0.0, 0.0
    for kind, (train_ips, test_ips) in rates.items():
        seconds = run_seconds(profile, train_ips, test_ips)
        core_s += core[kind] * seconds
        whole_s += whole[kind] * seconds
        rows.append([kind, f"{train_ips:.0f}", f"{test_ips:.0f}", f"{CIFAR10_LT_TRAIN / train_ips:.1f}",
                     f"{CIFAR10_TEST / test_ips:.1f}", f"{seconds:.0f}", core[kind], whole[kind]])
    lines = ["", f"## The profile's networks on its path ({profile.epochs} epochs, tested {evaluations(profile)} "
                 f"times per run)", ""]
    lines += markdown_table(["network", "train images/s", "test images/s", "s per epoch (train)", "s per test pass",
                     "s per run", "runs, core set", "runs, whole profile"], rows)
    lines += ["", f"Projected: core set ({sum(core.values())} runs) {core_s:.0f} s = {core_s / 60:.1f} min; whole "
                  f"profile ({sum(whole.values())} runs) {whole_s:.0f} s = {whole_s / 3600:.2f} h. Not counted: the "
                  f"campaign's probes (4 epochs per network kind), decoding the tarball once, start-up."]
    return lines
