"""Check on a GPU machine what CI cannot: each check prints pass, fail or skipped with its figure.

Runs in a few minutes with what a GPU machine already has (a CUDA build of torch, possibly a CPU-only
onnxruntime) and effsearch's own dependencies; it downloads nothing. Optional pieces (pynvml,
onnxruntime-gpu, CUDA itself) are looked for inside each check, and a missing one makes that check
"skipped" with the reason. The exit code is 1 if any check failed, else 0.

    world_sizes    the device and world sizes a study here offers (Hardware, the search space)
    train_ddp      one run through effsearch's pipeline on 2 ranks (NCCL) where two GPUs exist, else 1
    train_fp16     the same with fp16 training and its gradient scaler (CUDA only)
    train_bf16     the same with bf16 autocast (where the GPU supports bf16)
    latency_cpu    latency of a small ONNX model on the `cpu` target: the CPU side, always run
    latency_cuda   the same on the `cuda` target (onnxruntime's CUDA execution provider), outputs compared
    nvml_energy    the `nvml` meter over a window of GPU work: joules, mean watts, counter against sampling

    python benchmarks/gpu_check.py                  # a line per check
    python benchmarks/gpu_check.py --json           # one JSON object on stdout, nothing else
    python benchmarks/gpu_check.py --cpu-fallback   # without CUDA, train 1 rank on the CPU instead of skipping
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "userfiles" / "tiny_mlp.py"
STATUSES = ("pass", "fail", "skipped")
RUN_TIMEOUT_S = 120.0  # one training run; the whole check stays within five minutes


@dataclass(frozen=True)
class Check:
    """One check's outcome: figure, what was measured; detail, why it was skipped or failed (or more)."""

    name: str
    status: str
    figure: str = ""
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Options:
    file: Path
    epochs: int
    cpu_fallback: bool
    tmp: Path


def passed(name: str, figure: str, detail: str = "") -> Check:
    return Check(name, "pass", figure, detail)


def failed(name: str, figure: str, detail: str) -> Check:
    return Check(name, "fail", figure, detail)


def skipped(name: str, reason: str) -> Check:
    return Check(name, "skipped", "", reason)


def no_cuda() -> str | None:
    """Why torch cannot reach a GPU here, or None when it can."""
    import torch

    if torch.version.cuda is None:
        return f"no CUDA: torch {torch.__version__} is a CPU build (torch.version.cuda is None)"
    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return None


# -- the world sizes offered ------------------------------------------------------------------------


def check_world_sizes(opts: Options) -> Check:
    """Hardware.here(), and the world sizes and training precisions the search space offers on it."""
    import torch

    from effsearch.space import load_space
    from effsearch.study.settings import Hardware
    from effsearch.train.pool import available_cores

    hw = Hardware.here()
    space = load_space(None, hw.ranks, device=hw.device).clamp_world_size(hw.ranks)
    ws, tp = space.dims["world_size"], space.dims["train_precision"]
    figure = f"{hw.device}: world sizes {int(ws.low)}-{int(ws.high)}, train precisions {','.join(tp.choices)}"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    expected = ("cuda", gpus) if gpus else ("cpu", available_cores())
    problems = []
    if (hw.device, hw.ranks) != expected:
        problems.append(f"Hardware.here() is {hw.device} x {hw.ranks}, expected {expected[0]} x {expected[1]}")
    if int(ws.high) != hw.ranks:
        problems.append(f"the space offers world sizes up to {int(ws.high)}, not {hw.ranks}")
    if ("fp16" in tp.choices) != (hw.device == "cuda"):
        problems.append(f"fp16 training {'offered' if 'fp16' in tp.choices else 'not offered'} on {hw.device}")
    return failed("world_sizes", figure, "; ".join(problems)) if problems else passed("world_sizes", figure)


# -- training through effsearch's pipeline ----------------------------------------------------------


