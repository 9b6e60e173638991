"""Tests of lt_paper.models: shapes, heads, parameter / FLOP counts, the MoE's router and invariants.

Expected values are computed independently (closed-form counts, torchvision's reference networks,
explicit normalised dot products and weighted sums), never by calling the code under test twice.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lt_paper.models import (
    CosineHead,
    build_head,
    MixtureOfExperts,
    ModelOutput,
    ZeroPadShortcut,
    build_model,
    check_signature,
    cifar_resnet_plan,
    count_flops,
    count_parameters,
    model_signature,
    resnet50_plan,
)

CIFAR_ARCHS = {"resnet8": 1, "resnet20": 3, "resnet32": 5}  # arch -> blocks per stage


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are small: one intra-op thread is as fast, and avoids OpenMP spin-waiting that
    made this file 10x slower when other processes share the 2 cores. Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _images(n: int, size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _perturb(module: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


# ---------------------------------------------------------------- closed-form counts (independent)


def _cifar_stages(blocks: int, widths: list[int], stem: int = 16) -> list[tuple[int, int, int, int]]:
    """(in_channels, planes, blocks, stride) per stage of a CIFAR ResNet whose stage i has widths[i]."""
    stages, c_in = [], stem
    for i, w in enumerate(widths):
        stages.append((c_in, w, blocks, 1 if i == 0 else 2))
        c_in = w
    return stages


def _cifar_params(stages, num_classes: int, in_channels: int = 3, stem: int = 16) -> int:
    """3x3 convs without bias, BN (2 per channel), option-A shortcuts free, linear head with bias."""
    total = in_channels * stem * 9 + 2 * stem
    for c_in, w, n, _ in stages:
        for b in range(n):
            total += (c_in if b == 0 else w) * w * 9 + w * w * 9 + 4 * w
    return total + stages[-1][1] * num_classes + num_classes


def _cifar_flops(stages, num_classes: int, size: int, in_channels: int = 3, stem: int = 16) -> int:
    """2 FLOPs per multiply-accumulate in convs and the linear layer (FlopCounterMode's convention)."""
    flops = 2 * in_channels * stem * 9 * size * size
    for c_in, w, n, stride in stages:
        size = math.ceil(size / stride)
        for b in range(n):
            flops += 2 * ((c_in if b == 0 else w) * w * 9 + w * w * 9) * size * size
    return flops + 2 * stages[-1][1] * num_classes


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("arch", list(CIFAR_ARCHS))
@pytest.mark.parametrize("head", ["linear", "cosine"])
@pytest.mark.parametrize("num_experts", [1, 3])
@pytest.mark.parametrize("size", [8, 32])
def test_cifar_output_shapes(arch, head, num_experts, size):
    model = build_model(arch, 7, head=head, num_experts=num_experts)
    out = model(_images(4, size))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (4, 7)
    if num_experts == 1:
        assert out.expert_logits is None and out.router_weights is None
        assert out.features.shape == (4, 64)  # pooled last stage
    else:
        assert out.expert_logits.shape == (4, num_experts, 7)
        assert out.router_weights.shape == (4, num_experts)
        assert out.features.shape == (4, 16)  # pooled trunk (stem + stage 1)


@pytest.mark.parametrize("arch", ["resnet50", "resnext50"])
@pytest.mark.parametrize("head", ["linear", "cosine"])
@pytest.mark.parametrize("num_experts", [1, 2])
def test_imagenet_output_shapes(arch, head, num_experts):
    model = build_model(arch, 5, head=head, num_experts=num_experts)
    out = model(_images(2, 64))
    assert out.logits.shape == (2, 5)
    if num_experts == 1:
        assert out.expert_logits is None and out.router_weights is None
        assert out.features.shape == (2, 2048)
    else:
        assert out.expert_logits.shape == (2, 2, 5)
        assert out.router_weights.shape == (2, 2)
        assert out.features.shape == (2, 512)  # pooled trunk (stem + 2 stages)


def test_in_channels_and_tiny_input():
    model = build_model("resnet32", 10, in_channels=1, num_experts=2)
    assert model(_images(3, 8, channels=1)).logits.shape == (3, 10)


# ---------------------------------------------------------------- heads


def test_cosine_head_is_normalised_dot_product():
    head = CosineHead(12, 5)
    x = torch.randn(6, 12) * 7.0
    expected = F.cosine_similarity(x[:, None, :], head.weight[None, :, :].detach(), dim=-1)  # (6, 5)
    got = head(x)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert not any(name.endswith("bias") for name, _ in head.named_parameters())
    # scale-free: rescaling features or weights changes nothing
    torch.testing.assert_close(head(3.0 * x), got, atol=1e-6, rtol=0)


def test_cosine_head_init_rows_unit_norm():
    head = CosineHead(64, 10)
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(10), atol=1e-5, rtol=0)


