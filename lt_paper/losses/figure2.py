"""Curves of the paper's Figure 2, as pure functions for the notebook (no plotting here).

Figure 2(a) compares adjusting terms per class: ALA's A = A_ins A_cls (for a hard sample, cos < 0, and
an easy one, cos > 0), LDAM's margin, and "A_cls only" (A_ins set to 1). Figure 2(b) compares the
gradient of the target logit, g = dL/dx, for ALA and focal losses.

Relations that follow from the formulas (the tests check them):

- At the rarest class A_cls = 1 while LDAM's margin is ``max_margin`` = 0.5: twice as large.
- A_cls exceeds LDAM's margin for every class with S_j / min S <= 12 (the curves cross at 12.7 and
  again at 258.6; on ImageNet-LT, ratio 256, the two head values agree to 0.1 %).
- A_ins > 1/2 for a hard sample and < 1/2 for an easy one, so ALA's term at the rarest class exceeds
  LDAM's for every hard sample, and at ImageNet-LT's head it is below LDAM's for every sample.
- In the binary view below, ALA's adjusted target logit for the rarest class is
  ``x - s (1 - x/s) / 2 = 1.5 x - s / 2``: the gradient magnitude stays above 1/2 for every x < s/3 = 10,
  the "logit smaller than 10" of section 3.1.3.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import terms
from .validation import ClassCounts


def adjusting_terms(class_counts: ClassCounts, target_cos: float) -> dict[str, np.ndarray]:
    """Figure 2(a): adjusting terms per class (C,) for one target cosine in [-1, 1].

    Returns float64 arrays: ``"ala"`` = A_ins(target_cos) * A_cls, ``"ldam"`` = LDAM margins (max 0.5),
    ``"acls_only"`` = A_cls (A_ins set to 1), ``"class_counts"``; and the scalar ``"ains"``.
    """
    if not -1.0 <= target_cos <= 1.0:
        raise ValueError(f"target_cos must be in [-1, 1], got {target_cos}")
    a_cls = terms.ala_class_term(class_counts).double().numpy()  # (C,)
    a_ins = float(terms.instance_term(torch.tensor(float(target_cos), dtype=torch.float64)))
    return {
        "class_counts": np.asarray(class_counts, dtype=np.float64),
        "ala": a_ins * a_cls,
        "ldam": terms.ldam_margins(class_counts).double().numpy(),
        "acls_only": a_cls,
        "ains": np.float64(a_ins),
    }


def target_logit_gradients(
    x: np.ndarray | torch.Tensor,
    s: float = 30.0,
    class_count_ratio: float | None = None,
    gamma: float = 2.0,
    gamma_star: float = 2.0,
    beta_star: float = 1.0,
) -> dict[str, np.ndarray]:
    """Figure 2(b): gradient g = dL/dx of the target logit x over a grid x = s * cos in [-s, s].

    Binary view, as the paper's plot of g against the logit: one target logit against a single
    non-target logit at 0, so the target probability is ``p = sigmoid(adjusted x)``. Keys (float64
    arrays like ``x``):

    - ``"ce"``: L = -log sigmoid(x), g = p - 1.
    - ``"ala"``: L = -log sigmoid(x - s A), A = A_ins A_cls with A_ins = (1 - x/s) / 2 from the same
      cosine, detached (eq. 3), and A_cls = log 2 / log(class_count_ratio + 1) for a class with
      S_j / min S = ``class_count_ratio`` (None: 1, the rarest class, i.e. A = A_ins only); g = p_adj - 1.
    - ``"focal"``: FL = -(1 - p)^gamma log p (Lin et al.), gamma = 2: the paper's "commonly used
      formulation of focal loss", whose gradient is not monotonous on [-5, 0]. The trained Focal
      baseline and Table 4 #5 use gamma = 1 (LDAM-DRW's baseline; docs/decisions.md, decision 10).
    - ``"focal_star"``: FL* = -log(p*) / gamma* with p* = sigmoid(gamma* x + beta*) (Lin et al.,
      appendix; gamma* = 2, beta* = 1).
    - ``"x"``: the grid.

    Every gradient is computed by autograd, in float64.
    """
    grid = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if grid.ndim != 1:
        raise ValueError(f"x must be a 1-D grid, got shape {tuple(grid.shape)}")
    if bool((grid.abs() > s * (1 + 1e-12)).any()):
        raise ValueError(f"x must lie in [-s, s] = [{-s}, {s}] (x = s * cos)")
    ratio = 1.0 if class_count_ratio is None else float(class_count_ratio)
    if not ratio >= 1.0:
        raise ValueError(f"class_count_ratio = S_j / min S must be >= 1, got {class_count_ratio}")
    a_cls = math.log(2.0) / math.log(ratio + 1.0)

    def grad_of(loss_fn) -> np.ndarray:
        xs = grid.clone().requires_grad_(True)  # (G,)
        (g,) = torch.autograd.grad(loss_fn(xs).sum(), xs)  # per-point losses are independent
        return g.numpy()

    def ala(xs: torch.Tensor) -> torch.Tensor:
        a = a_cls * (1.0 - xs.detach() / s) / 2.0  # A_ins A_cls, detached
        return -F.logsigmoid(xs - s * a)

    def focal(xs: torch.Tensor) -> torch.Tensor:
        log_p = F.logsigmoid(xs)
        return -((1.0 - log_p.exp()) ** gamma) * log_p

    return {
        "x": grid.numpy(),
        "ce": grad_of(lambda xs: -F.logsigmoid(xs)),
        "ala": grad_of(ala),
        "focal": grad_of(focal),
        "focal_star": grad_of(lambda xs: -F.logsigmoid(gamma_star * xs + beta_star) / gamma_star),
    }
