"""Write a run's results on its trials: the lead's values and limits, and one finished trial per extra precision."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from effsearch import record
from effsearch.constraints import Constraints
from effsearch.errors import TrialError
from effsearch.run.pipeline import PrecisionResult

__all__ = ["Recorder", "Shared"]

log = logging.getLogger(__name__)

_BASELINE_POLL_S = 0.5


@dataclass(frozen=True)
class Shared:
    """What every trial of one run shares: its sampled parameters, their distributions, and the run's
    record fields (run, run_trial, config)."""

    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    run: record.TrialRecord


class Recorder:
    """Turns measured metrics into a trial's objective values and limit violations, and stores them.

    metric_key, metric_direction: the user's metric, from which the limit on its drop is judged.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        objectives: tuple[str, ...],
        constraints: Constraints,
        metric_key: str,
        metric_direction: str,
    ) -> None:
        self.study = study
        self.objectives = objectives
        self.constraints = constraints
        self.metric_key = metric_key
        self.metric_direction = metric_direction
        self._baseline: float | None = None
        # Per lead trial, the writes of its other precisions' trials, made once the lead is finished (flush).
        self._pending: dict[int, list[Callable[[], None]]] = {}

    def baseline_metric(self, *, wait: bool = False) -> float | None:
        """The dense baseline's metric, once its run completed (here or on another worker).

        wait: while another worker's baseline run is under way, wait for it (a limit on the metric's
        drop cannot be judged before, and Optuna keeps a trial's first constraint values).
        """
        waited = False
        while self._baseline is None:
            running = False
            for t in record.read_all(self.study, states=(TrialState.COMPLETE, TrialState.RUNNING)):
                if not t.baseline:
                    continue
                if t.state == TrialState.COMPLETE and self.metric_key in t.metrics:
                    self._baseline = float(t.metrics[self.metric_key])
                running = running or (t.state == TrialState.RUNNING and not t.lost)
            if self._baseline is not None or not (wait and running):
                break
            if not waited:
                log.info("waiting for the baseline run to finish: --max-metric-drop is measured from it")
                waited = True
            time.sleep(_BASELINE_POLL_S)
        return self._baseline

    def set_baseline(self, results: list[PrecisionResult]) -> None:
        """Metric drops are measured from the baseline run's fp32 model, its other precisions included."""
        fp32 = next((r for r in results if r.precision == "fp32" and not r.error), None)
        if fp32 is not None:
            self._baseline = float(fp32.metrics[self.metric_key])

    def forget_baseline(self) -> None:
        """The baseline run was interrupted: the figures it set wait for the run that replaces it."""
        self._baseline = None

    def later(self, lead: int, write: Callable[[], None]) -> None:
        """Queue the write of one of lead trial `lead`'s other precisions, for when the lead is finished."""
        self._pending.setdefault(lead, []).append(write)

    def flush(self, lead: int) -> None:
        """Write the trials of a run's other precisions once its lead trial is finished, so that a run
        interrupted or lost before then leaves none of them behind (its re-run makes them again)."""
        for write in self._pending.pop(lead, []):
            write()

    def drop(self, lead: int) -> None:
        """The run was interrupted: its other precisions are never written."""
        self._pending.pop(lead, None)

    def values(self, metrics: dict[str, Any]) -> list[float]:
        """The objectives' values, or a TrialError naming the one that is missing or not finite."""
        try:
            values = [float(metrics[k]) for k in self.objectives]
        except KeyError as exc:
            raise TrialError(f"objective {exc.args[0]!r} was not measured") from exc
        for key, value in zip(self.objectives, values):
            if not math.isfinite(value):
                raise TrialError(f"objective {key!r} is {value}, not a finite number; check the metric function")
        return values

    def violations(self, metrics: dict[str, Any]) -> dict[str, float]:
        """How far the trial is from each of the user's limits (<= 0: met); samplers and the front use it."""
        if not self.constraints:
            return {}
        baseline = self.baseline_metric(wait=self.constraints.max_metric_drop is not None)
        values = self.constraints.violations(metrics, self.metric_key, baseline, self.metric_direction)
        return dict(zip(self.constraints.to_dict(), values))

    def finish_lead(self, trial: optuna.Trial, result: PrecisionResult) -> list[float]:
        """Store the lead precision's metrics, artifact and limits on the running trial; return its values."""
        assert result.onnx is not None
        record.write(trial, metrics=result.metrics, onnx=str(result.onnx.resolve()))
        for key, value in self.violations(result.metrics).items():
            trial.set_constraint(key, value)
        return self.values(result.metrics)

    def add_precision(self, result: PrecisionResult, shared: Shared, untrained: dict[str, Any] | None = None) -> None:
        """Record one extra precision of the run's trained model as a finished trial of its own.

        The trial is written whole (Optuna's create_trial/add_trial), so no precision is ever left RUNNING.
        """
        run = shared.run
        state, values, limits, reason = TrialState.FAIL, None, None, result.error
        metrics = onnx = None
        if not result.error:
            assert result.onnx is not None
            metrics, onnx = result.metrics, str(result.onnx.resolve())
            try:
                values = self.values(result.metrics)
                state, limits = TrialState.COMPLETE, self.violations(result.metrics) or None
            except TrialError as exc:
                reason = str(exc)
        own = record.TrialRecord(
            lead=False, run=run.run, run_trial=run.run_trial, config=run.config, metrics=metrics, onnx=onnx,
            fail_reason=reason, untrained=untrained, reference=run.reference,
        )
        self._add(state, result.precision, shared, own, values=values, limits=limits)

    def add_screened(self, precision: str, shared: Shared, *, untrained: dict[str, Any] | None, violations: dict[str, float], reason: str) -> None:
        """Record one precision of a configuration screened out untrained: PRUNED, with its limit values."""
        own = record.TrialRecord(lead=False, run_trial=shared.run.run_trial, config=shared.run.config, untrained=untrained, screened=reason)
        self._add(TrialState.PRUNED, precision, shared, own, limits=violations or None)

    def _add(
        self, state: TrialState, precision: str, shared: Shared, own: record.TrialRecord, *,
        values: list[float] | None = None, limits: dict[str, float] | None = None,
    ) -> None:
        # The trial's parameters are the searched ones (those with a distribution), its precision its own.
        dists = shared.distributions
        params = {name: precision if name == "precision" else shared.params[name] for name in dists}
        trial = optuna.trial.create_trial(
            state=state, values=values, params=params, distributions=dists, user_attrs=own.user_attrs(), constraints=limits
        )
        self.study.add_trial(trial)
