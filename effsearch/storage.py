"""Where studies live: URLs, redaction, Optuna RDB storage or its gRPC proxy, and finding a study by name."""

from __future__ import annotations

import logging
import random
import re
import time
from pathlib import Path
from urllib.parse import quote, unquote

import warnings

import optuna

from effsearch.errors import StudyError

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

__all__ = ["DEFAULT_STORAGE", "resolve_url", "redact", "display_url", "check_writable", "open_storage", "open_existing", "proxy_address", "proxied_storage", "study_names", "pick_study_name", "artifacts_root"]

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///studies/effsearch.db"


def resolve_url(url: str | None) -> str:
    """The storage URL to use: the default SQLite file under the working directory, made absolute.

    A plain `postgresql://` URL gets the psycopg 3 driver, and a password's '@' is percent-encoded:
    SQLAlchemy ends the user info at the first '@', and would take the password's tail for the host.
    A `grpc://host:port` URL (a storage proxy, `effsearch storage-proxy`) is kept as given, checked.
    Nothing is created here.
    """
    if url and url.startswith("grpc://"):
        proxy_address(url)
        return url
    url = _encode_password_at(url or DEFAULT_STORAGE)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///")).resolve()
        return f"sqlite:///{path}"
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise StudyError("a postgresql:// storage needs psycopg 3: pip install 'effsearch[postgres]'") from exc
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


# scheme://rest: the part of a URL before its user info.
_SCHEME = re.compile(r"^([A-Za-z][\w+.-]*://)(.*)$", re.DOTALL)
# A password given as a query key (libpq reads `?password=`); SQLAlchemy renders it as given.
_PASSWORD_KEY = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_MASK = "***"


def _userinfo(url: str) -> tuple[str, str, str | None, str] | None:
    """(scheme://, user, password or None, what follows the user info), or None for a URL without user info.

    The user info ends at the LAST '@' of the URL, so that a password holding '@', '/', '?' or '#' (not
    percent-encoded, as a valid URL would have it) is taken whole. A query holding '@' then makes more of
    the URL look like a password: it is masked too, never shown.
    """
    m = _SCHEME.match(url)
    if m is None or m.group(2).startswith("/"):  # not a URL, or one without a host (sqlite:///path)
        return None
    scheme, rest = m.groups()
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return None
    user, colon, password = userinfo.partition(":")
    return scheme, user, password if colon else None, after


def _encode_password_at(url: str) -> str:
    """The URL with each '@' SQLAlchemy would end the user info at percent-encoded, while it would leave
    an '@' in the host (no host has one): `bob:p@ss@host` -> `bob:p%40ss@host`. An '@' in the query stays."""
    from sqlalchemy.engine import make_url

    for _ in range(url.count("@")):
        try:
            host = make_url(url).host
        except Exception:
            return url
        m = _SCHEME.match(url)
        if not host or "@" not in host or m is None:
            break
        url = m.group(1) + m.group(2).replace("@", "%40", 1)
    return url


def redact(url: str) -> str:
    """The URL with any password replaced by ***: in the user info and as a `password=` query key.

    Parsed and rendered by SQLAlchemy (`make_url`, `hide_password=True`) after the user info is split off
    at its last '@'; a URL that SQLAlchemy cannot parse is masked from that split alone.
    """
    parts = _userinfo(url)
    if parts is None or parts[2] is None:
        return _PASSWORD_KEY.sub(rf"\1{_MASK}", url)
    scheme, user, password, after = parts
    from sqlalchemy.engine import make_url

    try:
        # Percent-encoded, any password parses; it is not shown, so its encoding does not matter.
        parsed = make_url(f"{scheme}{quote(user, safe='%')}:{quote(password, safe='')}@{after}")
        shown = parsed.render_as_string(hide_password=True)
    except Exception:
        shown = f"{scheme}{user}:{_MASK}@{after}"
    return _PASSWORD_KEY.sub(rf"\1{_MASK}", shown)


def _scrub(text: str, url: str) -> str:
    """`text` (an error message about `url`) with the URL's passwords, as given and decoded, masked."""
    parts = _userinfo(url)
    secrets = [m.group(0).split("=", 1)[1] for m in _PASSWORD_KEY.finditer(url)]
    if parts is not None and parts[2]:
        secrets.append(parts[2])
    for secret in (s for raw in secrets for s in {raw, unquote(raw)} if s):
        text = text.replace(secret, _MASK)
    return text


def display_url(url: str) -> str:
    """The storage URL as a user would pass it: password redacted, the psycopg driver name dropped."""
    url = redact(url)
    if url.startswith("postgresql+psycopg://"):
        url = "postgresql://" + url.removeprefix("postgresql+psycopg://")
    return url


def check_writable(folder: Path, option: str) -> None:
    """Refuse a folder that cannot be made or written, before anything is created (nothing is made here)."""
    import tempfile

    ancestor = folder.expanduser().absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    problem = None
    if not ancestor.is_dir():
        problem = f"{ancestor} is not a folder"
    else:
        try:
            with tempfile.TemporaryFile(dir=ancestor):
                pass
        except OSError as exc:
            problem = f"{ancestor} is not writable ({exc.strerror or exc})"
    if problem:
        raise StudyError(f"{option} {folder}: {problem}; choose a folder you can write to")


