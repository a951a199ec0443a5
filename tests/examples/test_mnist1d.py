"""The MNIST-1D examples: the study's split, the held-out test sequences, the model's shapes, one real study."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from effsearch.userfile import load_user_file, probe

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _rows(dataset) -> set[bytes]:
    return {x.numpy().tobytes() for x in dataset.tensors[0]}


@pytest.mark.parametrize(("name", "shape"), [("mnist1d_cnn.py", (1, 40)), ("mnist1d_mlp.py", (40,))])
def test_the_study_sees_3000_training_and_1000_validation_sequences_and_never_the_test_ones(name: str, shape: tuple[int, ...]) -> None:
    uf = load_user_file(EXAMPLES / name)
    info, (train, val) = probe(uf)
    assert (info.n_train, info.n_val) == (3000, 1000)
    assert info.input_shape == shape and info.output_shape == (10,)
    # Stratified: every class holds about a tenth of the validation sequences.
    counts = np.bincount(val.tensors[1].numpy(), minlength=10)
    assert counts.min() >= 90, counts
    # test_data() is the example module's own function, outside the registration.
    test = sys.modules[uf.registration.model.__module__].test_data()
    assert len(test) == 1000 and tuple(test.tensors[0].shape[1:]) == shape
    seen = _rows(train) | _rows(val)
    assert len(seen) == 4000  # training and validation do not overlap
    leaked = len(_rows(test) & seen)
    assert leaked == 0, f"{leaked} of the 1,000 test sequences are in the study's training or validation data"
    model = uf.registration.model().eval()
    with torch.no_grad():
        assert model(test.tensors[0][:8]).shape == (8, 10)


def test_a_one_epoch_study_of_the_cnn_records_its_baseline(run_cli, tmp_path: Path) -> None:
    r = run_cli("tune", str(EXAMPLES / "mnist1d_cnn.py"), "--trials", "1", "--epochs", "1", timeout=120)
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name="mnist1d-cnn", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    values = [t.values[0] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    # The dense fp32 baseline and its precisions: one epoch already learns MNIST-1D well above chance (0.1).
    assert values and max(values) > 0.3, values


def test_the_trained_cnn_trains_once_caches_its_checkpoint_and_loads_it_after(tmp_path: Path, monkeypatch) -> None:
    uf = load_user_file(EXAMPLES / "mnist1d_cnn_trained.py")
    assert uf.registration.trained
    module = sys.modules[uf.registration.model.__module__]
    monkeypatch.setattr(module, "CHECKPOINT", tmp_path / "checkpoints" / "mnist1d_cnn.pt")
    monkeypatch.setattr(module, "EPOCHS", 1)  # the shipped 8 take 15 s; one shows the same path
    _, (_, val) = probe(uf)
    first = uf.registration.model()
    assert module.CHECKPOINT.exists() and not first.training
    with torch.no_grad():
        accuracy = (first(val.tensors[0]).argmax(1) == val.tensors[1]).float().mean().item()
    assert accuracy > 0.3, accuracy  # trained: chance is 0.1
    # Later builds load the checkpoint instead of training again: the same weights, the same network as the CNN example's.
    monkeypatch.setattr(module, "_train_once", lambda model: pytest.fail("trained again although the checkpoint exists"))
    again = uf.registration.model()
    cnn = load_user_file(EXAMPLES / "mnist1d_cnn.py").registration.model()
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in cnn.state_dict().items()}
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
