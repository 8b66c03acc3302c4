"""Ligand atoms are the atoms the builder added, carried by index (amine, thiol, phosphonic)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.io import read, write
from pymatgen.io.ase import AseAtomsAdaptor

from dftflow.errors import InputError
from dftflow.structures import placement as P
from dftflow.structures.ligand_atoms import (
    ligand_indices_of,
    mark_ligand,
    read_ligand_sidecar,
    sidecar_path,
    with_ligand_sidecar,
    write_ligand_sidecar,
)
from dftflow.structures.ligands import get_ligand, ligand_from_smiles, ligand_molecule
from dftflow.structures.slab import SLAB_ELEMENTS, cspbbr3_001_slab

#: name -> (SMILES, the anchor's heteroatom that an element list C/H/O would call slab)
ANCHORED = {
    "octylamine": ("CCCCCCCCN", "N"),
    "octanethiol": ("CCCCCCCCS", "S"),
    "octylphosphonic acid": ("CCCCCCCCP(=O)(O)O", "P"),
}


@pytest.fixture(scope="module")
def slab():
    """Small 1x1, 3-plane PbBr2-terminated slab, vacuum for the octyl ligands standing."""
    specs = [ligand_from_smiles(s, name=n) for n, (s, _) in ANCHORED.items()]
    short = cspbbr3_001_slab(layers=3, supercell=(1, 1))
    return cspbbr3_001_slab(layers=3, supercell=(1, 1), vacuum=P.required_vacuum_A(short, specs))


def _complex(slab, name, **kwargs):
    spec = ligand_from_smiles(ANCHORED[name][0], name=name)
    cand = P.enumerate_placements(slab, spec, **kwargs)[0]
    return spec, cand, P.place_ligand(slab, spec, cand)


@pytest.mark.parametrize("name", list(ANCHORED))
def test_builder_marks_exactly_the_added_atoms_anchor_included(slab, name):
    spec, _, cx = _complex(slab, name)
    anchor_el = ANCHORED[name][1]
    n_added = len(ligand_molecule(spec))
    indices = ligand_indices_of(cx)
    assert len(cx) == len(slab) + n_added
    assert indices == list(range(len(slab), len(cx)))  # the appended atoms, nothing else
    symbols = cx.get_chemical_symbols()
    anchors = [i for i, s in enumerate(symbols) if s == anchor_el]
    assert len(anchors) == 1 and anchors[0] in indices
    assert all(symbols[i] in SLAB_ELEMENTS for i in range(len(cx)) if i not in indices)
    # pymatgen carries the same array as a site property
    assert ligand_indices_of(AseAtomsAdaptor.get_structure(cx)) == indices


@pytest.mark.parametrize("name", list(ANCHORED))
def test_fragments_are_cut_by_index_and_the_anchor_goes_with_the_ligand(slab, name):
    spec, _, cx = _complex(slab, name)
    anchor_el = ANCHORED[name][1]
    slab_part, lig_part = P.split_complex(cx)
    assert len(lig_part) == len(ligand_molecule(spec))
    assert anchor_el in lig_part.get_chemical_symbols()
    assert anchor_el not in slab_part.get_chemical_symbols()
    assert slab_part.get_chemical_symbols() == slab.get_chemical_symbols()
    assert np.allclose(slab_part.positions, slab.positions)
    assert ligand_indices_of(slab_part) == []
    assert ligand_indices_of(lig_part) == list(range(len(lig_part)))


def test_split_uses_the_indices_not_the_elements(slab):
    _, _, cx = _complex(slab, "octylamine")
    n = len(cx)
    # a structure that says the N is slab is cut that way: nothing is guessed from elements
    nitrogen = cx.get_chemical_symbols().index("N")
    relabelled = mark_ligand(cx, [i for i in ligand_indices_of(cx) if i != nitrogen])
    slab_part, lig_part = P.split_complex(relabelled)
    assert "N" in slab_part.get_chemical_symbols() and len(lig_part) == n - len(slab) - 1
    unmarked = cx.copy()
    del unmarked.arrays["ligand"]
    with pytest.raises(InputError, match="unknown"):
        P.split_complex(unmarked)
    assert P.split_complex(unmarked, ligand_indices_of(cx))[1].get_chemical_formula() == ("C8H19N")


def test_dissociated_h_and_a_removed_br_keep_the_indices_right(slab):
    spec = ligand_from_smiles(ANCHORED["octylphosphonic acid"][0], name="octylphosphonic acid")
    cand = P.enumerate_placements(slab, spec, dissociate=True)[0]
    assert cand.dissociate
    cx = P.place_ligand(slab, spec, cand)
    idx = ligand_indices_of(cx)
    assert len(idx) == len(ligand_molecule(spec))  # the H moved onto a Br is one of them
    assert idx == list(range(len(slab), len(cx)))

    big = cspbbr3_001_slab(layers=3, supercell=(2, 2), vacuum=20.0)
    bridging = P.enumerate_placements(big, "AcO", modes=["bidentate_bridging"])[0]
    cx2 = P.place_ligand(big, "AcO", bridging)
    assert len(bridging.removed) == 1
    assert ligand_indices_of(cx2) == list(range(len(big) - 1, len(cx2)))  # after the removed Br


def test_coverage_and_a_second_ligand_keep_earlier_marks(slab):
    big = cspbbr3_001_slab(layers=3, supercell=(2, 2), vacuum=25.0)
    spec = ligand_from_smiles("CCCCCCCCN", name="octylamine")
    first = P.enumerate_placements(big, spec)[0]
    cover = P.coverage_placements(big, first, 2)
    cx = P.place_ligands(big, [(spec, c) for c in cover])
    n_mol = len(ligand_molecule(spec))
    idx = ligand_indices_of(cx)
    assert len(idx) == 2 * n_mol
    assert sum(cx.get_chemical_symbols()[i] == "N" for i in idx) == 2
    # a complex used as the slab for another ligand: the first ligand stays marked
    one = P.place_ligand(big, spec, first)
    second = P.enumerate_placements(one, "AcO", modes=["monodentate"])[0]
    two = P.place_ligand(one, "AcO", second)
    assert ligand_indices_of(two) == ligand_indices_of(one) + list(range(len(one), len(two)))
    assert len(ligand_indices_of(two)) == n_mol + len(ligand_molecule(get_ligand("AcO")))


def test_isolated_molecule_is_all_ligand(slab):
    spec = ligand_from_smiles("CCCCCCCCS", name="octanethiol")
    mol = P.molecule_in_cell(ligand_molecule(spec), slab.cell)
    assert ligand_indices_of(mol) == list(range(len(mol)))


def test_unknown_is_not_none_marked(slab):
    assert ligand_indices_of(slab) is None  # never guessed
    assert ligand_indices_of(mark_ligand(slab, [])) == []
    with pytest.raises(InputError, match="out of range"):
        mark_ligand(slab, [len(slab)])


def test_extxyz_keeps_the_marks_and_poscar_gets_a_checked_sidecar(slab, tmp_path):
    _, _, cx = _complex(slab, "octanethiol")
    idx = ligand_indices_of(cx)
    write(tmp_path / "cx.extxyz", cx)
    assert ligand_indices_of(read(tmp_path / "cx.extxyz")) == idx

    poscar = tmp_path / "POSCAR"
    write(poscar, cx, format="vasp", direct=True)
    assert write_ligand_sidecar(cx, poscar) == sidecar_path(poscar)
    content = json.loads(sidecar_path(poscar).read_text())
    assert content["ligand_indices"] == idx and content["index_base"] == 0
    back = with_ligand_sidecar(read(poscar, format="vasp"), poscar)
    assert ligand_indices_of(back) == idx
    # a sidecar that belongs to other atoms is refused, not applied
    write(poscar, slab, format="vasp", direct=True)
    with pytest.raises(InputError, match="stale sidecar"):
        read_ligand_sidecar(poscar, read(poscar, format="vasp"))
