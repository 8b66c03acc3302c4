"""The Engine contract: ``run(atoms_or_structure, stage, directory) -> TaskDoc``.

Every engine (VASP under custodian, the embedded CHGNet+GPAW engine, the mock VASP) writes the
files a VASP run would write in ``directory`` (INCAR, KPOINTS, POSCAR, POTCAR or POTCAR.spec,
vasprun.xml, OUTCAR, OSZICAR, CONTCAR, DOSCAR and for statics CHGCAR) and returns the same
:class:`TaskDoc`, so the parsing and analysis code is one for all engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from pymatgen.core import Structure

from dftflow.errors import InputError
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
    """Raw results of one single point or relaxation, before they are written in VASP formats.

    Shapes: ``eigenvalues_eV`` and ``occupations`` are (nspin, nkpts, nbands); ``projections`` is
    (nspin, nkpts, nbands, natoms, norbitals) with orbitals in VASP LORBIT=11 order
    (s, py, pz, px, dxy, dyz, dz2, dxz, dx2) or None; ``kpoints`` (nkpts, 3) reduced coordinates and
    ``kweights`` summing to 1. ``density`` is the valence (pseudo) charge density in
    electrons/Angstrom^3
    on the FFT grid (nspin==1: (ngx, ngy, ngz); the CHGCAR writer multiplies by the cell volume).
    ``ionic_steps`` holds, per ionic step, dicts with keys ``structure`` (Atoms), ``e_0_eV``,
    ``free_energy_eV`` and ``forces_eV_per_A`` (natoms, 3).
    """

    atoms: Atoms
    energy_eV: float
    free_energy_eV: float
    forces_eV_per_A: np.ndarray
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
