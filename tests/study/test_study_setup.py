"""What a study fixes when it is created: a resume or another worker with another set-up, search space or
limits is refused in one line; each worker runs with a seed of its own; studies of one name in two
storages keep their artifacts apart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from effsearch import record
from effsearch.constraints import Constraints
from effsearch.errors import StudyError
from effsearch.objectives import parse_objectives
from effsearch.space import load_space
from effsearch.study import Hardware, Instruments, TuneSettings, open_study
from effsearch.userfile import load_user_file, probe

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "userfiles" / "tiny_mlp.py"
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32", "int8_dynamic"]\n'
OTHER_PRECISIONS = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n'
STUDY = "setup"


def effsearch(cwd: Path, *args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI; one that outlives `timeout` is killed with its children and fails the test."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "effsearch", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"`effsearch {' '.join(map(str, args[:3]))}` still ran after {timeout:.0f} s; its last output: {err[-600:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error", "Traceback"))]


def load(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder / 'studies' / 'effsearch.db'}")


# -- a real study of two runs, resumed by a second worker ---------------------------------------------


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    """A folder holding a study of tests/userfiles/tiny_mlp.py: two runs by one worker, then one by a second."""
    folder = tmp_path_factory.mktemp("study-setup")
    (folder / "space.toml").write_text(SPACE)
    for trials in (2, 3):
        proc = effsearch(folder, "tune", TINY, "--study", STUDY, "--trials", trials, "--epochs", 1, "--space", folder / "space.toml")
        assert proc.returncode == 0, proc.stderr
    return folder


def test_a_second_worker_draws_and_trains_with_a_seed_of_its_own(tuned) -> None:
    study = load(tuned)
    leads = sorted(record.read_all(study), key=lambda t: t.run)
    leads = [t for t in leads if t.lead]
    assert [t.run for t in leads] == [1, 2, 3]
    first_a, first_b = leads[1], leads[2]  # each worker's first sampled run (the baseline is queued)
    assert first_a.params != first_b.params, "the second worker replayed the first one's random draws"
    assert [t.config["seed"] for t in leads] == [0, 0, 1], "each run records the seed its worker trained with"
    assert [w["seed"] for w in record.read_workers(study)] == [0, 1]


def test_a_resume_keeps_the_study_s_own_artifact_folder(tuned) -> None:
    study = load(tuned)
    folder = Path(record.read_meta(study).artifacts)
    assert folder.parent == tuned / "studies" and folder.name.startswith(f"{STUDY}-")
    onnx = [Path(t.user_attrs["onnx"]) for t in study.get_trials() if t.user_attrs.get("onnx")]
    assert len(onnx) >= 3 and all(p.is_relative_to(folder) and p.is_file() for p in onnx), onnx


def test_a_resume_with_other_precision_choices_is_refused_at_once_not_failed_forever(tuned) -> None:
    (tuned / "other.toml").write_text(OTHER_PRECISIONS)
    before = len(load(tuned).get_trials())
    t0 = time.monotonic()
    proc = effsearch(tuned, "tune", TINY, "--study", STUDY, "--trials", 4, "--epochs", 1, "--space", tuned / "other.toml", timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    (line,) = error_lines(proc.stderr)
    assert "precision over fp32, int8_dynamic, not fp32" in line and "--space" in line, line
    assert len(load(tuned).get_trials()) == before, "nothing was asked of Optuna"


# -- refusals in-process: a study created, then opened again otherwise (no training) ------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The user file, its probe, its objectives, and a storage whose tables are made once for the module."""
    uf = load_user_file(TINY)
    info, _ = probe(uf)
    keys, dirs = parse_objectives(None, uf.metric_key, uf.registration.metric_direction)
    return uf, info, keys, dirs, tmp_path_factory.mktemp("studies") / "studies.db"


def settings_of(made, name: str, db: Path | None = None, **changes) -> TuneSettings:
    _, _, keys, dirs, shared = made
    db = db or shared
    base = TuneSettings(
        study_name=name, storage_url=f"sqlite:///{db}", trials=1, space=load_space(None, 1), objectives=keys,
        directions=dirs, epochs=1, artifacts=db.parent,
    )
    return replace(base, **changes)


def opened(made, settings: TuneSettings, tools: Instruments | None = None) -> optuna.Study:
    uf, info, _, _, _ = made
    return open_study(settings, uf=uf, probe=info, tools=tools or Instruments.choose())


