"""Plugin discovery: the `effsearch.plugins` entry-point group, loaded lazily, once.

Built-in plugins are the `effsearch` distribution's own entry points and always load. EFFSEARCH_PLUGINS,
when set, names the other plugins that may load (comma-separated; set but empty loads none of them), so
that a broken third-party plugin can be switched off without uninstalling it. A plugin that fails to
import is recorded with its reason, never raised.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, distributions
from typing import Any

from effsearch.errors import PluginError
from effsearch.plugins.contract import contract_error
from effsearch.plugins.kinds import EnergyMeter, LatencyTarget

__all__ = [
    "ENV",
    "GROUP",
    "PluginInfo",
    "discover",
    "reload",
    "plugins_of_kind",
    "get_plugin",
    "choose",
    "choose_energy_meter",
    "choose_latency_target",
]

log = logging.getLogger(__name__)

GROUP = "effsearch.plugins"
BUILTIN_DIST = "effsearch"
ENV = "EFFSEARCH_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """One entry point: what it loaded, or why it did not."""

    name: str
    origin: str
    obj: Any = None
    error: str | None = None
    builtin: bool = False

    @property
    def kind(self) -> str:
        return str(getattr(self.obj, "kind", "?")) if self.obj is not None else "?"

    @functools.cached_property
    def unavailable(self) -> str | None:
        """None when usable here, else the reason (asked of the plugin once per process)."""
        return self.error if self.error is not None else self._ask("unavailable", "its availability check")

    @property
    def detail(self) -> str | None:
        """The plugin's own short description of what it uses here, if it gives one."""
        return None if self.error is not None else self._ask("describe", "describe()")

    def _ask(self, method: str, what: str) -> str | None:
        """The plugin's answer to one of its class methods, as text; an exception it raises becomes the answer."""
        try:
            answer = getattr(self.obj, method)()
        except Exception as exc:
            return f"{what} raised {type(exc).__name__}: {exc}"
        return None if answer is None else str(answer)


# -- finding entry points (without importing them) ------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    ep: EntryPoint
    dist: str
    origin: str
    builtin: bool


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted() -> set[str] | None:
    raw = os.environ.get(ENV)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


@functools.cache
def _entries() -> tuple[tuple[_Entry, ...], tuple[PluginInfo, ...]]:
    """Entry points allowed to load (built-ins first, then by name), and rows for those not loaded."""
    wanted = _wanted()
    allowed: list[_Entry] = []
    rows: list[PluginInfo] = []
    seen: set[str] = set()
    for dist in distributions():
        # Like importlib.metadata.entry_points(): the first distribution of a name on sys.path wins.
        try:
            dist_name = dist.metadata["Name"] or ""
            key = _normalize(dist_name)
            if not key or key in seen:
                continue
            seen.add(key)
            eps = [ep for ep in dist.entry_points if ep.group == GROUP]
            builtin = key == BUILTIN_DIST
            origin = f"{dist_name} {dist.version}" + (" (built-in)" if builtin else "")
        except Exception as exc:  # broken metadata of one distribution must not hide the others
            log.debug("skipping a distribution with unreadable metadata: %s", exc)
            continue
        for ep in eps:
            if builtin or wanted is None or ep.name in wanted:
                allowed.append(_Entry(ep, dist_name, origin, builtin))
            else:
                rows.append(PluginInfo(ep.name, origin, error=f"not loaded: {ENV} does not name it", builtin=builtin))
    if wanted:
        present = {e.ep.name for e in allowed}
        for name in sorted(wanted - present):
            rows.append(PluginInfo(name, "-", error=f"named in {ENV} but no installed plugin has this name"))
    allowed.sort(key=lambda e: (not e.builtin, e.ep.name, e.dist))
    return tuple(allowed), tuple(rows)


_loaded: dict[tuple[str, str], PluginInfo] = {}


def _load(entry: _Entry) -> PluginInfo:
    """Import one entry point, once; failures (any exception, even SystemExit) become the row's error."""
    key = (entry.dist, entry.ep.name)
    if key not in _loaded:
        try:
            obj = entry.ep.load()
        except (Exception, SystemExit) as exc:
            info = PluginInfo(entry.ep.name, entry.origin, error=f"failed to load: {type(exc).__name__}: {exc}", builtin=entry.builtin)
        else:
            error = contract_error(obj, entry.ep.value)
            info = PluginInfo(entry.ep.name, entry.origin, None if error else obj, error, entry.builtin)
        _loaded[key] = info
    return _loaded[key]


# -- the registry ---------------------------------------------------------------------------------


