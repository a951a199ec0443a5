"""The training levers: distillation from the model as given, and the training precision."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from effsearch.config import TrainConfig
from effsearch.errors import TrialError
from effsearch.run.pipeline import export_trained
from effsearch.space import DISTILL_WEIGHTS, default_space
from effsearch.train.levers import MAX_SKIPPED_FRAC, Mixed, distill_loss
from effsearch.train.loop import RunSpec
from effsearch.train.pool import WorkerPool
from effsearch.userfile import load_data, load_user_file

# A model that "arrives trained": the factory returns the same weights every time (seeded), as a
# checkpoint would, and a learning rate high enough that plain fine-tuning moves far from them.
TRAINED = """\
import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def build():
    torch.manual_seed(1234)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 12, generator=g)
    y = torch.randint(0, 4, (320,), generator=g)  # labels unrelated to the teacher's outputs
    return TensorDataset(x[:256], y[:256]), TensorDataset(x[256:], y[256:])


effsearch.register(model=build, data=load, name="trained-mlp", epochs=4, trained={trained})
"""


def _config(**levers: object) -> TrainConfig:
    return TrainConfig(batch_size=32, lr=3e-2, lr_schedule="constant", clip_norm=0.0, prune_ratio=0.0,
                       world_size=1, epochs=4, seed=0, **levers)


def test_distillation_is_soft_targets_for_logits_and_the_teachers_outputs_otherwise() -> None:
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    labels = torch.randint(0, 5, (16,), generator=g)
    assert distill_loss(teacher, teacher, labels, 4.0).item() == pytest.approx(0.0, abs=1e-6), "no loss when the student agrees"
    expected = F.kl_div(F.log_softmax(student / 4, -1), F.softmax(teacher / 4, -1), reduction="batchmean") * 16
    assert distill_loss(student, teacher, labels, 4.0).item() == pytest.approx(expected.item(), rel=1e-5)
    # A higher temperature softens both distributions; T^2 keeps the term on the task loss's scale.
    assert distill_loss(student, teacher, labels, 1.0).item() != pytest.approx(expected.item(), rel=1e-3)
    targets = torch.randn(16, 5, generator=g)  # a regression: float targets
    assert distill_loss(student, teacher, targets, 4.0).item() == pytest.approx(F.mse_loss(student, teacher).item(), rel=1e-6)


def test_bf16_autocasts_the_forward_pass_and_fp16_needs_a_gpu() -> None:
    lin = torch.nn.Linear(8, 4)
    mixed = Mixed.for_run("bf16", torch.device("cpu"))
    with mixed.autocast():
        out = lin(torch.randn(2, 8))
    assert out.dtype == torch.bfloat16 and lin.weight.dtype == torch.float32, "weights stay fp32"
    with pytest.raises(TrialError, match="fp16 needs a GPU"):
        Mixed.for_run("fp16", torch.device("cpu"))


def test_steps_the_gradient_scaler_skips_are_counted_and_too_many_fail_the_run() -> None:
    # The scaler's logic is the same on CPU (runs offer fp16 on GPUs only): an overflowing loss skips a step.
    mixed = Mixed("fp16", torch.device("cpu"))
    lin = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    steps = 10
    for i in range(steps):
        opt.zero_grad()
        with mixed.autocast():
            loss = lin(torch.randn(8, 4)).float().sum() * (1e38 if i < 2 else 1.0)
        before = lin.weight.detach().clone()
        mixed.backward(loss)
        mixed.step(opt, lin.parameters(), clip_norm=1.0)
        assert torch.equal(before, lin.weight) == (i < 2), f"step {i}: only the overflowing steps are skipped"
    assert mixed.skipped == 2
    assert mixed.skipped > MAX_SKIPPED_FRAC * steps
    with pytest.raises(TrialError, match="skipped 2 of 10 steps"):
        mixed.check(steps)
    mixed.check(100)  # 2 % skipped: the run stands


def test_distillation_is_searched_only_for_a_model_that_arrives_trained() -> None:
    assert default_space(1, trained=True)["distill"].choices == DISTILL_WEIGHTS
    assert default_space(1)["distill"].choices == (0.0,)
    assert default_space(1)["train_precision"].choices == ("fp32", "bf16")
    assert default_space(1, device="cuda")["train_precision"].choices == ("fp32", "bf16", "fp16")
    base = default_space(1, trained=True).baseline()
    assert base["distill"] == 0.0 and base["train_precision"] == "fp32", "the baseline trains plainly"


def _outputs(path: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_the_teacher_is_the_model_as_given_and_holds_the_student_to_it(write_user_file, tmp_path) -> None:
    path = write_user_file(TRAINED.format(trained=True), "trained_mlp.py")
    uf = load_user_file(path)
    _, val = load_data(uf)
    x = val.tensors[0].numpy()
    with torch.no_grad():
        given = uf.registration.model()(val.tensors[0]).numpy()
    moved = {}
    with WorkerPool(path, collective_timeout_s=30) as pool:
        for name, levers in (("plain", {}), ("taught", {"distill": 0.75}), ("taught-bf16", {"distill": 0.75, "train_precision": "bf16"})):
            pool.ensure(1)
            ranks = pool.run(RunSpec(_config(**levers), str(tmp_path / name), finish=export_trained), 1)
            assert np.isfinite(ranks[0].final_loss) and ranks[0].train_s > 0
            moved[name] = float(np.abs(_outputs(str(ranks[0].artifact.export.path), x) - given).mean())
    # Random labels pull the plain run away from the given weights; the teacher's soft targets hold it.
    assert moved["taught"] < 0.5 * moved["plain"], moved
    assert moved["taught-bf16"] < 0.5 * moved["plain"], moved


def test_distillation_without_a_teacher_fails_the_run(write_user_file, tmp_path) -> None:
    path = write_user_file(TRAINED.format(trained=False), "fresh_mlp.py")
    with WorkerPool(path, collective_timeout_s=30) as pool:
        pool.ensure(1)
        with pytest.raises(TrialError, match="needs a model that arrives trained"):
            pool.run(RunSpec(_config(distill=0.5), str(tmp_path / "run"), finish=export_trained), 1)
