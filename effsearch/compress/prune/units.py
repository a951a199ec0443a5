"""Hidden units of recurrent layers: which to keep, cutting them out of the weights, and tracing the layers whole."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from effsearch.compress.prune.common import CELLS, RECURRENT

log = logging.getLogger(__name__)


# --- recurrent layers ---------------------------------------------------------------------------------

# One plan of pruning a recurrent layer: the hidden units kept, per [layer][direction], as many everywhere.
Plan = list[list[list[int]]]


def recurrent_layers(model: nn.Module) -> dict[str, nn.RNNBase]:
    """nn.LSTM / nn.GRU / nn.RNN modules by name (subclasses included)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, RECURRENT)}


def plain_forward(module: nn.Module) -> bool:
    return any(type(module).forward is base.forward for base in (*RECURRENT, *CELLS))


def whole_layers(model: nn.Module) -> list[nn.Module]:
    """The recurrent layers and cells a tracer should see as one node each (see traced_whole)."""
    return [m for m in model.modules() if isinstance(m, (*RECURRENT, *CELLS)) and plain_forward(m)]


def _gates(rnn: nn.RNNBase) -> int:
    return {"LSTM": 4, "GRU": 3}.get(rnn.mode, 1)


def direction_count(rnn: nn.RNNBase) -> int:
    return 2 if rnn.bidirectional else 1


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}{'_reverse' if direction else ''}"


def _gate_rows(rnn: nn.RNNBase, units: Sequence[int]) -> torch.Tensor:
    """Rows of w_ih, w_hh and the biases that belong to `units` (torch stacks the gates along dim 0)."""
    units_t = torch.tensor(list(units), dtype=torch.long)
    return torch.cat([units_t + g * rnn.hidden_size for g in range(_gates(rnn))])


def _replace(rnn: nn.RNNBase, name: str, value: torch.Tensor) -> None:
    old = getattr(rnn, name)
    # nn.RNNBase.__setattr__ keeps _flat_weights, which forward reads, in step.
    setattr(rnn, name, nn.Parameter(value.detach().clone().contiguous(), requires_grad=old.requires_grad))


def _unit_scores(rnn: nn.RNNBase, p: int) -> list[list[torch.Tensor]]:
    """|w|^p of each hidden unit, per [layer][direction]: its gate rows of w_ih, w_hh and the biases, its
    column of w_hh (of w_hr with proj_size), and the columns of the next layer's w_ih that it feeds."""
    hidden, gates, dirs = rnn.hidden_size, _gates(rnn), direction_count(rnn)
    scores = []
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            row = []
            for d in range(dirs):
                sfx = _suffix(layer, d)
                score = torch.zeros(hidden)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if rnn.bias else ("weight_ih", "weight_hh"):
                    score += getattr(rnn, name + sfx).detach().abs().pow(p).reshape(gates, hidden, -1).sum(dim=(0, 2))
                score += getattr(rnn, ("weight_hr" if rnn.proj_size else "weight_hh") + sfx).detach().abs().pow(p).sum(dim=0)
                if layer + 1 < rnn.num_layers and not rnn.proj_size:
                    for d_next in range(dirs):
                        w_next = getattr(rnn, "weight_ih" + _suffix(layer + 1, d_next)).detach()
                        score += w_next[:, d * hidden : (d + 1) * hidden].abs().pow(p).sum(dim=0)
                row.append(score)
            scores.append(row)
    return scores


def plan_units(rnn: nn.RNNBase, keep_n: int, importance: str) -> Plan:
    """The keep_n best units of every layer and direction."""
    dirs = direction_count(rnn)
    if importance == "random":
        scores = [[torch.rand(rnn.hidden_size) for _d in range(dirs)] for _l in range(rnn.num_layers)]
    else:
        # bn_scale has no BatchNorm to read in a recurrent layer: magnitude (l2) stands in.
        scores = _unit_scores(rnn, 1 if importance == "l1" else 2)
    return [[sorted(scores[layer][d].topk(keep_n).indices.tolist()) for d in range(dirs)] for layer in range(rnn.num_layers)]


