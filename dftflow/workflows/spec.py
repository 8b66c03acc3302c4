"""Study specification: a YAML file validated by pydantic models (``extra="forbid"``).

A study is the bulk, one slab and a list of ligands, each with a stated adsorption model and the
reference species of its adsorption energy, plus the engine and any override of the paper's
parameters (:mod:`dftflow.inputs.params`). ``load_study(path)`` reads it with ``yaml.safe_load`` and
turns every mistake (malformed YAML, unknown key, wrong type, unknown ligand) into one
:class:`~dftflow.errors.InputError` line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from dftflow.engines.embedded_settings import DEFAULT_SETTINGS as EMBEDDED_DEFAULTS
from dftflow.engines.registry import DEFAULT_ENGINE, engine_entry
from dftflow.errors import EngineError, InputError
from dftflow.inputs import params
from dftflow.schemas import digest_of, reference_matches
from dftflow.screening import committee as mlip_committee
from dftflow.structures.defects import DEFECT_NAMES, check_defect_name, check_defect_request
from dftflow.structures.geometry import DEFAULT_SLAB_VACUUM_A
from dftflow.structures.ligands import (
    form_smiles,
    get_ligand,
    ligand_from_smiles,
    reference_species_name,
)

_SAFE = re.compile(r"[^A-Za-z0-9_-]+")

#: Forms of the isolated ligand understood by ``structures.ligands.ligand_molecule``.
MoleculeForm = Literal["as_is", "protonated", "deprotonated", "radical"]


def safe_name(name: str) -> str:
    """A name usable in paths, job names, Firework names and store keys: ``[A-Za-z0-9_-]``.

    >>> safe_name("2-HA")
    '2-HA'
    >>> safe_name("my ligand/../x")
    'my_ligand_x'
    """
    cleaned = _SAFE.sub("_", str(name).strip()).lstrip(".-_")
    if not cleaned:
        raise InputError(f"name {name!r} has no usable characters (use letters, digits, _ -)")
    return cleaned[:64]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSpec(_Strict):
    """Which engine runs the calculations, and its settings (passed to ``get_engine``)."""

    name: str = DEFAULT_ENGINE
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        try:
            return engine_entry(value).name
        except EngineError as exc:
            raise ValueError(str(exc)) from None


class Parameters(_Strict):
    """Overrides of the paper's parameters; ``None`` keeps the paper's value.

    Every value set here is recorded in each TaskDoc's ``overrides`` and in summary.json.
    """

    encut_eV: float | None = Field(default=None, gt=0)
    ediff_eV: float | None = Field(default=None, gt=0)
    fmax_eV_per_A: float | None = Field(default=None, gt=0)
    sigma_eV: float | None = Field(default=None, gt=0)
    kpoints_slab: tuple[int, int, int] | None = None
    kpoints_bulk: tuple[int, int, int] | None = None
    incar: dict[str, Any] = Field(default_factory=dict, description="extra INCAR overrides")

    def effective(self) -> dict[str, Any]:
        """The parameters used: the paper's values with these overrides applied."""
        return {
            "encut_eV": self.encut_eV or params.ENCUT_EV,
            "ediff_eV": self.ediff_eV or params.EDIFF_EV,
            "fmax_eV_per_A": self.fmax_eV_per_A or params.FMAX_EV_PER_A,
            "sigma_eV": self.sigma_eV or params.SIGMA_EV,
            "kpoints_slab": list(self.kpoints_slab or params.KPOINTS_SLAB),
            "kpoints_bulk": list(self.kpoints_bulk or params.KPOINTS_BULK),
            "incar": dict(self.incar),
        }

    def overrides(self, kind: Literal["bulk", "slab"] = "slab") -> dict[str, Any]:
        """Engine overrides (INCAR tags, ``KPOINTS``) for the values that differ from the paper."""
        out: dict[str, Any] = {}
        if self.encut_eV is not None:
            out["ENCUT"] = self.encut_eV
        if self.ediff_eV is not None:
            out["EDIFF"] = self.ediff_eV
        if self.fmax_eV_per_A is not None:
            out["EDIFFG"] = -self.fmax_eV_per_A
        if self.sigma_eV is not None:
            out["SIGMA"] = self.sigma_eV
        kpts = self.kpoints_bulk if kind == "bulk" else self.kpoints_slab
        if kpts is not None:
            out["KPOINTS"] = list(kpts)
        out.update(self.incar)
        return out