def test_linear_head_is_plain_linear():
    head = build_head("linear", 8, 3)
    assert type(head) is nn.Linear and head.weight.shape == (3, 8) and head.bias.shape == (3,)


@pytest.mark.parametrize("num_experts", [1, 3])
def test_cosine_model_outputs_in_unit_interval(num_experts):
    model = build_model("resnet20", 10, head="cosine", num_experts=num_experts)
    out = model(_images(8, 16) * 5)
    for t in (out.logits,) + ((out.expert_logits,) if num_experts > 1 else ()):
        assert t.abs().max().item() <= 1.0 + 1e-6


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    "arch, reference",
    [("resnet50", torchvision.models.resnet50), ("resnext50", torchvision.models.resnext50_32x4d)],
)
def test_imagenet_parameter_count_matches_torchvision(arch, reference):
    ours = build_model(arch, 1000, head="linear")
    theirs = reference()
    assert count_parameters(ours) == sum(p.numel() for p in theirs.parameters())
    shapes = lambda m: sorted(tuple(p.shape) for p in m.parameters())  # noqa: E731
    assert shapes(ours) == shapes(theirs)


def test_known_parameter_totals():
    assert count_parameters(build_model("resnet50", 1000)) == 25_557_032
    assert count_parameters(build_model("resnext50", 1000)) == 25_028_904


@pytest.mark.parametrize("arch", list(CIFAR_ARCHS))
@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_parameter_count_closed_form(arch, num_classes):
    expected = _cifar_params(_cifar_stages(CIFAR_ARCHS[arch], [16, 32, 64]), num_classes)
    assert count_parameters(build_model(arch, num_classes)) == expected
    if arch == "resnet32" and num_classes == 10:
        assert expected == 464_154  # LDAM-DRW's "0.46M"


def test_moe_parameter_count_closed_form():
    """Stem + stage 1 once; per expert stages 2-3 at 24 / 48 and a 48 -> C head; router 16 -> K."""
    k, c = 3, 10
    trunk = 3 * 16 * 9 + 32 + 5 * (2 * 16 * 16 * 9 + 64)
    expert = _cifar_params(_cifar_stages(5, [16, 24, 48]), c) - _cifar_params(_cifar_stages(5, [16]), 0)
    router = 16 * k + k
    assert count_parameters(build_model("resnet32", c, num_experts=k)) == trunk + k * expert + router


def test_option_a_shortcut_is_parameter_free_zero_padding():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    assert count_parameters(shortcut) == 0
    x = torch.randn(2, 16, 9, 9)
    y = shortcut(x)
    assert y.shape == (2, 32, 5, 5)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0
    # RIDE's expert entry 16 -> 24 pads 4 + 4
    y = ZeroPadShortcut(16, 24, stride=2)(x)
    assert torch.equal(y[:, 4:20], x[:, :, ::2, ::2])
    with pytest.raises(ValueError):
        ZeroPadShortcut(32, 16, stride=2)


