"""Hugging Face models as they are: ModelOutput results, dict samples with their labels, a collate function,
heads and MLP widths pruned, the export run in plain onnxruntime with every input. Tiny configs, built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

import effsearch  # noqa: E402
from effsearch.compress.prune import count_heads, prune  # noqa: E402
from effsearch.errors import TrialError, UserFileError  # noqa: E402
from effsearch.measure.metric import Streamed, ort_metric, stack_dataset  # noqa: E402
from effsearch.onnx_export import export_onnx  # noqa: E402
from effsearch.outputs import Picked, pick  # noqa: E402
from effsearch.registration import _take_pending  # noqa: E402
from effsearch.runtime import ort_session  # noqa: E402
from effsearch.samples import loader  # noqa: E402
from effsearch.train.loop import first_batch  # noqa: E402
from effsearch.train.validation import torch_metric  # noqa: E402
from effsearch.userfile import default_metric, load_user_file, probe  # noqa: E402

USERFILES = Path(__file__).resolve().parent / "userfiles"
BERT, DISTILBERT = USERFILES / "hf_bert.py", USERFILES / "hf_distilbert.py"


def _widths(model: nn.Module) -> tuple[list[int], list[int]]:
    """(heads, MLP width) of every encoder layer, as the HF modules themselves hold them."""
    if hasattr(model, "bert"):
        layers = model.bert.encoder.layer
        return [l.attention.self.num_attention_heads for l in layers], [l.intermediate.dense.out_features for l in layers]
    layers = model.distilbert.transformer.layer
    return [l.attention.n_heads for l in layers], [l.ffn.lin1.out_features for l in layers]


# --- the output ---------------------------------------------------------------------------------------


def test_pick_takes_logits_never_loss_else_the_first_tensor() -> None:
    from transformers.modeling_outputs import SequenceClassifierOutput

    loss, logits = torch.tensor(1.0), torch.randn(2, 3)
    assert pick(SequenceClassifierOutput(loss=loss, logits=logits)) is logits
    assert pick({"loss": loss, "scores": logits}) is logits
    assert pick((loss.new_ones(2, 3), logits)).shape == (2, 3)
    assert pick({"a": logits, "b": loss}, "b") is loss
    assert pick((None, logits)) is logits
    assert pick(logits) is logits
    with pytest.raises(TrialError, match="no tensor field 'nope'"):
        pick({"logits": logits}, "nope")
    with pytest.raises(TrialError, match="must return a tensor"):
        pick("text")


class _Scores(nn.Module):
    """A forward returning a dict whose output is not `logits`."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.lin(x)
        return {"loss": out.sum(), "features": x, "scores": out}


def test_the_export_names_its_output_after_the_field(tmp_path: Path) -> None:
    x = torch.randn(8, 4)
    chosen = export_onnx(Picked(_Scores().eval(), "scores"), x, tmp_path / "scores.onnx")
    session = ort_session(chosen.path)
    assert [o.name for o in session.get_outputs()] == ["scores"] == [chosen.output]
    assert session.run(None, {"input": x.numpy()})[0].shape == (8, 3)
    # No field named: the first tensor that is not `loss`.
    default = export_onnx(_Scores().eval(), x, tmp_path / "default.onnx")
    assert default.output == "features"


# --- samples --------------------------------------------------------------------------------------------


def _registered(**kwargs) -> effsearch.Registration:
    reg = effsearch.register(model=lambda: nn.Linear(2, 2), **kwargs)
    _take_pending()
    return reg


def test_dict_samples_give_their_target_and_keep_the_classic_form() -> None:
    items = [{"input_ids": torch.tensor([1, 2]), "label": torch.tensor(i % 2), "score": torch.tensor(0.5)} for i in range(4)]
    train, _ = _registered(data=lambda: (items, items)).data()
    x, y = next(iter(loader(train, batch_size=4)))
    assert set(x) == {"input_ids", "score"} and y.tolist() == [0, 1, 0, 1]
    _, val = _registered(data=lambda: (items, items), target="score").data()
    x, y = next(iter(loader(val, batch_size=4)))
    assert set(x) == {"input_ids", "label"} and y.tolist() == [0.5] * 4
    pairs = [(torch.ones(2), torch.tensor(0))] * 3
    datasets = _registered(data=lambda: (pairs, pairs)).data()
    assert datasets[0] is pairs  # as the factory made them
    with pytest.raises(UserFileError, match="names a field of dict samples"):
        _registered(data=lambda: (pairs, pairs), target="label").data()
    with pytest.raises(UserFileError, match="no target field 'labels' or 'label'"):
        _registered(data=lambda: ([{"input_ids": torch.ones(2)}],) * 2).data()