def artifacts_root(url: str) -> Path:
    """Trial artifacts go beside a SQLite file's `studies/` folder, else under ./studies."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent
    return Path("studies").resolve()


class _RDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose heartbeat survives a dropped connection: a missed beat, not a dead thread.

    Optuna beats from a bare thread: one error there prints a traceback and stops the beats for good, so
    the trial would later be failed as lost while its run goes on. The next beat reconnects (pool_pre_ping).
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:
            log.warning("missed a heartbeat (%s); retrying at the next one", type(exc).__name__)


def proxy_address(url: str) -> tuple[str, int]:
    """(host, port) of a `grpc://host:port` storage proxy URL; StudyError for one without a port."""
    m = re.fullmatch(r"grpc://(\[[^\]]+\]|[^:/\[\]]+):(\d+)/?", url)
    if m is None:
        raise StudyError(f"storage {url}: a storage proxy is given as grpc://HOST:PORT, e.g. grpc://127.0.0.1:13000")
    return m.group(1).strip("[]"), int(m.group(2))


def _open_proxy(url: str, wait_s: float = 20.0) -> optuna.storages.BaseStorage:
    """A client of the storage proxy at `url`, once it answers (a worker started before it waits up to `wait_s`)."""
    host, port = proxy_address(url)
    try:
        import grpc  # noqa: F401
    except ImportError as exc:
        raise StudyError("a grpc:// storage needs grpcio: pip install 'effsearch[grpc]'") from exc
    proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=wait_s)
    except ConnectionError as exc:
        proxy.close()
        raise StudyError(
            f"no storage proxy answers at {url} after {wait_s:.0f} s; start one with "
            f"`effsearch storage-proxy --storage URL --port {port}` on {host}"
        ) from exc
    return proxy


def open_storage(url: str, heartbeat_interval: int | None = 10, grace_period: int | None = 30) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage with heartbeats, so a killed worker's trial does not stay RUNNING.

    A trial whose worker stopped beating for `grace_period` seconds is failed by the next worker that
    starts a trial, and queued again once with the same parameters. A `grpc://` URL opens a client of the
    storage proxy instead: Optuna's heartbeats do not pass through it, effsearch's lease does (study/lease.py).
    """
    if url.startswith("grpc://"):
        return _open_proxy(url)
    if url.startswith("sqlite"):
        # Wait for a lock instead of failing with "database is locked" when two processes write.
        kwargs: dict = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_pre_ping": True}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1) if heartbeat_interval else None
    for attempt in range(5):
        try:
            return _RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=retry,
            )
        except Exception as exc:
            # Workers starting together race to create the tables; the losers find them on a retry.
            if attempt < 4 and type(exc).__name__ in ("IntegrityError", "ProgrammingError", "OperationalError"):
                time.sleep(0.2 + random.random() * (attempt + 1))
                continue
            first = (str(exc).splitlines() or [""])[0]
            raise StudyError(f"cannot open storage {redact(url)}: {type(exc).__name__}: {_scrub(first, url)}") from exc
    raise AssertionError("unreachable")


def proxied_storage(url: str | None) -> optuna.storages.BaseStorage:
    """The storage a storage proxy serves: the RDB storage at `url`, without heartbeats, with Optuna's cache
    of finished trials (safe: every worker's writes go through this one process or the database)."""
    url = resolve_url(url)
    if url.startswith("grpc://"):
        raise StudyError(f"--storage {url}: a storage proxy serves a database (postgresql://... or sqlite:///...), not another proxy")
    return optuna.storages.get_storage(open_storage(url, heartbeat_interval=None, grace_period=None))


def open_existing(url: str | None) -> tuple[optuna.storages.BaseStorage, str]:
    """The storage of the read-only commands (pareto, export, dashboard, studies), without heartbeats.

    Never creates anything: a SQLite file that does not exist is an error, not a new empty storage.
    """
    url = resolve_url(url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise StudyError(f"no study storage at {url.removeprefix('sqlite:///')}; run `effsearch tune FILE` first")
    return open_storage(url, heartbeat_interval=None, grace_period=None), url


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def pick_study_name(storage: optuna.storages.BaseStorage, name: str | None, url: str) -> str:
    """`name` if it exists; with no name, the only study in the storage; else a clear error listing them."""
    names = study_names(storage)
    if name is not None:
        if name not in names:
            listed = ", ".join(names) or "none"
            raise StudyError(f"no study {name!r} in {redact(url)}; studies there: {listed}")
        return name
    if len(names) == 1:
        return names[0]
    if not names:
        raise StudyError(f"no study in {redact(url)}; run `effsearch tune FILE` first")
    raise StudyError(f"{redact(url)} holds {len(names)} studies ({', '.join(names)}); choose one with --study NAME")
