"""The search space: defaults, the dense fp32 baseline, TOML overrides, invalid files, suggestions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from effsearch.errors import SpaceError
from effsearch.space import CORE_PARAMS, PRECISIONS, SCHEDULES, default_space, load_space


@pytest.fixture
def toml(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "space.toml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


def _space_error(path: Path, max_world_size: int = 1) -> str:
    with pytest.raises(SpaceError) as info:
        load_space(path, max_world_size)
    message = str(info.value)
    assert "space.toml" in message, "the error names the file"
    return message


def test_default_space_has_the_seven_core_dimensions():
    space = default_space(4)
    assert set(CORE_PARAMS) == {"batch_size", "lr", "lr_schedule", "clip_norm", "prune_ratio", "precision", "world_size"}
    assert set(CORE_PARAMS) <= set(space.dims)
    assert space.precisions == PRECISIONS
    assert space["lr_schedule"].choices == SCHEDULES
    assert 0.0 in space["clip_norm"].choices, "no clipping is a choice"
    assert (space["world_size"].low, space["world_size"].high) == (1, 4)
    assert all(not space[name].fixed for name in CORE_PARAMS)


def test_no_space_file_is_the_default_space():
    assert load_space(None, 2).to_dict() == default_space(2).to_dict()


def test_baseline_is_dense_fp32_with_defaults():
    space = default_space(2)
    base = space.baseline()
    assert base["prune_ratio"] == 0.0
    assert base["precision"] == "fp32"
    for name, dim in space.dims.items():
        if name not in ("prune_ratio", "precision"):
            assert base[name] == dim.default, name
    assert base["world_size"] == 1


def test_baseline_stays_dense_fp32_when_defaults_say_otherwise(toml):
    space = load_space(toml("""
        [prune_ratio]
        default = 0.5
        [precision]
        choices = ["int8_static", "fp32"]
        default = "int8_static"
    """))
    base = space.baseline()
    assert base["prune_ratio"] == 0.0
    assert base["precision"] == "fp32"


def test_toml_range_override(toml):
    space = load_space(toml("""
        [lr]
        low = 1e-4
        high = 1e-2
        default = 1e-3
    """))
    lr = space["lr"]
    assert (lr.low, lr.high, lr.default) == (1e-4, 1e-2, 1e-3)
    assert lr.log, "an override keeps the dimension's log scale unless it says otherwise"
    assert space["batch_size"] == default_space()["batch_size"], "other dimensions keep their defaults"


def test_toml_range_on_a_choice_dimension(toml):
    clip = load_space(toml("""
        [clip_norm]
        low = 0.0
        high = 2.0
    """))["clip_norm"]
    assert clip.choices is None
    assert (clip.low, clip.high, clip.default) == (0.0, 2.0, 0.0)


def test_toml_choices_override(toml):
    space = load_space(toml("""
        [precision]
        choices = ["fp32", "int8_static"]
        [batch_size]
        choices = [8, 256]
    """))
    assert space.precisions == ("fp32", "int8_static")
    assert space["batch_size"].choices == (8, 256)
    assert space["batch_size"].default == 8, "a default outside the new choices falls back to the first choice"


def test_bare_value_fixes_a_dimension(toml):
    space = load_space(toml("""
        prune_ratio = 0.0
        lr_schedule = "onecycle"
        batch_size = 32
    """))
    for name, value in (("prune_ratio", 0.0), ("lr_schedule", "onecycle"), ("batch_size", 32)):
        assert space[name].fixed, name
        assert space[name].default == value, name


def test_default_override(toml):
    space = load_space(toml("""
        [lr_schedule]
        default = "step"
    """))
    assert space["lr_schedule"].default == "step"
    assert space["lr_schedule"].choices == SCHEDULES
    assert space.baseline()["lr_schedule"] == "step"


def test_extra_dimension_can_be_searched(toml):
    space = load_space(toml("""
        [optimizer]
        choices = ["adamw", "sgd"]
    """))
    assert not space["optimizer"].fixed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[learning_rate]\nlow = 0.1\n", "unknown dimension 'learning_rate'"),
        ("[lr]\nlo = 0.1\n", "unknown key(s) ['lo']"),
        ('[precision]\nchoices = ["fp32", "int4"]\n', "['int4'] not among"),
        ('precision = "int4"\n', "['int4'] not among"),
        ('[lr_schedule]\nchoices = ["linear"]\n', "['linear'] not among"),
        ("[lr]\nlow = 0.1\nhigh = 0.01\n", "needs low <= high"),
        ("[lr]\nlow = 0.0\nhigh = 0.1\nlog = true\n", "log range needs low > 0"),
        ("[prune_ratio]\nhigh = 1.0\n", "prune ratios must be below 1.0"),
        ("prune_ratio = 1.5\n", "prune ratios must be below 1.0"),
        ("[batch_size]\nchoices = []\n", "choices is empty"),
        ("[batch_size]\nchoices = [0, 32]\n", "0 is not a valid batch_size"),
        ('[precision]\nchoices = ["fp32"]\ndefault = "fp16"\n', "not among the choices"),
        ("[lr]\nlow = 1e-4\nhigh = 1e-2\ndefault = 0.5\n", "outside"),
        ('[lr_schedule]\nlow = 1\nhigh = 2\n', "takes choices, not a range"),
        ("this is = = not toml\n", "not valid TOML"),
    ],
)
def test_invalid_space_files_raise_space_error(toml, text, expected):
    message = _space_error(toml(text))
    assert expected in message
    assert "\n" not in message


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="no such space file"):
        load_space(tmp_path / "absent.toml")


def _suggest(space) -> tuple[dict, dict]:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = space.suggest(trial)
    return params, trial.params


def test_suggest_records_core_params_always_and_fixed_extras_never(toml):
    space = load_space(toml("""
        precision = "fp32"
        prune_ratio = 0.0
        world_size = 1
    """))
    params, recorded = _suggest(space)
    assert set(recorded) == set(CORE_PARAMS), "fixed core dimensions are still recorded on the trial"
    assert recorded["precision"] == "fp32" and recorded["prune_ratio"] == 0.0 and recorded["world_size"] == 1
    assert set(params) == set(space.dims), "the config gets every dimension"
    assert params["optimizer"] == "adamw" and params["warmup_frac"] == 0.05
    assert set(space.distributions()) == set(CORE_PARAMS)


def test_suggest_records_extras_when_searched(toml):
    space = load_space(toml("""
        [optimizer]
        choices = ["adamw", "sgd"]
        [warmup_frac]
        low = 0.0
        high = 0.2
    """))
    params, recorded = _suggest(space)
    assert set(recorded) == set(CORE_PARAMS) | {"optimizer", "warmup_frac"}
    assert recorded["optimizer"] in ("adamw", "sgd")
    assert 0.0 <= recorded["warmup_frac"] <= 0.2
    assert params["optimizer"] == recorded["optimizer"]


def test_suggested_values_lie_in_their_dimensions():
    space = default_space(2)
    for _ in range(5):
        params, _ = _suggest(space)
        assert params["batch_size"] in space["batch_size"].choices
        assert 3e-4 <= params["lr"] <= 3e-2
        assert 0.0 <= params["prune_ratio"] <= 0.75
        assert params["world_size"] in (1, 2)


def test_clamp_world_size_caps_range_and_default(toml):
    space = default_space(8).clamp_world_size(2)
    ws = space["world_size"]
    assert (ws.low, ws.high, ws.default) == (1, 2, 1)
    assert space["lr"] == default_space(8)["lr"], "other dimensions are untouched"

    wide = load_space(toml("""
        [world_size]
        low = 3
        high = 4
        default = 3
    """), max_world_size=4)
    clamped = wide.clamp_world_size(2)["world_size"]
    assert (clamped.low, clamped.high, clamped.default) == (2, 2, 2)
    assert clamped.fixed

    assert default_space(1).clamp_world_size(4)["world_size"].high == 1, "clamping never raises the cap"
