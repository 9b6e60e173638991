"""``build_model``: the one entry point from a config to a network, and the record of what it built.

``build_model`` returns a :class:`PlainNetwork` for ``num_experts == 1`` and a :class:`MixtureOfExperts`
otherwise, and stores the resolved :class:`ModelSpec` on ``model.spec`` so that checkpoints can record
the architecture and refuse to load into a different one (docs/decisions.md, decision 8; see ``check_signature``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from torch import nn

from .heads import HEAD_NAMES
from .moe import MixtureOfExperts
from .plain import PlainNetwork
from .resnet_cifar import resnet8_plan, resnet20_plan, resnet32_plan
from .resnet_imagenet import resnet50_plan, resnext50_32x4d_plan
from .routers import ROUTER_NAMES
from .stages import StagePlan

# Plain registry: architecture name -> factory of its StagePlan.
ARCHITECTURES: dict[str, Callable[[], StagePlan]] = {
    "resnet8": resnet8_plan,
    "resnet20": resnet20_plan,
    "resnet32": resnet32_plan,
    "resnet50": resnet50_plan,
    "resnext50": resnext50_32x4d_plan,
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: ``build_model(**dataclasses.asdict(spec))``.

    For a plain network (``num_experts == 1``) the MoE-only fields are normalised (``router`` and
    ``shared_stages`` None, ``expert_width`` 1.0), so that two plain networks never differ in fields
    that do not affect them.
    """

    arch: str
    num_classes: int
    head: str
    num_experts: int
    router: Optional[str]
    shared_stages: Optional[int]
    expert_width: float
    in_channels: int


def build_model(
    arch: str,
    num_classes: int,
    head: str = "linear",
    num_experts: int = 1,
    router: Optional[str] = "instance",
    shared_stages: Optional[int] = None,
    expert_width: float = 0.75,
    in_channels: int = 3,
) -> nn.Module:
    """Build ``arch`` with a ``head`` classifier; ``num_experts >= 2`` gives the MoE (docs/decisions.md, decision 5).

    Args:
        arch: one of ``ARCHITECTURES`` ("resnet8", "resnet20", "resnet32", "resnet50", "resnext50").
        num_classes: C, the width of every head.
        head: "linear" (raw logits) or "cosine" (cos theta in [-1, 1]; the loss applies s).
        num_experts: 1 for the plain full-width network; K >= 2 for the MoE.
        router: "instance" (the paper's router) or "mean" (fixed 1/K). Ignored when K == 1.
        shared_stages: stages in the MoE trunk; None picks RIDE's (1 for CIFAR ResNets, 2 for ImageNet).
        expert_width: expert planes relative to full width (0.75 in the paper). Ignored when K == 1.
        in_channels: image channels.

    The returned model's ``forward(x)`` gives a ``ModelOutput``; ``model.spec`` holds the resolved
    :class:`ModelSpec`. The MoE starts with its router inactive (w = 1/K): see ``set_router_active``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; valid archs: {', '.join(ARCHITECTURES)}")
    if head not in HEAD_NAMES:
        raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(HEAD_NAMES)}")
    if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
        raise ValueError(f"num_experts must be an integer >= 1, got {num_experts!r}")
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}")
    plan = ARCHITECTURES[arch]()
    if num_experts == 1:
        model: nn.Module = PlainNetwork(plan, num_classes, head=head, in_channels=in_channels)
        spec = ModelSpec(arch, num_classes, head, 1, None, None, 1.0, in_channels)
    else:
        if router not in ROUTER_NAMES:
            raise ValueError(f"unknown router {router!r}; valid routers: {', '.join(ROUTER_NAMES)}")
        model = MixtureOfExperts(
            plan, num_classes, num_experts, head=head, router=router, shared_stages=shared_stages,
            expert_width=expert_width, in_channels=in_channels,
        )
        spec = ModelSpec(
            arch, num_classes, head, num_experts, router, model.shared_stages, float(expert_width), in_channels
        )
    model.spec = spec
    return model


def model_signature(model: nn.Module) -> dict[str, Any]:
    """The architecture of a model made by ``build_model``, as a plain JSON-able dict (for checkpoints)."""
    model = getattr(model, "module", model)  # DDP / DataParallel wrappers
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"{type(model).__name__} has no ModelSpec in .spec; build it with lt_paper.models.build_model")
    return dataclasses.asdict(spec)


def check_signature(model: nn.Module, signature: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Raise ValueError naming ``source`` and every field where ``signature`` differs from ``model``'s."""
    expected = model_signature(model)
    diffs = [
        f"{key}: {source} has {signature.get(key, '<missing>')!r}, model has {value!r}"
        for key, value in expected.items()
        if signature.get(key, "<missing>") != value
    ]
    diffs += [
        f"{key}: {source} has {signature[key]!r}, model has no such field" for key in signature if key not in expected
    ]
    if diffs:
        raise ValueError(f"architecture mismatch with {source}: " + "; ".join(diffs))