def removed_outputs(rnn: nn.RNNBase, plan: Plan) -> list[int]:
    """The output features (direction-major, as torch lays them out) of the last layer's removed units."""
    hidden = rnn.hidden_size
    return [d * hidden + u for d, kept in enumerate(plan[-1]) for u in sorted(set(range(hidden)) - set(kept))]


def shrink_recurrent(rnn: nn.RNNBase, plan: Plan) -> None:
    """Keep, in place, the hidden units plan[layer][direction].

    A unit is a row of each gate of w_ih, w_hh and the biases, a column of w_hh (of w_hr with proj_size)
    and, without proj_size, the columns of the next layer's w_ih that its output feeds.
    """
    hidden, dirs, proj = rnn.hidden_size, direction_count(rnn), rnn.proj_size
    for layer in range(rnn.num_layers):
        cols = None  # this layer's inputs: the previous layer's kept outputs
        if layer > 0 and not proj:
            cols = torch.tensor([d * hidden + u for d in range(dirs) for u in plan[layer - 1][d]], dtype=torch.long)
        for d in range(dirs):
            sfx = _suffix(layer, d)
            units = torch.tensor(plan[layer][d], dtype=torch.long)
            rows = _gate_rows(rnn, plan[layer][d])
            w_ih = getattr(rnn, "weight_ih" + sfx)[rows]
            _replace(rnn, "weight_ih" + sfx, w_ih if cols is None else w_ih[:, cols])
            w_hh = getattr(rnn, "weight_hh" + sfx)[rows]
            _replace(rnn, "weight_hh" + sfx, w_hh if proj else w_hh[:, units])
            if rnn.bias:
                for name in ("bias_ih", "bias_hh"):
                    _replace(rnn, name + sfx, getattr(rnn, name + sfx)[rows])
            if proj:
                _replace(rnn, "weight_hr" + sfx, getattr(rnn, "weight_hr" + sfx)[:, units])
    rnn.hidden_size = len(plan[0][0])


def silence(rnn: nn.RNNBase, plan: Plan) -> None:
    """Zero every gate row of the units the plan removes, so that they output exactly 0 (from zero initial
    states): LSTM c and h stay 0 (g = tanh 0), GRU n = tanh 0 and h stays 0, RNN h = tanh 0 or relu 0."""
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            for d in range(direction_count(rnn)):
                rows = _gate_rows(rnn, sorted(set(range(rnn.hidden_size)) - set(plan[layer][d])))
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if rnn.bias else ("weight_ih", "weight_hh"):
                    getattr(rnn, name + _suffix(layer, d))[rows] = 0.0


class RecurrentPruner(tp.pruner.BasePruningFunc):
    """nn.LSTM / nn.GRU / nn.RNN as torch-pruning's graph sees them: in-channels are the input features, out-channels
    the output features (directions x hidden, direction-major).

    Out-channels are pruned by the layer's plan (set in `plans` before the group is pruned), which must remove
    exactly those output features; in-channels (a layer before it losing outputs) by removing w_ih columns.
    """

    TARGET_MODULES = RECURRENT

    def __init__(self) -> None:
        super().__init__()
        self.plans: dict[nn.Module, Plan] = {}

    def prune_out_channels(self, layer: nn.RNNBase, idxs: Sequence[int]) -> nn.Module:
        plan = self.plans.get(layer)
        if plan is None or sorted(idxs) != removed_outputs(layer, plan):
            raise ValueError(f"{type(layer).__name__}: its output features are pruned by its own plan, not with another layer")
        shrink_recurrent(layer, plan)
        return layer

    def prune_in_channels(self, layer: nn.RNNBase, idxs: Sequence[int]) -> nn.Module:
        keep = sorted(set(range(layer.input_size)) - set(idxs))
        for d in range(direction_count(layer)):
            name = "weight_ih" + _suffix(0, d)
            _replace(layer, name, getattr(layer, name)[:, keep])
        layer.input_size = len(keep)
        return layer

    def get_out_channels(self, layer: nn.RNNBase) -> int:
        return direction_count(layer) * (layer.proj_size or layer.hidden_size)

    def get_in_channels(self, layer: nn.RNNBase) -> int:
        return layer.input_size


