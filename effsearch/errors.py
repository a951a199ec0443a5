"""The errors effsearch raises: each says what happened, the value, and the fix."""

from __future__ import annotations

__all__ = [
    "EffsearchError",
    "UserFileError",
    "SpaceError",
    "StudyError",
    "TrialError",
    "ExportError",
    "PluginError",
]


class EffsearchError(Exception):
    """Base of every error effsearch raises on purpose; the CLI prints it as one line."""

    exit_code = 1


class UserFileError(EffsearchError):
    """The user's model file cannot be loaded or breaks the register() contract."""

    exit_code = 2


class SpaceError(EffsearchError):
    """A search-space file or override is invalid."""

    exit_code = 2


class StudyError(EffsearchError):
    """The study cannot be created, found or resumed as asked."""

    exit_code = 2


class TrialError(EffsearchError):
    """One trial failed; the study records the reason and goes on.

    detail: a traceback or log from the process where it happened, kept for --debug.
    structural: the search dimension whose value fails for this model whatever the training
    (e.g. "prune_ratio" for a model that cannot be pruned), so later trials avoid it.
    """

    def __init__(self, message: str, detail: str = "", structural: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.structural = structural


class ExportError(EffsearchError):
    """A model cannot be exported, or the exported model does not verify."""


class PluginError(EffsearchError):
    """A plugin cannot be loaded or is not usable on this machine."""
