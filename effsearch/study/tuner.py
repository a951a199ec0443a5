"""The Tuner: one training run per Optuna trial, its other precisions recorded as trials of their own."""

from __future__ import annotations

import functools
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from effsearch import record
from effsearch.config import TrainConfig
from effsearch.errors import EffsearchError, TrialError
from effsearch.figures import ENERGY, TRAIN_S
from effsearch.measure.artifact import Measurer
from effsearch.run.pipeline import RunResult, run_training
from effsearch.run.reference import run_reference
from effsearch.space import config_of
from effsearch.study.create import Instruments
from effsearch.study.early_stop import stop_rule
from effsearch.study.give_up import GiveUp
from effsearch.study.lease import Lease
from effsearch.study.loop import is_connection_error, run_loop, runs_counted
from effsearch.study.recording import Recorder, Shared
from effsearch.study.remeasure import remeasure
from effsearch.study.screening import Screen, Streak, Verdict
from effsearch.study.settings import TuneSettings, TuneSummary
from effsearch.train.loaders import loader_options
from effsearch.train.pool import WorkerPool, available_cores
from effsearch.train.stopping import StopRule, unstoppable
from effsearch.userfile import UserFile

__all__ = ["Tuner", "config_of"]

log = logging.getLogger(__name__)

# on_stage(run, stage, front size or -1 when unchanged, configurations screened out so far)
OnStage = Callable[[int, str, int, int], None]


@dataclass(frozen=True)
class Run:
    """A run as its suggest phase fixed it, read by every later phase: the trial's flags are read once."""

    trial: optuna.Trial  # the lead trial
    number: int  # runs count from 1
    config: TrainConfig
    lead: str  # the lead trial's precision
    precisions: tuple[str, ...]  # what the run makes, the lead's among them
    baseline: bool
    reference: bool  # a model that arrives trained, measured as given
    shared: Shared  # what the trials of its other precisions share with the lead
    artifacts: Path  # the run's folder: model.onnx (fp32) and model.<precision>.onnx


