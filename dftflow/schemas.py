"""Typed, JSON-serialisable documents shared by every stage (DESIGN.md, "Key contracts")."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: File name of a run's TaskDoc inside its run directory (every engine writes it).
TASKDOC_FILE = "taskdoc.json"


class Stage(str, Enum):
    """Calculation stages understood by every engine."""

    bulk_relax = "bulk_relax"
    slab_relax = "slab_relax"
    molecule_relax = "molecule_relax"
    complex_relax = "complex_relax"
    static = "static"

    @property
    def is_relax(self) -> bool:
        """Whether the stage moves ions."""
        return self is not Stage.static


class Correction(BaseModel):
    """One correction made to a run (custodian handler or engine), auditable as data."""

    handler: str
    errors: list[str] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)
    attempt: int = 0


class TaskDoc(BaseModel):
    """The result of one calculation, whatever the engine (VASP, embedded, mock VASP).

    Energies in eV, forces in eV/Angstrom. ``energy_eV`` is VASP's e_0 ("energy sigma->0").
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    label: str = ""
    stage: Stage | None = None
    engine: str
    engine_version: str = ""
    directory: str
    formula: str
    n_atoms: int
    energy_eV: float
    free_energy_eV: float | None = None
    max_force_eV_per_A: float | None = None
    converged_electronic: bool
    converged_ionic: bool
    n_ionic_steps: int
    efermi_eV: float | None = None
    ispin: int = 1
    nelect: float | None = None
    structure: dict[str, Any] = Field(description="final structure, pymatgen Structure.as_dict()")
    ligand_indices: list[int] | None = Field(
        default=None,
        description="0-based indices (structure order, kept by every engine) of the atoms the "
        "builder added as the ligand; [] = no ligand atom; None = unknown (a run dftflow did "
        "not build), where analysis falls back to an element rule and says so",
    )
    has_dos: bool = False
    has_projected_dos: bool = False
    dos_file: str | None = None
    volumetric_files: dict[str, str] = Field(
        default_factory=dict, description="kind (CHGCAR, LOCPOT, AECCAR0, ...) -> path"
    )
    fft_grid: list[int] | None = Field(default=None, description="NGXF, NGYF, NGZF of CHGCAR")
    parameters: dict[str, Any] = Field(default_factory=dict, description="INCAR/settings used")
    kpoints: list[int] | None = None
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="user overrides of the paper's defaults, recorded"
    )
    inputs_digest: str = ""
    corrections: list[Correction] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    wall_time_s: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ligand_indices_in_range(self) -> TaskDoc:
        """Ligand indices are sorted, unique and inside ``range(n_atoms)``."""
        if self.ligand_indices is not None:
            idx = self.ligand_indices
            if idx != sorted(set(idx)) or (idx and not 0 <= idx[0] <= idx[-1] < self.n_atoms):
                raise ValueError(
                    f"ligand_indices must be sorted, unique and in 0..{self.n_atoms - 1}"
                )
        return self

    def with_ligand_indices(self, indices: list[int] | None) -> TaskDoc:
        """A validated copy whose ``ligand_indices`` are ``indices`` (e.g. from the input atoms)."""
        return type(self).model_validate({**self.model_dump(), "ligand_indices": indices})

    def to_json_file(self, path: str | Path) -> None:
        """Write this document as JSON (atomic: temp file + rename)."""
        from dftflow.fileio import atomic_write_text

        atomic_write_text(path, self.model_dump_json(indent=2))

    @classmethod
    def from_json_file(cls, path: str | Path) -> TaskDoc:
        """Read a TaskDoc written by :meth:`to_json_file`."""
        return cls.model_validate_json(Path(path).read_text())

    def final_structure(self):  # -> pymatgen Structure
        """The final structure as a pymatgen ``Structure``."""
        from pymatgen.core import Structure

        return Structure.from_dict(self.structure)


class PlacementResult(BaseModel):
    """One adsorption configuration that was tried (every model tried is reported)."""

    label: str
    model: str
    energy_eV: float | None = None
    converged: bool | None = None
    taskdoc: str | None = Field(default=None, description="path of its TaskDoc JSON")


class LigandResult(BaseModel):
    """Per-ligand results of a study (one row of summary.json)."""

    ligand: str
    model: str = Field(description="adsorption model of the lowest-energy configuration")
    reference_species: str = Field(description="what L is in E_ads: neutral acid, anion, radical")
    e_ads_eV: float | None = None
    converged: dict[str, bool] = Field(default_factory=dict)
    engine: str = ""
    placements: list[PlacementResult] = Field(default_factory=list)
    midgap: dict[str, Any] | None = None
    charge_transfer_e: float | None = None
    taskdocs: dict[str, str] = Field(
        default_factory=dict,
        description="role -> TaskDoc JSON path; roles: molecule_relax, molecule_static, "
        "complex_relax, complex_static, slab_fragment_static, ligand_fragment_static",
    )
    paper_e_ads_eV: float | None = None
    notes: list[str] = Field(default_factory=list)


class StudySummary(BaseModel):
    """The content of ``STUDY_DIR/summary.json``."""

    study: str
    engine: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    slab: dict[str, str] = Field(
        default_factory=dict,
        description="role -> TaskDoc JSON path (bulk_relax, slab_relax, slab_static)",
    )
    ligands: list[LigandResult] = Field(default_factory=list)
    slab_midgap: dict[str, Any] | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, recursively.

    Tuples -> lists, numpy scalars/arrays -> Python (anything with ``tolist``), keys -> str;
    anything else that JSON cannot hold (an object in a calculator's parameters) -> its ``str``.
    Used for the settings and parameters recorded in a TaskDoc.
    """
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if callable(tolist):
        return jsonable(tolist())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
