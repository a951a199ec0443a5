"""`effsearch tune`: run or resume a study and print its front."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from effsearch.cli.app import StorageOpt, app, err, is_debug, print_front
from effsearch.cli.report import WideOpt

if TYPE_CHECKING:
    from effsearch.api import StudyResult
    from effsearch.study import TuneSettings

DEFAULT_TRIALS = 40


@app.command()
def tune(
    file: Annotated[Path, typer.Argument(help="Your model file; it calls effsearch.register(...).")],
    trials: Annotated[int, typer.Option("--trials", min=1, help="The study's total number of training runs.")] = DEFAULT_TRIALS,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0, help="Start no new run after this many seconds.")] = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: the registered name).")] = None,
    storage: StorageOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler and of training.")] = 0,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the registered epochs.")] = None,
    space: Annotated[Path | None, typer.Option("--space", help="TOML file overriding search dimensions.")] = None,
    objectives: Annotated[str | None, typer.Option("--objectives", help="Comma-separated objective keys.")] = None,
    max_world_size: Annotated[int | None, typer.Option("--max-world-size", min=1, help="Cap on DDP ranks.")] = None,
    energy_meter: Annotated[str | None, typer.Option("--energy-meter", help="Force an energy meter (see `effsearch plugins`).")] = None,
    trial_timeout: Annotated[float | None, typer.Option("--trial-timeout", min=1, help="Fail a training run after this many seconds.")] = None,
    latency_threads: Annotated[int, typer.Option("--latency-threads", min=1, help="onnxruntime threads when timing.")] = 1,
    latency_batch: Annotated[int, typer.Option("--latency-batch", min=1, help="Samples per timed call: latency_ms is one call at this batch, throughput_sps samples per second.")] = 1,
    latency_seq_len: Annotated[int | None, typer.Option("--latency-seq-len", min=1, help="Time token inputs at this sequence length (default: the length the validation set is padded to).")] = None,
    max_latency_ms: Annotated[float | None, typer.Option("--max-latency-ms", min=0, help="Constraint: p50 latency at most this; configurations that cannot meet it, measured untrained, are screened out before training.")] = None,
    max_metric_drop: Annotated[float | None, typer.Option("--max-metric-drop", help="Constraint: metric at most this worse than the baseline (metric units).")] = None,
    max_size_mb: Annotated[float | None, typer.Option("--max-size-mb", min=0, help="Constraint: ONNX file at most this many MB; configurations that cannot meet it, measured untrained, are screened out before training.")] = None,
    artifacts: Annotated[Path | None, typer.Option("--artifacts", help="Folder for trial artifacts, reachable by every worker (default: studies/).")] = None,
    heartbeat_interval: Annotated[int, typer.Option("--heartbeat-interval", min=1, help="Seconds between a running trial's heartbeats.")] = 10,
    heartbeat_grace: Annotated[int, typer.Option("--heartbeat-grace", min=1, help="Seconds without a heartbeat before a trial's worker counts as lost.")] = 30,
    early_stop: Annotated[bool, typer.Option("--early-stop/--no-early-stop", help="Stop a run once every point it could reach is dominated by a completed run's at the same epoch.")] = True,
    wide: WideOpt = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Start this many workers of the study through --launcher, wait for them and print its front.")] = None,
    launcher: Annotated[str, typer.Option("--launcher", help="How --workers start: local (processes here), slurm (jobs through submitit) or ray (tasks).")] = "local",
    launcher_option: Annotated[list[str] | None, typer.Option("--launcher-option", help="KEY=VALUE for the launcher, repeated, e.g. partition=gpu (see the Many machines page).")] = None,
) -> None:
    """Run (or resume) a study on FILE and print its Pareto front."""
    from effsearch.api import StageProgress, prepare
    from effsearch.launch import Preemption
    from effsearch.storage import redact

    options = dict(
        trials=trials, study=study, storage=storage, seed=seed, epochs=epochs, space=space, objectives=objectives,
        max_world_size=max_world_size, energy_meter=energy_meter, trial_timeout=trial_timeout, latency_threads=latency_threads,
        latency_batch=latency_batch, latency_seq_len=latency_seq_len, max_latency_ms=max_latency_ms,
        max_metric_drop=max_metric_drop, max_size_mb=max_size_mb, artifacts=artifacts, heartbeat_interval=heartbeat_interval,
        heartbeat_grace=heartbeat_grace, early_stop=early_stop, timeout=timeout,
    )
    job = prepare(file, **options)
    s = job.settings
    if workers is not None:
        from effsearch.cli.launch import launch

        launch(job, file, options, workers=workers, launcher=launcher, pairs=launcher_option or [], wide=wide)
        return
    err.print(f"study [bold]{s.study_name}[/] in {redact(s.storage_url)}: {trials} training runs, objectives {', '.join(s.objectives)}")
    # Shown on a terminal (or with --debug), silent in a pipe. SIGTERM and SIGUSR2 (a scheduler's notice
    # before a preemption) stop the run as Ctrl-C does, and queue it again at once.
    with Preemption() as preempted, StageProgress(trials, console=err, disable=not err.is_terminal and not is_debug()) as progress:
        try:
            result = job.run(on_stage=progress, verbose=is_debug())
        except KeyboardInterrupt:
            if preempted.signal is not None:
                _requeue(s)
            raise
        progress.done(result)
    ran = result.ran
    assert ran is not None  # set by every tune
    print_front(result, wide)
    if ran.screened:
        err.print(f"{ran.screened} configuration(s) screened out before training by the limits", markup=False, highlight=False)
    if ran.stopped:
        err.print(f"{ran.stopped} run(s) stopped early: dominated at an epoch by a completed run (--no-early-stop trains every run in full)",
                  markup=False, highlight=False)
    if ran.here and ran.completed == 0 and not result.rows:
        raise typer.Exit(1)


def _requeue(s: TuneSettings) -> None:
    """Queue again the run a scheduler's signal interrupted, so another worker takes it up at once."""
    import optuna

    from effsearch.launch import requeue_interrupted
    from effsearch.storage import open_storage

    try:
        queued = requeue_interrupted(optuna.load_study(study_name=s.study_name, storage=open_storage(s.storage_url, None, None)))
    except Exception as exc:  # the lease still finds the run: it is queued again once it runs out
        err.print(f"could not queue the interrupted run again ({type(exc).__name__}); it does not count, and the study goes on without it",
                  markup=False, highlight=False)
        return
    if queued:
        err.print(f"interrupted by a signal: run of trial {', '.join(map(str, queued))} queued again", markup=False, highlight=False)
