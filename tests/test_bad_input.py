"""Bad input to training: one-line errors naming the key / path, nothing created before validation, no
non-finite checkpoint kept, no run served for other data, no foreign teacher or weights."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lt_paper.cli import main
from lt_paper.train import Config, config_hash, evaluate_run, get_preset, train, train_ensemble
from lt_paper.train.config import ADDED_FIELDS, apply_overrides, parse_assignment
from lt_paper.train.identity import with_data_fingerprint
from lt_paper.train.guards import nonfinite_tensors

REPO = Path(__file__).resolve().parent.parent
QUICK = dict(epochs=1, progress=False)


@pytest.mark.parametrize("assignment, message", [
    ("epochs=abc", r"'epochs': 'abc' is not valid; expected an integer in \[1, 10000\]"),
    ("batch_size=abc", r"'batch_size': 'abc' is not valid; expected an integer in \[1, 1048576\]"),
    ("amp=maybe", r"'amp': 'maybe' is not valid; expected true or false or none"),
    ("epochs=2.5", r"'epochs': 2.5 is not valid"),
    ("epochs=true", r"'epochs': True is not valid"),  # bool is not an int
    ("seed=abc", r"'seed': 'abc' is not valid; expected an integer in \[0, 2\*\*32\)"),
    ("lr=-0.1", r"'lr': -0.1 is out of range; valid: a number in \(0, 10\]"),
    ("lr_decay_at=[0.9, 0.5]", r"'lr_decay_at'.*increasing fractions"),
    ("router_at=1.5", r"'router_at': 1.5 is out of range"),
    ("many_threshold=5", r"'few_threshold' \(20\) and 'many_threshold' \(5\)"),
    ("loss=hinge", r"'loss': 'hinge' is not one of"),
])
def test_config_values_are_type_and_range_checked_naming_the_key(assignment, message):
    with pytest.raises(ValueError, match=message) as err:
        apply_overrides(get_preset("smoke/resnet8/ala"), dict([parse_assignment(assignment)]))
    assert "\n" not in str(err.value)


# The values a new user tried (and more): each refused by config validation in one line naming the key,
# before any run folder exists. Once a traceback after training started (lr=1e308: "value cannot be
# converted to type float without overflow"), a NaN guard after an epoch (lr=1e30) or a hang (epochs=1e30).
ABSURD = [f"{key}={value}" for key, values in {
    "lr": ["Infinity", "NaN", "1e308", "1e30", "-1", "0", "true"],
    "weight_decay": ["Infinity", "NaN", "1e308", "1e30", "-1", "true"],
    "momentum": ["Infinity", "NaN", "1e308", "-1", "1", "true"],
    "epochs": ["Infinity", "1e308", "-1", "0", "true", "2.5", "1000000000000000000000000000000"],
    "warmup_epochs": ["-1", "true", "1000000000000000000000000000000"],
    "batch_size": ["Infinity", "-1", "0", "true", "1000000000000000000000000000000"],
    "eval_batch_size": ["0", "true", "1000000000000000000000000000000"],
    "seed": ["Infinity", "-1", "true", "1.5", "1000000000000000000000000000000"],
    "diversity_temperature": ["Infinity", "NaN", "1e308", "1e-308", "0", "-1", "true"],
    "distill_temperature": ["Infinity", "NaN", "1e308", "1e-308", "0", "-1", "true"],
    "diversity_weight": ["Infinity", "NaN", "1e308", "-1e30", "true"],
    "drw_beta": ["Infinity", "NaN", "1", "-1", "true"],
    "imbalance": ["Infinity", "NaN", "0", "-1", "true"],
    "lr_decay_factors": ["[1e308, 0.01]", "[0, 0.01]", "[-1, 0.01]", "[NaN, 0.01]", "[true, 0.01]"],
    "num_experts": ["0", "-1", "true", "100000"],
    "num_workers": ["-1", "true", "100000"],
    "eval_every": ["0", "-1", "true"],
}.items() for value in values]


@pytest.mark.parametrize("assignment", ABSURD)
def test_absurd_values_are_refused_by_config_validation_naming_the_key(assignment, tmp_path, capsys):
    key = assignment.split("=", 1)[0]
    with pytest.raises(SystemExit) as done:
        main(["train", "--preset", "smoke/resnet8/ala", "--runs-dir", str(tmp_path / "runs"), "--set", assignment,
              "--set", "epochs=1" if key != "epochs" else "progress=false"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: config key {key!r}: "), err
    assert not (tmp_path / "runs").exists()


def test_config_coercions_that_stay_valid():
    base = get_preset("smoke/resnet8/ala")
    lr = apply_overrides(base, {"lr": 1}).lr
    assert lr == 1.0 and isinstance(lr, float)
    assert apply_overrides(base, {"amp": "none"}).amp is None
    assert apply_overrides(base, {"router_at": None}).router_at is None
    assert apply_overrides(base, {"lr_decay_at": 0.5, "lr_decay_factors": [0.1]}).lr_decay_at == (0.5,)
    with pytest.raises(ValueError, match="'num_experts'"):  # a Config built directly is checked too
        apply_overrides(Config(num_experts=0), {})


def test_nothing_is_created_on_disk_before_the_config_is_valid(tmp_path, capsys):
    for bad in ("epochs=2.5", "epochs=true", "few_threshold=100"):
        with pytest.raises(SystemExit) as done:
            main(["train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(tmp_path / "runs"),
                  "--set", bad])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: config key") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_cli_paths_under_a_file_and_a_full_disk_are_one_line_errors(tmp_path, capsys, monkeypatch):
    not_a_dir = tmp_path / "README.md"
    not_a_dir.write_text("a file")
    with pytest.raises(SystemExit) as done:
        main(["train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(not_a_dir / "x"),
              "--set", "epochs=1"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Not a directory" in err and str(not_a_dir) in err
    assert len(err.strip().splitlines()) == 1

    from lt_paper.train import checkpoint

    def full_disk(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=r"No space left on device \(writing .*config.json\)"):
        checkpoint.atomic_write_bytes(tmp_path / "config.json", full_disk)
    assert list(tmp_path.iterdir()) == [not_a_dir]  # no temporary file left
    monkeypatch.setattr("lt_paper.train.engine.atomic_write_json",
                        lambda path, obj: checkpoint.atomic_write_bytes(path, full_disk))
    with pytest.raises(SystemExit) as done:
        main(["train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(tmp_path / "runs"),
              "--set", "epochs=1"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "No space left on device (writing " in err and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(tmp_path), "--set", "device=cuda"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "'device' is 'cuda' but no CUDA device" in err


def test_nonfinite_buffers_are_found_in_one_check():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert nonfinite_tensors(net) == []
    net[1].running_var[2] = float("inf")
    assert nonfinite_tensors(net) == ["1.running_var"]


def test_a_diverged_first_epoch_keeps_no_checkpoint_and_says_so(tmp_path, monkeypatch):
    """A step of lr 1e6: the first epoch's loss is still finite for ALA, but BatchNorm's running_var is inf.
    Config validation refuses lr 1e6 (the schedule is patched to take that step), so the guard is what is
    tested here."""
    import dataclasses

    import lt_paper.train.engine as engine

    real = engine.epoch_settings
    monkeypatch.setattr(engine, "epoch_settings",
                        lambda config, epoch: dataclasses.replace(real(config, epoch), lr=1e6))
    with pytest.raises(FloatingPointError,
                       match=r"not finite .*running_var.* in epoch 1 .*no checkpoint was kept"):
        train("smoke/resnet8/ala", runs_dir=tmp_path, epochs=3, progress=False)
    assert not list(tmp_path.glob("*/checkpoint.pt")) and not list(tmp_path.glob("*/metrics.json"))


def test_teacher_must_be_a_finished_moe_on_the_same_data_and_classes(tmp_path):
    plain = train("smoke/resnet8/ala", runs_dir=tmp_path, **QUICK)
    with pytest.raises(ValueError, match="cannot teach this run: it is a single network"):
        train("smoke/resnet8/ala_distill", runs_dir=tmp_path, teacher=plain["run_dir"], **QUICK)
    other_tail = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path, imbalance=10.0, **QUICK)
    with pytest.raises(ValueError, match=r"it trained on digits_lt \(imbalance 10.0\)"):
        train("smoke/resnet8/ala_distill", runs_dir=tmp_path, teacher=other_tail["run_dir"], **QUICK)
    with pytest.raises(ValueError, match="cannot teach this run: it is a single network"):
        train_ensemble(["smoke/resnet8/ala_distill", "smoke/resnet8/ala"], runs_dir=tmp_path,
                       teacher=plain["run_dir"], seed=1, **QUICK)
    # refused before any directory was made: no config-only run directory, no ensemble directory
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(r["run_dir"]).name for r in (plain, other_tail))


def test_evaluate_refuses_weights_of_another_run(tmp_path):
    a = train("smoke/resnet8/ce", runs_dir=tmp_path, **QUICK)
    b = train("smoke/resnet8/ce", runs_dir=tmp_path, seed=1, **QUICK)
    assert evaluate_run(a["run_dir"], device="cpu")["all"] == pytest.approx(a["all"])
    shutil.copy(Path(b["run_dir"]) / "model.pt", Path(a["run_dir"]) / "model.pt")
    with pytest.raises(ValueError, match=f"belongs to config {b['config_hash']}, not to the run"):
        evaluate_run(a["run_dir"], device="cpu")


def test_a_run_whose_config_was_edited_is_refused_naming_the_run(tmp_path, capsys):
    """config.json edited after the run finished: the run cache, evaluate and a teacher lookup refuse it
    (metrics.json records the hash of the config it trained with); a config.json that is not a config
    object is one line naming the file."""
    from lt_paper.workflows.experiments import finished_run

    run = train("smoke/resnet8/ce", runs_dir=tmp_path, **QUICK)
    run_dir = Path(run["run_dir"])
    trained = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps(dict(trained, lr=0.5)))
    edited = rf"run .*{run_dir.name}: config.json is not the config the run trained with \(it hashes to " \
             rf"\w+, metrics.json records {run['config_hash']}\): it was edited"
    with pytest.raises(ValueError, match=edited):
        train("smoke/resnet8/ce", runs_dir=tmp_path, **QUICK)  # the run cache
    with pytest.raises(ValueError, match=edited):
        finished_run("smoke/resnet8/ce", tmp_path, **QUICK)  # what notebooks read
    with pytest.raises(ValueError, match=edited):
        evaluate_run(run_dir, device="cpu")
    (run_dir / "metrics.json").rename(tmp_path / "metrics.json")  # unfinished: only the weights can tell
    with pytest.raises(ValueError, match=rf"config.json is not the config its weights model.pt trained with "
                                         rf"\(.*say {run['config_hash']}\): config.json was edited"):
        evaluate_run(run_dir, device="cpu")
    (tmp_path / "metrics.json").rename(run_dir / "metrics.json")
    for content, message in (("[1, 2]", "holds a JSON list, not a config"),
                             ('{"lr": 0.1,', "not valid JSON \\(line 1"),
                             ('{"colour": 1}', "unknown config key")):
        (run_dir / "config.json").write_text(content)
        with pytest.raises(SystemExit) as done:
            main(["evaluate", str(run_dir), "--device", "cpu"])
        err = capsys.readouterr().err
        assert done.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: {run_dir / 'config.json'}") and re.search(message, err), err
    (run_dir / "config.json").write_text(json.dumps(trained))  # restored: served again
    assert train("smoke/resnet8/ce", runs_dir=tmp_path, **QUICK)["reused"]


def _cifar_tree(root: Path, shade: int = 0) -> Path:
    """A CIFAR-10 folder (CIFAR-10's class names), 6 train / 2 test 32x32 PNGs per class."""
    from lt_paper.data.cifar import CIFAR10_CLASSES

    for split, n in (("train", 6), ("test", 2)):
        for c, name in enumerate(CIFAR10_CLASSES):
            (root / split / name).mkdir(parents=True)
            for k in range(n):
                pixels = np.full((32, 32, 3), (c * 20 + k * 3 + shade) % 256, np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{k}.png")
    return root


def test_run_identity_includes_the_data_so_other_data_trains_anew(tmp_path):
    digits = get_preset("smoke/resnet8/ala")
    assert config_hash(with_data_fingerprint(digits)) == config_hash(digits)  # published digits runs keep theirs
    assert ADDED_FIELDS["data_fingerprint"] is None
    tree = _cifar_tree(tmp_path / "tree")
    settings = dict(dataset="cifar10_lt", data_root=str(tree), allow_incomplete_data=True, imbalance=2.0,
                    many_threshold=5, few_threshold=4,
                    batch_size=16, **QUICK)
    first = train("smoke/resnet8/ce", runs_dir=tmp_path / "runs", **settings)
    assert first["data_source"]["kind"] == "image folder"
    assert "80 files" in first["data_source"]["fingerprint"]
    moved = tmp_path / "moved"
    tree.rename(moved)  # the same data elsewhere: the same run
    again = train("smoke/resnet8/ce", runs_dir=tmp_path / "runs", **dict(settings, data_root=str(moved)))
    assert again["reused"] and again["run_dir"] == first["run_dir"]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(moved / "train" / "airplane" / "6.png")  # other data
    other = train("smoke/resnet8/ce", runs_dir=tmp_path / "runs", **dict(settings, data_root=str(moved)))
    assert not other["reused"] and other["run_dir"] != first["run_dir"]
    recorded = json.loads((Path(first["run_dir"]) / "metrics.json").read_text())["data_source"]
    assert recorded == first["data_source"]
    evaluate_run(other["run_dir"], device="cpu")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(moved / "test" / "airplane" / "2.png")
    with pytest.raises(ValueError, match="was trained on data"):
        evaluate_run(other["run_dir"], device="cpu")  # the data changed since it trained


def test_published_runs_are_found_without_their_data_but_never_across_two_data_sources(tmp_path):
    from lt_paper.workflows.experiments import finished_run

    tree = _cifar_tree(tmp_path / "tree")
    settings = dict(dataset="cifar10_lt", allow_incomplete_data=True, imbalance=2.0, many_threshold=5,
                    few_threshold=4, batch_size=16, **QUICK)
    trained = train("smoke/resnet8/ce", runs_dir=tmp_path / "runs", data_root=str(tree), **settings)
    lookup = dict(settings, progress=True)  # a runtime-only field may differ
    assert finished_run("smoke/resnet8/ce", tmp_path / "runs", data_root=str(tree), **lookup)["run_dir"] \
        == trained["run_dir"]
    gone = tmp_path / "not-here"  # a laptop without the data reads the published runs all the same
    assert finished_run("smoke/resnet8/ce", tmp_path / "runs", data_root=str(gone), **lookup)["run_dir"] \
        == trained["run_dir"]
    assert finished_run("smoke/resnet8/ce", tmp_path / "runs", data_root=str(gone),
                        **dict(lookup, seed=1)) is None
    other = _cifar_tree(tmp_path / "other", shade=7)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(other / "train" / "airplane" / "6.png")
    # with other data present, reading finished runs falls back to the same preset and seed trained on
    # another copy (finished_rows says so in one line); training never does: train() trains anew
    assert finished_run("smoke/resnet8/ce", tmp_path / "runs", data_root=str(other), **lookup)["run_dir"] \
        == trained["run_dir"]
    again = train("smoke/resnet8/ce", runs_dir=tmp_path / "runs", data_root=str(other), **settings)
    assert again["run_dir"] != trained["run_dir"] and not again["reused"]
    # the data's own run first, when it has one; without data, two runs on two data sources are ambiguous
    assert finished_run("smoke/resnet8/ce", tmp_path / "runs", data_root=str(other), **lookup)["run_dir"] \
        == again["run_dir"]
    with pytest.raises(ValueError, match="trained on different data"):
        finished_run("smoke/resnet8/ce", tmp_path / "runs", data_root=str(gone), **lookup)


@pytest.fixture(scope="module")
def finished_ce(tmp_path_factory):
    """One finished 1-epoch smoke run (its runs directory and its result)."""
    runs = tmp_path_factory.mktemp("finished") / "runs"
    return runs, train("smoke/resnet8/ce", runs_dir=runs, **QUICK)


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[:100], r"metrics.json: not valid JSON \(line \d+: "),
    (lambda text: "[0.5, 0.5]", r"metrics.json: expected a JSON object, got list"),
    (lambda text: '{"all": "garbage"}', r"metrics.json: key 'all' is 'garbage', expected a number in \[0, 1\]"),
    (lambda text: text.replace('"few"', '"fewer"'), r"metrics.json: key 'few' is missing"),
    (lambda text: json.dumps(dict(json.loads(text), train_counts="130")), r"key 'train_counts' is '130'"),
], ids=["truncated", "a list", "a string accuracy", "a missing key", "a string for a list"])
def test_a_damaged_metrics_json_is_a_one_line_error_naming_file_and_key(finished_ce, capsys, damage, message):
    runs, result = finished_ce
    metrics = Path(result["run_dir"]) / "metrics.json"
    good = metrics.read_text()
    metrics.write_text(damage(good))
    try:
        with pytest.raises(SystemExit) as done:  # the cache would serve this run as the result
            main(["train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(runs), "--set", "epochs=1",
                  "--set", "progress=false"])
        err = capsys.readouterr().err
        assert done.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert re.search(message, err) and str(metrics) in err, err
    finally:
        metrics.write_text(good)


