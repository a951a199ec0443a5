"""The study loop: failures after training keep their reason and count toward the total."""

from __future__ import annotations

import optuna

NAN_METRIC = """
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import effsearch


    def load():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(96, 6, generator=g)
        y = (x[:, 0] > 0).long()
        return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


    def nanmetric(outputs, targets):
        return float("nan")


    effsearch.register(model=lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2)), data=load,
                       name="nan-metric", metric=nanmetric, epochs=1)
"""


def test_a_non_finite_metric_fails_each_run_with_its_reason_and_the_study_ends(write_user_file, run_cli, tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('[precision]\nchoices = ["fp32"]\n')
    result = run_cli("tune", str(write_user_file(NAN_METRIC)), "--trials", "2", "--space", str(space), timeout=180)
    assert result.returncode == 1, result.stderr
    study = optuna.load_study(study_name="nan-metric", storage=f"sqlite:///{tmp_path}/studies/effsearch.db")
    leads = [t for t in study.trials if t.user_attrs.get("lead")]
    assert len(leads) == 2, "every failed run counts toward --trials"
    assert all("not a finite number" in t.user_attrs["fail_reason"] for t in leads)
