"""Open a study's LaunchPad: the embedded store of the study directory, or a MongoDB server.

The LaunchPad is either the embedded store of a study directory (``DIR/launchpad/``, default) or a
MongoDB server described by a LaunchPad YAML whose host, port, user and password come from
environment variables (``launchers/my_launchpad_mongodb.yaml``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import yaml
from fireworks import LaunchPad
from pymongo.errors import PyMongoError

from dftflow.errors import InputError
from dftflow.workflows.mongomock_adapter import fireworks_client
from dftflow.workflows.store import EmbeddedStore

#: Folder of the embedded store inside a study directory.
LAUNCHPAD_DIR = "launchpad"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MONGO_KEYS = {"host", "port", "name", "username", "password", "authsource", "uri_mode",
               "mongoclient_kwargs", "logdir", "strm_lvl", "user_indices",
               "wf_user_indices"}  # fmt: skip


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

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """One locked operation on the embedded store (nothing to lock for MongoDB)."""
        if self.store is not None:
            with self.store.operation():
                yield
        else:
            yield

    def cli_args(self) -> list[str]:
        """Arguments that make a worker process open this same LaunchPad."""
        return ["-l", self.source] if self.kind == "mongodb" else []


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
        source = str(Path(launchpad_file).absolute())
        kind, cfg = _read_launchpad_file(Path(launchpad_file))
    if kind == "embedded":
        return _embedded_handle(study_dir, cfg, source, create)
    return LaunchpadHandle("mongodb", mongo=_mongo_config(cfg, source), source=source)


def _read_launchpad_file(path: Path) -> tuple[str, dict[str, Any]]:
    """(kind, configuration with environment references expanded) of a LaunchPad YAML."""
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
        raise InputError(f"{path}: dftflow_launchpad must be 'embedded' or 'mongodb', not {kind!r}")
    if "password" in raw and raw["password"] and not _ENV_REF.search(str(raw["password"])):
        raise InputError(
            f"{path}: a password must not be written in the file; use password: ${{VAR}} "
            "and set the environment variable"
        )
    return kind, {k: _expand_env(v, k, str(path)) for k, v in raw.items()}


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


def _embedded_handle(
    study_dir: Path, cfg: dict[str, Any], source: str, create: bool
) -> LaunchpadHandle:
    store_dir = Path(cfg.get("store_dir", LAUNCHPAD_DIR))
    if not store_dir.is_absolute():
        store_dir = study_dir / store_dir
    store = EmbeddedStore(store_dir)
    if create:
        store.create()
    else:
        store.require()
    return LaunchpadHandle("embedded", store=store, source=source)


def _mongo_config(cfg: dict[str, Any], source: str) -> dict[str, Any]:
    """FireWorks LaunchPad keyword arguments, checked (unknown keys, integer port)."""
    unknown = sorted(set(cfg) - _MONGO_KEYS)
    if unknown:
        raise InputError(f"{source}: unknown LaunchPad key(s): {', '.join(unknown)}")
    if "port" in cfg:
        try:
            cfg["port"] = int(cfg["port"])
        except (TypeError, ValueError):
            raise InputError(f"{source}: port must be an integer, got {cfg['port']!r}") from None
    return cfg


def _mongo_launchpad(cfg: dict[str, Any], source: str) -> LaunchPad:
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
