"""Storage load of many workers: each worker process replays the storage traffic of effsearch's runs (ask,
the record's writes and lease renewals, the run's three other precisions added whole, tell) with a random
sampler, without torch, on PostgreSQL directly and through the gRPC storage proxy; then real workers
(`effsearch tune tests/userfiles/tiny_mlp.py --epochs 1`, launched as `tune --workers N` launches them)
on the same database.

Prints, per storage route and worker count: suggestions per second, wall time for the runs, and the most
connections the database held (pg_stat_activity); per real worker count: the launcher (local where the
workers fit the cores, else ray on a local cluster of one logical CPU per worker), wall time from the
launch to the last worker's end (their start-up included), runs per minute and connections held. Needs
PostgreSQL on 127.0.0.1:5432 (trust auth, as .ci/run starts it; a fresh database is made and dropped) or a
--storage URL; grpcio for the proxy; torch for the real workers, and ray beyond the cores.

    python benchmarks/workers.py                       # 2, 8 and 32 workers, 64 runs, direct and proxy; 2 and 8 real
    python benchmarks/workers.py --workers 2,8 --runs 16 --real none --json
    python benchmarks/workers.py --storage sqlite:///tmp/w.db --routes direct,proxy
    python benchmarks/workers.py --workers none --real 2 --real-runs 4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
EPOCHS = 3  # curve writes per run, one per epoch
TINY = Path(__file__).resolve().parents[1] / "tests" / "userfiles" / "tiny_mlp.py"
RENEWALS = 2  # lease renewals per run (a run of ~3 x the lease interval)


@dataclass(frozen=True)
class Row:
    route: str  # "direct" or "proxy"
    workers: int
    runs: int
    trials: int  # runs plus their other precisions
    wall_s: float
    suggestions_per_s: float
    max_connections: int | None  # None where the storage is not PostgreSQL


@dataclass(frozen=True)
class RealRow:
    launcher: str  # "local", or "ray" (a local cluster of one logical CPU per worker) beyond the cores
    workers: int
    runs: int  # runs the study counts at the end
    wall_s: float  # from the launch to the last worker's end, the workers' start-up included
    runs_per_min: float
    max_connections: int | None  # None where the storage is not PostgreSQL
    skipped: str | None = None  # why the arm did not run (ray not installed)


def _space() -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    return {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
        "epochs": IntDistribution(1, 20),
        "prune_ratio": FloatDistribution(0.0, 0.8),
        "prune_method": CategoricalDistribution(["l1", "l2", "taylor"]),
        "precision": CategoricalDistribution(list(PRECISIONS)),
    }


def _open(url: str):
    from effsearch.storage import open_storage

    return open_storage(url)  # heartbeats on, as a tune worker opens it (a grpc:// URL has none)


def _worker(url: str, study_name: str, rank: int, counter, barrier) -> None:
    """One worker: claim runs from the shared counter until all are taken, replaying each run's storage traffic."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from effsearch import record
    from effsearch.host import this_process

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # ask/tell on a storage with heartbeats warns on every ask; effsearch's runs hold a lease instead.
    warnings.filterwarnings("ignore", message="Heartbeat of storage")
    storage = _open(url)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=rank))
    space = _space()
    barrier.wait()
    while True:
        with counter.get_lock():
            if counter.value <= 0:
                break
            counter.value -= 1
        study.get_trials(deepcopy=False)  # the run loop counts the runs before each one
        trial = study.ask(space)
        n = trial.number
        record.write(trial, worker={**this_process(), "trial": n}, lease=record.lease_until(n, 30))
        record.write(trial, lead=True)
        record.write(trial, run=n + 1, run_trial=n, config={**trial.params, "batch_size": 64, "seed": rank})
        record.write(trial, untrained={"metric": 0.1, "latency_ms": 1.0, "size_mb": 2.0})
        curve = []
        for epoch in range(1, EPOCHS + 1):
            curve.append({"epoch": epoch, "metric": 0.5 + 0.1 * epoch, "energy_j": 10.0 * epoch, "train_s": 1.0 * epoch})
            record.write(trial, curve=list(curve))
            if epoch <= RENEWALS:
                record.write(trial, lease=record.lease_until(n, 30))
        values = [1.0 - trial.params["prune_ratio"], float(trial.params["epochs"])]
        record.write(trial, metrics={"accuracy": values[0], "latency_ms": values[1]}, onnx=f"/tmp/{n}.onnx")
        record.write(trial, timing={"train_s": 3.0, "export_s": 0.2, "measure_s": 0.5}, prune_achieved=trial.params["prune_ratio"])
        for precision in PRECISIONS:
            if precision == trial.params["precision"]:
                continue
            params = {**trial.params, "precision": precision}
            attrs = record.TrialRecord(run=n + 1, run_trial=n, metrics={"accuracy": values[0]}, onnx=f"/tmp/{n}-{precision}.onnx").user_attrs()
            study.add_trial(create_trial(state=TrialState.COMPLETE, params=params, distributions=space, values=values, user_attrs=attrs))
        study.tell(trial, values)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(url: str, port: int) -> None:
    import optuna

    from effsearch.storage import proxied_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.storages.run_grpc_proxy_server(proxied_storage(url), host="127.0.0.1", port=port)


