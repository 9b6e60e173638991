"""The training engine on the embedded digits dataset (CPU, seconds per run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lt_paper.data import shot_groups
from lt_paper.train import Config, get_preset, presets, train
from lt_paper.train.checkpoint import load_checkpoint
from lt_paper.train.config import apply_overrides, config_hash, from_dict, parse_assignment, to_dict
from lt_paper.train.engine import build_for
from lt_paper.train.schedule import Schedule
from interrupt import sigkill_mid_epoch

REPO = Path(__file__).resolve().parent.parent
FAST = dict(epochs=6, progress=False)  # 6 epochs x 6 batches of 64 digits


def _python_env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))
    return env


def test_presets_cover_the_paper_tables_and_smoke():
    names = presets()
    for required in ("cifar10_lt/resnet32/ala", "cifar100_lt/resnet32/ala_moe3", "imagenet_lt/resnext50/ala_moe3",
                     "imagenet_lt/resnet50/ala_distill", "inat2018/resnet50/ala_distill", "smoke/resnet8/ala"):
        assert required in names
    smoke = [n for n in names if "smoke" in n]
    assert smoke and all(get_preset(n).dataset == "digits_lt" for n in smoke)
    cifar = get_preset("cifar10_lt/resnet32/ldam_drw")
    s = Schedule.from_config(cifar)
    assert s.decay_epochs == (160, 180) and s.drw_epoch == 160 and s.router_epoch is None
    assert s.lr(0) == pytest.approx(0.02) and s.lr(4) == pytest.approx(0.1)
    assert s.lr(159) == pytest.approx(0.1) and s.lr(160) == pytest.approx(1e-3) and s.lr(199) == pytest.approx(1e-5)
    imnet = Schedule.from_config(get_preset("imagenet_lt/resnext50/ala_moe3"))
    assert imnet.decay_epochs == (60, 80) and imnet.drw_epoch == 80 and imnet.router_epoch == 80
    assert get_preset("inat2018/resnet50/ala").batch_size == 512 and get_preset("inat2018/resnet50/ala").lr == 0.2
    assert get_preset("cifar10_lt/resnet32/ce").drw is False


def test_ride_presets_are_vanilla_ride_and_the_moes_supervise_their_aggregate():
    from lt_paper.train.resolve import resolve_run_config

    for prefix, arch in (("smoke", "resnet8"), ("cifar10_lt", "resnet32"), ("imagenet_lt", "resnext50")):
        for k in (3, 4):
            assert resolve_run_config(f"{prefix}/{arch}/ride{k}", data=False).aggregate_loss is False
            assert resolve_run_config(f"{prefix}/{arch}/ride{k}_router", data=False).aggregate_loss is True
            assert resolve_run_config(f"{prefix}/{arch}/ala_moe{k}", data=False).aggregate_loss is True
            assert resolve_run_config(f"{prefix}/{arch}/ala_moe{k}_mean", data=False).aggregate_loss is True
    # the field keeps the hashes of configs at its default: only vanilla RIDE changes name
    base = get_preset("smoke/resnet8/ala_moe3")
    assert config_hash(base) == config_hash(apply_overrides(base, {"aggregate_loss": True}))
    assert config_hash(base) != config_hash(apply_overrides(base, {"aggregate_loss": False}))


def test_ala_nodrw_is_ala_without_drw_and_imagenet_inat_group_by_table2():
    import dataclasses

    for prefix, arch in (("smoke", "resnet8"), ("cifar10_lt", "resnet32"), ("imagenet_lt", "resnext50")):
        ala, nodrw = get_preset(f"{prefix}/{arch}/ala"), get_preset(f"{prefix}/{arch}/ala_nodrw")
        assert nodrw.drw is False and ala.drw is True
        assert dataclasses.replace(nodrw, name=ala.name, drw=True) == ala
    # shot groups: the paper's Table 2 (few n <= 20) on ImageNet-LT / iNaturalist, n < 20 elsewhere
    assert get_preset("imagenet_lt/resnet50/ce").few_inclusive
    assert get_preset("inat2018/resnet50/ala").few_inclusive
    assert not get_preset("cifar100_lt/resnet32/ala").few_inclusive
    assert not get_preset("smoke/resnet8/ala").few_inclusive


def test_router_switches_on_at_08_on_cifar_and_smoke_and_at_the_last_decay_on_imagenet_and_inat():
    for name in presets():
        config = get_preset(name)
        if config.num_experts == 1:  # no router: the field stays unset, so the run hash stays as it was
            assert config.router_at is None, name
            continue
        schedule = Schedule.from_config(config)
        if config.dataset in ("imagenet_lt", "inat2018"):
            assert config.router_at is None and schedule.router_epoch == schedule.decay_epochs[-1], name
        else:
            assert config.router_at == 0.8, name
            assert schedule.router_epoch == round(0.8 * config.epochs), name
        assert schedule.lr(schedule.router_epoch) == pytest.approx(1e-3 * config.lr / 0.1), name
    assert Schedule.from_config(get_preset("cifar100_lt/resnet32/ala_moe3")).router_epoch == 160


def test_unknown_preset_and_key_list_the_valid_ones(tmp_path):
    with pytest.raises(KeyError, match="smoke/resnet8/ala"):
        train("no/such/preset", runs_dir=tmp_path)
    with pytest.raises(KeyError, match="valid keys are: .*epochs"):
        train("smoke/resnet8/ala", runs_dir=tmp_path, epoch=3)
    with pytest.raises(ValueError, match="'loss'"):
        apply_overrides(Config(), {"loss": "hinge"})
    assert parse_assignment("lr_decay_at=[0.5, 0.75]") == ("lr_decay_at", [0.5, 0.75])
    assert parse_assignment("data_root=/x/y.tar.gz") == ("data_root", "/x/y.tar.gz")


def test_config_choices_are_the_registries_names():
    from lt_paper.data import DATASETS
    from lt_paper.losses import LOSS_NAMES
    from lt_paper.models import ARCHITECTURES, ROUTER_NAMES
    from lt_paper.train.config import VALID_CHOICES

    assert VALID_CHOICES["dataset"] == tuple(DATASETS) and VALID_CHOICES["arch"] == tuple(ARCHITECTURES)
    assert VALID_CHOICES["loss"] == LOSS_NAMES and VALID_CHOICES["router"] == ROUTER_NAMES
    for key in ("dataset", "arch", "loss", "router"):  # every registered name makes a valid config
        for name in VALID_CHOICES[key]:
            assert getattr(apply_overrides(Config(), {key: name}), key) == name


def test_config_hash_ignores_runtime_knobs_only():
    base = get_preset("smoke/resnet8/ala")
    assert config_hash(base) == config_hash(apply_overrides(base, {"num_workers": 0, "progress": False}))
    assert config_hash(base) != config_hash(apply_overrides(base, {"seed": 1}))
    assert config_hash(base) != config_hash(apply_overrides(base, {"lr": 0.05}))


def test_keeping_the_last_partial_batch_is_part_of_the_run_identity():
    """The default keeps the last partial batch (LDAM-DRW): another computation, so another run than
    those recorded before the field existed, whose saved configs (without the key) left it out."""
    base = get_preset("smoke/resnet8/ala")
    assert base.drop_last is False
    old = apply_overrides(base, {"drop_last": True})
    assert config_hash(old) != config_hash(base)
    saved = to_dict(old)
    del saved["drop_last"]  # a config.json written before the field existed
    assert from_dict(saved).drop_last is True and config_hash(from_dict(saved)) == config_hash(old)


@pytest.fixture(scope="module")
def ala_run(tmp_path_factory):
    return train("smoke/resnet8/ala", runs_dir=tmp_path_factory.mktemp("runs"), **dict(FAST, epochs=12))


def test_smoke_run_learns_and_writes_its_records(ala_run):
    run_dir = Path(ala_run["run_dir"])
    assert ala_run["all"] > 0.5  # 10 classes: chance is 0.1
    for name in ("config.json", "metrics.json", "history.json", "records.npz", "model.pt"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoint.pt").exists()
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 13))
    assert history[-1]["test_all"] == pytest.approx(ala_run["all"])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert [h["drw"] for h in history] == [False] * 10 + [True] * 2  # DRW from round(0.8 * 12) = index 10
    assert ala_run["best"]["all"] >= ala_run["all"]
    assert set(ala_run["provenance"]) >= {"commit", "device", "torch", "torchvision"}


@pytest.mark.parametrize("preset", ["smoke/resnet8/ce", "smoke/resnet8/ala"])
def test_group_accuracies_are_those_of_the_records(preset, tmp_path, ala_run):
    result = ala_run if preset.endswith("ala") else train(preset, runs_dir=tmp_path, **FAST)
    rec = np.load(Path(result["run_dir"]) / "records.npz")
    assert len(rec["label"]) == 400 and np.bincount(rec["label"]).tolist() == [40] * 10
    correct = rec["pred"] == rec["label"]
    assert result["all"] == pytest.approx(correct.mean())
    groups = shot_groups(rec["train_counts"].tolist(), many=60, few=20)
    for name, mask in groups.items():
        classes = np.flatnonzero(mask)
        expected = np.mean([correct[rec["label"] == c].mean() for c in classes])
        assert result[name] == pytest.approx(expected), name
    # probabilities are softmax(scale * logits): 30 for the cosine head of ALA, 1 for CE's linear head
    assert np.all((rec["p_gt"] >= 0) & (rec["p_gt"] <= 1))
    if preset.endswith("ala"):
        assert np.all(np.abs(rec["target_logit"]) <= 1 + 1e-5)


def test_finished_run_is_reused_and_force_trains_anew(tmp_path):
    first = train("smoke/resnet8/ce", runs_dir=tmp_path, epochs=2, progress=False)
    stamp = (Path(first["run_dir"]) / "metrics.json").stat().st_mtime_ns
    again = train("smoke/resnet8/ce", runs_dir=tmp_path, epochs=2, progress=False)
    assert again["reused"] and again["run_dir"] == first["run_dir"] and again["all"] == first["all"]
    assert (Path(first["run_dir"]) / "metrics.json").stat().st_mtime_ns == stamp
    forced = train("smoke/resnet8/ce", runs_dir=tmp_path, epochs=2, progress=False, force=True)
    assert not forced["reused"] and forced["run_dir"] != first["run_dir"]
    assert (Path(first["run_dir"]) / "metrics.json").stat().st_mtime_ns == stamp


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    overrides = ["epochs=8", "progress=false"]
    cmd = [sys.executable, "-m", "lt_paper", "train", "--preset", "smoke/resnet8/ala_moe3",
           "--runs-dir", str(tmp_path / "killed")] + sum((["--set", o] for o in overrides), [])
    proc = subprocess.Popen(cmd, cwd=REPO, env=_python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = sigkill_mid_epoch(proc, "*/checkpoint.pt", tmp_path / "killed")
    assert killed_at < 7 and not list((tmp_path / "killed").glob("*/metrics.json"))

    resumed = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path / "killed", epochs=8, progress=False)
    straight = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path / "straight", epochs=8, progress=False)
    assert not resumed["reused"]
    for key in ("all", "many", "medium", "few", "per_class"):
        assert resumed[key] == straight[key], key
    a = np.load(Path(resumed["run_dir"]) / "records.npz")
    b = np.load(Path(straight["run_dir"]) / "records.npz")
    np.testing.assert_array_equal(a["p_gt"], b["p_gt"])
    np.testing.assert_array_equal(a["router_weights"], b["router_weights"])


def test_corrupted_or_foreign_checkpoints_fail_clearly(tmp_path, ala_run):
    model_pt = Path(ala_run["run_dir"]) / "model.pt"
    broken = tmp_path / "checkpoint.pt"
    broken.write_bytes(model_pt.read_bytes()[:1000])
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(broken)
    other = build_for(get_preset("smoke/resnet8/ce"), 10)  # linear head instead of cosine
    with pytest.raises(ValueError, match="architecture mismatch.*head"):
        load_checkpoint(model_pt, other)
    moe = build_for(get_preset("smoke/resnet8/ala_moe3"), 10)
    with pytest.raises(ValueError, match="num_experts"):
        load_checkpoint(model_pt, moe)
    # a run directory whose checkpoint is corrupted refuses to resume instead of starting over
    run_dir = tmp_path / "runs"
    cfg = apply_overrides(get_preset("smoke/resnet8/ce"), dict(FAST, device="cpu", amp=False, channels_last=False))
    from lt_paper.train.engine import run_dir_for
    target = run_dir_for(run_dir, cfg, force=False)
    target.mkdir(parents=True)
    (target / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint.pt is unreadable"):
        train("smoke/resnet8/ce", runs_dir=run_dir, **FAST)
    assert (target / "checkpoint.pt").read_bytes() == b"not a checkpoint"


def test_router_is_uniform_before_switch_on_and_moves_after(tmp_path):
    never = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path, epochs=4, router_at=1.0, progress=False)
    rec = np.load(Path(never["run_dir"]) / "records.npz")
    assert np.all(rec["router_weights"] == np.float32(1 / 3))
    state = torch.load(Path(never["run_dir"]) / "model.pt", weights_only=True)["model"]
    router = {k: v for k, v in state.items() if "router" in k}
    assert router and all(torch.count_nonzero(v) == 0 for v in router.values())

    switched = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path, epochs=4, router_at=0.5, progress=False)
    rec = np.load(Path(switched["run_dir"]) / "records.npz")
    np.testing.assert_allclose(rec["router_weights"].sum(1), 1.0, atol=1e-5)
    assert np.abs(rec["router_weights"] - 1 / 3).max() > 1e-3
    assert rec["expert_p_gt"].shape == (400, 3) and rec["expert_pred"].shape == (400, 3)
    history = json.loads((Path(switched["run_dir"]) / "history.json").read_text())
    assert [h["router_active"] for h in history] == [False, False, True, True]


def test_smoke_moe_router_learns_with_the_recipe_switch_on(tmp_path):
    """With the smoke recipe's own router_at (0.8, lr 1e-3 from then on) the router's weights leave zero
    and its output leaves 1/K: it is trained, not left at the mean."""
    result = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path, epochs=10, progress=False)
    history = json.loads((Path(result["run_dir"]) / "history.json").read_text())
    assert [h["router_active"] for h in history] == [False] * 8 + [True] * 2
    state = torch.load(Path(result["run_dir"]) / "model.pt", weights_only=True)["model"]
    assert torch.count_nonzero(state["router.fc.weight"]) > 0
    assert torch.count_nonzero(state["router.fc.bias"]) > 0
    weights = np.load(Path(result["run_dir"]) / "records.npz")["router_weights"]  # (N, K)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert np.abs(weights - 1 / 3).max() > 1e-3
    assert weights.std(axis=0).max() > 0  # instance-dependent, not one weight vector for every sample


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    # from epoch 3 on the learning rate is multiplied by 1e8: the third epoch diverges (config validation
    # refuses such a schedule, so the schedule is patched: the guard is what is tested)
    import dataclasses

    import lt_paper.train.engine as engine

    real = engine.epoch_settings

    def diverging(config, epoch):
        settings = real(config, epoch)
        return dataclasses.replace(settings, lr=settings.lr * (1e8 if epoch >= 2 else 1))

    monkeypatch.setattr(engine, "epoch_settings", diverging)
    with pytest.raises(FloatingPointError,
                       match=r"training loss is nan in epoch 3.*good checkpoint \(epoch 2"):
        train("smoke/resnet8/ce", runs_dir=tmp_path, epochs=4, progress=False)
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    assert load_checkpoint(checkpoint)["epoch"] == 1  # the second epoch, 0-indexed
    assert not list(tmp_path.glob("*/metrics.json"))


def test_distillation_needs_a_teacher_and_uses_it(tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        train("smoke/resnet8/ala_distill", runs_dir=tmp_path, epochs=2, progress=False)
    teacher = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path, epochs=3, progress=False)
    student = train("smoke/resnet8/ala_distill", runs_dir=tmp_path, epochs=3, teacher=teacher["run_dir"],
                    progress=False)
    plain = train("smoke/resnet8/ala", runs_dir=tmp_path, epochs=3, progress=False)
    assert student["run_dir"] != plain["run_dir"] and student["all"] != plain["all"]


def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    """Same global batch (64) split over 2 ranks. BatchNorm statistics are per rank (16-sample halves
    of each batch), so the runs agree to within a few points of accuracy, not bit for bit."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lt_paper",
           "train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(tmp_path / "ddp"),
           "--set", "epochs=6", "--set", "progress=false"]
    out = subprocess.run(cmd, cwd=REPO, env=_python_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (metrics_file,) = (tmp_path / "ddp").glob("*/metrics.json")
    ddp = json.loads(metrics_file.read_text())
    single = train("smoke/resnet8/ce", runs_dir=tmp_path / "single", epochs=6, progress=False)
    assert ddp["world_size"] == 2
    rec = np.load(metrics_file.parent / "records.npz")
    assert len(rec["label"]) == 400  # every test sample once: no sampler padding
    assert ddp["all"] > 0.5
    assert abs(ddp["all"] - single["all"]) <= 0.08


def test_evaluate_reproduces_the_recorded_metrics_and_the_cli_trains(ala_run, tmp_path, capsys):
    from lt_paper.cli import main
    from lt_paper.train import evaluate_run

    again = evaluate_run(ala_run["run_dir"], device="cpu")
    for key in ("all", "many", "medium", "few"):
        assert again[key] == pytest.approx(ala_run[key])
    with pytest.raises(SystemExit) as done:
        main(["train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(tmp_path), "--set", "epochs=2",
              "--set", "progress=false"])
    assert done.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["reused"] is False and 0 <= printed["all"] <= 1
    with pytest.raises(SystemExit) as bad:
        main(["train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(tmp_path), "--set", "epoch=2"])
    assert bad.value.code == 2 and "valid keys are" in capsys.readouterr().err


def test_a_run_trained_on_cuda_is_evaluated_on_the_cpu(tmp_path):
    # a run as a GPU machine writes it: config.json says device cuda and bf16, and its weights and
    # metrics.json carry that config's hash; evaluating it here on the CPU must find its own weights and
    # skip bf16
    from lt_paper.train import evaluate_run
    from lt_paper.train.run_config import run_name

    result = train("smoke/resnet8/ala", runs_dir=tmp_path, epochs=2, progress=False)
    run_dir = Path(result["run_dir"])
    saved = json.loads((run_dir / "config.json").read_text())
    on_gpu = dict(saved, device="cuda", amp=True, channels_last=True)
    (run_dir / "config.json").write_text(json.dumps(on_gpu))
    state = torch.load(run_dir / "model.pt", weights_only=True)
    state["config_hash"] = config_hash(apply_overrides(Config(), on_gpu))
    torch.save(state, run_dir / "model.pt")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps(dict(metrics, config_hash=state["config_hash"])))
    run_dir = run_dir.rename(run_dir.with_name(run_name(apply_overrides(Config(), on_gpu))))  # named as it was there
    assert evaluate_run(run_dir, device="cpu")["all"] == pytest.approx(result["all"])
