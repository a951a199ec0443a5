"""Recurrent layers pruned only where a copy proves it safe; otherwise kept whole, with the reason."""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from effsearch.inputs import call
from effsearch.compress.prune.common import CELLS, RECURRENT, keep_count
from effsearch.compress.prune.units import Plan, RecurrentPruner, direction_count, plain_forward, plan_units, recurrent_layers, recurrent_pruners, removed_outputs, shrink_recurrent, silence, traced_whole, whole_layers

log = logging.getLogger(__name__)


def _flat_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_tensors(v)]
    return []


@dataclass(frozen=True)
class _Use:
    """How the forward uses one recurrent layer: its calls, whether fed packed, the autograd readers of each final state."""

    calls: int
    packed: bool
    state_readers: tuple[tuple[Any, ...], ...]


def _use(model: nn.Module, example: Any, rnn: nn.RNNBase) -> _Use:
    state_nodes: list[Any] = []
    packed: list[bool] = []

    def record(_m: nn.Module, inputs: Any, output: Any) -> None:
        packed.append(isinstance(inputs[0], PackedSequence))
        state = output[1]
        state_nodes.extend(s.grad_fn for s in (state if isinstance(state, tuple) else (state,)))

    hook = rnn.register_forward_hook(record)
    try:
        with traced_whole([rnn], split_states=True), torch.enable_grad():
            outputs = _flat_tensors(call(model, example))
    finally:
        hook.remove()
    readers: list[list[Any]] = [[] for _ in state_nodes]
    seen: set[Any] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:  # every autograd node between the outputs and the states; note those reading a state
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        for nxt, _ in fn.next_functions:
            if nxt is not None:
                for i, node in enumerate(state_nodes):
                    if nxt is node:
                        readers[i].append(fn)
                stack.append(nxt)
    return _Use(len(packed), any(packed), tuple(tuple(r) for r in readers))


def _reads_last_row(fn: Any, rows: int) -> bool:
    """Whether autograd node `fn` is h_n[-1]: a select along dim 0 of the last row (the last layer's state)."""
    if type(fn).__name__ != "SelectBackward0":
        return False
    dim, index = int(fn._saved_dim), int(fn._saved_index)
    if index >= 2**63:  # autograd hands a negative index back as its unsigned 64-bit pattern
        index -= 2**64
    return dim == 0 and index in (-1, rows - 1)


def _use_problem(model: nn.Module, example: Any, rnn: nn.RNNBase) -> str | None:
    """Why the way the forward uses rnn cannot follow pruned units, or None where it can.

    Units are removed from the output's features; h_n[-1] of a one-direction layer holds the same units in the
    same order, but the other rows of h_n (lower layers; the directions of a bidirectional layer) do not line up
    with them. With proj_size h_n is projected and keeps its width; c_n does not. torch-pruning reads the
    slicing in pad_packed_sequence as slicing of features, so packed input is not followed either.
    """
    kind = type(rnn).__name__
    use = _use(model, example, rnn)
    if use.calls != 1:
        return f"the forward calls the {kind} {use.calls} times; effsearch prunes a recurrent layer called once"
    if use.packed and not rnn.proj_size:
        return (
            f"the {kind} reads a PackedSequence, and the pruner cannot follow the unpacking of its output; "
            f"feed it the padded batch (masking, or picking each sequence's last valid step) to have it pruned"
        )
    rows = rnn.num_layers * direction_count(rnn)
    for name, readers in zip(("h_n", "c_n"), use.state_readers):
        if not readers or (rnn.proj_size and name == "h_n"):
            continue
        if rnn.proj_size:
            return (
                f"the forward reads c_n of an {kind} with proj_size, whose width is its hidden units; "
                f"read the output or h_n instead"
            )
        if rnn.bidirectional:
            return (
                f"the forward reads the final state {name} of a bidirectional {kind}, whose rows do not line up with the "
                f"output's features; read the output sequence instead (e.g. out[:, -1] or out.mean(1))"
            )
        if rows > 1 and not all(_reads_last_row(fn, rows) for fn in readers):
            return (
                f"the forward reads rows of {name} other than {name}[-1] (the last layer's state), whose units are not "
                f"the output's; read {name}[-1] or the output sequence instead"
            )
    return None


