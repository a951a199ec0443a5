"""The front table fits the terminal it is printed in: the columns a user decides on always, the others as
the width allows, every one with `wide`; a unit its cells share is said once, in its header."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import create_trial
from rich.console import Console
from rich.table import Table

from effsearch import record
from effsearch.figures import ENERGY, FLOPS, LATENCY, PARAMS, SIZE
from effsearch.report.table import front_table
from effsearch.results.front import front_rows, knee, study_info

OBJECTIVES = ("accuracy", LATENCY.key, ENERGY.key)  # the default study's
DISTS = {
    "prune_ratio": FloatDistribution(0.0, 0.75),
    "precision": CategoricalDistribution(["fp32", "fp16", "int8_dynamic", "int8_static"]),
    "batch_size": CategoricalDistribution([32, 64, 128]),
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "lr_schedule": CategoricalDistribution(["constant", "cosine", "onecycle"]),
    "clip_norm": FloatDistribution(0.0, 5.0),
    "world_size": IntDistribution(1, 2),
}
# Three runs of two precisions each, all on the front: (run, its lead trial, precision, pruned, accuracy, ms, J).
TRIALS = (
    (1, 0, "fp32", 0.0, 0.9721, 0.2134, 812.3), (1, 0, "int8_dynamic", 0.0, 0.9700, 0.1534, 812.3),
    (2, 2, "fp32", 0.47, 0.9650, 0.1234, 640.1), (2, 2, "int8_static", 0.47, 0.9612, 0.0734, 640.1),
    (3, 4, "fp16", 0.62, 0.9402, 0.1012, 455.5), (3, 4, "int8_static", 0.62, 0.9301, 0.0512, 455.5),
)
# Every column, in order: the training set-up, the metric, the fixed figures with the latency's two ratios.
EVERY = 17


def _study(storage: str | None = None) -> optuna.Study:
    """A default study's front as tune records it (no training): accuracy, latency and estimated energy."""
    study = optuna.create_study(study_name="widths", storage=storage, directions=["maximize", "minimize", "minimize"])
    study.set_metric_names(list(OBJECTIVES))
    record.write_meta(study, record.StudyMeta(
        metric=record.Metric(key="accuracy", direction="maximize"), objectives=OBJECTIVES,
        energy=record.Energy(source="estimate"), latency=record.Latency(target="cpu", threads=1, batch=1),
    ))
    for n, (run, lead, precision, prune, acc, ms, joules) in enumerate(TRIALS):
        metrics = {
            "accuracy": acc, LATENCY.key: ms, ENERGY.key: joules, FLOPS.key: 1.23e7 * (1 - prune),
            PARAMS.key: 103_000 * (1 - prune), SIZE.key: int(412_000 * (1 - prune) / (4 if "int8" in precision else 1)),
        }
        attrs = record.TrialRecord(
            lead=n == lead, baseline=n == 0, run=run, run_trial=lead, onnx=f"/x/{n}.onnx", metrics=metrics,
            prune_achieved=prune if n == lead else None,
            untrained={LATENCY.key: ms, "latency_ratio": 0.61, "protocol": {"batch": 1}} if n == lead else None,
        ).user_attrs()
        params = {"prune_ratio": prune, "precision": precision, "batch_size": 64, "lr": 0.0123,
                  "lr_schedule": "onecycle", "clip_norm": 1.0, "world_size": 2}
        study.add_trial(create_trial(params=params, distributions=DISTS, values=[acc, ms, joules], user_attrs=attrs))
    return study


def _table(**kw) -> Table:
    study = _study()
    rows = front_rows(study)
    assert len(rows) == len(TRIALS)
    k = knee(study, rows)
    return front_table(study_info(study), rows, k.trial if k else None, **kw)