class Runs:
    """One rank pool and measurer for every training check, started on first use."""

    def __init__(self, opts: Options, stack: contextlib.ExitStack) -> None:
        self.opts = opts
        self._stack = stack
        self._ready: tuple[Any, Any, Any] | None = None

    def _setup(self) -> tuple[Any, Any, Any]:
        if self._ready is None:
            from effsearch.measure.artifact import Measurer
            from effsearch.plugins import choose_energy_meter
            from effsearch.train.pool import WorkerPool
            from effsearch.userfile import load_user_file, probe

            uf = load_user_file(self.opts.file)
            _, datasets = probe(uf)
            # Latency and inference energy on the CPU here: the latency checks below time the CUDA side.
            measurer = Measurer(uf, datasets, choose_energy_meter(None), ["CPUExecutionProvider"], 1, warmup=5, repeats=20)
            pool = self._stack.enter_context(WorkerPool(uf.path, start_timeout_s=RUN_TIMEOUT_S))
            self._ready = (uf, measurer, pool)
        return self._ready

    def train(self, name: str, *, device: str, world: int, precision: str = "fp32") -> Check:
        """One run of opts.epochs epochs on `world` ranks; passes when it trained, exported and measured."""
        from effsearch.config import TrainConfig
        from effsearch.run.pipeline import run_training

        uf, measurer, pool = self._setup()
        config = TrainConfig(
            batch_size=32, lr=3e-3, lr_schedule="cosine", clip_norm=1.0, prune_ratio=0.0,
            world_size=world, epochs=self.opts.epochs, seed=0, train_precision=precision,
        )
        result = run_training(
            pool, measurer, config, ("fp32",), self.opts.tmp / name, device=device, threads_per_rank=1, timeout_s=RUN_TIMEOUT_S,
        )
        backend = "nccl" if device == "cuda" else "gloo"
        lead, fp32 = result.lead, (result.precisions[0] if result.precisions else None)
        metric = fp32.metrics.get(uf.metric_key) if fp32 is not None and fp32.error is None else None
        figure = (
            f"{world} rank(s) on {device} ({backend}), {precision}: {lead.steps} steps, loss {lead.final_loss:.3f}, "
            f"{uf.metric_key} {metric if metric is None else round(float(metric), 3)}, train {result.timing['train_s']:.2f} s, "
            f"energy {result.energy_j:.1f} J ({result.energy_source})"
        )
        if precision == "fp16":
            figure += f", scaler skipped {lead.skipped_steps} step(s)"
        if len(result.ranks) != world:
            return failed(name, figure, f"{len(result.ranks)} rank results for {world} ranks")
        if fp32 is None or fp32.error:
            return failed(name, figure, fp32.error if fp32 is not None else f"no precision made: {result.stopped}")
        if not math.isfinite(lead.final_loss) or metric is None or not math.isfinite(float(metric)):
            return failed(name, figure, "the loss or the metric is not a finite number")
        return passed(name, figure)


def fallback(check: Check, reason: str) -> Check:
    """A training check run on the CPU instead, said so in its detail."""
    note = f"CPU fallback, not the GPU path: {reason}"
    return replace(check, detail=f"{check.detail}; {note}" if check.detail else note)


def check_train_ddp(opts: Options, runs: Runs) -> Check:
    import torch

    reason = no_cuda()
    if reason is None:
        return runs.train("train_ddp", device="cuda", world=min(2, torch.cuda.device_count()))
    if opts.cpu_fallback:
        return fallback(runs.train("train_ddp", device="cpu", world=1), reason)
    return skipped("train_ddp", f"{reason}; --cpu-fallback trains 1 rank on the CPU instead")


def check_train_fp16(opts: Options, runs: Runs) -> Check:
    import torch

    reason = no_cuda()
    if reason is not None:
        return skipped("train_fp16", f"{reason}; fp16 training needs CUDA (its gradient scaler is CUDA's)")
    return runs.train("train_fp16", device="cuda", world=min(2, torch.cuda.device_count()), precision="fp16")


def check_train_bf16(opts: Options, runs: Runs) -> Check:
    import torch

    reason = no_cuda()
    if reason is None:
        if not torch.cuda.is_bf16_supported():
            return skipped("train_bf16", f"{torch.cuda.get_device_name(0)} does not support bf16 (torch.cuda.is_bf16_supported() is False)")
        return runs.train("train_bf16", device="cuda", world=min(2, torch.cuda.device_count()), precision="bf16")
    if opts.cpu_fallback:
        return fallback(runs.train("train_bf16", device="cpu", world=1, precision="bf16"), reason)
    return skipped("train_bf16", f"{reason}; --cpu-fallback trains bf16 on the CPU instead")