def test_cifar_resnet_has_only_3x3_convs():
    convs = [m for m in build_model("resnet32", 10).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 31 and all(c.kernel_size == (3, 3) for c in convs)


def test_cifar_depth_validation():
    with pytest.raises(ValueError, match="6n"):
        cifar_resnet_plan(33)


# ---------------------------------------------------------------- MoE structure


def _conv_out_channels(module: nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_resnet32_expert_widths():
    model = build_model("resnet32", 10, num_experts=3)
    assert model.spec.shared_stages == 1
    assert set(_conv_out_channels(model.shared)) == {16}
    for expert in model.experts:
        assert set(_conv_out_channels(expert.stages[0])) == {24}
        assert set(_conv_out_channels(expert.stages[1])) == {48}
        assert expert.head.in_features == 48


@pytest.mark.parametrize("arch", ["resnet50", "resnext50"])
def test_bottleneck_expert_widths(arch):
    model = build_model(arch, 5, num_experts=2)
    assert model.spec.shared_stages == 2
    with torch.no_grad():
        trunk = model.shared(model.stem(_images(1, 64)))
        assert trunk.shape[1] == 512
        stage3 = model.experts[0].stages[0](trunk)
        stage4 = model.experts[0].stages[1](stage3)
    assert stage3.shape[1] == 192 * 4 and stage4.shape[1] == 384 * 4
    assert model.experts[1].head.in_features == 384 * 4


def test_shared_stages_parameter():
    model = build_model("resnet32", 10, num_experts=2, shared_stages=2)
    assert model.spec.shared_stages == 2 and len(model.shared) == 2 and len(model.experts[0].stages) == 1
    assert model(_images(2, 8)).features.shape == (2, 32)
    assert set(_conv_out_channels(model.experts[0].stages[0])) == {48}


# ---------------------------------------------------------------- router


@pytest.mark.parametrize("k", [2, 3, 4])
def test_router_zero_init_gives_uniform_weights(k):
    model = build_model("resnet8", 10, num_experts=k)
    assert torch.count_nonzero(model.router.fc.weight) == 0 and torch.count_nonzero(model.router.fc.bias) == 0
    model.set_router_active(True)
    w = model(_images(5, 8)).router_weights
    assert torch.equal(w, torch.full((5, k), 1.0 / k))  # softmax of zeros: exactly 1/K


def test_router_inactive_is_exactly_uniform_even_when_perturbed():
    k = 3
    model = build_model("resnet8", 10, num_experts=k)
    assert model.router_active is False  # default at construction
    _perturb(model.router)
    out = model(_images(6, 8))
    assert torch.equal(out.router_weights, torch.full((6, k), 1.0 / k))
    # and the aggregate is then the plain mean of the experts
    torch.testing.assert_close(out.logits, out.expert_logits.mean(dim=1), atol=1e-6, rtol=0)

    model.set_router_active(True)
    w = model(_images(6, 8)).router_weights
    assert not torch.allclose(w, torch.full_like(w, 1.0 / k), atol=1e-3)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(6), atol=1e-6, rtol=0)
    assert (w > 0).all()


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_aggregate_is_weighted_sum_of_experts(head):
    model = build_model("resnet8", 6, head=head, num_experts=4)
    _perturb(model.router, seed=1)
    model.set_router_active(True)
    out = model(_images(5, 8))
    expected = torch.einsum("nk,nkc->nc", out.router_weights.double(), out.expert_logits.double())
    torch.testing.assert_close(out.logits.double(), expected, atol=1e-6, rtol=0)


def test_router_gradients_only_when_active():
    model = build_model("resnet8", 10, head="cosine", num_experts=3)
    x, y = _images(4, 8), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(30 * model(x).logits, y).backward()
    assert all(p.grad is None for p in model.router.parameters())
    assert model.experts[0].head.weight.grad is not None

    model.zero_grad(set_to_none=True)
    model.set_router_active(True)
    F.cross_entropy(30 * model(x).logits, y).backward()
    grads = [p.grad for p in model.router.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_mean_router_has_no_parameters_and_stays_uniform():
    model = build_model("resnet8", 10, num_experts=3, router="mean")
    assert count_parameters(model.router) == 0
    assert not any(name.startswith("router") for name, _ in model.named_parameters())
    model.set_router_active(True)
    assert torch.equal(model(_images(2, 8)).router_weights, torch.full((2, 3), 1.0 / 3))


# ---------------------------------------------------------------- one-expert MoE == plain network


def _plain_to_moe_state(state: dict, shared_stages: int) -> dict:
    """Rename a PlainNetwork state dict (stem / stages.i / head) into a 1-expert MoE's layout."""
    mapped = {}
    for key, value in state.items():
        if key.startswith("stages."):
            index, rest = key[len("stages."):].split(".", 1)
            index = int(index)
            if index < shared_stages:
                key = f"shared.{index}.{rest}"
            else:
                key = f"experts.0.stages.{index - shared_stages}.{rest}"
        elif key.startswith("head."):
            key = "experts.0." + key
        mapped[key] = value
    return mapped


@pytest.mark.parametrize(
    "arch, plan, size, shared",
    [
        ("resnet20", cifar_resnet_plan(20), 16, 1),
        ("resnet20", cifar_resnet_plan(20), 16, 0),
        ("resnet50", resnet50_plan(), 64, 2),
    ],
)
@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_one_expert_moe_equals_plain_network(arch, plan, size, shared, head):
    torch.manual_seed(0)
    plain = build_model(arch, 10, head=head)
    with torch.no_grad():  # populate BN running statistics so that eval mode is non-trivial
        for seed in range(3):
            plain(_images(4, size, seed=seed))
    moe = MixtureOfExperts(plan, 10, num_experts=1, head=head, shared_stages=shared, expert_width=1.0)
    result = moe.load_state_dict(_plain_to_moe_state(plain.state_dict(), shared), strict=False)
    assert result.unexpected_keys == [] and sorted(result.missing_keys) == ["router.fc.bias", "router.fc.weight"]
    plain.eval()
    moe.eval()
    moe.set_router_active(True)  # softmax over one expert is exactly 1
    x = _images(3, size, seed=7)
    with torch.no_grad():
        a, b = plain(x), moe(x)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(b.expert_logits[:, 0], a.logits, atol=1e-6, rtol=0)
    assert torch.equal(b.router_weights, torch.ones(3, 1))


# ---------------------------------------------------------------- FLOPs


def test_flops_resnet32_closed_form_and_moe_ratio():
    single = count_flops(build_model("resnet32", 10), (3, 32, 32))
    assert single == _cifar_flops(_cifar_stages(5, [16, 32, 64]), 10, 32)
    assert 130e6 < single < 145e6  # ~69 M multiply-accumulates

    moe = build_model("resnet32", 10, num_experts=3)
    moe_flops = count_flops(moe, (3, 32, 32))
    trunk = _cifar_flops(_cifar_stages(5, [16]), 0, 32)
    full_with_reduced_experts = _cifar_flops(_cifar_stages(5, [16, 24, 48]), 10, 32)
    assert moe_flops == trunk + 3 * (full_with_reduced_experts - trunk)  # router inactive: not called
    ratio = moe_flops / single
    assert 1.3 < ratio < 1.6, ratio  # 1/3 shared + 3 experts x 2/3 x (3/4)^2 ~ 1.46
    assert moe.training  # count_flops restores the mode


def test_flops_imagenet_positive():
    flops = count_flops(build_model("resnet50", 10), (3, 64, 64))
    assert flops > 0
    # conv cost scales with the pixel count: 64 px is 1/12.25 of 224 px up to the head
    assert 0.3e9 < flops < 0.8e9


# ---------------------------------------------------------------- precision / memory format


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_bf16_autocast(head):
    model = build_model("resnet20", 10, head=head, num_experts=3)
    _perturb(model.router)
    model.set_router_active(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_images(4, 16))
    assert all(torch.isfinite(t.float()).all() for t in out)
    assert out.router_weights.dtype == torch.float32
    torch.testing.assert_close(out.router_weights.sum(1), torch.ones(4), atol=1e-6, rtol=0)
    if head == "cosine":  # computed in float32: exact cosines, in range
        assert out.logits.dtype == torch.float32 and out.expert_logits.dtype == torch.float32
        assert out.expert_logits.abs().max() <= 1.0 + 1e-6
    out.logits.float().sum().backward()


def test_bf16_autocast_resnext50():
    model = build_model("resnext50", 5, head="cosine")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_images(2, 64))
    assert out.logits.shape == (2, 5) and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("arch, size", [("resnet32", 16), ("resnet50", 64)])
def test_channels_last_matches_contiguous(arch, size):
    model = build_model(arch, 10, head="cosine", num_experts=2).eval()
    _perturb(model.router)
    model.set_router_active(True)
    x = _images(2, size)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    for a, b in zip(out, reference):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- build_model / spec


@pytest.mark.parametrize(
    "kwargs, bad, valid",
    [
        ({"arch": "resnet33"}, "'resnet33'", "resnet8, resnet20, resnet32, resnet50, resnext50"),
        ({"head": "normed"}, "'normed'", "linear, cosine"),
        ({"num_experts": 3, "router": "gate"}, "'gate'", "instance, mean"),
    ],
)
def test_build_model_bad_names(kwargs, bad, valid):
    args = {"arch": "resnet8", "num_classes": 10, **kwargs}
    with pytest.raises(ValueError) as info:
        build_model(**args)
    assert bad in str(info.value) and valid in str(info.value)


@pytest.mark.parametrize(
    "kwargs", [{"num_experts": 0}, {"num_experts": 2, "shared_stages": 3}, {"num_experts": 2, "expert_width": 0.0}]
)
def test_build_model_bad_values(kwargs):
    with pytest.raises(ValueError):
        build_model("resnet8", 10, **kwargs)


def test_spec_records_and_rebuilds():
    model = build_model("resnet32", 100, head="cosine", num_experts=3, router="mean")
    sig = model_signature(model)
    assert sig == {
        "arch": "resnet32", "num_classes": 100, "head": "cosine", "num_experts": 3, "router": "mean",
        "shared_stages": 1, "expert_width": 0.75, "in_channels": 3,
    }
    rebuilt = build_model(**sig)
    assert model_signature(rebuilt) == sig
    rebuilt.load_state_dict(model.state_dict())  # same architecture: strict load works
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.spec.num_experts = 4

    single = build_model("resnet32", 100, head="cosine", router="mean", expert_width=0.5)  # MoE-only args normalised
    normalised = {"num_experts": 1, "router": None, "shared_stages": None, "expert_width": 1.0}
    assert model_signature(single) == {**sig, **normalised}


def test_check_signature_refuses_mismatch():
    model = build_model("resnet8", 10, num_experts=2)
    check_signature(model, model_signature(model))
    wrong = {**model_signature(model), "num_experts": 3, "head": "cosine"}
    with pytest.raises(ValueError, match="num_experts") as info:
        check_signature(model, wrong, source="ckpt.pt")
    assert "head" in str(info.value) and "ckpt.pt" in str(info.value)
