"""What a study's Fireworks are doing: counts per state, failures and why, lost runs (read-only)."""

from __future__ import annotations

import os
import re
import socket
from collections import Counter
from typing import Any

from fireworks import LaunchPad

from dftflow.processes import stop_processes
from dftflow.workflows.launchpad import LaunchpadHandle
from dftflow.workflows.query import matches
from dftflow.workflows.rapidfire import WORKER_ENV, worker_host_pid

#: FireWorks states in the order ``dftflow status`` reports them.
FW_STATES = ("COMPLETED", "RUNNING", "RESERVED", "READY", "WAITING", "FIZZLED", "DEFUSED", "PAUSED")
_ACTIVE = ("RUNNING", "RESERVED")


def study_status(handle: LaunchpadHandle, query: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts per state, what failed and why, lost runs (read-only: never writes the store).

    The embedded store is read as plain JSON under a shared lock (no database emulation), which
    keeps ``dftflow status`` fast on large stores.
    """
    query = query or {}
    if handle.store is not None:
        data = handle.store.snapshot()
        fws = [fw for fw in data.get("fireworks", []) if matches(fw, query)]
        wanted = {i for fw in fws for i in (fw.get("launches") or [])}
        launches = {
            d["launch_id"]: d for d in data.get("launches", []) if d.get("launch_id") in wanted
        }
        return _status_from_docs(fws, launches)
    lp = handle.launchpad()
    fws = list(lp.fireworks.find(query, {"fw_id": 1, "name": 1, "state": 1, "launches": 1}))
    return _status_from_docs(fws, _launches_of(lp, fws))


def lost_fw_ids(lp: LaunchPad, query: dict[str, Any]) -> list[int]:
    """RUNNING/RESERVED Fireworks whose dftflow worker, on this host, is no longer alive."""
    q = {**query, "state": {"$in": list(_ACTIVE)}}
    fws = list(lp.fireworks.find(q, {"fw_id": 1, "state": 1, "launches": 1}))
    return _lost(fws, _launches_of(lp, fws))


def lost_workers(lp: LaunchPad, query: dict[str, Any]) -> list[str]:
    """Names of the dead dftflow workers (this host) of the lost Fireworks (:func:`lost_fw_ids`)."""
    q = {**query, "state": {"$in": list(_ACTIVE)}}
    fws = list(lp.fireworks.find(q, {"fw_id": 1, "state": 1, "launches": 1}))
    launches = _launches_of(lp, fws)
    lost = set(_lost(fws, launches))
    names = {
        ((launches.get(i) or {}).get("fworker") or {}).get("name", "")
        for fw in fws
        if fw["fw_id"] in lost
        for i in fw.get("launches") or []
    }
    return sorted(n for n in names if (w := worker_host_pid(n)) and not _pid_alive(w[1]))


def stop_orphans(workers: list[str], timeout_s: float = 10.0) -> list[int]:
    """Terminate the processes left running by dead dftflow workers of this host.

    A worker killed with SIGKILL leaves its VASP (a child process) running: it would go on writing
    into the directory where the rerun starts. A worker marks its children with the environment
    variable :data:`~dftflow.workflows.rapidfire.WORKER_ENV` (its name); only processes of this
    user carrying one of ``workers`` are stopped (SIGTERM, then SIGKILL after ``timeout_s``).

    Returns
    -------
    list[int]
        PIDs of the processes stopped.
    """
    import psutil

    if not workers:
        return []
    wanted = set(workers)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(WORKER_ENV) in wanted:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    stop_processes(found, timeout_s)
    return sorted(p.pid for p in found)


def _launches_of(lp: LaunchPad, fws: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    wanted = [i for fw in fws for i in (fw.get("launches") or [])]
    return {d["launch_id"]: d for d in lp.launches.find({"launch_id": {"$in": wanted}})}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lost(fws: list[dict[str, Any]], launches: dict[int, dict[str, Any]]) -> list[int]:
    """RUNNING/RESERVED Fireworks whose dftflow worker, on this host, is gone."""
    host = socket.gethostname()
    lost = []
    for fw in fws:
        if fw["state"] not in _ACTIVE:
            continue
        for launch_id in fw.get("launches") or []:
            name = ((launches.get(launch_id) or {}).get("fworker") or {}).get("name", "")
            worker = worker_host_pid(name)
            if worker and worker[0] == host and not _pid_alive(worker[1]):
                lost.append(fw["fw_id"])
                break
    return sorted(set(lost))


_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Terminated)): (.+)$")


def _reason(launch: dict[str, Any] | None) -> str:
    """Why a launch FIZZLED, in one line: the message of the task's exception.

    Taken from the launch's ``action.stored_data._exception`` that FireWorks records; the module
    path of the exception class is dropped ("EngineError: custodian gave up after 5 corrections
    ..."), and dftflow's own errors and the stop signals keep only their message.
    """
    data = ((launch or {}).get("action") or {}).get("stored_data") or {}
    trace = (data.get("_exception") or {}).get("_stacktrace") or data.get("_message") or ""
    lines = [ln.strip() for ln in str(trace).strip().splitlines() if ln.strip()]
    if not lines:
        return "no reason recorded" if launch else ""
    m = _EXC_LINE.match(lines[-1])
    if m is None:
        return lines[-1]
    cls, msg = m.groups()
    return msg if cls in _MESSAGE_ONLY else f"{cls}: {msg}"


#: Exceptions whose message says it all (dftflow's errors, the stop signals).
_MESSAGE_ONLY = {"EngineError", "InputError", "OutputError", "DftflowError", "WorkerTerminated"}


def _status_from_docs(
    fws: list[dict[str, Any]], launches: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    counts = Counter(fw["state"] for fw in fws)
    failed = [
        {
            "fw_id": fw["fw_id"],
            "name": fw["name"],
            "reason": _reason(launches.get((fw.get("launches") or [None])[-1])),
        }
        for fw in fws
        if fw["state"] == "FIZZLED"
    ]
    by_name = {fw["fw_id"]: fw["name"] for fw in fws}
    return {
        "total": len(fws),
        "counts": {s: counts.get(s, 0) for s in FW_STATES if counts.get(s, 0)},
        "failed": sorted(failed, key=lambda f: f["fw_id"]),
        "lost": [{"fw_id": i, "name": by_name.get(i, "")} for i in _lost(fws, launches)],
        "running": sorted(fw["name"] for fw in fws if fw["state"] == "RUNNING"),
    }
