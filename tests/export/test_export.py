"""`effsearch export` end to end: pick a trial, verify it on the validation set, write the model and its card."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
from optuna.trial import TrialState

from effsearch import record
from effsearch.constraints import metric_drop
from effsearch.export import FP32_TOLERANCE, TOLERANCE, card_paths, tolerance
from effsearch.results.front import baseline, front_rows, knee, shown_rows

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits_cnn.py"
STUDY = "digits-cnn"



def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=url)


def _card(model: Path) -> dict:
    return json.loads(card_paths(model)[0].read_text())


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_export_by_trial_writes_a_verified_model_and_card(cli, digits_study: tuple[Path, str], tmp_path: Path) -> None:
    cwd, url = digits_study
    study = _study(url)
    row = front_rows(study)[0]
    out = tmp_path / "ship" / "to" / "digits.onnx"  # parents do not exist yet
    r = cli("export", "--study", STUDY, "--storage", url, "--trial", str(row.trial), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and out.read_bytes() == Path(row.onnx).read_bytes()
    json_path, md_path = card_paths(out)
    assert json_path == out.parent / "digits.card.json" and md_path.is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no partial file left

    # The card matches the trial as stored.
    t = study.trials[row.trial]
    card = _card(out)
    assert card["trial"] == row.trial and card["study"] == STUDY
    assert card["precision"] == t.params["precision"]
    assert card["prune_ratio"] == t.params["prune_ratio"]
    lead = study.trials[t.user_attrs.get("run_trial", t.number)]
    assert card["prune_achieved"] == pytest.approx(lead.user_attrs["prune_achieved"])
    # The figures shown: re-measured where the front was (the first latency kept beside it).
    assert card["metrics"] == json.loads(json.dumps(shown_rows(study)[row.trial].metrics))
    assert card["metrics"].get("latency_first_ms", card["metrics"]["latency_ms"]) == t.user_attrs["metrics"]["latency_ms"]
    assert card["params"] == {k: t.params[k] for k in card["params"]}
    assert card["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert card["outputs"][0]["shape"] == ["batch", 10] and card["dynamic_batch"] is True
    meta = study.user_attrs["effsearch"]
    lat = card["measurement"]["latency"]
    assert lat["batch"] == 1 and lat["threads"] == meta["environment"]["latency_threads"]
    assert lat["repeats"] > 0 and lat["warmup"] > 0
    assert card["measurement"]["host"]["host"] == meta["environment"]["host"]
    assert card["measurement"]["energy_source"] == t.user_attrs["metrics"]["energy_source"]
    assert card["versions"]["measured_with"] == meta["environment"]["versions"]
    assert card["versions"]["exported_with"]["onnxruntime"] == ort.__version__
    v = card["verification"]
    assert v["samples"] == 360 and v["tolerance"] == tolerance(row.precision)
    assert abs(v["value"] - t.user_attrs["metrics"]["accuracy"]) <= v["tolerance"]
    md = md_path.read_text()
    assert f"trial {row.trial}" in md and "(estimate)" in md and "batch" in md

    # The exported model runs in onnxruntime with a dynamic batch, and gives the study's outputs.
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(row.onnx, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    for n in (1, 5):
        (y,) = sess.run(None, {"input": x[:n]})
        assert y.shape == (n, 10)
        np.testing.assert_array_equal(y, ref.run(None, {"input": x[:n]})[0])


def test_export_by_knee(cli, digits_study: tuple[Path, str], tmp_path: Path) -> None:
    cwd, url = digits_study
    r = cli("export", "--pick", "knee", "-o", "knee.onnx", "--storage", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _card(tmp_path / "knee.onnx")["trial"] == knee(_study(url)).trial


def test_export_by_constraints_picks_the_best_metric_within_them(cli, digits_study: tuple[Path, str]) -> None:
    cwd, url = digits_study
    study = _study(url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    shown = shown_rows(study)  # export decides limits by the figures it shows (re-measured where in force)
    lats = sorted(shown[t.number].metrics["latency_ms"] for t in complete)
    limit = lats[len(lats) // 2]  # about half the trials are within it
    within = [t for t in complete if shown[t.number].metrics["latency_ms"] <= limit]
    best = max(t.user_attrs["metrics"]["accuracy"] for t in within)
    r = cli("export", "--max-latency-ms", repr(limit), "-o", "fast/model.onnx", cwd=cwd)
    assert r.returncode == 0, r.stderr
    card = _card(cwd / "fast" / "model.onnx")
    assert card["metrics"]["latency_ms"] <= limit
    assert card["metrics"]["accuracy"] == best

    # Two limits together, including the drop from the dense baseline.
    base = baseline(study).metrics["accuracy"]
    drop = max(metric_drop(t.user_attrs["metrics"]["accuracy"], base, "maximize") for t in within)
    r = cli("export", "--max-latency-ms", repr(limit), "--max-metric-drop", repr(drop), "--max-size-mb", "100",
            "-o", "fast/model.onnx", "--force", cwd=cwd)
    assert r.returncode == 0, r.stderr
    card = _card(cwd / "fast" / "model.onnx")
    assert card["metrics"]["accuracy"] == best and card["metric"]["drop_from_baseline"] <= drop


def test_impossible_constraint_lists_the_closest_trials(cli, digits_study: tuple[Path, str], tmp_path: Path) -> None:
    cwd, url = digits_study
    r = cli("export", "--storage", url, "--max-latency-ms", "0.000001", "-o", "x.onnx", cwd=tmp_path)
    assert r.returncode == 1
    line = _one_line_error(r)
    assert "no trial meets latency <= 1e-06 ms" in line and "closest: trial " in line
    study = _study(url)
    # A re-measured figure decides a limit: the latency effsearch shows, re-measured where it was.
    timed = record.read_remeasured(study)["trials"]

    def latency(t) -> float:
        return timed[str(t.number)]["p50_ms"] if str(t.number) in timed else t.user_attrs["metrics"]["latency_ms"]

    fastest = min((t for t in study.trials if t.state == TrialState.COMPLETE), key=latency)
    assert f"closest: trial {fastest.number} " in line
    assert not (tmp_path / "x.onnx").exists()


def test_usage_errors(cli, digits_study: tuple[Path, str], tmp_path: Path) -> None:
    cwd, url = digits_study
    for args in ([], ["--trial", "1", "--pick", "knee"], ["--pick", "best"], ["--trial", "2", "--max-size-mb", "1"]):
        r = cli("export", "--storage", url, *args, "-o", "x.onnx", cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        _one_line_error(r)
    r = cli("export", "--storage", url, "--trial", "999", "-o", "x.onnx", cwd=tmp_path)
    assert r.returncode == 1 and "no trial 999" in _one_line_error(r)


def test_refuses_to_overwrite_without_force(cli, digits_study: tuple[Path, str], tmp_path: Path) -> None:
    cwd, url = digits_study
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep me")
    r = cli("export", "--storage", url, "--pick", "knee", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 1
    line = _one_line_error(r)
    assert str(out) in line and "--force" in line
    assert out.read_bytes() == b"keep me" and not card_paths(out)[0].exists()
    r = cli("export", "--storage", url, "--pick", "knee", "-o", str(out), "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != b"keep me" and card_paths(out)[0].is_file()


def _copy_storage(cwd: Path, dst: Path) -> str:
    """A copy of the study's storage (the artifacts stay where the study recorded them)."""
    shutil.copyfile(cwd / "studies" / "effsearch.db", dst)
    return f"sqlite:///{dst}"


