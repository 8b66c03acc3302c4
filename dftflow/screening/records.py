"""What a screen writes: one record per placement, one per ligand, one table (pydantic, JSON).

Energies in eV; ``e_ads`` = E(slab+L) - E(slab) - E(L) with L the ligand's reference species
(stated in every record); negative binds. ``sigma`` is the committee's spread: the population
standard deviation of the member models' E_ads (for two models, half their difference).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Binding modes a relaxed geometry can be labelled with (``labels.label_geometry``).
BINDING_MODES = ("monodentate", "chelating", "bridging", "physisorbed", "dissociated", "desorbed")
#: Anomalies that exclude a placement from the ranking (the reason is kept and shown).
EXCLUDING_ANOMALIES = ("fragmented", "desorbed", "surface_moved")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlacementRecord(_Record):
    """One enumerated placement of one ligand, after its MLIP relaxation(s)."""

    key: str = Field(description="unique, path-safe name within the ligand")
    ligand: str
    mode_enumerated: str = Field(description="binding mode of the starting geometry")
    site: int
    azimuth_deg: float
    conformer: int = 0
    form: str = Field(description="ligand form on the surface (as_is, deprotonated, radical)")
    dissociate: bool = Field(default=False, description="acidic H started on a surface Br")
    n_atoms: int
    # --- relaxation --------------------------------------------------------------------------
    n_steps_loose: int | None = None
    n_steps_fine: int | None = None
    converged: bool = False
    hit_step_cap: bool = False
    stopped_early: str | None = Field(default=None, description="why the relaxation was stopped")
    fmax_eV_per_A: float | None = Field(default=None, description="largest final force")
    e_loose_eV: float | None = Field(
        default=None, description="energy after the loose relaxation (first committee member)"
    )
    # --- label --------------------------------------------------------------------------------
    binding_mode: str | None = Field(default=None, description="one of BINDING_MODES")
    bound_pb: list[int] = Field(default_factory=list, description="surface Pb bound to the ligand")
    anomalies: list[str] = Field(default_factory=list)
    excluded: bool = False
    reason: str | None = Field(default=None, description="why excluded (shown in the table)")
    duplicate_of: str | None = None
    # --- energies -----------------------------------------------------------------------------
    e_complex_eV: dict[str, float] = Field(
        default_factory=dict, description="final energy of the complex per committee model"
    )
    e_ads_eV: dict[str, float] = Field(default_factory=dict, description="E_ads per model")
    e_ads_mean_eV: float | None = None
    e_ads_sigma_eV: float | None = None
    refined: bool = Field(default=False, description="relaxed to the fine force limit")
    # --- DFT ----------------------------------------------------------------------------------
    escalated: bool = False
    escalation_reason: str | None = None
    e_ads_dft_eV: float | None = None
    structure_file: str | None = Field(
        default=None, description="relaxed geometry (extxyz, ligand atoms marked), screen-relative"
    )
    cpu_s: float = 0.0
    wall_s: float = 0.0


class LigandScreen(_Record):
    """Every placement of one ligand and what the screen concluded."""

    name: str
    smiles: str
    reference_species: str = Field(description="L in E_ads, in words")
    reference_form: str
    anchor: str
    error: str | None = Field(default=None, description="one line: why it could not be screened")
    n_enumerated: int = 0
    n_by_mode: dict[str, int] = Field(default_factory=dict)
    placements: list[PlacementRecord] = Field(default_factory=list)
    e_reference_eV: dict[str, float] = Field(
        default_factory=dict, description="relaxed isolated ligand per model"
    )
    flags: list[str] = Field(default_factory=list)

    def kept(self) -> list[PlacementRecord]:
        """Placements that are neither excluded nor duplicates, lowest committee E_ads first."""
        rows = [
            p
            for p in self.placements
            if not p.excluded and p.duplicate_of is None and p.e_ads_mean_eV is not None
        ]
        return sorted(rows, key=lambda p: p.e_ads_mean_eV)  # type: ignore[arg-type, return-value]


class ScreenRow(_Record):
    """One line of the ranked table."""

    rank: int | None
    ranked_on_eV: float | None = Field(
        default=None, description="the number the rank sorts on (ScreenTable.ranked_by)"
    )
    ligand: str
    smiles: str
    reference_species: str
    best_binding_mode: str | None
    best_placement: str | None
    e_ads_mlip_mean_eV: float | None
    e_ads_mlip_sigma_eV: float | None
    e_ads_dft_eV: float | None
    dft_minus_mlip_eV: float | None
    n_tried: int
    n_kept: int
    n_escalated: int
    flags: list[str]
    error: str | None = None


class ScreenTable(_Record):
    """The ranked table (also written as CSV)."""

    screen: str
    engine: str
    physical: bool = Field(description="False for the mock engine (numbers are not physics)")
    committee: list[str]
    slab: dict[str, Any]
    e_slab_eV: dict[str, float] = Field(default_factory=dict)
    ranked_by: str = Field(
        default="", description="dft, mlip_mean, or none (no ligand could be ranked)"
    )
    sigma_flag_eV: float = Field(
        default=0.2, description="committee spread above which a row is flagged (eV)"
    )
    notes: list[str] = Field(default_factory=list, description="how to read the ranking")
    rows: list[ScreenRow]


#: CSV columns of the ranked table, in order.
CSV_COLUMNS = (
    "rank",
    "ranked_on_eV",
    "ligand",
    "smiles",
    "reference_species",
    "best_binding_mode",
    "best_placement",
    "e_ads_mlip_mean_eV",
    "e_ads_mlip_sigma_eV",
    "e_ads_dft_eV",
    "dft_minus_mlip_eV",
    "n_tried",
    "n_kept",
    "n_escalated",
    "flags",
    "error",
)
