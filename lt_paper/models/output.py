"""The one value every model in ``lt_paper.models`` returns from ``forward``."""

from __future__ import annotations

from typing import NamedTuple, Optional

from torch import Tensor


class ModelOutput(NamedTuple):
    """What a forward pass hands to the loss, the engine and the per-sample records.

    A NamedTuple (not a dict, not tensors stashed on the module) so that DDP, autocast and
    ``torch.compile`` see plain tensors, and so that the trainer never reads hidden model state.

    Fields:
        logits: (N, C) the aggregate output. A cosine head gives cos(theta) in [-1, 1]; a linear head
            raw logits. Never multiplied by the scale ``s``: that happens only in the loss (docs/decisions.md,
            decision 1), because A_ins = (1 - cos_y) / 2 needs the unscaled cosine.
        expert_logits: (N, K, C) each expert's unscaled head output (MoE only, else None); the engine
            applies the loss to every expert (paper eq. 8) and records per-expert predictions.
        router_weights: (N, K) the weights w of eq. 7 (MoE only, else None); exactly 1/K while the
            router is inactive or for the mean router. Rows sum to 1.
        features: (N, D) globally average-pooled features: of the shared trunk for an MoE (the router's
            input), of the last stage for a plain network.
    """

    logits: Tensor
    expert_logits: Optional[Tensor]
    router_weights: Optional[Tensor]
    features: Tensor
