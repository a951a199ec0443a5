"""Tests generated from the catalog of search dimensions: every entry's rule, label and place in a run's config."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from effsearch.config import TrainConfig
from effsearch.errors import SpaceError
from effsearch.report.html import _PARAM_LABELS
from effsearch.space import CATALOG, CORE_PARAMS, DimensionSpec, config_of, default_space, load_space
from effsearch.space.rules import shown

NAMES = list(CATALOG)
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


def _outside(spec: DimensionSpec) -> Any:
    """A value of the dimension's type that its rule refuses."""
    rule = spec.rule
    if rule.kind is str:
        return "no-such-choice"
    if rule.below is not None:
        return rule.kind(rule.below)
    assert rule.minimum > -math.inf, f"{spec.name}: a numeric rule needs a bound to test against"
    return rule.kind(rule.minimum) if rule.positive else rule.kind(rule.minimum - 1)


def _other(spec: DimensionSpec, default: Any) -> Any:
    """A value the rule accepts that differs from the default."""
    if spec.rule.kind is str:
        return next(n for n in spec.rule.names if n != default)
    return spec.rule.kind(default + 1)


def _space_file(tmp_path: Path, name: str, value: Any) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(f"{name} = {shown(value)}\n")
    return path


def test_the_catalog_names_each_dimension_once_and_holds_the_core_ones():
    assert all(spec.name == name for name, spec in CATALOG.items())
    assert set(CORE_PARAMS) <= set(CATALOG)
    assert list(default_space().dims) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_rule_accepts_the_default(tmp_path, name):
    default = CATALOG[name].built_in.default
    assert CATALOG[name].rule.problem(default) is None
    space = load_space(_space_file(tmp_path, name, default))
    assert space[name].fixed and space[name].default == default


@pytest.mark.parametrize("name", NAMES)
def test_the_rule_refuses_a_value_out_of_range_in_one_line_naming_the_dimension(tmp_path, name):
    bad = _outside(CATALOG[name])
    assert CATALOG[name].rule.problem(bad) is not None
    with pytest.raises(SpaceError) as info:
        load_space(_space_file(tmp_path, name, bad))
    message = str(info.value)
    assert "\n" not in message
    assert name in message and "space.toml" in message and shown(bad) in message


@pytest.mark.parametrize("name", NAMES)
def test_the_label_exists_and_the_report_shows_it(name):
    label = CATALOG[name].label
    assert isinstance(label, str) and label.strip()
    assert _PARAM_LABELS[name] == label


@pytest.mark.parametrize("name", NAMES)
def test_config_of_maps_the_dimension(name):
    params = default_space(4).baseline()
    spec = CATALOG[name]
    value = _other(spec, params[name])
    config = config_of({**params, name: value}, epochs=2, seed=7)
    if name in TRAIN_FIELDS:
        assert getattr(config, name) == value
        assert type(getattr(config, name)) is spec.rule.kind
    else:
        # Acts after training (precision): the run is told nothing of it.
        assert config == config_of(params, epochs=2, seed=7)
    assert (config.epochs, config.seed) == (2, 7)


def test_config_of_rounds_the_batch_to_the_world_size_and_leaves_absent_knobs_at_their_defaults():
    params = {**default_space(4).baseline(), "batch_size": 30, "world_size": 4}
    for name in ("train_precision", "distill", "distill_temperature"):
        del params[name]  # a study begun before the training levers existed
    config = config_of(params, epochs=1, seed=0)
    assert (config.batch_size, config.world_size) == (28, 4)
    assert (config.train_precision, config.distill, config.distill_temperature) == ("fp32", 0.0, 4.0)
