"""Submit studies, run their Fireworks (locally or through a queue), report their state.

The LaunchPad is either the embedded store of a study directory (``DIR/launchpad/``, default) or a
MongoDB server described by a LaunchPad YAML whose host, port, user and password come from
environment variables (``launchers/my_launchpad_mongodb.yaml``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fireworks import FWorker, LaunchPad
from fireworks.core.rocket_launcher import launch_rocket

from dftflow.engines.registry import engine_entry, usable_cores
from dftflow.errors import InputError
from dftflow.workflows.spec import StudySpec
from dftflow.workflows.store import EmbeddedStore, terminate_gracefully, termination_requested

LAUNCHPAD_DIR = "launchpad"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
FW_STATES = ("COMPLETED", "RUNNING", "RESERVED", "READY", "WAITING", "FIZZLED", "DEFUSED", "PAUSED")


# ---------------------------------------------------------------------------------------------
# LaunchPad configuration
# ---------------------------------------------------------------------------------------------
def _expand_env(value: Any, key: str, source: str) -> Any:
    if not isinstance(value, str):
        return value

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise InputError(f"{source}: {key} needs the environment variable {name}, which is not set")

    return _ENV_REF.sub(repl, value)


@dataclass
class LaunchpadHandle:
    """Access to a study's LaunchPad, embedded or MongoDB."""

    kind: str
    store: EmbeddedStore | None = None
    mongo: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    _lp: LaunchPad | None = None

    def launchpad(self) -> LaunchPad:
        """The LaunchPad (every method of the embedded one is a locked, flushed operation)."""
        if self.store is not None:
            return self.store.launchpad()
        if self._lp is None:
            self._lp = _mongo_launchpad(self.mongo, self.source)
        return self._lp

    @contextlib.contextmanager
    def session(self) -> Iterator[LaunchPad]:
        """Many operations under one lock (embedded) - one reload and one flush."""
        if self.store is not None:
            with self.store.session() as lp:
                yield lp
        else:
            yield self.launchpad()

    @contextlib.contextmanager
    def read_only(self) -> Iterator[LaunchPad]:
        """A LaunchPad for reading; the embedded store is never written through it."""
        if self.store is not None:
            with self.store.read_only() as lp:
                yield lp
        else:
            yield self.launchpad()

    def cli_args(self) -> list[str]:
        """Arguments that make a worker process open this same LaunchPad."""
        return ["-l", self.source] if self.kind == "mongodb" else []


def _mongo_launchpad(cfg: dict[str, Any], source: str) -> LaunchPad:
    import pymongo
    from pymongo.errors import PyMongoError

    from dftflow.workflows.store import fireworks_client

    kwargs = dict(cfg)
    kwargs.setdefault("mongoclient_kwargs", {}).setdefault("serverSelectionTimeoutMS", 3000)
    try:
        with fireworks_client(pymongo.MongoClient):
            lp = LaunchPad(**kwargs)
        lp.db.command("ping")
    except PyMongoError as exc:
        where = f"{cfg.get('host', 'localhost')}:{cfg.get('port', 27017)}"
        msg = str(exc).splitlines()[0][:160]
        raise InputError(f"cannot reach MongoDB at {where} ({source}): {msg}") from None
    return lp