@pytest.fixture(scope="module")
def plain(made) -> str:
    """A study created with the default set-up and no limits."""
    opened(made, settings_of(made, "plain"))
    return "plain"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"epochs": 2}, "epochs 1, not 2; pass --epochs 1 to resume it"),
        ({"latency_threads": 2}, "latency threads 1, not 2; pass --latency-threads 1 to resume it"),
        ({"constraints": Constraints(max_size_mb=1.0)}, "created without limits, not with --max-size-mb 1"),
    ],
)
def test_a_resume_with_another_set_up_or_limit_is_refused_in_one_line(made, plain, change, said) -> None:
    with pytest.raises(StudyError, match="or choose another --study") as refused:
        opened(made, settings_of(made, plain, **change))
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_the_study_s_own_set_up_resumes_it_and_it_records_its_channel_multiple(made, plain) -> None:
    from effsearch.compress.prune.common import channel_multiple

    study = opened(made, settings_of(made, plain))
    assert record.read_meta(study).channel_multiple == channel_multiple()


def test_limits_are_the_study_s_and_the_same_limits_resume_it(made) -> None:
    limits = Constraints(max_latency_ms=5.0)
    opened(made, settings_of(made, "limited", constraints=limits))
    with pytest.raises(StudyError, match="--max-latency-ms 5 \\(and no other limit\\)"):
        opened(made, settings_of(made, "limited"))
    with pytest.raises(StudyError, match="with the limits --max-latency-ms 5, not --max-latency-ms 3"):
        opened(made, settings_of(made, "limited", constraints=Constraints(max_latency_ms=3.0)))
    opened(made, settings_of(made, "limited", constraints=limits))


def test_a_worker_with_another_energy_meter_is_refused(made, plain) -> None:
    tools = Instruments.choose()
    other = replace(tools, meter_cls=type("OtherMeter", (tools.meter_cls,), {"name": "other-meter"}))
    with pytest.raises(StudyError, match=f"energy meter {tools.meter_cls.name}, not other-meter; pass --energy-meter {tools.meter_cls.name}"):
        opened(made, settings_of(made, plain), other)


def test_a_cpu_worker_refuses_to_join_a_study_that_trains_in_fp16(made) -> None:
    opened(made, settings_of(made, "gpu-made", space=load_space(None, 1, device="cuda")))
    with pytest.raises(StudyError, match="this CPU host cannot train in fp16"):
        opened(made, settings_of(made, "gpu-made", space=load_space(None, 1, device="cpu"), hardware=Hardware("cpu", 1)))


# -- artifact folders ---------------------------------------------------------------------------------


def test_studies_of_one_name_in_two_storages_keep_apart_and_delete_their_own(made, tmp_path) -> None:
    a, b = (opened(made, settings_of(made, "s", db=tmp_path / db)) for db in ("a.db", "b.db"))
    folders = [Path(record.read_meta(s).artifacts) for s in (a, b)]
    assert folders[0] != folders[1], "two studies named 's' write to one folder"
    for folder in folders:
        (folder / "run-0").mkdir(parents=True)
        (folder / "run-0" / "model.onnx").write_bytes(b"onnx")
    proc = effsearch(tmp_path, "studies", "--storage", f"sqlite:///{tmp_path / 'a.db'}", "--delete", "s", "--yes", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not folders[0].exists()
    assert (folders[1] / "run-0" / "model.onnx").is_file(), "deleting one study removed the other's models"


# -- the workers' counter -----------------------------------------------------------------------------

def _ranks_of_workers_joining_together(url: str, n: int = 4) -> list[int]:
    """Ranks of n workers joining one study at the same moment, each on its own connection."""
    from effsearch.storage import open_storage

    optuna.create_study(study_name="race", storage=url)
    storages = [open_storage(url, None, None) for _ in range(n)]
    study_id = storages[0].get_study_id_from_name("race")
    together = threading.Barrier(n)

    def join(storage) -> int:
        together.wait()
        return record.join_workers(storage, study_id, uuid.uuid4().hex, lambda rank: {"seed": rank})

    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(join, storages))


def test_workers_joining_together_on_sqlite_each_get_their_own_rank(tmp_path) -> None:
    assert _ranks_of_workers_joining_together(f"sqlite:///{tmp_path / 'race.db'}") == [0, 1, 2, 3]


@pytest.mark.postgres
def test_workers_joining_together_on_postgresql_each_get_their_own_rank(pg_db) -> None:
    assert _ranks_of_workers_joining_together(f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_db}") == [0, 1, 2, 3]
