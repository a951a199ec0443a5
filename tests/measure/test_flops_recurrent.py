"""Recurrent FLOPs: counted (not skipped) and equal to a hand count; FlopsReport says when a count is a lower bound.

fvcore counts one multiply-add as one flop and no elementwise op. A recurrent layer with G gate blocks
(LSTM 4, GRU 3, RNN 1), hidden size H, D directions and L layers does, per time step and sample, for each
layer l and direction:

    G*H*in_l  (w_ih @ x_t)  +  G*H*H_r  (w_hh @ h_{t-1})  [ + P*H  (w_hr @ h_t, LSTM with proj_size P) ]

with in_0 = input_size, in_l = D*H_out for l > 0, H_r = H_out = P if proj_size else H. Over T steps and
B samples: FLOPs = T * B * sum over l of D * (G*H*in_l + G*H*H_r + P*H). Gates, biases, tanh/sigmoid
and the cell update are elementwise and not counted, as fvcore counts no elementwise op anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from effsearch.measure.flops import FlopsReport, count_flops, flops_complete
from effsearch.userfile import load_user_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
T, E, H, C = 24, 32, 64, 2


def hand_count(kind: str, steps: int, input_size: int, hidden: int, layers: int, directions: int, proj: int = 0) -> int:
    g, out = GATES[kind], proj or hidden
    total = 0
    for layer in range(layers):
        in_l = input_size if layer == 0 else directions * out
        total += directions * (g * hidden * in_l + g * hidden * out + proj * hidden)
    return steps * total


class Classifier(nn.Module):
    """Embedding -> recurrent layer -> Linear on the last step, batch-first or time-first inside."""

    def __init__(self, kind: str, layers: int, bidirectional: bool, batch_first: bool, nonlinearity: str = "tanh") -> None:
        super().__init__()
        self.batch_first = batch_first
        extra = {"nonlinearity": nonlinearity} if kind == "RNN" else {}
        self.tokens = nn.Embedding(32, E)
        self.rnn = getattr(nn, kind)(E, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, **extra)
        self.head = nn.Linear(H * (2 if bidirectional else 1), C)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tokens(tokens)
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, _ = self.rnn(x)
        return self.head(out[:, -1] if self.batch_first else out[-1])


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)], ids=["1-layer", "2-layer-bi"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "time-first"])
def test_recurrent_classifier_equals_a_hand_count(kind, layers, bidirectional, batch_first):
    directions = 2 if bidirectional else 1
    report = count_flops(Classifier(kind, layers, bidirectional, batch_first), torch.randint(0, 32, (1, T)))
    assert report.flops == hand_count(kind, T, E, H, layers, directions) + directions * H * C
    assert report.skipped_ops == {}
    assert report.complete


def test_relu_rnn_counts_like_tanh():
    tokens = torch.randint(0, 32, (1, T))
    relu = count_flops(Classifier("RNN", 2, True, True, nonlinearity="relu"), tokens)
    assert relu.flops == count_flops(Classifier("RNN", 2, True, True), tokens).flops
    assert relu.complete


def test_lstm_with_proj_size_counts_the_projection():
    lstm = nn.LSTM(10, 20, num_layers=2, proj_size=5, bidirectional=True)
    report = count_flops(lstm, torch.randn(7, 1, 10))
    assert report.flops == hand_count("LSTM", 7, 10, 20, 2, 2, proj=5)
    assert report.complete


def test_unbatched_and_packed_input_count_the_steps_taken():
    assert count_flops(nn.GRU(10, 20), torch.randn(7, 10)).flops == hand_count("GRU", 7, 10, 20, 1, 1)

    class Packed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(10, 20, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Only the first 5 of 7 steps are real: the packed LSTM runs 5.
            return self.lstm(pack_padded_sequence(x, torch.tensor([5]), batch_first=True))[1][0]

    report = count_flops(Packed(), torch.randn(1, 7, 10))
    assert report.flops == hand_count("LSTM", 5, 10, 20, 1, 1)
    assert report.complete, report.skipped_ops


def test_the_lstm_example_counts_its_lstm():
    """The model of the issue: 128 flops (the head alone) before recurrent layers were counted."""
    reg = load_user_file(EXAMPLES / "lstm_classifier.py").registration
    _, val = reg.data()
    report = count_flops(reg.model(), val[0][0][None])
    assert report.flops == hand_count("LSTM", 24, 32, 64, 1, 1) + 64 * 2 == 589_952
    assert report.complete


def test_a_count_with_an_op_left_uncounted_is_a_lower_bound():
    class Distances(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cdist(self.proj(x), x)  # no fvcore handler: its work goes uncounted

    report = count_flops(Distances(), torch.randn(1, 5, 8))
    assert "aten::cdist" in report.skipped_ops
    assert not report.complete
    assert report.flops == 5 * 8 * 8  # what was counted: the Linear


def test_elementwise_ops_fvcore_skips_leave_the_count_complete():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x + self.fc(x)).sigmoid() * 2

    report = count_flops(Residual(), torch.randn(1, 8))
    assert report.skipped_ops, "fvcore lists the elementwise ops it skipped"
    assert report.complete


def test_complete_follows_the_recorded_skipped_ops():
    assert FlopsReport(128, 10, {}).complete
    assert not FlopsReport(128, 10, {"aten::lstm": 1}).complete
    assert FlopsReport(128, 10, {"aten::add": 2, "aten::mean": 1}).complete
    # Readers of storage have only flops_skipped_ops; they get the same answer.
    assert flops_complete({"aten::add": 2}) and not flops_complete({"aten::add": 2, "aten::gru": 1})


@pytest.mark.parametrize(("cell", "kind"), [(nn.LSTMCell, "LSTM"), (nn.GRUCell, "GRU"), (nn.RNNCell, "RNN")])
def test_cells_stepped_in_a_loop_count_like_the_layer(cell, kind):
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = cell(10, 20)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = None
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h[0] if isinstance(h, tuple) else h

    report = count_flops(Loop(), torch.randn(1, 7, 10))
    assert report.flops == hand_count(kind, 7, 10, 20, 1, 1)
    assert report.complete, report.skipped_ops
