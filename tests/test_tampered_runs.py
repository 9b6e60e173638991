"""A published number comes from the run it is shown for, or not at all.

A finished run is served (run cache, notebooks, publish) only when its folder name, its config and the
config hash its metrics.json records agree, and when metrics.json and history.json say what its
records.npz says; records.npz must hold a run's arrays. A publication holds one profile and one dataset.
Each attack below once changed a published table without an error.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lt_paper.cli import main
from lt_paper.workflows.experiments import finished_run, finished_rows
from lt_paper.workflows.publish import publish
from lt_paper.train import train
from lt_paper.train.run_results import verified_result
from test_publish import _name, _output  # noqa: E402 (tests/ is on the path, as for the other test modules)

REPO = Path(__file__).resolve().parent.parent
QUICK = dict(epochs=1, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A runs directory with two finished 1-epoch smoke runs, CE and ALA (copied by each test)."""
    runs = tmp_path_factory.mktemp("trained") / "runs"
    return runs, {method: Path(train(f"smoke/resnet8/{method}", runs_dir=runs, **QUICK)["run_dir"]).name
                  for method in ("ce", "ala")}


@pytest.fixture
def runs(trained, tmp_path):
    source, names = trained
    shutil.copytree(source, tmp_path / "runs")
    return tmp_path / "runs", names


