"""The search space: defaults, the dense fp32 baseline, TOML overrides, invalid files, suggestions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from effsearch.errors import EffsearchError, SpaceError
from effsearch.space import CORE_PARAMS, PRECISIONS, SCHEDULES, default_space, load_space

TINY = Path(__file__).resolve().parents[1] / "userfiles" / "tiny_mlp.py"


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


# Each bad entry: (TOML text, how the message names the dimension and key, the value as written, the fix).
INVALID = [
    # wrong TOML types, for every key
    ('[lr]\nlow = "zero"\n', "[lr] low", '"zero"', "write e.g. low = 0.003"),
    ('[lr]\nhigh = true\n', "[lr] high", "true", "write e.g. high = 0.003"),
    ("[lr]\nlow = 1979-05-27\n", "[lr] low", "1979-05-27", "write e.g. low ="),
    ('[lr]\nlog = "yes"\n', "[lr] log", '"yes"', "write log = true or log = false"),
    ("[lr]\nlog = 1\n", "[lr] log", "= 1", "write log = true or log = false"),
    ('[prune_ratio]\nstep = "0.1"\n', "[prune_ratio] step", '"0.1"', "write e.g. step = 0.05"),
    ('[lr]\ndefault = "x"\n', "[lr] default", '"x"', "write e.g. default = 0.003"),
    ("[lr]\nvalue = [0.1, 0.2]\n", "[lr] value", "[0.1, 0.2]", "write e.g. value = 0.003"),
    ("lr = [0.1]\n", "lr", "[0.1]", "write e.g. lr = 0.003"),
    ('prune_ratio = "0.5"\n', "prune_ratio", '"0.5"', "write e.g. prune_ratio = 0.5"),
    ("batch_size = true\n", "batch_size", "true", "write e.g. batch_size = 64"),
    ("[lr.low]\nx = 1\n", "[lr] low", "{x = 1}", "write e.g. low ="),
    ("lr = {}\n", "[lr]", "table is empty", "give value, choices, low and high, or default"),
    # choices
    ('[precision]\nchoices = "fp32"\n', "[precision] choices", '"fp32"', 'write choices = ["fp32"]'),
    ("[batch_size]\nchoices = 32\n", "[batch_size] choices", "32", "write choices = [32]"),
    ('[precision]\nchoices = ["fp32", "int4"]\n', "[precision] choices", '"int4"', "keep only those"),
    ('[lr_schedule]\nchoices = ["linear"]\n', "[lr_schedule] choices", '"linear"', "keep only those"),
    ('[precision]\nchoices = [["fp32"]]\n', "[precision] choices", '["fp32"]', "keep only those"),
    ("[batch_size]\nchoices = []\n", "[batch_size] choices", "empty", "give at least one value"),
    ("[batch_size]\nchoices = [0, 32]\n", "[batch_size] choices", "[0, 32]: 0", "write e.g. choices = [64]"),
    ('[batch_size]\nchoices = [32, "64"]\n', "[batch_size] choices", '"64" is not a number', "write e.g. choices"),
    ("[batch_size]\nchoices = [32, 32]\n", "[batch_size] choices", "32 is listed twice", "list each value once"),
    ('[precision]\nchoices = ["fp32"]\ndefault = "fp16"\n', "[precision]", 'default = "fp16"', "set default to one of them"),
    ('[precision]\nchoices = ["fp32"]\nlow = 1\n', "[precision]", "choices cannot go with low", "give choices, or a range"),
    # names
    ('precision = "int4"\n', "precision", '"int4"', "pick one of those"),
    ("optimizer = 3\n", "optimizer", "= 3", "pick one of those"),
    ('[lr_schedule]\nlow = 1\nhigh = 2\n', "[lr_schedule]", "takes choices, not a range", "write e.g. choices = ["),
    # numbers out of bounds: negative, zero where not allowed, whole numbers, non-finite
    ("lr = 0\n", "lr", "= 0 is not a number > 0", "write e.g. lr = 0.003"),
    ("[lr]\nlow = -0.1\n", "[lr] low", "-0.1", "write e.g. low = 0.003"),
    ("lr = nan\n", "lr", "nan is not a finite number", "write e.g. lr = 0.003"),
    ("[clip_norm]\nchoices = [-1.0, 1.0]\n", "[clip_norm] choices", "-1.0 is not a number >= 0", "write e.g. choices"),
    ("world_size = 0\n", "world_size", "= 0", "write e.g. world_size = 1"),
    ("batch_size = 3.5\n", "batch_size", "3.5 is not a whole number", "write e.g. batch_size = 64"),
    ("[prune_ratio]\nhigh = 1.0\n", "[prune_ratio] high", "1.0 is not a number in [0, 1)", "write e.g. high = 0.5"),
    ("prune_ratio = 1.5\n", "prune_ratio", "1.5", "write e.g. prune_ratio = 0.5"),
    ("warmup_frac = 1.0\n", "warmup_frac", "1.0", "write e.g. warmup_frac = 0.05"),
    ("[prune_ratio]\nstep = -0.1\n", "[prune_ratio] step", "-0.1 is not a number > 0", "write e.g. step = 0.05"),
    ("[prune_ratio]\nstep = 0.0\n", "[prune_ratio] step", "0.0", "write e.g. step = 0.05"),
    ("[world_size]\nlow = 1\nhigh = 2\nstep = 0.5\n", "[world_size] step", "0.5 is not a whole number", "write e.g. step = 1"),
    # ranges
    ("[lr]\nlow = 0.1\nhigh = 0.01\n", "[lr]", "low = 0.1, high = 0.01", "swap or widen them"),
    ("[lr]\nlow = 0.05\n", "[lr]", "high = 0.03 (high is the built-in one)", "swap or widen them"),
    ("[clip_norm]\nlow = 0.0\nhigh = 2.0\nlog = true\n", "[clip_norm]", "low = 0.0", "raise low or set log = false"),
    ("[lr]\nlog = true\nstep = 0.001\n", "[lr]", "step = 0.001", "drop step or set log = false"),
    ("[prune_ratio]\nlow = 0.1\nhigh = 0.33\ndefault = 0.1\n", "[prune_ratio]", "step = 0.05 (the built-in step)", "make high 0.3"),
    ("[prune_ratio]\nlow = 0.1\nhigh = 0.5\ndefault = 0.12\n", "[prune_ratio]", "default = 0.12", "set default on that grid"),
    ("[clip_norm]\nstep = 1.0\n", "[clip_norm]", "step needs a range", "give low and high too"),
    ("[lr]\nlow = 1e-4\nhigh = 1e-2\ndefault = 0.5\n", "[lr]", "default = 0.5 lies outside [0.0001, 0.01]", "set default to a"),
    ("[lr]\nlow = 0.01\nhigh = 0.1\n", "[lr]", "the built-in default 0.003", "set default to a value in that range"),
    # keys and dimensions
    ("[learning_rate]\nlow = 0.1\n", "unknown dimension 'learning_rate'", "learning_rate", "known: batch_size, lr"),
    ("[lr]\nlo = 0.1\n", "[lr]", "unknown key(s) ['lo']", "use value, choices, low/high/log/step, default"),
    ("[lr]\nvalue = 0.01\ndefault = 0.01\n", "[lr]", "default cannot go with it", "drop one or the other"),
    ('[optimizer]\nchoices = ["adamw"]\nworld_size = 1\n', "[optimizer]", "['world_size']", "move it above the first table"),
    ("this is = = not toml\n", "not valid TOML", "line 1", "fix that line"),
]


@pytest.mark.parametrize(("text", "where", "value", "fix"), INVALID, ids=[t.replace("\n", " ").strip() for t, *_ in INVALID])
def test_invalid_space_files_give_one_line_naming_file_dimension_value_and_fix(toml, text, where, value, fix):
    path = toml(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {where}"), "the error names the file, then the dimension"
    assert value in message and fix in message, message
    assert "\n" not in message
    assert isinstance(info.value, EffsearchError) and info.value.exit_code == 2


@pytest.mark.parametrize("name", sorted(default_space().dims))
def test_every_dimension_refuses_a_value_of_the_wrong_type(toml, name):
    numeric = default_space()[name].choices is None or not isinstance(default_space()[name].default, str)
    bad = '"many"' if numeric else "3"
    message = _space_error(toml(f"{name} = {bad}\n"))
    assert f"{name} = {bad} is not" in message


def test_a_string_for_choices_is_refused_not_split_into_characters(toml):
    message = _space_error(toml('[precision]\nchoices = "fp32"\n'))
    assert message.endswith('[precision] choices = "fp32" is not a list; write choices = ["fp32"]')
    assert "'f'" not in message


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("absent.toml", lambda p: None),
        ("folder.toml", lambda p: p.mkdir()),
        ("latin1.toml", lambda p: p.write_bytes(b'precision = "fp32\xe9"\n')),
    ],
)
def test_an_unreadable_space_file_is_one_line(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert ("no such space file" in message) == (name == "absent.toml")


def test_a_given_log_scale_drops_the_built_in_step_and_a_given_step_the_built_in_log(toml):
    space = load_space(toml("""
        [prune_ratio]
        low = 0.1
        high = 0.5
        log = true
        default = 0.1
        [lr]
        low = 0.001
        high = 0.01
        step = 0.001
    """))
    assert (space["prune_ratio"].log, space["prune_ratio"].step) == (True, None)
    assert (space["lr"].log, space["lr"].step) == (False, 0.001)
    space.distributions()  # Optuna accepts both: it refuses a log range with a step


def test_a_bad_space_file_fails_tune_before_any_study_exists(run_cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[lr]\nlow = "zero"\n')
    db = tmp_path / "x.db"
    r = run_cli("tune", str(TINY), "--space", str(bad), "--storage", f"sqlite:///{db}", "--trials", "1", timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [f'error: {bad}: [lr] low = "zero" is not a number; write e.g. low = 0.003'], r.stderr
    assert not db.exists(), "no storage was created"
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"], "no studies/ folder nor anything else was written"


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
        train_precision = "fp32"
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
    # train_precision is searched by default (fp32 or bf16 on CPU).
    assert set(recorded) == set(CORE_PARAMS) | {"optimizer", "warmup_frac", "train_precision"}
    assert recorded["optimizer"] in ("adamw", "sgd")
    assert 0.0 <= recorded["warmup_frac"] <= 0.2
    assert params["optimizer"] == recorded["optimizer"]


def test_suggestions_follow_the_overridden_dimensions(toml):
    space = load_space(toml("""
        [lr]
        low = 1e-3
        high = 2e-3
        default = 1e-3
        [prune_ratio]
        low = 0.2
        high = 0.4
        step = 0.1
        default = 0.2
        [batch_size]
        low = 8
        high = 24
        default = 8
        [precision]
        choices = ["fp16", "int8_static"]
    """), max_world_size=2)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        params = space.suggest(trial)
        assert trial.distributions == space.distributions(), "suggest and distributions (used for siblings) agree"
        assert 1e-3 <= params["lr"] <= 2e-3
        assert round(params["prune_ratio"], 9) in (0.2, 0.3, 0.4), "the step grid is kept"
        assert type(params["batch_size"]) is int and 8 <= params["batch_size"] <= 24, "a batch-size range is whole numbers"
        assert params["precision"] in ("fp16", "int8_static")
        seen.add(params["precision"])
    assert seen == {"fp16", "int8_static"}


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


def test_training_levers_the_model_or_the_machine_cannot_use_are_refused(toml):
    message = _space_error(toml("[distill]\nchoices = [0.0, 0.5]\n"))
    assert "[distill]" in message and "register(trained=True)" in message
    assert load_space(toml("[distill]\nchoices = [0.0, 0.5]\n"), 1, trained=True)["distill"].choices == (0.0, 0.5)
    message = _space_error(toml('[train_precision]\nchoices = ["fp32", "fp16"]\n'))
    assert '"fp16"' in message and "needs a GPU" in message and '["fp32", "bf16"]' in message
    on_gpu = load_space(toml('[train_precision]\nchoices = ["fp32", "fp16"]\n'), 1, device="cuda")
    assert on_gpu["train_precision"].choices == ("fp32", "fp16")
