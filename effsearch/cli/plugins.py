"""`effsearch plugins`: what is installed and usable here."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from effsearch.cli.app import app, out

if TYPE_CHECKING:  # the plugins load when the command runs, not when the CLI starts
    from effsearch.plugins import PluginInfo


def _kind(p: PluginInfo) -> str:
    from effsearch.plugins import EnergyMeter

    if p.obj is None:
        return "unknown"
    kind = p.kind.replace("_", " ")
    if p.kind == EnergyMeter.kind and p.error is None:
        return f"{kind} ({'measures' if p.obj.measured else 'estimates'}, {p.obj.scope})"
    return kind


@app.command()
def plugins() -> None:
    """List installed plugins: name, kind, origin, and whether each is usable here (and why not)."""
    from rich.markup import escape
    from rich.table import Table

    from effsearch.errors import PluginError
    from effsearch.plugins import ENV, KINDS, choose, discover

    table = Table(title="effsearch plugins", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("kind")
    table.add_column("from")
    table.add_column("usable here", overflow="fold")
    for p in discover():
        reason = p.unavailable
        if reason is None:
            usable = "yes" + (f": {p.detail}" if p.detail else "")
        else:
            usable = f"no: {reason}"
        table.add_row(p.name, _kind(p), p.origin, escape(usable))
    out.print(table)
    # The table already shows plugins that failed to load: no warnings about them while choosing.
    plugin_log = logging.getLogger("effsearch.plugins")
    level = plugin_log.level
    plugin_log.setLevel(logging.ERROR)
    try:
        for kind in KINDS:
            try:
                chosen = choose(kind).name
            except PluginError:
                chosen = "none usable"
            out.print(f"default {kind.replace('_', ' ')}: {chosen}")
    finally:
        plugin_log.setLevel(level)
    if os.environ.get(ENV) is not None:
        out.print(f"{ENV}={os.environ[ENV]!r}: only these third-party plugins load; built-ins always do")
