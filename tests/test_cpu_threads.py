"""The engine's CPU thread choice (lt_paper.train.cpu_threads) and the benchmark that measures it
(lt_paper.bench.shared_cpu): the busy time read from /proc/stat, the cores others use, the threads
chosen from them, the switch that turns it off, its wiring into the epoch loop and history.json."""

from __future__ import annotations

import contextlib
import json
import os
import time

import pytest
import torch

from lt_paper.bench import shared_cpu
from lt_paper.bench.core import SIZES
from lt_paper.bench.core import profile_config
from lt_paper.train import cpu_threads, engine, ensemble
from lt_paper.train.cpu_threads import ThreadChooser, machine_busy_s, threads_for


def test_busy_seconds_are_all_but_idle_and_iowait_over_the_clock_rate(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user already)
    stat.write_text("cpu  100 20 30 5000 40 6 7 8 90 10\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    hz = os.sysconf("SC_CLK_TCK")
    assert machine_busy_s(str(stat)) == pytest.approx((100 + 20 + 30 + 6 + 7 + 8) / hz)
    stat.write_text("intr 1 2 3\n")
    assert machine_busy_s(str(stat)) is None
    assert machine_busy_s(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("cores, others, threads", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 2.0, 1), (2, 5.0, 1), (2, -0.3, 2),
    (1, 0.0, 1), (16, 3.2, 13), (16, 3.6, 12),
])
def test_threads_are_the_free_cores_rounded_half_up_at_least_one(cores, others, threads):
    assert threads_for(cores, others) == threads


class FakeMachine:
    """A clock, the machine's busy seconds and this process's CPU seconds, moved by hand."""

    def __init__(self):
        self.t, self.busy_s, self.own_s, self.slept, self.set = 100.0, 1000.0, 10.0, [], []

    def chooser(self, cores=2, env=None):
        return ThreadChooser(cores, busy=lambda: self.busy_s, own_cpu=lambda: self.own_s, clock=lambda: self.t,
                             set_threads=self.set.append, env={} if env is None else env,
                             sleep=lambda s: (self.slept.append(s), self.advance(s, 0.0, 0.0)))

    def advance(self, seconds, others_cores, own_cores):
        self.t += seconds
        self.own_s += own_cores * seconds
        self.busy_s += (others_cores + own_cores) * seconds


def test_the_chooser_counts_only_other_processes_and_sets_torch_threads_each_epoch():
    m = FakeMachine()
    chooser = m.chooser(cores=2)
    m.advance(5.0, others_cores=0.0, own_cores=2.0)  # an epoch of ours on both cores, alone
    assert chooser.choose() == 2 and chooser.others_busy == pytest.approx(0.0)
    m.advance(5.0, others_cores=1.3, own_cores=0.7)  # others start: our own spinning never counts as theirs
    assert chooser.choose() == 1 and chooser.others_busy == pytest.approx(1.3)
    m.advance(5.0, others_cores=0.2, own_cores=1.0)  # they stop
    assert chooser.choose() == 2
    assert m.set == [2, 1, 2] and m.slept == []


def test_only_the_first_choice_waits_and_short_epochs_keep_the_last_choice_until_the_stretch_is_long():
    m = FakeMachine()
    chooser = m.chooser(cores=4)
    m.advance(0.05, others_cores=0.0, own_cores=1.0)
    assert chooser.choose() == 4
    assert m.slept == [pytest.approx(cpu_threads.MIN_WINDOW_S - 0.05)]
    for _ in range(4):  # epochs of 0.1 s with three busy processes beside: no wait, the choice stands...
        m.advance(0.1, others_cores=3.0, own_cores=1.0)
        if m.t - chooser.last[2] < cpu_threads.MIN_WINDOW_S:
            assert chooser.choose() == 4
    assert chooser.choose() == 1  # ...until the stretch is long enough to read
    assert len(m.slept) == 1 and m.set == [4, 1]


