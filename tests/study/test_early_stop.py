"""Multi-objective early stopping end to end: the real CLI on a space with learning rates that plateau."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.report.html import render_html
from effsearch.report.info import build_report
from effsearch.train.stopping import FIRST_STOP_EPOCH

USER_FILE = Path(__file__).resolve().parents[1] / "userfiles" / "plateau_mlp.py"
# One graph (no pruning, fp32 only) and one schedule: the good learning rate trains like the baseline, and
# AdamW at 1.0 or 3.0 leaves the loss near log(10) with accuracy near chance, finite.
SPACE = """\
world_size = 1
batch_size = 64
prune_ratio = 0.0
lr_schedule = "constant"
clip_norm = 0.0

[precision]
choices = ["fp32"]

[lr]
choices = [0.01, 1.0, 3.0]
"""


def _study(tmp_path: Path) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}"
    return optuna.load_study(study_name="plateau-mlp", storage=url), url


def test_runs_whose_loss_plateaus_are_stopped_in_their_first_epochs_and_good_ones_complete(run_cli, tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    proc = run_cli("tune", str(USER_FILE), "--trials", "8", "--space", str(space), "--objectives", "accuracy,latency_ms", timeout=600)
    assert proc.returncode == 0, proc.stderr
    study, url = _study(tmp_path)
    leads = [t for t in record.read_all(study) if t.lead]
    assert sum(t.is_training_run for t in leads) == 8  # stopped runs count toward --trials
    bad = [t for t in leads if t.params["lr"] >= 1.0]
    good = [t for t in leads if t.params["lr"] < 1.0]
    assert bad and good, [t.params["lr"] for t in leads]
    for t in good:
        assert t.state == TrialState.COMPLETE, (t.number, t.record.stopped)
        assert [p["epoch"] for p in t.curve] == [1, 2, 3, 4]
        assert t.curve[-1]["metric"] > 0.8
    for t in bad:
        assert t.state == TrialState.PRUNED and t.stopped, (t.number, t.state)
        assert f"after epoch {FIRST_STOP_EPOCH} of 4" in t.record.stopped
        assert len(t.curve) == FIRST_STOP_EPOCH and t.curve[-1]["metric"] < 0.3
        # What it spent is kept, not extrapolated; it exported nothing.
        assert t.metrics["train_s"] == t.record.timing["train_s"] > 0
        assert not list((Path(record.read_meta(study).artifacts) / f"run-{t.number}").glob("*.onnx"))
    assert "run(s) stopped early" in proc.stderr
    # Each stopped run is one short line above the progress view; its whole reason is in its record.
    said = [line for line in proc.stderr.splitlines() if "stopped after epoch" in line]
    assert len(said) == len(bad) and all(len(line) <= 100 for line in said), proc.stderr
    assert "every precision point is dominated" not in " ".join(proc.stderr.split()), proc.stderr

    # A stopped run frees its ranks at once: the next trial is asked within a second.
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    order = sorted(frozen.values(), key=lambda t: t.datetime_start)
    gaps = []
    for t in bad:
        after = [n for n in order if n.datetime_start > frozen[t.number].datetime_complete]
        if after:
            gaps.append((after[0].datetime_start - frozen[t.number].datetime_complete).total_seconds())
        assert "export_s" not in t.record.timing and "export_s" in good[0].record.timing
    assert gaps and max(gaps) < 1.0, gaps

    # The report draws every run's curve, the stopped ones marked.
    report = build_report(study, url)
    assert {c.trial for c in report.curves if c.stopped} == {t.number for t in bad}
    page = render_html(report)
    assert 'id="curves"' in page and "stopped early" in page


def test_no_early_stop_trains_every_run_in_full(run_cli, tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(SPACE.replace("choices = [0.01, 1.0, 3.0]", "choices = [1.0, 3.0]"))
    proc = run_cli("tune", str(USER_FILE), "--trials", "3", "--space", str(space), "--objectives", "accuracy,latency_ms",
                   "--no-early-stop", timeout=600)
    assert proc.returncode == 0, proc.stderr
    study, _ = _study(tmp_path)
    leads = [t for t in record.read_all(study) if t.lead]
    assert len(leads) == 3 and all(t.state == TrialState.COMPLETE and len(t.curve) == 4 for t in leads)


def test_an_objective_known_only_after_training_turns_stopping_off_with_one_line(run_cli, tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(SPACE.replace("choices = [0.01, 1.0, 3.0]", "choices = [1.0, 3.0]"))
    proc = run_cli("tune", str(USER_FILE), "--trials", "3", "--space", str(space), "--objectives", "accuracy,train_s", timeout=600)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stderr.split())  # the log wraps long lines
    assert text.count("early stopping is off") == 1, proc.stderr
    assert "objective 'train_s' is neither the metric" in text
    study, _ = _study(tmp_path)
    assert all(t.state == TrialState.COMPLETE for t in record.read_all(study) if t.lead)
