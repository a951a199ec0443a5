"""The Tuner: one training run per Optuna trial, its other precisions recorded as trials of their own."""

from __future__ import annotations

import functools
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import optuna

from effsearch import record
from effsearch.errors import EffsearchError, TrialError
from effsearch.measure.artifact import Measurer
from effsearch.pipeline import RunResult, run_training
from effsearch.reference import run_reference
from effsearch.space import TrainConfig
from effsearch.study.create import Instruments
from effsearch.study.early_stop import stop_rule
from effsearch.study.give_up import GiveUp
from effsearch.study.lease import Lease
from effsearch.study.loop import is_connection_error, run_loop, runs_counted
from effsearch.study.recording import Recorder, Shared
from effsearch.study.remeasure import remeasure
from effsearch.study.screening import MAX_SCREENED_IN_ROW, Screen, describe_config
from effsearch.study.settings import TuneSettings, TuneSummary
from effsearch.train.loaders import loader_options
from effsearch.train.pool import WorkerPool, available_cores, hardware_world_sizes
from effsearch.train.stopping import StopRule, unstoppable
from effsearch.userfile import UserFile

__all__ = ["Tuner", "config_of"]

log = logging.getLogger(__name__)

# on_stage(run, stage, front size or -1 when unchanged, configurations screened out so far)
OnStage = Callable[[int, str, int, int], None]


