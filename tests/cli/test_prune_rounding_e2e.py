"""`tune` records the pruning it built: prune 0.75 of a 32-channel 1-D CNN at a multiple of 16 is not the dense model."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.compress.prune import count_params
from effsearch.userfile import load_user_file

CNN_1D = Path(__file__).resolve().parents[1] / "userfiles" / "cnn_1d.py"


def test_prune_075_at_a_multiple_of_16_is_recorded_as_the_pruning_built(run_cli, tmp_path) -> None:
    user = CNN_1D
    space = tmp_path / "space.toml"
    space.write_text('world_size = 1\nprune_ratio = 0.75\nprecision = "fp32"\n')
    result = run_cli("tune", str(user), "--trials", "1", "--space", str(space), env={"EFFSEARCH_CHANNEL_MULTIPLE": "16"})
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="cnn-1d", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    runs = record.read_all(study, states=(TrialState.COMPLETE,))
    assert len(runs) == 1 and runs[0].params["prune_ratio"] == 0.75  # the baseline: the space fixes its ratio too
    dense = count_params(load_user_file(user).registration.model())
    for t in runs:
        built = 1 - t.metrics["param_count"] / dense
        assert t.record.prune_achieved > 0.5, "16 of 32 channels kept, not the dense 32"
        assert abs(t.record.prune_achieved - built) < 0.01, (t.record.prune_achieved, built)
        assert t.record.untrained["param_count"] == t.metrics["param_count"], "screening measured the graph built"