def test_evaluate_refuses_an_unknown_device_in_one_line(finished_ce, capsys):
    _, result = finished_ce
    for device in ("banana", "cuda:1"):  # both ran on the CPU
        with pytest.raises(SystemExit) as done:
            main(["evaluate", result["run_dir"], "--device", device])
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.startswith(f"error: device {device!r} is not valid; valid: 'auto'")
        assert len(err.strip().splitlines()) == 1


def test_a_full_disk_while_saving_a_checkpoint_names_the_file_and_keeps_the_previous_one(tmp_path,
                                                                                         monkeypatch):
    """torch's zip writer turns the write's ENOSPC into a RuntimeError ("unexpected pos"): the error
    raised names the errno and the file, and the checkpoint written before stays whole."""
    import errno
    import io
    import os

    from lt_paper.models import build_model
    from lt_paper.train.checkpoint import load_checkpoint, save_checkpoint

    model = build_model("resnet8", 10)  # 80 KB of weights
    path = tmp_path / "checkpoint.pt"
    fields = dict(model=model, optimizer=None, config={}, config_hash="abc", history=[], best={},
                  wall_time_s=0.0)
    save_checkpoint(path, epoch=0, **fields)
    before = path.read_bytes()

    class FullDisk(io.FileIO):  # the device fills up after 4 KiB
        def write(self, data):
            if self.tell() + len(data) > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    # unbuffered, as the large writes of a checkpoint are: the ENOSPC reaches torch's writer, not close()
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: FullDisk(fd, "wb"))
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError) as err:
        save_checkpoint(path, epoch=1, **fields)
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC and "\n" not in str(err.value)
    assert str(err.value) == f"[Errno 28] No space left on device (writing {path})"
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left
