"""Typed, JSON-serialisable documents shared by every stage (DESIGN.md, "Key contracts")."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: File name of a run's TaskDoc inside its run directory (every engine writes it).
TASKDOC_FILE = "taskdoc.json"
#: How results of a stand-in engine (the mock VASP of the tests) are labelled everywhere.
NOT_PHYSICAL_LABEL = "mock (not physical)"
#: The note a not-physical TaskDoc and summary carry.
NOT_PHYSICAL_NOTE = (
    f"{NOT_PHYSICAL_LABEL}: numbers from the mock VASP of the tests (pair potential + "
    "tight binding), not from DFT; never compare them with experiment or a paper"
)
#: vasprun.xml ``program`` names of stand-ins whose outputs are not physical.
NOT_PHYSICAL_PROGRAMS = ("dftflow-mock-vasp",)
#: How a charged periodic cell is compensated (the engines' behaviour, stated in reports).
CHARGED_CELL_NOTE = (
    "a charged cell is neutralised by a uniform compensating background (VASP with NELECT "
    "different from the neutral count; GPAW with charge=); no monopole/Makov-Payne correction "
    "is applied, so energies of charged cells depend on the cell size"
)


def charge_state(charge_e: float | None, nelect: float | None = None) -> str:
    """What a calculation computes, from its net charge (e) and electron count.

    ``"anion (charge -1 e)"``, ``"cation (charge +1 e)"``, ``"radical (neutral, odd electron
    count)"``, ``"neutral"``; ``"unknown charge"`` when the charge is not known. The one wording
    of labels, reports and E_ads references.
    """
    if charge_e is None:
        return "unknown charge"
    q = float(charge_e)
    if abs(q) > 1e-6:
        kind = "anion" if q < 0 else "cation"
        return f"{kind} (charge {q:+g} e)"
    if nelect is not None and int(round(float(nelect))) % 2 == 1:
        return "radical (neutral, odd electron count)"
    return "neutral"


#: The kinds :func:`charge_state` names (its first word).
CHARGE_KINDS = ("anion", "cation", "radical", "neutral")


def reference_matches(reference_species: str, computed_kind: str) -> bool:
    """Whether a stated reference species agrees with the kind a run computes.

    ``computed_kind`` is ``"anion"``, ``"cation"``, ``"radical"`` or ``"neutral"`` (the first word
    of :func:`charge_state`, or a ligand form's model). A statement naming none of these words
    ("acetate", "acid") cannot be checked and passes; one naming kinds must name the computed one
    ("neutral acid" does not describe a radical; "acetate radical" does).
    """
    words = set(reference_species.lower().replace("(", " ").replace(",", " ").split())
    named = words.intersection(CHARGE_KINDS)
    return not named or computed_kind in named or computed_kind not in CHARGE_KINDS


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
    charge_e: float | None = Field(
        default=None,
        description="net charge of the computed cell, e (neutral valence count - NELECT; "
        "-1 = one extra electron); None = not known (a run dftflow did not set up)",
    )
    physical: bool = Field(
        default=True, description="False for a stand-in engine (the mock VASP): not physical"
    )
    physical_note: str = Field(default="", description="why the numbers are not physical")
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

    @property
    def charge_state(self) -> str:
        """What this run computed: anion/cation (charge), radical or neutral."""
        return charge_state(self.charge_e, self.nelect)

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
    physical: bool = Field(default=True, description="False: mock numbers, not physical")
    charge_states: dict[str, str] = Field(
        default_factory=dict,
        description="role -> what the run computed (charge_state: anion, radical, neutral ...)",
    )
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
    traps: dict[str, Any] | None = Field(
        default=None,
        description="trap study (dftflow.analysis.traps.TrapStudy): gap states per system, "
        "passivation verdicts, E_ads at the defect, the paper's mid-gap claim; None: no defects",
    )
    physical: bool = Field(default=True, description="False: mock numbers, not physical")
    physical_note: str = Field(default="", description="why the numbers are not physical")
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


def digest_of(data: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``data`` (identifies inputs for reuse)."""
    import hashlib
    import json

    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
