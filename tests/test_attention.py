"""Transformers with integer token inputs, end to end: study, head and MLP pruning, export, every precision."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch
import torch.nn.functional as F
from optuna.trial import TrialState
from torch import nn

from effsearch.compress.prune import count_heads, count_params, prune
from effsearch.compress.quantize import make_precision
from effsearch.measure.metric import stack_dataset
from effsearch.attention import LeanMultiheadAttention, lean_attention, plain_attention
from effsearch.onnx_export import export_onnx
from effsearch.runtime import ort_session
from effsearch.space import PRECISIONS
from effsearch.userfile import load_user_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "token_transformer.py"
STUDY = "token-transformer"
VOCAB, SEQ, DIM, HEADS = 32, 16, 64, 4


@pytest.fixture(scope="module")
def example():
    """(model factory, train set, validation set) of examples/token_transformer.py."""
    reg = load_user_file(EXAMPLE).registration
    train, val = reg.data()
    return reg.model, train, val


def tokens(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(seed))


# --- hand-written attention blocks -------------------------------------------------------------------


class SeparateQKV(nn.Module):
    """Attention with separate q/k/v Linear layers; the forward reads num_heads, so it follows pruning."""

    def __init__(self, dim: int = DIM, num_heads: int = HEADS) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        split = lambda t: t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class FusedQKV(nn.Module):
    """Attention with one q|k|v Linear, as timm's ViT writes it."""

    def __init__(self, dim: int = DIM, num_heads: int = HEADS) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1))


