"""``python -m lt_paper campaign``: train the runs a profile's notebooks need, most important first,
inside a time budget (a GPU lent for a few minutes).

What it trains is derived from the same places the notebooks use: the profile's notebook parameters
(:data:`lt_paper.workflows.reproduce.PROFILES`) and the row definitions (:mod:`lt_paper.workflows.rows`). Each run's config
is resolved as ``run_rows`` resolves it, so a run trained here is the run a notebook finds afterwards
(``reproduce --no-train`` reads it). Runs shared by notebooks are listed once.

Priority (the order in which the budget is spent):

1. the first seed of Table 4's rows (the ALA ablation: the paper's central claim);
2. the Table 1 / CIFAR-LT main-results rows (baselines and the MoE);
3. Table 5 (router ablation; RIDE*), then the figures' rows (Figures 1 and 4 reuse table rows);
4. distillation: the 6-expert teacher, then its student (the student needs the finished teacher);
5. the other seeds (seed 1 before seed 2), in the same order.

Runs that can train together (same data, network shape, schedule, optimizer and device settings:
:func:`lt_paper.train.grouping.ensemble_key`) form a pack, trained by ``lt_paper.train.train_ensemble``
as one batched model;
packs never mix the first seed with the others, so the first seed's tables complete first. Before a
pack trains, a probe measures it: the pack trains for 1 and for 3 epochs in a scratch folder (deleted
afterwards), which gives a fixed cost and a cost per epoch; the estimate for the real epochs is
``fixed + epochs * per_epoch``. A pack trains only if its estimate (times :data:`SAFETY`, plus
:data:`MARGIN_S`) fits in what is left of the budget; otherwise it is cut to its
higher-priority half until it fits (a smaller pack is probed again), and what cannot fit is reported as skipped.
Probes count against the budget, and no probe outlasts it: the first probe runs under a time limit (what
is left of the budget: a probe cut short skips its pack, and the budget is spent), and the longer one
starts only when it and the pack itself could still fit (the longer probe takes at most 3 times the short
one, the pack at least the short one; otherwise the pack is halved, as when its estimate does not fit,
and the same kind and size is not probed again). One probe serves every later pack of the same kind and size. A
teacher trains only if the time for its student is left as well (taken as the teacher's own cost):
published runs keep no weights, so a student must train in the same campaign as its teacher.

Two campaigns on one runs directory never train the same run: a campaign holds a lock file per run it
trains (``<runs_dir>/.<run>.train.lock``, :mod:`lt_paper.files.locks`) from before its pack is probed until the
pack ends; a run another live process holds is left to it and reported as in use, and a run found
finished once its lock is held is not trained again. A lock left by a killed campaign is taken over.

Nothing here can leave a run that looks finished and is not: runs train through the engine, which
writes ``metrics.json`` last, and a campaign stopped from outside (``timeout``) leaves at most a
resumable ``checkpoint.pt``.

``rows="core"`` (``--rows core``) keeps only the core set (:data:`lt_paper.workflows.rows.CORE_METHODS`): the runs
behind Figures 1 and 4 and the ALA rows, what a laptop trains first on the `cifar-cpu` profile.

Packs on the CPU: one run each, trained by ``train`` one after another, as ``run_rows`` trains on the
CPU: there the batched ensemble was not reliably faster, and it cannot train channels_last, the fastest
CPU path measured (docs/real-data-on-a-laptop.md). A pack of one also keeps the budget fine-grained,
and one probe serves every run of its network.

    python -m lt_paper campaign --profile cifar --budget 300 --runs-dir results/cifar10_lt_if100/runs --plan
    python -m lt_paper campaign --profile smoke --budget 60 --runs-dir runs --set epochs=2
    python -m lt_paper campaign --profile cifar-cpu --rows core --budget 3600 --runs-dir runs
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..data import load_dataset
from ..files.locks import hold_lock
from .experiments import TEACHER_METHOD, preset_name, run_mode
from .outputs import check_seeds, resolve_path
from .reproduce import jobs_for, notebook_parameters, split_overrides
from .rows import NOTEBOOK_ROWS, ROW_SETS
from ..train import train
from ..train.config import Config, apply_overrides
from ..train.distributed import device_type
from ..train.engine import FINAL_MODEL, find_finished_run, is_finished, run_dir_for
from ..train.ensemble import train_ensemble
from ..train.grouping import ensemble_key, pack_indices
from ..train.resolve import resolve_run_config

# Campaign priority of the notebooks' rows; distillation rows are moved to their own section, after these.
SECTIONS = ("table 4", "table 1", "table 5", "figures", "distillation")
NOTEBOOK_SECTION = {
    "table4_ala_ablation": "table 4",
    "table1_3_main_results": "table 1",
    "table5_router_ablation": "table 5",
    "figure1_hard_samples": "figures",
    "figure4_router_weights": "figures",
}
SAFETY = 1.1  # estimates are multiplied by this before comparing them with the time left
MARGIN_S = 2.0  # and this much is kept free after the pack would end
# The probe's two short runs; 3 epochs reach DRW and the router switch-on. With the default evaluation
# after every epoch, the measured cost per epoch includes it; a run that evaluates only every N >= 3
# epochs is underestimated by its evaluations beyond the probe's one (SAFETY covers a few).
PROBE_EPOCHS = (1, 3)
DEFAULT_MAX_MEMBERS = 21  # runs in one batched pack (Table 4 x 3 seeds); on the CPU a pack is one run


class BudgetSpent(BaseException):
    """The budget ran out while a probe trained (it was stopped). A BaseException, as KeyboardInterrupt
    is, so that no ``except Exception`` inside the trainer takes it for a training error."""


class ProbeTooCostly(Exception):
    """What a probe measured so far says that the rest of it and its pack cannot fit the budget."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`BudgetSpent` in the body after ``seconds`` (SIGALRM; in the main thread only, where
    Python runs signal handlers: elsewhere the body runs unlimited)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise BudgetSpent(f"budget spent while probing (stopped after {seconds:.0f} s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

@dataclass(frozen=True)
class PlannedRun:
    """One run a profile's notebooks need, with the directory ``train`` will put it in."""

    label: str  # "<notebook>:<row>" of the highest-priority notebook row that needs it
    needed_by: tuple[str, ...]  # every notebook that reads it
    section: str  # one of SECTIONS
    seed: int
    first_seed: bool  # the profile's first seed (trained before the others)
    config: Config  # resolved as train() resolves it (device-dependent defaults filled in)
    run_dir: Path
    finished: bool

    @property
    def teacher_dir(self) -> Path | None:
        return Path(self.config.teacher) if self.config.distill and self.config.teacher else None

    @property
    def name(self) -> str:
        return f"{self.label} s{self.seed}"


def expected_run_dir(config: Config, runs_dir: Path) -> Path:
    """Where ``train`` puts ``config`` (as resolved by :func:`lt_paper.train.resolve.resolve_run_config`) under ``runs_dir``."""
    return run_dir_for(Path(runs_dir), config, force=False)


def planned_run_dir(config: Config, runs_dir: Path) -> Path:
    """The finished run of ``config``'s recipe in ``runs_dir`` (``engine.find_finished_run``: also one
    trained on another device or kernel path, which the notebooks read as this run), else where ``train``
    will put it."""
    return find_finished_run(Path(runs_dir), config) or expected_run_dir(config, runs_dir)


def planned_runs(profile: str, runs_dir: str | Path, seeds: Sequence[int] | None = None,
                 data_root: str | None = None, parameters: dict | None = None,
                 rows: str = "all") -> list[PlannedRun]:
    """Every run the profile's notebooks train, in campaign priority order, each listed once.

    ``seeds``, ``data_root`` and ``parameters`` (notebook parameters such as ``epochs`` or
    ``run_overrides``) change the profile's notebook parameters as ``reproduce`` does. ``rows``: a name
    of :data:`lt_paper.workflows.rows.ROW_SETS` ("all", or "core": the core set's methods only).
    """
    if seeds is not None:
        check_seeds(seeds, name="--seeds")
    if rows not in ROW_SETS:
        raise ValueError(f"--rows {rows!r} is not one of {', '.join(ROW_SETS)}")
    kept = ROW_SETS[rows]
    # reproduce hands the notebooks an absolute runs_dir; a student's config names its teacher by path
    runs_dir = Path(runs_dir).resolve()
    wanted: list[tuple[tuple, str, str, str, Config]] = []  # (priority, label, notebook, section, config)
    # as reproduce hands them on: a parameter to the notebooks that declare it, a config key to every run
    notebook_values, config_keys = split_overrides(parameters or {}, {nb for nb, _, _ in jobs_for(profile)})
    for notebook, _folder, params in jobs_for(profile):
        if notebook not in NOTEBOOK_ROWS:
            continue  # Figures 2 and 3 train nothing
        declared = set(notebook_parameters(notebook))
        params = dict(params, **{k: v for k, v in notebook_values.items() if k in declared})
        if seeds is not None:
            params["seeds"] = list(seeds)
        if data_root is not None:
            params["data_root"] = str(Path(data_root).resolve())
        notebook_rows, all_seeds = NOTEBOOK_ROWS[notebook]
        profile_seeds = list(params["seeds"])
        # a relative data_root of a profile is relative to the repository, as in the notebooks
        overrides = dict(epochs=params["epochs"], device=params["device"],
                         data_root=resolve_path(params["data_root"]), progress=False,
                         **{**params.get("run_overrides", {}), **config_keys})
        for seed in profile_seeds if all_seeds else profile_seeds[:1]:
            later = int(seed != profile_seeds[0])  # 0: the first seed, trained before every other seed
            for order, (row, method) in enumerate(notebook_rows.items()):
                if kept is not None and method not in kept:
                    continue
                name = preset_name(params["prefix"], params["arch"], method)
                run_overrides = dict(overrides, seed=seed)
                section = NOTEBOOK_SECTION[notebook]
                if resolve_run_config(name, run_overrides).distill:
                    section = "distillation"
                    teacher = resolve_run_config(preset_name(params["prefix"], params["arch"], TEACHER_METHOD),
                                              run_overrides)
                    teacher_priority = (later, seed, SECTIONS.index(section), order - 0.5)
                    wanted.append((teacher_priority, f"{notebook}:teacher", notebook, section, teacher))
                    run_overrides["teacher"] = str(planned_run_dir(teacher, runs_dir))
                priority = (later, seed, SECTIONS.index(section), order)
                wanted.append((priority, f"{notebook}:{row}", notebook, section,
                               resolve_run_config(name, run_overrides)))
    wanted.sort(key=lambda item: item[0])
    by_dir: dict[Path, dict] = {}
    for priority, label, notebook, section, config in wanted:
        run_dir = planned_run_dir(config, runs_dir)
        if run_dir in by_dir:
            if notebook not in by_dir[run_dir]["needed_by"]:
                by_dir[run_dir]["needed_by"].append(notebook)
            continue
        by_dir[run_dir] = dict(label=label, needed_by=[notebook], section=section, seed=config.seed,
                               first_seed=priority[0] == 0, config=config, run_dir=run_dir)
    return [PlannedRun(**dict(item, needed_by=tuple(item["needed_by"]), finished=is_finished(run_dir)))
            for run_dir, item in by_dir.items()]


def make_packs(runs: Sequence[PlannedRun], max_members: int = DEFAULT_MAX_MEMBERS) -> list[list[PlannedRun]]:
    """Group runs (in priority order) into packs of equal ``ensemble_key``, the first seed apart, by the
    one packing rule of ensembles (:func:`lt_paper.train.grouping.pack_indices`: a pack takes its place
    at its highest-priority member; a full pack closes and the next compatible run opens a new one)."""
    if max_members < 1:
        raise ValueError(f"max_members must be >= 1, got {max_members}")
    # a student waits for its teacher, which trains in an earlier pack: students pack apart
    keys = [(run.first_seed, run.config.distill, ensemble_key(run.config)) for run in runs]
    return [[runs[i] for i in pack] for pack in pack_indices(keys, max_members)]


@dataclass(frozen=True)
class Estimate:
    """Seconds to train a pack: a fixed part (data, models, warm-up) plus a cost per epoch."""

    fixed_s: float
    per_epoch_s: float

    def seconds(self, epochs: int) -> float:
        return self.fixed_s + epochs * self.per_epoch_s

    @classmethod
    def from_probe(cls, short_s: float, long_s: float, short_epochs: int = PROBE_EPOCHS[0],
                   long_epochs: int = PROBE_EPOCHS[1]) -> "Estimate":
        """From the wall times of the same pack trained for ``short_epochs`` and ``long_epochs``."""
        per_epoch = max((long_s - short_s) / (long_epochs - short_epochs), 1e-3)
        return cls(fixed_s=max(short_s - short_epochs * per_epoch, 0.0), per_epoch_s=per_epoch)


def train_pack(configs: Sequence[Config], runs_dir: Path) -> list[dict]:
    """The campaign's trainer: one batched ensemble per pack (its members share every step), or on the
    CPU one ``train`` after another, as ``run_rows`` decides (``experiments.run_mode``)."""
    if run_mode("auto", 1, configs[0].device) == "sequential":
        return [train(config, runs_dir=str(runs_dir)) for config in configs]
    return train_ensemble(list(configs), runs_dir=str(runs_dir))


def default_max_members(runs: Sequence[PlannedRun]) -> int:
    """Runs per pack: :data:`DEFAULT_MAX_MEMBERS` where packs train as ensembles, 1 where they train one
    run after another (the CPU): there a pack of one is probed once for every run of its network."""
    devices = {run.config.device for run in runs}
    sequential = all(run_mode("auto", 1, device) == "sequential" for device in devices)
    return 1 if sequential else DEFAULT_MAX_MEMBERS


@dataclass
class PackOutcome:
    members: list[PlannedRun]
    status: str = "planned"  # trained | would train | skipped | failed | partly trained
    reason: str = ""
    estimate_s: float | None = None
    actual_s: float | None = None
    dropped: list[PlannedRun] = field(default_factory=list)  # members left out to fit the budget
    busy: list[PlannedRun] = field(default_factory=list)  # members another process trains (or finished)


def run_lock_file(run_dir: Path) -> Path:
    """The lock file a campaign holds while it trains ``run_dir`` (beside it: the engine owns the folder)."""
    return run_dir.with_name(f".{run_dir.name}.train.lock")


class Campaign:
    """Spends a time budget on packs in priority order (see the module docstring)."""

    def __init__(self, runs_dir: Path, budget_s: float, trainer=None, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = print, plan_only: bool = False, probe: bool = True,
                 started: float | None = None):
        self.runs_dir, self.budget_s, self.plan_only, self.probe = Path(runs_dir), float(budget_s), plan_only, probe
        self.trainer = trainer if trainer is not None else train_pack
        self.clock, self.log = clock, log
        self.started = clock() if started is None else started  # on ``clock``'s scale
        self.planned_s = 0.0  # --plan: estimated seconds of the packs that would train
        self.estimates: dict[tuple, Estimate] = {}
        self.probe_floors: dict[tuple, float] = {}  # seconds a kind and size needs at least (probe + pack)
        self.teachers: set[Path] = set()  # teachers of the students still to train (set by run)

    def left_s(self) -> float:
        return self.budget_s - (self.clock() - self.started) - self.planned_s

    def _probe_key(self, members: Sequence[PlannedRun]) -> tuple:
        config = members[0].config
        # a student's teacher path does not change its cost, only whether it has one
        return (ensemble_key(config), config.distill, len(members))  # the teacher is a member field

    def estimate(self, members: Sequence[PlannedRun]) -> Estimate | None:
        """The pack's estimate, probing it when no pack of its kind and size was measured yet."""
        key = self._probe_key(members)
        if key not in self.estimates:
            if not self.probe:
                return None
            floor = self.probe_floors.get(key)
            if floor is not None and floor > self.left_s() - MARGIN_S:
                raise ProbeTooCostly(f"its probe and training need at least {floor:.0f} s, "
                                     f"{self.left_s():.0f} s left")
            self.estimates[key] = self._measure([run.config for run in members], key)
        return self.estimates[key]

    def _measure(self, configs: list[Config], key: tuple) -> Estimate:
        """Probe the pack (module docstring): raises :class:`BudgetSpent` when the budget ran out during
        the first probe, :class:`ProbeTooCostly` when the second one and the pack could not fit."""
        scratch = Path(tempfile.mkdtemp(prefix="lt_paper-probe-"))
        (short, long), times = PROBE_EPOCHS, []
        try:
            with time_limit(self.left_s()):
                began = self.clock()
                self.trainer([apply_overrides(c, {"epochs": short}) for c in configs], scratch)
                times.append(self.clock() - began)
            # the longer probe shares the short one's fixed cost; the pack trains at least `short` epochs
            floor = times[0] * long / short + times[0]
            if floor > self.left_s() - MARGIN_S:
                self.probe_floors[key] = floor
                raise ProbeTooCostly(f"its probe and training need at least {floor:.0f} s "
                                     f"({times[0]:.1f} s for {short} epoch(s)), {self.left_s():.0f} s left")
            began = self.clock()
            self.trainer([apply_overrides(c, {"epochs": long}) for c in configs], scratch)
            times.append(self.clock() - began)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        estimate = Estimate.from_probe(*times)
        self.log(f"  probe of {len(configs)} run(s): {times[0]:.1f} s for {PROBE_EPOCHS[0]} epoch(s), "
                 f"{times[1]:.1f} s for {PROBE_EPOCHS[1]}: {estimate.fixed_s:.1f} s + "
                 f"{estimate.per_epoch_s:.2f} s per epoch")
        return estimate

    def fits(self, estimate: Estimate, epochs: int, reserve: int = 0) -> bool:
        """Whether the pack, plus ``reserve`` times its own cost kept free for its students, fits."""
        return estimate.seconds(epochs) * (1 + reserve) * SAFETY + MARGIN_S <= self.left_s()

    def run_pack(self, pack: list[PlannedRun], available: set[Path]) -> PackOutcome:
        """Hold the lock of every run of the pack that no other process holds, then fit those runs to the
        budget (dropping the lowest-priority ones) and train them; the locks are released at the end."""
        if self.plan_only:
            return self._fit_and_train(pack, available)
        with contextlib.ExitStack() as held:
            free, busy = [], []
            for run in pack:
                try:
                    held.enter_context(hold_lock(run_lock_file(run.run_dir), f"run {run.run_dir.name}"))
                except FileExistsError as e:  # "... is in use by pid N (lock file ...)"
                    self.log(f"  skipping {run.name}: {e}")
                    busy.append(run)
                    continue
                if is_finished(run.run_dir):  # trained by another process since the plan was made
                    self.log(f"  skipping {run.name}: finished by another process")
                    busy.append(run)
                else:
                    free.append(run)
            if free:
                outcome = self._fit_and_train(free, available)
            else:
                outcome = PackOutcome([], status="skipped", reason="its runs are trained by another process")
            outcome.busy = busy
            return outcome

    def _fit_and_train(self, pack: list[PlannedRun], available: set[Path]) -> PackOutcome:
        """Fit the pack to the budget (dropping its lowest-priority members), then train it."""
        outcome = PackOutcome(list(pack))
        if any(run.teacher_dir is not None and run.teacher_dir not in available for run in pack):
            outcome.status, outcome.reason = "skipped", "its teacher is not trained"
            return outcome
        if any(run.teacher_dir is not None and not is_finished(run.teacher_dir) for run in pack):
            # --plan: the teacher would train first; a student cannot be probed before it exists
            outcome.status, outcome.reason = "would train", "not measured: its teacher trains first"
            return outcome
        if any(run.teacher_dir is not None and not (run.teacher_dir / FINAL_MODEL).is_file() for run in pack):
            # published runs keep no weights: a teacher from an earlier window must be trained again
            outcome.status, outcome.reason = "skipped", f"its teacher's weights ({FINAL_MODEL}) are not here"
            return outcome
        epochs = pack[0].config.epochs
        members = list(pack)
        while members:
            if self.left_s() <= MARGIN_S:
                outcome.status, outcome.reason = "skipped", "budget spent"
                return outcome
            try:
                estimate = self.estimate(members)
            except BudgetSpent as e:
                outcome.status, outcome.reason = "skipped", str(e)
                return outcome
            except ProbeTooCostly as e:  # as an estimate that does not fit: try half the pack
                outcome.reason = str(e)
                members = members[:len(members) // 2]
                continue
            except Exception as e:  # a probe that fails says the pack would fail: skip it, go on
                outcome.status, outcome.reason = "failed", f"probe: {type(e).__name__}: {e}"
                return outcome
            if estimate is None:  # no probing (--no-probe, or no device): listed without an estimate
                outcome.status, outcome.reason = "would train", "not measured"
                return outcome
            outcome.estimate_s = estimate.seconds(epochs)
            # a teacher trains only with time for its student after it: published runs keep no weights,
            # so a student cannot follow in a later window (a student costs less than its MoE teacher)
            if self.fits(estimate, epochs, reserve=sum(run.run_dir in self.teachers for run in members)):
                break
            outcome.reason = f"estimated {outcome.estimate_s:.0f} s, {self.left_s():.0f} s left"
            # an ensemble's cost grows with its members (less than linearly): re-measure at half size
            members = members[:len(members) // 2]
        if not members:
            outcome.status = "skipped"
            return outcome
        outcome.members, outcome.dropped = members, pack[len(members):]
        if self.plan_only:
            self.planned_s += outcome.estimate_s
            outcome.status, outcome.reason = "would train", ""
            return outcome
        self.log(f"  training {len(members)} run(s), estimated {outcome.estimate_s:.0f} s, "
                 f"{self.left_s():.0f} s left")
        began = self.clock()
        try:
            results = self.trainer([run.config for run in members], self.runs_dir)
        except Exception as e:  # a failing pack never stops the campaign; its runs stay unfinished
            outcome.actual_s = self.clock() - began
            outcome.status, outcome.reason = "failed", f"{type(e).__name__}: {e}"
            return outcome
        outcome.actual_s = self.clock() - began
        landed = {Path(r["run_dir"]).resolve() for r in results}
        astray = [run.name for run in members if run.run_dir.resolve() not in landed]
        outcome.status = "partly trained" if outcome.dropped else "trained"
        if astray:  # the notebooks would not find them: the config derivation drifted from train's
            outcome.status, outcome.reason = "failed", f"runs landed elsewhere than planned: {astray}"
        return outcome

    def run(self, packs: list[list[PlannedRun]], finished: set[Path]) -> list[PackOutcome]:
        available = set(finished)
        self.teachers = {run.teacher_dir for pack in packs for run in pack if run.teacher_dir is not None}
        outcomes = []
        for number, pack in enumerate(packs, 1):
            self.log(f"pack {number}/{len(packs)}: {describe_pack(pack)}")
            outcome = self.run_pack(pack, available)
            if outcome.status in ("trained", "partly trained", "would train"):
                available |= {run.run_dir for run in outcome.members}
            self.log(f"  -> {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else "")
                     + (f" in {outcome.actual_s:.0f} s" if outcome.actual_s is not None else ""))
            outcomes.append(outcome)
        return outcomes


def describe_pack(pack: Sequence[PlannedRun]) -> str:
    c = pack[0].config
    kind = f"{c.num_experts} experts" if c.num_experts > 1 else "single network"
    kind += ", distilled" if c.distill else ""
    return f"{len(pack)} run(s), {c.dataset} {c.arch} {kind}, {c.epochs} epochs, seeds {sorted({r.seed for r in pack})}"


def plan_table(runs: Sequence[PlannedRun], outcomes: Sequence[PackOutcome]) -> str:
    """One line per run: pack, status, estimate of its pack, label, run directory name."""
    status: dict[Path, tuple[str, str]] = {run.run_dir: ("-", "done") for run in runs if run.finished}
    for number, outcome in enumerate(outcomes, 1):
        estimate = f"{outcome.estimate_s:.0f}" if outcome.estimate_s is not None else "?"
        for run in outcome.members:
            status[run.run_dir] = (f"{number} ({estimate} s)", outcome.status)
        for run in outcome.dropped:
            status[run.run_dir] = (f"{number}", "skipped (budget)")
        for run in outcome.busy:
            status[run.run_dir] = (f"{number}", "skipped (in use)")
    lines = [f"{'pack (estimate)':<16} {'status':<18} {'run':<44} run directory"]
    for run in runs:
        pack, state = status.get(run.run_dir, ("?", "to train"))
        lines.append(f"{pack:<16} {state:<18} {run.name:<44} {run.run_dir.name}")
    return "\n".join(lines)


def campaign(profile: str, budget_s: float, runs_dir: str | Path, seeds: Sequence[int] | None = None,
             data_root: str | None = None, parameters: dict | None = None, plan_only: bool = False,
             probe: bool = True, max_members: int | None = None, trainer=None,
             log: Callable[[str], None] = print, started: float | None = None, rows: str = "all") -> dict:
    """Plan (and unless ``plan_only``, train) the profile's runs within ``budget_s`` seconds.

    ``rows``: "all", or "core" for the core set only (:func:`planned_runs`). ``max_members``: runs per
    pack (None: :func:`default_max_members`). ``started``: the ``time.monotonic()`` the budget counts from
    (the command line passes its own start, so that importing torch counts too); default now. Returns a
    JSON-ready summary: every run with its status, every pack with its estimate and time.
    """
    if not (math.isfinite(budget_s) and budget_s > 0):  # NaN compares False with everything
        raise ValueError(f"--budget must be a finite number of seconds > 0, got {budget_s}")
    started = time.monotonic() if started is None else started
    runs = planned_runs(profile, runs_dir, seeds=seeds, data_root=data_root, parameters=parameters, rows=rows)
    todo = [run for run in runs if not run.finished]
    packs = make_packs(todo, max_members or default_max_members(todo))
    devices = {device_type(run.config.device) for run in todo}
    device_here = "cuda" not in devices or torch.cuda.is_available()
    if not device_here and not plan_only:
        raise ValueError(f"profile {profile!r} trains on cuda and no CUDA device is available here; "
                         f"--plan lists its runs without training")
    runner = Campaign(runs_dir, budget_s, trainer=trainer, log=log, plan_only=plan_only,
                      probe=probe and device_here, started=started)
    how = "one run after another" if default_max_members(todo) == 1 else "batched ensembles"  # as train_pack
    log(f"campaign: profile {profile}{'' if rows == 'all' else f' ({rows} rows)'}, {len(runs)} runs: "
        f"{len(runs) - len(todo)} done, {len(todo)} to train in {len(packs)} pack(s); budget {budget_s:.0f} s; "
        f"packs train as {how}")
    if todo and runner.probe:
        for dataset, root, imbalance in sorted({(r.config.dataset, r.config.data_root, r.config.imbalance)
                                                for r in todo}, key=str):
            began = time.monotonic()
            load_dataset(dataset, root=root, imbalance=imbalance)  # decoded and cached once, before timing
            log(f"  data {dataset} ready in {time.monotonic() - began:.1f} s")
    outcomes = runner.run(packs, {run.run_dir for run in runs if run.finished})
    table = plan_table(runs, outcomes)
    log(table)
    trained = sum(len(o.members) for o in outcomes if o.status in ("trained", "partly trained"))
    log(f"campaign: {trained} run(s) trained in {time.monotonic() - started:.0f} s of {budget_s:.0f} s")
    return {
        "profile": profile, "rows": rows, "budget_s": budget_s, "elapsed_s": time.monotonic() - started,
        "plan_only": plan_only, "runs_dir": str(Path(runs_dir).resolve()),
        "runs": [{"run": run.name, "run_dir": run.run_dir.name, "section": run.section, "seed": run.seed,
                  "needed_by": list(run.needed_by), "finished_before": run.finished} for run in runs],
        "packs": [{"members": [run.run_dir.name for run in o.members], "dropped": [run.run_dir.name for run in o.dropped],
                   "in_use": [run.run_dir.name for run in o.busy],
                   "status": o.status, "reason": o.reason, "estimate_s": o.estimate_s, "actual_s": o.actual_s}
                  for o in outcomes],
        "trained": trained,
    }


def write_summary(summary: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(summary, indent=2, default=str))
