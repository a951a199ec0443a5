"""Entry points that load but are not usable plugins: a wrong kind, and a name another plugin holds."""

from __future__ import annotations

from effsearch_builtin_plugins.energy_estimate import EstimateMeter


class NotAPlugin:
    kind = "compressor"
    name = "notaplugin"


class SecondEstimate(EstimateMeter):
    name = "estimate"  # the built-in's name: energy_source would be ambiguous
