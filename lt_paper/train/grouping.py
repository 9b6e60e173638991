"""Which runs can share one batched training step, and the one rule that packs them.

Members of one ensemble share the step, so they must agree on everything the step depends on: the
data set, architecture, number of experts, batch size, epochs, learning-rate schedule, optimizer
settings, device and fast-path switches (:func:`ensemble_key`). They may differ in what only changes
the loss or the data order (``MEMBER_FIELDS``): seed, loss and variant, DRW, router type, the aggregate
loss, the diversity term, distillation.

:func:`pack_indices` is the one packing rule, used by ``train_ensemble`` (:func:`group_indices`) and by
the campaign (``campaign.make_packs``, whose key adds what a campaign must keep apart).
"""

from __future__ import annotations

from typing import Hashable, Sequence

from .config import Config, to_dict

# Config fields in which the members of one ensemble may differ: they change only a member's loss,
# its data order or what is recorded. Every other field (including any added later) must be equal.
MEMBER_FIELDS = ("name", "seed", "loss", "drw", "drw_at", "drw_beta", "diversity_weight",
                 "diversity_temperature", "distill", "teacher", "distill_temperature", "router",
                 "aggregate_loss", "many_threshold", "few_threshold", "few_inclusive", "progress")


def ensemble_key(config: Config) -> tuple:
    """What members of one ensemble must share: every config field but ``MEMBER_FIELDS``.

    Compare resolved configs (``resolve.resolve_run_config``): ``amp=None`` and ``amp=True`` are the same
    on CUDA but different keys.
    """
    return tuple((k, repr(v)) for k, v in sorted(to_dict(config).items()) if k not in MEMBER_FIELDS)


def pack_indices(keys: Sequence[Hashable], max_members: int | None = None) -> list[list[int]]:
    """Positions of ``keys`` packed by equal key, at most ``max_members`` per pack (None: no limit).

    Items come in priority order; a pack takes its place in the order at its first (highest-priority)
    item. A pack that reaches ``max_members`` is closed and the next item of its key opens a new pack
    at that item's place, so a low-priority overflow never runs before a higher-priority pack.
    """
    if max_members is not None and max_members < 1:
        raise ValueError(f"max_members must be >= 1 or None, got {max_members}")
    packs: list[list[int]] = []
    open_pack: dict[Hashable, int] = {}
    for i, key in enumerate(keys):
        index = open_pack.get(key)
        if index is None or (max_members is not None and len(packs[index]) >= max_members):
            packs.append([])
            index = open_pack[key] = len(packs) - 1
        packs[index].append(i)
    return packs


def group_indices(configs: Sequence[Config], max_members: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` that can share a training step (:func:`pack_indices` by ensemble key)."""
    return pack_indices([ensemble_key(c) for c in configs], max_members)


def ensemble_groups(configs: Sequence[Config], max_members: int | None = None) -> list[list[Config]]:
    """``configs`` split into groups that can share a training step (at most ``max_members`` each), in
    order of first appearance. Pass resolved configs (see :func:`ensemble_key`)."""
    return [[configs[i] for i in group] for group in group_indices(configs, max_members)]


def describe_split(groups: list[list[Config]]) -> str:
    """One line per group: its size, and the shared fields in which the groups differ."""
    keys = [dict(ensemble_key(g[0])) for g in groups]
    differing = sorted(k for k in keys[0] if len({key[k] for key in keys}) > 1)
    why = f"they differ in {', '.join(differing)}" if differing else "at most max_members per step"
    lines = [f"ensemble: {sum(map(len, groups))} runs in {len(groups)} groups that cannot share a step "
             f"({why}):"]
    for group, key in zip(groups, keys):
        shared = ", ".join(f"{k}={key[k]}" for k in differing)
        lines.append(f"  {len(group)} run(s) [{shared}]: " + ", ".join(f"{c.name} s{c.seed}" for c in group))
    return "\n".join(lines)
