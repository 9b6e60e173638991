"""The campaign: which runs, in which order, packed how, and how much of a budget they may spend."""

from __future__ import annotations

from pathlib import Path

import pytest

from lt_paper.workflows import campaign as C
from lt_paper.cli import main
from lt_paper.workflows.experiments import TEACHER_METHOD, run_rows
from lt_paper.workflows.rows import NOTEBOOK_ROWS, TABLE4_ROWS
from lt_paper.train.config import apply_overrides, config_hash
from lt_paper.train.grouping import ensemble_key
from lt_paper.train.presets import get_preset

SMOKE_FAST = {"epochs": 1}
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """A CIFAR-10 image-folder tree of one empty file per class and split: enough for the run identity
    (the data fingerprint lists the files), which is all a plan needs; nothing here decodes images."""
    root = tmp_path_factory.mktemp("cifar10")
    for split in ("train", "test"):
        for name in CIFAR10:
            (root / split / name).mkdir(parents=True)
            (root / split / name / "0000.jpg").write_bytes(b"")
    return root


def test_every_notebook_row_is_a_preset_and_the_figures_reuse_table_rows():
    # the tables' rows and the distillation teacher they train: the figures add no run of their own
    table_methods = {m for nb, (rows, _) in NOTEBOOK_ROWS.items() if nb.startswith("table")
                     for m in rows.values()} | {TEACHER_METHOD}
    for notebook, (rows, _) in NOTEBOOK_ROWS.items():
        for method in rows.values():
            get_preset(f"smoke/resnet8/{method}")
            get_preset(f"cifar10_lt/resnet32/{method}")
        if notebook.startswith("figure"):
            assert set(rows.values()) <= table_methods, notebook
    assert list(TABLE4_ROWS.values()) == ["ce", "ldam_drw", "ains", "acls", "focal_acls", "ldam_ains", "ala",
                                          "ala_nodrw"]  # rows 1-7, then ours


def test_cifar_plan_lists_each_run_once_table4_first_teacher_before_student(tmp_path, cifar_root):
    runs = C.planned_runs("cifar", tmp_path, data_root=cifar_root)
    # per seed: 10 single networks (Table 4 + focal, LA), 4 + 4 MoEs (Tables 1, 5), teacher, student
    assert len(runs) == 3 * 20 and len({r.run_dir for r in runs}) == len(runs)
    assert [r.config.name.split("/")[-1] for r in runs[:8]] == list(TABLE4_ROWS.values())
    assert {r.seed for r in runs[:20]} == {0} and all(r.first_seed for r in runs[:20])
    assert [r.seed for r in runs[20:]] == sorted(r.seed for r in runs[20:])  # seed 1 before seed 2
    assert [r.section for r in runs[:20]] == sorted((r.section for r in runs[:20]), key=C.SECTIONS.index)
    for seed in (0, 1, 2):
        names = [r.config.name.split("/")[-1] for r in runs if r.seed == seed]
        assert names.index("ala_moe6") == names.index("ala_distill") - 1
        student = next(r for r in runs if r.seed == seed and r.config.distill)
        teacher = next(r for r in runs if r.seed == seed and r.config.num_experts == 6)
        assert student.teacher_dir == teacher.run_dir
    shared = next(r for r in runs if r.config.name.endswith("/ce") and r.seed == 0)
    assert set(shared.needed_by) == {"table4_ala_ablation", "table1_3_main_results", "figure1_hard_samples"}
    assert all(r.config.device == "cuda" and r.config.amp and r.config.epochs == 200 for r in runs)
    assert not any(r.finished for r in runs)


def test_packs_hold_compatible_runs_and_never_mix_the_first_seed_with_others(tmp_path, cifar_root):
    runs = C.planned_runs("cifar", tmp_path, data_root=cifar_root)
    packs = C.make_packs(runs)
    assert [len(p) for p in packs[:5]] == [10, 4, 4, 1, 1]  # seed 0: single, MoE-3, MoE-4, teacher, student
    assert sum(len(p) for p in packs) == len(runs)
    for pack in packs:
        assert len({ensemble_key(r.config) for r in pack}) == 1
        assert len({r.first_seed for r in pack}) == 1
    assert all(len(p) <= 4 for p in C.make_packs(runs, max_members=4))
    with pytest.raises(ValueError, match="max_members"):
        C.make_packs(runs, max_members=0)


def test_estimate_is_fixed_cost_plus_epochs_times_the_measured_epoch_cost():
    estimate = C.Estimate.from_probe(5.0, 9.0)  # 1 epoch: 5 s, 3 epochs: 9 s -> 2 s per epoch + 3 s
    assert estimate.per_epoch_s == pytest.approx(2.0) and estimate.fixed_s == pytest.approx(3.0)
    assert estimate.seconds(200) == pytest.approx(403.0)
    noisy = C.Estimate.from_probe(5.0, 4.0)  # a faster long probe never gives a negative cost
    assert noisy.per_epoch_s > 0 and noisy.fixed_s >= 0


