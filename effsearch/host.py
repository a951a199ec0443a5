"""Facts about the machine that several layers record."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "process_gone", "this_process"]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """When process pid started, in clock ticks since boot (/proc/<pid>/stat field 22); None if it is gone.

    A zombie (dead, not yet reaped by its parent) counts as gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # from field 3 on: state, ppid, ...
    return None if fields[0] == "Z" else int(fields[19])


def _pid_namespace() -> str | None:
    """This process's pid namespace ("pid:[4026531836]"): containers on one kernel share the boot id and
    may share the host name (host networking), but each has its own pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def this_process() -> dict[str, Any]:
    """Who runs a trial: host, boot, pid namespace, pid and the process's start time, so that its death can
    be proved later from the same machine and container."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _boot_id(), "pidns": _pid_namespace(), "pid": pid, "start": _start_ticks(pid)}


def process_gone(worker: dict[str, Any] | None) -> bool:
    """Whether the process recorded by this_process() is provably dead: same host and pid namespace, and
    its pid gone or reused by a later process (a record without its pid namespace, from before: or rebooted
    since). A worker on another host, or in another container of this one (its pids are not ours to look
    up), is never judged from here."""
    if not worker or worker.get("host") != socket.gethostname():
        return False
    if "pidns" in worker:
        # Recorded with its container: judged only from the same boot and container. Another machine of
        # the same name, or a reboot, is seen by the lease the worker stops renewing (study/lease.py).
        if worker["pidns"] is None or worker.get("boot") != _boot_id() or worker["pidns"] != _pid_namespace():
            return False
    elif worker.get("boot") and _boot_id() and worker["boot"] != _boot_id():
        return True
    try:
        pid = int(worker["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    start = _start_ticks(pid)
    return start is None or (worker.get("start") is not None and start != worker["start"])
