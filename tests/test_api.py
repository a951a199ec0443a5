"""The Python API: `effsearch.tune` and `effsearch.load` run and read the study the command line does."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch
from effsearch.errors import EffsearchError, UserFileError
from effsearch.record import read_meta
from effsearch.train.pool import hardware_world_sizes

TINY = Path(__file__).resolve().parent / "userfiles" / "tiny_mlp.py"

# Functions defined here reach the rank processes by value, as a notebook's would (they live in __main__ there).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def build() -> nn.Module:
    return nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))


def load() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 30, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


@contextlib.contextmanager
def _fds() -> Iterator[dict[str, str]]:
    """What the process and its children write to file descriptors 1 and 2 meanwhile (as capfd, for a module fixture)."""
    seen: dict[str, str] = {}
    with tempfile.TemporaryFile("w+b") as out, tempfile.TemporaryFile("w+b") as err:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
        try:
            yield seen
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
            for name, f in (("out", out), ("err", err)):
                f.seek(0)
                seen[name] = f.read().decode(errors="replace")


def _call(fn: Callable[[], Any]) -> tuple[Any, dict[str, str]]:
    with _fds() as seen:
        result = fn()
    return result, seen


@pytest.fixture(scope="module")
def from_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[effsearch.StudyResult, dict[str, str], str]:
    """A two-run study of tests/userfiles/tiny_mlp.py made through the API: (result, its output, storage URL)."""
    cwd = tmp_path_factory.mktemp("api-file")
    url = f"sqlite:///{cwd / 'effsearch.db'}"
    result, seen = _call(lambda: effsearch.tune(TINY, trials=2, epochs=1, storage=url, artifacts=cwd / "artifacts"))
    return result, seen, url


def test_tune_from_a_file_returns_the_front_pareto_json_prints(from_file, run_cli) -> None:
    result, _, url = from_file
    assert result.name == "tiny-mlp" and result.ran is not None and result.ran.done == 2
    shown = run_cli("pareto", "--json", "--storage", url, "--study", "tiny-mlp")
    assert shown.returncode == 0, shown.stderr
    assert result.front and json.loads(json.dumps(result.front)) == json.loads(shown.stdout)
    assert result.knee in result.front
    assert result.baseline is not None and result.baseline["trial"] == 0
    assert result.study.study_name == "tiny-mlp" and result.study.trials  # the optuna.Study itself


def test_a_library_call_prints_nothing(from_file) -> None:
    _, seen, _ = from_file
    assert seen == {"out": "", "err": ""}


def test_load_reopens_the_study(from_file) -> None:
    result, _, url = from_file
    again = effsearch.load(study="tiny-mlp", storage=url)
    assert again.front == result.front and again.knee == result.knee and again.baseline == result.baseline
    assert again.ran is None
    assert effsearch.load(storage=url).name == "tiny-mlp"  # the only study in the storage
    with pytest.raises(EffsearchError, match="no study 'nope'"):
        effsearch.load(study="nope", storage=url)


def test_export_of_the_knee_writes_a_verified_model_and_its_card(from_file, tmp_path: Path) -> None:
    result, _, _ = from_file
    shipped = result.export(tmp_path / "knee.onnx", pick="knee")
    assert shipped.trial == result.knee["trial"]
    assert shipped.path.is_file() and shipped.card_json.is_file() and shipped.card_md.is_file()
    assert abs(shipped.verified - shipped.recorded) <= shipped.tolerance
    card = json.loads(shipped.card_json.read_text())
    assert card["user_file"]["path"] == str(TINY)
    with pytest.raises(EffsearchError, match="pass --force"):
        result.export(tmp_path / "knee.onnx", pick="knee")
    assert result.export(tmp_path / "knee.onnx", trial=shipped.trial, force=True).trial == shipped.trial
    with pytest.raises(EffsearchError, match="choose the model one way, got trial and pick"):
        result.export(tmp_path / "x.onnx", trial=0, pick="knee")


def test_front_frame_is_a_dataframe_or_names_the_package(from_file, monkeypatch) -> None:
    result, _, _ = from_file
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass
    else:
        frame = result.front_frame()
        assert list(frame.index) == [row["trial"] for row in result.front] and "precision" in frame.columns
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(EffsearchError, match="pip install pandas"):
        result.front_frame()


def test_a_registration_from_python_runs_on_the_ranks_and_records_a_front(tmp_path: Path, run_cli, capfd) -> None:
    world_size = min(2, hardware_world_sizes()[1])  # 2 rank processes where this machine offers them
    space = tmp_path / "space.toml"
    space.write_text(f'world_size = {world_size}\nprecision = "fp32"\n')
    url = f"sqlite:///{tmp_path / 'effsearch.db'}"
    reg = effsearch.Registration(model=build, data=load, name="in-memory", epochs=1)
    result = effsearch.tune(reg, trials=2, storage=url, space=space, artifacts=tmp_path / "artifacts", progress=True)
    shown = capfd.readouterr()
    assert "run 2/2" in shown.out  # progress=True shows rich's progress line
    assert result.front and result.ran is not None and result.ran.completed == 2
    assert all(t.params["world_size"] == world_size for t in result.study.trials)
    meta = read_meta(result.study)
    assert meta.user_file is None and meta.user_file_sha256 == result.user_file.sha256
    # Verified with the registration itself: there is no file to re-import.
    shipped = result.export(tmp_path / "model.onnx", pick="knee")
    assert abs(shipped.verified - shipped.recorded) <= shipped.tolerance
    # The command line, which has no registration, refuses clearly.
    cli = run_cli("export", "--storage", url, "--study", "in-memory", "--pick", "knee", "-o", str(tmp_path / "cli.onnx"))
    assert cli.returncode == 1 and cli.stderr.strip().splitlines() == [
        "error: study 'in-memory' records no user file; pass --file my_model.py to verify with"
    ]


def test_an_unpicklable_registration_is_refused_in_one_line_before_any_study(tmp_path: Path) -> None:
    lock = threading.Lock()

    def locked_build() -> nn.Module:
        with lock:
            return build()

    url = f"sqlite:///{tmp_path / 'effsearch.db'}"
    with pytest.raises(UserFileError) as caught:
        effsearch.tune(effsearch.Registration(model=locked_build, data=load), trials=2, epochs=1, storage=url)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Registration(model=") and "locked_build" in message and "lock" in message
    assert "define it at module level" in message
    assert not (tmp_path / "effsearch.db").exists()


def test_tune_refuses_what_is_neither_a_file_nor_a_registration() -> None:
    with pytest.raises(UserFileError, match="effsearch.Registration, got int"):
        effsearch.tune(3)
