"""`effsearch studies` (list, delete), redacted storage URLs, refused resumes, several SQLite workers at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from effsearch.study import runs_counted

USERFILES = Path(__file__).resolve().parents[1] / "userfiles"
TINY = USERFILES / "tiny_mlp.py"
STUDY = "tiny-mlp"
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n'


def effsearch(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "effsearch", *map(str, args)],
        cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def write_space(folder: Path) -> Path:
    path = folder / "space.toml"
    path.write_text(SPACE)
    return path


def artifacts_of(folder: Path) -> Path:
    """The study's artifact folder, as it recorded it: studies/<study>-<a short form of its identifier>."""
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder / 'studies' / 'effsearch.db'}")
    return Path(study.user_attrs["effsearch"]["artifacts"])


def rows(listing: str) -> dict[str, list[str]]:
    """The `studies` table as {study: [runs, trials, complete, failed, running, front, last activity]}."""
    found = {}
    for line in listing.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 8 and cells[0] not in ("study", ""):
            found[cells[0]] = cells[1:]
    return found


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory) -> Path:
    """A folder holding a two-run study of tests/userfiles/tiny_mlp.py in the default SQLite storage."""
    folder = tmp_path_factory.mktemp("studies-cli")
    result = effsearch(folder, "tune", TINY, "--trials", "2", "--epochs", "1", "--space", write_space(folder))
    assert result.returncode == 0, result.stderr
    return folder


# -- listing, refusing, deleting (in this order: the last test deletes the module's study) -----------


def test_studies_lists_each_study_with_runs_trials_and_front(sqlite_study) -> None:
    result = effsearch(sqlite_study, "studies")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert list(table) == [STUDY], result.stdout
    runs, trials, complete, failed, running, front, last = table[STUDY]
    assert (runs, trials, complete, failed, running) == ("2", "2", "2", "0", "0")
    assert 1 <= int(front) <= 2
    assert last[:2] == "20"  # a timestamp


def test_resuming_with_other_objectives_is_refused_with_one_line(sqlite_study) -> None:
    result = effsearch(
        sqlite_study, "tune", TINY, "--trials", "3", "--epochs", "1", "--space", sqlite_study / "space.toml",
        "--objectives", "accuracy,size_bytes",
    )
    assert result.returncode == 2
    # The "study ... in ..." banner comes first; the refusal is one line.
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error", "Traceback"))]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.strip().splitlines()[-1]
    assert "accuracy:maximize, latency_ms:minimize, energy_j:minimize" in errors[0], errors[0]
    assert "--objectives" in errors[0], errors[0]
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sqlite_study / 'studies' / 'effsearch.db'}")
    assert len(study.trials) == 2, "nothing was run"


def test_delete_asks_first_and_no_keeps_everything(sqlite_study) -> None:
    result = effsearch(sqlite_study, "studies", "--delete", STUDY, stdin="n\n")
    assert result.returncode != 0
    assert "delete study" in result.stderr
    assert STUDY in rows(effsearch(sqlite_study, "studies").stdout)
    assert (artifacts_of(sqlite_study) / "run-0" / "model.onnx").is_file()


def test_delete_with_yes_removes_the_study_and_its_artifacts(sqlite_study) -> None:
    artifacts = artifacts_of(sqlite_study)
    assert artifacts.parent == sqlite_study / "studies" and artifacts.name.startswith(f"{STUDY}-")
    assert artifacts.is_dir()
    result = effsearch(sqlite_study, "studies", "--delete", STUDY, "--yes")
    assert result.returncode == 0, result.stderr
    assert not artifacts.exists()
    assert (sqlite_study / "studies" / "effsearch.db").is_file(), "the storage itself stays"
    listing = effsearch(sqlite_study, "studies")
    assert listing.returncode == 0, listing.stderr
    assert rows(listing.stdout) == {}


# -- redaction on PostgreSQL -----------------------------------------------------------------------


@pytest.mark.postgres
def test_a_storage_password_is_never_printed(pg_db, tmp_path) -> None:
    # Trust auth ignores the password, so the commands work and show what they would print.
    url = f"postgresql://postgres:secret@127.0.0.1:5432/{pg_db}"
    outputs = [
        effsearch(tmp_path, "tune", TINY, "--storage", url, "--trials", "1", "--epochs", "1", "--space", write_space(tmp_path)),
        effsearch(tmp_path, "studies", "--storage", url),
        effsearch(tmp_path, "pareto", "--storage", url, "--study", "no-such-study"),  # an error naming the storage
        effsearch(tmp_path, "studies", "--storage", url, "--delete", STUDY, stdin="n\n"),
    ]
    codes = [r.returncode for r in outputs]
    assert codes[:2] == [0, 0], [r.stderr for r in outputs]
    assert codes[2] != 0 and codes[3] != 0
    for r in outputs:
        text = r.stdout + r.stderr
        assert "secret" not in text, text
        assert "postgres:***@" in "".join(text.split()), text  # rich may fold a long URL
    study = optuna.load_study(study_name=STUDY, storage=f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_db}")
    assert "secret" not in repr(study.user_attrs), "the recorded storage is redacted too"


# -- SQLite with two local workers -----------------------------------------------------------------


@pytest.mark.slow
def test_two_local_workers_on_one_sqlite_study_both_finish_without_lock_errors(tmp_path) -> None:
    space = write_space(tmp_path)
    args = [sys.executable, "-m", "effsearch", "tune", str(TINY), "--trials", "6", "--epochs", "1", "--space", str(space),
            "--study", "two-local"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "database is locked" not in out + err
        assert not any(line.startswith("Traceback") for line in err.splitlines()), err
    study = optuna.load_study(study_name="two-local", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    leads = [t for t in study.trials if t.user_attrs.get("lead")]
    finished = [t for t in leads if t.state in (TrialState.COMPLETE, TrialState.FAIL)]
    assert 6 <= len(finished) <= 7
    assert runs_counted(study) >= 6
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert sum(bool(t.user_attrs.get("baseline")) for t in leads) == 1
    shutil.rmtree(tmp_path / "studies")


def test_bad_options_of_tune_are_one_line_exit_2_and_create_nothing(tmp_path: Path) -> None:
    userfile = Path(__file__).resolve().parents[1] / "userfiles" / "tiny_mlp.py"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = {
        ("--trials", "-2"): ("--trials -2", "greater than or equal to 1"),
        ("--artifacts", str(blocker / "arts")): (f"--artifacts {blocker / 'arts'}", "choose a folder you can write to"),
    }
    for args, (named, fix) in cases.items():
        work = tmp_path / f"case-{args[0].strip('-')}"
        work.mkdir()
        result = effsearch(work, "tune", str(userfile), *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0] and fix in lines[0], result.stderr
        assert list(work.iterdir()) == [], "no study, no folder"