def _connections(db: str | None, stop: threading.Event, peak: list[int]) -> None:
    """Sample the database's connections every 0.1 s until `stop`, keeping the highest count in peak[0]."""
    if db is None:
        return
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        while not stop.is_set():
            row = admin.execute("select count(*) from pg_stat_activity where datname = %s", (db,)).fetchone()
            peak[0] = max(peak[0], int(row[0]))
            stop.wait(0.1)


def measure(url: str, db: str | None, route: str, workers: int, runs: int) -> Row:
    """Run `runs` runs with `workers` worker processes on a fresh study, directly or through a proxy it starts."""
    import optuna

    from effsearch.storage import resolve_url

    optuna.logging.set_verbosity(optuna.logging.ERROR)

    ctx = mp.get_context("spawn")  # gRPC does not survive fork
    name = f"bench-{route}-{workers}-{uuid.uuid4().hex[:6]}"
    server = None
    target = resolve_url(url)
    if route == "proxy":
        port = _free_port()
        server = ctx.Process(target=_serve, args=(target, port), daemon=True)
        server.start()
        target = f"grpc://127.0.0.1:{port}"
    setup = _open(target)
    optuna.create_study(study_name=name, storage=setup, directions=["maximize", "minimize"])
    counter, barrier = ctx.Value("i", runs), ctx.Barrier(workers + 1)
    procs = [ctx.Process(target=_worker, args=(target, name, rank, counter, barrier)) for rank in range(workers)]
    for p in procs:
        p.start()
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_connections, args=(db, stop, peak), daemon=True)
    sampler.start()
    barrier.wait(timeout=600)  # every worker has imported and connected: the clock starts
    start = time.perf_counter()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"{route} with {workers} workers: a worker failed (exit codes {[p.exitcode for p in procs]})")
    trials = optuna.load_study(study_name=name, storage=setup).get_trials(deepcopy=False)
    if server is not None:
        server.terminate()
        server.join()
    suggestions = sum(len(t.params) for t in trials if t.user_attrs.get("lead"))
    return Row(route, workers, runs, len(trials), round(wall, 2), round(suggestions / wall, 1), peak[0] if db else None)