# -- latency on the cpu and cuda targets ------------------------------------------------------------


def small_model(opts: Options) -> tuple[Path, Any]:
    """A small MLP exported to ONNX once (effsearch's exporter, parity checked), and one input sample."""
    import torch

    from effsearch.onnx_export import export_onnx

    path = opts.tmp / "latency" / "model.onnx"
    torch.manual_seed(0)
    x = torch.randn(8, 256)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10))
        export_onnx(model.eval(), x, path)
    return path, x[:1].numpy()


def _target(name: str) -> tuple[Any, str | None]:
    """The latency-target plugin `name` (class, None) or (None, why it is not usable here)."""
    from effsearch.plugins import plugins_of_kind

    for p in plugins_of_kind("latency_target"):
        if p.name == name:
            return (None, p.unavailable) if p.unavailable else (p.obj, None)
    return None, f"no latency target plugin named {name!r} is installed"


def check_latency_cpu(opts: Options) -> Check:
    from effsearch.measure.latency import measure_latency

    target, reason = _target("cpu")
    if target is None:
        return failed("latency_cpu", "", f"the cpu target is not usable: {reason}")
    path, sample = small_model(opts)
    report, _ = measure_latency(path, sample, threads=1, warmup=10, repeats=100, providers=target().providers())
    return passed("latency_cpu", f"p50 {report.p50_ms:.3f} ms, p90 {report.p90_ms:.3f} ms ({report.repeats} calls, 1 thread)")


def check_latency_cuda(opts: Options) -> Check:
    import numpy as np
    import onnxruntime as ort

    from effsearch.measure.latency import measure_latency
    from effsearch.runtime import ort_session

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return skipped(
            "latency_cuda",
            f"onnxruntime {ort.__version__} is the CPU build (providers: {', '.join(ort.get_available_providers())}); "
            "install onnxruntime-gpu for CUDAExecutionProvider",
        )
    target, reason = _target("cuda")
    if target is None:
        return skipped("latency_cuda", f"the cuda latency target is not usable: {reason}")
    providers = target().providers()
    path, sample = small_model(opts)
    session = ort_session(path, providers=providers)
    # onnxruntime-gpu falls back to the CPU, with a warning only, when CUDA or cuDNN libraries are missing.
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return failed("latency_cuda", "", f"the session runs on {session.get_providers()}: CUDAExecutionProvider did not load (CUDA/cuDNN libraries?)")
    name = session.get_inputs()[0].name
    on_gpu = session.run(None, {name: sample})[0]
    on_cpu = ort_session(path).run(None, {name: sample})[0]
    gap = float(np.max(np.abs(on_gpu - on_cpu)))
    report, _ = measure_latency(path, sample, threads=1, warmup=20, repeats=200, providers=providers)
    figure = f"p50 {report.p50_ms:.3f} ms, p90 {report.p90_ms:.3f} ms ({report.repeats} calls), max |cuda - cpu| {gap:.2e}"
    if not np.allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-3):
        return failed("latency_cuda", figure, "the CUDA provider's outputs differ from the CPU provider's")
    return passed("latency_cuda", figure)


# -- NVML energy --------------------------------------------------------------------------------------


