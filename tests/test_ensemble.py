"""Ensembles (many runs in one batched training step) against solo runs, on the digits (CPU, fp32).

Members match their solo runs to rounding, not bit for bit: a stacked (grouped) convolution sums in
another order than M separate ones. The smoke recipe at lr 0.1 is chaotic: a relative perturbation
of 1e-7 of a solo run's initial weights already moves its final accuracy by several points (measured
with LDAM-DRW, seed 1), so final accuracies are compared at a lower learning rate where they are
stable (0.05 for the plain networks, 0.03 for the MoE); the first epoch's per-step losses are compared
at the recipe's own learning rate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lt_paper.data import load_dataset, make_loaders
from lt_paper.train import EnsembleError, ensemble_groups, train, train_ensemble
from lt_paper.train import ensemble as ensemble_module
from lt_paper.train.checkpoint import load_checkpoint
from lt_paper.train.engine import build_run, resolve_config, resolve_runtime, train_one_epoch
from lt_paper.train.ensemble import build_ensemble
from lt_paper.train.schedule import Schedule
from interrupt import sigkill_mid_epoch

REPO = Path(__file__).resolve().parent.parent
RUN_FILES = ["config.json", "history.json", "metrics.json", "model.pt", "records.npz"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _configs(members, **overrides):
    """Resolved smoke configs (CPU defaults filled in, as ``train`` resolves them)."""
    cpu = torch.device("cpu")
    return [resolve_runtime(resolve_config(f"smoke/resnet8/{method}", dict(overrides, seed=seed)), cpu)
            for method, seed in members]


def _first_epoch_step_losses(configs) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps, M) per-step losses of every member's first epoch, solo and as one ensemble."""
    device = torch.device("cpu")
    data = load_dataset("digits_lt", imbalance=20)
    solo = []
    for config in configs:
        loader, _ = make_loaders(data, config.batch_size, device, seed=config.seed)
        parts = build_run(config, data, device)
        parts.optimizer.param_groups[0]["lr"] = Schedule.from_config(config).lr(0)
        losses: list = []
        train_one_epoch(parts.model, loader, parts.objective, parts.optimizer, device, amp=False,
                        channels_last=False, step_losses=losses)
        solo.append(torch.stack(losses))
    losses = []
    build_ensemble(configs, data, device).train_epoch(0, step_losses=losses)
    return torch.stack(solo, dim=1), torch.stack(losses)


def _assert_members_match_solo(members, tmp_path, lr):
    solo_steps, ensemble_steps = _first_epoch_step_losses(_configs(members, progress=False))
    torch.testing.assert_close(ensemble_steps, solo_steps, rtol=1e-4, atol=0)

    configs = _configs(members, epochs=8, lr=lr, progress=False)
    together = train_ensemble(configs, runs_dir=tmp_path / "ensemble")
    for config, member in zip(configs, together):
        alone = train(config, runs_dir=tmp_path / "solo")
        assert Path(member["run_dir"]).name == Path(alone["run_dir"]).name  # the same config hash
        assert sorted(p.name for p in Path(member["run_dir"]).iterdir()) == RUN_FILES
        assert set(member) == set(alone) and not member["reused"]
        assert abs(member["all"] - alone["all"]) <= 0.01, (config.name, member["all"], alone["all"])
        history = json.loads((Path(member["run_dir"]) / "history.json").read_text())
        solo_history = json.loads((Path(alone["run_dir"]) / "history.json").read_text())
        assert history[0]["train_loss"] == pytest.approx(solo_history[0]["train_loss"], rel=1e-4)
        assert [h["drw"] for h in history] == [h["drw"] for h in solo_history]
        assert [h["router_active"] for h in history] == [h["router_active"] for h in solo_history]
        # a later solo train() of a member finds it finished
        again = train(config, runs_dir=tmp_path / "ensemble")
        assert again["reused"] and again["all"] == member["all"]
    assert not list((tmp_path / "ensemble").glob("ensemble-*"))  # the ensemble checkpoint is gone


