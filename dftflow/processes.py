"""Stopping processes, in one place: SIGTERM first, SIGKILL for what is still alive after a grace.

Used for the VASP processes of an interrupted worker (:mod:`dftflow.engines.vasp`) and those a
killed worker left behind (:mod:`dftflow.workflows.status`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any


def stop_processes(processes: Sequence[Any], timeout_s: float) -> None:
    """Terminate ``processes`` (``psutil.Process``), wait up to ``timeout_s``, kill the rest.

    A process that is already gone or not ours to signal is skipped.
    """
    import psutil

    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(list(processes), timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
