"""Models with several inputs: a tuple (an image and a scalar) and a dict (token ids and a padding mask).

Every stage feeds every input: the probe, training, export (names, a dynamic sequence axis), parity,
FLOPs, calibration, the metric, latency, the card and its snippet, verification.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch

from effsearch import record
from effsearch.compress.prune import prune
from effsearch.errors import UserFileError
from effsearch.inputs import head
from effsearch.measure.artifact import Measurer
from effsearch.measure.flops import count_flops
from effsearch.onnx_export import export_onnx
from effsearch.plugins import choose_energy_meter
from effsearch.train.loop import first_batch
from effsearch.userfile import load_user_file, probe

MASKED = Path(__file__).resolve().parent.parent / "examples" / "masked_transformer.py"

# An image and a scalar: forward(image, scale), the dataset's input a tuple.
IMAGE_AND_SCALAR = """\
import torch
from torch import nn
from torch.utils.data import Dataset

import effsearch


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8 * 64 + 1, 10)

    def forward(self, image, scale):
        x = torch.relu(self.conv(image * scale.view(-1, 1, 1, 1))).flatten(1)
        return self.head(torch.cat([x, scale], dim=1))


class Digits(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return (self.x[i], torch.tensor([1.0 + (i % 3) / 2])), self.y[i]


def load():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(d.target)
    return Digits(x[:1400], y[:1400]), Digits(x[1400:], y[1400:])


effsearch.register(model=Scaled, data=load, name="image-and-scalar", epochs=2)
"""


def _run(session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> np.ndarray:
    return session.run(None, feed)[0]


def test_a_tuple_input_is_named_trained_quantized_measured_and_shipped(run_cli, write_user_file, tmp_path) -> None:
    path = write_user_file(IMAGE_AND_SCALAR, "image_and_scalar.py")
    # One run, the baseline: every figure below is the baseline's.
    proc = run_cli("tune", str(path), "--trials", "1", "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="image-and-scalar", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    meta = record.read_meta(study)
    assert meta.inputs == {"input_0": {"shape": [1, 8, 8], "dtype": "float32"}, "input_1": {"shape": [1], "dtype": "float32"}}
    done = {t.params["precision"]: t for t in record.read_all(study, states=(optuna.trial.TrialState.COMPLETE,)) if t.baseline or t.run == 1}
    assert set(done) == {"fp32", "fp16", "int8_dynamic", "int8_static"}, "every precision, static int8 calibrated on both inputs"
    assert done["fp32"].metrics["accuracy"] > 0.5, "the baseline learned through both inputs"
    assert done["fp32"].metrics["flops"] > 8 * 9 * 64, "the convolution on the image is counted"
    session = ort.InferenceSession(done["fp32"].onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_0", "input_1"]

    proc = run_cli("export", "--trial", str(done["fp32"].number), "-o", str(tmp_path / "ship" / "model.onnx"))
    assert proc.returncode == 0, proc.stderr
    card = json.loads((tmp_path / "ship" / "model.card.json").read_text())
    assert [i["name"] for i in card["inputs"]] == ["input_0", "input_1"]
    snippet = (tmp_path / "ship" / "model.card.md").read_text()
    assert '"input_0": np.zeros((1, 1, 8, 8), dtype=np.float32)' in snippet and '"input_1": np.zeros((1, 1), dtype=np.float32)' in snippet


def test_a_dict_input_exports_by_name_with_a_dynamic_sequence_axis(tmp_path) -> None:
    uf = load_user_file(MASKED)
    info, (train, val) = probe(uf)
    assert set(info.inputs) == {"tokens", "padding_mask"} and info.inputs["padding_mask"]["dtype"] == "bool"
    torch.manual_seed(0)
    model = uf.registration.model().eval()
    exported = export_onnx(model, first_batch(val, 16), tmp_path / "model.onnx")
    assert exported.inputs == {
        "tokens": {"dtype": "int64", "shape": ["batch", "sequence"]},
        "padding_mask": {"dtype": "bool", "shape": ["batch", "sequence"]},
    }
    # Another sequence length than the export's: the graph takes it, and agrees with torch.
    x = first_batch(val, 8)
    short = {k: v[:, :10] for k, v in x.items()}
    short["padding_mask"][:, 7:] = True
    with torch.no_grad():
        expected = model(**short).numpy()
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    got = _run(session, {k: v.numpy() for k, v in short.items()})
    assert np.allclose(got, expected, atol=1e-4)
    # The mask matters: padding positions do not change the output.
    noisy = {k: v.clone() for k, v in short.items()}
    noisy["tokens"][:, 7:] = 9
    assert np.allclose(_run(session, {k: v.numpy() for k, v in noisy.items()}), got, atol=1e-5)


def test_heads_are_pruned_and_masked_attention_is_counted(tmp_path) -> None:
    uf = load_user_file(MASKED)
    _, (train, val) = probe(uf)
    torch.manual_seed(0)
    model = uf.registration.model()
    sample = head(first_batch(val, 1), 1)
    dense = count_flops(model, sample)
    # Both attention matmuls of both layers (QK^T and AV, length 24, width 64) are part of the count.
    assert dense.complete and dense.flops > 2 * 2 * 24 * 24 * 64
    report = prune(model, first_batch(train, 2), 0.5)
    assert (report.heads_before, report.heads_after) == (8, 4)
    assert count_flops(model, sample).flops < dense.flops
    # The pruned model still takes the mask and exports with both inputs.
    exported = export_onnx(model.eval(), first_batch(val, 16), tmp_path / "pruned.onnx")
    assert set(exported.inputs) == {"tokens", "padding_mask"}


def test_latency_is_timed_at_the_stated_sequence_length() -> None:
    uf = load_user_file(MASKED)
    _, datasets = probe(uf)
    full = Measurer(uf, datasets, choose_energy_meter(None), ["CPUExecutionProvider"], repeats=20)
    assert full.sequence_length == 24 and full.sample["tokens"].shape == (1, 24)
    short = Measurer(uf, datasets, choose_energy_meter(None), ["CPUExecutionProvider"], repeats=20, latency_seq_len=12, latency_batch=4)
    assert short.sequence_length == 12
    assert short.sample["tokens"].shape == short.sample["padding_mask"].shape == (4, 12)
    assert [c["tokens"].shape[1] for c in short.calibration] == [24] * len(short.calibration), "calibration keeps the data's length"


@pytest.mark.parametrize(("item", "said"), [
    ("[x[i], 'a']", "input_1 is a tuple of str, not a tensor"),
    ("{'a b': x[i]}", "dict keys must be names of the model's arguments"),
])
def test_an_input_that_cannot_be_fed_is_refused_in_one_line(write_user_file, item, said) -> None:
    path = write_user_file(f"""\
        import torch
        from torch import nn
        import effsearch

        x = torch.randn(8, 3)
        class D(torch.utils.data.Dataset):
            def __len__(self):
                return 8
            def __getitem__(self, i):
                return {item}, 0

        effsearch.register(model=lambda: nn.Linear(3, 2), data=lambda: (D(), D()))
    """)
    with pytest.raises(UserFileError) as info:
        probe(load_user_file(path))
    message = str(info.value)
    assert said in message and path.name in message and "\n" not in message
    assert re.search(r"tensor, a tuple of tensors or a dict of tensors", message)


def test_a_sequence_length_needs_token_inputs_and_fits_the_padding(run_cli, write_user_file) -> None:
    floats = write_user_file(IMAGE_AND_SCALAR, "image_and_scalar.py")
    proc = run_cli("tune", str(floats), "--latency-seq-len", "4")
    assert proc.returncode == 2 and "takes no token input; drop the option" in proc.stderr, proc.stderr
    proc = run_cli("tune", str(MASKED), "--latency-seq-len", "30")
    assert proc.returncode == 2 and "exceeds the 24 positions" in proc.stderr and "--latency-seq-len 24 or less" in proc.stderr, proc.stderr
