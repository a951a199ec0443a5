"""Shared test helpers: the real CLI as a subprocess, the examples, tiny user files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Pruned channel counts round to what this CPU's kernels block by (16 with AVX-512, 8 otherwise:
# compress/prune/common.channel_multiple). The tests' expected counts assume 8 whatever CPU runs them;
# the variable reaches the CLI and rank processes the tests start too.
os.environ.setdefault("EFFSEARCH_CHANNEL_MULTIPLE", "8")


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


def effsearch(*args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `effsearch ARGS` (the real command line) in cwd; returns the completed process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "effsearch", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """`effsearch` as a function of (*args, cwd=..., timeout=..., env=...)."""
    return effsearch


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run `effsearch ARGS` in tmp_path (so the default storage lands there); returns the completed process."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return effsearch(*args, cwd=cwd or tmp_path, timeout=timeout, env=env)

    return run


@pytest.fixture(scope="session")
def digits_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real two-run study on the digits CNN, made once for the session: (working directory, storage URL).

    Tests that use it only read it; one that edits a study works on a copy.
    """
    cwd = tmp_path_factory.mktemp("digits-study")
    r = effsearch("tune", str(EXAMPLES / "digits_cnn.py"), "--trials", "2", "--epochs", "1", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return cwd, f"sqlite:///{cwd / 'studies' / 'effsearch.db'}"


@pytest.fixture
def write_user_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a user file from source text (dedented) and return its path."""

    def write(source: str, name: str = "my_model.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path

    return write


# -- PostgreSQL (on 127.0.0.1:5432, trust auth; .ci/run starts it) ------------------------------------

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"


def _drop_connections(admin, db: str) -> int:
    """Terminate every connection to db except the admin one; returns how many were dropped."""
    row = admin.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (db,),
    ).fetchone()
    return int(row[0])


@pytest.fixture(scope="module")
def pg_db():
    """A fresh database for the test module (its name), dropped afterwards. Missing PostgreSQL fails in CI."""
    psycopg = pytest.importorskip("psycopg")
    name = f"effsearch_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        message = f"no PostgreSQL on 127.0.0.1:5432 ({str(exc).strip()}); .ci/run starts it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            _drop_connections(admin, name)
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def drop_connections() -> Iterator[Callable[[str], int]]:
    """A function that terminates every connection to a database and returns how many it dropped."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        yield lambda db: _drop_connections(admin, db)
