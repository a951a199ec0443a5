"""`effsearch dashboard`: write the study's HTML report, or serve optuna-dashboard on its storage."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

import typer

from effsearch.cli.app import StorageOpt, StudyOpt, app, err, load_study, out
from effsearch.errors import EffsearchError


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def dashboard(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--out", help="HTML file to write (default: studies/<study>-report.html beside the storage).")
    ] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Serve optuna-dashboard on the same storage instead.")] = False,
    host: Annotated[str, typer.Option("--host", help="Address optuna-dashboard binds to (with --serve).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port for optuna-dashboard (with --serve).")] = 8080,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow --host to be a non-loopback address (optuna-dashboard has no authentication).")
    ] = False,
) -> None:
    """Write a self-contained HTML report of a study (plots, front, export commands), or --serve optuna-dashboard."""
    if serve and output is not None:
        raise typer.BadParameter("--serve and -o/--out are two ways to look at a study; choose one")
    if not serve and (host != "127.0.0.1" or port != 8080 or allow_remote):
        raise typer.BadParameter("--host, --port and --allow-remote go with --serve")
    if serve:
        _serve(study, storage, host, port, allow_remote)
        return
    from effsearch.report.html import render_html
    from effsearch.report.info import build_report
    from effsearch.storage import artifacts_root

    st, url = load_study(study, storage)
    # The default name comes from the storage: keep it a plain file name inside studies/.
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", st.study_name).lstrip(".") or "study"
    path = output if output is not None else artifacts_root(url) / f"{safe}-report.html"
    report = build_report(st, url)
    page = render_html(report)
    path = path.expanduser().absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise EffsearchError(f"cannot write the report to {path}: {exc.strerror or exc}; choose another -o/--out") from exc
    for note in report.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    out.print(f"wrote {path} ({len(report.front)} front trial(s), {len(report.points)} trial(s)); open it in a browser", markup=False, highlight=False)


def _serve(study: str | None, storage: str | None, host: str, port: int, allow_remote: bool) -> None:
    if not _loopback(host):
        if not allow_remote:
            raise typer.BadParameter(
                f"--host {host} would expose optuna-dashboard, which has no authentication, beyond this machine; "
                "pass --allow-remote to do it anyway, or tunnel to 127.0.0.1 (ssh -L)"
            )
        err.print(
            f"warning: optuna-dashboard has no authentication: anyone who can reach {host}:{port} can read and change this storage",
            markup=False,
            highlight=False,
        )
    try:
        import optuna_dashboard
    except ImportError as exc:
        raise EffsearchError("--serve needs optuna-dashboard, which effsearch installs: pip install optuna-dashboard") from exc
    from effsearch.storage import display_url
    from effsearch.storage import open_existing, pick_study_name

    st, url = open_existing(storage)
    if study is not None:
        pick_study_name(st, study, url)  # a named study must exist; fails clearly otherwise
    err.print(f"serving optuna-dashboard for {display_url(url)} at http://{host}:{port}/ (Ctrl-C stops it)", markup=False, highlight=False)
    try:
        optuna_dashboard.run_server(st, host=host, port=port)
    except KeyboardInterrupt:
        err.print("stopped")
    except OSError as exc:
        raise EffsearchError(f"cannot serve on {host}:{port}: {exc.strerror or exc}; choose another --port") from exc
