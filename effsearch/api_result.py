"""What `effsearch.tune` and `effsearch.load` return: a study's front, its knee and baseline, and its export."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effsearch.errors import EffsearchError, ExportError

if TYPE_CHECKING:
    import optuna
    import pandas

    from effsearch.export import ExportResult
    from effsearch.results.front import FrontRow
    from effsearch.userfile import UserFile

__all__ = ["RunStats", "StudyResult", "result_of"]


@dataclass(frozen=True)
class RunStats:
    """What one `tune` call ran: the study's runs done in all, and of this call's: started, completed, failed,
    screened out before training by the limits, stopped early as dominated."""

    done: int
    here: int
    completed: int
    failed: int
    screened: int
    stopped: int


@dataclass(frozen=True)
class StudyResult:
    """A study as effsearch shows it. `front`, `knee` and `baseline` are rows as `effsearch pareto --json` prints them."""

    study: optuna.Study
    storage: str  # the storage URL, as given (with any password)
    front: tuple[dict[str, Any], ...]
    knee: dict[str, Any] | None
    baseline: dict[str, Any] | None
    rows: tuple[FrontRow, ...] = field(repr=False)  # the front as typed records (the table reads these)
    ran: RunStats | None = None  # None from `load`
    user_file: UserFile | None = field(default=None, repr=False)  # what `export` verifies with

    @property
    def name(self) -> str:
        return self.study.study_name

    def front_frame(self) -> pandas.DataFrame:
        """The front as a pandas DataFrame indexed by trial: params, metrics and the rest as columns."""
        try:
            import pandas
        except ImportError:
            raise EffsearchError("StudyResult.front_frame() needs pandas: pip install pandas") from None
        records = []
        for row in self.front:
            flat: dict[str, Any] = {"trial": row["trial"], "run": row["run"], **row["params"], "prune_achieved": row["prune_achieved"]}
            for key, value in row["metrics"].items():
                flat[f"metrics.{key}" if key in flat else key] = value
            flat.update(onnx=row["onnx"], within_noise=row["within_noise"], speedup_flag=row["speedup_flag"])
            records.append(flat)
        return pandas.DataFrame.from_records(records, index="trial") if records else pandas.DataFrame()

    def export(
        self,
        path: str | Path,
        *,
        trial: int | None = None,
        pick: str | None = None,
        max_latency_ms: float | None = None,
        max_metric_drop: float | None = None,
        max_size_mb: float | None = None,
        force: bool = False,
        file: Any = None,
    ) -> ExportResult:
        """Ship one trial as `effsearch export` does: its ONNX file at `path`, verified on the validation set, with its cards.

        Choose it one way: trial=N, pick="knee", or limits (the best metric within them). file: the user file
        or Registration to verify with (default: the one this result was made from, else the study's file).
        """
        from effsearch.userfile import user_file_of
        from effsearch.constraints import Constraints
        from effsearch.export import export_trial
        from effsearch.results.pick import pick_knee, pick_trial, pick_within

        limits = Constraints(max_latency_ms=max_latency_ms, max_metric_drop=max_metric_drop, max_size_mb=max_size_mb)
        chosen = [name for name, on in (("trial", trial is not None), ("pick", pick is not None), ("limits", bool(limits))) if on]
        if len(chosen) != 1:
            what = "none" if not chosen else " and ".join(chosen)
            raise ExportError(
                f"choose the model one way, got {what}: trial=N, pick='knee', or limits (max_latency_ms, max_metric_drop, max_size_mb)"
            )
        if pick is not None and pick != "knee":
            raise ExportError(f"pick={pick!r} is not a pick rule; the rule is: 'knee'")
        if trial is not None:
            row = pick_trial(self.study, trial)
        elif pick is not None:
            row = pick_knee(self.study)
        else:
            row = pick_within(self.study, limits)
        source = self.user_file if file is None else file if isinstance(file, (str, Path)) else user_file_of(file)
        if source is not None and not isinstance(source, (str, Path)) and not source.from_python:
            source = source.path  # re-imported, as `effsearch export --file` does: it may have changed since
        return export_trial(self.study, row, path, self.storage, force=force, user_file=source)


def result_of(study: optuna.Study, storage: str, *, user_file: UserFile | None = None, ran: RunStats | None = None) -> StudyResult:
    """The result of `study` as stored now."""
    from effsearch.results.front import baseline, front_rows, knee, row_json, shown

    seen = shown(study)
    rows = front_rows(study, seen)
    k = knee(study, rows)
    base = baseline(study, seen)
    return StudyResult(
        study=study,
        storage=storage,
        front=tuple(row_json(r) for r in rows),
        knee=row_json(k) if k is not None else None,
        baseline=row_json(base) if base is not None else None,
        rows=tuple(rows),
        ran=ran,
        user_file=user_file,
    )
