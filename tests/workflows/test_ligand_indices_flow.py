"""The workflow carries the builder's ligand indices through every stage; fragments are cut by them.

An engine that returns what it was given (slightly moved, without any marks, as real engines do)
stands in for the calculation: only the bookkeeping of ``run_stage`` and the tasks is under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.io.ase import AseAtomsAdaptor

from dftflow.schemas import Stage, TaskDoc
from dftflow.structures import placement as P
from dftflow.structures.ligand_atoms import ligand_indices_of
from dftflow.structures.ligands import ligand_from_smiles, ligand_molecule
from dftflow.structures.slab import cspbbr3_001_slab
from dftflow.workflows import firetasks as ft

RELAX = "octylamine/complex_relax/monodentate"


class EchoEngine:
    """Returns its input structure moved by 0.01 A along z, with no ligand marks on it."""

    name = "echo"

    def __init__(self) -> None:
        self.received = []

    def run(self, atoms, stage, directory, overrides=None, label=""):
        self.received.append(atoms.copy())
        plain = atoms.copy()
        plain.arrays.pop("ligand", None)
        plain.set_constraint()
        plain.positions[:, 2] += 0.01
        structure = AseAtomsAdaptor.get_structure(plain)
        return TaskDoc(
            label=label,
            stage=stage,
            engine=self.name,
            directory=str(directory),
            formula=structure.composition.formula.replace(" ", ""),
            n_atoms=len(structure),
            energy_eV=-1.0,
            converged_electronic=True,
            converged_ionic=True,
            n_ionic_steps=1,
            structure=structure.as_dict(),
        )


@pytest.fixture
def flow(tmp_path, monkeypatch):
    engine = EchoEngine()
    monkeypatch.setattr(ft, "_engine_for", lambda fw_spec: engine)
    spec = {
        ft.SPEC_CONFIG: {
            "study_dir": str(tmp_path),
            "study": "t",
            "engine": {"name": "echo"},
            "overrides": {"slab": {}},
        },
        ft.SPEC_RESULTS: {"slab/relax": {"fft_grid": [12, 12, 90]}},
        "_launch_dir": str(tmp_path / "launch"),
    }
    return engine, spec


@pytest.fixture(scope="module")
def amine_complex():
    spec = ligand_from_smiles("CCCCCCCCN", name="octylamine")
    slab = cspbbr3_001_slab(layers=3, supercell=(1, 1), vacuum=24.0)
    cx = P.place_ligand(slab, spec, P.enumerate_placements(slab, spec)[0])
    return cx, len(ligand_molecule(spec))


def _doc(rec) -> TaskDoc:
    return TaskDoc.from_json_file(Path(rec["taskdoc"]))


def test_indices_recorded_kept_through_statics_and_fragments_cut_by_them(flow, amine_complex):
    engine, fw_spec = flow
    cx, n_added = amine_complex
    indices = ligand_indices_of(cx)
    nitrogen = cx.get_chemical_symbols().index("N")
    assert nitrogen in indices and len(indices) == n_added

    doc, rec = ft.run_stage(fw_spec, RELAX, cx, Stage.complex_relax, {})
    assert doc.ligand_indices == indices
    assert _doc(rec).ligand_indices == indices  # what later stages read
    fw_spec[ft.SPEC_RESULTS][ft.role_key(RELAX)] = rec

    # the static of the relaxed complex: same atoms, same indices (the engine kept the order)
    action = ft.StaticTask(role="octylamine/complex_static", source_role=RELAX).run_task(fw_spec)
    static = action.stored_data["record"]
    assert _doc(static).ligand_indices == indices
    assert ligand_indices_of(engine.received[-1]) == indices
    fw_spec[ft.SPEC_RESULTS][ft.role_key("octylamine/complex_static")] = {
        **static,
        "source_role": RELAX,
    }

    parts = {}
    for part in ("slab", "ligand"):
        task = ft.FragmentStaticTask(
            role=f"octylamine/{part}_fragment_static",
            complex_role="octylamine/complex_static",
            part=part,
        )
        parts[part] = (_doc(task.run_task(fw_spec).stored_data["record"]), engine.received[-1])
    lig_doc, lig_atoms = parts["ligand"]
    slab_doc, slab_atoms = parts["slab"]
    assert "N" in lig_atoms.get_chemical_symbols()
    assert "N" not in slab_atoms.get_chemical_symbols()
    assert len(lig_atoms) == n_added and len(slab_atoms) == len(cx) - n_added
    assert lig_doc.ligand_indices == list(range(n_added))
    assert slab_doc.ligand_indices == []


def test_a_resumed_taskdoc_without_indices_gets_them(flow, amine_complex):
    _, fw_spec = flow
    cx, _ = amine_complex
    doc, rec = ft.run_stage(fw_spec, RELAX, cx, Stage.complex_relax, {})
    old = doc.model_copy(update={"ligand_indices": None})  # written before indices existed
    old.to_json_file(rec["taskdoc"])
    again, _ = ft.run_stage(fw_spec, RELAX, cx, Stage.complex_relax, {})
    assert again.ligand_indices == ligand_indices_of(cx)
    assert _doc(rec).ligand_indices == ligand_indices_of(cx)
