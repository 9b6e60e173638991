"""The benchmark (tiny, CPU), runs side by side, and the fast path's config on the CPU."""

from __future__ import annotations

import dataclasses

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lt_paper.bench import command, main_section
from lt_paper.bench.core import SIZES
from lt_paper.data.containers import ArrayDataset
from lt_paper.losses import CrossEntropyLoss
from lt_paper.losses.validation import check_label_range
from lt_paper.train import get_preset, train
from lt_paper.train.config import config_hash, fast_path_overrides
from lt_paper.train.engine import build_run
from lt_paper.train.parallel import SideBySideError, train_side_by_side

ROW_LABELS = ("reference-style loop", "our default path", "our fast path", "one run alone", "sequential",
              "side by side", "ensemble of 7", "ensemble of 21",
              "fp32", "bf16 + channels_last") + main_section.TABLE4_METHODS


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, restored after: on a shared 2-core machine a 2-thread CPU step slows down
    many times over whenever another process holds a core, and the comparisons below need the same
    thread count in every process anyway."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _numbers(report: str, label: str) -> list[float]:
    """The numeric cells of the table row whose first cell starts with ``label``."""
    rows = [line for line in report.splitlines() if line.startswith(f"| {label}")]
    assert rows, f"no row {label!r} in the report"
    cells = [c.strip() for c in rows[0].strip("|").split("|")[1:]]
    return [float(c) for c in cells]


def test_tiny_bench_reports_every_row_with_provenance(tmp_path):
    out = tmp_path / "results" / "bench-cpu.md"
    assert command.main(["--size", "tiny", "--device", "cpu", "--out", str(out)]) == 0
    report = out.read_text()
    for label in ROW_LABELS:
        values = _numbers(report, label)
        assert values and all(math.isfinite(v) and v > 0 for v in values), (label, values)
    # each path's row: warm-up, train s, test s, images/s, projected 200 epochs
    tiny = SIZES["tiny"]
    for label, images in (("reference-style loop", 199), ("our default path", 199),  # the partial batch too
                          ("our fast path", 199)):
        _, train_s, test_s, images_per_s, projected = _numbers(report, label)
        assert projected == pytest.approx(200 * (train_s + test_s), rel=0.01, abs=0.2)
        assert images_per_s * train_s == pytest.approx(images, rel=0.01, abs=1)
    assert _numbers(report, "fp32")[:2] == [tiny.resnext_batch, tiny.resnext_px]
    assert "re-creation" in report and "compile off" in report  # labelled; no compile on the CPU
    assert "## Provenance" in report
    for key in ("commit", "device", "torch", "torchvision", "utc"):
        assert re.search(rf"^- {key}: \S", report, re.M), key


def test_side_by_side_runs_equal_sequential_runs_and_failures_name_the_run(tmp_path):
    threads = torch.get_num_threads()
    presets = ["smoke/resnet8/ce", "smoke/resnet8/ala", "smoke/resnet8/ala_distill"]  # the last lacks a teacher
    with pytest.raises(SideBySideError, match=r"ala_distill.*exit code 1(.|\n)*teacher") as failed:
        train_side_by_side(presets, tmp_path / "side", epochs=2, threads_per_process=threads)
    assert [f.index for f in failed.value.failures] == [2] and failed.value.results[2] is None
    for preset, together in zip(presets[:2], failed.value.results[:2]):
        alone = train(preset, runs_dir=tmp_path / "alone", epochs=2, progress=False)
        assert Path(together["run_dir"]).name == Path(alone["run_dir"]).name  # the same config hash
        for key in ("all", "many", "medium", "few", "per_class"):
            assert together[key] == alone[key], (preset, key)
        a, b = (np.load(Path(r["run_dir"]) / "records.npz") for r in (together, alone))
        np.testing.assert_array_equal(a["p_gt"], b["p_gt"])
    # finished runs are reused, and one config twice is refused before anything starts
    again = train_side_by_side(presets[:1], tmp_path / "side", epochs=2, threads_per_process=threads)
    assert again[0]["reused"]
    with pytest.raises(ValueError, match="same run"):
        train_side_by_side([presets[0], presets[0]], tmp_path / "side", epochs=2)


