"""Engine registry: ``get_engine(name, **config) -> Engine``.

Engines are imported lazily so that ``dftflow`` works without the optional ones installed:

* ``"vasp"``: :class:`dftflow.engines.vasp.VaspEngine` (real VASP under custodian);
* ``"mock"``: the same VaspEngine running the mock VASP executable ``dftflow-mock-vasp`` with
  ``POTCAR.spec`` files (no licence needed), so the whole custodian path is exercised;
* ``"embedded"``: :class:`dftflow.engines.embedded.EmbeddedEngine` (CHGNet relaxations, GPAW
  single points).
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import Any

from dftflow.engines.base import Engine
from dftflow.errors import EngineError

#: The mock VASP console script (installed with dftflow).
MOCK_VASP = "dftflow-mock-vasp"

#: name -> (module, class, default configuration, install hint)
ENGINES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "vasp": ("dftflow.engines.vasp", "VaspEngine", {}, "pip install dftflow"),
    "mock": (
        "dftflow.engines.vasp",
        "VaspEngine",
        {"vasp_cmd": MOCK_VASP, "potcar_spec": True},
        "pip install dftflow",
    ),
    "embedded": (
        "dftflow.engines.embedded",
        "EmbeddedEngine",
        {},
        'pip install "dftflow[embedded]" (CHGNet, torch, GPAW; see README)',
    ),
}


def _console_script(name: str) -> str:
    """Full path of one of dftflow's console scripts.

    Found next to the running Python when its ``bin`` is not on PATH (a venv used without
    activation, a queue job started by a login shell).
    """
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def engine_names() -> list[str]:
    """The registered engine names."""
    return sorted(ENGINES)


def get_engine(name: str, **config: Any) -> Engine:
    """Create the engine called ``name`` with ``config`` merged over its defaults.

    Parameters
    ----------
    name
        ``"vasp"``, ``"mock"`` or ``"embedded"`` (case-insensitive).
    **config
        Keyword arguments of the engine's constructor (a study YAML's ``engine.settings``).

    Raises
    ------
    EngineError
        Unknown name, engine module or its extra not installed, or rejected configuration.
    """
    key = str(name).strip().lower()
    if key not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(engine_names())}")
    module_name, class_name, defaults, hint = ENGINES[key]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(
            f"engine {key!r} is not available ({exc.name or exc}): install it with {hint}"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise EngineError(f"engine {key!r}: {module_name} has no {class_name}; reinstall dftflow")
    settings = {**defaults, **config}
    if settings.get("vasp_cmd") == MOCK_VASP:
        settings["vasp_cmd"] = _console_script(MOCK_VASP)
    try:
        return cls(**settings)
    except TypeError as exc:
        raise EngineError(f"engine {key!r}: invalid settings: {exc}") from exc