class BulkSpec(_Strict):
    """The cubic CsPbBr3 bulk relaxed first; its lattice constant sets the slab's in-plane cell."""

    a_A: float | None = Field(default=None, gt=3.0, lt=10.0, description="starting a, Angstrom")
    relax: bool = True


class SlabSpec(_Strict):
    """The CsPbBr3 (001) slab shared by every ligand."""

    supercell: tuple[int, int] = (2, 2)
    layers: int = Field(default=5, ge=2, le=15, description="atomic planes")
    termination: Literal["PbBr2", "CsBr"] = "PbBr2"
    vacuum_A: float = Field(
        default=DEFAULT_SLAB_VACUUM_A, gt=0, description="minimum vacuum, Angstrom"
    )
    ligand_clearance_A: float | None = Field(
        default=None,
        gt=0,
        description="vacuum between the tallest ligand's top and the next slab image, Angstrom "
        "(the cell is raised to keep it); None: vacuum_A, as `dftflow build complex` keeps",
    )
    fix: Literal["bottom", "center", "none"] = "bottom"
    n_fixed_layers: int | None = Field(default=None, ge=0)
    defect: str = Field(
        default="none",
        description="vacancy on the top face (dftflow.structures.defects): none, V_Br, V_PbBr2, "
        "V_CsBr",
    )

    @field_validator("supercell")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 1:
            raise ValueError("supercell entries must be >= 1")
        return v

    @field_validator("defect")
    @classmethod
    def _known_defect(cls, v: str) -> str:
        try:
            return check_defect_name(v)
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _defect_fits(self) -> SlabSpec:
        try:
            check_defect_request(self.defect, self.termination, self.layers, self.supercell)
        except InputError as exc:
            # the builder's advice names CLI options; a study names its keys
            raise ValueError(str(exc).replace("--", "slab.")) from None
        return self

    @model_serializer(mode="wrap")
    def _omit_no_defect(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        """A perfect slab dumps as before ``defect`` existed: study digests stay unchanged."""
        data = handler(self)
        if data.get("defect") == "none":
            data.pop("defect")
        return data


class PlacementSpec(_Strict):
    """Which adsorption configurations to enumerate (every one tried is reported)."""

    modes: list[str] | None = Field(
        default=None, description="binding modes in order; None: the structures API's defaults"
    )
    form: MoleculeForm | None = Field(
        default=None,
        description="form of the ligand on the surface; None: the ligand's molecule_form "
        "(the same species, charge and electron count as the reference L)",
    )
    dissociate: bool = Field(default=False, description="move the acidic H to a surface Br")
    azimuths_deg: list[float] | None = None
    max_candidates: int = Field(default=4, ge=1, le=50, description="per binding mode")
    options: dict[str, Any] = Field(
        default_factory=dict, description="extra keywords of enumerate_placements"
    )


class LigandEntry(_Strict):
    """One ligand of the study, its adsorption model and the reference species of its E_ads."""

    name: str = Field(description="library name or alias (dftflow/data/ligands), or a new name")
    smiles: str | None = Field(default=None, description="define a ligand not in the library")
    model: str = Field(description="adsorption model, stated in the report")
    reference_species: str | None = Field(
        default=None,
        description="what L is in E_ads (neutral acid, acetate anion, acetate radical); it must "
        "name what molecule_form computes; None: named from molecule_form",
    )
    molecule_form: MoleculeForm = Field(description="form of the isolated reference molecule")
    placements: PlacementSpec = Field(default_factory=PlacementSpec)
    notes: str = ""

    @property
    def key(self) -> str:
        """Sanitised name for paths and Firework names."""
        return safe_name(self.name)


#: Defects whose vacant Br site lies below the top face (no ``vacancy_site`` placement there).
SUBSURFACE_DEFECTS = ("V_CsBr",)


class TrapSpec(_Strict):
    """Trap states (issue 15): defective surfaces computed beside the pristine one.

    Each ligand of the study is also placed at each defect (modes of
    :data:`dftflow.structures.placement.DEFECT_MODES`: anchor on the vacant Br site, or on an
    under-coordinated Pb), in the same form and against the same reference species as on the
    pristine surface; the lowest of the enumerated placements (relaxed by the engine's
    relaxation, the MLIP on the embedded engine) is kept, every one reported.
    """

    defects: list[str] = Field(min_length=1, description="e.g. [V_Br]; not 'none'")
    modes: list[str] | None = Field(
        default=None,
        min_length=1,
        description="binding modes at the defect; None: every mode that reaches it "
        "(vacancy_site and exposed_pb; exposed_pb only for V_CsBr, whose vacancy is subsurface)",
    )
    max_candidates: int = Field(default=2, ge=1, le=50, description="per mode, per ligand")

    @field_validator("defects")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            try:
                check_defect_name(name)
            except InputError as exc:
                raise ValueError(str(exc)) from None
            if name == "none":
                raise ValueError("the pristine surface is always computed: list only defects")
        if len(set(v)) != len(v):
            raise ValueError(f"defect listed twice: {v}")
        return v

    def modes_for(self, defect: str) -> list[str]:
        """The binding modes enumerated at ``defect`` (see ``modes``)."""
        if self.modes is not None:
            return list(self.modes)
        return ["exposed_pb"] if defect in SUBSURFACE_DEFECTS else ["vacancy_site", "exposed_pb"]

    @field_validator("modes")
    @classmethod
    def _defect_modes(cls, v: list[str] | None) -> list[str] | None:
        from dftflow.structures.placement import DEFECT_MODES

        if v is None:
            return v
        bad = [m for m in v if m not in DEFECT_MODES]
        if bad:
            raise ValueError(
                f"binding mode(s) {', '.join(bad)} do not bind at a defect: use "
                f"{', '.join(DEFECT_MODES)}"
            )
        return v


#: Members of the default screening committee (``dftflow.screening.committee``).
DEFAULT_COMMITTEE = ("chgnet", "sevennet")


class ScreenSettings(_Strict):
    """How a ligand screen (issue 13) searches, relaxes and escalates placements.

    Relaxations are two-level: every placement is relaxed loosely with the committee's first
    member (``fmax_loose_eV_per_A``, at most ``max_steps_loose``; stopped early when the ligand
    desorbs or fragments), the ``n_refine`` lowest distinct ones per ligand then to
    ``fmax_fine_eV_per_A`` by every member; E_ads is the members' mean, sigma their spread.
    The ``top_k`` lowest (committee mean) go to DFT, plus up to ``extra_dft`` more whose sigma
    exceeds ``sigma_escalate_eV``.
    """

    top_k: int = Field(default=2, ge=1, le=10, description="DFT calculations per ligand")
    committee: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMMITTEE),
        min_length=1,
        description="MLIP names (chgnet, sevennet) or 'package.module:factory' returning an ASE "
        "calculator; the first relaxes every placement",
    )
    # one set of relaxation settings for the screen and the study: the embedded engine's optimizer
    # (benchmarks/bench_relax_optimizers.py) and the paper's force limit for the fine level
    optimizer: str = EMBEDDED_DEFAULTS["optimizer"]
    # every placement to the fine force limit with the first member: at 0.05 eV/A the energies
    # are still 0.4-1.9 eV above the minimum by different amounts per placement, so a loose
    # limit does not rank (benchmarks/bench_screen_throughput_RESULTS.md)
    fmax_loose_eV_per_A: float = Field(default=mlip_committee.LOOSE_FMAX_EV_PER_A, gt=0.0)
    max_steps_loose: int = Field(default=mlip_committee.LOOSE_MAX_STEPS, ge=1)
    fmax_fine_eV_per_A: float = Field(default=params.FMAX_EV_PER_A, gt=0.0)
    max_steps_fine: int = Field(default=mlip_committee.FINE_MAX_STEPS, ge=1)
    n_refine: int = Field(default=4, ge=1, description="placements refined per ligand")
    sigma_escalate_eV: float = Field(default=0.2, gt=0.0)
    extra_dft: int = Field(default=1, ge=0, description="DFT slots for high-sigma placements")
    max_conformers: int = Field(default=3, ge=1, le=10)
    max_placements: int = Field(default=48, ge=1, description="per ligand (spread over modes)")
    azimuths_deg: list[float] | None = None
    chunk_size: int = Field(default=8, ge=1, description="placements per MLIP Firework")
    mlip_only: bool = Field(default=False, description="no DFT: stop at the committee ranking")
    references: dict[str, str] = Field(
        default_factory=dict, description="ligand key -> reference (neutral, radical, anion)"
    )
    rejected: list[dict[str, str]] = Field(
        default_factory=list,
        description="ligands that could not be screened: name, smiles, error (shown ranked last)",
    )