class Tuner:
    """Runs an open study: each run trains once and records one trial per precision it made."""

    def __init__(
        self, study: optuna.Study, uf: UserFile, settings: TuneSettings, *, tools: Instruments, on_stage: OnStage | None = None
    ) -> None:
        self.study = study
        self.uf = uf
        self.s = settings
        self.tools = tools
        self._on_stage: OnStage = on_stage or (lambda run, stage, front, screened: None)
        self.device = settings.hardware.device
        self.give_up = GiveUp(study)
        self.screened = 0  # configurations screened out here
        self.stopped = 0  # runs stopped early here
        # Why no run of this study can be stopped early (its objectives, or --no-early-stop), or None.
        self.no_early_stop = unstoppable(settings.objectives, uf.metric_key) if settings.early_stop else "early stopping is off (--no-early-stop)"
        self.streak = Streak()  # configurations screened out in a row
        self.recorder = Recorder(
            study, objectives=settings.objectives, constraints=settings.constraints, metric_key=uf.metric_key,
            metric_direction=uf.registration.metric_direction,
        )

    def on_stage(self, run: int, stage: str, front: int) -> None:
        self._on_stage(run, stage, front, self.screened)

    def front_size(self) -> int:
        try:
            return len(self.study.best_trials)
        except Exception:
            return 0

    def run(self, datasets: tuple[Any, Any], *, until: Callable[[optuna.Study], bool] | None = None) -> TuneSummary:
        """Train runs until the study's total (or the timeout) is reached, or until(study) holds."""
        s = self.s
        measurer = Measurer(
            self.uf, datasets, self.tools.meter_cls, self.tools.target.providers(), s.latency_threads, repeats=s.latency_repeats,
            latency_batch=s.latency_batch,
            # The length the study times token inputs at: as stated now, else as recorded when it began.
            latency_seq_len=s.latency_seq_len or record.read_meta(self.study).latency.sequence_length,
        )
        screen = Screen(study=self.study, uf=self.uf, datasets=datasets, measurer=measurer, limits=s.constraints, on=s.screening)
        if self.no_early_stop and s.early_stop:
            log.warning("%s; every run trains its %d epochs", self.no_early_stop, s.epochs)
        with WorkerPool(self.uf, collective_timeout_s=s.collective_timeout_s) as pool:
            stats = run_loop(
                self.study, functools.partial(self._objective, pool=pool, measurer=measurer, screen=screen),
                trials=s.trials, timeout_s=s.timeout_s, on_start=lambda done: self.on_stage(done, "starting", self.front_size()),
                after=lambda lead: self.recorder.flush(lead.number),
                stop=lambda: self.streak.stop_reason(s.constraints, self.uf.metric_key),
                until=None if until is None else (lambda: until(self.study)),
            )
            pool_starts = {"starts": pool.starts, "start_s": [round(x, 3) for x in pool.start_seconds]}
        if stats.completed:
            # The front's figures taken together, now that no rank is busy: it ranks models, not moments.
            self.on_stage(runs_counted(self.study), "re-measuring the front", self.front_size())
            remeasure(
                self.study, threads=s.latency_threads, providers=self.tools.target.providers(), sample=measurer.sample,
                meter_cls=measurer.infer_meter_cls,
            )
        return TuneSummary(
            self.study, runs_counted(self.study), stats.here, stats.failed, stats.completed,
            run_walls=tuple(stats.walls), pool_starts=pool_starts,
        )

    def _objective(self, trial: optuna.Trial, *, pool: WorkerPool, measurer: Measurer, screen: Screen) -> list[float]:
        """One training run; every failure it sees is recorded with its reason (a trial without one was lost).

        A TrialError fails the run and the study goes on; so does any other error of the run itself (an
        OSError writing an artifact, say), recorded with its type. Errors of the user file or the study
        (EffsearchError) end the study after recording why; a dropped storage connection is left to the loop.
        Ctrl-C at any stage (suggesting, measuring untrained, training, recording) fails the run as
        "interrupted" (it does not count, and a baseline is queued again). The worker holds a lease on the
        trial throughout, by which other workers tell it from a dead one.
        """
        try:
            with Lease(trial, interval_s=self.s.heartbeat_interval_s, grace_s=self.s.heartbeat_grace_s):
                return self._run(trial, pool, measurer, screen)
        except KeyboardInterrupt:
            self._interrupted(trial)
            raise
        except optuna.TrialPruned:
            raise
        except TrialError as exc:
            if record.current(trial).fail_reason is None:
                record.write(trial, fail_reason=str(exc))
            raise
        except EffsearchError as exc:
            record.write(trial, fail_reason=str(exc))
            raise
        except Exception as exc:
            if is_connection_error(exc):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            record.write(trial, fail_reason=reason, fail_detail=traceback.format_exc()[-4000:])
            raise TrialError(reason) from exc

    def _interrupted(self, trial: optuna.Trial) -> None:
        """Record a run stopped by Ctrl-C: "interrupted", its other precisions unwritten; a baseline is queued
        again, and its figures, which this run may have set, wait for the run that replaces it."""
        self.recorder.drop(trial.number)
        record.write(trial, fail_reason="interrupted")
        own = record.current(trial)
        if own.baseline:
            self.recorder.forget_baseline()
            # Every study starts from its baseline: queue it again for the next `tune`.
            self.study.enqueue_trial(self.s.space.baseline(), user_attrs=record.baseline_attrs(reference=bool(own.reference)))

    def _run(self, trial: optuna.Trial, pool: WorkerPool, measurer: Measurer, screen: Screen) -> list[float]:
        """One run, phase by phase: suggest, screen, train (or measure the model as given), record."""
        run = self._suggest(trial)
        untrained = self._screen(run, screen)
        result = self._train_or_reference(run, untrained, pool, measurer, screen)
        return self._record(run, result, untrained)

    def _suggest(self, trial: optuna.Trial) -> Run:
        """Sample the run's parameters and write what its trials share; the queued trial's flags read here."""
        space = self.give_up.space(self.s.space)
        params = space.suggest(trial)
        record.write(trial, lead=True)
        number = runs_counted(self.study)  # this run included: runs count from 1
        config = config_of(params, epochs=self.s.epochs, seed=self.s.seed)
        # The training loader's options for this device and world size, recorded with the configuration.
        loader = loader_options(self.uf.registration.loader, device=self.device, world_size=config.world_size, cores=available_cores())
        config = replace(config, loader=loader)
        flags = record.current(trial)  # baseline and reference, as the trial was queued
        shared = record.TrialRecord(run=number, run_trial=trial.number, config=asdict(config), reference=flags.reference)
        record.write(trial, **shared.user_attrs())
        lead = params["precision"]
        return Run(
            trial, number, config, lead, self.give_up.precisions(self.s.space, lead), baseline=bool(flags.baseline),
            reference=bool(flags.reference), shared=Shared(params, space.distributions(), shared),
            artifacts=self.s.artifact_dir / f"run-{trial.number}",
        )

    def _screen(self, run: Run, screen: Screen) -> dict[str, dict[str, Any]]:
        """Measure the run untrained, and screen it out (TrialPruned) where no precision can meet the limits."""
        self.on_stage(run.number, "measuring untrained", self.front_size())
        try:
            untrained = screen.figures(run.config, run.precisions)
        except TrialError as exc:  # training meets the same failure and records it
            log.debug("untrained figures of trial %d: %s", run.trial.number, exc)
            untrained = {}
        if screen.active and not run.baseline:
            verdict = screen.verdict(untrained)
            if verdict.reason:
                raise self._screened(run, untrained, verdict)
        self.streak.passed()
        record.write(run.trial, untrained=untrained.get(run.lead))
        return untrained

    def _screened(self, run: Run, untrained: dict[str, dict[str, Any]], verdict: Verdict) -> optuna.TrialPruned:
        """Record a configuration screened out untrained: its trials PRUNED with their limit values."""
        record.write(run.trial, untrained=untrained.get(run.lead), screened=verdict.reason)
        for key, value in verdict.violations.get(run.lead, {}).items():
            run.trial.set_constraint(key, value)
        for precision, figures in untrained.items():
            if precision != run.lead:
                self.recorder.later(run.trial.number, functools.partial(
                    self.recorder.add_screened, precision, run.shared, untrained=figures,
                    violations=verdict.violations.get(precision, {}), reason=verdict.reason,
                ))
        self.screened += 1
        self.streak.screened(verdict, run.config)
        return optuna.TrialPruned(verdict.reason)

    def _train_or_reference(
        self, run: Run, untrained: dict[str, dict[str, Any]], pool: WorkerPool, measurer: Measurer, screen: Screen
    ) -> RunResult:
        """Train the run and measure its precisions, or measure the model as given; a failure is recorded."""
        self.on_stage(run.number, "starting", self.front_size())
        try:
            if run.reference:
                self.on_stage(run.number, "measuring the model as given", -1)
                return run_reference(self.uf, screen.datasets, measurer, run.config, run.precisions, run.artifacts)
            return self._train(run, pool, measurer, self._stop_rule(run, untrained), screen.channel_multiple)
        except TrialError as exc:
            record.write(run.trial, fail_reason=str(exc), fail_detail=exc.detail[-4000:] if exc.detail else None)
            if exc.structural:
                self.give_up.failed(exc.structural, str(exc), where=f"prune_ratio {run.config.prune_ratio:g}", trial=run.trial.number)
            raise

    def _record(self, run: Run, result: RunResult, untrained: dict[str, dict[str, Any]]) -> list[float]:
        """Write the run's figures on its lead trial and queue its other precisions'; return the lead's values."""
        trial, prune = run.trial, result.lead.prune
        if result.lead.curve:
            record.write(trial, curve=list(result.lead.curve))
        if result.stopped:
            raise self._stopped(trial, result)
        record.write(
            trial, timing=result.timing, prune_achieved=prune.achieved if prune else 0.0,
            prune_kept=(prune.kept or None) if prune else None, prune_round_to=prune.round_to if prune else None,
            flops_skipped_ops=result.exported.flops.skipped_ops,
        )
        if run.baseline:
            self.recorder.set_baseline(result.precisions)
        self.give_up.made(result.precisions, where=json.dumps(asdict(run.config), sort_keys=True), trial=trial.number)
        lead = next((pr for pr in result.precisions if pr.precision == run.lead), None)
        for pr in result.precisions:
            if pr is not lead:
                self.recorder.later(trial.number, functools.partial(self.recorder.add_precision, pr, run.shared, untrained.get(pr.precision)))
        self.on_stage(run.number, "recorded", self.front_size())
        if lead is None or lead.error:
            reason = lead.error if lead else f"precision {run.lead} was not made"
            record.write(trial, fail_reason=reason)
            raise TrialError(reason)
        return self.recorder.finish_lead(trial, lead)

    def _stop_rule(self, run: Run, untrained: dict[str, dict[str, Any]]) -> StopRule | None:
        """The early-stopping rule of this run; None for the baseline, or where the study cannot stop runs."""
        if self.no_early_stop or run.baseline:
            return None
        return stop_rule(
            self.study, objectives=self.s.objectives, metric_key=self.uf.metric_key,
            maximize=self.uf.registration.metric_direction == "maximize", untrained=untrained, epochs=run.config.epochs,
            margin=self.s.early_stop_margin, first_epoch=self.s.early_stop_first_epoch,
        )

    def _stopped(self, trial: optuna.Trial, result: RunResult) -> optuna.TrialPruned:
        """Record a run stopped early: PRUNED with its reason, its curve and what it spent (not extrapolated)."""
        spent = {ENERGY.key: result.energy_j, "energy_source": result.energy_source, TRAIN_S.key: result.timing[TRAIN_S.key]}
        record.write(trial, stopped=result.stopped, timing=result.timing, metrics=spent)
        self.stopped += 1
        # One short line above the progress view; the whole reason is in the trial's record and the report.
        log.info("run of trial %d %s", trial.number, result.stopped.split(":", 1)[0])
        log.debug("run of trial %d %s", trial.number, result.stopped)
        return optuna.TrialPruned(result.stopped)

    def _train(self, run: Run, pool: WorkerPool, measurer: Measurer, stop: StopRule | None, channel_multiple: int | None) -> RunResult:
        threads = max(1, available_cores() // run.config.world_size) if self.device == "cpu" else 1
        return run_training(
            pool, measurer, run.config, run.precisions, run.artifacts, device=self.device, threads_per_rank=threads,
            collective_timeout_s=self.s.collective_timeout_s, timeout_s=self.s.trial_timeout_s, stop=stop,
            channel_multiple=channel_multiple, stage=lambda st: self.on_stage(run.number, st, -1),
        )