def real(url: str, db: str | None, workers: int, runs: int) -> RealRow:
    """`runs` runs of tiny_mlp.py (one epoch) by `workers` real workers on a fresh study, through the local
    launcher where they fit this machine's cores, else through Ray (one logical CPU per worker)."""
    from effsearch.api import prepare
    from effsearch.launch import StudyWatch, launcher_for, start, wait, worker_argv
    from effsearch.train.pool import available_cores

    engine = "local" if workers <= available_cores() else "ray"
    ray = None
    if engine == "ray":
        try:
            import ray
        except ImportError:
            return RealRow("ray", workers, 0, 0.0, 0.0, None, skipped="ray is not installed: pip install 'effsearch[ray]'")
        # More workers than cores: each task asks for one CPU of a cluster that says it has one per worker.
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    name = f"bench-real-{engine}-{workers}-{uuid.uuid4().hex[:6]}"
    stop, peak = threading.Event(), [0]
    try:
        with tempfile.TemporaryDirectory(prefix="effsearch-bench-") as tmp:
            options = dict(trials=runs, study=name, storage=url, epochs=1, artifacts=Path(tmp) / "studies")
            job = prepare(TINY, **options)
            launcher = launcher_for(engine, [f"folder={tmp}/worker-logs"] if engine == "local" else ["cpus_per_worker=1"])
            share = launcher.share(workers)
            argv = worker_argv(TINY, options, job.settings, share)
            sampler = threading.Thread(target=_connections, args=(db, stop, peak), daemon=True)
            sampler.start()
            begin = time.perf_counter()
            started = start(launcher, workers, argv, share, job.settings.storage_url)
            ended = wait(started, StudyWatch(name, job.settings.storage_url), poll_s=0.2)
            wall = time.perf_counter() - begin
            failed = [w for w in started if ended.exit_codes[w.name] != 0]
            if failed:
                tails = [f"{w.name}: {w.log.read_text(errors='replace').strip().splitlines()[-1:]}" for w in failed if w.log]
                raise SystemExit(f"{workers} real workers ({engine}): a worker failed {ended.exit_codes} {tails}")
    finally:
        stop.set()
        if ray is not None:
            ray.shutdown()
    return RealRow(engine, workers, ended.runs, round(wall, 2), round(60 * ended.runs / wall, 1), peak[0] if db else None)


def _counts(text: str) -> list[int]:
    return [] if text.strip().lower() == "none" else [int(n) for n in text.split(",")]


def _temp_database() -> str:
    import psycopg

    name = f"effsearch_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="2,8,32", help="replaying worker counts, comma-separated, or none (default 2,8,32)")
    ap.add_argument("--runs", type=int, default=64, help="runs per replay measurement (default 64)")
    ap.add_argument("--real", default="2,8", help="real worker counts on tiny_mlp.py, comma-separated, or none (default 2,8)")
    ap.add_argument("--real-runs", type=int, help="runs per real measurement (default: 4 per worker)")
    ap.add_argument("--routes", default="direct,proxy", help="direct, proxy or both (default both)")
    ap.add_argument("--storage", help="a database URL (default: a fresh PostgreSQL database on 127.0.0.1:5432, dropped after)")
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    a = ap.parse_args(argv)
    made = None if a.storage else _temp_database()
    url = a.storage or f"postgresql://postgres@127.0.0.1:5432/{made}"
    db = made or (url.rsplit("/", 1)[1].split("?")[0] if url.startswith(("postgresql://", "postgres://")) else None)
    rows: list[Row] = []
    reals: list[RealRow] = []
    try:
        for route in a.routes.split(","):
            for workers in _counts(a.workers):
                rows.append(measure(url, db, route, workers, a.runs))
                if not a.json:
                    r = rows[-1]
                    conns = "-" if r.max_connections is None else str(r.max_connections)
                    print(f"{r.route:6} {r.workers:3d} workers  {r.runs} runs in {r.wall_s:7.2f} s  "
                          f"{r.suggestions_per_s:8.1f} suggestions/s  {conns:>3} connections held", flush=True)
        for workers in _counts(a.real):
            reals.append(real(url, db, workers, a.real_runs or 4 * workers))
            if not a.json:
                r = reals[-1]
                if r.skipped:
                    print(f"real   {r.workers:3d} workers  skipped: {r.skipped}", flush=True)
                    continue
                conns = "-" if r.max_connections is None else str(r.max_connections)
                print(f"real   {r.workers:3d} workers  {r.launcher} launcher  {r.runs} runs in {r.wall_s:7.2f} s  "
                      f"{r.runs_per_min:8.1f} runs/min  {conns:>3} connections held", flush=True)
    finally:
        if made:
            _drop_database(made)
    if a.json:
        print(json.dumps({"runs": a.runs, "cpus": os.cpu_count(), "rows": [asdict(r) for r in rows],
                          "real": [asdict(r) for r in reals]}, indent=2))
    return rows


if __name__ == "__main__":
    main()