def test_fast_path_fields_keep_old_hashes_and_cpu_fast_path_matches_default(tmp_path):
    # the run hash recorded before compile/fused_optimizer existed (runs of that time dropped the last
    # partial batch: drop_last=True, the value a config without the key reads back with)
    assert config_hash(dataclasses.replace(get_preset("smoke/resnet8/ala"), drop_last=True)) == "bcfcf0008e9a"
    fast = fast_path_overrides("cpu")
    assert fast == {"compile": False, "fused_optimizer": True, "amp": False, "channels_last": False}
    assert fast_path_overrides("cuda") == {"compile": True, "fused_optimizer": True, "amp": True,
                                           "channels_last": True}
    default = train("smoke/resnet8/ce", runs_dir=tmp_path, epochs=2, progress=False)
    quick = train("smoke/resnet8/ce", runs_dir=tmp_path, epochs=2, progress=False, **fast)
    assert quick["run_dir"] != default["run_dir"]  # hashed: a fast run never reuses a default one
    # Same metrics. Not the same bits: the fused SGD kernel rounds differently from the per-parameter
    # loop (about 1e-6 in a probability after 2 epochs), which is why the field is hashed.
    for key in ("all", "many", "medium", "few", "per_class"):
        assert quick[key] == default[key], key
    a, b = (np.load(Path(r["run_dir"]) / "records.npz") for r in (quick, default))
    np.testing.assert_allclose(a["p_gt"], b["p_gt"], atol=1e-4)


def test_labels_are_checked_once_per_dataset_not_per_step():
    from lt_paper.data import load_dataset

    data = load_dataset("digits_lt", imbalance=20)
    parts = build_run(get_preset("smoke/resnet8/ce"), data, torch.device("cpu"))
    assert parts.objective.loss.validate_labels is False  # the engine's loss skips the per-call sync
    with pytest.raises(ValueError, match=r"digits_lt test split: label 10 \(sample 3\)"):
        labels = data.test.labels.clone()
        labels[3] = 10
        data.test = ArrayDataset(data.test.images, labels)
        build_run(get_preset("smoke/resnet8/ce"), data, torch.device("cpu"))
    with pytest.raises(ValueError, match="integers"):
        check_label_range([0.5, 1.0], 3)
    # direct users of a loss keep the clear error; with the check off the bad label reaches cross_entropy
    loss = CrossEntropyLoss()
    with pytest.raises(ValueError, match="target label 7"):
        loss(torch.zeros(2, 3), torch.tensor([7, 0]))
    loss.validate_labels = False
    with pytest.raises(IndexError):
        loss(torch.zeros(2, 3), torch.tensor([7, 0]))