def config_of(params: dict[str, Any], *, epochs: int, seed: int) -> TrainConfig:
    """The training run a trial's parameters stand for; the global batch becomes a multiple of the world size."""
    world = int(params["world_size"])
    batch = int(params["batch_size"])
    return TrainConfig(
        batch_size=max(world, (batch // world) * world),
        lr=float(params["lr"]),
        lr_schedule=str(params["lr_schedule"]),
        clip_norm=float(params["clip_norm"]),
        prune_ratio=float(params["prune_ratio"]),
        world_size=world,
        epochs=epochs,
        seed=seed,
        optimizer=str(params["optimizer"]),
        warmup_frac=float(params["warmup_frac"]),
        prune_importance=str(params["prune_importance"]),
        prune_when=str(params["prune_when"]),
        # Studies begun before the training levers existed trained in fp32 without a teacher.
        train_precision=str(params.get("train_precision", "fp32")),
        distill=float(params.get("distill", 0.0)),
        distill_temperature=float(params.get("distill_temperature", 4.0)),
    )


class Tuner:
    """Runs an open study: each run trains once and records one trial per precision it made."""

    def __init__(
        self,
        study: optuna.Study,
        uf: UserFile,
        settings: TuneSettings,
        *,
        tools: Instruments,
        on_stage: OnStage | None = None,
    ) -> None:
        self.study = study
        self.uf = uf
        self.s = settings
        self.tools = tools
        self._on_stage: OnStage = on_stage or (lambda run, stage, front, screened: None)
        self.device, _ = hardware_world_sizes()
        self.give_up = GiveUp(study)
        self.screened = 0  # configurations screened out here
        self.stopped = 0  # runs stopped early here
        # Why no run of this study can be stopped early (its objectives, or --no-early-stop), or None.
        self.no_early_stop = unstoppable(settings.objectives, uf.metric_key) if settings.early_stop else "early stopping is off (--no-early-stop)"
        self.screened_in_row = 0
        # Per lead trial, the trials of its other precisions, written once the lead is finished (_record_others).
        self._others: dict[int, list[Callable[[], None]]] = {}
        self.closest_screened: tuple[str, TrainConfig] | None = None
        self._closest_excess = float("inf")
        self.recorder = Recorder(
            study,
            objectives=settings.objectives,
            constraints=settings.constraints,
            metric_key=uf.metric_key,
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
            latency_seq_len=s.latency_seq_len or record.read_meta(self.study).get("latency", {}).get("sequence_length"),
        )
        screen = Screen(study=self.study, uf=self.uf, datasets=datasets, measurer=measurer, limits=s.constraints, on=s.screening)
        if self.no_early_stop and s.early_stop:
            log.warning("%s; every run trains its %d epochs", self.no_early_stop, s.epochs)
        with WorkerPool(self.uf.path, collective_timeout_s=s.collective_timeout_s) as pool:
            stats = run_loop(
                self.study,
                functools.partial(self._objective, pool=pool, measurer=measurer, screen=screen),
                trials=s.trials,
                timeout_s=s.timeout_s,
                on_start=lambda done: self.on_stage(done, "starting", self.front_size()),
                after=self._record_others,
                stop=self._stop_reason,
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

    def _stop_reason(self) -> str | None:
        """Why the study cannot go on: too many suggestions in a row screened out by the limits."""
        if self.screened_in_row < MAX_SCREENED_IN_ROW:
            return None
        reason, config = self.closest_screened or ("", None)
        return (
            f"{self.screened_in_row} configurations in a row were screened out before training by "
            f"{self.s.constraints.describe(self.uf.metric_key)}; the closest ({describe_config(config)}) was {reason.removeprefix('screened: ')}; "
            "relax the limit or widen the search space (e.g. a higher prune_ratio)"
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
        self._others.pop(trial.number, None)
        record.write(trial, fail_reason="interrupted")
        own = record.current(trial)
        if own.baseline:
            self.recorder.forget_baseline()
            # Every study starts from its baseline: queue it again for the next `tune`.
            self.study.enqueue_trial(self.s.space.baseline(), user_attrs=record.baseline_attrs(reference=bool(own.reference)))

    def _record_others(self, lead: optuna.trial.FrozenTrial) -> None:
        """Write the trials of a run's other precisions once its lead trial is finished, so that a run
        interrupted or lost before then leaves none of them behind (its re-run makes them again)."""
        for write in self._others.pop(lead.number, []):
            write()

    def _screened(self, trial: optuna.Trial, params: dict[str, Any], space: Any, shared: record.TrialRecord,
                  untrained: dict[str, dict[str, Any]], verdict: Any, config: TrainConfig) -> optuna.TrialPruned:
        """Record a configuration screened out untrained: its trials PRUNED with their limit values."""
        lead = params["precision"]
        record.write(trial, untrained=untrained.get(lead), screened=verdict.reason)
        for key, value in verdict.violations.get(lead, {}).items():
            trial.set_constraint(key, value)
        for precision, figures in untrained.items():
            if precision != lead:
                self._others.setdefault(trial.number, []).append(functools.partial(
                    self.recorder.add_screened, precision, Shared(params, space.distributions(), shared), untrained=figures,
                    violations=verdict.violations.get(precision, {}), reason=verdict.reason,
                ))
        self.screened += 1
        self.screened_in_row += 1
        if self.closest_screened is None or verdict.excess < self._closest_excess:
            self.closest_screened, self._closest_excess = (verdict.reason, config), verdict.excess
        return optuna.TrialPruned(verdict.reason)

    def _run(self, trial: optuna.Trial, pool: WorkerPool, measurer: Measurer, screen: Screen) -> list[float]:
        space = self.give_up.space(self.s.space)
        params = space.suggest(trial)
        record.write(trial, lead=True)
        run = runs_counted(self.study)  # this run included: runs count from 1
        config = config_of(params, epochs=self.s.epochs, seed=self.s.seed)
        # The training loader's options for this device and world size, recorded with the configuration.
        loader = loader_options(self.uf.registration.loader, device=self.device, world_size=config.world_size, cores=available_cores())
        config = replace(config, loader=loader)
        shared = record.TrialRecord(run=run, run_trial=trial.number, config=asdict(config), reference=record.current(trial).reference)
        record.write(trial, **shared.user_attrs())
        precisions = self.give_up.precisions(self.s.space, params["precision"])
        self.on_stage(run, "measuring untrained", self.front_size())
        try:
            untrained = screen.figures(config, precisions)
        except TrialError as exc:  # training meets the same failure and records it
            log.debug("untrained figures of trial %d: %s", trial.number, exc)
            untrained = {}
        if screen.active and not record.current(trial).baseline:
            verdict = screen.verdict(untrained)
            if verdict.reason:
                raise self._screened(trial, params, space, shared, untrained, verdict, config)
        self.screened_in_row = 0
        record.write(trial, untrained=untrained.get(params["precision"]))
        self.on_stage(run, "starting", self.front_size())
        try:
            if record.current(trial).reference:
                self.on_stage(run, "measuring the model as given", -1)
                result = run_reference(
                    self.uf, screen.datasets, measurer, config, precisions, self.s.artifact_dir / f"run-{trial.number}"
                )
            else:
                result = self._train(trial, config, pool, measurer, run, precisions, self._stop_rule(trial, config, untrained),
                                     channel_multiple=screen.channel_multiple)
        except TrialError as exc:
            record.write(trial, fail_reason=str(exc), fail_detail=exc.detail[-4000:] if exc.detail else None)
            if exc.structural:
                self.give_up.failed(exc.structural, str(exc), where=f"prune_ratio {config.prune_ratio:g}", trial=trial.number)
            raise
        if result.lead.curve:
            record.write(trial, curve=list(result.lead.curve))
        if result.stopped:
            raise self._stopped(trial, result)
        exported = result.exported
        record.write(
            trial,
            timing=result.timing,
            prune_achieved=result.lead.prune.achieved if result.lead.prune else 0.0,
            prune_kept=(result.lead.prune.kept or None) if result.lead.prune else None,
            prune_round_to=result.lead.prune.round_to if result.lead.prune else None,
            flops_skipped_ops=exported.flops.skipped_ops,
        )
        if record.current(trial).baseline:
            self.recorder.set_baseline(result.precisions)
        self.give_up.made(result.precisions, where=json.dumps(asdict(config), sort_keys=True), trial=trial.number)
        lead_result = None
        for pr in result.precisions:
            if pr.precision == params["precision"]:
                lead_result = pr
            else:
                own = Shared(params, space.distributions(), shared)
                self._others.setdefault(trial.number, []).append(
                    functools.partial(self.recorder.add_precision, pr, own, untrained.get(pr.precision))
                )
        self.on_stage(run, "recorded", self.front_size())
        if lead_result is None or lead_result.error:
            reason = lead_result.error if lead_result else f"precision {params['precision']} was not made"
            record.write(trial, fail_reason=reason)
            raise TrialError(reason)
        return self.recorder.finish_lead(trial, lead_result)

    def _stop_rule(self, trial: optuna.Trial, config: TrainConfig, untrained: dict[str, dict[str, Any]]) -> StopRule | None:
        """The early-stopping rule of this run; None for the baseline, or where the study cannot stop runs."""
        if self.no_early_stop or record.current(trial).baseline:
            return None
        return stop_rule(
            self.study, objectives=self.s.objectives, metric_key=self.uf.metric_key,
            maximize=self.uf.registration.metric_direction == "maximize", untrained=untrained, epochs=config.epochs,
            margin=self.s.early_stop_margin, first_epoch=self.s.early_stop_first_epoch,
        )

    def _stopped(self, trial: optuna.Trial, result: RunResult) -> optuna.TrialPruned:
        """Record a run stopped early: PRUNED with its reason, its curve and what it spent (not extrapolated)."""
        spent = {"energy_j": result.energy_j, "energy_source": result.energy_source, "train_s": result.timing["train_s"]}
        record.write(trial, stopped=result.stopped, timing=result.timing, metrics=spent)
        self.stopped += 1
        log.info("run of trial %d %s", trial.number, result.stopped)
        return optuna.TrialPruned(result.stopped)

    def _train(
        self, trial: optuna.Trial, config: TrainConfig, pool: WorkerPool, measurer: Measurer, run: int, precisions: tuple[str, ...],
        stop: StopRule | None = None, channel_multiple: int | None = None,
    ) -> RunResult:
        threads = max(1, available_cores() // config.world_size) if self.device == "cpu" else 1
        # A run's artifacts share one folder: model.onnx (fp32) and model.<precision>.onnx.
        return run_training(
            pool,
            measurer,
            config,
            precisions,
            self.s.artifact_dir / f"run-{trial.number}",
            device=self.device,
            threads_per_rank=threads,
            collective_timeout_s=self.s.collective_timeout_s,
            timeout_s=self.s.trial_timeout_s,
            stop=stop,
            channel_multiple=channel_multiple,
            stage=lambda st: self.on_stage(run, st, -1),
        )
