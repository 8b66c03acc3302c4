"""Worker processes: how many, with how many threads each, and running them side by side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dftflow.engines.registry import engine_entry, usable_cores
from dftflow.workflows.launchpad import LaunchpadHandle
from dftflow.workflows.status import study_status

#: Seconds a worker has to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 60


def default_workers(engine: str) -> int:
    """Worker processes ``dftflow run`` starts when not told (the engine's registry entry says)."""
    return engine_entry(engine).default_workers()


def thread_env(workers: int) -> dict[str, str]:
    """Thread-count variables that share the cores among ``workers`` processes."""
    n = str(max(1, usable_cores() // max(workers, 1)))
    return {k: n for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def launch_command(
    study_dir: Path, handle: LaunchpadHandle, vasp_cmd: str | None = None
) -> list[str]:
    """``dftflow launch`` for ``study_dir`` on the same LaunchPad, run by this Python.

    ``vasp_cmd``: a ``--vasp-cmd`` given to ``dftflow run``/``launch``, passed on to the worker.
    """
    cmd = [sys.executable, "-m", "dftflow", "launch", "-o", str(study_dir), *handle.cli_args()]
    return cmd + (["--vasp-cmd", vasp_cmd] if vasp_cmd else [])


@dataclass
class WorkerExit:
    """How a worker process of :func:`run_workers` ended."""

    index: int
    returncode: int
    log: Path


def run_workers(
    handle: LaunchpadHandle,
    study_dir: str | Path,
    workers: int,
    query: dict[str, Any] | None = None,
    *,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    poll_s: float = 1.0,
    vasp_cmd: str | None = None,
) -> list[WorkerExit]:
    """Run the study's Fireworks with ``workers`` ``dftflow launch`` processes side by side.

    Every worker pulls READY Fireworks from the study's LaunchPad (the embedded store locks every
    operation, so each Firework runs exactly once) and waits while others run what it needs. This
    process only watches: ``on_status`` receives :func:`~dftflow.workflows.status.study_status`
    (with ``running``) every ``poll_s``. Worker output goes to ``DIR/logs/worker-<k>.log``.
    SIGINT (Ctrl-C) or SIGTERM here is passed on to the workers: their running Fireworks are
    recorded FIZZLED (with the signal as the reason) and rerun on the next ``dftflow run``; the
    ``KeyboardInterrupt`` or ``SystemExit(143)`` is raised again once every worker has stopped.
    ``vasp_cmd`` (``--vasp-cmd``) is passed to every worker.
    """
    study_dir = Path(study_dir).absolute()
    log_dir = study_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    env = {**os.environ, **thread_env(workers)}
    cmd = launch_command(study_dir, handle, vasp_cmd)
    procs: list[tuple[subprocess.Popen, Path]] = []
    logs: list[IO[str]] = []

    def _stop(signum, frame):  # SIGTERM here: leave through the finally below
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _stop)
    stop_with = signal.SIGTERM
    try:
        for k in range(workers):
            log = log_dir / f"worker-{k + 1}.log"
            fh = open(log, "a")  # noqa: SIM115 - closed in the finally below
            logs.append(fh)
            procs.append((_start_worker(cmd, fh, env), log))
        while any(p.poll() is None for p, _ in procs):
            if on_status is not None:
                on_status(study_status(handle, query))
            time.sleep(poll_s)
    except KeyboardInterrupt:
        stop_with = signal.SIGINT  # the workers record "interrupted by SIGINT (Ctrl-C)"
        raise
    finally:
        _stop_workers([p for p, _ in procs], stop_with)
        for fh in logs:
            fh.close()
        signal.signal(signal.SIGTERM, previous)
    if on_status is not None:
        on_status(study_status(handle, query))
    return [WorkerExit(k + 1, p.returncode, log) for k, (p, log) in enumerate(procs)]


def _start_worker(cmd: list[str], log: IO[str], env: dict[str, str]) -> subprocess.Popen:
    # own session: a Ctrl-C at the terminal reaches only this process, which then passes it on
    # to the workers (their running Firework is recorded FIZZLED)
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def _stop_workers(procs: list[subprocess.Popen], signum: int = signal.SIGTERM) -> None:
    """``signum`` to every running worker, then wait (kill after :data:`STOP_TIMEOUT_S`)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signum)
    for p in procs:
        try:
            p.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
