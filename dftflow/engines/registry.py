"""The engine registry: one entry per engine owns its name, settings, fingerprint and workers.

* ``embedded``: :class:`dftflow.engines.embedded.EmbeddedEngine` (CHGNet relaxations, GPAW
  single points); the default engine: it runs anywhere dftflow is installed with its extra.
* ``vasp``: :class:`dftflow.engines.vasp.VaspEngine` (real VASP under custodian).
* ``mock``: the same VaspEngine running the mock VASP executable ``dftflow-mock-vasp`` (test
  equipment installed with dftflow) with ``POTCAR.spec`` files; its numbers are **not physical**
  (its entry has ``physical=False``).

Every other module (CLI, study spec, runner, flows, firetasks) asks this registry; none lists
engine names itself. The embedded engine's module (CHGNet, GPAW) is imported only when an engine
is created, so dftflow works without the optional packages.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from pydantic import BaseModel

from dftflow.engines import embedded_settings
from dftflow.engines.base import Engine
from dftflow.engines.vasp import VaspSettings
from dftflow.errors import EngineError

#: The engine a command uses when none is named (never the mock).
DEFAULT_ENGINE = "embedded"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity on Linux, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _one_per_core() -> int:
    # GPAW (built without MPI) and CHGNet use one core per calculation, and a study has up to ten
    # independent single points; at most 4 (each GPAW single point of the 2x2 slab holds ~2 GB).
    return max(1, min(usable_cores(), 4))


def _one() -> int:
    # VASP parallelises itself through MPI; the mock VASP stands in for it, one run at a time.
    return 1


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class EngineEntry:
    """Everything dftflow knows about one engine.

    Attributes
    ----------
    name
        The name users type (``--engine``, a study YAML's ``engine.name``).
    module, class_name
        Where the engine class lives (imported on first use).
    settings_model
        The pydantic model of its settings.
    presets
        Settings this entry fixes (the mock: its executable, POTCAR.spec, fast polling).
    fingerprint_defaults
        Returns the defaults that live in code and change results (part of every Firework
        digest; read when the digest is made, so new defaults never reuse old results).
    fingerprint_distributions
        Packages whose versions enter the digest.
    default_workers
        Worker processes ``dftflow run`` starts when not told.
    physical
        False for the mock: its numbers are not physical.
    install_hint
        How to install what it needs.
    """

    name: str
    module: str
    class_name: str
    settings_model: type[BaseModel]
    presets: dict[str, Any] = field(default_factory=dict)
    fingerprint_defaults: Callable[[], dict[str, Any]] = dict
    fingerprint_distributions: tuple[str, ...] = ("dftflow",)
    default_workers: Callable[[], int] = _one
    physical: bool = True
    install_hint: str = "pip install dftflow"
    description: str = ""

    @property
    def launches_vasp(self) -> bool:
        """Whether this engine runs a VASP launch command the machine chooses (``--vasp-cmd``).

        True for ``vasp``; the mock fixes its own executable (its preset).
        """
        return "vasp_cmd" in self.settings_model.model_fields and "vasp_cmd" not in self.presets

    def fingerprint(self) -> dict[str, Any]:
        """What results depend on beyond the study spec: code defaults and package versions.

        Part of every Firework digest, so that new defaults or a new code version never reuse
        results computed with the old ones.
        """
        out: dict[str, Any] = {"versions": {d: _version(d) for d in self.fingerprint_distributions}}
        defaults = self.fingerprint_defaults()
        if defaults:
            out["defaults"] = defaults
        if self.presets:
            out["presets"] = self.presets
        return out

    def create(self, **settings: Any) -> Engine:
        """An engine instance with ``settings`` merged over the presets (the engine validates)."""
        merged = {**self.presets, **settings}
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise EngineError(
                f"engine {self.name!r} is not available ({exc.name or exc}): install it with "
                f"{self.install_hint}"
            ) from exc
        cls = getattr(module, self.class_name)
        try:
            engine = cls(**merged)
        except TypeError as exc:
            raise EngineError(f"engine {self.name!r}: invalid settings: {exc}") from exc
        engine.name = self.name  # the entry's name goes into every TaskDoc (e.g. "mock")
        engine.physical = self.physical  # False marks every TaskDoc "mock (not physical)"
        return engine


#: name -> entry. The one list of engines.
ENGINES: dict[str, EngineEntry] = {
    "embedded": EngineEntry(
        name="embedded",
        module="dftflow.engines.embedded",
        class_name="EmbeddedEngine",
        settings_model=embedded_settings.EmbeddedSettings,
        fingerprint_defaults=lambda: dict(embedded_settings.DEFAULT_SETTINGS),
        fingerprint_distributions=("dftflow", "chgnet", "gpaw", "ase"),
        default_workers=_one_per_core,
        install_hint='pip install "dftflow[embedded]" (CHGNet, torch, GPAW; see README)',
        description="CHGNet relaxations + GPAW PAW-PBE (LCAO) single points, no VASP needed",
    ),
    "vasp": EngineEntry(
        name="vasp",
        module="dftflow.engines.vasp",
        class_name="VaspEngine",
        settings_model=VaspSettings,
        fingerprint_distributions=("dftflow", "pymatgen", "custodian"),
        description="VASP under custodian (the paper's settings)",
    ),
    "mock": EngineEntry(
        name="mock",
        module="dftflow.engines.vasp",
        class_name="VaspEngine",
        settings_model=VaspSettings,
        presets={
            "vasp_cmd": "dftflow-mock-vasp",
            "gamma_cmd": None,
            "potcar_spec": True,
            "polling_time_step": 0.1,
            # the mock finishes in seconds: a monitor poll would only see the previous attempt
            "monitor_freq": 600,
            # one BLAS thread: faster on the mock's small matrices
            "env": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        },
        fingerprint_distributions=("dftflow", "pymatgen", "custodian"),
        physical=False,
        description="the mock VASP of the tests under custodian: NOT PHYSICAL numbers",
    ),
}


def engine_names() -> list[str]:
    """The registered engine names."""
    return sorted(ENGINES)


def engine_entry(name: str) -> EngineEntry:
    """The registry entry of ``name`` (case-insensitive).

    Raises
    ------
    EngineError
        Unknown name (one line listing the known ones).
    """
    key = str(name).strip().lower()
    if key not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(engine_names())}")
    return ENGINES[key]


def get_engine(name: str, **settings: Any) -> Engine:
    """Create the engine called ``name`` with ``settings`` (a study YAML's ``engine.settings``).

    Raises
    ------
    EngineError
        Unknown name, engine module or its extra not installed, or rejected settings.
    """
    return engine_entry(name).create(**settings)
