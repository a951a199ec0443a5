"""The figures' catalog: every reader takes a figure's unit, direction and place from it (generated per figure)."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

import effsearch
from effsearch.figures import ENERGY, FIGURES, Figure
from effsearch.measure.artifact import INFER_ENERGY_KEYS
from effsearch.objectives import MAXIMIZE, MINIMIZE, direction_of, parse_objectives
from effsearch.report.info import metric_label
from effsearch.report.table import front_table
from effsearch.results.front import UNITS, front_rows, study_info
from effsearch.results.remeasured import EXACT
from effsearch.train.stopping import PRE_TRAINING, unstoppable

EVERY = pytest.mark.parametrize("figure", list(FIGURES.values()), ids=list(FIGURES))


def _study(figure: Figure) -> optuna.Study:
    """A study of accuracy and `figure`, with one trial that recorded every figure."""
    keys, directions = parse_objectives(f"accuracy,{figure.key}", "accuracy", "maximize")
    study = optuna.create_study(directions=list(directions))
    study.set_metric_names(list(keys))
    study.set_user_attr("effsearch", {
        "metric_key": "accuracy", "metric_direction": "maximize", "objectives": list(keys), "energy_source": "estimate",
        "infer_energy_source": "estimate",
    })
    metrics = {"accuracy": 0.9, **{k: 1.0 for k in FIGURES}}
    study.add_trial(create_trial(
        params={"precision": "fp32"}, distributions={"precision": CategoricalDistribution(["fp32"])},
        values=[0.9, 1.0], user_attrs={"run": 1, "metrics": metrics, "baseline": True},
    ))
    return study


@EVERY
def test_its_unit_and_direction_are_what_the_units_and_objectives_report(figure: Figure) -> None:
    assert UNITS[figure.key] == figure.unit
    assert direction_of(figure.key, "accuracy", "maximize") == figure.direction
    assert figure.key in (MINIMIZE if figure.direction == "minimize" else MAXIMIZE)
    _, directions = parse_objectives(f"accuracy,{figure.key}", "accuracy", "maximize")
    assert directions == ("maximize", figure.direction)


@EVERY
def test_a_study_optimising_it_records_its_direction_and_labels_it_with_its_unit(figure: Figure) -> None:
    info = study_info(_study(figure))
    assert info.directions == ("maximize", figure.direction)
    label = metric_label(info, figure.key)
    assert label.startswith(f"{figure.key} ({figure.unit})" if figure.unit else figure.key)
    assert label.endswith(" (estimate)") == bool(figure.energy)


@EVERY
def test_it_is_in_the_terminal_table_as_a_fixed_column_or_as_an_objective(figure: Figure) -> None:
    study = _study(figure)
    info = study_info(study)
    heads = [str(c.header) for c in front_table(info, front_rows(study)).columns]
    if figure.column is not None:
        assert any(h.startswith(figure.column) for h in heads) and figure.key not in heads
    else:
        assert figure.key in heads


@EVERY
def test_it_is_a_column_of_the_report_table_when_shown(figure: Figure) -> None:
    from effsearch.report.page import front_head

    info = study_info(_study(figure))
    assert (metric_label(info, figure.key) in front_head(info)) == figure.shown


@EVERY
def test_the_stopping_screening_and_noise_rules_read_its_flags(figure: Figure) -> None:
    assert (figure.key in PRE_TRAINING) == figure.untrained
    # A run stops early only on the metric, the training energy and figures known before training.
    assert (unstoppable(("accuracy", figure.key), "accuracy") is None) == (figure.untrained or figure is ENERGY)
    assert (figure.key in INFER_ENERGY_KEYS) == (figure.energy == "inference")
    assert (figure.key in EXACT) == figure.exact


def test_no_module_but_the_catalog_spells_a_figures_key() -> None:
    root = Path(effsearch.__file__).parent
    spelled = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "figures.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in FIGURES:
                spelled.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
    assert not spelled, "use the figure's record (effsearch/figures.py): " + ", ".join(spelled)
