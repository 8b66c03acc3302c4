"""FireWorks Firetasks of a ligand screen (issue 13); the graph is in :mod:`.screen_flows`.

Roles (Firework names without the screen prefix)::

    bulk/relax -> slab/relax -> slab/static                        (engine: the DFT references)
                           |-> mlip/slab                           (slab relaxed by every member)
                           |-> L/mlip/<n>  (a chunk of L's placements relaxed loosely, labelled)
                           |-> L/molecule_relax -> L/molecule_static
         mlip/slab + L/mlip/* -> L/select   (duplicates, refinement, committee E_ads, escalations)
                  L/select -> L/dft/<i>      (the i-th escalated placement: engine relax + static)
                                 everything -> ranking (table, figures, report)

Records and geometries of the MLIP stages are files in ``STUDY_DIR/screen/<L>/`` (see
:mod:`dftflow.screening.pipeline`); a rerun reuses every finished placement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fireworks import FiretaskBase, FWAction, explicit_serialize

from dftflow.engines.registry import engine_entry
from dftflow.errors import InputError
from dftflow.fileio import atomic_write_text
from dftflow.schemas import Stage, TaskDoc
from dftflow.screening import pipeline
from dftflow.screening.enumeration import ScreenCandidate, reference_form
from dftflow.screening.records import LigandScreen
from dftflow.structures.ligands import reference_species_name
from dftflow.workflows import firetasks as ft
from dftflow.workflows.store import interruptible


def screen_dir(fw_spec: dict[str, Any]) -> Path:
    """``STUDY_DIR/screen``: the MLIP records, geometries and the ranked table."""
    return Path(ft._config(fw_spec)["study_dir"]) / "screen"


def _settings(fw_spec: dict[str, Any]) -> dict[str, Any]:
    return ft._config(fw_spec)["screen"]


def relaxed_slab(fw_spec: dict[str, Any], slab: dict[str, Any]):  # -> ase.Atoms
    """The engine-relaxed slab with the fixed atoms of the built one."""
    slab_rec = ft._result(fw_spec, "slab/relax")
    return ft._with_constraints(
        ft._atoms_of(TaskDoc.from_json_file(slab_rec["taskdoc"])),
        ft.build_slab(slab, slab_rec["a_A"]),
    )


@explicit_serialize
class ScreenSlabTask(FiretaskBase):
    """Relax the engine's slab with every committee member (the MLIP E_ads reference)."""

    required_params = ["role", "slab"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Relax, record member -> energy (eV)."""
        atoms = relaxed_slab(fw_spec, self["slab"])
        with interruptible():
            energies = pipeline.relax_reference(
                atoms, _settings(fw_spec), screen_dir(fw_spec) / "references", "slab"
            )
        return ft.pass_on(fw_spec, self["role"], {"e_slab_eV": energies})


@explicit_serialize
class ScreenMlipTask(FiretaskBase):
    """Relax a chunk of one ligand's placements with the committee's first member; label each."""

    required_params = ["role", "ligand", "candidates", "slab"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Loose relaxations (finished placements reused)."""
        spec = ft.ligand_spec(self["ligand"])
        key = ft.LigandEntry.model_validate(self["ligand"]).key
        cands = [ScreenCandidate.model_validate(c) for c in self["candidates"]]
        slab = relaxed_slab(fw_spec, self["slab"])
        with interruptible():
            recs = pipeline.relax_candidates(
                slab, spec, cands, _settings(fw_spec), screen_dir(fw_spec) / key / "placements"
            )
        record = {"keys": [r.key for r in recs], "excluded": sum(r.excluded for r in recs)}
        return ft.pass_on(fw_spec, self["role"], record)


@explicit_serialize
class ScreenSelectTask(FiretaskBase):
    """Merge duplicates, refine the best with every member, committee E_ads, choose escalations."""

    required_params = ["role", "ligand", "reference", "chunk_roles", "n_by_mode"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Write ``screen/<L>/ligand_screen.json``; pass the escalated placements on."""
        entry = ft.LigandEntry.model_validate(self["ligand"])
        spec = ft.ligand_spec(self["ligand"])
        settings = _settings(fw_spec)
        folder = screen_dir(fw_spec) / entry.key
        results = fw_spec.get(ft.SPEC_RESULTS) or {}
        keys: list[str] = []
        failed = []
        for role in self["chunk_roles"]:
            rec = results.get(ft.role_key(role))
            if rec is None:  # a FIZZLED chunk: its placements are missing, and said so
                failed.append(role)
            else:
                keys += rec["keys"]
        if not keys:
            raise InputError(f"no MLIP chunk of {entry.name} finished ({', '.join(failed)})")
        records = [pipeline.load_placement(folder / "placements", k) for k in keys]
        records = pipeline.mark_duplicates(records)
        e_slab = ft._result(fw_spec, "mlip/slab")["e_slab_eV"]
        form = reference_form(spec, self["reference"])
        slab_cell = relaxed_slab(fw_spec, ft._config(fw_spec)["slab"]).cell
        with interruptible():
            e_lig = pipeline.reference_ligand_energies(
                spec, form, slab_cell, settings, folder / "reference"
            )
            records = pipeline.refine(records, settings, folder / "placements", e_slab, e_lig)
        screen = LigandScreen(
            name=entry.name,
            smiles=spec.smiles,
            reference_species=reference_species_name(spec, form),
            reference_form=form,
            anchor=spec.primary_anchor.kind,
            n_enumerated=sum(self["n_by_mode"].values()),
            n_by_mode=dict(self["n_by_mode"]),
            placements=records,
            e_reference_eV=e_lig,
            flags=[f"MLIP chunk failed: {role} (see `dftflow status`)" for role in failed],
        )
        if not settings["mlip_only"]:
            screen = pipeline.choose_escalations(
                screen,
                int(settings["top_k"]),
                float(settings["sigma_escalate_eV"]),
                int(settings["extra_dft"]),
            )
        path = atomic_write_text(folder / "ligand_screen.json", screen.model_dump_json(indent=1))
        escalate = [
            {
                "key": p.key,
                "file": str(folder / "placements" / str(p.structure_file)),
                "reason": p.escalation_reason,
            }
            for p in screen.kept()
            if p.escalated
        ]
        return ft.pass_on(fw_spec, self["role"], {"ligand_screen": str(path), "escalate": escalate})


@explicit_serialize
class ScreenDftTask(FiretaskBase):
    """The ``slot``-th escalated placement of a ligand: engine relaxation, then its static.

    A slot with no placement (fewer escalations than slots) records that and runs nothing.
    """

    required_params = ["role", "ligand_key", "slot"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Relax from the committee's geometry (never from a raw placement), then the static."""
        sel = (fw_spec.get(ft.SPEC_RESULTS) or {}).get(ft.role_key(f"{self['ligand_key']}/select"))
        slot = int(self["slot"])
        if sel is None:  # the ligand's select FIZZLED: nothing to compute, the table says why
            rec = {"skipped": "the ligand's MLIP stage did not finish", "key": None}
            return ft.pass_on(fw_spec, self["role"], rec)
        if slot >= len(sel["escalate"]):
            rec = {"skipped": f"no escalated placement for slot {slot}", "key": None}
            return ft.pass_on(fw_spec, self["role"], rec)
        chosen = sel["escalate"][slot]
        atoms = pipeline.read_geometry(Path(chosen["file"]))  # fixed atoms kept
        launch = Path(fw_spec.get("_launch_dir") or ".")
        relax_doc, relax_rec = ft.run_stage(
            {**fw_spec, "_launch_dir": str(launch / "relax")},
            f"{self['role']}/relax",
            atoms,
            Stage.complex_relax,
            ft._overrides(fw_spec),
        )
        relaxed = ft._atoms_of(relax_doc)
        overrides = {**ft._overrides(fw_spec), **ft._fft_overrides(fw_spec)}
        _, rec = ft.run_stage(
            {**fw_spec, "_launch_dir": str(launch / "static")},
            f"{self['role']}/static",
            relaxed,
            Stage.static,
            overrides,
        )
        rec.update(
            key=chosen["key"],
            reason=chosen["reason"],
            relax_taskdoc=relax_rec["taskdoc"],
            relax_converged=relax_rec["converged"],
        )
        return ft.pass_on(fw_spec, self["role"], rec)


@explicit_serialize
class ScreenRankTask(FiretaskBase):
    """DFT E_ads of the escalated placements, the ranked table, its figures and report."""

    required_params = ["role", "ligands", "dft_slots"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Write ``STUDY_DIR/ranking.csv``, ``ranking.json``, ``screen_report.md`` + figures."""
        from dftflow.screening import ranking

        cfg = ft._config(fw_spec)
        settings = cfg["screen"]
        results = fw_spec.get(ft.SPEC_RESULTS) or {}
        screens = [
            ligand_with_dft(results, key, name, int(self["dft_slots"]))
            for key, name in self["ligands"]
        ]
        screens += [
            LigandScreen(
                name=r["name"],
                smiles=r.get("smiles", ""),
                reference_species="-",
                reference_form="-",
                anchor="-",
                error=r["error"],
            )
            for r in settings["rejected"]
        ]
        slab_e = results.get(ft.role_key("mlip/slab"), {}).get("e_slab_eV", {})
        entry = engine_entry(cfg["engine"]["name"])
        table = ranking.rank_ligands(
            screens,
            screen=cfg["study"],
            engine=entry.name,
            physical=entry.physical,
            committee=list(settings["committee"]),
            slab=cfg["slab"],
            e_slab_eV=slab_e,
            sigma_flag_eV=float(settings["sigma_escalate_eV"]),
        )
        out = Path(cfg["study_dir"])
        paths = ranking.write_table(table, out)
        report = ranking.write_report(table, screens, out)
        for s in screens:
            if s.error is None:
                atomic_write_text(
                    screen_dir(fw_spec) / safe_key(s.name) / "ligand_screen.json",
                    s.model_dump_json(indent=1),
                )
        rec = {**{k: str(v) for k, v in paths.items()}, "report": str(report)}
        return FWAction(stored_data={"role": self["role"], "record": rec})


def safe_key(name: str) -> str:
    """The ligand's folder name (the study's sanitised ligand key)."""
    return ft.safe_name(name)


def ligand_with_dft(results: dict[str, Any], key: str, name: str, slots: int) -> LigandScreen:
    """A ligand's screen record with the DFT E_ads of its escalated placements filled in.

    E_ads(DFT) = E(complex static) - E(slab/static) - E(L/molecule_static), the statics of the
    study's engine on one cell and grid. A ligand whose MLIP stage did not finish gets an error.
    """
    sel = results.get(ft.role_key(f"{key}/select"))
    if sel is None:
        return LigandScreen(
            name=name,
            smiles="",
            reference_species="-",
            reference_form="-",
            anchor="-",
            error="its MLIP stage did not finish (see `dftflow status`)",
        )
    screen = LigandScreen.model_validate_json(Path(sel["ligand_screen"]).read_text())
    slab = results.get(ft.role_key("slab/static"))
    mol = results.get(ft.role_key(f"{key}/molecule_static"))
    dft: dict[str, float] = {}
    notes: list[str] = []
    for i in range(slots):
        rec = results.get(ft.role_key(f"{key}/dft/{i}"))
        if rec is None:
            if i < len(sel["escalate"]):
                notes.append(f"DFT of {sel['escalate'][i]['key']} did not finish")
            continue
        if rec.get("key") is None or slab is None or mol is None:
            continue
        dft[rec["key"]] = (
            float(rec["energy_eV"]) - float(slab["energy_eV"]) - float(mol["energy_eV"])
        )
    rows = [
        p.model_copy(update={"e_ads_dft_eV": dft.get(p.key)}) if p.key in dft else p
        for p in screen.placements
    ]
    return screen.model_copy(update={"placements": rows, "flags": [*screen.flags, *notes]})