class HardCodedWidth(SeparateQKV):
    """Its forward reshapes to the input's width, so it cannot lose heads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        split = lambda t: t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, attention: type[nn.Module]) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(DIM), attention()
        self.norm2, self.fc1, self.fc2 = nn.LayerNorm(DIM), nn.Linear(DIM, 2 * DIM), nn.Linear(2 * DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class HandWritten(nn.Module):
    """Token embedding, a bare position-embedding Parameter, two pre-norm blocks, mean pooling, a head."""

    def __init__(self, attention: type[nn.Module]) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, DIM)
        self.pos = nn.Parameter(torch.randn(1, SEQ, DIM) * 0.02)
        self.blocks = nn.Sequential(Block(attention), Block(attention))
        self.norm, self.head = nn.LayerNorm(DIM), nn.Linear(DIM, 2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.tokens(t) + self.pos)).mean(1))


# --- the study ----------------------------------------------------------------------------------------


def test_a_two_run_study_records_every_precision_and_a_front(run_cli, tmp_path):
    tuned = run_cli("tune", str(EXAMPLE), "--trials", "2", "--epochs", "1")
    assert tuned.returncode == 0, tuned.stderr[-3000:]

    shown = run_cli("pareto", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    front = json.loads(shown.stdout)
    assert front, "a front of at least one trial"
    for row in front:
        assert row["params"]["precision"] in PRECISIONS
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0
        assert row["metrics"]["latency_ms"] > 0 and row["metrics"]["flops"] > 0
        assert Path(row["onnx"]).is_file()

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    by_precision: dict[str, list[optuna.trial.FrozenTrial]] = {p: [] for p in PRECISIONS}
    for t in study.trials:
        by_precision[t.params["precision"]].append(t)
    for precision, trials in by_precision.items():
        assert trials, f"no trial in {precision}"
        for t in trials:
            assert t.state == TrialState.COMPLETE or (
                t.state == TrialState.FAIL and t.user_attrs.get("fail_reason")
            ), (precision, t.number, t.state)
    first_run = [t for t in study.trials if t.user_attrs.get("run") == 1]
    assert sorted(t.params["precision"] for t in first_run) == sorted(PRECISIONS)
    assert all(t.state == TrialState.COMPLETE for t in first_run), "every precision works on the dense model"

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    baseline = next(t for t in complete if t.user_attrs.get("baseline"))
    # One epoch at the default settings learns the task (a constant guess scores about 0.63).
    assert baseline.user_attrs["metrics"]["accuracy"] > 0.85, baseline.user_attrs["metrics"]
    for t in complete:
        # Every artifact takes int64 tokens, whatever its precision.
        onnx_path = Path(t.user_attrs["onnx"])
        assert ort_session(onnx_path).get_inputs()[0].type == "tensor(int64)", onnx_path
    for lead in (t for t in study.trials if t.user_attrs.get("lead")):
        skipped = lead.user_attrs.get("flops_skipped_ops", {})
        assert not any("attention" in op for op in skipped), skipped


# --- pruning ------------------------------------------------------------------------------------------


def test_pruning_the_example_at_half_removes_heads_and_mlp_width_and_keeps_parity(example, tmp_path):
    build, train, _ = example
    torch.manual_seed(0)
    model = build()
    before = count_params(model)
    report = prune(model, train.tensors[0][:2], 0.5)

    assert report.params_after == count_params(model) < before
    assert 0.35 < report.achieved < 0.6, report  # the residual width, embeddings and norms stay whole
    assert (report.heads_before, report.heads_after) == (8, 4) == (8, count_heads(model))
    for layer in model.encoder.layers:
        attn = layer.self_attn
        assert isinstance(attn, LeanMultiheadAttention)
        assert (attn.num_heads, attn.head_dim, attn.embed_dim) == (2, DIM // HEADS, DIM)
        assert attn.in_proj_weight.shape == (3 * 2 * (DIM // HEADS), DIM)
        assert attn.out_proj.weight.shape == (DIM, 2 * (DIM // HEADS))
        assert (layer.linear1.out_features, layer.linear2.in_features) == (64, 64)
        assert layer.norm1.normalized_shape == layer.norm2.normalized_shape == (DIM,)
    assert model.tokens.embedding_dim == model.positions.embedding_dim == DIM
    assert model.head.out_features == 2

    batch = tokens(64, seed=1)
    exported = export_onnx(model, batch, tmp_path / "model.onnx")
    assert exported.parity_max_abs < 1e-4 and exported.input_dtype == "int64"
    with torch.no_grad():
        expected = model.eval()(batch).numpy()
    got = ort_session(exported.path).run(None, {"input": batch.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    model.train()
    F.cross_entropy(model(batch), torch.zeros(64, dtype=torch.long)).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


@pytest.mark.parametrize("attention", [SeparateQKV, FusedQKV])
def test_pruning_hand_written_attention_removes_whole_heads(attention, tmp_path):
    torch.manual_seed(0)
    model = HandWritten(attention)
    dense = copy.deepcopy(model)
    report = prune(model, tokens(2), 0.5)
    assert (report.heads_before, report.heads_after) == (8, 4)
    assert report.params_after < report.params_before

    head_dim = DIM // HEADS
    for block, dense_block in zip(model.blocks, dense.blocks):
        attn = block.attn
        assert (attn.num_heads, attn.head_dim) == (2, head_dim), "num_heads follows, head_dim holds"
        q_weight = attn.q.weight if attention is SeparateQKV else attn.qkv.weight[: 2 * head_dim]
        dense_q = dense_block.attn.q.weight if attention is SeparateQKV else dense_block.attn.qkv.weight[:DIM]
        # Whole heads survive: each kept block of head_dim rows is one of the dense model's heads.
        dense_heads = dense_q.view(HEADS, head_dim, DIM)
        for kept in q_weight.view(2, head_dim, DIM):
            assert any(torch.equal(kept, h) for h in dense_heads)
        assert attn.proj.in_features == 2 * head_dim and attn.proj.out_features == DIM
        assert (block.fc1.out_features, block.fc2.in_features) == (DIM, DIM)
        assert block.norm1.normalized_shape == (DIM,)
    assert model.pos.shape == (1, SEQ, DIM) and model.tokens.embedding_dim == DIM

    exported = export_onnx(model, tokens(32, seed=2), tmp_path / "model.onnx")
    assert exported.parity_max_abs < 1e-4


def test_a_forward_that_hard_codes_the_width_keeps_its_heads_and_still_prunes_the_mlp():
    torch.manual_seed(0)
    model = HandWritten(HardCodedWidth)
    report = prune(model, tokens(2), 0.5)
    assert (report.heads_before, report.heads_after) == (8, 8)
    assert all(b.attn.q.out_features == DIM and b.fc1.out_features == DIM for b in model.blocks)
    assert report.params_after < report.params_before
    with torch.no_grad():
        assert model.eval()(tokens(3)).shape == (3, 2)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(
    "case", ["plain", "no_weights", "padding", "causal", "causal_hint", "per_head_mask", "per_head_weights"]
)
def test_lean_attention_computes_what_torch_does(batch_first, case):
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    lean = copy.deepcopy(reference)
    assert lean_attention(lean, range(4)) and isinstance(lean, LeanMultiheadAttention)
    b, n = 3, 5
    x = torch.randn(b, n, 32) if batch_first else torch.randn(n, b, 32)
    padding = torch.zeros(b, n, dtype=torch.bool)
    padding[0, -2:] = True
    causal = torch.ones(n, n, dtype=torch.bool).triu(1)
    kwargs = {
        "plain": {},
        "no_weights": {"need_weights": False},
        "padding": {"key_padding_mask": padding},
        "causal": {"attn_mask": causal},
        "causal_hint": {"attn_mask": causal, "is_causal": True, "need_weights": False},
        "per_head_mask": {"attn_mask": torch.randn(b * 4, n, n)},
        "per_head_weights": {"attn_mask": causal, "average_attn_weights": False},
    }[case]
    with torch.no_grad():
        want_out, want_weights = reference(x, x, x, **kwargs)
        got_out, got_weights = lean(x, x, x, **kwargs)
    torch.testing.assert_close(got_out, want_out, rtol=1e-5, atol=1e-5)
    if want_weights is None:
        assert got_weights is None
    else:
        torch.testing.assert_close(got_weights, want_weights, rtol=1e-5, atol=1e-5)


# --- integer inputs through every precision -----------------------------------------------------------


def test_integer_inputs_keep_int64_in_every_precision(example, tmp_path):
    build, train, val = example
    torch.manual_seed(0)
    model = build().eval()
    exported = export_onnx(model, val.tensors[0][:64], tmp_path / "model.onnx")
    assert exported.input_dtype == "int64"
    calibration = stack_dataset(train, limit=64).inputs
    assert calibration.dtype == np.int64
    batches = [calibration[i : i + 32] for i in range(0, len(calibration), 32)]
    feed = {"input": val.tensors[0][:8].numpy()}
    with torch.no_grad():
        reference = model(val.tensors[0][:8]).numpy()
    for precision in PRECISIONS:
        path = make_precision(exported.path, precision, batches)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].type == "tensor(int64)", precision
        assert session.get_outputs()[0].type == "tensor(float)", precision
        out = session.run(None, feed)[0]
        assert out.shape == (8, 2) and np.isfinite(out).all(), precision
        # Quantized logits stay near float ones on an untrained model (a loose bound: int8 noise).
        assert np.abs(out - reference).max() < 0.5, (precision, np.abs(out - reference).max())


def test_fp16_of_torchs_own_attention_export_opens_in_onnxruntime(example, tmp_path):
    """onnxruntime 1.32 segfaulted opening this graph with fp16 LayerNormalization; make_precision keeps them fp32.

    export_onnx exports nn.MultiheadAttention lean, so this builds torch's own export on purpose (as a
    module whose attention cannot go lean would export). The session opens in a child process: a crash
    there fails this test instead of the whole run.
    """
    build, _, val = example
    torch.manual_seed(0)
    path = tmp_path / "model.onnx"
    with torch.no_grad(), plain_attention(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            build().eval(), (val.tensors[0][:4],), str(path), dynamo=False, input_names=["input"],
            output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17,
        )
    fp16 = make_precision(path, "fp16", [])
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "print(s.run(None, {'input': np.zeros((2, 16), dtype=np.int64)})[0].shape)"
    )
    opened = subprocess.run([sys.executable, "-c", code, str(fp16)], capture_output=True, text=True, timeout=120)
    assert opened.returncode == 0, (opened.returncode, opened.stderr[-2000:])
    assert opened.stdout.strip() == "(2, 2)"
