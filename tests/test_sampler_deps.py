"""The sampler's dependencies are installed: its model runs past the random startup without a fallback warning."""

from __future__ import annotations

import os
import subprocess
import sys

# A fresh process: Optuna warns once, when its GP's optimizer module is first imported.
STUDY = """
import sys
import optuna
from effsearch import record
from effsearch.sampler import STARTUP_RUNS, make_sampler

def objective(trial):
    x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
    record.write(trial, lead=True)
    return x + y, (1 - x) ** 2 + y

study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler(0))
study.optimize(objective, n_trials=STARTUP_RUNS + 1)
print("model sampled:", "optuna._gp.batched_lbfgsb" in sys.modules)
"""


def test_the_gp_sampler_past_its_startup_warns_of_no_missing_greenlet() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", STUDY], capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "default"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "model sampled: True" in proc.stdout, "the study ran past the random startup into the GP's optimizer"
    warned = [line for line in proc.stderr.splitlines() if "greenlet" in line.lower()]
    assert not warned, f"{warned[0]} (greenlet is a dependency: pip install 'greenlet>=3')"
