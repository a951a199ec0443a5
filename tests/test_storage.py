"""Storage passwords are never shown or stored: every form of URL, and everywhere a user can see one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from effsearch.errors import StudyError
from effsearch.storage import display_url, open_storage, redact, resolve_url

TINY = Path(__file__).resolve().parent / "userfiles" / "tiny_mlp.py"
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n'

# (URL as given, what redact shows): every password holds "Zq9", which must never be shown.
FORMS = [
    ("postgresql://bob:Zq9@host/db", "postgresql://bob:***@host/db"),
    ("postgresql://bob:Zq9/ss@host/db", "postgresql://bob:***@host/db"),
    ("postgresql://bob:Zq9?ss@host/db", "postgresql://bob:***@host/db"),
    ("postgresql://bob:Zq9#ss@host/db", "postgresql://bob:***@host/db"),
    ("postgresql://bob:Zq9@ss@host/db", "postgresql://bob:***@host/db"),
    ("postgresql://bob:Zq9/x?y#z@w@host:5433/db?sslmode=require", "postgresql://bob:***@host:5433/db?sslmode=require"),
    ("postgresql://:Zq9@host/db", "postgresql://:***@host/db"),
    ("postgresql://:Zq9/ss@host/db", "postgresql://:***@host/db"),
    ("postgresql://bob@host/db?password=Zq9", "postgresql://bob@host/db?password=***"),
    ("postgresql://bob@host/db?sslmode=require&Password=Zq9", "postgresql://bob@host/db?sslmode=require&Password=***"),
    ("postgresql+psycopg://bob:Zq9%2Fss@host:5432/db", "postgresql+psycopg://bob:***@host:5432/db"),
    ("postgresql+psycopg://bob:Zq9%40s%3Fs%23@host/db", "postgresql+psycopg://bob:***@host/db"),
    ("mysql+pymysql://bob:Zq9@host/db", "mysql+pymysql://bob:***@host/db"),
    # Not parseable by SQLAlchemy (the port): masked all the same.
    ("postgresql://bob:Zq9/ss@host:notaport/db", "postgresql://bob:***@host:notaport/db"),
]


@pytest.mark.parametrize(("url", "shown"), FORMS, ids=[u for u, _ in FORMS])
def test_redact_masks_the_password_of_every_form(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "Zq9" not in display_url(url)


def test_display_url_drops_the_psycopg_driver_and_keeps_urls_without_a_password() -> None:
    assert display_url("postgresql+psycopg://:Zq9/ss@127.0.0.1:5432/db") == "postgresql://:***@127.0.0.1:5432/db"
    for plain in ("sqlite:////tmp/studies/effsearch.db", "sqlite:////tmp/a@b:c/x.db", "postgresql://bob@host/db",
                  "postgresql://host/db?application_name=me@there"):
        assert redact(plain) == plain


def test_resolve_url_encodes_a_password_at_sign_so_that_the_host_is_the_host() -> None:
    from sqlalchemy.engine import make_url

    url = make_url(resolve_url("postgresql://bob:Zq9@s#s@db.example:5433/effsearch"))
    assert (url.password, url.host, url.port, url.database) == ("Zq9@s#s", "db.example", 5433, "effsearch")
    assert url.drivername == "postgresql+psycopg"
    # An '@' in the query is no password's: a valid URL is left as it is.
    valid = "postgresql+psycopg://bob:Zq9@db.example/effsearch?application_name=me@there"
    assert resolve_url(valid) == valid


def test_a_storage_that_cannot_be_opened_is_named_without_its_password() -> None:
    with pytest.raises(StudyError) as caught:
        open_storage("postgresql+psycopg://bob:Zq9/ss@127.0.0.1:notaport/db", heartbeat_interval=None, grace_period=None)
    message = str(caught.value)
    assert message.startswith("cannot open storage postgresql+psycopg://bob:***@127.0.0.1:notaport/db: "), message
    assert "Zq9" not in message


# -- end to end on PostgreSQL -----------------------------------------------------------------------


def _effsearch(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "effsearch", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PGUSER": "postgres"},  # the URL names no user: libpq's default
    )


@pytest.mark.postgres
def test_a_password_without_a_user_name_is_shown_nowhere(pg_db, tmp_path: Path) -> None:
    # Trust auth ignores the password, so the commands connect and show all they would show. The
    # password holds '/', '?', '#' and '@', percent-encoded as a valid URL has them.
    url = f"postgresql://:Zq9%2Fx%3Fy%23z%40w@127.0.0.1:5432/{pg_db}"
    study = "redaction-e2e"
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    report, model = tmp_path / "report.html", tmp_path / "model.onnx"
    runs = [
        _effsearch(tmp_path, "tune", TINY, "--storage", url, "--study", study, "--trials", "1", "--epochs", "1", "--space", space),
        _effsearch(tmp_path, "pareto", "--storage", url, "--study", study),
        _effsearch(tmp_path, "dashboard", "--storage", url, "--study", study, "-o", report),
        _effsearch(tmp_path, "export", "--storage", url, "--study", study, "--trial", "0", "-o", model),
    ]
    assert [r.returncode for r in runs] == [0, 0, 0, 0], [r.stderr for r in runs]
    cards = sorted(p for p in tmp_path.iterdir() if p.name.startswith("model") and p.suffix in (".json", ".md"))
    assert len(cards) == 2, cards
    stored = optuna.load_study(study_name=study, storage=f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_db}").user_attrs
    seen = {
        **{f"output of {r.args[3]}": r.stdout + r.stderr for r in runs},
        "study metadata": json.dumps(stored),
        "report": report.read_text(),
        **{p.name: p.read_text() for p in cards},
    }
    for where, text in seen.items():
        assert "Zq9" not in text, f"the password is in the {where}"
    # The URL is still shown, masked, where it is recorded.
    for where in ("study metadata", "report", *(p.name for p in cards)):
        assert "://:***@127.0.0.1:5432/" in seen[where], f"the masked storage URL is in the {where}"
