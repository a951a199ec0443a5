"""Every precision of recurrent graphs loads in onnxruntime, keeps int64 tokens in and float32 out, and agrees with fp32.

Measured on a 2-core AVX2 machine (no VNNI), on the 1000 validation sequences of examples/lstm_classifier.py
trained one epoch as below (three epochs in brackets): accuracy 1.0 in every precision, every decision the
same as torch's, and a largest logit difference from torch of fp16 0.0011 (0.001), int8_dynamic 0.45
(0.61), int8_static 0.46 (0.68), for logits up to 4.1 (5.3). The int8 gap is the final Gemm, not the
LSTM: onnxruntime's u8s8 integer matmul saturates on AVX2 without VNNI (quantizing only the LSTM moved
the logits by 0.03; only the Gemm, by 0.60). onnxruntime has no QDQ form of LSTM/GRU/RNN, so int8_static
leaves the recurrent layer in float32; int8_dynamic quantizes an LSTM (DynamicQuantizeLSTM) but leaves
GRU and RNN in float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from effsearch.compress.quantize import make_precision
from effsearch.onnx_export import INPUT_NAME, export_onnx, ort_session
from effsearch.userfile import load_user_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PRECISIONS = ["fp16", "int8_dynamic", "int8_static"]
MAX_DROP = 0.02  # accuracy, as for the digits CNN in test_quantize.py


@pytest.fixture(scope="module")
def trained_lstm(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """The LSTM example trained one epoch in-process and exported: (fp32 path, tokens, labels, torch logits, calibration)."""
    reg = load_user_file(EXAMPLES / "lstm_classifier.py").registration
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads ran torch's LSTM far slower on a busy 2-core machine
    try:
        torch.manual_seed(0)
        model = reg.model()
        train, val = reg.data()
        x, y = train.tensors
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        tokens, labels = val.tensors
        with torch.no_grad():
            logits = model(tokens).numpy()
        path = export_onnx(model, tokens[:64], tmp_path_factory.mktemp("lstm") / "model.onnx").path
    finally:
        torch.set_num_threads(threads)
    accuracy = float((logits.argmax(1) == labels.numpy()).mean())
    assert accuracy > 0.9, f"one epoch learns the order task ({accuracy}); otherwise the bounds below mean little"
    calibration = [b.numpy() for b in x[:256].split(32)]
    return path, tokens.numpy(), labels.numpy(), logits, calibration


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_precision_of_the_lstm_example_keeps_io_types_and_accuracy(trained_lstm, precision):
    path, tokens, labels, logits, calibration = trained_lstm
    out = make_precision(path, precision, calibration)
    session = ort_session(out)
    assert [i.type for i in session.get_inputs()] == ["tensor(int64)"], "tokens stay int64"
    assert [o.type for o in session.get_outputs()] == ["tensor(float)"], "callers keep reading float32"
    got = session.run(None, {INPUT_NAME: tokens})[0]
    assert got.shape == logits.shape
    drop = (logits.argmax(1) == labels).mean() - (got.argmax(1) == labels).mean()
    assert drop <= MAX_DROP, (precision, drop)
    assert (got.argmax(1) == logits.argmax(1)).mean() >= 0.98
    if precision == "fp16":
        # fp16 weights and activations: logits within 1e-2 of torch's (measured 0.001).
        np.testing.assert_allclose(got, logits, atol=1e-2, rtol=1e-2)


def test_int8_dynamic_quantizes_the_lstm_and_fp16_halves_the_file(trained_lstm):
    path, _, _, _, calibration = trained_lstm
    dynamic = make_precision(path, "int8_dynamic", calibration)
    assert "DynamicQuantizeLSTM" in _ops(dynamic)
    # Measured: fp16 0.52, int8_dynamic 0.30 of the fp32 file (the LSTM holds most of the weights).
    assert dynamic.stat().st_size < 0.4 * path.stat().st_size
    assert make_precision(path, "fp16", calibration).stat().st_size < 0.6 * path.stat().st_size


class Tagger(nn.Module):
    """Embedding -> two-layer bidirectional GRU or LSTM, time-first -> Linear on the mean over time."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.tokens = nn.Embedding(32, 16)
        self.rnn = getattr(nn, kind)(16, 24, num_layers=2, bidirectional=True)
        self.head = nn.Linear(48, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.tokens(tokens).transpose(0, 1))
        return self.head(out.mean(0))


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_bidirectional_two_layer_graphs_run_in_every_precision(kind, precision, tmp_path):
    torch.manual_seed(0)
    model = Tagger(kind).eval()
    tokens = torch.randint(0, 32, (64, 12))
    with torch.no_grad():
        logits = model(tokens).numpy()
    path = export_onnx(model, tokens, tmp_path / "model.onnx").path
    out = make_precision(path, precision, [tokens[i : i + 16].numpy() for i in range(0, 64, 16)])
    got = ort_session(out).run(None, {INPUT_NAME: tokens.numpy()})[0]
    assert got.shape == logits.shape and np.isfinite(got).all()
    scale = float(np.abs(logits).max())
    # Untrained logits are small; measured: fp16 within 0.1% of their scale, int8 within 15%.
    assert np.abs(got - logits).max() <= (0.01 if precision == "fp16" else 0.3) * scale
