"""The user-file loader: a good file loads and probes; every bad kind is one clear UserFileError."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from effsearch.errors import UserFileError
from effsearch.userfile import load_user_file, probe

# A small valid user file: 3 float features, 2 classes, 12 training and 5 validation rows.
# Tests replace the marked parts to break one thing at a time.
GOOD = """\
import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def build():
    return nn.Linear(3, 2)


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(17, 3, generator=g)
    y = (x[:, 0] > 0).long()
    return TensorDataset(x[:12], y[:12]), TensorDataset(x[12:], y[12:])


effsearch.register(model=build, data=load, name="tiny")
"""


def _line_of(source: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    return next(i for i, line in enumerate(source.splitlines(), 1) if needle in line)


def _error(path: Path, do_probe: bool = True) -> str:
    with pytest.raises(UserFileError) as info:
        uf = load_user_file(path)
        if do_probe:
            probe(uf)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_good_file_loads_and_probes(write_user_file):
    path = write_user_file(GOOD)
    uf = load_user_file(path)
    assert uf.name == "tiny"
    assert uf.metric_key == "accuracy"
    assert uf.path == path.resolve()
    info, (train, val) = probe(uf)
    assert info.input_shape == (3,)
    assert info.input_dtype == "float32"
    assert info.output_shape == (2,)
    assert (info.n_train, info.n_val) == (12, 5)
    assert (len(train), len(val)) == (12, 5)


def test_name_defaults_to_the_file_stem(write_user_file):
    path = write_user_file(GOOD.replace(', name="tiny"', ""), name="my_table_model.py")
    assert load_user_file(path).name == "my_table_model"


def test_sha256_of_the_file_is_recorded(write_user_file):
    path = write_user_file(GOOD)
    assert load_user_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(GOOD + "\n# edited\n")
    assert load_user_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_module_name_is_deterministic(write_user_file):
    """Every process that loads the file must give it the same module name (pickling under DDP)."""
    path = write_user_file(GOOD)
    first = load_user_file(path).registration.model.__module__
    second = load_user_file(path).registration.model.__module__
    assert first == second
    assert first.startswith("effsearch_user_")
    other = write_user_file(GOOD, name="other.py")
    assert load_user_file(other).registration.model.__module__ != first


def test_module_name_is_the_same_in_another_process(write_user_file):
    """DDP workers re-import the file; a per-process name (e.g. from hash()) would break unpickling there."""
    path = write_user_file("import effsearch\n\ndef build():\n    pass\n\neffsearch.register(model=build, data=build)\n")
    here = load_user_file(path).registration.model.__module__
    code = (
        "import sys; from effsearch.userfile import load_user_file; "
        "print(load_user_file(sys.argv[1]).registration.model.__module__)"
    )
    there = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True, text=True, check=True, timeout=60, env={**os.environ, "PYTHONHASHSEED": "123"},
    ).stdout.strip()
    assert there == here


def test_syntax_error_names_file_and_line(write_user_file):
    source = GOOD.replace("def build():", "def build(:")
    message = _error(write_user_file(source), do_probe=False)
    assert "my_model.py" in message
    assert f"line {_line_of(source, 'def build(:')}" in message
    assert "syntax error" in message


def test_register_never_called(write_user_file):
    source = GOOD.replace('effsearch.register(model=build, data=load, name="tiny")', "")
    message = _error(write_user_file(source), do_probe=False)
    assert "my_model.py" in message
    assert "register() was never called" in message


def test_register_called_twice(write_user_file):
    source = GOOD + 'effsearch.register(model=build, data=load, name="again")\n'
    message = _error(write_user_file(source), do_probe=False)
    assert "my_model.py" in message
    assert "called 2 times" in message


def test_model_factory_raising_names_file_and_line(write_user_file):
    source = GOOD.replace("    return nn.Linear(3, 2)", '    raise RuntimeError("weights missing")')
    message = _error(write_user_file(source))
    assert "my_model.py" in message
    assert f"(line {_line_of(source, 'weights missing')})" in message
    assert "model factory" in message
    assert "RuntimeError: weights missing" in message


def test_data_factory_raising(write_user_file):
    source = GOOD.replace("    g = torch.Generator().manual_seed(0)", '    raise FileNotFoundError("data.csv")')
    message = _error(write_user_file(source))
    assert "my_model.py" in message
    assert f"(line {_line_of(source, 'data.csv')})" in message
    assert "data factory" in message
    assert "FileNotFoundError" in message


def test_first_batch_not_fitting_states_the_input_shape(write_user_file):
    # The model expects 5 features; the data has 3 (the probe's first batch is 4 rows).
    source = GOOD.replace("nn.Linear(3, 2)", "nn.Linear(5, 2)")
    message = _error(write_user_file(source))
    assert "my_model.py" in message
    assert "does not fit the model" in message
    assert "input 4x3" in message
    assert "float32" in message


def test_loss_not_a_scalar(write_user_file):
    source = GOOD.replace(
        'name="tiny")',
        'name="tiny", loss=lambda out, y: nn.functional.cross_entropy(out, y, reduction="none"))',
    )
    message = _error(write_user_file(source))
    assert "my_model.py" in message
    assert "scalar" in message
    assert "shape 4" in message


def test_metric_raising(write_user_file):
    source = GOOD.replace('name="tiny")', 'name="tiny", metric=score)').replace(
        "effsearch.register(", 'def score(out, y):\n    raise ValueError("bad metric")\n\n\neffsearch.register('
    )
    message = _error(write_user_file(source))
    assert "my_model.py" in message
    assert "metric" in message
    assert f"(line {_line_of(source, 'bad metric')})" in message
    assert "ValueError: bad metric" in message


def test_nonexistent_path(tmp_path):
    missing = tmp_path / "nowhere.py"
    message = _error(missing, do_probe=False)
    assert "nowhere.py" in message
    assert "no such file" in message


def test_cli_tune_on_a_bad_file_exits_2_with_one_line_and_no_study(write_user_file, run_cli, tmp_path):
    source = GOOD.replace("    return nn.Linear(3, 2)", '    raise RuntimeError("weights missing")')
    write_user_file(source, name="bad.py")
    proc = run_cli("tune", "bad.py", "--trials", "1", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "bad.py" in lines[0] and "weights missing" in lines[0]
    db = tmp_path / "studies" / "effsearch.db"
    if db.exists():
        with sqlite3.connect(db) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
            if "studies" in tables:
                assert con.execute("select count(*) from studies").fetchone()[0] == 0
