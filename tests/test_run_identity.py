"""A run's identity across devices: the run hash keeps the path a run trained on (device, bf16 autocast,
memory layout, torch.compile, fused SGD, deterministic kernels), the recipe hash leaves it out, and every
reader of finished runs (the notebooks' rows, trained or not, and ``campaign``'s plan) takes the same
recipe trained on another path as the run, so that a GPU profile does not train again what a CPU trained.

Embedded digits, CPU, a few seconds per run. No CUDA is needed: a config that names ``device="cuda"`` is
resolved (bf16 autocast and channels_last on, as on a GPU) without asking for a GPU, and nothing trains
when its recipe's run is found.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lt_paper.train import train
from lt_paper.train.config import EXECUTION_FIELDS, apply_overrides, config_hash, recipe_hash
from lt_paper.train.engine import find_finished_run
from lt_paper.train.resolve import resolve_run_config
from lt_paper.workflows.experiments import finished_rows, run_rows

QUICK = dict(epochs=2, progress=False)
PRESET = "smoke/resnet8/ala"


def _config(**overrides):
    return resolve_run_config(PRESET, dict(QUICK, **overrides), data=False)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One finished 2-epoch run of the ALA smoke preset on the CPU: its runs directory and result."""
    runs = tmp_path_factory.mktemp("identity") / "runs"
    return runs, train(PRESET, runs_dir=runs, device="cpu", **QUICK)


def test_the_recipe_hash_leaves_out_the_path_and_nothing_else():
    cpu, gpu = _config(device="cpu"), _config(device="cuda")
    assert (gpu.amp, gpu.channels_last, cpu.amp, cpu.channels_last) == (True, True, False, False)
    assert config_hash(cpu) != config_hash(gpu) and recipe_hash(cpu) == recipe_hash(gpu)
    for field, value in (("compile", True), ("fused_optimizer", True), ("deterministic", True),
                         ("channels_last", True), ("amp", True)):
        changed = apply_overrides(cpu, {field: value})
        assert config_hash(changed) != config_hash(cpu), field  # still another run for train and resume
        assert recipe_hash(changed) == recipe_hash(cpu), field
    # what a run computes stays in it: every field but the path and the runtime knobs
    for field, value in (("seed", 1), ("lr", 0.05), ("epochs", 3), ("drw", False), ("loss", "ldam"),
                         ("eval_every", 2), ("batch_size", 32), ("data_fingerprint", "tarball: 1 byte")):
        assert recipe_hash(apply_overrides(cpu, {field: value})) != recipe_hash(cpu), field
    assert set(EXECUTION_FIELDS) == {"device", "amp", "channels_last", "compile", "fused_optimizer",
                                     "deterministic"}


def test_a_cpu_run_is_found_for_its_gpu_config_and_a_recipe_change_is_not(cpu_run, tmp_path):
    runs, trained = cpu_run
    assert find_finished_run(runs, _config(device="cpu")) == Path(trained["run_dir"])  # itself
    assert find_finished_run(runs, _config(device="cuda")) == Path(trained["run_dir"])  # its GPU twin
    assert find_finished_run(runs, _config(device="cuda", compile=True)) == Path(trained["run_dir"])
    assert find_finished_run(runs, _config(device="cuda", seed=1)) is None
    assert find_finished_run(runs, _config(device="cuda", lr=0.05)) is None
    # train itself trains the config it is given: its own path only (a resumed checkpoint must match)
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    assert not train(PRESET, runs_dir=copy, device="cpu", channels_last=True, **QUICK)["reused"]


def test_a_runs_own_path_comes_first_and_two_other_paths_are_ambiguous(tmp_path):
    runs = tmp_path / "runs"
    eager = train(PRESET, runs_dir=runs, device="cpu", **QUICK)
    layout = train(PRESET, runs_dir=runs, device="cpu", channels_last=True, **QUICK)
    assert find_finished_run(runs, _config(device="cpu")) == Path(eager["run_dir"])
    assert find_finished_run(runs, _config(device="cpu", channels_last=True)) == Path(layout["run_dir"])
    with pytest.raises(ValueError, match=r"2 finished runs of smoke/resnet8/ala \(seed 0\) .* trained the same "
                                         r"recipe on different paths .*; set device to choose"):
        find_finished_run(runs, _config(device="cuda"))


def test_the_notebooks_rows_read_the_cpu_run_for_a_gpu_profile_and_train_nothing(cpu_run, capsys):
    runs, trained = cpu_run
    before = sorted(p.name for p in runs.iterdir())
    # device="cuda" on a machine without one: found, so nothing asks for the GPU
    rows = run_rows("smoke", "resnet8", {"ALA": "ala"}, runs_dir=runs, device="cuda", data_root=None, **QUICK)
    assert rows["ALA"][0]["run_dir"] == trained["run_dir"] and rows["ALA"][0]["reused"]
    assert sorted(p.name for p in runs.iterdir()) == before
    read = finished_rows("smoke", "resnet8", {"ALA": "ala"}, runs_dir=runs, device="cuda", data_root=None,
                         epochs=2, progress=False)
    assert read["ALA"][0]["run_dir"] == trained["run_dir"]
    run_rows("smoke", "resnet8", {"ALA": "ala"}, runs_dir=runs, device="cuda", data_root=None, epochs=2)
    said = capsys.readouterr().out
    assert f"reused: {Path(trained['run_dir']).name}" in said
    assert "the same recipe trained with device=cpu, amp=False, channels_last=False on CPU" in said


def test_campaign_counts_the_cpu_run_as_done_for_a_gpu_profile(cpu_run):
    from lt_paper.workflows.campaign import planned_runs

    runs, trained = cpu_run
    planned = planned_runs("smoke", runs, parameters={"device": "cuda", "epochs": 2}, rows="core")
    ala = [run for run in planned if run.config.loss == "ala" and run.config.num_experts == 1
           and run.config.drw]
    assert len(ala) == 1 and ala[0].config.device == "cuda"
    assert ala[0].finished and ala[0].run_dir == Path(trained["run_dir"])
    assert not any(run.finished for run in planned if run is not ala[0])
