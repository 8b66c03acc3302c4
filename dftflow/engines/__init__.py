"""The engines: one registry entry per engine (:mod:`dftflow.engines.registry`).

No module outside the registry lists engine names; ask it with :func:`get_engine`,
:func:`engine_names`, :func:`engine_entry`.
"""

from __future__ import annotations

from dftflow.engines.base import Engine
from dftflow.engines.registry import (
    DEFAULT_ENGINE,
    EngineEntry,
    engine_entry,
    engine_names,
    get_engine,
)

__all__ = ["DEFAULT_ENGINE", "Engine", "EngineEntry", "engine_entry", "engine_names", "get_engine"]
