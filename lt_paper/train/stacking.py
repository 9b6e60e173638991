"""Many networks of one structure as one module: each weight stacked along a leading member dimension,
the members' forwards run as one ``torch.func.vmap(functional_call)``.

This is the arithmetic half of the batched ensemble (``train/ensemble.py`` trains it): a convolution
over M stacked members becomes one grouped convolution, so every kernel does the work of M runs.
Each member keeps its own weights, its own BatchNorm batch statistics and running statistics, its
own router; only the order of floating-point reductions differs from M separate networks.

Different module structures (a linear head beside a cosine head; an instance router beside a mean
router) cannot stack: :class:`EnsembleNetwork` stacks each structure apart (:class:`StackedNetworks`)
and runs one vmapped forward per structure.
"""

from __future__ import annotations

import copy
import itertools
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ..models import ModelOutput


def structure_signature(network: nn.Module) -> tuple:
    """Networks with equal signatures stack: the same module types and the same state-dict shapes."""
    return (tuple(type(m).__name__ for m in network.modules()),
            tuple((k, tuple(v.shape), str(v.dtype)) for k, v in network.state_dict().items()))


def _attr(name: str) -> str:
    return name.replace(".", "__")  # a dotted state-dict name as a module attribute


class StackedNetworks(nn.Module):
    """M networks of one structure; each parameter and buffer is stacked to (M, ...) and the M forwards
    run as one ``vmap(functional_call)`` over a weightless template (on the meta device).

    ``forward(images)``: images (M, B, C, H, W), one batch per member, or (B, C, H, W) seen by every
    member; returns the non-None fields of ``ModelOutput``, each (M, B, ...). In training mode each
    member's BatchNorm normalises with its own batch statistics and updates its own running statistics
    (in place, in its slice of the stacked buffer), exactly as its solo network does.
    """

    def __init__(self, networks: Sequence[nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(list(networks))  # {name: (M, ...)}
        self.param_names, self.buffer_names = list(params), list(buffers)
        for name, value in params.items():
            self.register_parameter(_attr(name), nn.Parameter(value.detach()))
        for name, value in buffers.items():
            self.register_buffer(_attr(name), value)
        # the template is no submodule: its meta tensors are replaced by slices of the stacked ones
        object.__setattr__(self, "template", copy.deepcopy(networks[0]).to("meta"))
        self.size = len(networks)
        self.fields = (0, 1, 2, 3) if getattr(networks[0], "num_experts", 1) > 1 else (0, 3)  # non-None

    def train(self, mode: bool = True) -> "StackedNetworks":
        super().train(mode)
        self.template.train(mode)
        return self

    def set_router_active(self, active: bool) -> None:
        self.template.set_router_active(active)

    def _one(self, params: dict, buffers: dict, images: Tensor) -> tuple[Tensor, ...]:
        out = functional_call(self.template, (params, buffers), (images,))
        return tuple(out[f] for f in self.fields)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        params = {n: getattr(self, _attr(n)) for n in self.param_names}
        buffers = {n: getattr(self, _attr(n)) for n in self.buffer_names}
        per_member = 0 if images.dim() == 5 else None
        return vmap(self._one, in_dims=(0, 0, per_member), randomness="error")(params, buffers, images)

    def member_output(self, fields: tuple[Tensor, ...], position: int) -> ModelOutput:
        values = [None] * 4
        for f, value in zip(self.fields, fields):
            values[f] = value[position]
        return ModelOutput(*values)

    def member_state(self, position: int, state: dict | None = None) -> dict[str, Tensor]:
        """The state dict of member ``position`` (copies), from this module or from a saved ``state``."""
        state = self.state_dict() if state is None else state
        return {n: state[_attr(n)][position].clone() for n in self.param_names + self.buffer_names}


class EnsembleNetwork(nn.Module):
    """The members of an ensemble, stacked per structure; ``forward`` gives one ModelOutput per member.

    ``forward(images)``: images (S, B, C, H, W), one training batch per distinct seed (member m reads
    ``images[seed_index[m]]``), or (B, C, H, W) seen by every member (test batches).
    """

    def __init__(self, networks: Sequence[nn.Module], seed_index: Sequence[int]):
        super().__init__()
        by_structure: dict[tuple, list[int]] = {}
        for m, network in enumerate(networks):
            by_structure.setdefault(structure_signature(network), []).append(m)
        self.stack_members = list(by_structure.values())  # member indices of each stack
        self.stacks = nn.ModuleList(StackedNetworks([networks[m] for m in ms]) for ms in self.stack_members)
        self.slots = {m: (s, pos) for s, ms in enumerate(self.stack_members) for pos, m in enumerate(ms)}
        self.seed_index = list(seed_index)
        self.size = len(networks)

    def set_router_active(self, active: bool) -> None:
        for stack in self.stacks:
            if hasattr(stack.template, "set_router_active"):
                stack.set_router_active(active)

    def _stack_input(self, images: Tensor, members: list[int]) -> Tensor:
        if images.dim() == 4:
            return images  # shared by every member
        seeds = [self.seed_index[m] for m in members]
        if len(set(seeds)) == 1:
            return images[seeds[0]]  # (B, C, H, W): one batch for the whole stack, not M copies
        return images[seeds]  # (M_stack, B, C, H, W)

    def forward(self, images: Tensor) -> list[ModelOutput]:
        outs: list = [None] * self.size
        for stack, members in zip(self.stacks, self.stack_members):
            fields = stack(self._stack_input(images, members))
            for position, m in enumerate(members):
                outs[m] = stack.member_output(fields, position)
        return outs

    def nonfinite_members(self) -> set[int]:
        """Members whose parameters or buffers hold NaN or inf (one host synchronisation in all).

        The ensemble's version of the solo engine's ``guards.nonfinite_tensors``: BatchNorm's running
        statistics can overflow while the loss is still finite, and such a state must not be saved.
        """
        flags = []  # per stack: (M_stack,) bool, True where the member is finite
        for stack in self.stacks:
            tensors = [t for t in itertools.chain(stack.parameters(), stack.buffers()) if t.is_floating_point()]
            flags.append(torch.stack([torch.isfinite(t.detach()).flatten(1).all(1) for t in tensors]).all(0))
        finite = torch.cat(flags).tolist()  # stack order
        order = [m for members in self.stack_members for m in members]
        return {m for m, ok in zip(order, finite) if not ok}

    def member_state(self, m: int, state: dict | None = None) -> dict[str, Tensor]:
        """Member ``m``'s state dict, from the live weights or from a saved ensemble ``state``."""
        s, position = self.slots[m]
        prefix = f"stacks.{s}."
        own = None if state is None else {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return self.stacks[s].member_state(position, own)

    def member_optimizer_state(self, m: int, optimizer_state: dict) -> dict:
        """Member ``m``'s slice of a saved SGD state dict over ``self.parameters()``, in the layout of an
        SGD over the member's own network (``network.parameters()`` order), so a solo run can load it."""
        s, position = self.slots[m]
        first = sum(len(self.stacks[i].param_names) for i in range(s))
        count = len(self.stacks[s].param_names)
        state = {}
        for j in range(count):
            entry = optimizer_state["state"].get(first + j)
            if entry is not None:
                state[j] = {k: v[position].clone() if torch.is_tensor(v) and v.dim() > 0 else v
                            for k, v in entry.items()}
        groups = [dict(g, params=list(range(count))) for g in optimizer_state["param_groups"]]
        return {"state": state, "param_groups": groups}