def test_plain_members_match_their_solo_runs(tmp_path):
    # different seeds and losses; CE has a linear head, so the ensemble holds two stacks
    _assert_members_match_solo([("ala", 0), ("ldam_ains", 1), ("ce", 2)], tmp_path, lr=0.05)


def test_moe_members_match_their_solo_runs(tmp_path):
    # instance and mean routers (two stacks), RIDE's diversity term, the router switched on mid-run
    _assert_members_match_solo([("ala_moe3", 0), ("ala_moe3_mean", 1), ("ride3_router", 2)], tmp_path, lr=0.03)


def test_groups_split_what_cannot_share_a_step_and_finished_members_are_skipped(tmp_path, capsys):
    configs = _configs([("ce", 0), ("ala", 1), ("ala_moe3", 0)], epochs=1, progress=False)
    assert [len(g) for g in ensemble_groups(configs)] == [2, 1]  # num_experts differs
    assert [len(g) for g in ensemble_groups(configs, max_members=1)] == [1, 1, 1]
    first = train(configs[0], runs_dir=tmp_path)
    results = train_ensemble(configs, runs_dir=tmp_path)
    assert results[0]["reused"] and results[0]["run_dir"] == first["run_dir"]
    assert not results[1]["reused"] and not results[2]["reused"]
    # router_at is set on the MoE presets only (README decision 9), so it differs too
    assert "2 groups that cannot share a step (they differ in num_experts, router_at)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="same run"):
        train_ensemble([configs[1], configs[1]], runs_dir=tmp_path)


def test_eval_every_tests_every_nth_epoch_and_the_last(tmp_path):
    configs = _configs([("ce", 0), ("ala", 0)], epochs=5, eval_every=2, progress=False)
    for member in train_ensemble(configs, runs_dir=tmp_path / "ensemble"):
        history = json.loads((Path(member["run_dir"]) / "history.json").read_text())
        assert [h["test_all"] is not None for h in history] == [False, True, False, True, True]
        assert member["best"]["epoch"] in (2, 4, 5) and member["all"] == history[-1]["test_all"]
    solo = train(configs[0], runs_dir=tmp_path / "solo")
    history = json.loads((Path(solo["run_dir"]) / "history.json").read_text())
    assert [h["test_all"] is not None for h in history] == [False, True, False, True, True]
    assert "best_note" not in solo


