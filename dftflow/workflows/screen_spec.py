"""A ligand screen's input: ``LIGANDS.yaml`` and/or ``--smiles``, turned into a StudySpec.

A screen is a study with a ``screen`` section (:class:`~dftflow.workflows.spec.ScreenSettings`):
it shares the bulk, slab, engine and parameters of studies, and its workflow
(:mod:`.screen_flows`) runs through the same LaunchPad, workers and ``status``. Each ligand is
checked here, one by one: a ligand that cannot be screened (invalid SMILES, no anchor group, an
element a committee member or the POTCAR table cannot handle, too large for the supercell) gets one
line and is listed in the ranked table with that line; the others are screened.

YAML::

    screen: my_screen                # name (default "screen")
    engine: {name: embedded}         # as in a study; --engine overrides
    slab: {supercell: [2, 2], layers: 5, vacuum_A: 15.0}
    settings: {top_k: 2, committee: [chgnet, sevennet]}
    ligands:
      - {name: BPA, smiles: "CCCCP(=O)(O)O"}
      - {name: MSA, smiles: "CS(=O)(=O)O", reference: neutral}
      - OA                           # a library ligand by name (a reference row)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from dftflow.errors import DftflowError, InputError
from dftflow.workflows.spec import (
    BulkSpec,
    EngineSpec,
    LigandEntry,
    Parameters,
    ScreenSettings,
    SlabSpec,
    StudySpec,
    _format_validation_error,
    _Strict,
    check_ligand,
    read_yaml,
    safe_name,
)

Reference = Literal["neutral", "radical", "anion"]
#: Model text of every screened ligand (the placements are enumerated, never hand-picked).
SCREEN_MODEL = "screen: every enumerated placement, ranked by committee then DFT"


class ScreenLigand(_Strict):
    """One candidate: a library name, or a new name with its SMILES."""

    name: str
    smiles: str | None = None
    reference: Reference | None = Field(
        default=None,
        description="L of E_ads: neutral molecule/acid, radical or anion; default from the "
        "anchor (an acid/amine/thiol as given: neutral; a given anion: radical)",
    )
    notes: str = ""


class ScreenFile(_Strict):
    """The screen YAML."""

    screen: str = "screen"
    description: str = ""
    engine: EngineSpec = Field(default_factory=EngineSpec)
    parameters: Parameters = Field(default_factory=Parameters)
    bulk: BulkSpec = Field(default_factory=BulkSpec)
    slab: SlabSpec = Field(default_factory=SlabSpec)
    settings: dict[str, Any] = Field(default_factory=dict)
    ligands: list[ScreenLigand | str] = Field(default_factory=list)

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in ("references", "rejected"):
            if key in v:
                raise ValueError(f"{key} is set by dftflow, not in the YAML")
        ScreenSettings.model_validate(v)  # its own messages, located under settings
        return v


def read_screen_file(path: str | Path) -> ScreenFile:
    """Read and validate a screen YAML (one-line InputError on any problem)."""
    path = Path(path)
    data = read_yaml(path, "screen")
    if not isinstance(data, dict):
        raise InputError(f"{path}: a screen must be a YAML mapping, got {type(data).__name__}")
    try:
        return ScreenFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: {_format_validation_error(exc)}") from None


def build_screen(
    file: ScreenFile | None,
    smiles: Sequence[tuple[str, str]] = (),
    *,
    engine: str | None = None,
    settings: dict[str, Any] | None = None,
    source: str = "screen",
) -> tuple[StudySpec, list[str]]:
    """The screen's StudySpec and one line per ligand that cannot be screened.

    Parameters
    ----------
    file
        The YAML's content (or None: only ``smiles``).
    smiles
        ``(name, SMILES)`` pairs from the command line, after the YAML's ligands.
    engine
        ``--engine`` override.
    settings
        Command-line settings (``top_k``, ``mlip_only``) over the YAML's.

    Raises
    ------
    InputError
        No ligand given, a ligand named twice, or none of them can be screened (every reason).
    """
    file = file or ScreenFile()
    rows: list[ScreenLigand] = [
        ScreenLigand(name=x) if isinstance(x, str) else x for x in file.ligands
    ]
    rows += [ScreenLigand(name=name, smiles=s) for name, s in smiles]
    if not rows:
        raise InputError(f"{source}: no ligand to screen (list ligands or give --smiles)")
    keys = [safe_name(r.name).lower() for r in rows]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise InputError(f"{source}: ligand named twice: {', '.join(twice)}")
    merged = {**file.settings, **(settings or {})}
    try:
        screen = ScreenSettings.model_validate(merged)
    except ValidationError as exc:
        raise InputError(f"{source}: settings.{_format_validation_error(exc)}") from None
    base = StudySpec(
        study=file.screen,
        description=file.description,
        engine=file.engine,
        parameters=file.parameters,
        bulk=file.bulk,
        slab=file.slab,
        ligands=[_entry(rows[0], "neutral")],  # replaced below; StudySpec needs one
    ).with_engine(engine)
    accepted: list[LigandEntry] = []
    references: dict[str, str] = {}
    rejected: list[dict[str, str]] = []
    lines: list[str] = []
    for row in rows:
        try:
            entry, ref = check_screen_ligand(row, base, screen, source)
        except DftflowError as exc:
            msg = str(exc)
            lines.append(msg)
            rejected.append({"name": row.name, "smiles": row.smiles or "", "error": msg})
            continue
        accepted.append(entry)
        references[entry.key] = ref
    if not accepted:
        raise InputError("; ".join(lines) + " (no ligand could be screened)")
    screen = screen.model_copy(update={"references": references, "rejected": rejected})
    spec = base.model_copy(update={"ligands": accepted, "screen": screen})
    return StudySpec.model_validate(spec.model_dump(mode="json")), lines


def _entry(row: ScreenLigand, reference: str, form: str = "as_is") -> LigandEntry:
    return LigandEntry(
        name=row.name,
        smiles=row.smiles,
        model=SCREEN_MODEL,
        molecule_form=form,  # type: ignore[arg-type]
        notes=row.notes or f"reference: {reference}",
    )


def check_screen_ligand(
    row: ScreenLigand, base: StudySpec, screen: ScreenSettings, source: str
) -> tuple[LigandEntry, str]:
    """The ligand's study entry and reference, or a one-line DftflowError saying why not.

    Checks: the SMILES (or library name) and its anchor group; the reference form; every element
    against each committee member and, for a VASP engine, the POTCAR table; the isolated ligand
    in the slab's cell and at least one placement on the slab (the supercell's size).
    """
    from dftflow.inputs import params
    from dftflow.screening import committee
    from dftflow.screening.enumeration import default_reference, enumerate_screen, reference_form
    from dftflow.structures.ligands import get_ligand, ligand_from_smiles, ligand_molecule
    from dftflow.structures.placement import molecule_in_cell
    from dftflow.workflows.firetasks import build_slab
    from dftflow.workflows.flows import required_vacuum_A

    where = f"ligand {row.name!r}"
    try:
        spec = ligand_from_smiles(row.smiles, name=row.name) if row.smiles else get_ligand(row.name)
        reference = row.reference or default_reference(spec)
        form = reference_form(spec, reference)
        entry = check_ligand(_entry(row, reference, form), source)
        molecule = ligand_molecule(spec, form)
        for model in screen.committee:
            committee.check_elements(molecule, model)
        if base.engine.name == "vasp":
            missing = sorted(
                {s for s in molecule.get_chemical_symbols()} - set(params.POTCAR_SYMBOLS)
            )
            if missing:
                raise InputError(
                    f"no POTCAR symbol configured for {', '.join(missing)} (dftflow.inputs.params"
                    ".POTCAR_SYMBOLS)"
                )
        one = base.model_copy(update={"ligands": [entry]})
        slab_dict = {**base.slab.model_dump(mode="json"), "vacuum_total_A": required_vacuum_A(one)}
        slab = build_slab(slab_dict, base.bulk.a_A)
        molecule_in_cell(molecule, slab.cell)
        enumerate_screen(
            slab,
            spec,
            reference,
            azimuths_deg=screen.azimuths_deg,
            max_conformers=1,
            max_candidates=1,
        )
    except DftflowError as exc:
        raise InputError(f"{where}: {str(exc).removeprefix(f'{source}: ')}") from None
    except (KeyError, ValueError) as exc:
        raise InputError(f"{where}: unknown ligand ({exc})") from None
    return entry, reference
