"""benchmarks/gpu_check.py on a machine without a GPU: the CPU side passes, every GPU check says why it skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ("world_sizes", "train_ddp", "train_fp16", "train_bf16", "latency_cpu", "latency_cuda", "nvml_energy")

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run benchmarks/gpu_check.py itself")


def _run(*args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    try:
        out = json.loads(proc.stdout)  # stdout holds the JSON object and nothing else
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON object (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc.returncode, out


def _by_name(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert set(out) >= {"ok", "seconds", "counts", "environment", "checks"}, out
    checks = {c["name"]: c for c in out["checks"]}
    assert tuple(checks) == CHECKS, list(checks)
    for c in out["checks"]:
        assert set(c) == {"name", "status", "figure", "detail", "seconds"}, c
        assert c["status"] in ("pass", "fail", "skipped"), c
    assert out["counts"] == {s: sum(c["status"] == s for c in out["checks"]) for s in ("pass", "fail", "skipped")}
    return checks


def _skipped_naming(check: dict[str, Any], *words: str) -> None:
    assert check["status"] == "skipped" and check["figure"] == "", check
    assert any(w in check["detail"] for w in words), check


def test_without_a_gpu_the_cpu_side_passes_and_each_gpu_check_says_what_is_missing() -> None:
    code, out = _run()
    checks = _by_name(out)
    assert code == 0 and out["ok"] is True, out
    assert checks["world_sizes"]["status"] == "pass" and checks["world_sizes"]["figure"].startswith("cpu: world sizes 1-"), checks
    assert "fp16" not in checks["world_sizes"]["figure"], "fp16 training is offered on GPUs only"
    assert checks["latency_cpu"]["status"] == "pass" and "p50" in checks["latency_cpu"]["figure"], checks
    for name in ("train_ddp", "train_fp16", "train_bf16"):
        _skipped_naming(checks[name], "CUDA")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        _skipped_naming(checks["latency_cuda"], "CPU build")
    _skipped_naming(checks["nvml_energy"], "pynvml", "NVML", "GPU")


def test_the_cpu_fallback_trains_through_the_pipeline_and_fp16_still_skips() -> None:
    code, out = _run("--cpu-fallback")
    checks = _by_name(out)
    assert code == 0 and out["ok"] is True, out
    for name in ("train_ddp", "train_bf16"):
        assert checks[name]["status"] == "pass", checks[name]
        assert checks[name]["figure"].startswith("1 rank(s) on cpu (gloo)"), checks[name]
        assert "CPU fallback, not the GPU path" in checks[name]["detail"], checks[name]
    _skipped_naming(checks["train_fp16"], "CUDA")
