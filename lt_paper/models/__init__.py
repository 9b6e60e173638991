"""Networks of the paper: CIFAR / ImageNet ResNets, linear and cosine heads, the Mixture-of-Experts.

Public entry point: ``build_model(arch, num_classes, head, num_experts, router, shared_stages,
expert_width, in_channels)``; every model's ``forward(x)`` returns a :class:`ModelOutput`.

Decisions (docs/decisions.md, numbered): the cosine head returns unscaled cos theta, s lives only in the loss (1);
the MoE shares stem + first stages, experts are 3/4 width, the router is zero-initialised and switched on
by the engine at ``router_at`` (5, 9); ``model.spec`` records the architecture for checkpoints (8).

Modules: ``output`` (ModelOutput), ``heads``, ``stages`` (StagePlan: a ResNet as stem + stages),
``resnet_cifar``, ``resnet_imagenet`` (the two families' plans), ``plain`` (single network), ``routers``,
``moe``, ``build`` (registry, spec), ``complexity`` (parameters, FLOPs).

Imports no other package of ``lt_paper`` (torch only).
"""

from .build import ARCHITECTURES, ModelSpec, build_model, check_signature, model_signature
from .complexity import count_flops, count_parameters
from .heads import HEAD_NAMES, CosineHead, build_head
from .moe import Expert, MixtureOfExperts
from .output import ModelOutput
from .plain import PlainNetwork
from .resnet_cifar import ZeroPadShortcut, cifar_resnet_plan
from .resnet_imagenet import bottleneck_resnet_plan, resnet50_plan, resnext50_32x4d_plan
from .routers import ROUTER_NAMES, InstanceRouter, MeanRouter, build_router
from .stages import StagePlan, build_stages

__all__ = [
    "ARCHITECTURES",
    "HEAD_NAMES",
    "ROUTER_NAMES",
    "CosineHead",
    "Expert",
    "InstanceRouter",
    "MeanRouter",
    "MixtureOfExperts",
    "ModelOutput",
    "ModelSpec",
    "PlainNetwork",
    "StagePlan",
    "ZeroPadShortcut",
    "bottleneck_resnet_plan",
    "build_head",
    "build_model",
    "build_router",
    "build_stages",
    "check_signature",
    "cifar_resnet_plan",
    "count_flops",
    "count_parameters",
    "model_signature",
    "resnet50_plan",
    "resnext50_32x4d_plan",
]
