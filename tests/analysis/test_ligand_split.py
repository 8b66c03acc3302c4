"""Analysis splits ligand/slab by the builder's indices: N, S, P anchors are ligand.

Complexes come from the real builder (amine, thiol, phosphonic acid on a PbBr2-terminated slab);
their DOS/projections are synthetic runs (:mod:`dftflow.analysis.testdata`) and their densities
Gaussians on the atoms, so every expected number is known.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.io.ase import AseAtomsAdaptor

from dftflow.analysis.chgdiff import FROM_FRAGMENT, charge_density_difference
from dftflow.analysis.dos import LIGAND_SLAB, common_groups, dos_curves
from dftflow.analysis.ligand_split import FROM_BUILDER, FROM_ELEMENT_RULE, ligand_split
from dftflow.analysis.midgap import compare_midgap, find_midgap_states
from dftflow.cli import main
from dftflow.io.chgcar import write_chgcar
from dftflow.schemas import TaskDoc
from dftflow.structures import placement as P
from dftflow.structures.ligand_atoms import ligand_indices_of
from dftflow.structures.ligands import ligand_from_smiles, ligand_molecule
from dftflow.structures.slab import cspbbr3_001_slab
from dftflow.testing import synthetic_runs as testdata

ANCHORED = {
    "octylamine": ("CCCCCCCCN", "N"),
    "octanethiol": ("CCCCCCCCS", "S"),
    "octylphosphonic acid": ("CCCCCCCCP(=O)(O)O", "P"),
}


class Built:
    """One complex from the builder: structure, ligand indices, anchor atom, atoms added."""

    def __init__(self, slab, name: str) -> None:
        smiles, self.anchor_element = ANCHORED[name]
        spec = ligand_from_smiles(smiles, name=name)
        cand = P.enumerate_placements(slab, spec)[0]
        self.atoms = P.place_ligand(slab, spec, cand)
        self.indices = ligand_indices_of(self.atoms)
        self.n_added = len(ligand_molecule(spec))
        symbols = self.atoms.get_chemical_symbols()
        (self.anchor,) = [i for i, s in enumerate(symbols) if s == self.anchor_element]
        self.n_slab = len(slab)
        plain = self.atoms.copy()
        del plain.arrays["ligand"]  # what an engine hands back: no marks on the structure
        self.structure = AseAtomsAdaptor.get_structure(plain)


@pytest.fixture(scope="module")
def slab():
    specs = [ligand_from_smiles(s, name=n) for n, (s, _) in ANCHORED.items()]
    short = cspbbr3_001_slab(layers=3, supercell=(1, 1))
    return cspbbr3_001_slab(layers=3, supercell=(1, 1), vacuum=P.required_vacuum_A(short, specs))


@pytest.fixture(scope="module")
def built(slab):
    return {name: Built(slab, name) for name in ANCHORED}


@pytest.fixture(scope="module")
def runs(built, slab, tmp_path_factory):
    """Synthetic static runs with taskdoc.json (ligand_indices), a trap on the anchor atom."""
    root = tmp_path_factory.mktemp("anchored")
    out = {}
    for name, b in built.items():
        out[name] = testdata.write_synthetic_run(
            root / name.replace(" ", "_"),
            b.structure,
            energy_eV=-60.0,
            trap_atom=b.anchor,
            ligand_indices=b.indices,
        )
        out[f"{name} host"] = testdata.write_synthetic_run(  # the same system without the trap
            root / f"{name.replace(' ', '_')}_host",
            b.structure,
            energy_eV=-60.0,
            ligand_indices=b.indices,
        )
    clean = slab.copy()
    out["clean slab"] = testdata.write_synthetic_run(
        root / "clean", AseAtomsAdaptor.get_structure(clean), energy_eV=-30.0, ligand_indices=[]
    )
    return out


def _integral(curves, group, window_eV):
    e = np.asarray(curves.energies_eV)
    m = (e >= window_eV[0]) & (e <= window_eV[1])
    return float(np.trapezoid(np.asarray(curves.groups[group]["up"])[m], e[m]))


# ------------------------------------------------------------------------------------ DOS


@pytest.mark.parametrize("name", list(ANCHORED))
def test_dos_ligand_group_is_what_the_builder_added(built, runs, name):
    b = built[name]
    curves = dos_curves(runs[name])
    assert curves.ligand_atoms_from == FROM_BUILDER
    assert curves.group_atoms["ligand"] == b.indices
    assert len(curves.group_atoms["ligand"]) == b.n_added
    assert len(curves.group_atoms["slab"]) == b.n_slab
    assert b.anchor in curves.group_atoms["ligand"]
    assert b.anchor_element in curves.group_elements["ligand"]
    assert b.anchor_element not in curves.group_elements["slab"]
    # the ligand's own (localised) states near -4 eV are all in the ligand curve, the anchor's too
    ligand = _integral(curves, "ligand", (-5.0, -3.0))
    assert ligand > 0
    assert abs(_integral(curves, "slab", (-5.0, -3.0))) < 1e-6 * ligand


def test_dos_without_recorded_indices_states_the_element_rule(built, runs, tmp_path):
    b = built["octylamine"]
    bare = testdata.write_synthetic_run(tmp_path / "bare", b.structure, energy_eV=-60.0)
    assert not (bare / "taskdoc.json").exists()
    curves = dos_curves(bare)
    assert curves.ligand_atoms_from == FROM_ELEMENT_RULE
    assert b.anchor in curves.group_atoms["ligand"]  # the rule counts N, S, P too
    # given indices win over the rule (here: the builder says "no ligand atom")
    assert "ligand" not in dos_curves(bare, ligand_indices=[]).groups
    assert common_groups([runs["clean slab"], runs["octylamine"]]) == LIGAND_SLAB


def test_cli_dos_json_reports_the_builder_groups(built, runs, capsys):
    b = built["octanethiol"]
    assert (
        main(["analyze", "dos", str(runs["clean slab"]), str(runs["octanethiol"]), "--json"]) == 0
    )
    systems = json.loads(capsys.readouterr().out)["systems"]
    assert "ligand" not in systems[0]["groups"]  # the clean slab: slab curve only
    assert systems[1]["group_atoms"]["ligand"] == b.indices
    assert systems[1]["ligand_atoms_from"] == FROM_BUILDER


# ------------------------------------------------------------------------------- mid-gap


@pytest.mark.parametrize("name", list(ANCHORED))
def test_trap_on_the_anchor_has_ligand_character(built, runs, name):
    b = built[name]
    rep = find_midgap_states(runs[name], reference=runs[f"{name} host"], align="none")
    assert rep.ligand_atoms_from == FROM_BUILDER
    assert rep.ligand_indices == b.indices
    (state,) = rep.midgap_states
    assert state.top_atoms[0].index == b.anchor
    assert state.top_atoms[0].layer == "ligand"
    assert state.ligand_weight == pytest.approx(1.0, abs=1e-3)
    assert state.slab_weight == pytest.approx(0.0, abs=1e-3)
    # a state on the ligand's anchor is not a trap of the host surface
    clean = find_midgap_states(runs["clean slab"])
    assert compare_midgap(clean, rep).before["n_traps"] == 0
    assert compare_midgap(rep, rep).after["n_traps"] == 0


def test_trap_on_a_surface_pb_is_slab(built, tmp_path):
    b = built["octylamine"]
    top_pb = max(
        (i for i, s in enumerate(b.structure) if s.specie.symbol == "Pb"),
        key=lambda i: b.structure[i].coords[2],
    )
    run = testdata.write_synthetic_run(
        tmp_path / "pb", b.structure, energy_eV=-60.0, trap_atom=top_pb, ligand_indices=b.indices
    )
    host = testdata.write_synthetic_run(
        tmp_path / "host", b.structure, energy_eV=-60.0, ligand_indices=b.indices
    )
    (state,) = find_midgap_states(run, reference=host, align="none").midgap_states
    assert state.slab_weight == pytest.approx(1.0, abs=1e-3)
    assert state.top_atoms[0].layer == "surface"


# ------------------------------------------------------------------------------------ Δρ


def _chgdiff_triple(b: Built, directory, transfer_e: float, grid=(16, 16, 120)):
    """CHGCARs of complex, slab and ligand fragments (cut by index) + a dipole at the plane."""
    slab_part, lig_part = P.split_complex(b.atoms)
    structs = {
        "AB": b.structure,
        "A": AseAtomsAdaptor.get_structure(slab_part),
        "B": AseAtomsAdaptor.get_structure(lig_part),
    }
    rho = {
        k: testdata.gaussian_rho_v(s, grid, s.cart_coords, np.ones(len(s)), 0.6)
        for k, s in structs.items()
        if k != "AB"
    }
    z = b.structure.cart_coords[:, 2]
    slab_top = z[[i for i in range(len(z)) if i not in b.indices]].max()
    plane = 0.5 * (slab_top + z[b.indices].min())
    xy = b.structure.cart_coords[b.anchor, :2]
    dipole = testdata.gaussian_rho_v(
        b.structure,
        grid,
        np.array([[*xy, plane - 0.9], [*xy, plane + 0.9]]),
        np.array([transfer_e, -transfer_e]),
        0.25,
    )
    rho["AB"] = rho["A"] + rho["B"] + dipole
    paths = {}
    for k, s in structs.items():
        (directory / k).mkdir(parents=True, exist_ok=True)
        paths[k] = write_chgcar(directory / k / "CHGCAR", s, rho[k])
    return paths, plane


@pytest.mark.parametrize("name", list(ANCHORED))
def test_chgdiff_plane_lies_between_the_slab_and_the_anchor(built, tmp_path, name):
    b = built[name]
    paths, plane = _chgdiff_triple(b, tmp_path, transfer_e=0.04)
    z = b.structure.cart_coords[:, 2]
    res = charge_density_difference(paths["AB"], paths["A"], paths["B"], ligand_indices=b.indices)
    assert res.ligand_atoms_from == FROM_BUILDER
    assert res.ligand_indices == b.indices and b.anchor in res.ligand_indices
    assert res.plane_z_A == pytest.approx(plane % b.structure.lattice.c, abs=1e-6)
    assert res.ligand_side == "above"
    assert plane < z[b.anchor]  # N, S (binding atoms) and P (above its binding O): ligand side
    # the dipole straddles the plane: all of it is counted only with the anchor on the ligand side
    assert res.charge_transfer_e == pytest.approx(0.04, abs=1e-3)
    # without indices the fragment B's atoms give the same split, and say so
    auto = charge_density_difference(paths["AB"], paths["A"], paths["B"])
    assert auto.ligand_atoms_from == FROM_FRAGMENT
    assert auto.ligand_indices == b.indices
    assert auto.plane_z_A == pytest.approx(res.plane_z_A)


def test_workflow_style_taskdoc_indices_reach_the_analysis(built, runs):
    doc = TaskDoc.from_json_file(runs["octylamine"] / "taskdoc.json")
    b = built["octylamine"]
    assert doc.ligand_indices == b.indices
    split = ligand_split(doc.final_structure(), doc.ligand_indices)
    assert split.ligand_atoms_from == FROM_BUILDER and len(split.ligand_indices) == b.n_added
    with pytest.raises(ValueError, match="ligand_indices"):
        doc.with_ligand_indices([doc.n_atoms])
