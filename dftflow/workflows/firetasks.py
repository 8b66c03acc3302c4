"""FireWorks Firetasks of a ligand study: one small task per stage.

Data moves only through the Firework spec and :class:`~fireworks.FWAction`: each task reads the
records of earlier stages from ``fw_spec["results"]`` (role -> record: TaskDoc path, energy,
convergence, FFT grid ...) and hands its own record, plus everything it received, to its children
with ``mod_spec`` ``_set`` operations. Roles are Firework names without the study prefix, e.g.
``"bulk/relax"``, ``"slab/static"``, ``"AcO/complex_relax/bidentate-0"``.

Every engine run writes its TaskDoc in ``STUDY_DIR/taskdocs/``. A task whose TaskDoc already exists
with the same input digest (structure + stage + overrides + engine) reuses it instead of recomputing
(resume after an interrupted worker).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fireworks import FiretaskBase, FWAction, explicit_serialize
from fireworks.features.dupefinder import DupeFinderBase

from dftflow.analysis.adsorption import adsorption_energy
from dftflow.analysis.chgdiff import charge_density_difference
from dftflow.analysis.midgap import midgap_against
from dftflow.analysis.report import write_report
from dftflow.engines.registry import engine_entry
from dftflow.engines.vasp import (
    FWORKER_ENV_KEY,
    FWORKER_OPTION_KEY,
    VaspCommand,
    resolve_vasp_cmd,
)
from dftflow.errors import DftflowError, InputError
from dftflow.fileio import atomic_write_text
from dftflow.inputs.vasp import shared_fft_grid as vasp_shared_fft_grid
from dftflow.schemas import (
    CHARGED_CELL_NOTE,
    NOT_PHYSICAL_NOTE,
    LigandResult,
    PlacementResult,
    Stage,
    StudySummary,
    TaskDoc,
)
from dftflow.structures.bulk import cspbbr3_cubic, lattice_constant_from_taskdoc
from dftflow.structures.defects import defect_slab
from dftflow.structures.ligand_atoms import (
    DEFECT_RECORD_KEY,
    UNDERCOORDINATED_ARRAY,
    ligand_indices_of,
)
from dftflow.structures.ligands import get_ligand, ligand_from_smiles, ligand_molecule
from dftflow.structures.placement import (
    Placement,
    enumerate_placements,
    molecule_in_cell,
    place_ligand,
    split_complex,
)
from dftflow.structures.slab import cspbbr3_001_slab
from dftflow.workflows.spec import LigandEntry, SlabSpec, digest_of, safe_name
from dftflow.workflows.store import interruptible

SPEC_CONFIG = "dftflow"  # spec key: shared study configuration
SPEC_RESULTS = "results"  # spec key: role -> record from earlier stages
SPEC_DIGEST = "dftflow_digest"  # spec key: digest used for duplicate detection


# ---------------------------------------------------------------------------------------------
# Duplicate detection
# ---------------------------------------------------------------------------------------------
@explicit_serialize
class DigestDupeFinder(DupeFinderBase):
    """Two Fireworks are duplicates when their ``dftflow_digest`` (structure + inputs) is equal."""

    def verify(self, spec1: dict[str, Any], spec2: dict[str, Any]) -> bool:
        """Whether the two specs describe the same calculation."""
        return bool(spec1.get(SPEC_DIGEST)) and spec1.get(SPEC_DIGEST) == spec2.get(SPEC_DIGEST)

    def query(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Mongo query: Fireworks with the same digest that finished or are running (not failed)."""
        return {
            f"spec.{SPEC_DIGEST}": spec.get(SPEC_DIGEST),
            "launches": {"$ne": []},
            "state": {"$in": ["COMPLETED", "RUNNING", "RESERVED"]},
        }


# ---------------------------------------------------------------------------------------------
# Helpers shared by the tasks
# ---------------------------------------------------------------------------------------------
def role_key(role: str) -> str:
    """A role usable as a store key (no '.' or '$')."""
    return role.replace(".", "_").replace("$", "_")