def _one_line_cli_error(capsys, runs_dir: Path, method: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(["train", "--preset", f"smoke/resnet8/{method}", "--runs-dir", str(runs_dir), "--set", "epochs=1",
              "--set", "progress=false"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_a_run_folder_copied_under_another_runs_name_is_refused_naming_it(runs, capsys):
    runs_dir, names = runs
    impostor = runs_dir / names["ala"]
    shutil.rmtree(impostor)
    shutil.copytree(runs_dir / names["ce"], impostor)  # CE's run under ALA's name: Table 4's ala row
    message = rf"run .*{names['ala']}: the folder is named after another run; .* are those of {names['ce']}"
    with pytest.raises(ValueError, match=message):
        finished_run("smoke/resnet8/ala", runs_dir, **QUICK)  # what the notebooks read (train=False)
    with pytest.raises(ValueError, match=message):
        finished_rows("smoke", "resnet8", {"ALA": "ala"}, runs_dir=runs_dir, progress=False, epochs=1)
    with pytest.raises(ValueError, match=message):
        train("smoke/resnet8/ala", runs_dir=runs_dir, **QUICK)  # the run cache (train=True)
    assert re.search(message, _one_line_cli_error(capsys, runs_dir, "ala"))
    assert finished_run("smoke/resnet8/ce", runs_dir, **QUICK)["run_dir"] == str(runs_dir / names["ce"])
    forced = Path(train("smoke/resnet8/ce", runs_dir=runs_dir, force=True, **QUICK)["run_dir"])
    assert forced.name == f"{names['ce']}-force1" and verified_result(forced)["epoch"] == 1  # its own name too


def test_a_metrics_json_edited_to_plausible_values_is_refused_and_tables_read_the_records(runs, capsys):
    runs_dir, names = runs
    metrics_path = runs_dir / names["ce"] / "metrics.json"
    good = json.loads(metrics_path.read_text())
    served = finished_run("smoke/resnet8/ce", runs_dir, **QUICK)
    assert served["all"] == good["all"] and served["per_class"] == good["per_class"]
    edits = {
        "all": (dict(good, all=0.99), r"metrics.json says all = 0.99, its records.npz gives 0\.\d+"),
        "few": (dict(good, few=0.99), r"metrics.json says few = 0.99"),
        "per_class": (dict(good, per_class=[0.99] * len(good["per_class"])), r"per_class accuracies"),
        "best": (dict(good, best=dict(good["best"], all=0.99)), r"best epoch .* is not history.json's best"),
        "train_counts": (dict(good, train_counts=good["train_counts"][::-1]), r"other train_counts"),
    }
    for what, (edited, message) in edits.items():
        metrics_path.write_text(json.dumps(edited))
        for read in (lambda: finished_run("smoke/resnet8/ce", runs_dir, **QUICK),
                     lambda: train("smoke/resnet8/ce", runs_dir=runs_dir, **QUICK)):
            with pytest.raises(ValueError, match=rf"run .*{names['ce']}: .*{message}"):
                read()
        if what == "all":
            assert names["ce"] in _one_line_cli_error(capsys, runs_dir, "ce")
    # history.json edited alongside metrics.json's best: the records still decide the last epoch
    history_path = runs_dir / names["ce"] / "history.json"
    history = json.loads(history_path.read_text())
    history_path.write_text(json.dumps([dict(e, test_all=0.99) for e in history]))
    metrics_path.write_text(json.dumps(dict(good, all=0.99, best=dict(good["best"], all=0.99))))
    with pytest.raises(ValueError, match=r"metrics.json says all = 0.99"):
        finished_run("smoke/resnet8/ce", runs_dir, **QUICK)


def test_the_cache_serves_a_run_only_for_the_data_it_trained_on(tmp_path):
    """A run trained on one copy of CIFAR, copied under the name of the same config on other data, or with
    the data its metrics.json records edited, is refused naming the run."""
    from test_bad_input import _cifar_tree

    settings = dict(dataset="cifar10_lt", allow_incomplete_data=True, imbalance=2.0, many_threshold=5,
                    few_threshold=4, batch_size=16, **QUICK)
    first, other = _cifar_tree(tmp_path / "first"), _cifar_tree(tmp_path / "other", shade=7)
    runs = tmp_path / "runs"
    on_first = Path(train("smoke/resnet8/ce", runs_dir=runs, data_root=str(first), **settings)["run_dir"])
    on_other = Path(train("smoke/resnet8/ce", runs_dir=runs, data_root=str(other), **settings)["run_dir"])
    assert on_first.name != on_other.name  # the data fingerprint is part of the run's name
    shutil.rmtree(on_other)
    shutil.copytree(on_first, on_other)  # the first data's run served for the other data
    with pytest.raises(ValueError, match=rf"run .*{on_other.name}: the folder is named after another run"):
        finished_run("smoke/resnet8/ce", runs, data_root=str(other), **settings)
    shutil.rmtree(on_other)
    metrics = json.loads((on_first / "metrics.json").read_text())
    (on_first / "metrics.json").write_text(json.dumps(dict(metrics, data_source=dict(metrics["data_source"],
                                                                                      fingerprint="other"))))
    with pytest.raises(ValueError, match=rf"run .*{on_first.name}: metrics.json records data .*'other'"):
        finished_run("smoke/resnet8/ce", runs, data_root=str(first), **settings)


@pytest.mark.parametrize("change, message", [
    (lambda a: dict(a, logits=np.zeros((len(a["label"]), 10), np.float32)), r"unexpected array\(s\) \['logits'\]"),
    (lambda a: {k: v for k, v in a.items() if k != "p_gt"}, r"missing array\(s\) \['p_gt'\]"),
    (lambda a: dict(a, pred=a["pred"].astype(np.float32)), r"array 'pred' is float32 .* expected int"),
    (lambda a: dict(a, pred=a["pred"][:-1]), r"array 'pred' is int64 of shape \(\d+,\), expected int of shape \(N\)"),
    (lambda a: dict(a, pred=a["pred"] + 100), r"array 'pred' holds classes outside 0..9"),
    (lambda a: dict(a, expert_pred=np.zeros((len(a["label"]), 3), np.int64)),
     r"missing array\(s\) \['expert_p_gt', 'router_weights'\]"),
], ids=["an extra array", "a missing array", "float predictions", "a short array", "predictions out of range",
        "one MoE array"])
def test_a_records_npz_of_other_or_missing_arrays_is_refused_naming_it(runs, change, message):
    runs_dir, names = runs
    path = runs_dir / names["ce"] / "records.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(path, **change(arrays))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: .*{message}"):
        finished_run("smoke/resnet8/ce", runs_dir, **QUICK)


def test_every_published_run_is_its_own_and_its_metrics_are_its_records():
    """The published runs pass every check above, and their tables read the numbers their metrics hold."""
    published = sorted(REPO.glob("results/*/runs/*"))
    assert len(published) >= 20
    for run in published:
        metrics = json.loads((run / "metrics.json").read_text())
        result = verified_result(run)
        assert all(result[g] == metrics[g] or (result[g] != result[g] and metrics[g] != metrics[g])
                   for g in ("all", "many", "medium", "few")), run.name


# ------------------------------------------------------------------------------------------- publish
def test_publish_refuses_a_copied_run_an_edited_metrics_json_or_other_records_before_writing(tmp_path):
    repo = tmp_path / "repo"
    attacks = {
        "copied": lambda run: (shutil.rmtree(run), shutil.copytree(run.parent / _name("run-a"), run)),
        "edited metrics": lambda run: (run / "metrics.json").write_text(
            json.dumps(dict(json.loads((run / "metrics.json").read_text()), all=0.99))),
        "other records": lambda run: np.savez_compressed(
            run / "records.npz", **dict(np.load(run / "records.npz")), logits=np.zeros(3, np.float32)),
    }
    messages = {"copied": "the folder is named after another run", "edited metrics": "metrics.json says all = 0.99",
                "other records": r"records.npz: not a run's records: unexpected array\(s\) \['logits'\]"}
    for attack, damage in attacks.items():
        out = _output(tmp_path / attack, runs=[("run-a", 0.5), ("run-b", 0.7)])
        run_b = tmp_path / attack / "runs" / _name("run-b")
        damage(run_b)
        with pytest.raises(ValueError, match=rf"{_name('run-b')}.*{messages[attack]}") as err:
            publish(out, "smoke", repo_root=repo)
        assert "\n" not in str(err.value)
        assert not repo.exists(), attack  # refused before anything was written


def test_a_publication_holds_one_profile_and_one_dataset(tmp_path):
    repo = tmp_path / "repo"
    publish(_output(tmp_path / "smoke"), "smoke", repo_root=repo)
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    other = _output(tmp_path / "cpu", notebooks=["table4_ala_ablation"], tag="v2", runs=[("run-b", 0.7)])
    for summary in other.glob("*/summary.json"):
        content = json.loads(summary.read_text())
        content["parameters"].update(profile="cifar-cpu", dataset="cifar10_lt")
        summary.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"results/smoke is a publication of profile smoke on digits_lt; this "
                                         r"output is profile cifar-cpu on cifar10_lt: publish it under another name"):
        publish(other, "smoke", repo_root=repo, partial=True, force=True)
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before
    assert publish(other, "cifar_cpu", repo_root=repo, partial=True)["notebooks"] == 1  # under its own name
    mixed = _output(tmp_path / "mixed", notebooks=["table4_ala_ablation", "figure1_hard_samples"])
    summary = mixed / "figure1_hard_samples" / "summary.json"
    summary.write_text(json.dumps(dict(json.loads(summary.read_text()),
                                       parameters={"profile": "cifar-cpu", "dataset": "cifar10_lt"})))
    with pytest.raises(ValueError, match=r"mixes notebooks of several profiles / datasets \(cifar-cpu on "
                                         r"cifar10_lt, smoke on digits_lt\)"):
        publish(mixed, "mixed", repo_root=repo, partial=True)
