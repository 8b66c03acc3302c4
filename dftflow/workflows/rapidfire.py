"""Run a study's READY Fireworks one after the other in this process (a dftflow worker).

A worker is named ``dftflow@HOST:PID`` (:func:`worker_name`), so that a RUNNING Firework whose
worker process on this host has died can be recognised as lost (:mod:`dftflow.workflows.status`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fireworks.core.rocket as fw_rocket
from fireworks import FWorker, LaunchPad
from fireworks.core.rocket_launcher import launch_rocket

from dftflow.workflows.launchpad import LaunchpadHandle
from dftflow.workflows.store import (
    WorkerStopped,
    terminate_gracefully,
    termination_requested,
    termination_signal,
)

_WORKER_NAME = re.compile(r"dftflow@(.+):(\d+)")
#: Environment variable naming the worker in the processes it starts (VASP): after the worker was
#: killed, ``dftflow run`` / ``rerun`` finds and stops them (:func:`~.status.stop_orphans`).
WORKER_ENV = "DFTFLOW_WORKER"
#: File in ``DIR/logs/`` receiving the tracebacks of failed Firetasks.
TRACEBACK_LOG = "tracebacks.log"


def worker_name() -> str:
    """Name of this worker process: host and PID (to detect lost runs on this host)."""
    return f"dftflow@{socket.gethostname()}:{os.getpid()}"


def worker_host_pid(name: str) -> tuple[str, int] | None:
    """(host, PID) of a dftflow worker name (:func:`worker_name`); ``None`` for other names."""
    m = _WORKER_NAME.fullmatch(name)
    return (m.group(1), int(m.group(2))) if m else None


def fworker_for(query: dict[str, Any], env: dict[str, Any] | None = None) -> FWorker:
    """The FWorker of this process, restricted to ``query``."""
    return FWorker(name=worker_name(), query=dict(query), env=dict(env or {}))


@dataclass
class RunEvent:
    """A progress event of :func:`run_local`: ``kind`` is "start" or "end"."""

    kind: str
    fw_id: int
    name: str
    state: str = ""
    seconds: float = 0.0


def run_local(
    handle: LaunchpadHandle,
    study_dir: str | Path,
    query: dict[str, Any],
    *,
    on_event: Callable[[RunEvent], None] | None = None,
    max_fireworks: int = 0,
    poll_s: float = 0.5,
    env: dict[str, Any] | None = None,
) -> int:
    """Run READY Fireworks matching ``query`` one after the other until none can run.

    Waits while other workers run Fireworks this one may need. SIGTERM or SIGINT (Ctrl-C) stops
    the worker: a running Firework is recorded as FIZZLED (``dftflow run`` or ``dftflow rerun``
    restarts it), nothing new is started and every finished one is already on disk.

    Returns
    -------
    int
        Number of Fireworks this worker ran.

    Raises
    ------
    WorkerStopped
        After stopping on SIGTERM or SIGINT (its ``signum`` says which).
    """
    study_dir = Path(study_dir).absolute()
    fworker = fworker_for(query, env)
    _quiet_fireworks()
    ran = 0
    previous = os.environ.get(WORKER_ENV)
    os.environ[WORKER_ENV] = fworker.name
    with terminate_gracefully(), contextlib.ExitStack() as stack:
        stack.callback(_restore_env, WORKER_ENV, previous)
        while not termination_requested():
            if max_fireworks and ran >= max_fireworks:
                break
            lp = handle.launchpad()
            ready = _first_ready(handle, lp, query)
            if ready is None:
                if lp.future_run_exists(fworker):
                    time.sleep(poll_s)
                    continue
                break
            if _launch(lp, fworker, ready, study_dir, on_event):
                ran += 1
        signum = termination_signal()
    if signum:
        raise WorkerStopped(signum)
    return ran


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _launch(
    lp: LaunchPad,
    fworker: FWorker,
    ready: dict[str, Any],
    study_dir: Path,
    on_event: Callable[[RunEvent], None] | None,
) -> bool:
    """Run one Firework from ``study_dir`` (FireWorks makes its launch directory in the cwd)."""
    if on_event:
        on_event(RunEvent("start", ready["fw_id"], ready["name"]))
    t0 = time.monotonic()
    cwd = os.getcwd()
    log_dir = study_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    # the traceback of a failed task goes to DIR/logs/, not the terminal (the one-line reason is
    # in `dftflow status`, the whole traceback also in the LaunchPad)
    with open(log_dir / TRACEBACK_LOG, "a") as log:
        try:
            os.chdir(study_dir)
            launched = launch_rocket(
                lp, fworker, fw_id=ready["fw_id"], strm_lvl="ERROR", err_file=log
            )
        finally:
            os.chdir(cwd)
    if launched and on_event:
        state = lp.get_fw_dict_by_id(ready["fw_id"])["state"]
        on_event(RunEvent("end", ready["fw_id"], ready["name"], state, time.monotonic() - t0))
    return bool(launched)


def _quiet_fireworks() -> None:
    """Keep FireWorks' INFO lines off the terminal (progress is shown by dftflow)."""
    fw_rocket.ROCKET_STREAM_LOGLEVEL = "WARNING"
    for name in ("rocket.launcher", "launchpad", "queue.launcher", "queue.adapter"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _first_ready(
    handle: LaunchpadHandle, lp: LaunchPad, query: dict[str, Any]
) -> dict[str, Any] | None:
    """The READY Firework of ``query`` to run next: highest ``_priority``, then lowest fw_id."""
    with handle.operation():
        return lp.fireworks.find_one(
            {**query, "state": "READY"},
            {"fw_id": 1, "name": 1},
            sort=[("spec._priority", -1), ("fw_id", 1)],
        )