class _CellPruner(tp.pruner.BasePruningFunc):
    """nn.LSTMCell / nn.GRUCell / nn.RNNCell for torch-pruning: their input features follow a layer before them
    losing outputs (w_ih columns); their hidden units, carried by the loop that steps them, stay."""

    TARGET_MODULES = CELLS

    def prune_out_channels(self, layer: nn.RNNCellBase, idxs: Sequence[int]) -> nn.Module:
        raise ValueError(f"{type(layer).__name__}: the hidden units of a recurrent cell are not pruned")

    def prune_in_channels(self, layer: nn.RNNCellBase, idxs: Sequence[int]) -> nn.Module:
        keep = sorted(set(range(layer.input_size)) - set(idxs))
        _replace(layer, "weight_ih", layer.weight_ih[:, keep])
        layer.input_size = len(keep)
        return layer

    def get_out_channels(self, layer: nn.RNNCellBase) -> int:
        return layer.hidden_size

    def get_in_channels(self, layer: nn.RNNCellBase) -> int:
        return layer.input_size


def recurrent_pruners(recurrent: RecurrentPruner) -> dict[type, tp.pruner.BasePruningFunc]:
    cell = _CellPruner()
    return {**{kind: recurrent for kind in RECURRENT}, **{kind: cell for kind in CELLS}}


class _WholeLayer(torch.autograd.Function):
    """Hands back `values` (computed without grad) as the outputs of one autograd node whose inputs are the
    layer's input and a weight, so that a tracer sees the layer as one node rather than its gate arithmetic."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(v.clone() for v in values)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[None, ...]:
        return (None,) * (2 + len(grads))


def _whole_forward(rnn: nn.RNNBase, split_states: bool) -> Callable[..., Any]:
    """A forward for `rnn` whose outputs hang off _WholeLayer nodes: one node for all (how torch-pruning should
    see the layer), or one for the output and one per final state (so that readers of each can be told apart)."""
    original = type(rnn).forward

    def forward(input: Any, hx: Any = None) -> Any:
        with torch.no_grad():
            out, state = original(rnn, input, hx)
        x = input.data if isinstance(input, PackedSequence) else input
        out_value = out.data if isinstance(out, PackedSequence) else out
        states = list(state) if isinstance(state, tuple) else [state]
        weight = rnn.weight_ih_l0
        if split_states:
            new_out = _WholeLayer.apply(x, weight, out_value)[0]
            new_states = [_WholeLayer.apply(x, weight, s)[0] for s in states]
        else:
            new_out, *new_states = _WholeLayer.apply(x, weight, out_value, *states)
        out = out._replace(data=new_out) if isinstance(out, PackedSequence) else new_out
        return out, (tuple(new_states) if isinstance(state, tuple) else new_states[0])

    return forward


def _whole_cell_forward(cell: nn.RNNCellBase) -> Callable[..., Any]:
    """A forward for `cell` whose outputs (h, or h and c) hang off one _WholeLayer node."""
    original = type(cell).forward

    def forward(input: torch.Tensor, hx: Any = None) -> Any:
        with torch.no_grad():
            value = original(cell, input, hx)
        new = _WholeLayer.apply(input, cell.weight_ih, *(value if isinstance(value, tuple) else (value,)))
        return tuple(new) if isinstance(value, tuple) else new[0]

    return forward


@contextmanager
def traced_whole(modules: Sequence[nn.Module], split_states: bool = False) -> Iterator[None]:
    """While a tracer runs the model, run each recurrent layer or cell in `modules` as one autograd node."""
    for m in modules:
        m.forward = _whole_cell_forward(m) if isinstance(m, CELLS) else _whole_forward(m, split_states)
    try:
        yield
    finally:
        for m in modules:
            m.__dict__.pop("forward", None)