class StudySpec(_Strict):
    """A whole study (``workflows/*.yaml``)."""

    study: str = Field(description="study name (sanitised for paths and job names)")
    description: str = ""
    engine: EngineSpec = Field(default_factory=EngineSpec)
    parameters: Parameters = Field(default_factory=Parameters)
    bulk: BulkSpec = Field(default_factory=BulkSpec)
    slab: SlabSpec = Field(default_factory=SlabSpec)
    ligands: list[LigandEntry] = Field(min_length=1)
    traps: TrapSpec | None = Field(
        default=None, description="defective surfaces and ligands at the defect (issue 15)"
    )
    screen: ScreenSettings | None = Field(
        default=None, description="a ligand screen (issue 13) instead of the paper's workflow"
    )

    @model_validator(mode="before")
    @classmethod
    def _slab_defect_is_a_trap_study(cls, data: Any) -> Any:
        """``slab.defect: V_Br`` is ``traps: {defects: [V_Br]}``: the pristine slab is computed too.

        A defective surface is only studied beside the pristine one (its host reference: band
        edges, E_ads on the perfect face); the slab spec stays the pristine host.
        """
        if not isinstance(data, dict) or not isinstance(data.get("slab"), dict):
            return data
        defect = data["slab"].get("defect", "none")
        if defect in (None, "none") or defect not in DEFECT_NAMES:
            return data  # an unknown name: SlabSpec says so, under slab.defect
        traps = data.get("traps")
        if traps is None:
            traps = {"defects": [defect]}
        elif isinstance(traps, dict) and defect not in (traps.get("defects") or []):
            raise ValueError(
                f"slab.defect {defect} is not among traps.defects {traps.get('defects')}: "
                "list the defects under traps.defects only"
            )
        return {**data, "slab": {**data["slab"], "defect": "none"}, "traps": traps}

    @model_serializer(mode="wrap")
    def _omit_no_traps(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        """A study without traps dumps as before ``traps`` existed: study digests unchanged."""
        data = handler(self)
        for key in ("traps", "screen"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _traps_fit(self) -> StudySpec:
        if self.traps is None:
            return self
        for name in self.traps.defects:
            try:
                check_defect_request(
                    name, self.slab.termination, self.slab.layers, self.slab.supercell
                )
            except InputError as exc:
                raise ValueError(str(exc).replace("--", "slab.")) from None
            if name in SUBSURFACE_DEFECTS and "vacancy_site" in self.traps.modes_for(name):
                # its Br was apical under a top-plane Pb: no surface site to put an anchor on
                raise ValueError(
                    "traps.modes: vacancy_site cannot reach the V_CsBr vacancy (it lies in the "
                    "CsBr plane below the top face): use modes [exposed_pb] for V_CsBr"
                )
        keys = {lig.key.lower() for lig in self.ligands}
        clash = sorted(keys & {d.lower() for d in self.traps.defects})
        if clash:
            raise ValueError(f"a ligand is named like a defect: {', '.join(clash)}")
        return self

    @model_validator(mode="after")
    def _screen_has_no_traps(self) -> StudySpec:
        if self.screen is not None and self.traps is not None:
            raise ValueError(
                "a screen has no traps section: screen the pristine surface, or run "
                "the trap study without `screen:`"
            )
        return self

    @field_validator("study")
    @classmethod
    def _study_name(cls, v: str) -> str:
        safe_name(v)
        return v

    @model_validator(mode="after")
    def _unique_ligands(self) -> StudySpec:
        keys = [lig.key.lower() for lig in self.ligands]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"ligand listed twice: {', '.join(dupes)}")
        return self

    @property
    def key(self) -> str:
        """Sanitised study name."""
        return safe_name(self.study)

    def with_engine(self, name: str | None) -> StudySpec:
        """A copy with another engine (``--engine`` on the command line); settings kept if same."""
        if name is None or name == self.engine.name:
            return self
        return self.model_copy(update={"engine": EngineSpec(name=name)})

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the spec (identifies a submission)."""
        return digest_of(self.model_dump(mode="json"))


def _format_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    if err["type"] == "value_error":  # our validators' own sentence, without pydantic's prefix
        msg = msg.removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{loc}: {msg}{more}"


def parse_study(data: Any, source: str = "study") -> StudySpec:
    """Validate a study mapping; one-line :class:`InputError` on any problem, ligands checked."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: a study must be a YAML mapping, got {type(data).__name__}")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: {_format_validation_error(exc)}") from None
    ligands = [check_ligand(lig, source) for lig in spec.ligands]
    return spec.model_copy(update={"ligands": ligands})


