"""`effsearch plugins`: what is installed and usable here."""

from __future__ import annotations

from effsearch.cli.app import app, out


@app.command()
def plugins() -> None:
    """List installed plugins: name, kind, origin, and whether each is usable here."""
    from rich.markup import escape
    from rich.table import Table

    from effsearch.plugins import discover

    table = Table(title="effsearch plugins")
    for col in ("name", "kind", "from", "usable here"):
        table.add_column(col, overflow="fold")
    for p in discover():
        reason = p.unavailable
        measured = getattr(p.obj, "measured", None)
        kind = p.kind + ("" if measured is None else (" (measures)" if measured else " (estimates)"))
        table.add_row(p.name, kind, p.origin, "yes" if reason is None else escape(f"no: {reason}"))
    out.print(table)


