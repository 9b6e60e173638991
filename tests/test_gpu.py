"""CUDA checks (``python -m pytest -m gpu tests/test_gpu.py``), skipped on machines without a GPU.

Each check is short (the smoke digits, ResNet-8, a few steps or epochs) and carries its own time
limit where pytest-timeout is installed, so that one hanging check cannot eat a GPU lease. What they
protect: the CUDA-only code paths (bf16 autocast, channels_last, the fused SGD kernel, torch.compile
with CUDA graphs) train like the fp32 eager default within stated tolerances; an ensemble trains like
its members alone; an MoE run switches DRW and the router on as scheduled; ``torchrun`` works with
NCCL; an interrupted deterministic run resumes to the same numbers; records evaluated on the GPU are
those a CPU evaluation of the same weights gives; a notebook runs on ``cuda`` through papermill.

The checks are written once, for a device; the ``..._rehearsed_on_cpu`` tests (not marked ``gpu``) run
the cheap ones on the CPU in every test run, so that a change of the engine's API breaks them here and
not in the first minutes of a GPU lease.

Tolerances compare the weight UPDATE of a few SGD steps (``w_after - w_before``), relative to the
fp32 eager update, and the per-step losses: bf16 keeps 8 mantissa bits (about 3 significant digits),
TF32 convolutions (the engine's CUDA setting) and other kernels (channels_last, Inductor, grouped or
batched ensemble kernels) change rounding only.
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

REPO = Path(__file__).resolve().parent.parent
STEPS = 4  # SGD steps per variant in the step comparisons
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (python -m pytest -m gpu tests/test_gpu.py on a GPU machine)")


def time_limit(seconds: int):
    """pytest-timeout's per-test limit where the plugin is installed (the GPU machine has it)."""
    try:
        import pytest_timeout  # noqa: F401
    except ImportError:
        return lambda test: test
    return pytest.mark.timeout(seconds)


def gpu_test(seconds: int):
    """A CUDA check: marked ``gpu``, skipped without CUDA, stopped after ``seconds``."""
    def mark(test):
        return pytest.mark.gpu(NEEDS_CUDA(time_limit(seconds)(test)))
    return mark