def test_a_nan_member_stops_with_the_solo_message_and_the_others_finish(tmp_path, monkeypatch):
    real_build_run = ensemble_module.build_run

    class NanFromEpoch3:
        """The member's own objective, times NaN from its 15th step (epoch 3 of 7 steps each)."""

        def __init__(self, objective):
            self.objective, self.scale, self.calls = objective, objective.scale, 0

        def __call__(self, *args):
            self.calls += 1
            loss = self.objective(*args)
            return loss * float("nan") if self.calls > 14 else loss

    def build_run_with_a_failing_seed_1(config, data, device, *args):
        parts = real_build_run(config, data, device, *args)
        if config.seed == 1:
            parts.objective = NanFromEpoch3(parts.objective)
        return parts

    monkeypatch.setattr(ensemble_module, "build_run", build_run_with_a_failing_seed_1)
    configs = _configs([("ce", 0), ("ala", 1), ("ala", 2)], epochs=4, progress=False)
    with pytest.raises(EnsembleError, match=r"training loss is nan in epoch 3.*epoch 2") as failed:
        train_ensemble(configs, runs_dir=tmp_path)
    assert list(failed.value.failures) == [1] and failed.value.results[1] is None
    for m in (0, 2):
        assert (Path(failed.value.results[m]["run_dir"]) / "metrics.json").is_file()
    # the failed member keeps its last good epoch where a solo run keeps it, and a solo run resumes it
    (checkpoint,) = tmp_path.glob("*-ala-s1-*/checkpoint.pt")
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert not list(checkpoint.parent.glob("metrics.json"))
    monkeypatch.undo()
    resumed = train(configs[1], runs_dir=tmp_path)
    history = json.loads((Path(resumed["run_dir"]) / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and not resumed["reused"]


def test_a_member_whose_batchnorm_statistics_overflow_stops_before_its_state_is_saved(tmp_path, monkeypatch):
    # a finite loss with an infinite running_var (what a huge learning rate does): the solo engine's
    # guard stops such a run before checkpointing it; the ensemble stops that member the same way
    real_train_epoch = ensemble_module.EnsembleRun.train_epoch

    def train_epoch_overflowing_member_1_in_epoch_2(self, epoch, step_losses=None):
        totals, settings = real_train_epoch(self, epoch, step_losses)
        if epoch == 1:
            stack, position = self.ensemble.slots[1]
            stack = self.ensemble.stacks[stack]
            name = next(n for n in stack.buffer_names if n.endswith("running_var"))
            getattr(stack, name.replace(".", "__"))[position].fill_(float("inf"))
        return totals, settings

    monkeypatch.setattr(ensemble_module.EnsembleRun, "train_epoch", train_epoch_overflowing_member_1_in_epoch_2)
    configs = _configs([("ala", 0), ("ala", 1)], epochs=3, progress=False)
    with pytest.raises(EnsembleError, match=r"BatchNorm statistics are not finite in epoch 2.*epoch 1") as failed:
        train_ensemble(configs, runs_dir=tmp_path)
    assert list(failed.value.failures) == [1]
    (checkpoint,) = tmp_path.glob("*-ala-s1-*/checkpoint.pt")
    kept = load_checkpoint(checkpoint)
    assert kept["epoch"] == 0 and all(torch.isfinite(t).all() for t in kept["model"].values())
    assert (Path(failed.value.results[0]["run_dir"]) / "metrics.json").is_file()


def test_sigkill_mid_epoch_then_rerun_matches_an_uninterrupted_ensemble(tmp_path):
    names = ["smoke/resnet8/ala", "smoke/resnet8/ce"]  # two stacks (cosine and linear heads)
    script = ("import sys, torch\ntorch.set_num_threads(1)\nfrom lt_paper.train import train_ensemble\n"
              f"train_ensemble({names!r}, runs_dir=sys.argv[1], epochs=8, progress=False)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "killed")], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = sigkill_mid_epoch(proc, "ensemble-*/checkpoint.pt", tmp_path / "killed")
    assert killed_at < 7 and not list((tmp_path / "killed").glob("*/metrics.json"))

    resumed = train_ensemble(names, runs_dir=tmp_path / "killed", epochs=8, progress=False)
    straight = train_ensemble(names, runs_dir=tmp_path / "straight", epochs=8, progress=False)
    for a, b in zip(resumed, straight):
        assert not a["reused"]
        for key in ("all", "many", "medium", "few", "per_class", "best"):
            assert a[key] == b[key], key
        ra, rb = (np.load(Path(r["run_dir"]) / "records.npz") for r in (a, b))
        np.testing.assert_array_equal(ra["p_gt"], rb["p_gt"])


def test_run_rows_trains_rows_as_one_ensemble_and_picks_the_mode(tmp_path):
    from lt_paper.experiments import run_mode, run_rows

    rows = {"CE": "ce", "ALA": "ala"}
    together = run_rows("smoke", "resnet8", rows, runs_dir=tmp_path, progress=False, mode="ensemble", epochs=1)
    assert sorted(together) == ["ALA", "CE"] and not together["ALA"][0]["reused"]
    again = run_rows("smoke", "resnet8", rows, runs_dir=tmp_path, progress=False, mode="sequential", epochs=1)
    assert again["CE"][0]["reused"] and again["CE"][0]["run_dir"] == together["CE"][0]["run_dir"]
    assert run_mode("auto", 1, "cuda") == "ensemble" and run_mode("auto", 1, "cpu") == "sequential"
    assert run_mode("auto", 4, "cpu") == "side_by_side" and run_mode("ensemble", 4, "cpu") == "ensemble"
    with pytest.raises(ValueError, match="side_by_side"):
        run_mode("parallel", 1, "cpu")
