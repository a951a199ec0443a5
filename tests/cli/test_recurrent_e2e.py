"""Recurrent models end to end: a study of a GRU gives a front, its FLOPs match a hand count, and its
pruned artifact has fewer hidden units and runs in plain onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

GRU_FILE = """
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import effsearch

    VOCAB, LEN, EMBED, HIDDEN = 16, 12, 8, 24


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, EMBED)
            # Sequence-first, two layers, both directions.
            self.gru = nn.GRU(EMBED, HIDDEN, num_layers=2, bidirectional=True)
            self.head = nn.Linear(2 * HIDDEN, 2)

        def forward(self, tokens):
            out, _ = self.gru(self.tokens(tokens).transpose(0, 1))
            return self.head(out.mean(0))


    def load():
        g = torch.Generator().manual_seed(0)
        x = torch.randint(VOCAB, (600, LEN), generator=g)
        y = ((x == 3).sum(1) > (x == 5).sum(1)).long()
        return TensorDataset(x[:480], y[:480]), TensorDataset(x[480:], y[480:])


    effsearch.register(model=Net, data=load, name="gru", epochs=1)
"""

VOCAB, LEN, EMBED, HIDDEN = 16, 12, 8, 24


def gru_flops(hidden: int) -> int:
    """Hand count at batch 1: per time step, layer and direction, 3 gates x hidden x (input + hidden)."""
    layer0 = 2 * 3 * hidden * (EMBED + hidden)
    layer1 = 2 * 3 * hidden * (2 * hidden + hidden)
    head = 2 * hidden * 2
    return LEN * (layer0 + layer1) + head


@pytest.mark.slow
def test_a_gru_study_gives_a_front_with_counted_flops_and_a_smaller_pruned_model(write_user_file, run_cli, tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('world_size = 1\nprune_ratio = 0.5\n\n[precision]\nchoices = ["fp32", "int8_dynamic"]\n')
    result = run_cli("tune", str(write_user_file(GRU_FILE, "gru.py")), "--trials", "2", "--space", str(space), timeout=300)
    assert result.returncode == 0, result.stderr
    front = json.loads(run_cli("pareto", "--json").stdout)
    assert front, "the study has a front"
    row = next(r for r in front if r["params"]["precision"] == "fp32")
    graph = onnx.load(row["onnx"]).graph
    (gru,) = [n for n in graph.node if n.op_type == "GRU"][:1]
    hidden = next(a.i for a in gru.attribute if a.name == "hidden_size")
    assert hidden == int(HIDDEN * 0.5), "the pruned GRU has half its hidden units"
    assert row["metrics"]["flops"] == gru_flops(hidden)
    assert row["metrics"]["flops_complete"] is True
    session = ort.InferenceSession(row["onnx"], providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: np.zeros((3, LEN), dtype=np.int64)})
    assert out.shape == (3, 2) and np.isfinite(out).all()