def check_ligand(lig: LigandEntry, source: str = "study") -> LigandEntry:
    """The ligand entry checked; ``reference_species`` and ``placements.form`` filled in.

    Unset, the reference species is named from ``molecule_form``
    (:func:`~dftflow.structures.ligands.reference_species_name`) and the adsorbed form is
    ``molecule_form``.

    One-line errors: the ligand is neither in the library nor given by SMILES; the stated
    reference species contradicts what ``molecule_form`` computes ("neutral acid" for the
    acetate radical); the isolated ligand (``molecule_form``) and the adsorbed one
    (``placements.form``) carry different net charges, so that E_ads would compare different
    electron counts. Labels, charges (NELECT) and references come from one place:
    :func:`dftflow.structures.ligands.form_smiles`.
    """
    if lig.placements.form is None:
        placements = lig.placements.model_copy(update={"form": lig.molecule_form})
        lig = lig.model_copy(update={"placements": placements})
    try:
        spec = ligand_from_smiles(lig.smiles, name=lig.name) if lig.smiles else get_ligand(lig.name)
        _, charge, model = form_smiles(spec, lig.molecule_form)
        _, charge_on_slab, _ = form_smiles(spec, lig.placements.form)
        default = reference_species_name(spec, lig.molecule_form)
    except InputError as exc:
        raise InputError(f"{source}: ligand {lig.name!r}: {exc}") from None
    except (KeyError, ValueError) as exc:
        raise InputError(f"{source}: unknown ligand {lig.name!r} ({exc})") from None
    if lig.reference_species is None:
        return lig.model_copy(update={"reference_species": default})
    if not reference_matches(lig.reference_species, model):
        raise InputError(
            f"{source}: ligand {lig.name!r}: reference_species {lig.reference_species!r} "
            f"contradicts molecule_form {lig.molecule_form} ({model}, charge {charge:+d} e); "
            f"state e.g. {default!r} or change molecule_form"
        )
    if charge != charge_on_slab and not lig.placements.dissociate:
        raise InputError(
            f"{source}: ligand {lig.name!r}: the adsorbed form ({lig.placements.form}, charge "
            f"{charge_on_slab:+d} e) and the reference molecule ({lig.molecule_form}, charge "
            f"{charge:+d} e) differ in charge: E_ads would compare different electron counts"
        )
    return lig


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study YAML (safe loader)."""
    return parse_study(read_yaml(path, "study"), source=str(path))


def read_yaml(path: str | Path, kind: str) -> Any:
    """The content of a YAML file (safe loader); one-line InputError when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{kind} file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}: malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return data
