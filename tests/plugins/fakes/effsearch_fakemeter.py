"""A third-party energy meter for the plugin tests: reports the joules written in a file, logs each reading.

EFFSEARCH_FAKEMETER_FILE names a file holding the joules one start()/stop() window reports; each
reading is appended to the same path + ".log" as "process-name pid joules".
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from effsearch.measure.energy import EnergyMeter

ENV = "EFFSEARCH_FAKEMETER_FILE"


class FakeMeter(EnergyMeter):
    name = "fakemeter"
    measured = True
    scope = "process"
    priority = 0

    @classmethod
    def unavailable(cls) -> str | None:
        path = os.environ.get(ENV)
        if not path:
            return f"{ENV} is not set"
        if not Path(path).is_file():
            return f"{path} does not exist"
        return None

    def __init__(self) -> None:
        self._path = Path(os.environ[ENV])
        self._started = False

    def start(self) -> None:
        self._started = True

    def stop(self) -> float:
        assert self._started, "stop() before start()"
        self._started = False
        joules = float(self._path.read_text())
        with open(f"{self._path}.log", "a") as log:
            log.write(f"{multiprocessing.current_process().name} {os.getpid()} {joules}\n")
        return joules