def _env() -> dict:
    """The environment of a child process: this checkout first, then whatever PYTHONPATH held (wheels)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, CUBLAS_WORKSPACE_CONFIG=":4096:8")


# ------------------------------------------------------------------------------ a few steps, compared
def _steps(device: str, **fields) -> tuple[list[float], torch.Tensor]:
    """Per-step losses and the weight update of ``STEPS`` SGD steps of ``smoke/resnet8/ala`` on ``device``.

    Goes through the engine's own ``build_run`` / ``train_one_epoch`` (one batch per call), on the same
    batches and initial weights for every variant; ``fields`` are config fields (amp, channels_last,
    fused_optimizer, compile); the default is fp32 eager.
    """
    from lt_paper.data import load_dataset, make_loaders
    from lt_paper.train.engine import build_run, configure_backends, train_one_epoch
    from lt_paper.train.resolve import resolve_run_config

    base = dict(device=device, amp=False, channels_last=False, progress=False)
    config = resolve_run_config("smoke/resnet8/ala", dict(base, **fields), data=False)
    dev = torch.device(device)
    configure_backends(config, dev)
    data = load_dataset(config.dataset, imbalance=config.imbalance)
    loader, _ = make_loaders(data, config.batch_size, dev, seed=config.seed)
    batches = [tuple(t.clone() for t in batch) for batch in loader][:STEPS]
    parts = build_run(config, data, dev)
    before = torch.cat([p.detach().float().flatten() for p in parts.network.parameters()])
    for group in parts.optimizer.param_groups:
        group["lr"] = 0.05
    losses = []
    for batch in batches:
        totals = train_one_epoch(parts.model, [batch], parts.objective, parts.optimizer, dev, amp=config.amp,
                                 channels_last=config.channels_last, compiled=config.compile)
        losses.append((totals[0] / totals[2]).item())
    after = torch.cat([p.detach().float().flatten() for p in parts.network.parameters()])
    return losses, after - before


def _assert_trains_like_fp32_eager(device: str, variant: dict, loss_rtol: float, update_rtol: float) -> None:
    ref_losses, ref_update = _steps(device)
    losses, update = _steps(device, **variant)
    assert all(np.isfinite(losses)), losses
    np.testing.assert_allclose(losses, ref_losses, rtol=loss_rtol, err_msg=f"per-step losses, {variant}")
    relative = ((update - ref_update).norm() / ref_update.norm()).item()
    assert relative <= update_rtol, f"{variant}: weight update differs by {relative:.2e} (relative) from fp32 eager"


@gpu_test(120)
def test_bf16_autocast_trains_like_fp32():
    # bf16 rounding of 4 steps moves the update by about 15 % (seen with CPU autocast); a wrong or
    # missing gradient moves it by 100 % or more
    _assert_trains_like_fp32_eager("cuda", {"amp": True}, loss_rtol=3e-2, update_rtol=0.3)


@gpu_test(120)
def test_channels_last_trains_like_contiguous():
    _assert_trains_like_fp32_eager("cuda", {"channels_last": True}, loss_rtol=1e-2, update_rtol=5e-2)


@gpu_test(120)
def test_fused_sgd_trains_like_the_default_sgd():
    _assert_trains_like_fp32_eager("cuda", {"fused_optimizer": True}, loss_rtol=1e-3, update_rtol=1e-2)


def test_step_comparison_rehearsed_on_cpu():
    _assert_trains_like_fp32_eager("cpu", {"fused_optimizer": True}, loss_rtol=1e-5, update_rtol=1e-4)


# ------------------------------------------------------------------------------------------ ensembles
@gpu_test(240)
def test_ensemble_trains_like_its_members_alone(tmp_path):
    try:
        from lt_paper.train import train_ensemble
    except ImportError:
        pytest.skip("lt_paper.train.train_ensemble is not in this checkout")
    from lt_paper.train import train
    from lt_paper.train.resolve import resolve_run_config

    configs = [resolve_run_config(f"smoke/resnet8/{m}", dict(device="cuda", epochs=3, progress=False), data=False)
               for m in ("ce", "ala", "ala_moe3")]
    together = train_ensemble(configs, runs_dir=tmp_path / "ensemble")
    alone = [train(c, runs_dir=tmp_path / "alone") for c in configs]
    for e, s in zip(together, alone):
        assert Path(e["run_dir"]).name == Path(s["run_dir"]).name  # same config, same run directory name
        first_e = json.loads((Path(e["run_dir"]) / "history.json").read_text())[0]
        first_s = json.loads((Path(s["run_dir"]) / "history.json").read_text())[0]
        assert first_e["train_loss"] == pytest.approx(first_s["train_loss"], rel=3e-2)
        assert abs(e["all"] - s["all"]) <= 0.05, (Path(s["run_dir"]).name, e["all"], s["all"])


# ---------------------------------------------------------------------------------- an MoE's schedule
def _check_moe_schedule(tmp_path: Path, device: str) -> None:
    from lt_paper.train import train
    from lt_paper.train.config import from_dict
    from lt_paper.train.schedule import Schedule

    result = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path, device=device, epochs=5, progress=False)
    run_dir = Path(result["run_dir"])
    config = from_dict(json.loads((run_dir / "config.json").read_text()))
    assert config.device == device and config.amp == config.channels_last == (device == "cuda")
    schedule = Schedule.from_config(config)
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["drw"] for h in history] == [schedule.drw_active(e) for e in range(5)]
    assert [h["router_active"] for h in history] == [schedule.router_active(e) for e in range(5)]
    assert history[-1]["drw"] and history[-1]["router_active"] and not history[0]["router_active"]
    assert all(np.isfinite(h["train_loss"]) for h in history)
    with np.load(run_dir / "records.npz") as records:
        weights = records["router_weights"]  # (N, K)
        assert weights.shape == (len(records["label"]), 3)
        np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-2)


@gpu_test(120)
def test_moe_run_switches_drw_and_router_on_as_scheduled_on_cuda(tmp_path):
    _check_moe_schedule(tmp_path, "cuda")


def test_moe_schedule_check_rehearsed_on_cpu(tmp_path):
    _check_moe_schedule(tmp_path, "cpu")


# ------------------------------------------------------------------------------------- torchrun, NCCL
TORCHRUN_SCRIPT = '''
import json, os, sys
import torch
import torch.distributed as dist
from torch import nn
from lt_paper.models import build_model
from lt_paper.train import train

runs_dir, device, backend = sys.argv[1:4]
# the engine under torchrun (one process: it needs no process group and must not create one)
result = train("smoke/resnet8/ala", runs_dir=runs_dir, device=device, epochs=2, progress=False)
# the collectives themselves, and DDP around an MoE as the engine wraps it (the router idles until it
# switches on, hence find_unused_parameters)
if device == "cuda":
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group(backend)
total = torch.ones(3, device=device)
dist.all_reduce(total)
box = [{"from": "rank 0"}]
dist.broadcast_object_list(box, src=0)
model = build_model("resnet8", 10, head="cosine", num_experts=3).to(device)
ddp = nn.parallel.DistributedDataParallel(model, device_ids=[0] if device == "cuda" else None,
                                          find_unused_parameters=True)
ddp(torch.randn(4, 3, 8, 8, device=device)).logits.square().sum().backward()
grads = sum(p.grad is not None for p in model.parameters())
dist.barrier()
dist.destroy_process_group()
print(json.dumps({"all": result["all"], "world_size": result["world_size"], "sum": total.tolist(),
                  "box": box[0], "grads": grads}))
'''


def _check_torchrun(tmp_path: Path, device: str, backend: str) -> None:
    script = tmp_path / "torchrun_check.py"
    script.write_text(TORCHRUN_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(script),
           str(tmp_path / "runs"), device, backend]
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["world_size"] == 1 and 0.0 <= report["all"] <= 1.0
    assert report["sum"] == [1.0, 1.0, 1.0] and report["box"] == {"from": "rank 0"} and report["grads"] > 0


@gpu_test(240)
def test_torchrun_one_process_trains_and_nccl_works(tmp_path):
    _check_torchrun(tmp_path, "cuda", "nccl")


def test_torchrun_check_rehearsed_on_cpu_with_gloo(tmp_path):
    _check_torchrun(tmp_path, "cpu", "gloo")


# ----------------------------------------------------------------------------------------- resuming
RESUME_SCRIPT = '''
import json, sys
import lt_paper.train.engine as engine
from lt_paper.train import train

runs, device = sys.argv[1:3]
common = dict(device=device, epochs=4, deterministic=True, progress=False)
whole = train("smoke/resnet8/ala_moe3", runs_dir=runs + "/whole", **common)


class Interrupted(Exception):
    pass


real_evaluate, calls = engine.evaluate_model, []


def evaluate_then_stop(*args, **kwargs):  # the evaluation of epoch 3 never happens: 2 checkpoints exist
    calls.append(1)
    if len(calls) == 3:
        raise Interrupted()
    return real_evaluate(*args, **kwargs)


engine.evaluate_model = evaluate_then_stop
try:
    train("smoke/resnet8/ala_moe3", runs_dir=runs + "/resumed", **common)
    raise SystemExit("the interruption did not happen")
except Interrupted:
    pass
engine.evaluate_model = real_evaluate
resumed = train("smoke/resnet8/ala_moe3", runs_dir=runs + "/resumed", **common)
print(json.dumps({"whole": whole["run_dir"], "resumed": resumed["run_dir"]}))
'''


def _check_resume(tmp_path: Path, device: str) -> None:
    script = tmp_path / "resume_check.py"
    script.write_text(RESUME_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path), device], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stderr[-4000:]
    dirs = {k: Path(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    histories = {k: json.loads((d / "history.json").read_text()) for k, d in dirs.items()}
    assert len(histories["whole"]) == len(histories["resumed"]) == 4
    for a, b in zip(histories["whole"], histories["resumed"]):
        assert a == b, f"epoch {a['epoch']}: {a} != {b}"
    with np.load(dirs["whole"] / "records.npz") as a, np.load(dirs["resumed"] / "records.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@gpu_test(240)
def test_interrupted_deterministic_run_resumes_to_the_same_numbers_on_cuda(tmp_path):
    _check_resume(tmp_path, "cuda")


def test_resume_check_rehearsed_on_cpu(tmp_path):
    _check_resume(tmp_path, "cpu")


# ------------------------------------------------------------------------------ records, GPU vs CPU
def _check_records_against_cpu(tmp_path: Path, device: str) -> None:
    from lt_paper.data import load_dataset, make_loaders
    from lt_paper.losses import build_loss
    from lt_paper.train import evaluate_run, train
    from lt_paper.train.checkpoint import load_checkpoint
    from lt_paper.train.config import from_dict
    from lt_paper.train.distributed import DistInfo
    from lt_paper.train.engine import FINAL_MODEL, build_for
    from lt_paper.train.evaluate import gather_records, predict
    from lt_paper.train.schedule import Schedule

    # fp32 on both sides (amp off): what differs is the device (TF32 convolutions on CUDA), not the dtype
    result = train("smoke/resnet8/ala_moe3", runs_dir=tmp_path, device=device, epochs=3, amp=False, progress=False)
    run_dir = Path(result["run_dir"])
    config = from_dict(json.loads((run_dir / "config.json").read_text()))
    data = load_dataset(config.dataset, imbalance=config.imbalance)
    cpu = torch.device("cpu")
    _, test_loader = make_loaders(data, config.batch_size, cpu, seed=config.seed)
    model = build_for(config, data.num_classes)
    state = load_checkpoint(run_dir / FINAL_MODEL, model, map_location=cpu)
    model.set_router_active(Schedule.from_config(config).router_active(state["epoch"]))
    scale = build_loss(config.loss, data.train_counts).scale
    on_cpu = gather_records(predict(model, test_loader, scale, cpu, amp=False), DistInfo())
    with np.load(run_dir / "records.npz") as recorded:
        assert set(on_cpu) <= set(recorded.files)
        np.testing.assert_array_equal(recorded["label"], on_cpu["label"])
        assert (recorded["pred"] == on_cpu["pred"]).mean() >= 0.99
        np.testing.assert_allclose(recorded["target_logit"], on_cpu["target_logit"], atol=5e-3)
        np.testing.assert_allclose(recorded["p_gt"], on_cpu["p_gt"], atol=3e-2)
        np.testing.assert_allclose(recorded["router_weights"], on_cpu["router_weights"], atol=5e-3)
    again = evaluate_run(run_dir, device="cpu")
    assert abs(again["all"] - result["all"]) <= 0.01


@gpu_test(120)
def test_records_evaluated_on_cuda_equal_a_cpu_evaluation_of_the_same_weights(tmp_path):
    _check_records_against_cpu(tmp_path, "cuda")


def test_records_check_rehearsed_on_cpu(tmp_path):
    _check_records_against_cpu(tmp_path, "cpu")


# ------------------------------------------------------------------------------------ a notebook
@gpu_test(300)
def test_papermill_runs_a_notebook_on_cuda(tmp_path):
    pytest.importorskip("papermill", reason="papermill is not installed (carry the wheels of scripts/gpu_wheels.sh)")
    from lt_paper.workflows.reproduce import execute_notebook

    params = dict(profile="smoke", prefix="smoke", dataset="digits_lt", arch="resnet8", epochs=2, seeds=[0],
                  device="cuda", data_root=None, runs_dir=str(tmp_path / "runs"))
    execute_notebook("figure4_router_weights", tmp_path / "out", params, kernel=os.environ.get("LT_PAPER_KERNEL"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["figures"] and summary["provenance"]["device"] == torch.cuda.get_device_name()
    configs = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/config.json")]
    assert len(configs) == 2 and all(c["device"] == "cuda" for c in configs)


# ----------------------------------------------------------------- last: compiling takes the longest
@gpu_test(300)
def test_compile_with_cuda_graphs_trains_like_eager():
    _assert_trains_like_fp32_eager("cuda", {"compile": True}, loss_rtol=1e-2, update_rtol=5e-2)
