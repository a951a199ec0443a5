"""Plugins: the kinds (energy meters, latency targets) and their discovery through entry points.

`kinds` declares each kind by its abstract base; `contract` reads from those bases what a plugin must
provide; `registry` finds the `effsearch.plugins` entry points, lazily and once, and chooses among them.
"""

from __future__ import annotations

from effsearch.plugins.contract import Contract, contract_error, contract_of
from effsearch.plugins.kinds import BASES, KINDS, EnergyMeter, LatencyTarget, Plugin, base_of
from effsearch.plugins.registry import (
    ENV,
    GROUP,
    PluginInfo,
    choose,
    choose_energy_meter,
    choose_latency_target,
    discover,
    get_plugin,
    plugins_of_kind,
    reload,
)

__all__ = [
    "BASES",
    "ENV",
    "GROUP",
    "KINDS",
    "Contract",
    "EnergyMeter",
    "LatencyTarget",
    "Plugin",
    "PluginInfo",
    "base_of",
    "choose",
    "choose_energy_meter",
    "choose_latency_target",
    "contract_error",
    "contract_of",
    "discover",
    "get_plugin",
    "plugins_of_kind",
    "reload",
]
