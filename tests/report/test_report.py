"""The study report: hypervolume numbers, report data, and the HTML page (`effsearch dashboard`)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from itertools import product
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from effsearch.results import hypervolume as hv
from effsearch.results.front import front_rows, knee
from effsearch.report.html import render_html
from effsearch.report.info import MIN_IMPORTANCE_RUNS, build_report
from effsearch.results.front import export_command
from effsearch.storage import display_url

STUDY = "digits-cnn"



# -- hypervolume --------------------------------------------------------------------------------


def test_hypervolume_by_hand() -> None:
    assert hv.hypervolume([[1, 2], [2, 1]], [3, 3]) == pytest.approx(3.0)
    assert hv.hypervolume([[0, 0, 0]], [1, 2, 3]) == pytest.approx(6.0)
    # Two boxes of a 3-D staircase overlapping in a 1x1x1 cube: 2*2*1 + 1*1*2 ... by inclusion-exclusion.
    a, b, ref = np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([2, 2, 2])
    va, vb = np.prod(ref - a), np.prod(ref - b)
    overlap = np.prod(ref - np.maximum(a, b))
    assert hv.hypervolume([a, b], ref) == pytest.approx(va + vb - overlap)
    # Points outside the reference add nothing; a dominated point adds nothing.
    assert hv.hypervolume([[5, 5]], [3, 3]) == 0.0
    assert hv.hypervolume([[1, 1], [2, 2]], [3, 3]) == pytest.approx(4.0)


def test_hypervolume_agrees_with_optuna() -> None:
    private = pytest.importorskip("optuna._hypervolume")
    rng = np.random.default_rng(0)
    for d, n in product((2, 3, 4), (1, 7, 25)):
        pts = rng.random((n, d))
        ref = np.full(d, hv.REFERENCE)
        assert hv.hypervolume(pts, ref) == pytest.approx(private.compute_hypervolume(pts, ref), rel=1e-9, abs=1e-12)


def test_history_grows_and_is_bounded() -> None:
    rng = np.random.default_rng(1)
    values = rng.random((30, 3))
    series = hv.history(values, ("maximize", "minimize", "minimize"))
    assert len(series) == 30
    assert all(b >= a - 1e-12 for a, b in zip(series, series[1:]))
    assert 0 < series[-1] <= hv.REFERENCE**3
    scaled, _, _ = hv.normalise(values, ("maximize", "minimize", "minimize"))
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert series[-1] == pytest.approx(hv.hypervolume(scaled, [hv.REFERENCE] * 3))


# -- small and odd studies, made directly in storage ----------------------------------------------


def _study(tmp_path: Path, complete: int, failed: int = 0, baseline: bool = True) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 'small.db'}"
    study = optuna.create_study(study_name="small", storage=url, directions=["maximize", "minimize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms", "energy_j"])
    study.set_user_attr("effsearch", {
        "metric_key": "accuracy", "metric_direction": "maximize", "objectives": ["accuracy", "latency_ms", "energy_j"],
        "energy_source": "estimate", "artifacts": str(tmp_path / "small"), "user_file": "/nowhere/model.py",
    })
    dists = {
        "batch_size": CategoricalDistribution([16, 32, 64]), "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "lr_schedule": CategoricalDistribution(["constant", "cosine"]), "clip_norm": CategoricalDistribution([0.0, 1.0]),
        "prune_ratio": FloatDistribution(0.0, 0.75), "precision": CategoricalDistribution(["fp32", "int8_static"]),
        "world_size": IntDistribution(1, 2),
    }
    for i in range(complete):
        params = {"batch_size": 32, "lr": 1e-3 * (i + 1), "lr_schedule": "cosine", "clip_norm": 0.0,
                  "prune_ratio": 0.1 * i, "precision": "fp32" if i % 2 == 0 else "int8_static", "world_size": 1}
        metrics = {"accuracy": 0.9 - 0.05 * i, "latency_ms": 0.05 - 0.01 * i, "energy_j": 10.0 + i, "size_bytes": 1000 * (5 - i),
                   "energy_source": "estimate"}
        attrs = {"run": i + 1, "metrics": metrics, "onnx": str(tmp_path / "small" / f"trial-{i}" / "model.onnx"),
                 "baseline": baseline and i == 0}
        study.add_trial(create_trial(params=params, distributions=dists, values=[metrics["accuracy"], metrics["latency_ms"], metrics["energy_j"]],
                                     user_attrs=attrs))
    for i in range(failed):
        study.add_trial(create_trial(state=TrialState.FAIL, params={"precision": "int8_static"},
                                     distributions={"precision": dists["precision"]},
                                     user_attrs={"run": complete + i + 1, "fail_reason": f"ONNX export failed: reason {i}"}))
    return study, url


@pytest.mark.parametrize("complete,failed", [(0, 0), (0, 2), (1, 0), (2, 1), (3, 0)])
def test_small_studies_render_with_notes(tmp_path: Path, complete: int, failed: int) -> None:
    study, url = _study(tmp_path, complete, failed)
    report = build_report(study, url)
    assert len(report.front) == len(front_rows(study))
    assert len(report.failed) == failed
    assert report.hypervolume.note is not None if complete < 2 else report.hypervolume.note is None
    # Importance always needs more runs than these studies have: every objective says so.
    assert all(i.importances is None and str(MIN_IMPORTANCE_RUNS) in i.note for i in report.importances)
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert "parameter importance needs" in page
    if complete == 0:
        assert "no front" in page
    if complete < 2:
        assert "the hypervolume needs at least 2 completed trials" in page
    for n in range(failed):
        assert f"ONNX export failed: reason {n}" in page
    rows = re.findall(r'<tr class="front-row" data-trial="(\d+)"', page)
    assert sorted(map(int, rows)) == sorted(e.row.trial for e in report.front)


def test_no_baseline_turns_the_drop_control_off(tmp_path: Path) -> None:
    study, url = _study(tmp_path, 3, baseline=False)
    report = build_report(study, url)
    assert report.baseline is None and all(e.drop is None for e in report.front)
    assert any("baseline did not complete" in n for n in report.notes)
    page = render_html(report)
    assert 'id="max-drop"' not in page and 'id="max-latency"' in page


def test_front_data_of_a_small_study(tmp_path: Path) -> None:
    study, url = _study(tmp_path, 3, 1)
    report = build_report(study, url)
    states = {p.trial: p.state for p in report.points}
    front = {r.trial for r in front_rows(study)}
    assert {t for t, s in states.items() if s == "front"} == front
    assert list(states.values()).count("failed") == 1
    assert report.pairs == (("accuracy", "latency_ms"), ("accuracy", "energy_j"), ("latency_ms", "energy_j"))
    base = next(e for e in report.front if e.row.baseline)
    assert base.drop == 0.0
    assert [e.knee for e in report.front].count(True) == 1
    assert next(e for e in report.front if e.knee).row.trial == knee(study).trial


def test_export_command_redacts_passwords() -> None:
    url = "postgresql+psycopg://ana:s3cret@db.example:5432/effsearch"
    cmd = export_command("my study", url, 4)
    assert "s3cret" not in cmd
    assert cmd == "effsearch export --study 'my study' --storage 'postgresql://ana:***@db.example:5432/effsearch' --trial 4 -o model.onnx"
    assert display_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


# -- a real study --------------------------------------------------------------------------------


def test_report_data_of_a_real_study(digits_study: tuple[Path, str]) -> None:
    cwd, url = digits_study
    study = optuna.load_study(study_name=STUDY, storage=url)
    report = build_report(study, url)
    trials = study.get_trials(deepcopy=False)
    assert len(report.points) == len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL)])
    front = [r.trial for r in front_rows(study)]
    assert [e.row.trial for e in report.front] == front
    for e in report.front:
        assert e.command == f"effsearch export --study {STUDY} --storage {url} --trial {e.row.trial} -o model.onnx"
    assert report.baseline is not None and report.baseline.baseline
    assert report.baseline.params["precision"] == "fp32" and report.baseline.params["prune_ratio"] == 0.0
    h = report.hypervolume
    assert len(h.trials) == report.complete and h.reference == hv.REFERENCE
    assert 0 < h.values[-1] <= hv.REFERENCE ** len(report.info.objectives)
    names = [d.name for d in report.parallel]
    assert names[:7] == ["batch_size", "lr", "lr_schedule", "clip_norm", "prune_ratio", "precision", "world_size"]
    assert names[7:] == list(report.info.objectives)


def test_dashboard_writes_the_default_report(cli, digits_study: tuple[Path, str]) -> None:
    cwd, url = digits_study
    r = cli("dashboard", cwd=cwd)
    assert r.returncode == 0, r.stderr
    page_path = cwd / "studies" / f"{STUDY}-report.html"
    assert page_path.is_file() and str(page_path) in r.stdout
    page = page_path.read_text()
    # Self-contained: plotly.js inline, no script or stylesheet fetched from anywhere.
    assert "plotly.js" in page[:2_000_000] and not re.search(r'<script[^>]+src=|<link[^>]+stylesheet', page)
    assert "energy_j (J) (estimate)" in page
    study = optuna.load_study(study_name=STUDY, storage=url)
    for row in front_rows(study):
        assert f"--trial {row.trial} -o model.onnx" in page
    # Whether the baseline is on the front turns on measured latency (its fp16 sibling ties it on accuracy
    # and energy), so effsearch's front (re-measured figures, as the page shows) decides the statement.
    baseline = next(t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get("baseline"))
    if baseline in {r.trial for r in front_rows(study)}:
        assert 'class="tag baseline"' in page and "is the dense baseline, on the Pareto front" in page
    else:
        assert 'class="tag baseline"' not in page and "is the dense baseline, not on the Pareto front" in page
    assert 'id="max-latency"' in page and 'id="max-drop"' in page


def test_dashboard_out_option_and_errors(cli, digits_study: tuple[Path, str], tmp_path: Path) -> None:
    cwd, url = digits_study
    target = tmp_path / "deep" / "er" / "r.html"
    r = cli("dashboard", "--storage", url, "--study", STUDY, "-o", str(target), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert target.is_file()
    r = cli("dashboard", "--storage", url, "--study", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "nope" in r.stderr and STUDY in r.stderr
    r = cli("dashboard", "--serve", "-o", "x.html", cwd=cwd)
    assert r.returncode == 2
    r = cli("dashboard", "--serve", "--host", "0.0.0.0", cwd=cwd)
    assert r.returncode == 2
    assert "no authentication" in r.stderr and "--allow-remote" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_binds_loopback(digits_study: tuple[Path, str]) -> None:
    pytest.importorskip("optuna_dashboard")
    cwd, url = digits_study
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "effsearch", "dashboard", "--serve", "--port", str(port)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as resp:
                    body = resp.read().decode()
                    break
            except OSError:
                time.sleep(0.3)
        assert body is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert STUDY in body
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_failure_reason_with_brackets_is_printed_as_text_not_markup() -> None:
    from rich.console import Console

    from effsearch.report.table import failures_table

    reason = "rank 1: RuntimeError: [/__w/pytorch/third_party/gloo/unbound_buffer.cc:129] Timed out"
    console = Console(record=True, width=200)
    console.print(failures_table([(3, 2, {"precision": "fp32"}, reason)]))
    assert reason in console.export_text()
