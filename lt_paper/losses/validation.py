"""Input checks shared by every loss: class counts, targets, class weights.

They exist because the failure modes they catch are otherwise silent or unreadable: a class with zero
training samples makes eq. 4 divide by log(1) = 0 (A_cls = inf) and LDAM's margin inf; an
out-of-range label is a device-side assert on CUDA that kills the process without naming the label.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

ClassCounts = Union[Sequence[int], np.ndarray, Tensor]


def as_class_counts(class_counts: ClassCounts) -> Tensor:
    """Per-class training counts as a float64 CPU tensor (C,); ValueError naming the first bad class.

    float64 because the constants derived from counts (eq. 4, LDAM margins, class-balanced weights
    with beta = 0.9999) are computed once and deserve the precision; losses store them as float32.
    """
    counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64))  # (C,)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    bad = (~torch.isfinite(counts)) | (counts <= 0)
    if bool(bad.any()):
        j = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"class_counts[{j}] = {counts[j].item():g}: every class needs a positive, finite number of "
            f"training samples (eq. 4 and the LDAM margins are undefined otherwise)"
        )
    return counts


def _compiling() -> bool:
    # Data-dependent checks (a host sync) would break a torch.compile graph; under compile the check is
    # skipped and an out-of-range label fails inside cross_entropy instead.
    return torch.compiler.is_compiling()


def check_logits_targets(logits: Tensor, targets: Tensor, num_classes: int | None = None,
                         check_range: bool = True) -> None:
    """Shapes (N, C) / (N,), integer targets, every label in [0, C); ValueError naming the bad label.

    The range check costs one host sync (a ``bool(...)`` on a reduced tensor), which stalls the CPU
    until the GPU has caught up and so empties the launch queue every step. ``check_range=False`` skips
    it; the training engine does that after checking every label of the dataset once with
    :func:`check_label_range` (see ``ClassificationLoss.validate_labels``). The shape and dtype checks
    read only metadata and always run.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must be (N,) with N = {logits.shape[0]}, got shape {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool or targets.dtype.is_complex:
        raise ValueError(f"targets must be integer class labels, got dtype {targets.dtype}")
    c = logits.shape[1]
    if num_classes is not None and c != num_classes:
        raise ValueError(f"logits have {c} classes but the loss was built for {num_classes} classes")
    if not check_range or _compiling() or targets.numel() == 0:
        return
    i = _first_out_of_range(targets, c)
    if i is not None:
        raise ValueError(f"target label {int(targets[i])} (sample {i}) is out of range [0, {c})")


def _first_out_of_range(labels: Tensor, num_classes: int) -> int | None:
    """Index of the first label outside [0, C), or None (one host sync)."""
    bad = (labels < 0) | (labels >= num_classes)
    return int(bad.nonzero()[0, 0]) if bool(bad.any()) else None


def check_label_range(labels, num_classes: int, source: str = "labels") -> None:
    """Every label of a whole split in [0, C) (one check per dataset instead of one per batch).

    ``labels`` (N,) integers (tensor, array or list); ValueError naming ``source``, the first bad label
    and its sample index.
    """
    labels = torch.as_tensor(np.asarray(labels)).reshape(-1).cpu()  # (N,)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{source}: labels must be integers, got dtype {labels.dtype}")
    i = _first_out_of_range(labels, num_classes)
    if i is not None:
        raise ValueError(f"{source}: label {int(labels[i])} (sample {i}) is out of range [0, {num_classes})")


def check_weight(weight: Tensor | None, num_classes: int) -> None:
    """Class weights for DRW must be (C,)."""
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != num_classes):
        raise ValueError(f"weight must be (C,) = ({num_classes},), got shape {tuple(weight.shape)}")
