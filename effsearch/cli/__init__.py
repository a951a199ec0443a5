"""The `effsearch` command line (typer + rich; only this package prints)."""

from __future__ import annotations

import sys
import traceback

import typer

from effsearch.cli.app import app
from effsearch.errors import EffsearchError

# Each module adds its commands to `app`.
from effsearch.cli import dashboard, export, plugins, proxy, remeasure, report, studies, tune  # noqa: E402,F401

__all__ = ["app", "main"]


def _bad_option(exc: typer.BadParameter, argv: list[str]) -> str:
    """The option's name and the value given, then what is wrong with it: "--trials -2: Input should be ..."."""
    param = getattr(exc, "param", None)
    opts = list(getattr(param, "opts", None) or [])
    if not opts:
        return str(exc)
    given = None
    for i, arg in enumerate(argv):
        if arg in opts and i + 1 < len(argv):
            given = argv[i + 1]
        elif "=" in arg and arg.split("=", 1)[0] in opts:
            given = arg.split("=", 1)[1]
    shown = f"{opts[-1] if opts[-1].startswith('--') else opts[0]}" + (f" {given}" if given is not None else "")
    return f"{shown}: {exc}"


def main() -> None:
    """Entry point: one line per error unless --debug; exit 2 for usage and user-file errors, 130 on Ctrl-C."""
    debug = "--debug" in sys.argv
    try:
        rc = app(standalone_mode=False)
    except EffsearchError as exc:
        if debug:
            traceback.print_exc()
            if getattr(exc, "detail", ""):
                print(exc.detail, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted; finished trials are kept, rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.BadParameter as exc:
        print(f"error: {_bad_option(exc, sys.argv[1:])}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        # typer vendors click (typer._click, no `click` module); its usage errors derive from TyperException.
        if isinstance(exc, typer.TyperException) and hasattr(exc, "show"):
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
    if rc == 130:
        # typer turns Ctrl-C inside a command into exit code 130 without raising KeyboardInterrupt.
        print("interrupted; finished trials are kept, rerun the same command to resume", file=sys.stderr)
    sys.exit(rc if isinstance(rc, int) else 0)