def test_refuses_an_artifact_outside_the_study_directory(cli, digits_study: tuple[Path, str], tmp_path: Path) -> None:
    cwd, url = digits_study
    row = front_rows(_study(url))[0]
    planted = tmp_path / "elsewhere" / "model.onnx"
    planted.parent.mkdir()
    shutil.copyfile(row.onnx, planted)  # a valid model, just not the study's
    url2 = _copy_storage(cwd, tmp_path / "edited.db")
    with sqlite3.connect(tmp_path / "edited.db") as db:
        n = db.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE key = 'onnx' AND trial_id = "
            "(SELECT trial_id FROM trials WHERE number = ?)",
            (json.dumps(str(planted)), row.trial),
        ).rowcount
    assert n == 1
    r = cli("export", "--storage", url2, "--trial", str(row.trial), "-o", "out.onnx", cwd=tmp_path)
    assert r.returncode == 1
    line = _one_line_error(r)
    assert "outside the study's artifact directory" in line and str(planted) in line
    assert not (tmp_path / "out.onnx").exists()


def test_verification_catches_changed_data(cli, digits_study: tuple[Path, str], tmp_path: Path) -> None:
    cwd, url = digits_study
    changed = tmp_path / "digits_other_split.py"
    changed.write_text(DIGITS.read_text().replace("random_state=0", "random_state=1"))
    row = front_rows(_study(url))[0]
    r = cli("export", "--storage", url, "--trial", str(row.trial), "--file", str(changed), "-o", "m.onnx", cwd=tmp_path)
    assert r.returncode == 1
    line = _one_line_error(r)
    assert "not the recorded" in line and "Nothing was written" in line
    assert not (tmp_path / "m.onnx").exists() and list(tmp_path.iterdir()) == [changed]


def test_tolerances() -> None:
    assert tolerance("fp32") == FP32_TOLERANCE == 1e-6
    assert tolerance("int8_static") == tolerance("fp16") == TOLERANCE == 1e-4


def test_a_card_that_cannot_be_written_leaves_no_model_behind(digits_study: tuple[Path, str], tmp_path: Path, monkeypatch) -> None:
    import effsearch.export as export

    cwd, url = digits_study
    study = _study(url)
    row = front_rows(study)[0]

    def broken(card: dict) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(export, "card_markdown", broken)
    out = tmp_path / "ship" / "model.onnx"
    with pytest.raises(OSError, match="disk full"):
        export.export_trial(study, row, out, url)
    assert sorted(p.name for p in out.parent.iterdir()) == [], "neither the model nor a card, nor a partial file"