def test_omp_num_threads_or_an_unreadable_machine_turn_the_choice_off():
    m = FakeMachine()
    chooser = m.chooser(env={"OMP_NUM_THREADS": "3"})
    m.advance(5.0, others_cores=2.0, own_cores=0.0)
    assert not chooser.active and chooser.choose() is None and m.set == []
    blind = ThreadChooser(2, busy=lambda: None, set_threads=m.set.append, env={})
    assert not blind.active and blind.choose() is None and m.set == []


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat (Linux)")
def test_a_busy_process_is_seen_as_another_process_on_this_machine():
    """The real /proc/stat: one busy process for a second while this one sleeps is at least most of a core
    used by others (more when the machine has other work: no upper bound holds on a shared machine)."""
    with shared_cpu.busy_processes(1) as procs:
        time.sleep(0.5)  # the interpreter is started
        chooser = ThreadChooser(env={})
        time.sleep(1.0)
        chooser.choose()
        assert all(p.poll() is None for p in procs)
    assert chooser.others_busy >= 0.7
    assert all(p.poll() is not None for p in procs)  # killed when the block ends


@pytest.mark.parametrize("trainer", ["train", "train_ensemble"])
def test_each_epoch_runs_with_the_chosen_threads_and_history_records_them(trainer, tmp_path, monkeypatch):
    """The wiring, alone and in a batched ensemble: a choice before every epoch, its thread count in that
    epoch's history entry (of every member)."""
    before = torch.get_num_threads()
    plan = iter([1, 2, 1, 2, 1])
    calls = []

    def choose(self):
        calls.append(n := next(plan))
        torch.set_num_threads(n)
        return n

    monkeypatch.setattr(ThreadChooser, "choose", choose)
    try:
        if trainer == "train":
            engine.train("smoke/resnet8/ce", runs_dir=tmp_path, epochs=5, progress=False)
        else:
            ensemble.train_ensemble(["smoke/resnet8/ce", "smoke/resnet8/ala"], runs_dir=tmp_path, epochs=5,
                                    progress=False)
    finally:
        torch.set_num_threads(before)
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert calls == [1, 2, 1, 2, 1] and len(runs) == (1 if trainer == "train" else 2)
    for run in runs:
        history = json.loads((run / "history.json").read_text())
        assert [h["threads"] for h in history] == [1, 2, 1, 2, 1], run.name


def test_the_shared_machine_table_puts_each_setting_alone_beside_shared(monkeypatch):
    measured = []

    def fake(size, config, variables):
        measured.append(variables)
        shared = len(measured) % 2 == 0  # alone first, then beside the busy processes
        return {"images_per_s": 300.0 if shared else 1200.0, "threads": [1, 1] if shared else [2, 2], "train_s": 1}

    monkeypatch.setattr(shared_cpu, "measure_setting", fake)
    monkeypatch.setattr(shared_cpu, "busy_processes", lambda n: _nothing())
    lines = shared_cpu.shared_machine_table(SIZES["tiny"], profile_config("ala", SIZES["tiny"]), step=lambda _: None)
    rows = [line for line in lines if line.startswith("| ") and "setting" not in line]
    assert len(rows) == len(shared_cpu.settings(os.cpu_count())) == 4
    assert all(row.split(" | ")[1:] == ["2", "1200", "1", "300", "4.00 |"] for row in rows), rows
    assert measured[0] == {} and {"OMP_NUM_THREADS": "1"} in measured


def _nothing():
    return contextlib.nullcontext([])


def test_a_setting_is_measured_in_a_fresh_process_with_only_its_own_variables(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the parent's variables do not reach the child
    result = shared_cpu.measure_setting(SIZES["tiny"], profile_config("ala", SIZES["tiny"]), {"OMP_NUM_THREADS": "1"})
    assert result["threads"] == [1, 1, 1] and result["images_per_s"] > 0
    assert result["variables"] == {"OMP_NUM_THREADS": "1"}
