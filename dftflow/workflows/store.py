"""The embedded, file-backed FireWorks LaunchPad, made safe for concurrent workers and SIGTERM.

FireWorks can keep its database in a JSON file through ``mongomock-persistence``. Measured defects
of that store (issue 5): each process reads the whole file when it opens the store and writes it
back only at interpreter exit, so concurrent workers ran every Firework twice and lost launches,
SIGTERM lost all work of a worker, read-only commands rewrote the file and simultaneous openers
read half-written JSON.

This module wraps it so that the user never loses or duplicates work:

* every LaunchPad operation (each public method of :class:`LockedLaunchPad`) runs under an
  exclusive ``flock`` on ``STORE_DIR/store.lock``: the store is reloaded from disk, the operation
  runs, and, when it wrote anything, the file is written atomically (temporary file, ``fsync``,
  ``rename``) before the lock is released; nested calls reuse the outer lock;
* the exit-time write of mongomock-persistence is disabled (it would overwrite other processes' work
  with a stale copy);
* read-only sessions (``dftflow status``) take a shared lock and never write;
* :func:`terminate_gracefully` turns SIGTERM and SIGINT (Ctrl-C) into an exception inside the
  running Firework, which FireWorks records as FIZZLED (flushed at once), so ``dftflow run`` or
  ``dftflow rerun`` can restart it.

What mongomock and mongomock-persistence need (their patches, counting writes, the explicit choice
of the mongomock client) is done by one adapter, :mod:`dftflow.workflows.mongomock_adapter`, when a
store makes its first LaunchPad; importing this module patches nothing.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bson.json_util
from fireworks import LaunchPad
from mongomock.store import CollectionStore, DatabaseStore

from dftflow.errors import InputError
from dftflow.fileio import atomic_write_text
from dftflow.workflows.mongomock_adapter import DB_NAME, new_launchpad, write_count

#: File names inside a store directory.
STORE_FILE = "fireworks.json"
LOCK_FILE = "store.lock"


# ------------------------------------------------------------------------------------------
# The store directory: file, lock, in-place reload and atomic flush.
# ------------------------------------------------------------------------------------------
class EmbeddedStore:
    """A FireWorks store kept in ``directory/fireworks.json``, guarded by ``directory/store.lock``.

    Parameters
    ----------
    directory
        The store directory (a study's ``DIR/launchpad``); created by :meth:`create`.
    lock_timeout_s
        How long to wait for another process's lock before giving up with a clear message; ``None``
        waits forever (workers), a number suits interactive commands.
    """

    def __init__(self, directory: str | Path, lock_timeout_s: float | None = 600.0) -> None:
        self.directory = Path(directory).absolute()
        self.file = self.directory / STORE_FILE
        self.lock_file = self.directory / LOCK_FILE
        self.lock_timeout_s = lock_timeout_s
        self._rlock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None
        self._server_store: Any = None
        self.writes = 0  # number of flushes made by this process (for tests and benchmarks)
        self._lp: LockedLaunchPad | None = None
        self._seen: tuple[int, int, int] | None = None  # file signature of the in-memory copy

    # -- creation --------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the store file exists."""
        return self.file.is_file()

    def create(self) -> EmbeddedStore:
        """Create the directory and an empty store (``{}``) if absent; return self."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the LaunchPad directory {self.directory}: {exc}"
            ) from exc
        with self._flock(fcntl.LOCK_EX):
            if not self.exists():
                atomic_write_text(self.file, "{}", durable=True)
        lp = self.launchpad()
        with self.operation():
            if lp.fw_id_assigner.count_documents({}) == 0:
                lp.reset("", require_password=False)
        return self

    def require(self) -> EmbeddedStore:
        """Raise a one-line error if there is no store here."""
        if not self.exists():
            raise InputError(
                f"no dftflow LaunchPad in {self.directory.parent} (expected {self.file}); "
                "run `dftflow submit` or `dftflow run` first"
            )
        return self

    # -- locking ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd, mode)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(self, fd: int, mode: int) -> None:
        if self.lock_timeout_s is None:
            fcntl.flock(fd, mode)
            return
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InputError(
                        f"the LaunchPad {self.directory} is locked by another dftflow process for "
                        f"more than {self.lock_timeout_s:.0f} s; try again later"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    # -- load / flush ----------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"the LaunchPad store {self.file} has disappeared") from None
        try:
            data = bson.json_util.loads(text or "{}")
        except ValueError as exc:
            raise InputError(f"the LaunchPad store {self.file} is corrupt: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(f"the LaunchPad store {self.file} is corrupt: not a JSON object")
        return data

    def _guarded(self, make: Callable[[], Any]) -> Any:
        """Call ``make`` (which opens the store file), turning a corrupt file into one line."""
        try:
            return make()
        except FileNotFoundError:
            raise InputError(f"the LaunchPad store {self.file} has disappeared") from None
        except ValueError as exc:
            raise InputError(f"the LaunchPad store {self.file} is corrupt: {exc}") from None

    def _load_into(self, server_store: Any) -> None:
        """Replace the content of ``server_store`` with the file's, keeping existing objects."""
        signature = self._signature()
        data = self._read()
        self._seen = signature
        for db_name, db_dict in data.items():
            db_store = server_store._databases.get(db_name)
            if db_store is None:
                server_store._databases[db_name] = DatabaseStore.from_dict(db_dict)
                continue
            old = db_store._collections
            new: dict[str, Any] = {}
            for coll_name, coll_dict in db_dict.items():
                coll = old.get(coll_name)
                docs = collections.OrderedDict(coll_dict["documents"])
                if coll is None:
                    coll = CollectionStore(coll_dict["name"], docs)
                else:
                    coll._documents = docs
                new[coll_name] = coll
            for coll_name, coll in old.items():  # keep in-memory index definitions
                if coll_name not in new:
                    coll._documents = collections.OrderedDict()
                    new[coll_name] = coll
            db_store._collections = new
        for db_name in list(server_store._databases):
            if db_name not in data:
                server_store._databases[db_name]._collections = {}

    def _flush(self, server_store: Any) -> None:
        text = bson.json_util.dumps(server_store.to_dict())
        self._bump_generation()  # first: a crash after it only costs a reload
        atomic_write_text(self.file, text, durable=True)
        self.writes += 1
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int, int] | None:
        """(generation, inode, mtime, size) of the store: unchanged means nobody wrote it since.

        The generation is a counter in the lock file, bumped under the exclusive lock before
        every write of the store, so two writes in the same clock tick are still told apart.
        """
        try:
            st = os.stat(self.file)
        except FileNotFoundError:
            return None
        return (self._generation(), st.st_ino, st.st_mtime_ns, st.st_size)

    def _generation(self) -> int:
        try:
            text = self.lock_file.read_text().strip()
        except FileNotFoundError:
            return 0
        return int(text) if text.isdigit() else 0

    def _bump_generation(self) -> None:
        fd = self._lock_fd
        if fd is None:
            return
        data = str(self._generation() + 1).encode()
        os.pwrite(fd, data.ljust(20), 0)
        os.fsync(fd)

    # -- sessions --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """Exclusive lock, reload, run the body, flush if anything was written, release.

        Re-entrant within a process (threads included): nested operations share the outer one.
        """
        with self._rlock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._acquire(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
                self._depth = 1
                try:
                    with _defer_sigterm():
                        if self._server_store is not None and self._signature() != self._seen:
                            self._load_into(self._server_store)
                        before = write_count()
                        yield
                        if self._server_store is not None and write_count() != before:
                            self._flush(self._server_store)
                finally:
                    self._depth = 0
                    self._lock_fd = None
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def launchpad(self) -> LockedLaunchPad:
        """A LaunchPad on this store whose every public method is one locked operation."""
        self.require()
        with self._rlock:
            if self._lp is None:
                self._lp = LockedLaunchPad._construct(self)
        return self._lp

    @contextlib.contextmanager
    def session(self) -> Iterator[LockedLaunchPad]:
        """Hold the lock for a batch of operations (one reload, one flush): fast bulk submission."""
        lp = self.launchpad()
        with self.operation():
            yield lp

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Collection name -> documents, read as plain JSON under a shared lock (never written).

        Values keep MongoDB extended JSON (``{"$oid": ...}``, ``{"$date": ...}``); fast for
        read-only reports on large stores.
        """
        self.require()
        with self._flock(fcntl.LOCK_SH):
            try:
                data = json.loads(self.file.read_text(encoding="utf-8") or "{}")
            except ValueError as exc:
                raise InputError(f"the LaunchPad store {self.file} is corrupt: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"the LaunchPad store {self.file} is corrupt: not a JSON object")
        db = data.get(DB_NAME, {})
        if not isinstance(db, dict):
            raise InputError(f"the LaunchPad store {self.file} is corrupt: bad database entry")
        return {name: _plain_documents(coll) for name, coll in db.items()}

    @contextlib.contextmanager
    def read_only(self) -> Iterator[LaunchPad]:
        """A plain LaunchPad on a snapshot read under a shared lock; never written back.

        Writes made through it stay in memory and are discarded.
        """
        self.require()
        with self._flock(fcntl.LOCK_SH):
            lp = self._guarded(lambda: new_launchpad(self.file))
        yield lp


def _plain_documents(collection: Any) -> list[dict[str, Any]]:
    if not isinstance(collection, dict):
        return []
    return [doc for _, doc in collection.get("documents", [])]


class LockedLaunchPad(LaunchPad):
    """A LaunchPad on an :class:`EmbeddedStore`; each public method is one locked operation."""

    _dftflow_store: EmbeddedStore

    @classmethod
    def _construct(cls, store: EmbeddedStore) -> LockedLaunchPad:
        def make() -> LockedLaunchPad:
            return new_launchpad(store.file, cls)

        if store._depth:  # already inside a locked operation of this process
            lp = store._guarded(make)
        else:
            with store._flock(fcntl.LOCK_SH):
                lp = store._guarded(make)
        lp._dftflow_store = store
        store._server_store = lp.connection._store
        store._seen = None  # reload at the first operation (cheap; the lock was not held since)
        return lp

    def to_dict(self) -> dict[str, Any]:  # noqa: D102 - FireWorks API
        d = super().to_dict()
        d["dftflow_store_dir"] = str(self._dftflow_store.directory)
        return d


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: LockedLaunchPad, *args: Any, **kwargs: Any) -> Any:
        store = self.__dict__.get("_dftflow_store")
        if store is None:  # during LaunchPad.__init__
            return method(self, *args, **kwargs)
        with store.operation():
            return method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    wrapper.__wrapped__ = method  # type: ignore[attr-defined]
    return wrapper


