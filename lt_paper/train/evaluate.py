"""Evaluation: per-sample records on the test set, and the metrics computed from them.

Each rank predicts its contiguous, unpadded shard of the test set; the shards are gathered and put
back in dataset order, so no sampler padding (a DistributedSampler repeats samples to even out the
ranks) can bias the numbers. The per-sample records (label, prediction, ground-truth probability,
target cosine, and for an MoE each expert's view and the router weights) are what Figures 1 and 4
are drawn from.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data import SHOT_GROUPS, shot_groups
from ..models import ModelOutput
from .distributed import DistInfo, gather_objects


def batch_records(out: ModelOutput, labels: torch.Tensor, indices: torch.Tensor, scale: float) -> dict:
    """One test batch's records (device tensors, keyed as in ``records.npz`` plus ``index``).

    Every stored tensor is a fresh one: a compiled model's CUDA-graph outputs are overwritten by the
    next replay.
    """
    logits = out.logits.float()  # (B, C), unscaled (cosines for a cosine head)
    probs = torch.softmax(scale * logits, dim=1)
    rows = torch.arange(len(labels), device=labels.device)
    batch = {
        "index": indices,
        "label": labels,
        "pred": logits.argmax(1),
        "p_gt": probs[rows, labels],
        "target_logit": logits[rows, labels],
    }
    if out.expert_logits is not None:
        expert = out.expert_logits.float()  # (B, K, C)
        expert_probs = torch.softmax(scale * expert, dim=2)
        batch["expert_p_gt"] = expert_probs[rows, :, labels]  # (B, K)
        batch["expert_pred"] = expert.argmax(2)  # (B, K)
        batch["router_weights"] = out.router_weights.float().clone()  # (B, K); .float() may alias
    return batch


@torch.no_grad()
def predict_members(forward: Callable[[torch.Tensor], Sequence[ModelOutput]], loader, scales: Sequence[float],
                    device: torch.device, amp: bool, compiled: bool = False) -> list[dict[str, np.ndarray]]:
    """Records of this rank's shard for each of several models that see the same test batches.

    ``forward(images)`` returns one ``ModelOutput`` per model (an ensemble's members; one model for
    :func:`predict`); ``scales[m]`` is model m's loss scale. The records stay on the device until the
    loop ends (one copy to the host, not one sync per batch). ``compiled``: ``forward`` runs a
    ``torch.compile``'d model (marks each batch as a new CUDA-graph iteration).
    """
    parts: list[dict[str, list]] = [{} for _ in scales]
    for images, labels, indices in loader:
        if compiled:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration for CUDA graphs
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            outs = forward(images)
        for member, out, scale in zip(parts, outs, scales):
            for key, value in batch_records(out, labels, indices, scale).items():
                member.setdefault(key, []).append(value)
    return [{k: torch.cat(v).cpu().numpy() for k, v in member.items()} for member in parts]


def predict(model: nn.Module, loader, scale: float, device: torch.device, amp: bool,
            compiled: bool = False) -> dict[str, np.ndarray]:
    """Records of this rank's shard for one model, keyed as in ``records.npz`` plus ``index``."""
    model.eval()
    return predict_members(lambda images: [model(images)], loader, [scale], device, amp, compiled)[0]


def gather_records(shard: dict[str, np.ndarray], info: DistInfo) -> dict[str, np.ndarray]:
    """Concatenate every rank's shard and order the samples by dataset index."""
    shards = [s for s in gather_objects(shard, info) if s and len(s.get("index", [])) > 0]
    records = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
    order = np.argsort(records.pop("index"), kind="stable")
    records = {k: v[order] for k, v in records.items()}
    records["p_gt"] = records["p_gt"].astype(np.float32)
    records["target_logit"] = records["target_logit"].astype(np.float32)
    return records


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) top-1 accuracy of each class over its test samples; NaN for a class without test samples."""
    tested = np.bincount(labels, minlength=num_classes)  # (C,)
    hits = np.bincount(labels, weights=(labels == preds).astype(np.float64), minlength=num_classes)  # (C,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tested > 0, hits / np.maximum(tested, 1), np.nan)


def group_means(per_class: np.ndarray, train_counts, many: int, few: int, few_inclusive: bool) -> dict:
    """{"many", "medium", "few"}: the mean of each shot group's per-class accuracies (NaN classes skipped).

    The definition of OLTR / LDAM-DRW / RIDE; with balanced test sets it equals the group's sample
    accuracy. An empty group is NaN with a warning, never 0.
    """
    per_class = np.asarray(per_class, dtype=np.float64)  # (C,)
    masks = shot_groups(list(train_counts), many=many, few=few, few_inclusive=few_inclusive)
    result = {}
    for group in SHOT_GROUPS:
        values = per_class[masks[group] & ~np.isnan(per_class)]
        if len(values) == 0:
            warnings.warn(f"shot group {group!r} has no classes with test samples; reporting NaN")
            result[group] = math.nan
        else:
            result[group] = float(values.mean())
    return result


def metrics_from_records(records: dict[str, np.ndarray], train_counts, many: int, few: int,
                         few_inclusive: bool) -> dict:
    """Top-1 overall, per class and per shot group (``group_means``) from the per-sample records."""
    labels, preds = records["label"], records["pred"]
    per_class = per_class_accuracy(labels, preds, len(train_counts))  # (C,)
    result = {"all": float((labels == preds).mean())}
    result.update(group_means(per_class, train_counts, many, few, few_inclusive))
    result["per_class"] = [None if math.isnan(v) else float(v) for v in per_class]
    return result


def records_and_metrics(shard: dict[str, np.ndarray], train_counts, shot_rule: dict,
                 info: DistInfo) -> tuple[dict[str, np.ndarray], dict]:
    """Every rank's records of one model gathered in dataset order, and the metrics computed from them.

    ``shot_rule``: ``many``, ``few`` and ``few_inclusive`` (:func:`shot_rule` of a config).
    """
    records = gather_records(shard, info)
    return records, metrics_from_records(records, train_counts, **shot_rule)


def evaluate_model(model: nn.Module, loader, scale: float, device: torch.device, amp: bool, compiled: bool,
                   train_counts, shot_rule: dict, info: DistInfo) -> tuple[dict[str, np.ndarray], dict]:
    """predict -> gather -> metrics for one model: ``(records, metrics)``."""
    shard = predict(model, loader, scale, device, amp, compiled)
    return records_and_metrics(shard, train_counts, shot_rule, info)
