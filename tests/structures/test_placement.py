"""Placement: binding geometries, periodic clash checks, symmetry-free enumeration, cells."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from ase.geometry import get_distances

from dftflow.errors import InputError
from dftflow.structures import placement as P
from dftflow.structures.bulk import A_CSPBBR3_CUBIC
from dftflow.structures.slab import cspbbr3_001_slab, slab_summary

SLAB_EL = {"Cs", "Pb", "Br"}


@pytest.fixture(scope="module")
def tall_slab():
    """2x2, 5 planes, vacuum tall enough for OA standing (as in the study's one shared cell)."""
    short = cspbbr3_001_slab()
    return cspbbr3_001_slab(vacuum=P.required_vacuum_A(short, ["OA", "2-HA", "AcO"]))


def ligand_part(complex_, n_slab):
    return complex_.positions[n_slab:], complex_.get_chemical_symbols()[n_slab:]


def min_image_self_distance(pos, cell):
    """Independent check: distances to copies shifted by every in-plane lattice vector up to 2."""
    best = np.inf
    for i, j, k in itertools.product(range(-2, 3), range(-2, 3), range(-1, 2)):
        if (i, j, k) == (0, 0, 0):
            continue
        t = i * cell[0] + j * cell[1] + k * cell[2]
        best = min(best, np.min(np.linalg.norm(pos[:, None] - pos[None] - t, axis=-1)))
    return best


def formula_counts(atoms):
    return Counter(atoms.get_chemical_symbols())


def test_required_vacuum_fits_the_longest_ligand(tall_slab):
    s = slab_summary(tall_slab)
    height = P.ligand_height_A(tall_slab, "OA")
    assert height > 18.0  # 18 carbons standing + Pb-O 2.5 A
    assert s.vacuum_A == pytest.approx(height + 10.0, abs=1e-3)
    assert P.ligand_height_A(tall_slab, "AcO") < 6.0


def test_short_vacuum_is_reported_with_a_fix():
    with pytest.raises(InputError, match="vacuum .* too small .* --vacuum"):
        P.enumerate_placements(cspbbr3_001_slab(vacuum=15.0), "OA")


def test_acetate_chelating_geometry_and_formula(tall_slab):
    cands = P.enumerate_placements(tall_slab, "AcO", modes=["bidentate_chelating"])
    assert cands and all(c.mode == "bidentate_chelating" for c in cands)
    for cand in cands:
        cx = P.place_ligand(tall_slab, "AcO", cand)
        assert formula_counts(cx) == formula_counts(tall_slab) + Counter(C=2, H=3, O=2)
        assert cx.info["charge"] == -1
        o = [i for i, s in enumerate(cx.get_chemical_symbols()) if s == "O"]
        d = cx.get_distances(cand.site, o, mic=True)
        assert np.allclose(d, 2.5, atol=1e-6)
        assert cx.positions[o[0], 2] == pytest.approx(cx.positions[o[1], 2], abs=1e-6)


@pytest.mark.slow
def test_every_candidate_clears_slab_and_its_images(tall_slab):
    n = len(tall_slab)
    for name, kw in [("AcO", {}), ("OA", {}), ("2-HA", {"dissociate": None})]:
        for cand in P.enumerate_placements(tall_slab, name, **kw):
            cx = P.place_ligand(tall_slab, name, cand)
            pos, sym = ligand_part(cx, n)
            _, d = get_distances(pos, cx.positions[:n], cell=cx.cell, pbc=True)
            if cand.dissociate:  # the moved H (the last H) sits on its Br on purpose (1.45 A)
                h = max(i for i, s in enumerate(sym) if s == "H")
                d[h, cand.h_acceptor] = np.inf
            assert d.min() >= 2.0 - 1e-9, (name, cand.label)
            assert min_image_self_distance(pos, cx.cell[:]) >= 2.0 - 1e-9
            assert cand.min_image_distance_A >= 2.0


def test_oa_complex_is_slab_plus_oleic_acid(tall_slab):
    cands = P.enumerate_placements(tall_slab, "OA")
    assert cands[0].mode == "monodentate" and not cands[0].dissociate
    cx = P.place_ligand(tall_slab, "OA", cands[0])
    assert formula_counts(cx) == formula_counts(tall_slab) + Counter(C=18, H=34, O=2)
    # carbonyl O on Pb at 2.5 A, chain into the vacuum, slab constraints kept for its atoms
    lig = cx.positions[len(tall_slab) :]
    assert lig[:, 2].max() - cx.positions[cands[0].site, 2] > 18.0
    assert min(cx.get_distances(cands[0].site, range(len(tall_slab), len(cx)), mic=True)) == (
        pytest.approx(2.5)
    )
    assert (
        cx.constraints[0].get_indices().tolist() == tall_slab.constraints[0].get_indices().tolist()
    )


def test_dissociated_acid_puts_h_on_surface_br(tall_slab):
    cands = P.enumerate_placements(
        tall_slab, "AcO", form="protonated", dissociate=True, modes=["bidentate_chelating"]
    )
    for cand in cands:
        cx = P.place_ligand(tall_slab, "AcO", cand)
        assert formula_counts(cx) == formula_counts(tall_slab) + Counter(C=2, H=4, O=2)
        h = max(i for i in range(len(cx)) if cx[i].symbol == "H")  # the moved H is the last H
        assert cx[cand.h_acceptor].symbol == "Br"
        v = cx.get_distance(cand.h_acceptor, h, mic=True, vector=True)
        assert np.allclose(v, [0, 0, 1.45], atol=1e-6)  # straight out of the surface
        # the acceptor is a top-plane Br
        assert cx.positions[cand.h_acceptor, 2] == pytest.approx(
            max(cx.positions[:h][[s == "Br" for s in cx.get_chemical_symbols()[:h]], 2])
        )


def test_bidentate_acid_without_dissociation_is_refused(tall_slab):
    with pytest.raises(InputError, match="deprotonated"):
        P.enumerate_placements(tall_slab, "OA", modes=["bidentate_chelating"])


def test_bridging_replaces_the_bridging_br(tall_slab):
    cands = P.enumerate_placements(tall_slab, "AcO", modes=["bidentate_bridging"])
    assert cands
    for cand in cands:
        cx = P.place_ligand(tall_slab, "AcO", cand)
        assert len(cand.removed) == 1 and tall_slab[cand.removed[0]].symbol == "Br"
        assert formula_counts(cx) == formula_counts(tall_slab) - Counter(Br=1) + Counter(
            C=2, H=3, O=2
        )
        pb1 = tall_slab.positions[cand.site]
        pb2 = pb1 + tall_slab.get_distance(cand.site, cand.site2, mic=True, vector=True)
        assert np.linalg.norm(pb2 - pb1) == pytest.approx(A_CSPBBR3_CUBIC)
        o = cx.positions[[s == "O" for s in cx.get_chemical_symbols()]]
        d1 = get_distances(o, [pb1], cell=cx.cell, pbc=True)[1].ravel()
        d2 = get_distances(o, [pb2], cell=cx.cell, pbc=True)[1].ravel()
        assert sorted([d1.min(), d2.min()]) == pytest.approx([2.5, 2.5])


def test_enumeration_is_deterministic_and_symmetry_free(tall_slab):
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    first = P.enumerate_placements(tall_slab, "AcO")
    again = P.enumerate_placements(tall_slab, "AcO")
    assert [c.model_dump() for c in first] == [c.model_dump() for c in again]
    everything = P.enumerate_placements(tall_slab, "AcO", dedupe=False)
    # every raw candidate is accounted for by exactly one kept representative
    assert sum(c.n_equivalent for c in first) == len(everything)
    # on a C4v Pb site, azimuths 0/90/180/270 are equivalent: 2 classes per mode for 45-degree steps
    for mode in ("bidentate_chelating", "monodentate"):
        assert sorted(c.azimuth_deg for c in first if c.mode == mode) == [0.0, 45.0]
    adaptor = AseAtomsAdaptor()
    matcher = StructureMatcher(ltol=0.1, stol=0.1, angle_tol=2, primitive_cell=False)
    kept = [adaptor.get_structure(P.place_ligand(tall_slab, "AcO", c)) for c in first]
    for a, b in itertools.combinations(range(len(kept)), 2):
        assert not matcher.fit(kept[a], kept[b]), (first[a].label, first[b].label)
    # a candidate dropped as a duplicate really is the same structure as its representative
    dup = next(
        c
        for c in everything
        if c.mode == "bidentate_chelating" and c.azimuth_deg == 90.0 and c.site != first[0].site
    )
    assert matcher.fit(kept[0], adaptor.get_structure(P.place_ligand(tall_slab, "AcO", dup)))


def test_enumeration_stable_on_a_slightly_distorted_slab(tall_slab):
    """A relaxed slab is never exactly symmetric: the same representatives must come back."""
    ref = [c.label for c in P.enumerate_placements(tall_slab, "AcO")]
    distorted = tall_slab.copy()
    distorted.set_constraint()
    distorted.rattle(0.02, seed=7)
    assert [c.label for c in P.enumerate_placements(distorted, "AcO")] == ref
    # without symmetry merging every site x azimuth x mode candidate is kept
    assert len(P.enumerate_placements(distorted, "AcO", dedupe=False)) == 4 * 8 * 2


def test_too_small_supercell_names_one_that_fits():
    small = cspbbr3_001_slab(supercell=(1, 1), vacuum=32.0)
    with pytest.raises(InputError, match=r"1x1 is too small .* smallest that fits is 2x2"):
        P.enumerate_placements(small, "2-HA")


def test_placement_needs_pbbr2_top_face():
    csbr = cspbbr3_001_slab(layers=3, termination="CsBr", vacuum=20)
    with pytest.raises(InputError, match="PbBr2 top face"):
        P.enumerate_placements(csbr, "AcO")


def test_other_anchor_families_place(tall_slab):
    from dftflow.structures.ligands import ligand_from_smiles

    for smiles, mode, bond in [
        ("CCCCN", "monodentate", 2.6),
        ("CCCCCCCCCCCCS", "monodentate", 2.9),
    ]:
        spec = ligand_from_smiles(smiles, name=smiles)
        cand = P.enumerate_placements(tall_slab, spec)[0]
        assert cand.mode == mode
        cx = P.place_ligand(tall_slab, spec, cand)
        binder = [i for i in range(len(tall_slab), len(cx)) if cx[i].symbol in ("N", "S")]
        assert cx.get_distance(cand.site, binder[0], mic=True) == pytest.approx(bond)
        # lone pair to the surface: every other ligand atom is farther from the Pb than N/S
        d = cx.get_distances(cand.site, range(len(tall_slab), len(cx)), mic=True)
        assert d.min() == pytest.approx(bond)
    ammonium = ligand_from_smiles("CCCC[NH3+]", name="BA+")
    cand = P.enumerate_placements(tall_slab, ammonium)[0]
    assert cand.mode == "a_site"
    phos = ligand_from_smiles("CCCCCCCCP(=O)(O)O", name="OPA")
    cands = P.enumerate_placements(tall_slab, phos, dissociate=True)
    assert {c.mode for c in cands} >= {"bidentate_chelating"}


def test_molecule_in_cell_and_split_complex(tall_slab):
    from dftflow.structures.ligands import get_ligand, ligand_molecule

    mol = P.molecule_in_cell(ligand_molecule(get_ligand("OA")), tall_slab.cell)
    assert np.allclose(mol.cell[:], tall_slab.cell[:])
    assert mol.get_chemical_formula("hill") == "C18H34O2"
    centre = 0.5 * tall_slab.cell[:].sum(axis=0)
    lo, hi = mol.positions.min(axis=0), mol.positions.max(axis=0)
    assert np.allclose(0.5 * (lo + hi), centre)
    assert hi[2] - lo[2] > 15.0  # standing along z
    assert min_image_self_distance(mol.positions, mol.cell[:]) >= 2.0
    with pytest.raises(InputError, match="periodic image"):
        P.molecule_in_cell(ligand_molecule(get_ligand("OA")), np.diag([11.7, 11.7, 15.0]))

    cand = P.enumerate_placements(tall_slab, "OA")[0]
    cx = P.place_ligand(tall_slab, "OA", cand)
    slab_part, lig_part = P.split_complex(cx)
    assert np.allclose(slab_part.positions, tall_slab.positions)
    assert slab_part.get_chemical_symbols() == tall_slab.get_chemical_symbols()
    assert slab_part.constraints[0].get_indices().tolist() == (
        tall_slab.constraints[0].get_indices().tolist()
    )
    assert lig_part.get_chemical_formula("hill") == "C18H34O2"
    assert np.allclose(lig_part.cell[:], cx.cell[:])
    assert set(lig_part.get_chemical_symbols()).isdisjoint(SLAB_EL)
    with pytest.raises(InputError):
        P.split_complex(tall_slab)


def test_coverage_two_acetates_on_distinct_sites(tall_slab):
    first = P.enumerate_placements(tall_slab, "AcO", modes=["bidentate_chelating"])[0]
    cover = P.coverage_placements(tall_slab, first, 2)
    assert len({c.site for c in cover}) == 2
    d_sites = tall_slab.get_distance(cover[0].site, cover[1].site, mic=True)
    assert d_sites == pytest.approx(np.sqrt(2) * A_CSPBBR3_CUBIC)  # diagonal: farthest apart
    cx = P.place_ligands(tall_slab, [("AcO", c) for c in cover])
    assert formula_counts(cx) == formula_counts(tall_slab) + Counter(C=4, H=6, O=4)
    with pytest.raises(InputError, match="same Pb"):
        P.place_ligands(tall_slab, [("AcO", first), ("AcO", first)])