def _config(fw_spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return fw_spec[SPEC_CONFIG]
    except KeyError:
        raise InputError("Firework spec lacks the dftflow study configuration") from None


def _result(fw_spec: dict[str, Any], role: str) -> dict[str, Any]:
    try:
        return fw_spec[SPEC_RESULTS][role_key(role)]
    except KeyError:
        raise InputError(f"result of stage {role!r} is missing from the Firework spec") from None


def _taskdoc(fw_spec: dict[str, Any], role: str) -> TaskDoc:
    return TaskDoc.from_json_file(_result(fw_spec, role)["taskdoc"])


def _atoms_of(doc: TaskDoc):  # -> ase.Atoms
    """Final atoms of a run, with its ligand indices marked and its net charge in ``info``."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from dftflow.structures.ligand_atoms import LIGAND_ARRAY, mark_ligand

    structure = doc.final_structure()
    for prop in ("selective_dynamics", LIGAND_ARRAY):  # re-applied explicitly from the TaskDoc
        if prop in structure.site_properties:
            structure.remove_site_property(prop)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    if doc.charge_e:  # the net charge the run computed goes on to the next stage (NELECT)
        atoms.info["charge"] = float(doc.charge_e)
    atoms = atoms if doc.ligand_indices is None else mark_ligand(atoms, doc.ligand_indices)
    return with_defect_metadata(atoms, doc.metadata)


def defect_metadata(atoms: Any) -> dict[str, Any]:
    """The defect record of ``atoms`` for a TaskDoc's metadata (empty for a perfect slab).

    ``defect`` (name), ``defect_record`` (:class:`~dftflow.structures.defects.DefectSummary`)
    and ``undercoordinated`` (per-atom count of Br lost, by index: the atoms keep their order
    through every engine, so later stages find the defect's Pb by index).
    """
    lost = getattr(atoms, "arrays", {}).get(UNDERCOORDINATED_ARRAY)
    if lost is None:
        return {}
    return {
        "defect": atoms.info.get("defect"),
        DEFECT_RECORD_KEY: atoms.info.get(DEFECT_RECORD_KEY),
        "undercoordinated": [int(x) for x in lost],
    }


def with_defect_metadata(atoms: Any, metadata: dict[str, Any]) -> Any:
    """``atoms`` with the defect record of TaskDoc ``metadata`` (:func:`defect_metadata`)."""
    import numpy as np

    lost = metadata.get("undercoordinated")
    if lost is None or len(lost) != len(atoms):
        return atoms
    atoms.arrays[UNDERCOORDINATED_ARRAY] = np.asarray(lost, dtype=int)
    if metadata.get("defect"):
        atoms.info["defect"] = metadata["defect"]
    if metadata.get(DEFECT_RECORD_KEY):
        atoms.info[DEFECT_RECORD_KEY] = metadata[DEFECT_RECORD_KEY]
    return atoms


def _engine_for(fw_spec: dict[str, Any]):
    """The study's engine; a VASP launch command resolved on this worker (:func:`vasp_command`)."""
    engine = dict(_config(fw_spec)["engine"])
    settings = dict(engine.get("settings") or {})
    entry = engine_entry(engine["name"])
    if entry.launches_vasp:
        settings["vasp_cmd"] = vasp_command(fw_spec).command
    return entry.create(**settings)


def vasp_command(fw_spec: dict[str, Any]) -> VaspCommand:
    """The VASP command a Firework runs on this worker (``engines.vasp.resolve_vasp_cmd``).

    ``--vasp-cmd`` of the worker's ``dftflow run``/``launch`` (FWorker env
    ``dftflow_vasp_cmd``) > ``DFTFLOW_VASP_CMD`` in the worker's environment (a queue script's
    ``pre_rocket``) > the FWorker's ``env.vasp_cmd`` > the study's ``engine.settings.vasp_cmd``
    > ``vasp_std``.
    """
    env = fw_spec.get("_fw_env") or {}
    settings = _config(fw_spec)["engine"].get("settings") or {}
    return resolve_vasp_cmd(
        env.get(FWORKER_OPTION_KEY),
        fworker=env.get(FWORKER_ENV_KEY),
        study=settings.get("vasp_cmd"),
    )


def _overrides(fw_spec: dict[str, Any], kind: str = "slab") -> dict[str, Any]:
    return dict(_config(fw_spec)["overrides"][kind])


def _structure_digest(atoms: Any) -> str:
    from ase import Atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    s = AseAtomsAdaptor.get_structure(atoms) if isinstance(atoms, Atoms) else atoms
    data = {
        "lattice": [[round(x, 6) for x in row] for row in s.lattice.matrix.tolist()],
        "species": [str(sp) for sp in s.species],
        "frac": [[round(x, 6) % 1.0 for x in row] for row in s.frac_coords.tolist()],
    }
    return digest_of(data)


def run_stage(
    fw_spec: dict[str, Any],
    role: str,
    atoms: Any,
    stage: Stage,
    overrides: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> tuple[TaskDoc, dict[str, Any]]:
    """Run one engine stage (or reuse its finished TaskDoc) and build the role's record.

    The TaskDoc's ``ligand_indices`` are those of the input ``atoms``
    (:func:`~dftflow.structures.ligand_atoms.ligand_indices_of`): every engine keeps the atom
    order, so the builder's ligand atoms stay the same indices through relaxations.

    Returns
    -------
    (TaskDoc, record)
        ``record`` holds the TaskDoc path, e_0 (eV), convergence flags and ``extra``.
    """
    cfg = _config(fw_spec)
    study_dir = Path(cfg["study_dir"])
    directory = Path(fw_spec.get("_launch_dir") or os.getcwd())
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{cfg['study']}/{role}"
    digest = digest_of(
        {
            "structure": _structure_digest(atoms),
            "stage": stage.value,
            "overrides": overrides,
            "engine": cfg["engine"],
        }
    )
    taskdoc_dir = study_dir / "taskdocs"
    taskdoc_dir.mkdir(parents=True, exist_ok=True)
    path = taskdoc_dir / (name.replace("/", "__") + ".json")
    ligand_indices = ligand_indices_of(atoms)
    doc = _reusable(path, digest)
    if doc is None:
        with interruptible():
            engine = _engine_for(fw_spec)
            doc = engine.run(atoms, stage, directory, overrides=overrides or None, label=name)
        meta = {**doc.metadata, "dftflow_digest": digest, "firework": name}
        meta.update(defect_metadata(atoms))
        doc = doc.model_copy(update={"metadata": meta})
        doc = doc.with_ligand_indices(ligand_indices)
        doc.to_json_file(path)
    elif doc.ligand_indices is None and ligand_indices is not None:
        # a TaskDoc written before ligand indices were recorded: same calculation, add the labels
        doc = doc.with_ligand_indices(ligand_indices)
        doc.to_json_file(path)
    record = {
        "taskdoc": str(path),
        "directory": doc.directory,
        "energy_eV": doc.energy_eV,
        "converged": bool(doc.converged_electronic and doc.converged_ionic),
        "formula": doc.formula,
        "engine": doc.engine,
        **(extra or {}),
    }
    return doc, record


def _reusable(path: Path, digest: str) -> TaskDoc | None:
    """A finished TaskDoc for the same inputs, if one exists (resume without recomputation)."""
    if not path.is_file():
        return None
    try:
        doc = TaskDoc.from_json_file(path)
    except (ValueError, OSError):
        return None
    return doc if doc.metadata.get("dftflow_digest") == digest else None


def pass_on(fw_spec: dict[str, Any], role: str, record: dict[str, Any]) -> FWAction:
    """FWAction that gives children this role's record and every record this task received."""
    records = dict(fw_spec.get(SPEC_RESULTS) or {})
    records[role_key(role)] = record
    mods = [{"_set": {f"{SPEC_RESULTS}->{key}": value}} for key, value in records.items()]
    return FWAction(stored_data={"role": role, "record": record}, mod_spec=mods)


def _fft_overrides(fw_spec: dict[str, Any]) -> dict[str, Any]:
    grid = _result(fw_spec, "slab/relax")["fft_grid"]
    return {"NGXF": int(grid[0]), "NGYF": int(grid[1]), "NGZF": int(grid[2])}


def shared_fft_grid(structure: Any, encut_eV: float) -> list[int]:
    """The FFT grid (NGXF, NGYF, NGZF) shared by every static of the study (one cell, one grid)."""
    return [int(n) for n in vasp_shared_fft_grid([structure], encut_eV)]


def build_slab(slab: dict[str, Any], a_A: float | None):  # -> Atoms
    """The study's slab from its spec (dict of :class:`SlabSpec`) and a lattice constant (A).

    ``slab["vacuum_total_A"]``, when present, is the vacuum that fits every ligand (set at
    submission) and replaces the spec's minimum ``vacuum_A``. A ``defect`` other than ``none``
    is made on the top face (:func:`dftflow.structures.defects.defect_slab`; the inputs count the
    electrons and turn on spin polarisation for an odd count).
    """
    vacuum_total = slab.get("vacuum_total_A")
    s = SlabSpec.model_validate({k: v for k, v in slab.items() if k != "vacuum_total_A"})
    kwargs: dict[str, Any] = {
        "layers": s.layers,
        "supercell": tuple(s.supercell),
        "vacuum": vacuum_total if vacuum_total is not None else s.vacuum_A,
        "termination": s.termination,
        "a": a_A,
        "fix": s.fix,
    }
    if s.n_fixed_layers is not None:
        kwargs["n_fixed_layers"] = s.n_fixed_layers
    slab = cspbbr3_001_slab(**kwargs)
    if s.defect != "none":
        slab, _ = defect_slab(slab, s.defect)
    return slab


def _with_constraints(relaxed: Any, template: Any) -> Any:
    """Copy the fixed-atom constraints of ``template`` (same atoms, same order) to ``relaxed``."""
    if len(relaxed) == len(template) and template.constraints:
        relaxed.set_constraint([c.copy() for c in template.constraints])
    return relaxed


def ligand_spec(entry: dict[str, Any]):  # -> structures.ligands.LigandSpec
    """The LigandSpec of a study's ligand entry (library or SMILES)."""
    lig = LigandEntry.model_validate(entry)
    if lig.smiles:
        return ligand_from_smiles(lig.smiles, name=lig.name)
    return get_ligand(lig.name)


def enumerate_candidates(slab_atoms: Any, entry: dict[str, Any]) -> list[Any]:
    """The placements of a ligand to try, in the deterministic order of the structures API.

    At most ``placements.max_candidates`` per binding mode (the first ones of the enumeration).
    """
    lig = LigandEntry.model_validate(entry)
    kwargs = dict(lig.placements.options)
    if lig.placements.azimuths_deg is not None:
        kwargs["azimuths_deg"] = list(lig.placements.azimuths_deg)
    cands = enumerate_placements(
        slab_atoms,
        ligand_spec(entry),
        modes=lig.placements.modes,
        form=lig.placements.form or lig.molecule_form,
        dissociate=lig.placements.dissociate,
        **kwargs,
    )
    per_mode: dict[str, int] = {}
    kept = []
    for cand in cands:  # the first max_candidates of each binding mode, enumeration order kept
        per_mode[cand.mode] = per_mode.get(cand.mode, 0) + 1
        if per_mode[cand.mode] <= lig.placements.max_candidates:
            kept.append(cand)
    return kept


def enumerate_defect_candidates(
    defect_slab_atoms: Any, entry: dict[str, Any], traps: dict[str, Any]
) -> list[Any]:
    """The placements of a ligand at the defect of ``defect_slab_atoms`` (a trap study).

    The ligand's own form and azimuths (``placements``), the trap spec's ``modes`` (anchor on the
    vacant Br site, on an under-coordinated Pb) and ``max_candidates`` per mode, in the
    deterministic order of the structures API. No dissociation: the ligand binds as it does on
    the pristine surface, against the same reference species.
    """
    lig = LigandEntry.model_validate(entry)
    kwargs: dict[str, Any] = {}
    if lig.placements.azimuths_deg is not None:
        kwargs["azimuths_deg"] = list(lig.placements.azimuths_deg)
    try:
        cands = enumerate_placements(
            defect_slab_atoms,
            ligand_spec(entry),
            modes=list(traps["modes"]),
            form=lig.placements.form or lig.molecule_form,
            dissociate=False,
            **kwargs,
        )
    except InputError as exc:
        raise InputError(
            f"ligand {lig.name!r} at {defect_slab_atoms.info.get('defect')}: {exc}"
        ) from None
    per_mode: dict[str, int] = {}
    kept = []
    for cand in cands:
        per_mode[cand.mode] = per_mode.get(cand.mode, 0) + 1
        if per_mode[cand.mode] <= int(traps["max_candidates"]):
            kept.append(cand)
    return kept


def placement_label(p: Any) -> str:
    """A stable, sanitised label of a placement (e.g. ``monodentate-Pb12-az0``)."""
    return safe_name(str(p.label))


# ---------------------------------------------------------------------------------------------
# Firetasks
# ---------------------------------------------------------------------------------------------
@explicit_serialize
class BulkRelaxTask(FiretaskBase):
    """Relax cubic CsPbBr3; record its lattice constant (Angstrom) for the slab."""

    required_params = ["role"]
    optional_params = ["a_A"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Build, relax, record ``a_A``."""
        atoms = cspbbr3_cubic(a=self.get("a_A"))
        doc, rec = run_stage(
            fw_spec, self["role"], atoms, Stage.bulk_relax, _overrides(fw_spec, "bulk")
        )
        rec["a_A"] = float(lattice_constant_from_taskdoc(doc))
        return pass_on(fw_spec, self["role"], rec)


@explicit_serialize
class SlabRelaxTask(FiretaskBase):
    """Relax the slab built on the relaxed bulk lattice; record the study's shared FFT grid."""

    required_params = ["role", "slab"]
    optional_params = ["bulk_role"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Build the slab (in-plane lattice from the relaxed bulk), relax it."""
        from dftflow.structures.ligand_atoms import mark_ligand

        a_A = _result(fw_spec, self.get("bulk_role", "bulk/relax"))["a_A"]
        atoms = mark_ligand(build_slab(self["slab"], a_A), [])  # the clean slab: no ligand atom
        doc, rec = run_stage(fw_spec, self["role"], atoms, Stage.slab_relax, _overrides(fw_spec))
        encut = _config(fw_spec)["parameters"]["encut_eV"]
        rec["fft_grid"] = shared_fft_grid(doc.final_structure(), encut)
        rec["a_A"] = a_A
        return pass_on(fw_spec, self["role"], rec)


@explicit_serialize
class StaticTask(FiretaskBase):
    """Single point (DOS, CHGCAR) of the final structure of an earlier stage, on the shared grid."""

    required_params = ["role", "source_role"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Run the static of ``source_role``'s final structure."""
        atoms = _atoms_of(_taskdoc(fw_spec, self["source_role"]))
        overrides = {**_overrides(fw_spec), **_fft_overrides(fw_spec)}
        _, rec = run_stage(fw_spec, self["role"], atoms, Stage.static, overrides)
        return pass_on(fw_spec, self["role"], rec)


@explicit_serialize
class MoleculeRelaxTask(FiretaskBase):
    """Relax the isolated reference molecule in the slab's cell (same cell for every system)."""

    required_params = ["role", "ligand"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Build the molecule in its reference form, put it in the slab cell, relax."""
        entry = LigandEntry.model_validate(self["ligand"])
        slab = _atoms_of(_taskdoc(fw_spec, "slab/relax"))
        molecule = ligand_molecule(ligand_spec(self["ligand"]), form=entry.molecule_form)
        atoms = molecule_in_cell(molecule, slab.cell)
        _, rec = run_stage(fw_spec, self["role"], atoms, Stage.molecule_relax, _overrides(fw_spec))
        rec["form"] = entry.molecule_form
        return pass_on(fw_spec, self["role"], rec)


@explicit_serialize
class ComplexRelaxTask(FiretaskBase):
    """Place the ligand on the relaxed slab (one enumerated placement) and relax the complex."""

    required_params = ["role", "ligand", "placement", "slab"]
    optional_params = ["slab_role"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Put the ligand at this placement's site on the relaxed slab (same atom order), relax.

        ``slab_role``: the slab relaxation it goes on (default ``slab/relax``; a defective
        surface's ``<defect>/slab/relax`` in a trap study).
        """
        slab_rec = _result(fw_spec, self.get("slab_role", "slab/relax"))
        slab = _with_constraints(
            _atoms_of(TaskDoc.from_json_file(slab_rec["taskdoc"])),
            build_slab(self["slab"], slab_rec["a_A"]),
        )
        chosen = Placement.model_validate(self["placement"])
        atoms = place_ligand(slab, ligand_spec(self["ligand"]), chosen)
        _, rec = run_stage(fw_spec, self["role"], atoms, Stage.complex_relax, _overrides(fw_spec))
        rec["label"] = placement_label(chosen)
        rec["model"] = str(chosen.model)
        return pass_on(fw_spec, self["role"], rec)


def select_lowest(records: dict[str, dict[str, Any] | None]) -> str:
    """Label of the lowest-energy finished placement (converged ones first).

    Parameters
    ----------
    records
        placement label -> record of its complex relaxation, ``None`` if it failed.
    """
    done = {k: r for k, r in records.items() if r is not None}
    if not done:
        raise InputError("no complex relaxation finished: nothing to select")
    converged = {k: r for k, r in done.items() if r.get("converged")}
    pool = converged or done
    return min(pool, key=lambda k: (pool[k]["energy_eV"], k))


@explicit_serialize
class ComplexStaticTask(FiretaskBase):
    """Select the lowest-energy relaxed placement (all reported) and run its static."""

    required_params = ["role", "ligand_key", "labels"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Select over every enumerated placement, static of the lowest one."""
        results = fw_spec.get(SPEC_RESULTS) or {}
        records = {
            label: results.get(role_key(f"{self['ligand_key']}/complex_relax/{label}"))
            for label in self["labels"]
        }
        best = select_lowest(records)
        source = f"{self['ligand_key']}/complex_relax/{best}"
        atoms = _atoms_of(_taskdoc(fw_spec, source))
        overrides = {**_overrides(fw_spec), **_fft_overrides(fw_spec)}
        _, rec = run_stage(fw_spec, self["role"], atoms, Stage.static, overrides)
        rec["selected"] = best
        rec["source_role"] = source
        rec["placements"] = [
            {
                "label": label,
                "model": (r or {}).get("model", ""),
                "energy_eV": (r or {}).get("energy_eV"),
                "converged": (r or {}).get("converged"),
                "taskdoc": (r or {}).get("taskdoc"),
            }
            for label, r in records.items()
        ]
        return pass_on(fw_spec, self["role"], rec)


@explicit_serialize
class FragmentStaticTask(FiretaskBase):
    """Static of one fragment (slab or ligand) of the relaxed complex; same cell and grid (Δρ).

    The fragments are cut by the complex's ligand indices (the atoms the builder added), never by
    element: an N, S or P anchor goes with the ligand.
    """

    required_params = ["role", "complex_role", "part"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Split the selected relaxed complex, run the static of ``part``."""
        source = _result(fw_spec, self["complex_role"])["source_role"]
        complex_doc = _taskdoc(fw_spec, source)
        slab_part, ligand_part = split_complex(_atoms_of(complex_doc), complex_doc.ligand_indices)
        atoms = slab_part if self["part"] == "slab" else ligand_part
        overrides = {**_overrides(fw_spec), **_fft_overrides(fw_spec)}
        _, rec = run_stage(fw_spec, self["role"], atoms, Stage.static, overrides)
        return pass_on(fw_spec, self["role"], rec)


@explicit_serialize
class AnalysisTask(FiretaskBase):
    """E_ads (from statics), mid-gap states and Δρ of one ligand -> ``analysis/<ligand>/``."""

    required_params = ["role", "ligand"]
    optional_params = ["paper_e_ads_eV"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Analyse one ligand; analysis errors are recorded as notes, not hidden."""
        entry = LigandEntry.model_validate(self["ligand"])
        key = entry.key
        cfg = _config(fw_spec)
        out_dir = Path(cfg["study_dir"]) / "analysis" / key
        out_dir.mkdir(parents=True, exist_ok=True)
        result = analyse_ligand(fw_spec, entry, out_dir, self.get("paper_e_ads_eV"))
        path = atomic_write_text(out_dir / "ligand_result.json", result.model_dump_json(indent=2))
        rec = {"ligand_result": str(path), "e_ads_eV": result.e_ads_eV}
        return pass_on(fw_spec, self["role"], rec)


def analyse_ligand(
    fw_spec: dict[str, Any], entry: LigandEntry, out_dir: Path, paper: float | None
) -> LigandResult:
    """Build the :class:`LigandResult` of one ligand from the records in ``fw_spec``."""
    key = entry.key
    cx_rec = _result(fw_spec, f"{key}/complex_static")
    roles = {
        "molecule_relax": f"{key}/molecule_relax",
        "molecule_static": f"{key}/molecule_static",
        "complex_relax": cx_rec["source_role"],
        "complex_static": f"{key}/complex_static",
        "slab_fragment_static": f"{key}/slab_fragment_static",
        "ligand_fragment_static": f"{key}/ligand_fragment_static",
    }
    docs = {r: _taskdoc(fw_spec, role) for r, role in roles.items()}
    slab_static = _taskdoc(fw_spec, "slab/static")
    notes: list[str] = []
    e_ads = None
    try:
        ads = adsorption_energy(
            docs["complex_static"],
            slab_static,
            docs["molecule_static"],
            reference_species=entry.reference_species,
        )
        e_ads = float(ads.e_ads_eV)
    except DftflowError as exc:
        notes.append(f"E_ads not computed: {exc}")
    midgap, note = midgap_report(
        docs["complex_static"].directory,
        slab_static.directory,
        ligand_indices=docs["complex_static"].ligand_indices,
    )
    if note:
        notes.append(note)
    transfer = None
    try:
        chg = charge_density_difference(
            docs["complex_static"].volumetric_files["CHGCAR"],
            docs["slab_fragment_static"].volumetric_files["CHGCAR"],
            docs["ligand_fragment_static"].volumetric_files["CHGCAR"],
            output=out_dir / "CHGDIFF.vasp",
            ligand_indices=docs["complex_static"].ligand_indices,
        )
        transfer = float(chg.charge_transfer_e)
    except (DftflowError, KeyError) as exc:
        notes.append(f"charge-density difference failed: {exc}")
    physical = all(d.physical and engine_entry(d.engine).physical for d in docs.values())
    charges = {r: d.charge_state for r, d in docs.items()}
    if any(d.charge_e for d in docs.values()):
        notes.append(f"charged cells: {CHARGED_CELL_NOTE}")
    placements = [PlacementResult(**p) for p in cx_rec["placements"]]
    failed = [p.label for p in placements if p.energy_eV is None]
    if failed:
        notes.append(f"placements that did not finish: {', '.join(failed)}")
    if entry.notes:
        notes.append(entry.notes)
    return LigandResult(
        ligand=entry.name,
        model=f"{entry.model} ({cx_rec['selected']})",
        reference_species=entry.reference_species,
        e_ads_eV=e_ads,
        converged={r: bool(d.converged_electronic and d.converged_ionic) for r, d in docs.items()},
        engine=docs["complex_static"].engine,
        placements=placements,
        midgap=midgap,
        charge_transfer_e=transfer,
        taskdocs={r: _result(fw_spec, role)["taskdoc"] for r, role in roles.items()},
        paper_e_ads_eV=paper,
        physical=physical,
        charge_states=charges,
        notes=notes,
    )


def midgap_report(
    directory: str, reference: str | None, ligand_indices: list[int] | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Mid-gap states of a static run against the clean slab, and a note on how it was done.

    Deep-level alignment first; Fermi-level alignment when that is impossible, stated in the note
    (``dftflow.analysis.midgap.midgap_against``). ``ligand_indices`` (the run's TaskDoc) say which
    atoms count as ligand in each state's character.
    """
    report, note = midgap_against(directory, reference, ligand_indices=ligand_indices)
    if report is None:
        return None, f"mid-gap analysis failed: {note}"
    return report.model_dump(mode="json"), (f"mid-gap: {note}" if note else "")


@explicit_serialize
class TrapAnalysisTask(FiretaskBase):
    """Gap states of every system of a trap study, passivation verdicts, E_ads at the defect.

    Writes ``analysis/traps/traps.json`` (:class:`dftflow.analysis.traps.TrapStudy`). Systems
    whose stages failed are reported as not analysed, never left out silently.
    """

    required_params = ["role", "defects", "ligands"]
    optional_params = ["modes"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Analyse the pristine slab, each defective slab and each ligand on both."""
        cfg = _config(fw_spec)
        out_dir = Path(cfg["study_dir"]) / "analysis" / "traps"
        out_dir.mkdir(parents=True, exist_ok=True)
        study = analyse_traps(
            fw_spec, list(self["defects"]), list(self["ligands"]), self.get("modes")
        )
        path = atomic_write_text(out_dir / "traps.json", study.model_dump_json(indent=2))
        return pass_on(fw_spec, self["role"], {"traps": str(path)})


def _trap_system(
    fw_spec: dict[str, Any],
    role: str,
    label: str,
    surface: str,
    ligand: str | None,
    reference_dir: str | None,
):  # -> analysis.traps.TrapSystem
    """One system of a trap study: its static's gap states against the pristine slab."""
    from dftflow.analysis.midgap import find_midgap_states
    from dftflow.analysis.traps import N_TOP_ATOMS, trap_system

    results = fw_spec.get(SPEC_RESULTS) or {}
    rec = results.get(role_key(role))
    if rec is None:
        return trap_system(label, surface, ligand, None, f"{role} did not finish")
    doc = TaskDoc.from_json_file(rec["taskdoc"])
    lost = doc.metadata.get("undercoordinated")
    under = None if lost is None else [i for i, n in enumerate(lost) if n]
    report, note = None, ""
    try:
        report = find_midgap_states(
            doc.directory,
            reference=reference_dir,
            ligand_indices=doc.ligand_indices,
            n_top_atoms=N_TOP_ATOMS,
        )
    except DftflowError as exc:
        if reference_dir is not None:
            try:
                report = find_midgap_states(
                    doc.directory,
                    reference=reference_dir,
                    align="fermi",
                    ligand_indices=doc.ligand_indices,
                    n_top_atoms=N_TOP_ATOMS,
                )
                note = f"aligned at the Fermi level: {exc}"
            except DftflowError as exc2:
                note = f"mid-gap analysis failed: {exc}; with Fermi alignment: {exc2}"
        else:
            note = f"mid-gap analysis failed: {exc}"
    spin = int(doc.ispin) == 2
    return trap_system(
        label,
        surface,
        ligand,
        report,
        note,
        taskdoc=rec["taskdoc"],
        electrons=doc.nelect,
        spin_polarized=spin,
        undercoordinated=under,
    )


def analyse_traps(
    fw_spec: dict[str, Any],
    defects: list[str],
    ligands: list[dict[str, Any]],
    modes: dict[str, list[str]] | None = None,
):
    """The :class:`dftflow.analysis.traps.TrapStudy` from the records in ``fw_spec``.

    ``modes``: defect -> the binding modes enumerated there (a mode without a clash-free
    placement for a ligand is noted on its row).
    """
    from dftflow.analysis.traps import TrapLigand, build_trap_study

    results = fw_spec.get(SPEC_RESULTS) or {}
    ref_rec = results.get(role_key("slab/static"))
    ref_dir = None if ref_rec is None else TaskDoc.from_json_file(ref_rec["taskdoc"]).directory
    entries = [LigandEntry.model_validate(e) for e in ligands]
    systems = [_trap_system(fw_spec, "slab/static", "pristine slab", "pristine", None, None)]
    for e in entries:
        systems.append(
            _trap_system(
                fw_spec,
                f"{e.key}/complex_static",
                f"{e.name} on pristine",
                "pristine",
                e.name,
                ref_dir,
            )
        )
    rows: list[TrapLigand] = []
    for d in defects:
        systems.append(_trap_system(fw_spec, f"{d}/slab/static", f"{d} slab", d, None, ref_dir))
        for e in entries:
            role = f"{d}/{e.key}/complex_static"
            systems.append(_trap_system(fw_spec, role, f"{e.name} at {d}", d, e.name, ref_dir))
            rows.append(_trap_ligand(fw_spec, e, d, (modes or {}).get(d, [])))
    return build_trap_study(defects, systems, rows, [e.name for e in entries])


def _e_ads(results: dict[str, Any], complex_role: str, slab_role: str, mol_role: str, ref: str):
    """(E_ads in eV or None, note) from three static records."""
    recs = [results.get(role_key(r)) for r in (complex_role, slab_role, mol_role)]
    if any(r is None for r in recs):
        return None, f"E_ads not computed: a static did not finish ({complex_role})"
    try:
        ads = adsorption_energy(
            *(TaskDoc.from_json_file(r["taskdoc"]) for r in recs), reference_species=ref
        )
    except DftflowError as exc:
        return None, f"E_ads not computed: {exc}"
    return float(ads.e_ads_eV), ""


def _trap_ligand(fw_spec: dict[str, Any], e: LigandEntry, defect: str, modes: list[str]):
    """E_ads of one ligand at ``defect`` and on the pristine surface, placements tried."""
    from dftflow.analysis.traps import TrapLigand

    results = fw_spec.get(SPEC_RESULTS) or {}
    mol = f"{e.key}/molecule_static"
    notes = []
    at_d, n1 = _e_ads(
        results,
        f"{defect}/{e.key}/complex_static",
        f"{defect}/slab/static",
        mol,
        e.reference_species,
    )
    pristine, n2 = _e_ads(
        results, f"{e.key}/complex_static", "slab/static", mol, e.reference_species
    )
    notes += [n for n in (n1, n2) if n]
    cx = results.get(role_key(f"{defect}/{e.key}/complex_static")) or {}
    tried = {str(q.get("label", "")).split("-Pb")[0] for q in cx.get("placements") or []}
    for mode in modes:
        if cx and mode not in tried:
            notes.append(
                f"mode {mode}: no placement of {e.name} clear of the slab atoms at {defect} "
                "(enumerated on the unrelaxed defective slab)"
            )
    return TrapLigand(
        ligand=e.name,
        defect=defect,
        reference_species=str(e.reference_species),
        model=f"{e.placements.form or e.molecule_form} at {defect} ({cx.get('selected', 'n/a')})",
        e_ads_defect_eV=at_d,
        e_ads_pristine_eV=pristine,
        placements=list(cx.get("placements") or []),
        notes=notes,
    )


@explicit_serialize
class ReportTask(FiretaskBase):
    """Collect every ligand's result into ``summary.json`` (StudySummary) and write the report."""

    required_params = ["role", "ligands"]
    optional_params = ["traps_role"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Write summary.json atomically, then the report."""
        cfg = _config(fw_spec)
        summary = build_summary(fw_spec, self["ligands"], self.get("traps_role"))
        study_dir = Path(cfg["study_dir"])
        write_summary(study_dir, summary)
        report = write_report(study_dir, summary)
        rec = {"summary": str(study_dir / "summary.json"), "report": str(report)}
        return FWAction(stored_data={"role": self["role"], "record": rec})


def build_summary(
    fw_spec: dict[str, Any], ligand_keys: list[str], traps_role: str | None = None
) -> StudySummary:
    """The StudySummary from the records in ``fw_spec`` (ligands that failed are noted).

    ``traps_role``: the trap analysis of a study with defects (its ``traps.json`` goes into
    ``traps``).
    """
    cfg = _config(fw_spec)
    results = fw_spec.get(SPEC_RESULTS) or {}
    ligands: list[LigandResult] = []
    notes: list[str] = []
    traps = None
    if traps_role is not None:
        rec = results.get(role_key(traps_role))
        if rec is None:
            notes.append("trap analysis did not finish (see `dftflow status`)")
        else:
            traps = json.loads(Path(rec["traps"]).read_text(encoding="utf-8"))
    for key in ligand_keys:
        rec = results.get(role_key(f"{key}/analysis"))
        if rec is None:
            notes.append(f"ligand {key}: analysis did not finish (see `dftflow status`)")
            continue
        ligands.append(LigandResult.model_validate_json(Path(rec["ligand_result"]).read_text()))
    slab_roles = ("bulk/relax", "slab/relax", "slab/static")
    slab = {
        r.replace("/", "_"): results[role_key(r)]["taskdoc"]
        for r in slab_roles
        if role_key(r) in results
    }
    slab_docs = [TaskDoc.from_json_file(path) for path in slab.values()]
    physical = engine_entry(cfg["engine"]["name"]).physical and all(
        [lig.physical for lig in ligands] + [d.physical for d in slab_docs]
    )
    slab_midgap = None
    if role_key("slab/static") in results:
        slab_doc = TaskDoc.from_json_file(results[role_key("slab/static")]["taskdoc"])
        slab_midgap, note = midgap_report(slab_doc.directory, None, slab_doc.ligand_indices)
        if note:
            notes.append(f"clean slab: {note}")
    return StudySummary(
        study=cfg["study"],
        slab_midgap=slab_midgap,
        traps=traps,
        engine=cfg["engine"]["name"],
        parameters={"effective": cfg["parameters"], "overrides": cfg["overrides"]},
        slab=slab,
        ligands=ligands,
        physical=physical,
        physical_note="" if physical else NOT_PHYSICAL_NOTE,
        provenance={"spec_digest": cfg["spec_digest"], "study_dir": cfg["study_dir"]},
        notes=notes,
    )


def write_summary(study_dir: Path, summary: StudySummary) -> Path:
    """Write ``study_dir/summary.json`` atomically."""
    text = json.dumps(summary.model_dump(mode="json"), indent=2)
    return atomic_write_text(Path(study_dir) / "summary.json", text)
