"""effsearch: find the efficient versions of a PyTorch model."""

from __future__ import annotations

from effsearch.errors import EffsearchError, ExportError, PluginError, SpaceError, StudyError, TrialError, UserFileError
from effsearch.registration import Registration, register

__all__ = [
    "register",
    "Registration",
    "EffsearchError",
    "UserFileError",
    "SpaceError",
    "StudyError",
    "TrialError",
    "ExportError",
    "PluginError",
]

__version__ = "0.1.0"
