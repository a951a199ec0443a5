"""Plugin discovery: the `effsearch.plugins` entry-point group, loaded lazily, once."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from effsearch.errors import PluginError

__all__ = ["PluginInfo", "discover", "plugins_of_kind", "get_plugin", "choose_energy_meter", "choose_latency_target"]

log = logging.getLogger(__name__)

GROUP = "effsearch.plugins"
KINDS = ("energy_meter", "latency_target")


@dataclass(frozen=True)
class PluginInfo:
    """One entry point: what it loaded, or why it did not."""

    name: str
    origin: str
    obj: Any = None
    error: str | None = None

    @property
    def kind(self) -> str:
        return getattr(self.obj, "kind", "?") if self.obj is not None else "?"

    @property
    def unavailable(self) -> str | None:
        """None when usable here, else the reason."""
        if self.error is not None:
            return self.error
        try:
            return self.obj.unavailable()
        except Exception as exc:
            return f"availability check raised {type(exc).__name__}: {exc}"


@functools.cache
def discover() -> tuple[PluginInfo, ...]:
    """Load every entry point once; EFFSEARCH_PLUGINS (comma-separated names) restricts which load."""
    wanted = {n.strip() for n in os.environ.get("EFFSEARCH_PLUGINS", "").split(",") if n.strip()}
    found = []
    for ep in entry_points(group=GROUP):
        if wanted and ep.name not in wanted:
            continue
        origin = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ep.value
        try:
            obj = ep.load()
        except Exception as exc:
            log.warning("plugin %s (%s) failed to load: %s: %s", ep.name, origin, type(exc).__name__, exc)
            found.append(PluginInfo(ep.name, origin, error=f"failed to load: {type(exc).__name__}: {exc}"))
            continue
        if getattr(obj, "kind", None) not in KINDS:
            found.append(PluginInfo(ep.name, origin, error=f"not a plugin: {ep.value} has no kind among {KINDS}"))
            continue
        found.append(PluginInfo(ep.name, origin, obj))
    return tuple(sorted(found, key=lambda p: p.name))


def plugins_of_kind(kind: str) -> list[PluginInfo]:
    return [p for p in discover() if p.error is None and p.kind == kind]


def get_plugin(kind: str, name: str) -> Any:
    """The plugin class `name` of `kind`, usable here, or a PluginError naming the alternatives."""
    for p in plugins_of_kind(kind):
        if p.obj.name == name or p.name == name:
            reason = p.unavailable
            if reason:
                raise PluginError(f"{kind.replace('_', ' ')} {name!r} is not usable here: {reason}")
            return p.obj
    names = ", ".join(p.name for p in plugins_of_kind(kind)) or "none installed"
    raise PluginError(f"no {kind.replace('_', ' ')} named {name!r}; installed: {names} (see `effsearch plugins`)")


def _best(kind: str) -> Any:
    usable = [p for p in plugins_of_kind(kind) if not p.unavailable]
    if not usable:
        raise PluginError(f"no usable {kind.replace('_', ' ')} plugin; run `effsearch plugins` to see why")
    # Measured beats estimated, then the plugin's own priority.
    return max(usable, key=lambda p: (bool(getattr(p.obj, "measured", True)), p.obj.priority)).obj


def choose_energy_meter(name: str | None = None) -> Any:
    return get_plugin("energy_meter", name) if name else _best("energy_meter")


def choose_latency_target(name: str | None = None) -> Any:
    return get_plugin("latency_target", name) if name else _best("latency_target")