@functools.cache
def discover() -> tuple[PluginInfo, ...]:
    """Every plugin of the group, loaded once: usable, unusable, failed and skipped, sorted by name.

    The first plugin to claim a name (built-ins first) keeps it; a later one is reported as a clash.
    """
    allowed, rows = _entries()
    infos: list[PluginInfo] = []
    taken: dict[str, str] = {}
    for entry in allowed:
        info = _load(entry)
        names = {info.name} | ({info.obj.name} if info.obj is not None else set())
        clash = next((n for n in sorted(names) if n in taken), None)
        if clash is not None:
            info = PluginInfo(info.name, info.origin, info.obj, f"name {clash!r} is already taken by {taken[clash]}", info.builtin)
        else:
            for n in names:
                taken[n] = info.origin
        infos.append(info)
    return tuple(sorted([*infos, *rows], key=lambda p: (p.name, not p.builtin)))


def reload() -> None:
    """Forget what was found, so that the next look discovers again (after installing a plugin, or
    changing EFFSEARCH_PLUGINS). Modules already imported stay imported."""
    _entries.cache_clear()
    discover.cache_clear()
    _warn_failures.cache_clear()
    _loaded.clear()


def plugins_of_kind(kind: str) -> list[PluginInfo]:
    """Loaded plugins of `kind`, usable here or not."""
    return [p for p in discover() if p.error is None and p.kind == kind]


def _label(kind: str) -> str:
    return kind.replace("_", " ")


def _usable_or_raise(p: PluginInfo, kind: str, name: str) -> Any:
    reason = p.unavailable
    if reason:
        raise PluginError(f"{_label(kind)} {name!r} is not usable here: {reason} (see `effsearch plugins`)")
    return p.obj


def get_plugin(kind: str, name: str) -> Any:
    """The plugin `name` of `kind`, usable here, or a PluginError saying why not and naming the alternatives.

    Only the entry point of that name is imported when it matches; the others load only if needed.
    """
    allowed, _ = _entries()
    for entry in allowed:
        if entry.ep.name == name:
            p = _load(entry)
            if p.error is None and p.kind == kind and p.obj.name == name:
                return _usable_or_raise(p, kind, name)
            break  # a clash or an error: the full discovery below explains it
    matches = [p for p in discover() if p.name == name or (p.obj is not None and getattr(p.obj, "name", None) == name)]
    for p in matches:
        if p.error is None and p.kind == kind:
            return _usable_or_raise(p, kind, name)
    for p in matches:
        if p.error is not None:
            raise PluginError(f"{_label(kind)} {name!r} ({p.origin}) cannot be used: {p.error}")
        raise PluginError(f"{name!r} is a {_label(p.kind)} plugin, not the {_label(kind)} asked for; see `effsearch plugins`")
    names = ", ".join(p.name for p in plugins_of_kind(kind)) or "none installed"
    raise PluginError(f"no {_label(kind)} named {name!r}; installed: {names}{_where_to_look(' (see `effsearch plugins`)')}")


def _where_to_look(usual: str) -> str:
    """The end of a "none found" message: `usual`, unless not even the built-ins are registered. Then effsearch
    runs from a folder (on PYTHONPATH) that was never installed, and plugins come from an installed package's
    entry points, so the message says how to install it."""
    if any(e.builtin for e in _entries()[0]):
        return usual
    return ("; effsearch's built-in plugins are not registered: it runs from a folder that was never installed "
            "(plugins come from an installed package's entry points); install it with `pip install -e .` in its checkout")


@functools.cache
def _warn_failures() -> None:
    for p in discover():
        if p.error is not None and p.error.startswith("failed to load"):
            log.warning("plugin %s (%s) %s; run `effsearch plugins` to list plugins", p.name, p.origin, p.error)


def choose(kind: str, name: str | None = None) -> Any:
    """The plugin of `kind` to use: `name` when given (it must be usable), else the best usable one."""
    if name:
        return get_plugin(kind, name)
    _warn_failures()
    usable = [p for p in plugins_of_kind(kind) if not p.unavailable]
    if not usable:
        raise PluginError(f"no usable {_label(kind)} plugin{_where_to_look('; run `effsearch plugins` to see why')}")
    # Measured beats estimated (a kind without `measured` counts as measured), then the plugin's own
    # priority; built-ins win ties.
    return max(usable, key=lambda p: (bool(getattr(p.obj, "measured", True)), p.obj.priority, p.builtin)).obj


def choose_energy_meter(name: str | None = None) -> Any:
    """The meter class to use: `name` when given (it must be usable), else the best usable one."""
    return choose(EnergyMeter.kind, name)


def choose_latency_target(name: str | None = None) -> Any:
    """The latency-target class to use: `name` when given, else the best usable one."""
    return choose(LatencyTarget.kind, name)
