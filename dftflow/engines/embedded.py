"""The embedded engine: CHGNet relaxations and GPAW (PAW-PBE, LCAO) single points, no VASP needed.

``EmbeddedEngine(**settings).run(structure, stage, directory)`` runs one stage and writes the files
a VASP run writes (INCAR, KPOINTS, POSCAR, POTCAR.spec as a record of what ran; vasprun.xml, OUTCAR,
OSZICAR, CONTCAR, DOSCAR, CHGCAR through :func:`dftflow.io.vasp_writer.write_vasp_outputs`), then
returns the TaskDoc of :func:`dftflow.parse.vasp.parse_directory` -- the same parser as for VASP --
with ``engine="embedded"`` and the engine details in ``TaskDoc.metadata``.

Stages
------
* ``bulk_relax``: CHGNet, positions and cell (FrechetCellFilter).
* ``slab_relax``, ``complex_relax``: CHGNet, positions; FixAtoms (selective dynamics) honoured.
* ``molecule_relax``: CHGNet, positions, in the given cell.
* ``static``: GPAW LCAO single point at the given geometry: e_0 (GPAW's energy extrapolated to zero
  smearing), forces, Fermi level, eigenvalues, Loewdin-projected DOS in LORBIT=11 order, pseudo
  valence density on ``gpts`` derived from the cell and h only (same cell -> same grid), dipole
  correction along z for slab-like cells, spin polarisation only for odd electron counts.

Relaxation energies are CHGNet's (``metadata["energy_source"]``); adsorption energies must use the
statics. Settings: :mod:`dftflow.engines.embedded_settings`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from pymatgen.core import Structure

from dftflow.engines.base import prepare_run
from dftflow.engines.embedded_settings import DEFAULT_SETTINGS, merge_settings, validate_settings
from dftflow.errors import EngineError, InputError
from dftflow.schemas import Stage, TaskDoc

#: kB*T-free constant: plane-wave cutoff (eV) equivalent to a real-space grid spacing h (Angstrom).
_HBAR2_2M_EV_A2 = 3.80998212


def equivalent_cutoff_eV(grid_spacing_A: float) -> float:
    """Plane-wave cutoff (eV) whose shortest wavelength the grid resolves: hbar^2/2m (pi/h)^2."""
    return _HBAR2_2M_EV_A2 * (np.pi / grid_spacing_A) ** 2


def engine_version() -> str:
    """'chgnet X; gpaw Y; ase Z' (empty parts for what is missing)."""
    from dftflow.engines.embedded_chgnet import chgnet_version

    try:
        import gpaw

        gv = gpaw.__version__
    except ImportError:
        gv = ""
    import ase

    return f"chgnet {chgnet_version()}; gpaw {gv}; ase {ase.__version__}"


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
    """CHGNet relaxations + GPAW LCAO statics, writing VASP-format outputs.

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
        """Run ``stage`` on ``structure`` in ``directory`` and return its TaskDoc.

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
        settings, warnings = self.effective_settings(overrides)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        if stage.is_relax:
            from dftflow.engines.embedded_chgnet import run_chgnet_relax

            run = run_chgnet_relax(atoms, settings, relax_cell=stage is Stage.bulk_relax)
            result = run.result
            metadata = {
                "energy_source": "CHGNet (machine-learned potential; geometry only, not for E_ads)",
                "relax": {
                    "calculator": f"CHGNet {settings['chgnet_model']}",
                    "optimizer": settings["optimizer"],
                    "fmax_eV_per_A": run.fmax_eV_per_A,
                    "n_steps": run.n_steps,
                    "max_steps": settings["max_relax_steps"],
                    "cell_filter": "FrechetCellFilter" if stage is Stage.bulk_relax else None,
                    "wall_time_s": round(run.wall_time_s, 3),
                },
            }
            incar = self._relax_incar(settings, stage, run.n_steps, result.converged_ionic)
            kpoints = None
            zvals = None
        else:
            from dftflow.engines.embedded_gpaw import run_gpaw_static

            charge = float(atoms.info.get("charge", 0.0))
            grun = run_gpaw_static(atoms, settings, directory, charge=charge)
            result = grun.result
            metadata = {
                "energy_source": "GPAW PAW-PBE LCAO single point; energy_eV is GPAW's energy "
                "extrapolated to zero smearing width (e_0), free_energy_eV its free energy",
                "gpaw": {
                    "parameters": _jsonable(grun.gpaw_parameters),
                    "gpts": list(grun.gpts),
                    "kpts": list(grun.kpts),
                    "spin_polarized": grun.spin_polarized,
                    "scf_iterations": grun.scf_iterations,
                    "wall_time_s": round(grun.wall_time_s, 3),
                    "charge_e": charge,
                    "valence_electrons": grun.zvals,
                },
                "projections": "Loewdin populations in the LCAO basis, LORBIT=11 order, f dropped",
                "density": "GPAW pseudo valence density (no AECCAR); integrates to nelect",
                "reference_energy": "GPAW energies are relative to GPAW's isolated atoms",
            }
            incar = self._static_incar(settings, grun)
            kpoints = list(grun.kpts)
            zvals = grun.zvals
        elapsed = time.perf_counter() - t0
        # CPU seconds of this process (all its threads): comparable across machine loads
        metadata["cpu_time_s"] = round(time.process_time() - cpu0, 2)
        self._write_inputs(directory, atoms, incar, kpoints, zvals, settings)
        from dftflow.io.vasp_writer import write_vasp_outputs

        write_vasp_outputs(
            directory,
            result,
            incar=incar,
            kpoints=kpoints,
            zvals=zvals,
            potcar_symbols=None,
            generator="dftflow-embedded",
            elapsed_s=elapsed,
        )
        from dftflow.parse.vasp import parse_directory

        doc = parse_directory(directory, label=label, stage=stage)
        metadata["settings"] = _jsonable(settings)
        metadata["potcar_symbols_note"] = (
            "vasprun.xml names VASP POTCARs for the element blocks; the run used GPAW PBE setups "
            "with the same valence counts"
        )
        return doc.model_copy(
            update={
                "engine": self.name,
                "engine_version": engine_version(),
                "label": label,
                "stage": stage,
                "overrides": dict(overrides or {}),
                "wall_time_s": elapsed,
                "warnings": [*doc.warnings, *warnings],
                "parameters": {**doc.parameters, "embedded": _jsonable(settings)},
                "metadata": {**doc.metadata, **metadata},
            }
        )

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _relax_incar(
        settings: dict[str, Any], stage: Stage, n_steps: int, converged: bool
    ) -> dict[str, Any]:
        """VASP-tag record of a CHGNet relaxation.

        NSW is chosen so that pymatgen's ``converged_ionic`` (fewer ionic steps than NSW) tells the
        truth: the step cap when converged, the number of steps taken when not.
        """
        cap = int(settings["max_relax_steps"])
        nsw = max(cap, n_steps + 1) if converged else n_steps
        return {
            "SYSTEM": f"dftflow embedded {stage.value} (CHGNet)",
            "IBRION": 3,
            "NSW": nsw,
            "ISIF": 3 if stage is Stage.bulk_relax else 2,
            "EDIFFG": -float(settings["fmax_eV_per_A"]),
            "NELM": 60,  # no SCF in a CHGNet step: one "electronic step" each, far below NELM
            "ISMEAR": 0,
            "SIGMA": float(settings["smearing_width_eV"]),
            "LCHARG": False,
            "LWAVE": False,
        }

    @staticmethod
    def _static_incar(settings: dict[str, Any], grun) -> dict[str, Any]:
        """VASP-tag record of a GPAW static (ENCUT: the cutoff equivalent to the grid spacing)."""
        incar: dict[str, Any] = {
            "SYSTEM": "dftflow embedded static (GPAW LCAO)",
            "GGA": "PE",
            "ENCUT": round(equivalent_cutoff_eV(float(settings["grid_spacing_A"])), 1),
            "ISMEAR": -1 if settings["smearing"] == "fermi-dirac" else 1,
            "SIGMA": float(settings["smearing_width_eV"]),
            "ISPIN": 2 if grun.spin_polarized else 1,
            "NELM": int(settings["scf_maxiter"]),
            "EDIFF": float(settings["scf_energy_eV"] or settings["scf_energy_eV_per_electron"]),
            "NSW": 0,
            "IBRION": -1,
            "LORBIT": 11,
            "NEDOS": int(settings["nedos"]),
            "LCHARG": bool(settings["write_density"]),
            "LWAVE": False,
            "NGXF": int(grun.gpts[0]),
            "NGYF": int(grun.gpts[1]),
            "NGZF": int(grun.gpts[2]),
        }
        if "poissonsolver" in grun.gpaw_parameters:
            incar.update({"LDIPOL": True, "IDIPOL": 3})
        return incar

    @staticmethod
    def _write_inputs(
        directory: Path,
        atoms: Atoms,
        incar: dict[str, Any],
        kpoints: list[int] | None,
        zvals: dict[str, float] | None,
        settings: dict[str, Any],
    ) -> None:
        """INCAR/KPOINTS/POSCAR/POTCAR.spec recording what ran, and embedded_settings.json."""
        from pymatgen.io.vasp import Incar, Kpoints, Poscar

        from dftflow.io.vasp_writer import selective_dynamics, species_blocks, to_structure

        structure = to_structure(atoms)
        sd = selective_dynamics(atoms)
        Poscar(structure, selective_dynamics=sd).write_file(directory / "POSCAR")
        Incar(incar).write_file(directory / "INCAR")
        if kpoints is not None:
            Kpoints.monkhorst_automatic(tuple(kpoints)).write_file(directory / "KPOINTS")
        symbols, _ = species_blocks(structure)
        lines = []
        for s in symbols:
            nv = "" if zvals is None else f" {zvals[s]:g}"
            lines.append(f"{s} GPAW-{settings['xc']}{nv}" if zvals else f"{s} CHGNet")
        (directory / "POTCAR.spec").write_text("\n".join(lines) + "\n")
        (directory / "embedded_settings.json").write_text(
            json.dumps(_jsonable(settings), indent=2, sort_keys=True)
        )


def _jsonable(obj: Any) -> Any:
    """Tuples -> lists, numpy scalars/arrays -> Python, recursively."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


__all__ = ["DEFAULT_SETTINGS", "EmbeddedEngine", "EngineError", "engine_version"]