def check_nvml_energy(opts: Options) -> Check:
    from effsearch.plugins import plugins_of_kind

    info = next((p for p in plugins_of_kind("energy_meter") if p.name == "nvml"), None)
    if info is None:
        return skipped("nvml_energy", "no energy meter plugin named 'nvml' is installed")
    if info.unavailable:
        return skipped("nvml_energy", f"the nvml meter is not usable: {info.unavailable}")
    reason = no_cuda()
    if reason is not None:
        return skipped("nvml_energy", f"NVML sees a GPU but {reason}, so nothing loads it")
    import torch

    meter_cls = info.obj
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    for _ in range(20):  # warm up kernels and clocks
        a @ a
    torch.cuda.synchronize()
    # The meter as a study reads it (the counter, where the GPU has one) beside power sampling, over one window.
    counter, sampled = meter_cls(), meter_cls(counter=False)
    try:
        sampled.start()
    except RuntimeError:  # the counter but no power reading: nothing to compare it with
        sampled = None
    counter.start()
    t0, products = time.perf_counter(), 0
    while time.perf_counter() - t0 < 2.0:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
        products += 10
    joules = counter.stop()
    window = time.perf_counter() - t0
    sampled_j = sampled.stop() if sampled is not None else None
    ratio = joules / sampled_j if sampled_j else None
    figure = (f"{joules:.1f} J over {window:.2f} s ({joules / window:.0f} W mean, {products} fp16 4096^3 products; "
              f"{info.detail})" + (f"; counter/sampling {ratio:.2f}" if ratio is not None else ""))
    if not joules > 0 or (ratio is not None and not 0.5 <= ratio <= 2.0):
        return failed("nvml_energy", figure, "no energy read, or the counter and the sampled power disagree by more than 2x")
    return passed("nvml_energy", figure)


# -- running them ---------------------------------------------------------------------------------


def run_check(name: str, fn: Callable[[], Check]) -> Check:
    """One check; a missing optional import skips it, any other error fails it with the error."""
    t0 = time.perf_counter()
    try:
        check = fn()
    except ImportError as exc:
        check = skipped(name, f"{exc.name or 'a module'} cannot be imported: {exc}")
    except Exception as exc:
        check = failed(name, "", f"{type(exc).__name__}: {exc}")
    return replace(check, seconds=round(time.perf_counter() - t0, 3))


def run_checks(opts: Options) -> list[Check]:
    with contextlib.ExitStack() as stack:
        runs = Runs(opts, stack)
        plan: list[tuple[str, Callable[[], Check]]] = [
            ("world_sizes", lambda: check_world_sizes(opts)),
            ("train_ddp", lambda: check_train_ddp(opts, runs)),
            ("train_fp16", lambda: check_train_fp16(opts, runs)),
            ("train_bf16", lambda: check_train_bf16(opts, runs)),
            ("latency_cpu", lambda: check_latency_cpu(opts)),
            ("latency_cuda", lambda: check_latency_cuda(opts)),
            ("nvml_energy", lambda: check_nvml_energy(opts)),
        ]
        return [run_check(name, fn) for name, fn in plan]


def environment() -> dict[str, Any]:
    """The versions and devices the checks ran with."""
    env: dict[str, Any] = {"python": platform.python_version(), "host": platform.node()}
    try:
        import torch

        env.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                   gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [])
    except ImportError as exc:
        env["torch"] = f"missing: {exc}"
    try:
        import onnxruntime as ort

        env.update(onnxruntime=ort.__version__, ort_providers=ort.get_available_providers())
    except ImportError as exc:
        env["onnxruntime"] = f"missing: {exc}"
    return env


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to fd 1 (this process, and the rank processes it starts) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    ap.add_argument("--file", type=Path, default=TINY, help="the user file the training checks run (default: a tiny MLP)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--cpu-fallback", action="store_true", help="without CUDA, run the training checks on 1 CPU rank")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    t0 = time.perf_counter()
    quiet = stdout_to_stderr() if args.json else contextlib.nullcontext()
    with quiet, tempfile.TemporaryDirectory(prefix="effsearch-gpu-check-") as tmp:
        opts = Options(args.file, args.epochs, args.cpu_fallback, Path(tmp))
        env = environment()
        checks = run_checks(opts)
    ok = not any(c.status == "fail" for c in checks)
    if args.json:
        counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
        out = {"ok": ok, "seconds": round(time.perf_counter() - t0, 2), "counts": counts, "environment": env,
               "checks": [asdict(c) for c in checks]}
        print(json.dumps(out, indent=2))
    else:
        gpus = ", ".join(env.get("gpus") or []) or "no GPU"
        print(f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), onnxruntime {env.get('onnxruntime')}; {gpus}")
        for c in checks:
            text = c.figure + (f" ({c.detail})" if c.figure and c.detail else c.detail)
            print(f"{c.status:7}  {c.name:12}  {text}  [{c.seconds:.1f} s]")
        print(f"{'ok' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