_NOT_LOCKED = {"to_dict", "from_dict", "to_format", "from_format", "to_file", "from_file",
               "auto_load", "get_logdir", "as_dict", "from_db_file"}  # fmt: skip
for _name, _attr in list(vars(LaunchPad).items()):
    if _name.startswith("__") or _name in _NOT_LOCKED:
        continue
    if callable(_attr) and not isinstance(_attr, (staticmethod, classmethod, type)):
        setattr(LockedLaunchPad, _name, _locked(_attr))


# ------------------------------------------------------------------------------------------
# SIGTERM / SIGINT: never interrupt a store write; interrupt a running Firework so FireWorks
# records it.
# ------------------------------------------------------------------------------------------
class WorkerTerminated(Exception):
    """Raised inside a running Firetask when the worker receives SIGTERM or SIGINT."""


class WorkerStopped(Exception):
    """Raised by a worker loop after it stopped on a signal (``signum``: SIGTERM or SIGINT).

    The Firework that was running is recorded FIZZLED (resumable); nothing new was started.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(_REASONS.get(signum, f"stopped by signal {signum}"))
        self.signum = signum


#: Signals that stop a worker: SIGTERM (queue time limit, scancel, ``dftflow run`` stopping its
#: workers) and SIGINT (Ctrl-C at the terminal, sent to the whole foreground process group).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_REASONS = {
    signal.SIGTERM: "terminated by SIGTERM (queue time limit, scancel or dftflow run stopping)",
    signal.SIGINT: "interrupted by SIGINT (Ctrl-C)",
}
_sigterm_state: dict[str, Any] = {
    "deferred": 0,
    "pending": False,
    "requested": False,
    "in_task": 0,
    "signum": 0,
}


def _terminated() -> WorkerTerminated:
    signum = _sigterm_state["signum"] or signal.SIGTERM
    return WorkerTerminated(_REASONS.get(signum, f"stopped by signal {signum}"))


@contextlib.contextmanager
def _defer_sigterm() -> Iterator[None]:
    """Delay a stop signal that arrives during a store operation until the operation has flushed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _sigterm_state["deferred"] += 1
    try:
        yield
    finally:
        _sigterm_state["deferred"] -= 1
    if _sigterm_state["deferred"] == 0 and _sigterm_state["pending"] and _sigterm_state["in_task"]:
        _sigterm_state["pending"] = False
        raise _terminated()