def test_side_by_side_rows_start_from_a_script_read_on_stdin(tmp_path):
    """Fork-server children must not try to re-run a main script that has no file (``python -``)."""
    script = (f"from lt_paper.workflows.experiments import run_rows\n"
              f"r = run_rows('smoke', 'resnet8', {{'ce': 'ce', 'ala': 'ala'}}, runs_dir={str(tmp_path)!r}, "
              f"epochs=1, parallel=2)\n"
              f"print(sorted(r), all(not x[0]['reused'] for x in r.values()))\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("['ala', 'ce'] True")


@pytest.mark.parametrize("argv, message", [
    (["--section", "cpu", "--device", "cuda", "--data-root", "x"], "uses no --device, --data-root; leave them out"),
    (["--section", "cpu", "--dataset", "cifar10_lt"], "uses no --dataset"),
    (["--section", "cpu", "--threads-per-process", "2"], "uses no --threads-per-process"),
    (["--section", "shared", "--data-root", "x"], "--section shared measures this CPU on synthetic images and uses no --data-root"),
    (["--section", "cpu", "--preset", "cifar10_lt/resnet8/ala"], "--preset belongs to --section recipe-cpu"),
    (["--section", "recipe-cpu", "--preset", "cifar10_lt/resnet8/banana"], "is not a preset"),
    (["--threads-per-process", "-3"], "--threads-per-process -3: at least 1 thread per process"),
    (["--threads-per-process", "0"], "--threads-per-process 0: at least 1 thread per process"),
    (["--data-root", "no/such/cifar.tar.gz"], "--data-root no/such/cifar.tar.gz: no such file or folder"),
    (["--device", "banana"], "--device 'banana': use cuda, cuda:N, cpu or auto"),
], ids=["cpu section with device and data", "cpu section with dataset", "cpu section with threads", "shared with data",
        "preset outside recipe-cpu", "unknown preset",
        "negative threads", "zero threads", "missing data", "unknown device"])
def test_bench_refuses_what_its_section_cannot_use_at_once(argv, message, monkeypatch, capsys):
    """Once: --section cpu --device cuda --data-root x measured the CPU and exited 0 ignoring both, and
    --threads-per-process -3 failed with a traceback after 23 s of measuring."""
    def measured(*args, **kwargs):
        raise AssertionError("a section started")

    monkeypatch.setattr(main_section, "run_bench", measured)
    monkeypatch.setattr("lt_paper.bench.cpu_section.run_cpu_bench", measured)
    monkeypatch.setattr("lt_paper.bench.shared_cpu.run_shared_bench", measured)
    monkeypatch.setattr("lt_paper.bench.recipe_cpu.run_recipe_bench", measured)
    with pytest.raises(SystemExit) as done:
        command.main(["--size", "tiny", *argv])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err, err


def test_tiny_cpu_section_puts_each_path_beside_the_ceiling_and_projects_the_profile(tmp_path):
    out = tmp_path / "bench-cpu.md"
    assert command.main(["--size", "tiny", "--section", "cpu", "--out", str(out)]) == 0
    report = out.read_text()
    ceiling = re.search(r"the share below is of their mean, (\d+\.\d)", report)
    assert ceiling and float(ceiling.group(1)) > 0
    for label in ("eager", "channels_last (the profile's path)", "channels_last + fused SGD",
                  "channels_last, 1 thread", "4 core single networks one after another",
                  "4 core single networks as one batched ensemble"):
        images_per_s, gflops, share, overhead, epoch_s, run_s = _numbers(report, label)
        assert images_per_s > 0 and overhead >= 0 and run_s > epoch_s > 0, label
        assert share == pytest.approx(100 * gflops / float(ceiling.group(1)), abs=1.0), label
    assert "torch.compile" not in report  # only with --compile on (a minute of compilation on 2 cores)
    # per network: runs of the core set and the whole profile, and the projection is their sum
    rows = {label: _numbers(report, label) for label in ("single network", "MoE, 3 experts", "MoE, 4 experts",
                                                         "MoE, 6 experts", "distilled")}
    assert [r[-2:] for r in rows.values()] == [[4, 10], [1, 4], [0, 4], [0, 1], [0, 1]]
    projected = re.search(r"core set \(5 runs\) (\d+) s .* whole profile \(20 runs\) (\d+) s", report)
    assert projected, "no projection line"
    for column, total in ((-2, projected.group(1)), (-1, projected.group(2))):
        # each network's seconds per run are printed rounded to whole seconds: off by up to 0.5 s a run
        rounding = 0.5 * sum(r[column] for r in rows.values()) + 0.5
        assert float(total) == pytest.approx(sum(r[-3] * r[column] for r in rows.values()), abs=rounding)


def test_tiny_recipe_section_projects_one_run_of_the_paper_recipe_per_path(tmp_path):
    """``--section recipe-cpu``: each path in a fresh process with its threads fixed; the projection is the
    recipe's epochs at the measured rates (every epoch trains and tests) plus the first epoch's extra."""
    from lt_paper.bench import recipe_cpu

    out = tmp_path / "bench-recipe.md"
    assert command.main(["--size", "tiny", "--section", "recipe-cpu", "--out", str(out)]) == 0
    report = out.read_text()
    config = recipe_cpu.recipe_config(command.SIZES["tiny"])
    assert (config.epochs, config.eval_every, config.loss, config.drw) == (200, 1, "ldam", True)
    for label in ("eager", "channels_last", "channels_last + fused SGD"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        threads, train_ips, test_ips, extra, epoch_s, hours = (float(c) for c in row.strip("|").split("|")[1:])
        assert threads == 1 and train_ips > 0 and test_ips > 0 and extra >= 0, row
        assert epoch_s == pytest.approx(recipe_cpu.CIFAR10_LT_TRAIN / train_ips, abs=0.06), row
        expected = (200 * recipe_cpu.CIFAR10_LT_TRAIN / train_ips + 200 * recipe_cpu.CIFAR10_TEST / test_ips
                    + extra) / 3600
        # the cells are rounded: images/s to 1, seconds to 0.1, hours to 0.01
        assert hours == pytest.approx(expected, rel=0.02, abs=0.006), row
    assert "torch.compile" not in report  # only with --compile on
    assert f"- command: python -m lt_paper bench --size tiny --section recipe-cpu --out {out}" in report


def test_recipe_section_projects_another_presets_recipe():
    """``--preset``: a cifar-cpu run (40 epochs, a test pass every 5th) is projected with its own schedule."""
    from lt_paper.bench import recipe_cpu

    config = recipe_cpu.recipe_config(command.SIZES["full"], "cifar10_lt/resnet8/ala_moe3", channels_last=True)
    assert (config.arch, config.epochs, config.eval_every, config.num_experts) == ("resnet8", 40, 5, 3)
    measured = {"images_per_s": 1000.0, "test_images_per_s": 4000.0, "first_epoch_extra_s": 30.0}
    assert recipe_cpu.run_seconds(config, measured) == pytest.approx(40 * 12406 / 1000 + 8 * 10000 / 4000 + 30)