def _prune_planned(
    model: nn.Module, example: Any, rnn: nn.RNNBase, plan: Plan, protected: set[nn.Module]
) -> str | None:
    """Prune rnn by its plan, the layers reading its output following; return why not, if it cannot be done."""
    if rnn.proj_size:  # the output is the projection: nothing outside the layer changes
        shrink_recurrent(rnn, plan)
        return None
    pruner = RecurrentPruner()
    pruner.plans[rnn] = plan
    with warnings.catch_warnings(), traced_whole(whole_layers(model)), torch.enable_grad():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=example, customized_pruners=recurrent_pruners(pruner)
        )
    group = graph.get_pruning_group(rnn, pruner.prune_out_channels, removed_outputs(rnn, plan))
    names = {m: n for n, m in model.named_modules()}
    for dep, _idxs in group:
        target = dep.target.module
        if target is not rnn and graph.is_out_channel_pruning_fn(dep.handler):
            if target in protected or isinstance(target, (*RECURRENT, *CELLS)):
                what = names.get(target, type(target).__name__)
                kind = type(target).__name__
                return f"its output features are tied to {what} ({kind}, e.g. added to it), which keeps its width"
    if not graph.check_pruning_group(group):
        return "a layer reading its output would lose all its inputs at this ratio"
    group.prune()
    return None


def _probe(
    model: nn.Module, example: Any, name: str, plan: Plan, protected: Sequence[nn.Module]
) -> str | None:
    """Prune a copy by the plan and compare it with a copy whose removed units are silenced (output exactly 0).

    The two agree only where every layer reading the output lost exactly the inputs of the removed units; a
    reshape that mixes time steps and features, for one, makes torch-pruning remove other inputs.
    """
    protected_names = {n for n, m in model.named_modules() if m in set(protected)}
    silent, pruned = copy.deepcopy(model), copy.deepcopy(model)
    silence(silent.get_submodule(name), plan)
    try:
        keep = {m for n, m in pruned.named_modules() if n in protected_names}
        problem = _prune_planned(pruned, example, pruned.get_submodule(name), plan, keep)
        if problem:
            return problem
        with torch.no_grad():
            want, got = _flat_tensors(call(silent, example)), _flat_tensors(call(pruned, example))
    except Exception as exc:  # the probe's only question is whether it works
        log.debug("pruning %s on a copy failed: %s: %s", name, type(exc).__name__, exc)
        first = (str(exc).strip().splitlines() or [""])[0]
        problem = f"pruning it on a copy of the model failed ({type(exc).__name__}: {first})"
        if "hidden size" in first.lower():
            problem += (
                "; the forward builds a tensor of the old hidden size (an initial state h0?): "
                "size it from the layer's hidden_size"
            )
        return problem
    if [w.shape for w in want] != [g.shape for g in got]:
        return "pruning it changes the shape of the model's output: its output is part of the model's output"
    for w, g in zip(want, got):
        atol = 1e-5 * max(1.0, float(w.abs().max())) if w.numel() else 0.0
        if w.is_floating_point() and not torch.allclose(g, w, rtol=1e-4, atol=atol):
            return (
                "the layers reading its output could not be followed (e.g. out.reshape(batch, -1) mixes time steps and "
                "features); pool or pick over time (out[:, -1], out.mean(1)) to have it pruned"
            )
    return None


def prune_recurrent(
    model: nn.Module, example: Any, ratio: float, importance: str, protected: Sequence[nn.Module]
) -> dict[str, str]:
    """Prune the hidden units of every recurrent layer that allows it; return {name: reason} for those kept whole.

    Each layer is pruned on a copy first, which must give what the model gives with the removed units silenced.
    """
    kept: dict[str, str] = {}
    for name, rnn in recurrent_layers(model).items():
        kind = type(rnn).__name__
        keep_n = keep_count(rnn.hidden_size, ratio)
        if not plain_forward(rnn):
            kept[name] = (
                f"{kind} has a forward of its own, which may not follow a smaller hidden_size; "
                f"use nn.LSTM, nn.GRU or nn.RNN as they are"
            )
        elif rnn in protected:
            kept[name] = f"the {kind} is the output layer: its outputs are the model's outputs"
        elif keep_n < rnn.hidden_size:
            plan = plan_units(rnn, keep_n, importance)
            problem = _use_problem(model, example, rnn) or _probe(model, example, name, plan, protected)
            if problem is None:
                problem = _prune_planned(model, example, rnn, plan, set(protected))
            if problem:
                kept[name] = problem
    for name, cell in model.named_modules():
        if isinstance(cell, CELLS):
            layer = type(cell).__name__.removesuffix("Cell")
            kept[name] = (
                f"the hidden units of a {type(cell).__name__} are carried by the loop stepping it and are not pruned; "
                f"run nn.{layer} over the sequence instead to have them pruned"
            )
    for name, reason in kept.items():
        log.info("%s kept whole: %s", name, reason)
    return kept