class FakeTrainer:
    """Trains nothing; advances a fake clock by ``fixed + epochs * per_epoch * members`` per pack."""

    def __init__(self, clock, fixed=1.0, per_epoch=1.0):
        self.clock, self.fixed, self.per_epoch = clock, fixed, per_epoch
        self.calls = []

    def __call__(self, configs, runs_dir):
        self.calls.append((len(configs), configs[0].epochs, Path(runs_dir)))
        self.clock.now += self.fixed + configs[0].epochs * self.per_epoch * len(configs)
        results = []
        for config in configs:
            run_dir = C.expected_run_dir(config, runs_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "model.pt").write_bytes(b"")  # the weights a distillation student loads
            (run_dir / "metrics.json").write_text("{}")  # what the engine writes last
            results.append({"run_dir": str(run_dir)})
        return results


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _campaign(tmp_path, budget):
    clock = FakeClock()
    trainer = FakeTrainer(clock)
    runs = C.planned_runs("smoke", tmp_path / "runs", parameters={"epochs": 10})
    packs = C.make_packs(runs)
    runner = C.Campaign(tmp_path / "runs", budget, trainer=trainer, clock=clock, log=lambda _: None)
    return runner.run(packs, set()), trainer, packs


def test_a_pack_too_large_for_the_budget_is_halved_keeping_its_highest_priority_runs(tmp_path):
    # the first pack (the smoke plain networks), M members: 1 s + 10 epochs x M s; its two probes cost
    # (1 + M) + (1 + 3 M) s per size tried; 100 s fit neither all M nor M // 2 of them
    outcomes, trainer, packs = _campaign(tmp_path, budget=100.0)
    first, size = outcomes[0], len(packs[0])
    kept = len(first.members)
    assert first.status == "partly trained" and 0 < kept < size // 2
    assert first.members == packs[0][:kept] and first.dropped == packs[0][kept:]
    assert first.estimate_s == pytest.approx(1 + 10 * kept)
    first_training = next(i for i, c in enumerate(trainer.calls) if c[1] == 10)
    tried = [c[0] for c in trainer.calls[:first_training] if c[1] == C.PROBE_EPOCHS[0]]  # sizes probed
    assert tried[0] == size and all(b == a // 2 for a, b in zip(tried, tried[1:])) and tried[-1] == kept
    spent = sum(2 + 4 * m for m in tried)  # the probes
    assert (1 + 10 * kept) * C.SAFETY + C.MARGIN_S <= 100 - spent  # what trained fits what was left
    trained = [d for d in (tmp_path / "runs").iterdir() if (d / "metrics.json").is_file()]
    assert {r.run_dir for r in first.members} <= set(trained)


def test_ensemble_packs_train_whole_and_students_wait_for_their_teacher(tmp_path):
    outcomes, trainer, packs = _campaign(tmp_path, budget=1000.0)
    assert [o.status for o in outcomes] == ["trained"] * len(packs)
    assert [c[0] for c in trainer.calls if c[1] == 10] == [len(p) for p in packs]
    # without the teacher's pack, the student's pack is skipped rather than failing
    clock = FakeClock()
    runner = C.Campaign(tmp_path / "other", 1000.0, trainer=FakeTrainer(clock), clock=clock, log=lambda _: None)
    student_pack = next(p for p in C.make_packs(C.planned_runs("smoke", tmp_path / "other")) if p[0].config.distill)
    outcome = runner.run_pack(student_pack, available=set())
    assert outcome.status == "skipped" and "teacher" in outcome.reason
    # a teacher published without its weights (results keep no model.pt) cannot teach
    teacher_dir = student_pack[0].teacher_dir
    teacher_dir.mkdir(parents=True)
    (teacher_dir / "metrics.json").write_text("{}")
    outcome = runner.run_pack(student_pack, available={teacher_dir})
    assert outcome.status == "skipped" and "model.pt" in outcome.reason


def test_teacher_location_does_not_change_the_student_hash():
    student = get_preset("smoke/resnet8/ala_distill")
    here = apply_overrides(student, {"teacher": "/work/runs/digits_lt-resnet8-ala-moe6-s0-abc"})
    there = apply_overrides(student, {"teacher": "/root/repo/results/x/runs/digits_lt-resnet8-ala-moe6-s0-abc/"})
    other = apply_overrides(student, {"teacher": "/work/runs/digits_lt-resnet8-ala-moe6-s1-def"})
    assert config_hash(here) == config_hash(there) != config_hash(other)


def test_smoke_campaign_trains_exactly_the_runs_the_notebooks_then_reuse(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    # what is trained is the point here, not the budget (the fake-trainer tests cover the probes)
    monkeypatch.setattr(C.Campaign, "estimate", lambda self, members: C.Estimate(0.0, 0.0))
    summary = C.campaign("smoke", 600, runs_dir, parameters=SMOKE_FAST, log=lambda _: None)
    assert summary["trained"] == 20 and all(p["status"] == "trained" for p in summary["packs"])
    overrides = dict(epochs=1, device="cpu", data_root=None)
    for notebook, (rows, _) in NOTEBOOK_ROWS.items():
        results = run_rows("smoke", "resnet8", rows, seeds=[0], runs_dir=str(runs_dir.resolve()), progress=False,
                           **overrides)
        assert all(r["reused"] for rs in results.values() for r in rs), notebook
    again = C.campaign("smoke", 600, runs_dir, parameters=SMOKE_FAST, log=lambda _: None)
    assert again["trained"] == 0 and all(r["finished_before"] for r in again["runs"])
    # the notebook itself, with reproduce's parameters, trains nothing new (teacher and student included)
    from lt_paper.workflows.reproduce import PROFILES, execute_notebook

    before = sorted(p.name for p in runs_dir.iterdir())
    (_, params), = PROFILES["smoke"]["table1_3_main_results"]
    execute_notebook("table1_3_main_results", tmp_path / "table1",
                     dict(params, runs_dir=str(runs_dir.resolve()), profile="smoke", **SMOKE_FAST))
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def test_cli_plan_trains_nothing_and_a_budget_or_seeds_that_cannot_work_are_refused(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    with pytest.raises(SystemExit) as done:
        main(["campaign", "--profile", "smoke", "--budget", "60", "--runs-dir", str(runs_dir), "--plan",
              "--no-probe", "--json", str(tmp_path / "plan.json")])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "20 to train" in out and "table4_ala_ablation:ce s0" in out
    assert not runs_dir.exists() and (tmp_path / "plan.json").is_file()
    refused = {  # NaN compares False with everything: it trained nothing and exited 0
        ("--budget", "-1"): "--budget must be a finite number of seconds > 0, got -1.0",
        ("--budget", "0"): "got 0.0", ("--budget", "nan"): "got nan", ("--budget", "inf"): "got inf",
        ("--seeds", "0", "0"): "--seeds = [0, 0] repeats seed(s) [0]",
        ("--set", "seeds=[1,2,1]"): "--set seeds = [1, 2, 1] repeats seed(s) [1]",
    }
    for argument, message in refused.items():
        with pytest.raises(SystemExit) as done:
            main(["campaign", "--profile", "smoke", "--budget", "60", "--runs-dir", str(runs_dir), "--no-probe",
                  "--json", str(tmp_path / "refused.json"), *argument])
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, (argument, err)
    assert not runs_dir.exists() and not (tmp_path / "refused.json").exists()


def test_reproduce_no_train_hands_train_false_to_every_notebook(tmp_path, monkeypatch):
    from lt_paper.workflows import reproduce as R

    seen = []

    def execute(notebook, output_dir, params, kernel=None):
        output_dir.mkdir(parents=True, exist_ok=True)  # reproduce hands it an empty staging folder
        seen.append(params)

    monkeypatch.setattr(R, "execute_notebook", execute)
    R.reproduce("smoke", out_root=tmp_path, runs_dir=str(tmp_path / "published"), train=False)
    assert len(seen) == len(R.NOTEBOOKS)
    assert all(p["train"] is False and p["runs_dir"] == str((tmp_path / "published").resolve()) for p in seen)
    from lt_paper.cli import build_parser

    assert build_parser().parse_args(["reproduce", "--no-train"]).train is False
    assert build_parser().parse_args(["reproduce"]).train is True


def test_a_teacher_trains_only_with_time_left_for_its_student(tmp_path):
    def teacher_and_student(budget, where):
        clock = FakeClock()
        runs = C.planned_runs("smoke", tmp_path / where, parameters={"epochs": 10})
        packs = [p for p in C.make_packs(runs) if p[0].config.num_experts == 6 or p[0].config.distill]
        runner = C.Campaign(tmp_path / where, budget, trainer=FakeTrainer(clock, True), clock=clock,
                            log=lambda _: None)
        return [o.status for o in runner.run(packs, set())]

    # probe 6 s, then 11 s per run: the teacher alone would fit in 30 s, teacher and student do not
    assert teacher_and_student(30.0, "tight") == ["skipped", "skipped"]
    assert teacher_and_student(60.0, "enough") == ["trained", "trained"]


def test_a_config_key_set_for_the_profile_reaches_every_planned_run(tmp_path):
    # `campaign --set lr=0.05` plans what `reproduce --set lr=0.05` trains: the key goes to every run
    runs = C.planned_runs("smoke", tmp_path, parameters={"lr": 0.05, "epochs": 2})
    assert runs and all(r.config.lr == 0.05 and r.config.epochs == 2 for r in runs)
    default = C.planned_runs("smoke", tmp_path, parameters={"epochs": 2})
    assert {r.run_dir for r in runs}.isdisjoint(r.run_dir for r in default)
    with pytest.raises(ValueError, match="unknown key"):
        C.planned_runs("smoke", tmp_path, parameters={"epoch": 2})


def test_a_probe_starts_only_when_it_and_its_pack_can_fit_the_budget(tmp_path):
    """One-run packs of 1 s + 10 epochs at 10 s each: the 1-epoch probe takes 11 s, so the 3-epoch probe
    (at most 33 s) and the pack (at least 11 s) cannot fit the 29 s left of 40: the longer probe never
    starts, and no later pack of the same kind probes again."""
    clock = FakeClock()
    trainer = FakeTrainer(clock, fixed=1.0, per_epoch=10.0)
    packs = C.make_packs(C.planned_runs("smoke", tmp_path / "runs", parameters={"epochs": 10}), max_members=1)
    runner = C.Campaign(tmp_path / "runs", 40.0, trainer=trainer, clock=clock, log=lambda _: None)
    first_kind = [p for p in packs if runner._probe_key(p) == runner._probe_key(packs[0])]
    outcomes = runner.run(first_kind[:3], set())
    assert [c[1] for c in trainer.calls] == [C.PROBE_EPOCHS[0]]  # one short probe, nothing else
    assert all(o.status == "skipped" and "need at least 44 s" in o.reason for o in outcomes), outcomes
    assert clock.now == 11.0


def test_a_probe_is_stopped_when_the_budget_runs_out(tmp_path):
    """A probe that would outlast the budget (a trainer that takes 30 s) is stopped when it is spent;
    the pack is skipped and the campaign goes on."""
    import threading

    finished = []

    def slow_trainer(configs, runs_dir):
        threading.Event().wait(30)  # interrupted by the budget's alarm
        finished.append(configs[0].epochs)
        return []

    packs = C.make_packs(C.planned_runs("smoke", tmp_path / "runs", parameters={"epochs": 10}), max_members=1)
    runner = C.Campaign(tmp_path / "runs", 3.0, trainer=slow_trainer, log=lambda _: None)
    outcomes = runner.run(packs[:2], set())
    assert finished == []
    assert outcomes[0].status == "skipped" and "budget spent while probing" in outcomes[0].reason
    assert outcomes[1].status == "skipped" and outcomes[1].reason == "budget spent"



def test_a_run_another_live_process_trains_is_left_to_it(tmp_path):
    """Two campaigns on one runs directory: the second skips, and says so, a run whose lock a live
    process holds (here a stand-in holder), and trains the others, leaving no lock behind."""
    import subprocess

    clock = FakeClock()
    trainer = FakeTrainer(clock)
    runs = C.planned_runs("smoke", tmp_path / "runs", parameters={"epochs": 10})
    packs = C.make_packs(runs, max_members=1)[:3]
    held, free = packs[0][0], [p[0] for p in packs[1:]]
    holder = subprocess.Popen(["sleep", "60"])  # the other campaign, alive
    try:
        lock = C.run_lock_file(held.run_dir)
        lock.parent.mkdir(parents=True)
        lock.write_text(str(holder.pid))
        lines = []
        runner = C.Campaign(tmp_path / "runs", 1000.0, trainer=trainer, clock=clock, log=lines.append)
        outcomes = runner.run(packs, set())
    finally:
        holder.kill()
        holder.wait()
    trained = {Path(c[2]) for c in trainer.calls if c[1] == 10}
    assert trained == {tmp_path / "runs"} and [c[0] for c in trainer.calls if c[1] == 10] == [1, 1]
    assert not (held.run_dir / "metrics.json").exists() and all((r.run_dir / "metrics.json").is_file() for r in free)
    assert outcomes[0].status == "skipped" and outcomes[0].busy == [held]
    assert any(f"skipping {held.name}: run {held.run_dir.name} is in use by pid {holder.pid}" in line
               for line in lines), lines
    assert "skipped (in use)" in C.plan_table(runs, outcomes)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.name.endswith(".lock")) == [lock.name]
    # a run finished by the other campaign meanwhile is not trained again; a dead holder's lock is taken over
    (held.run_dir).mkdir()
    (held.run_dir / "metrics.json").write_text("{}")
    outcome = runner.run_pack(packs[0], set())
    assert outcome.status == "skipped" and outcome.busy == [held] and not lock.exists()