def _text(table: Table, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def _heads(table: Table) -> list[str]:
    return [str(c.header) for c in table.columns]


def _assert_one_line_a_row(text: str, width: int) -> None:
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    assert "…" not in text, text  # no cell or header cut short
    at = [[i for i, line in enumerate(lines) if f"{acc:.4f}" in line] for *_, acc, _, _ in TRIALS]
    assert all(len(found) == 1 for found in at), text
    first, last = at[0][0], at[-1][0]
    assert [i for (i,) in at] == list(range(first, last + 1)), f"a row wraps onto a line of its own:\n{text}"
    assert lines[first - 1].lstrip()[0] in "┡─", text  # the header's rule, then the rows
    assert last + 1 == len(lines) or lines[last + 1].startswith("└"), f"the last row wraps:\n{text}"


@pytest.mark.parametrize("width", [80, 160])
def test_every_row_is_one_line_and_no_cell_is_cut(width: int) -> None:
    text = _text(_table(width=width), width)
    _assert_one_line_a_row(text, width)
    # Without a width the table takes the width of the console it is printed in.
    assert _text(_table(), width) == text


def test_the_columns_a_user_decides_on_are_always_there_and_the_rest_as_the_width_allows() -> None:
    narrow, wide = _heads(_table(width=80)), _heads(_table(width=160))
    for heads in (narrow, wide):
        assert heads[:3] == ["trial", "precision", "prune"] or heads[:4] == ["trial", "run", "precision", "prune"]
        assert "accuracy" in heads and "× dense" in heads
        for figure in (LATENCY, ENERGY, SIZE):  # the objectives' and the size's
            assert any(h.startswith(str(figure.column)) for h in heads), (figure.key, heads)
    assert len(wide) > len(narrow) and set(narrow) <= set(wide)
    assert len(wide) < EVERY  # 160 columns do not hold every column of this front
    assert "clip" not in wide, "the least used column goes first"


def test_wide_shows_every_column_and_lets_them_wrap() -> None:
    every = _heads(_table(wide=True))
    assert len(every) == EVERY and every[:2] == ["trial", "run"] and "clip" in every and "untrained ×" in every
    assert _heads(_table()) == every  # unprinted, the table holds every column
    assert "…" in _text(_table(wide=True), 80)  # what does not fit is rich's to wrap and cut, as before


def test_a_unit_the_cells_share_is_in_the_header_once() -> None:
    heads = _heads(_table(wide=True))
    assert f"{SIZE.column} (kB)" in heads and f"{FLOPS.column} (M)" in heads and f"{PARAMS.column} (k)" in heads
    text = _text(_table(wide=True), 200)
    assert text.count("kB") == 1 and "FLOP " not in text and "MFLOP" not in text
    size = heads.index(f"{SIZE.column} (kB)")
    line = next(line for line in text.splitlines() if line.startswith("│ 0 (baseline)"))
    assert line.split("│")[size + 1].strip() == "412"  # 412,000 B


def _pareto_in_a_terminal(url: str, cwd: Path, *args: str, columns: int) -> str:
    """`effsearch pareto` run in a pseudo-terminal `columns` wide; its output without colours."""
    import pty

    main, sub = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "effsearch", "pareto", "--storage", url, *args],
                            cwd=cwd, stdin=sub, stdout=sub, stderr=subprocess.PIPE, env=env)
    os.close(sub)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode() if proc.stderr else ""
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", text)


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX's")
def test_pareto_fits_an_80_column_terminal_and_shows_every_column_with_wide(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'effsearch.db'}"
    _study(url)
    text = _pareto_in_a_terminal(url, tmp_path, columns=80)
    _assert_one_line_a_row(text.rstrip("\n"), 80)
    assert text.startswith("Pareto front of widths: 6 trial(s)")
    assert "untrai" not in text  # given up for the columns a user decides on
    every = _pareto_in_a_terminal(url, tmp_path, "--wide", columns=80)
    head = next(line for line in every.splitlines() if line.startswith("┃"))
    assert head.count("┃") == EVERY + 1
