"""settings_for, called as the Python API calls it (no command line): the same one-line refusals as
`effsearch tune`, world sizes capped by the hardware it looked up once, objectives parsed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from effsearch.errors import StudyError
from effsearch.study import Hardware, settings_for
from effsearch.userfile import load_user_file, probe

TINY = Path(__file__).resolve().parents[1] / "userfiles" / "tiny_mlp.py"


@pytest.fixture(scope="module")
def tiny():
    uf = load_user_file(TINY)
    info, _ = probe(uf)
    return uf, info


@pytest.fixture
def two_cores(monkeypatch) -> Hardware:
    """A machine of two usable cores and no GPU, whatever this one is."""
    hardware = Hardware("cpu", 2)
    monkeypatch.setattr(Hardware, "here", classmethod(lambda cls: hardware))
    return hardware


def test_a_timed_batch_larger_than_the_validation_set_is_refused_in_one_line_and_nothing_is_made(tiny, tmp_path) -> None:
    uf, info = tiny
    with pytest.raises(StudyError) as caught:
        settings_for(uf, info, trials=1, storage=f"sqlite:///{tmp_path / 's.db'}", latency_batch=info.n_val + 1)
    assert str(caught.value) == (
        f"--latency-batch {info.n_val + 1} exceeds the {info.n_val} samples of tiny_mlp.py's validation set, "
        f"which the timed batch is taken from; pass --latency-batch {info.n_val} or less"
    )
    assert list(tmp_path.iterdir()) == [], "no study, no folder"


def test_a_sequence_length_for_a_model_without_token_inputs_is_refused(tiny, tmp_path) -> None:
    uf, info = tiny
    with pytest.raises(StudyError) as caught:
        settings_for(uf, info, trials=1, storage=f"sqlite:///{tmp_path / 's.db'}", latency_seq_len=8)
    assert str(caught.value) == "--latency-seq-len 8: tiny_mlp.py's model takes no token input; drop the option"


def test_a_folder_that_cannot_be_written_is_refused_before_anything_is_made(tiny, tmp_path) -> None:
    uf, info = tiny
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StudyError, match="^--artifacts .*: .* is not a folder; choose a folder you can write to$"):
        settings_for(uf, info, trials=1, storage=f"sqlite:///{tmp_path / 's.db'}", artifacts=blocker / "arts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_world_sizes_are_capped_by_the_hardware_with_a_warning(tiny, tmp_path, two_cores, caplog) -> None:
    uf, info = tiny
    url = f"sqlite:///{tmp_path / 's.db'}"
    with caplog.at_level(logging.WARNING, logger="effsearch"):
        settings = settings_for(uf, info, trials=1, storage=url, max_world_size=8)
    assert settings.hardware == two_cores, "the hardware looked up is carried in the settings"
    assert settings.space["world_size"].high == 2
    assert [r.getMessage() for r in caplog.records] == [
        "--max-world-size 8 is above what this machine offers (2 usable cores); using 2"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="effsearch"):
        settings = settings_for(uf, info, trials=1, storage=url, max_world_size=1)
    assert settings.space["world_size"].high == 1
    assert not caplog.records, "a cap below the hardware's is taken silently"


def test_objectives_and_the_other_options_become_the_settings(tiny, tmp_path, two_cores) -> None:
    uf, info = tiny
    url = f"sqlite:///{tmp_path / 's.db'}"
    settings = settings_for(
        uf, info, trials=3, storage=url, objectives="accuracy, size_bytes", study="named", epochs=2, seed=7,
        max_latency_ms=5.0, artifacts=tmp_path / "arts", timeout=60.0, early_stop=False,
    )
    assert settings.objectives == ("accuracy", "size_bytes")
    assert settings.directions == ("maximize", "minimize")
    assert (settings.study_name, settings.storage_url, settings.trials, settings.epochs, settings.seed) == ("named", url, 3, 2, 7)
    assert settings.constraints.max_latency_ms == 5.0 and settings.artifacts == (tmp_path / "arts").resolve()
    assert settings.timeout_s == 60.0 and settings.early_stop is False
    defaults = settings_for(uf, info, trials=1, storage=url)
    assert defaults.objectives == (uf.metric_key, "latency_ms", "energy_j")
    assert (defaults.study_name, defaults.epochs) == (uf.name, uf.registration.epochs)
    with pytest.raises(StudyError, match="^--objectives 'accuracy,accuracy' names an objective twice$"):
        settings_for(uf, info, trials=1, storage=url, objectives="accuracy,accuracy")