def _sigterm_handler(signum: int, frame: Any) -> None:
    _sigterm_state["requested"] = True
    _sigterm_state["signum"] = _sigterm_state["signum"] or signum
    if _sigterm_state["in_task"] and not _sigterm_state["deferred"]:
        raise _terminated()
    _sigterm_state["pending"] = True


def termination_requested() -> bool:
    """Whether SIGTERM or SIGINT was received since :func:`terminate_gracefully` was installed."""
    return bool(_sigterm_state["requested"])


def termination_signal() -> int:
    """The first stop signal received since :func:`terminate_gracefully` was installed (or 0)."""
    return int(_sigterm_state["signum"]) if _sigterm_state["requested"] else 0


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Mark the body (a Firetask's computation) as interruptible by SIGTERM and SIGINT.

    A stop signal received before or during the body raises :class:`WorkerTerminated` in it;
    FireWorks then records the Firework as FIZZLED (flushed at once) and ``dftflow run`` or
    ``dftflow rerun`` restarts it. Outside such bodies a stop signal only asks the worker to stop
    after the current Firework.
    """
    if _sigterm_state["requested"]:
        raise _terminated()
    _sigterm_state["in_task"] += 1
    try:
        yield
    finally:
        _sigterm_state["in_task"] -= 1


@contextlib.contextmanager
def terminate_gracefully() -> Iterator[None]:
    """Install the stop handler for SIGTERM and SIGINT (main thread only); restore the old ones.

    SIGINT is handled like SIGTERM: Ctrl-C at the terminal reaches every process of the foreground
    group, and a worker must then record its running Firework and start nothing new (FireWorks
    would otherwise record the ``KeyboardInterrupt`` as a failure and go on to the next one).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a SIGINT ignored on purpose (a background job of a non-interactive shell) stays ignored
    old = {
        s: signal.signal(s, _sigterm_handler)
        for s in STOP_SIGNALS
        if signal.getsignal(s) is not signal.SIG_IGN
    }
    _sigterm_state.update(requested=False, pending=False, signum=0)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
