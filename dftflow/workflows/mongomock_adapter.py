"""The one place where dftflow adapts mongomock, mongomock-persistence and FireWorks to each other.

The embedded store (:class:`dftflow.workflows.store.EmbeddedStore`) keeps FireWorks' database in a
JSON file through mongomock-persistence. Importing dftflow changes nothing in these libraries: the
store calls :func:`install` whenever it makes a LaunchPad. :func:`install` is idempotent (the first
call patches, later calls return at once) and does three things, all process-wide:

* it imports ``mongomock_persistence``, which replaces methods of mongomock's store classes so that
  a new client loads the JSON file named by ``MONGOMOCK_SERVERSTORE_FILE`` and can dump itself;
* it wraps every write method of mongomock's ``Collection`` and ``Database`` so that writes are
  counted (:func:`write_count`): a store operation that only read data does not rewrite the file;
* it enables mongomock's GridFS integration (FireWorks' fallback for documents over 16 MB).

:func:`new_launchpad` then makes a FireWorks LaunchPad on one store file, with the mongomock client
selected explicitly (:func:`fireworks_client`): FireWorks binds its client class when it is first
imported, so this works whoever imported FireWorks first, and no environment variable has to be set
before that import. Its exit-time write of the whole store is disabled (it would overwrite other
processes' work with a stale copy); :class:`~dftflow.workflows.store.EmbeddedStore` writes instead.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import fireworks.core.launchpad as fw_lp
import mongomock
import mongomock.collection
import mongomock.database
import mongomock.gridfs
from fireworks import LaunchPad

#: The environment variable mongomock-persistence reads when a client is made.
STORE_FILE_ENV = "MONGOMOCK_SERVERSTORE_FILE"
#: Database name of the FireWorks LaunchPad in a store file.
DB_NAME = "dftflow"

_COLLECTION_WRITES = (
    "insert_one", "insert_many", "insert", "update_one", "update_many", "update", "replace_one",
    "find_one_and_update", "find_one_and_replace", "find_one_and_delete", "delete_one",
    "delete_many", "remove", "drop", "bulk_write", "save", "create_index", "create_indexes",
    "drop_index", "drop_indexes", "rename", "find_and_modify",
)  # fmt: skip
_DATABASE_WRITES = ("drop_collection", "create_collection", "rename_collection")

_writes = [0]
_installed: list[bool] = []
_INSTALL_LOCK = threading.Lock()
_CLIENT_SWAP = threading.Lock()

LaunchPadT = TypeVar("LaunchPadT", bound=LaunchPad)


def install() -> None:
    """Prepare mongomock for the embedded store (see the module docstring); idempotent."""
    with _INSTALL_LOCK:
        if _installed:
            return
        importlib.import_module("mongomock_persistence")  # patches mongomock's store classes
        _count_writes_of(mongomock.collection.Collection, _COLLECTION_WRITES)
        _count_writes_of(mongomock.database.Database, _DATABASE_WRITES)
        mongomock.gridfs.enable_gridfs_integration()
        _installed.append(True)


def write_count() -> int:
    """Number of mongomock write operations made in this process since :func:`install`."""
    return _writes[0]


def _count_writes_of(cls: type, names: tuple[str, ...]) -> None:
    for name in names:
        if hasattr(cls, name):
            setattr(cls, name, _counted(getattr(cls, name)))


def _counted(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _writes[0] += 1
        return method(*args, **kwargs)

    wrapper.__wrapped__ = method  # type: ignore[attr-defined]
    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


@contextlib.contextmanager
def fireworks_client(client_cls: Any) -> Iterator[None]:
    """Make FireWorks' LaunchPad use ``client_cls`` (mongomock or pymongo) while constructing it.

    FireWorks binds its client class when it is first imported; this makes the choice explicit.
    """
    with _CLIENT_SWAP:
        saved = fw_lp.MongoClient
        fw_lp.MongoClient = client_cls
        try:
            yield
        finally:
            fw_lp.MongoClient = saved


def new_launchpad(store_file: Path, cls: type[LaunchPadT] = LaunchPad) -> LaunchPadT:
    """A LaunchPad of class ``cls`` holding the content of ``store_file`` in memory.

    Nothing is written back by the LaunchPad itself (its exit-time write is detached).

    Raises
    ------
    FileNotFoundError, ValueError
        If the file is missing or is not valid extended JSON (the caller words the message).
    """
    install()
    with _store_file_env(store_file), fireworks_client(mongomock.MongoClient):
        lp = cls(name=DB_NAME, strm_lvl="ERROR", logdir=None)
    lp.m_logger.setLevel(logging.ERROR)
    finalizer = getattr(lp.connection._store, "_finalizer", None)
    if finalizer is not None:
        finalizer.detach()
    return lp


@contextlib.contextmanager
def _store_file_env(store_file: Path) -> Iterator[None]:
    """Name ``store_file`` to mongomock-persistence while a client is made, then restore."""
    saved = os.environ.get(STORE_FILE_ENV)
    os.environ[STORE_FILE_ENV] = str(store_file)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(STORE_FILE_ENV, None)
        else:
            os.environ[STORE_FILE_ENV] = saved
