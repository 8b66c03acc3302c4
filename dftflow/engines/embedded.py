"""The embedded engine: CHGNet relaxations and GPAW (PAW-PBE, LCAO) single points, no VASP needed.

``EmbeddedEngine(**settings).run(structure, stage, directory)`` runs one stage and builds its
:class:`~dftflow.schemas.TaskDoc` directly from the ASE/CHGNet/GPAW objects, with the numbers the
codes computed (CHGNet steps and forces; GPAW energies, SCF iterations, Fermi level, eigenvalues).
It writes only its own records in ``directory``:

* ``POSCAR`` (the input structure, selective dynamics = fixed atoms) and, for relaxations,
  ``CONTCAR`` (the final structure) -- generic structure files;
* relaxations: ``relax.traj`` (ASE trajectory: every step's structure, CHGNet energy and forces);
* statics: ``gpaw.txt`` (GPAW's log), ``bands.npz`` (:class:`dftflow.electronic.BandData`:
  eigenvalues, occupations, k-weights, Loewdin projections), ``dos.json.gz`` (a pymatgen
  ``CompleteDos`` with site/orbital projections) and ``CHGCAR`` (GPAW's pseudo valence density in
  CHGCAR format, the generic grid VESTA reads; its title line names GPAW);
* ``taskdoc.json``, the TaskDoc itself.

No VASP-specific file (vasprun.xml, OUTCAR, OSZICAR, DOSCAR, INCAR, KPOINTS, POTCAR) is written.

Stages
------
* ``bulk_relax``: CHGNet, positions and cell (FrechetCellFilter).
* ``slab_relax``, ``complex_relax``: CHGNet, positions; FixAtoms (selective dynamics) honoured.
* ``molecule_relax``: CHGNet, positions, in the given cell.
* ``static``: GPAW LCAO single point at the given geometry: e_0 (GPAW's energy extrapolated to zero
  smearing), forces (``static_forces``), Fermi level, eigenvalues, Loewdin-projected DOS in
  LORBIT=11 order, pseudo valence density on ``gpts`` derived from the cell and h only (same cell
  -> same grid), dipole correction along z for slab-like cells, spin polarisation only for odd
  electron counts (a pristine slab's delocalised odd electron kept spin-restricted:
  ``embedded_gpaw``).

Relaxation energies are CHGNet's (``metadata["energy_source"]``); adsorption energies must use the
statics. A CHGNet step has no SCF, so ``converged_electronic`` is True for relaxations (there is no
electronic loop that could fail) and ``free_energy_eV`` is None. Settings:
:mod:`dftflow.engines.embedded_settings`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import ase
import numpy as np
from ase import Atoms
from pymatgen.core import Structure
from pymatgen.io.vasp import Poscar

from dftflow.electronic import BANDS_FILE, DOS_FILE, BandData, complete_dos, write_complete_dos
from dftflow.engines.base import prepare_run
from dftflow.engines.embedded_chgnet import (
    cell_optimizer,
    chgnet_version,
    max_free_force,
    run_chgnet_relax,
)
from dftflow.engines.embedded_gpaw import is_slab_like, run_gpaw_static
from dftflow.engines.embedded_settings import DEFAULT_SETTINGS, merge_settings, validate_settings
from dftflow.errors import EngineError, InputError
from dftflow.fileio import atomic_path
from dftflow.io.chgcar import write_chgcar
from dftflow.schemas import TASKDOC_FILE, Stage, TaskDoc, jsonable
from dftflow.structures.convert import to_structure
from dftflow.structures.ligand_atoms import ligand_indices_of

#: Records of an earlier run in the same directory, removed before a new run (never parsed stale).
STALE_RECORDS = (
    TASKDOC_FILE,
    "CONTCAR",
    "relax.traj",
    "gpaw.txt",
    BANDS_FILE,
    DOS_FILE,
    "CHGCAR",
)


def engine_version() -> str:
    """'chgnet X; gpaw Y; ase Z' (empty parts for what is missing)."""
    return f"chgnet {chgnet_version()}; gpaw {gpaw_version()}; ase {ase.__version__}"


def _to_atoms(structure: Atoms | Structure) -> Atoms:
    if isinstance(structure, Atoms):
        atoms = structure.copy()
        atoms.calc = None
        return atoms
    if isinstance(structure, Structure):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms(structure)
    raise InputError(
        f"embedded engine needs an ASE Atoms or pymatgen Structure, got {type(structure).__name__}"
    )


class EmbeddedEngine:
    """CHGNet relaxations + GPAW LCAO statics; TaskDocs built from what the codes computed.

    Parameters
    ----------
    **settings
        Overrides of :data:`dftflow.engines.embedded_settings.DEFAULT_SETTINGS` (a study YAML's
        ``engine.settings``). Unknown names raise a one-line EngineError.
    """

    name = "embedded"

    def __init__(self, **settings: Any) -> None:
        self.settings: dict[str, Any] = {**DEFAULT_SETTINGS, **validate_settings(settings)}

    # ------------------------------------------------------------------------------------------
    def effective_settings(self, overrides: dict[str, Any] | None = None) -> tuple[dict, list[str]]:
        """Engine settings with per-run ``overrides`` merged, and warnings for ignored ones."""
        return merge_settings(self.settings, overrides)

    def run(
        self,
        structure: Atoms | Structure,
        stage: Stage | str,
        directory: str | Path,
        *,
        overrides: dict[str, Any] | None = None,
        label: str = "",
    ) -> TaskDoc:
        """Run ``stage`` on ``structure`` in ``directory``; write and return its TaskDoc.

        Raises
        ------
        InputError
            Unknown stage, empty structure.
        EngineError
            CHGNet/GPAW missing, unsupported elements, SCF failure (one line each).
        """
        stage, directory = prepare_run(stage, directory)
        atoms = _to_atoms(structure)
        if len(atoms) == 0:
            raise InputError("embedded engine: the structure has no atoms")
        charge = float(atoms.info.get("charge", 0.0) or 0.0)
        if charge and is_slab_like(atoms):
            # GPAW refuses charged cells with mixed periodic/zero boundaries (the slab cells'
            # dipole layer), so a charged species is refused before CHGNet relaxes it for nothing
            raise EngineError(
                f"embedded engine: cannot compute the {charge:+g} e cell of "
                f"{atoms.get_chemical_formula()} (GPAW refuses charged slab-like cells); build "
                "the neutral form (e.g. --form radical) or use --engine vasp"
            )
        settings, warnings = self.effective_settings(overrides)
        for name in STALE_RECORDS:
            (directory / name).unlink(missing_ok=True)
        Poscar(to_structure(atoms), comment=f"{label or stage.value} input").write_file(
            directory / "POSCAR"
        )
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        if stage.is_relax:
            fields = self._relax(atoms, stage, directory, settings)
            if charge:
                # CHGNet has no notion of a net charge: state it (the GPAW statics compute it)
                fields["warnings"].append(
                    f"CHGNet relaxed this {charge:+g} e cell as if neutral (the potential has no "
                    "net charge); the GPAW single points compute the charged cell"
                )
        else:
            fields = self._static(atoms, directory, settings)
        elapsed = time.perf_counter() - t0
        # CPU seconds of this process (all its threads): comparable across machine loads
        fields["metadata"]["cpu_time_s"] = round(time.process_time() - cpu0, 2)
        doc = TaskDoc(
            label=label,
            stage=stage,
            engine=self.name,
            engine_version=engine_version(),
            directory=str(directory.resolve()),
            parameters={"embedded": jsonable(settings)},
            overrides=dict(overrides or {}),
            inputs_digest=_inputs_digest(atoms, stage, settings),
            wall_time_s=elapsed,
            warnings=[*fields.pop("warnings", []), *warnings],
            ligand_indices=ligand_indices_of(structure),  # atom order is kept by every stage
            charge_e=charge,
            **fields,
        )
        doc.to_json_file(directory / TASKDOC_FILE)
        return doc

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _relax(
        atoms: Atoms, stage: Stage, directory: Path, settings: dict[str, Any]
    ) -> dict[str, Any]:
        """CHGNet relaxation; TaskDoc fields from its steps (trajectory and CONTCAR written)."""
        run = run_chgnet_relax(atoms, settings, relax_cell=stage is Stage.bulk_relax)
        result = run.result
        _write_trajectory(directory / "relax.traj", result.ionic_steps)
        final = to_structure(result.atoms)
        Poscar(final, comment=f"CHGNet {stage.value} final").write_file(directory / "CONTCAR")
        notes = []
        if not result.converged_ionic:
            notes.append(
                f"CHGNet relaxation stopped at the step cap ({settings['max_relax_steps']}) "
                f"before fmax {run.fmax_eV_per_A} eV/A"
            )
        return {
            "formula": final.composition.formula.replace(" ", ""),
            "n_atoms": len(final),
            "energy_eV": float(result.energy_eV),
            "free_energy_eV": None,
            "max_force_eV_per_A": max_free_force(result.atoms, result.forces_eV_per_A),
            "converged_electronic": True,
            "converged_ionic": bool(result.converged_ionic),
            "n_ionic_steps": run.n_steps,
            "structure": final.as_dict(),
            "warnings": notes,
            "metadata": {
                "energy_source": "CHGNet (machine-learned potential; geometry only, not for E_ads)",
                "relax": {
                    "calculator": f"CHGNet {settings['chgnet_model']}",
                    "optimizer": cell_optimizer(settings["optimizer"])
                    if stage is Stage.bulk_relax
                    else settings["optimizer"],
                    "fmax_eV_per_A": run.fmax_eV_per_A,
                    "n_steps": run.n_steps,
                    "max_steps": settings["max_relax_steps"],
                    "cell_filter": "FrechetCellFilter" if stage is Stage.bulk_relax else None,
                    "wall_time_s": round(run.wall_time_s, 3),
                    "trajectory": "relax.traj",
                },
            },
        }

    @staticmethod
    def _static(atoms: Atoms, directory: Path, settings: dict[str, Any]) -> dict[str, Any]:
        """GPAW single point; TaskDoc fields, band record, CompleteDos and CHGCAR written."""
        charge = float(atoms.info.get("charge", 0.0))
        grun = run_gpaw_static(atoms, settings, directory, charge=charge)
        result = grun.result
        final = to_structure(result.atoms)
        bands = BandData(
            eigenvalues_eV=result.eigenvalues_eV,
            occupations=result.occupations,
            kweights=result.kweights,
            efermi_eV=result.efermi_eV,
            kpoints=result.kpoints,
            projections=result.projections,
        )
        bands.save(directory / BANDS_FILE)
        plain = Structure.from_sites(final.sites)
        for prop in list(plain.site_properties):
            plain.remove_site_property(prop)
        cdos = complete_dos(
            plain,
            bands,
            sigma_eV=float(settings["smearing_width_eV"]),
            nedos=int(settings["nedos"]),
        )
        dos_path = write_complete_dos(directory / DOS_FILE, cdos)
        volumetric: dict[str, str] = {}
        if result.density is not None:
            volume = plain.volume
            mag = None if result.magnetization_density is None else result.magnetization_density
            chg = write_chgcar(
                directory / "CHGCAR",
                plain,
                np.asarray(result.density) * volume,
                None if mag is None else np.asarray(mag) * volume,
                comment=f"{plain.composition.reduced_formula} GPAW {gpaw_version()} pseudo "
                "valence density (rho*V)",
            )
            volumetric["CHGCAR"] = str(chg.resolve())
        return {
            "formula": final.composition.formula.replace(" ", ""),
            "n_atoms": len(final),
            "energy_eV": float(result.energy_eV),
            "free_energy_eV": float(result.free_energy_eV),
            "max_force_eV_per_A": None
            if result.forces_eV_per_A is None
            else max_free_force(result.atoms, result.forces_eV_per_A),
            "converged_electronic": True,  # GPAW raised EngineError otherwise
            "converged_ionic": True,  # a single point has no ionic loop
            "n_ionic_steps": 1,
            "efermi_eV": None if result.efermi_eV is None else float(result.efermi_eV),
            "ispin": 2 if grun.spin_polarized else 1,
            "nelect": float(grun.nelect),
            "structure": final.as_dict(),
            "has_dos": True,
            "has_projected_dos": result.projections is not None,
            "dos_file": str(dos_path.resolve()),
            "volumetric_files": volumetric,
            "fft_grid": [int(n) for n in grun.gpts],
            "kpoints": [int(k) for k in grun.kpts],
            "metadata": {
                "energy_source": "GPAW PAW-PBE LCAO single point; energy_eV is GPAW's energy "
                "extrapolated to zero smearing width (e_0), free_energy_eV its free energy",
                "gpaw": {
                    "parameters": jsonable(grun.gpaw_parameters),
                    "gpts": list(grun.gpts),
                    "kpts": list(grun.kpts),
                    "spin_polarized": grun.spin_polarized,
                    "spin_treatment": grun.spin_note,
                    "scf_iterations": grun.scf_iterations,
                    "restricted_scf_iterations": grun.restricted_scf_iterations,
                    "restricted_wall_time_s": None
                    if grun.restricted_wall_time_s is None
                    else round(grun.restricted_wall_time_s, 3),
                    "wall_time_s": round(grun.wall_time_s, 3),
                    "charge_e": charge,
                    "valence_electrons": grun.zvals,
                    "log": "gpaw.txt",
                },
                "bands_file": BANDS_FILE,
                "projections": "Loewdin populations in the LCAO basis, LORBIT=11 order, f dropped",
                "density": "GPAW pseudo valence density (no AECCAR); integrates to nelect",
                "reference_energy": "GPAW energies are relative to GPAW's isolated atoms",
            },
        }


def _write_trajectory(path: Path, steps: list[dict[str, Any]]) -> None:
    """Every relaxation step as an ASE trajectory (structure, energy, forces)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import Trajectory

    with atomic_path(path) as tmp, Trajectory(str(tmp), "w") as traj:
        for step in steps:
            frame = step["structure"].copy()
            frame.calc = SinglePointCalculator(
                frame, energy=float(step["e_0_eV"]), forces=np.asarray(step["forces_eV_per_A"])
            )
            traj.write(frame)


def _inputs_digest(atoms: Atoms, stage: Stage, settings: dict[str, Any]) -> str:
    """sha256 over the input structure, the stage and the effective settings."""
    data = {
        "structure": to_structure(atoms).as_dict(),
        "stage": stage.value,
        "settings": jsonable(settings),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def gpaw_version() -> str:
    """Installed GPAW version ('' when missing)."""
    try:
        import gpaw
    except ImportError:
        return ""
    return str(gpaw.__version__)


__all__ = ["DEFAULT_SETTINGS", "EmbeddedEngine", "EngineError", "engine_version"]
