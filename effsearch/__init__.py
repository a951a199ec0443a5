"""effsearch: find the efficient versions of a PyTorch model."""

from __future__ import annotations

from typing import Any

from effsearch.errors import EffsearchError, ExportError, PluginError, SpaceError, StudyError, TrialError, UserFileError
from effsearch.registration import Registration, register

__all__ = [
    "register",
    "Registration",
    "make_sampler",
    "tune",
    "load",
    "StudyResult",
    "EffsearchError",
    "UserFileError",
    "SpaceError",
    "StudyError",
    "TrialError",
    "ExportError",
    "PluginError",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # make_sampler imports optuna, the API optuna and torch: a user file's `import effsearch` should not pay for them.
    if name == "make_sampler":
        from effsearch.sampler import make_sampler

        return make_sampler
    if name in ("tune", "load", "StudyResult"):
        from effsearch import api

        return getattr(api, name)
    raise AttributeError(f"module 'effsearch' has no attribute {name!r}")
