"""Torch's CPU threads when other processes share the cores.

Torch starts one intra-op thread per core. Each parallel region (a convolution, a matrix product)
ends when its slowest thread ends, so when other busy processes share the cores, the scheduler parks
one of ours in nearly every region and the others wait for it. On the 2-core build machine, beside two
busy processes, the smoke Table 4 notebook took 3.91 times its idle time with two threads and 1.25
times with one (results/shared-machine-2core.md, ``scripts/shared_machine.sh``); one thread on an idle
machine, though, trains the cifar-cpu network at about half the rate of two (results/bench-shared-2core.md).

So the engine chooses before every epoch: as many threads as the cores that other processes left free
since the last choice (at least one, at most the cores). It reads the whole machine's busy time
(``/proc/stat``) and takes away this process's own CPU time over the same stretch, so our own threads,
spinning or not, never count as "others". Where ``/proc/stat`` is missing (not Linux) torch's default
stands.

``OMP_NUM_THREADS`` set in the environment turns this off: the user's choice wins, and every check
that compares runs number for number fixes the threads (a thread count changes the order of
floating-point sums, so a run trained with 1 thread differs in rounding from one trained with 2; each
epoch's thread count is in ``history.json``).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import torch

# a choice reads a stretch of at least this long (seconds): /proc/stat counts in ticks of 10 ms
MIN_WINDOW_S = 0.25


def machine_busy_s(stat_path: str = "/proc/stat") -> float | None:
    """CPU seconds every process on the machine has used since boot (the first line of /proc/stat:
    all but idle and iowait; guest time is already inside user time); None where it cannot be read."""
    try:
        with open(stat_path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def threads_for(cores: int, others_busy: float) -> int:
    """Threads for a process that shares ``cores`` with others busy on ``others_busy`` cores (a mean
    over the last stretch): the free cores, rounded half up, at least one."""
    free = cores - max(others_busy, 0.0)
    return max(1, min(cores, int(free + 0.5)))


class ThreadChooser:
    """Sets torch's intra-op threads before each epoch from what other processes used since the last
    call (``choose``). Inactive (``choose`` returns None and changes nothing) when ``OMP_NUM_THREADS`` is
    set or the machine's busy time cannot be read."""

    def __init__(self, cores: int | None = None, *, busy: Callable[[], float | None] = machine_busy_s,
                 own_cpu: Callable[[], float] = time.process_time, clock: Callable[[], float] = time.monotonic,
                 set_threads: Callable[[int], None] = torch.set_num_threads, env=None,
                 sleep: Callable[[float], None] = time.sleep):
        env = os.environ if env is None else env
        self.cores = cores or os.cpu_count() or 1
        self.busy, self.own_cpu, self.clock, self.set_threads, self.sleep = busy, own_cpu, clock, set_threads, sleep
        self.active = "OMP_NUM_THREADS" not in env and busy() is not None
        self.last = self._sample() if self.active else None
        self.others_busy: float | None = None  # cores the others used over the last stretch
        self.threads: int | None = None  # the last choice

    def _sample(self) -> tuple[float, float, float]:
        return self.busy(), self.own_cpu(), self.clock()

    def choose(self) -> int | None:
        """Set and return the threads for what comes next; None when inactive. An epoch shorter than
        ``MIN_WINDOW_S`` keeps the last choice and lets the stretch grow (tiny epochs: no cost per epoch);
        only the first choice of a run waits, once, for a stretch long enough to read."""
        if not self.active:
            return None
        waited = self.clock() - self.last[2]
        if waited < MIN_WINDOW_S:
            if self.others_busy is not None:
                return self.threads
            self.sleep(MIN_WINDOW_S - waited)
        now = self._sample()
        (busy0, own0, t0), (busy1, own1, t1) = self.last, now
        self.last = now
        self.others_busy = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9)
        self.threads = threads_for(self.cores, self.others_busy)
        self.set_threads(self.threads)
        return self.threads