def test_data_collator_with_padding_batches_every_loader(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(20))]))
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab))
    texts = [" ".join(f"w{j}" for j in range(i % 7 + 1)) for i in range(10)]
    items = [{**tokenizer(t), "label": i % 2} for i, t in enumerate(texts)]
    collate = transformers.DataCollatorWithPadding(tokenizer)
    train, val = _registered(data=lambda: (items, items), collate=collate).data()
    x, y = next(iter(loader(train, batch_size=4)))
    assert set(x) == {"input_ids", "attention_mask", "token_type_ids"}
    assert x["input_ids"].shape == (4, 6) and y.tolist() == [0, 1, 0, 1]  # padded to the batch's longest
    stacked = stack_dataset(val, limit=10)
    assert stacked.inputs["input_ids"].shape == (10, 9) and len(stacked.targets) == 10


def test_latency_times_a_dynamically_padded_batch_at_the_stated_length() -> None:
    from effsearch.inputs import at_length

    sample = {"input_ids": np.ones((1, 9), dtype=np.int64), "attention_mask": np.ones((1, 9), dtype=np.int64)}
    longer = at_length(sample, 12)
    assert longer["input_ids"].shape == (1, 12) and longer["attention_mask"][0, 9:].tolist() == [0, 0, 0]
    assert at_length(sample, 4)["input_ids"].shape == (1, 4)


# --- the user files: probe, prune, export ---------------------------------------------------------------


@pytest.mark.parametrize("path", [BERT, DISTILBERT], ids=["bert", "distilbert"])
def test_probe_accepts_the_model_as_it_is(path: Path) -> None:
    info, (train, val) = probe(load_user_file(path))
    assert info.output_shape == (3,)
    assert "input_ids" in info.inputs and "attention_mask" in info.inputs


def test_an_output_field_the_model_lacks_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "hf_wrong_output.py"
    path.write_text(BERT.read_text().replace('epochs=1)', 'epochs=1, output="scores")'))
    with pytest.raises(UserFileError) as caught:
        probe(load_user_file(path))
    assert "no tensor field 'scores'" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("path", [BERT, DISTILBERT], ids=["bert", "distilbert"])
def test_heads_and_mlp_widths_fall_and_the_export_runs_with_every_input(path: Path, tmp_path: Path) -> None:
    reg = load_user_file(path).registration
    train, val = reg.data()
    torch.manual_seed(0)
    model = reg.model()
    heads, widths = _widths(model)
    report = prune(model, first_batch(train, 2), 0.5, "l2")
    pruned_heads, pruned_widths = _widths(model)
    assert pruned_heads == [h // 2 for h in heads] and report.heads_after == count_heads(model) == sum(pruned_heads)
    assert pruned_widths == [w // 2 for w in widths]
    assert report.params_after < report.params_before

    model.eval()
    batch = first_batch(val, 16)
    exported = export_onnx(model, batch, tmp_path / "model.onnx")
    session = ort_session(exported.path)
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert {i.name for i in session.get_inputs()} == set(batch)  # token_type_ids too, for BERT
    assert all(i.shape[1] == "sequence" for i in session.get_inputs())
    feed = {k: v.numpy() for k, v in batch.items()}
    got = session.run(None, feed)[0]
    with torch.no_grad():
        want = model(**batch).logits.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    # Shorter sequences run too, and the metric on onnxruntime is torch's.
    session.run(None, {k: v[:, :5] for k, v in feed.items()})
    assert ort_metric(exported.path, Streamed(val), default_metric) == pytest.approx(
        torch_metric(model, val, default_metric, torch.device("cpu")), abs=1e-6
    )


def test_a_trained_model_teaches_with_its_logits() -> None:
    from effsearch.train.levers import Mixed, Teacher

    reg = load_user_file(BERT).registration
    train, _ = reg.data()
    x, y = next(iter(loader(train, batch_size=4)))
    model = reg.model().eval()
    # As train/loop.py builds it: the model wrapped so that the teacher answers with one tensor.
    teacher = Teacher.of(Picked(model, reg.output), 0.5, 4.0, torch.device("cpu"))
    loss = teacher.loss(torch.tensor(1.0), pick(model(**x)), x, y, Mixed.for_run("fp32", torch.device("cpu")))
    assert loss.dim() == 0 and torch.isfinite(loss)


# --- end to end -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path", [BERT, DISTILBERT], ids=["bert", "distilbert"])
def test_tune_prunes_and_exports_the_model_as_it_is(path: Path, run_cli, tmp_path: Path) -> None:
    tuned = run_cli("tune", str(path), "--trials", "2", "--epochs", "1")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "Traceback" not in tuned.stderr
    shown = run_cli("pareto", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    front = json.loads(shown.stdout)
    assert front
    train, val = load_user_file(path).registration.data()
    batch = {k: v.numpy() for k, v in first_batch(val, 8).items()}
    for row in front:
        session = ort_session(Path(row["onnx"]))
        assert session.get_outputs()[0].name == "logits"
        assert session.run(None, {i.name: batch[i.name] for i in session.get_inputs()})[0].shape == (len(batch["input_ids"]), 3)