def open_launchpad(
    study_dir: str | Path, launchpad_file: str | Path | None = None, create: bool = False
) -> LaunchpadHandle:
    """The LaunchPad of a study directory: embedded (default) or from a LaunchPad YAML.

    Parameters
    ----------
    study_dir
        The study directory (``DIR``); the embedded store lives in ``DIR/launchpad``.
    launchpad_file
        A LaunchPad YAML: ``dftflow_launchpad: embedded`` or ``dftflow_launchpad: mongodb`` with
        FireWorks' LaunchPad keys; ``${VAR}`` / ``${VAR:-default}`` are read from the environment.
    create
        Create the embedded store if it does not exist (submission); otherwise it must exist.
    """
    study_dir = Path(study_dir).absolute()
    kind, cfg, source = "embedded", {}, ""
    if launchpad_file is not None:
        path = Path(launchpad_file)
        source = str(path.absolute())
        if not path.is_file():
            raise InputError(f"LaunchPad file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise InputError(f"{path}: a LaunchPad file must be a YAML mapping")
        kind = str(raw.pop("dftflow_launchpad", "mongodb")).lower()
        if kind not in ("embedded", "mongodb"):
            raise InputError(
                f"{path}: dftflow_launchpad must be 'embedded' or 'mongodb', not {kind!r}"
            )
        if "password" in raw and raw["password"] and not _ENV_REF.search(str(raw["password"])):
            raise InputError(
                f"{path}: a password must not be written in the file; use password: ${{VAR}} "
                "and set the environment variable"
            )
        cfg = {k: _expand_env(v, k, str(path)) for k, v in raw.items()}
    if kind == "embedded":
        store_dir = Path(cfg.get("store_dir", LAUNCHPAD_DIR))
        if not store_dir.is_absolute():
            store_dir = study_dir / store_dir
        store = EmbeddedStore(store_dir)
        if create:
            store.create()
        else:
            store.require()
        return LaunchpadHandle("embedded", store=store, source=source)
    allowed = {"host", "port", "name", "username", "password", "authsource", "uri_mode",
               "mongoclient_kwargs", "logdir", "strm_lvl", "user_indices",
               "wf_user_indices"}  # fmt: skip
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise InputError(f"{source}: unknown LaunchPad key(s): {', '.join(unknown)}")
    if "port" in cfg:
        try:
            cfg["port"] = int(cfg["port"])
        except (TypeError, ValueError):
            raise InputError(f"{source}: port must be an integer, got {cfg['port']!r}") from None
    return LaunchpadHandle("mongodb", mongo=cfg, source=source)


# ---------------------------------------------------------------------------------------------
# Submission
# ---------------------------------------------------------------------------------------------
@dataclass
class Submission:
    """Result of :func:`submit_study`."""

    fw_ids: list[int]
    new: bool
    study_query: dict[str, Any]


def study_query(spec: StudySpec) -> dict[str, Any]:
    """FireWorks query selecting the Fireworks of one submitted spec."""
    return {"spec.dftflow.spec_digest": spec.digest()}


def submit_study(spec: StudySpec, study_dir: str | Path, handle: LaunchpadHandle) -> Submission:
    """Add the study's workflow unless the same spec is already in this LaunchPad (then resume)."""
    from dftflow.workflows.flows import build_workflow

    study_dir = Path(study_dir).absolute()
    query = study_query(spec)
    with handle.read_only() as lp:
        existing = lp.get_fw_ids(query)
    if existing:
        return Submission(sorted(existing), False, query)
    _refuse_conflicting(handle, spec, study_dir)
    wf = build_workflow(spec, study_dir)  # outside the lock: builds structures
    with handle.session() as lp:
        existing = lp.get_fw_ids(query)
        if existing:  # another process submitted it meanwhile
            return Submission(sorted(existing), False, query)
        mapping = lp.add_wf(wf)
    return Submission(sorted(mapping.values()), True, query)


def _refuse_conflicting(handle: LaunchpadHandle, spec: StudySpec, study_dir: Path) -> None:
    """Refuse a changed spec under a study name that this directory already holds.

    Its calculations would share run directories and TaskDoc files with the earlier ones.
    """
    with handle.read_only() as lp:
        other = lp.workflows.find_one(
            {
                "metadata.dftflow_study": spec.key,
                "metadata.dftflow_study_dir": str(study_dir),
                "metadata.dftflow_spec_digest": {"$ne": spec.digest()},
            },
            {"metadata": 1},
        )
    if other is not None:
        raise InputError(
            f"{study_dir} already holds study {spec.key!r} with other settings (engine, "
            "parameters, ligands or slab); use another output directory or study name"
        )


# ---------------------------------------------------------------------------------------------
# Local execution
# ---------------------------------------------------------------------------------------------
def worker_name() -> str:
    """Name of this worker process: host and PID (to detect lost runs on this host)."""
    return f"dftflow@{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lost_fw_ids(lp: LaunchPad, query: dict[str, Any]) -> list[int]:
    """RUNNING/RESERVED Fireworks whose dftflow worker, on this host, is no longer alive."""
    q = {**query, "state": {"$in": ["RUNNING", "RESERVED"]}}
    fws = list(lp.fireworks.find(q, {"fw_id": 1, "state": 1, "launches": 1}))
    wanted = [i for fw in fws for i in (fw.get("launches") or [])]
    launches = {d["launch_id"]: d for d in lp.launches.find({"launch_id": {"$in": wanted}})}
    return _lost(fws, launches)


def rerun_failed(
    handle: LaunchpadHandle, query: dict[str, Any], silent_hours: float | None = None
) -> list[int]:
    """Put FIZZLED and lost Fireworks of ``query`` back to READY (their children follow).

    Lost: RUNNING with a dead worker on this host, or silent for ``silent_hours`` on any host.
    """
    with handle.session() as lp:
        ids = lp.get_fw_ids({**query, "state": "FIZZLED"}) + lost_fw_ids(lp, query)
        if silent_hours is not None:
            _, silent = lp.detect_lostruns(expiration_secs=silent_hours * 3600, query=query)[:2]
            ids += list(silent)
        for fw_id in sorted(set(ids)):
            lp.rerun_fw(fw_id)
    return sorted(set(ids))


@dataclass
class RunEvent:
    """A progress event of :func:`run_local`: ``kind`` is "start" or "end"."""

    kind: str
    fw_id: int
    name: str
    state: str = ""
    seconds: float = 0.0


def fworker_for(query: dict[str, Any], env: dict[str, Any] | None = None) -> FWorker:
    """The FWorker of this process, restricted to ``query``."""
    return FWorker(name=worker_name(), query=dict(query), env=dict(env or {}))


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

    Waits while other workers run Fireworks this one may need. SIGTERM stops the worker: a running
    Firework is recorded as FIZZLED and every finished one is already on disk.

    Returns
    -------
    int
        Number of Fireworks this worker ran.
    """
    study_dir = Path(study_dir).absolute()
    fworker = fworker_for(query, env)
    _quiet_fireworks()
    ran = 0
    cwd = os.getcwd()
    with terminate_gracefully():
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
            if on_event:
                on_event(RunEvent("start", ready["fw_id"], ready["name"]))
            t0 = time.monotonic()
            try:
                os.chdir(study_dir)
                launched = launch_rocket(lp, fworker, fw_id=ready["fw_id"], strm_lvl="ERROR")
            finally:
                os.chdir(cwd)
            if not launched:
                continue
            ran += 1
            if on_event:
                state = lp.get_fw_dict_by_id(ready["fw_id"])["state"]
                on_event(
                    RunEvent("end", ready["fw_id"], ready["name"], state, time.monotonic() - t0)
                )
    return ran


def default_workers(engine: str) -> int:
    """Worker processes ``dftflow run`` starts when not told (the engine's registry entry says)."""
    return engine_entry(engine).default_workers()


def thread_env(workers: int) -> dict[str, str]:
    """Thread-count variables that share the cores among ``workers`` processes."""
    n = str(max(1, usable_cores() // max(workers, 1)))
    return {k: n for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


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
) -> list[WorkerExit]:
    """Run the study's Fireworks with ``workers`` ``dftflow launch`` processes side by side.

    Every worker pulls READY Fireworks from the study's LaunchPad (the embedded store locks every
    operation, so each Firework runs exactly once) and waits while others run what it needs. This
    process only watches: ``on_status`` receives :func:`study_status` (with ``running``) every
    ``poll_s``. Worker output goes to ``DIR/logs/worker-<k>.log``. SIGINT/SIGTERM here stop the
    workers with SIGTERM: their running Fireworks are recorded FIZZLED and rerun on the next
    ``dftflow run``.
    """
    study_dir = Path(study_dir).absolute()
    log_dir = study_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    env = {**os.environ, **thread_env(workers)}
    cmd = [sys.executable, "-m", "dftflow", "launch", "-o", str(study_dir), *handle.cli_args()]
    procs: list[tuple[subprocess.Popen, Path]] = []
    logs = []

    def _stop(signum, frame):  # SIGTERM here: leave through the finally below
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        for k in range(workers):
            log = log_dir / f"worker-{k + 1}.log"
            fh = open(log, "a")  # noqa: SIM115 - closed in the finally below
            logs.append(fh)
            # own session: a Ctrl-C at the terminal reaches only this process, which then
            # stops the workers with SIGTERM (their running Firework is recorded FIZZLED)
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            procs.append((proc, log))
        while any(p.poll() is None for p, _ in procs):
            if on_status is not None:
                on_status(study_status(handle, query))
            time.sleep(poll_s)
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for fh in logs:
            fh.close()
        signal.signal(signal.SIGTERM, previous)
    if on_status is not None:
        on_status(study_status(handle, query))
    return [WorkerExit(k + 1, p.returncode, log) for k, (p, log) in enumerate(procs)]


def _quiet_fireworks() -> None:
    """Keep FireWorks' INFO lines off the terminal (progress is shown by dftflow)."""
    import logging

    import fireworks.core.rocket as fw_rocket

    fw_rocket.ROCKET_STREAM_LOGLEVEL = "WARNING"
    for name in ("rocket.launcher", "launchpad", "queue.launcher", "queue.adapter"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _first_ready(
    handle: LaunchpadHandle, lp: LaunchPad, query: dict[str, Any]
) -> dict[str, Any] | None:
    guard = handle.store.operation() if handle.store is not None else contextlib.nullcontext()
    with guard:
        return lp.fireworks.find_one(
            {**query, "state": "READY"},
            {"fw_id": 1, "name": 1},
            sort=[("spec._priority", -1), ("fw_id", 1)],
        )


# ---------------------------------------------------------------------------------------------
# Queue submission
# ---------------------------------------------------------------------------------------------
def load_qadapter(path: str | Path):  # -> CommonAdapter
    """Read a FireWorks queue adapter YAML; one-line errors for a missing file or queue command."""
    from fireworks.utilities.fw_serializers import load_object

    path = Path(path)
    if not path.is_file():
        raise InputError(f"queue adapter file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict) or "_fw_name" not in raw or "_fw_q_type" not in raw:
        raise InputError(f"{path}: not a FireWorks queue adapter (needs _fw_name and _fw_q_type)")
    try:
        if raw["_fw_name"] == "CommonAdapter":
            from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

            qadapter = CommonAdapter.from_dict(raw)
        else:
            qadapter = load_object(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{path}: invalid queue adapter: {exc}") from None
    return qadapter


def submit_command(qadapter: Any) -> str:
    """The queue's submit command (sbatch, qsub ...), which must be on PATH."""
    cmd = qadapter.q_commands[qadapter.q_type]["submit_cmd"]
    if shutil.which(cmd) is None:
        raise InputError(
            f"queue command {cmd!r} not found on PATH (is {qadapter.q_type} installed?)"
        )
    return cmd


def worker_command(
    study_dir: Path, handle: LaunchpadHandle, fworker_file: str | Path | None = None
) -> str:
    """The shell command a queue job runs: a dftflow worker on the same LaunchPad and study."""
    import shlex

    args = [sys.executable, "-m", "dftflow", "launch", "-o", str(study_dir), *handle.cli_args()]
    if fworker_file is not None:
        args += ["-w", str(Path(fworker_file).absolute())]
    return " ".join(shlex.quote(a) for a in args)


def queue_launch(
    handle: LaunchpadHandle,
    study_dir: str | Path,
    qadapter: Any,
    nlaunches: int = 1,
    query: dict[str, Any] | None = None,
    fworker_file: str | Path | None = None,
) -> list[str]:
    """Submit ``nlaunches`` queue jobs, each running a dftflow worker for the study.

    Returns the queue's job ids.
    """
    from fireworks.queue.queue_launcher import launch_rocket_to_queue

    study_dir = Path(study_dir).absolute()
    submit_command(qadapter)
    qadapter["rocket_launch"] = worker_command(study_dir, handle, fworker_file)
    qadapter.setdefault("job_name", _job_name(study_dir))
    launcher_dir = study_dir / "queue"
    launcher_dir.mkdir(parents=True, exist_ok=True)
    fworker = fworker_for(query if query is not None else {})
    ids = []
    lp = handle.launchpad()
    cwd = os.getcwd()
    try:
        for _ in range(max(1, nlaunches)):
            rid = launch_rocket_to_queue(
                lp, fworker, qadapter, str(launcher_dir), create_launcher_dir=True, strm_lvl="ERROR"
            )
            if rid is None:
                break
            if not rid:
                raise InputError(
                    f"the queue refused the job script (see {launcher_dir}/*/FW_submit.script)"
                )
            ids.append(str(rid))
    finally:
        os.chdir(cwd)
    return ids


def _job_name(study_dir: Path) -> str:
    from dftflow.workflows.spec import safe_name

    return "dftflow-" + safe_name(study_dir.name)[:40]


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------
def _dotted(doc: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    """Equality queries on dotted keys (what dftflow's study queries are)."""
    return all(_dotted(doc, k) == v for k, v in query.items())


def _lost(fws: list[dict[str, Any]], launches: dict[int, dict[str, Any]]) -> list[int]:
    """RUNNING/RESERVED Fireworks whose dftflow worker, on this host, is gone."""
    host = socket.gethostname()
    lost = []
    for fw in fws:
        if fw["state"] not in ("RUNNING", "RESERVED"):
            continue
        for launch_id in fw.get("launches") or []:
            name = ((launches.get(launch_id) or {}).get("fworker") or {}).get("name", "")
            m = re.fullmatch(r"dftflow@(.+):(\d+)", name)
            if m and m.group(1) == host and not _pid_alive(int(m.group(2))):
                lost.append(fw["fw_id"])
                break
    return sorted(set(lost))


def _reason(launch: dict[str, Any] | None) -> str:
    data = ((launch or {}).get("action") or {}).get("stored_data") or {}
    trace = (data.get("_exception") or {}).get("_stacktrace") or data.get("_message") or ""
    lines = [ln.strip() for ln in str(trace).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


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


def study_status(handle: LaunchpadHandle, query: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts per state, what failed and why, lost runs (read-only: never writes the store).

    The embedded store is read as plain JSON under a shared lock (no database emulation), which
    keeps ``dftflow status`` fast on large stores.
    """
    query = query or {}
    if handle.store is not None:
        data = handle.store.snapshot()
        fws = [fw for fw in data.get("fireworks", []) if _matches(fw, query)]
        wanted = {i for fw in fws for i in (fw.get("launches") or [])}
        launches = {
            d["launch_id"]: d for d in data.get("launches", []) if d.get("launch_id") in wanted
        }
        return _status_from_docs(fws, launches)
    lp = handle.launchpad()
    fws = list(lp.fireworks.find(query, {"fw_id": 1, "name": 1, "state": 1, "launches": 1}))
    wanted = [i for fw in fws for i in (fw.get("launches") or [])]
    launches = {d["launch_id"]: d for d in lp.launches.find({"launch_id": {"$in": wanted}})}
    return _status_from_docs(fws, launches)
