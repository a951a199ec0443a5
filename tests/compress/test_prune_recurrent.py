"""Pruning recurrent layers: hidden units go, the embedding's vocabulary and the output layer stay.

The exactness tests build models whose "dead" units (different ones in every layer and direction) have
every weight into and out of them zeroed: such a unit outputs 0 and nothing reads it, so removing exactly
those units must leave the model's outputs unchanged, which checks every index the pruning touches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from effsearch.compress.prune import PruneReport, count_params, prune
from effsearch.onnx_export import INPUT_NAME, export_onnx, ort_session
from effsearch.userfile import load_user_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VOCAB, EMBED, HIDDEN, SEQ = 32, 16, 24, 10
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


@pytest.fixture(autouse=True)
def one_thread():
    # On a busy 2-core machine torch's LSTM ran about 100x slower on two threads than on one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Classifier(nn.Module):
    """Embedding -> recurrent layer -> (optional hidden Linear) -> Linear, reading the output or h_n."""

    def __init__(
        self,
        kind: str,
        layers: int = 2,
        bidirectional: bool = True,
        batch_first: bool = True,
        read: str = "last",
        mlp: bool = False,
    ) -> None:
        super().__init__()
        self.batch_first, self.read = batch_first, read
        self.tokens = nn.Embedding(VOCAB, EMBED)
        self.rnn = getattr(nn, kind)(EMBED, HIDDEN, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
        out = HIDDEN * (2 if bidirectional else 1)
        features = {"last": out, "h_n": HIDDEN, "h_n both": 2 * HIDDEN, "flat": SEQ * out}[read]
        self.mlp = nn.Sequential(nn.Linear(features, 32), nn.ReLU()) if mlp else nn.Identity()
        self.head = nn.Linear(32 if mlp else features, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tokens(tokens)
        out, state = self.rnn(x if self.batch_first else x.transpose(0, 1))
        if not self.batch_first:
            out = out.transpose(0, 1)
        h_n = state[0] if isinstance(state, tuple) else state
        if self.read == "last":
            z = out[:, -1]
        elif self.read == "h_n":
            z = h_n[-1]
        elif self.read == "h_n both":
            z = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        else:
            z = out.reshape(out.shape[0], -1)
        return self.head(self.mlp(z))


def _kill(model: Classifier, n_dead: int, seed: int = 0) -> None:
    """Zero all weights into and out of n_dead units of every layer and direction (different units in each)."""
    rnn, head = model.rnn, model.head
    g = torch.Generator().manual_seed(seed)
    gates, dirs = GATES[type(rnn).__name__], 2 if rnn.bidirectional else 1
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                dead = torch.randperm(HIDDEN, generator=g)[:n_dead]
                rows = torch.cat([dead + k * HIDDEN for k in range(gates)])
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(rnn, name + sfx)[rows] = 0.0
                getattr(rnn, "weight_hh" + sfx)[:, dead] = 0.0
                if layer + 1 < rnn.num_layers:  # the next layer reads direction d's outputs at d*HIDDEN
                    for d_next in range(dirs):
                        getattr(rnn, f"weight_ih_l{layer + 1}" + ("_reverse" if d_next else ""))[:, dead + d * HIDDEN] = 0.0
                else:
                    head.weight[:, dead + d * HIDDEN] = 0.0


def _tokens(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(seed))


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def _assert_runs_in_onnxruntime(model: nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    report = export_onnx(model, x, tmp_path / "model.onnx")
    got = ort_session(report.path).run(None, {INPUT_NAME: x.numpy()})[0]
    np.testing.assert_allclose(got, _outputs(model, x).numpy(), rtol=1e-4, atol=1e-5)


def _still_trains(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    nn.functional.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long)).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "time-first"])
def test_two_layer_bidirectional_loses_exactly_its_weakest_units(kind, batch_first, tmp_path):
    torch.manual_seed(0)
    model = Classifier(kind, layers=2, bidirectional=True, batch_first=batch_first)
    _kill(model, n_dead=6)
    x = _tokens(8)
    before = _outputs(model, x)

    report = prune(model, _tokens(2, seed=1), 0.25)

    assert model.rnn.hidden_size == 18, "int(24 * 0.75) units kept in every layer and direction"
    assert (model.tokens.num_embeddings, model.tokens.embedding_dim) == (VOCAB, EMBED), "the vocabulary stays whole"
    assert (model.head.in_features, model.head.out_features) == (2 * 18, 3), "the head reads both directions; one logit per class"
    assert report.kept == {}
    assert report.params_after == count_params(model) < report.params_before
    torch.testing.assert_close(_outputs(model, x), before, rtol=1e-5, atol=1e-6)
    _assert_runs_in_onnxruntime(model, x, tmp_path)
    _still_trains(model, x)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_reading_h_n_of_the_last_layer_is_followed(kind):
    torch.manual_seed(0)
    model = Classifier(kind, layers=2, bidirectional=False, read="h_n")
    _kill(model, n_dead=6)
    x = _tokens(8)
    before = _outputs(model, x)
    report = prune(model, _tokens(2, seed=1), 0.25)
    assert (model.rnn.hidden_size, model.head.in_features, report.kept) == (18, 18, {})
    torch.testing.assert_close(_outputs(model, x), before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("ratio", "hidden"), [(0.25, 48), (0.45, 35), (0.7, 19)])
def test_the_lstm_example_prunes_hidden_units_not_its_vocabulary(ratio, hidden, tmp_path):
    """The issue's model: at 0.45 pruning raised "IndexError: index out of range in self" (torch-pruning's LSTM pruner)."""
    reg = load_user_file(EXAMPLES / "lstm_classifier.py").registration
    torch.manual_seed(0)
    model = reg.model()
    _, val = reg.data()
    x = val.tensors[0][:16]
    report = prune(model, x[:2], ratio)
    assert model.lstm.hidden_size == hidden
    assert (model.tokens.num_embeddings, model.tokens.embedding_dim) == (32, 32)
    assert (model.head.in_features, model.head.out_features) == (hidden, 2)
    assert report.kept == {}
    assert report.achieved > ratio  # w_hh shrinks in both dimensions
    _assert_runs_in_onnxruntime(model, x, tmp_path)


def test_a_layer_that_cannot_be_pruned_is_kept_whole_with_a_reason_and_the_rest_is_pruned():
    torch.manual_seed(0)
    model = Classifier("LSTM", layers=1, bidirectional=True, read="h_n both", mlp=True)
    report = prune(model, _tokens(2), 0.5)
    assert model.rnn.hidden_size == HIDDEN
    assert list(report.kept) == ["rnn"]
    assert "bidirectional" in report.kept["rnn"] and "out[:, -1]" in report.kept["rnn"], report.kept
    assert model.mlp[0].out_features == 16, "the Linear after it is still pruned"
    assert _outputs(model, _tokens(4)).shape == (4, 3)


def test_flattening_time_steps_with_features_keeps_the_layer():
    # torch-pruning maps such a flatten as channels-first and would cut the wrong inputs of the head.
    torch.manual_seed(0)
    model = Classifier("GRU", layers=1, bidirectional=False, read="flat")
    before = count_params(model)
    report = prune(model, _tokens(2), 0.5)
    assert model.rnn.hidden_size == HIDDEN and count_params(model) == before
    assert "out[:, -1]" in report.kept["rnn"], report.kept


def test_an_lstm_whose_output_is_the_models_output_is_the_output_layer():
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.lstm(self.tokens(tokens))[0]

    model = Tagger()
    report = prune(model, _tokens(2), 0.5)
    assert model.lstm.hidden_size == HIDDEN
    assert "output layer" in report.kept["lstm"]


def test_proj_size_lstm_prunes_hidden_units_and_keeps_the_projection():
    class Projected(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, num_layers=2, proj_size=8, bidirectional=True)
            self.head = nn.Linear(16, 3)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(self.tokens(tokens).transpose(0, 1))
            return self.head(out.mean(0))

    model = Projected()
    report = prune(model, _tokens(2), 0.5)
    assert (model.lstm.hidden_size, model.lstm.proj_size, model.head.in_features) == (12, 8, 16)
    assert report.kept == {}
    assert _outputs(model, _tokens(4)).shape == (4, 3)


@pytest.mark.parametrize("importance", ["l1", "random"])
def test_a_layer_before_the_rnn_and_the_rnn_input_follow_each_other(importance, tmp_path):
    class Features(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre = nn.Linear(10, 32)
            self.rnn = nn.RNN(32, HIDDEN, num_layers=2, nonlinearity="relu")
            self.head = nn.Linear(HIDDEN, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(torch.relu(self.pre(x)).transpose(0, 1))
            return self.head(out[-1])

    torch.manual_seed(0)
    model = Features()
    report = prune(model, torch.randn(2, SEQ, 10), 0.5, importance)
    assert isinstance(report, PruneReport) and report.kept == {}
    assert (model.pre.out_features, model.rnn.input_size, model.rnn.hidden_size, model.head.in_features) == (16, 16, 12, 12)
    _assert_runs_in_onnxruntime(model, torch.randn(4, SEQ, 10), tmp_path)


def test_a_recurrent_cell_keeps_its_units_and_follows_the_layer_before_it(tmp_path):
    class Stepped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre = nn.Linear(10, 16)
            self.cell = nn.GRUCell(16, HIDDEN)
            self.mid = nn.Linear(HIDDEN, 32)
            self.head = nn.Linear(32, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x, h = torch.relu(self.pre(x)), None
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return self.head(torch.relu(self.mid(h)))

    torch.manual_seed(0)
    model = Stepped()
    report = prune(model, torch.randn(2, 6, 10), 0.5)
    assert (model.pre.out_features, model.cell.input_size, model.cell.hidden_size, model.mid.out_features) == (8, 8, HIDDEN, 16)
    assert "nn.GRU" in report.kept["cell"], report.kept
    _assert_runs_in_onnxruntime(model, torch.randn(4, 6, 10), tmp_path)
