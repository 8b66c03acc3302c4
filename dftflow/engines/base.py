"""The Engine contract: ``run(atoms_or_structure, stage, directory) -> TaskDoc``.

Each engine builds its :class:`TaskDoc` from what it really computed, writes it as
``taskdoc.json`` in ``directory`` beside its own records (VASP and the mock VASP: VASP's files;
the embedded engine: its trajectory, GPAW log, band data, CompleteDos and CHGCAR-format density),
and never writes a file that claims another code ran. Analysis reads any engine's run through
:mod:`dftflow.parse.run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from pydantic import BaseModel, ValidationError
from pymatgen.core import Structure

from dftflow.errors import EngineError, InputError
from dftflow.schemas import Stage, TaskDoc


@runtime_checkable
class Engine(Protocol):
    """Runs one calculation stage in a directory and returns its TaskDoc."""

    name: str

    def run(
        self,
        structure: Atoms | Structure,
        stage: Stage | str,
        directory: str | Path,
        *,
        overrides: dict[str, Any] | None = None,
        label: str = "",
    ) -> TaskDoc:
        """Run ``stage`` on ``structure`` in ``directory``."""
        ...


def validated_settings(
    model: type[BaseModel], settings: dict[str, Any], engine_name: str
) -> BaseModel:
    """``settings`` validated by an engine's pydantic ``model``; every failure is one line.

    Raises
    ------
    EngineError
        Unknown setting names (listing the known ones), or the first wrong type or range.
    """
    unknown = sorted(set(settings) - set(model.model_fields))
    if unknown:
        raise EngineError(
            f"{engine_name} engine: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(model.model_fields))}"
        )
    try:
        return model.model_validate(settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "settings"
        raise EngineError(
            f"{engine_name} engine: {key}: {err['msg']} (got {err.get('input')!r})"
        ) from None


def prepare_run(stage: Stage | str, directory: str | Path) -> tuple[Stage, Path]:
    """Common start of every ``Engine.run``: validate the stage name and create ``directory``.

    Raises
    ------
    InputError
        Unknown stage (one line listing the valid ones).
    """
    try:
        stage = Stage(stage)
    except ValueError:
        raise InputError(
            f"unknown stage {stage!r}; choose one of {', '.join(s.value for s in Stage)}"
        ) from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return stage, directory


@dataclass
class ElectronicResult:
    """Raw results of one single point or relaxation, as the code computed them.

    Shapes: ``eigenvalues_eV`` and ``occupations`` are (nspin, nkpts, nbands); ``projections`` is
    (nspin, nkpts, nbands, natoms, norbitals) with orbitals in VASP LORBIT=11 order
    (s, py, pz, px, dxy, dyz, dz2, dxz, dx2) or None; ``kpoints`` (nkpts, 3) reduced coordinates and
    ``kweights`` summing to 1. ``density`` is the valence (pseudo) charge density in
    electrons/Angstrom^3
    on the FFT grid (nspin==1: (ngx, ngy, ngz); the CHGCAR writer multiplies by the cell volume).
    ``ionic_steps`` holds, per ionic step, dicts with keys ``structure`` (Atoms), ``e_0_eV``,
    ``free_energy_eV`` and ``forces_eV_per_A`` (natoms, 3). ``forces_eV_per_A`` is ``None`` for a
    single point run without forces (the embedded engine's ``static_forces: false``).
    """

    atoms: Atoms
    energy_eV: float
    free_energy_eV: float
    forces_eV_per_A: np.ndarray | None
    efermi_eV: float | None = None
    eigenvalues_eV: np.ndarray | None = None
    occupations: np.ndarray | None = None
    kpoints: np.ndarray | None = None
    kweights: np.ndarray | None = None
    projections: np.ndarray | None = None
    density: np.ndarray | None = None
    magnetization_density: np.ndarray | None = None
    nelect: float | None = None
    ionic_steps: list[dict[str, Any]] = field(default_factory=list)
    electronic_steps_per_ionic: list[int] = field(default_factory=list)
    converged_electronic: bool = True
    converged_ionic: bool = True
    stress_kbar: np.ndarray | None = None
    generator: str = "dftflow"
