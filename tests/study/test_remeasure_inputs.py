"""`effsearch remeasure` times what `tune` timed: the study's latency target and its validation samples."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

from effsearch import record
from effsearch.measure.blocks import Timed
from effsearch.onnx_export import export_onnx
from effsearch.userfile import load_user_file

TINY = Path(__file__).resolve().parents[1] / "userfiles" / "tiny_mlp.py"
BATCH = 3


def _study(tmp_path: Path) -> tuple[str, Path]:
    """A study of tiny_mlp (a copy of the file) timed at batch 3 on the CPU target, with two trials on file."""
    user_file = tmp_path / "tiny_mlp.py"
    shutil.copy(TINY, user_file)
    uf = load_user_file(user_file)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    study = optuna.create_study(study_name="tiny", storage=url, directions=["maximize", "minimize"])
    study.set_metric_names([uf.metric_key, "latency_ms"])
    record.write_meta(study, record.StudyMeta.from_dict({
        "user_file": str(user_file), "user_file_sha256": uf.sha256, "metric_key": uf.metric_key, "metric_direction": "maximize",
        "objectives": [uf.metric_key, "latency_ms"], "latency_target": "cpu",
        "latency": {"threads": 1, "batch": BATCH, "sequence_length": None},
        # What a study records of its input; a re-measurement that made its own would build it from these.
        "inputs": {"input": {"shape": [30], "dtype": "float32"}}, "input_shape": [30], "input_dtype": "float32",
    }))
    torch.manual_seed(0)
    for n, acc in enumerate((0.9, 0.8)):
        path = export_onnx(uf.registration.model().eval(), torch.randn(4, 30), tmp_path / f"{n}.onnx").path
        metrics = {uf.metric_key: acc, "latency_ms": 0.1 - 0.05 * n, "size_bytes": path.stat().st_size}
        study.add_trial(create_trial(
            params={"precision": "fp32"}, distributions={"precision": CategoricalDistribution(["fp32"])},
            values=[acc, metrics["latency_ms"]],
            user_attrs=record.TrialRecord(lead=True, baseline=n == 0, metrics=metrics, onnx=str(path)).user_attrs(),
        ))
    return url, user_file


def _remeasure(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """`effsearch remeasure ARGS`, in this process; its exit code."""
    from effsearch.cli import main

    monkeypatch.setattr(sys, "argv", ["effsearch", "remeasure", *args])
    with pytest.raises(SystemExit) as done:
        main()
    return int(done.value.code or 0)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace the interleaved timing with one that records what it was given and returns fixed figures."""
    import effsearch.study.remeasure as rm

    calls: list[dict] = []

    def timed(paths, reference, sample, *, threads=1, providers=None, **_):
        calls.append({"sample": sample, "providers": providers, "threads": threads})
        return {n: Timed(0.01, 0.011, 0.009, 0.012, 1.0, 0.9, 1.1, 0.01, 5, 100) for n in paths}

    monkeypatch.setattr(rm, "measure_blocks", timed)
    return calls


def test_remeasure_feeds_the_validation_samples_on_the_study_target(tmp_path, monkeypatch, capsys) -> None:
    url, user_file = _study(tmp_path)
    calls = _spy(monkeypatch)
    assert _remeasure(monkeypatch, "--storage", url) == 0, capsys.readouterr().err
    (call,) = calls
    _, val = load_user_file(user_file).registration.data()
    expected = torch.stack([val[i][0] for i in range(BATCH)]).numpy()
    # The first validation samples at the study's latency batch, not zeros of the recorded shape.
    assert np.array_equal(np.asarray(call["sample"]), expected)
    # On the study's latency target (the CPU target's providers), not onnxruntime's default.
    assert call["providers"] == ["CPUExecutionProvider"]
    entry = record.read_remeasured(optuna.load_study(study_name="tiny", storage=url))
    assert entry is not None and entry["providers"] == ["CPUExecutionProvider"]


def test_remeasure_refuses_in_one_line_when_the_user_file_is_gone(tmp_path, monkeypatch, capsys) -> None:
    url, user_file = _study(tmp_path)
    calls = _spy(monkeypatch)
    moved = tmp_path / "moved" / "tiny_mlp.py"
    moved.parent.mkdir()
    user_file.rename(moved)
    assert _remeasure(monkeypatch, "--storage", url) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(user_file) in lines[0] and "--file" in lines[0], lines
    assert calls == [], "nothing was timed"
    # The fix the line names works: the samples come from the file given.
    assert _remeasure(monkeypatch, "--storage", url, "--file", str(moved)) == 0, capsys.readouterr().err
    assert len(calls) == 1 and np.asarray(calls[0]["sample"]).any()
