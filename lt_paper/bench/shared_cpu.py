"""The last table of ``bench --section cpu`` (alone: ``--section shared``): one CPU run on the machine as it
is, and beside busy processes.

A new user's machine is rarely idle. Each setting below (torch's threads and OpenMP's wait policy, which
OpenMP reads once, when it starts: so every setting is measured in a fresh process) trains the profile's
single network on synthetic images for the section's steps, twice: alone, then beside as many busy
processes as the machine has cores (each a Python loop that never sleeps, as ``yes > /dev/null`` would
be). The table measures the section's ALA config of the profile's single network. The settings:

- ``lt_paper's default``: nothing set, the engine chooses the threads before each epoch
  (:mod:`lt_paper.train.cpu_threads`);
- ``OMP_NUM_THREADS=<cores>``: torch's own default, one thread per core, OpenMP's default wait
  (a waiting thread spins a while before it sleeps);
- the same with ``OMP_WAIT_POLICY=PASSIVE`` (a waiting thread sleeps at once);
- ``OMP_NUM_THREADS=1``.

The table gives training images/s of each, alone and shared, and the ratio of their times (shared / alone):
the setting to use is the one fast alone whose ratio stays small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager

import torch

from ..train.config import Config, from_dict, to_dict
from ..train.cpu_threads import ThreadChooser
from ..train.provenance import provenance
from .core import SIZES, BenchSize, load_average, markdown_table, profile_config, profile_data, time_engine

BUSY_LOOP = "while True: pass"
# the variables that choose a setting; cleared in each measured child so that only the setting's own apply
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def settings(cores: int) -> dict[str, dict[str, str]]:
    """Label -> the environment variables of each measured setting."""
    return {
        "lt_paper's default (nothing set: threads chosen per epoch)": {},
        f"OMP_NUM_THREADS={cores} (torch's default threads and wait)": {"OMP_NUM_THREADS": str(cores)},
        f"OMP_NUM_THREADS={cores}, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": str(cores),
                                                               "OMP_WAIT_POLICY": "PASSIVE"},
        "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
    }


@contextmanager
def busy_processes(count: int):
    """``count`` processes that keep a core busy each until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def measure_setting(size: BenchSize, config: Config, variables: dict[str, str]) -> dict:
    """Train ``config`` in a fresh process with ``variables``; its images/s, threads per epoch and seconds."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(variables)
    done = subprocess.run([sys.executable, "-m", "lt_paper.bench.shared_cpu", size.name, json.dumps(to_dict(config))],
                          env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"bench cpu, shared machine: the child with {variables or 'nothing set'} failed:\n"
                           f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def shared_machine_table(size: BenchSize, config: Config, step=print) -> list[str]:
    """The section's report lines: ``config`` under every setting, alone and beside ``cores`` busy processes."""
    cores = os.cpu_count() or 1
    rows = []
    for label, variables in settings(cores).items():
        step(f"shared machine: {label}, alone")
        alone = measure_setting(size, config, variables)
        step(f"shared machine: {label}, beside {cores} busy processes")
        with busy_processes(cores):
            shared = measure_setting(size, config, variables)
        rows.append([label, _threads(alone), f"{alone['images_per_s']:.0f}", _threads(shared),
                     f"{shared['images_per_s']:.0f}", f"{alone['images_per_s'] / shared['images_per_s']:.2f}"])
    lines = ["", f"## A shared machine: alone and beside {cores} busy processes", "",
             f"The profile's single network, {size.cpu_steps} steps of {size.batch_size} images per timed epoch, "
             f"in a fresh process per setting; the busy processes are Python loops that never sleep, one per core. "
             f"Threads: torch's intra-op threads in the timed epochs. Ratio: time beside the busy processes over "
             f"time alone.", ""]
    lines += markdown_table(["setting", "threads alone", "images/s alone", "threads shared",
                             "images/s shared", "ratio"], rows)
    return lines


def run_shared_bench(size: BenchSize, progress=print) -> str:
    """``bench --section shared``: the table alone, for the profile's ALA single network, with provenance."""
    config = profile_config("ala", size)
    lines = [f"# lt_paper bench, shared-machine table: size {size.name}, {provenance(torch.device('cpu'))['device']}",
             "", f"Load average at the start: {load_average()}."]
    lines += shared_machine_table(size, config, progress)
    info = provenance(torch.device("cpu"), bench_size=size.name, load_average_end=load_average(),
                      argv=" ".join(sys.argv))
    return "\n".join([*lines, "", "## Provenance", "", *(f"- {k}: {v}" for k, v in info.items())]) + "\n"


def _threads(measured: dict) -> str:
    return "/".join(str(t) for t in sorted(set(measured["threads"])))


def child(size: BenchSize, config: Config) -> dict:
    """What one setting's process measures: ``config`` through the engine's epoch loop, the thread choice
    included (one warm-up epoch, then timed epochs); also used by ``bench --section recipe-cpu``."""
    chooser, threads = ThreadChooser(), []

    def before_epoch() -> None:
        chooser.choose()
        threads.append(torch.get_num_threads())

    data = profile_data(size)
    times = time_engine(config, data, torch.device("cpu"), 1, 3, before_epoch=before_epoch)
    return {"images_per_s": times.images_per_s, "threads": threads[1:], "train_s": times.train_s,
            "test_images_per_s": len(data.test) / times.eval_s,
            # the warm-up epoch's seconds beyond an ordinary epoch: compilation, first allocations
            "first_epoch_extra_s": max(times.warmup_s - times.train_s - times.eval_s, 0.0),
            "variables": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}}


if __name__ == "__main__":
    print(json.dumps(child(SIZES[sys.argv[1]], from_dict(json.loads(sys.argv[2])))))
