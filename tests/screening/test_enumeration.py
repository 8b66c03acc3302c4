"""Screen enumeration: counts per anchor, composition = slab + reference, conformers, caps."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from dftflow.errors import InputError
from dftflow.screening import enumeration as E
from dftflow.structures import ligands as L
from dftflow.structures.ligand_atoms import ligand_indices_of
from dftflow.structures.placement import BRIDGING_OVER_BR_PB_O_A
from dftflow.structures.slab import cspbbr3_001_slab

#: name -> (SMILES, reference or None for the default)
MOLECULES = {
    "acetic": ("CC(=O)O", None),
    "methylamine": ("CN", None),
    "methanethiol": ("CS", None),
    "methanesulfonic": ("CS(=O)(=O)O", None),
    "methylphosphonic": ("CP(=O)(O)O", None),
    "acetate": ("CC(=O)[O-]", None),
}
#: Candidates per '<family>-<mode>' on the 2x2, 5-plane slab (8 azimuths, tilts 0/30 deg, three
#: H acceptors). The 2x2 top face has one Pb site up to symmetry (C4v at each Pb), so these counts
#: are azimuths x tilts x acceptors after symmetry merging; ``bridging`` keeps the Br between the
#: two Pb (the composition stays slab + L).
EXPECTED = {
    "acetic": {
        "molecular-monodentate": 4,
        "dissociated-chelating": 10,
        "dissociated-bridging": 5,
        "dissociated-monodentate": 8,
    },
    "methylamine": {"molecular-monodentate": 4},
    "methanethiol": {"molecular-monodentate": 4, "dissociated-monodentate": 9},
    "methanesulfonic": {
        "molecular-monodentate": 4,
        "dissociated-chelating": 10,
        "dissociated-bridging": 6,
        "dissociated-monodentate": 13,
    },
    "methylphosphonic": {
        "molecular-monodentate": 4,
        "dissociated-chelating": 7,
        "dissociated-bridging": 6,
        "dissociated-monodentate": 12,
    },
    "acetate": {"radical-chelating": 4, "radical-bridging": 2, "radical-monodentate": 4},
}


@pytest.fixture(scope="module")
def slab():
    return cspbbr3_001_slab(supercell=(2, 2), layers=5, vacuum=15.0)


@pytest.fixture(scope="module")
def screens(slab):
    out = {}
    for name, (smiles, ref) in MOLECULES.items():
        spec = L.ligand_from_smiles(smiles, name=name)
        out[name] = (spec, E.enumerate_screen(slab, spec, ref))
    return out


@pytest.mark.parametrize("name", list(MOLECULES))
def test_counts_per_mode(screens, name):
    _, enum = screens[name]
    assert enum.n_by_mode == EXPECTED[name]
    assert len(enum.candidates) == sum(EXPECTED[name].values())
    keys = [c.key for c in enum.candidates]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)  # path-safe
    assert [c.placement.index for c in enum.candidates] == list(range(len(keys)))


def test_a_carboxylic_acid_gets_dozens_of_placements(screens):
    assert len(screens["acetic"][1].candidates) >= 24


def test_references_and_forms(screens):
    expect = {
        "acetic": ("neutral", "as_is"),
        "methylamine": ("neutral", "as_is"),
        "methanethiol": ("neutral", "as_is"),
        "methanesulfonic": ("neutral", "as_is"),
        "methylphosphonic": ("neutral", "as_is"),
        "acetate": ("radical", "radical"),  # a given anion: the embedded engine has no charges
    }
    for name, (ref, form) in expect.items():
        assert (screens[name][1].reference, screens[name][1].reference_form) == (ref, form)
    aco = screens["acetate"][0]
    assert E.reference_form(aco, "neutral") == "protonated"
    assert E.reference_form(aco, "anion") == "as_is"
    acid = screens["acetic"][0]
    assert E.reference_form(acid, "anion") == "deprotonated"
    ammonium = L.ligand_from_smiles("C[NH3+]", name="mam")
    assert E.default_reference(ammonium) == "neutral"
    assert E.reference_form(ammonium, "neutral") == "deprotonated"
    assert E.reference_form(ammonium, "cation") == "as_is"


@pytest.mark.parametrize("name", list(MOLECULES))
def test_every_candidate_is_slab_plus_reference_species(slab, screens, name):
    spec, enum = screens[name]
    reference = L.ligand_molecule(spec, enum.reference_form)
    want = Counter(slab.get_chemical_symbols()) + Counter(reference.get_chemical_symbols())
    n_slab = len(slab)
    for cand in enum.candidates:
        cx = E.build_candidate(slab, spec, cand)
        assert Counter(cx.get_chemical_symbols()) == want, cand.key
        assert ligand_indices_of(cx) == list(range(n_slab, len(cx)))  # slab kept whole, first
        assert cx.info["charge"] == reference.info["charge"]  # complex total = slab + L
        assert cx.info["candidate"] == cand.key
        assert not cand.placement.removed  # no Br taken out (that is another composition)
        if cand.family == "dissociated":
            assert cand.form == "deprotonated" and cand.placement.dissociate


def test_bridging_keeps_the_br_and_binds_two_pb(slab, screens):
    spec, enum = screens["acetate"]
    bridging = [c for c in enum.candidates if c.placement.mode == "bidentate_bridging_over_br"]
    assert bridging
    for cand in bridging:
        cx = E.build_candidate(slab, spec, cand)
        o = [i for i in ligand_indices_of(cx) if cx[i].symbol == "O"]
        p = cand.placement
        d = (
            cx.get_distances(p.site, o, mic=True).min(),
            cx.get_distances(p.site2, o, mic=True).min(),
        )
        assert p.site != p.site2
        assert np.allclose(d, BRIDGING_OVER_BR_PB_O_A, atol=0.02)


def test_acid_families(screens):
    fam = {name: {c.family for c in e.candidates} for name, (_, e) in screens.items()}
    assert fam["acetic"] == {"molecular", "dissociated"}
    assert fam["methylamine"] == {"molecular"}
    assert fam["acetate"] == {"radical"}


def test_conformers_for_chains_only():
    acetic = L.ligand_from_smiles("CC(=O)O")
    octanoic = L.ligand_from_smiles("CCCCCCCC(=O)O")
    assert L.n_conformers(acetic, "as_is", 5) == 1
    assert L.n_conformers(octanoic, "as_is", 5) > 1
    assert L.n_conformers(octanoic, "as_is", 2) == 2
    c0 = L.ligand_molecule(octanoic)
    anchor = L.ligand_anchor(octanoic)
    heavy = [i for i, s in enumerate(c0.get_chemical_symbols()) if s != "H"]
    for k in range(1, L.n_conformers(octanoic, "as_is", 5)):
        ck = L.ligand_molecule(octanoic, "as_is", k)
        assert ck.get_chemical_symbols() == c0.get_chemical_symbols()
        assert ck.info["conformer"] == k
        # the frame placement expects: anchor O centroid at the origin, farthest heavy atom on +z
        assert np.allclose(ck.positions[list(anchor.binding_atoms)].mean(axis=0), 0.0, atol=1e-6)
        far = heavy[int(np.argmax(np.linalg.norm(ck.positions[heavy], axis=1)))]
        assert np.allclose(ck.positions[far, :2], 0.0, atol=1e-6)
        assert ck.positions[far, 2] > 0
        assert not np.allclose(ck.positions[heavy], c0.positions[heavy], atol=0.3)
    with pytest.raises(InputError, match="conformer 99 does not exist"):
        L.ligand_molecule(octanoic, "as_is", 99)
    # conformer 0 is the geometry of before (unchanged default)
    assert np.array_equal(L.ligand_molecule(octanoic, "as_is", 0).positions, c0.positions)


def test_chain_candidates_span_conformers(slab):
    spec = L.ligand_from_smiles("CCCC(=O)O", name="butanoic")
    enum = E.enumerate_screen(slab, spec, azimuths_deg=[0.0, 45.0], tilts_deg=[0.0])
    conformers = {c.conformer for c in enum.candidates}
    assert conformers == set(range(L.n_conformers(spec, "as_is", 3))) and len(conformers) > 1
    one = E.enumerate_screen(
        slab, spec, azimuths_deg=[0.0, 45.0], tilts_deg=[0.0], max_conformers=1
    )
    assert {c.conformer for c in one.candidates} == {0}
    assert len(one.candidates) < len(enum.candidates)
    cand = next(c for c in enum.candidates if c.conformer == 1)
    cx = E.build_candidate(slab, spec, cand)
    assert cx.info["conformer"] == 1


def test_order_is_deterministic(slab, screens):
    spec, enum = screens["acetate"]
    again = E.enumerate_screen(slab, spec)
    assert [c.key for c in again.candidates] == [c.key for c in enum.candidates]
    assert again.model_dump() == enum.model_dump()


def test_cap_spreads_over_modes(slab, screens):
    spec, full = screens["acetic"]
    capped = E.enumerate_screen(slab, spec, max_candidates=8)
    assert len(capped.candidates) == 8
    assert set(capped.n_by_mode) == set(full.n_by_mode)  # every mode kept
    assert all(n == 2 for n in capped.n_by_mode.values())
    full_keys = [c.key for c in full.candidates]
    kept = [c.key for c in capped.candidates]
    assert kept == [k for k in full_keys if k in set(kept)]  # a subset, in enumeration order
    assert any("max_candidates=8" in n for n in capped.notes)


def test_bad_inputs_are_one_line_errors(slab):
    cases = [
        (L.LigandSpec(name="butane", smiles="CCCC", anchor="carboxylic_acid"), None, "no carbox"),
        (L.LigandSpec(name="bad", smiles="C(((", anchor="carboxylic_acid"), None, "invalid SMILES"),
        (L.ligand_from_smiles("CN", name="mam"), "radical", "acidic anchors only"),
        (L.ligand_from_smiles("CC(=O)O", name="aa"), "cation", "amines"),
        (L.ligand_from_smiles("CC(=O)O", name="aa"), "ion", "unknown reference species"),
        # decanoic acid standing needs 17.4 A: tilting it to fit would bias the screen
        (L.ligand_from_smiles("C" * 9 + "C(=O)O", name="c10"), None, "vacuum 15.0 A .* too small"),
    ]
    for spec, ref, msg in cases:
        with pytest.raises(InputError, match=msg) as info:
            E.enumerate_screen(slab, spec, ref, azimuths_deg=[0.0], max_conformers=1)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="max_candidates"):
        E.enumerate_screen(slab, L.ligand_from_smiles("CN"), max_candidates=0)


def test_too_large_for_the_supercell_names_the_one_that_fits():
    small = cspbbr3_001_slab(supercell=(1, 1), layers=5, vacuum=15.0)
    spec = L.ligand_from_smiles("OC(=O)C(c1ccccc1)(c1ccccc1)c1ccccc1", name="triphenylacetic")
    with pytest.raises(InputError, match="supercell 1x1 is too small .* smallest that fits is 2x2"):
        E.enumerate_screen(small, spec)


def test_sulfonic_acid_and_sulfonate_are_anchors():
    acid = L.detect_anchors("CS(=O)(=O)O")
    assert [a.kind for a in acid] == ["sulfonic_acid"]
    assert acid[0].family == "sulfonate" and acid[0].protonated
    assert acid[0].central_atom == 1 and acid[0].acidic_atom == 4
    anion = L.detect_anchors("CS(=O)(=O)[O-]")
    assert [(a.kind, a.protonated) for a in anion] == [("sulfonate", False)]
    spec = L.ligand_from_smiles("CS(=O)(=O)O", name="MsOH")
    smi, charge, model = L.form_smiles(spec, "deprotonated")
    assert (charge, model) == (-1, "anion") and L.detect_anchors(smi)[0].kind == "sulfonate"
    assert L.reference_species_name(spec) == "neutral acid"
    # sulfuric-acid-like S without carbon is no sulfonate anchor; the help names the new group
    with pytest.raises(InputError, match="sulfonic acid/sulfonate"):
        L.ligand_from_smiles("COS(=O)(=O)OC")


def test_candidates_rebuild_from_json(slab, screens):
    """A candidate written to disk rebuilds the same complex (resume after an interruption)."""
    spec, enum = screens["methanesulfonic"]
    for cand in enum.candidates[::7]:
        again = E.ScreenCandidate.model_validate_json(cand.model_dump_json())
        assert again == cand
        a, b = E.build_candidate(slab, spec, cand), E.build_candidate(slab, spec, again)
        assert np.array_equal(a.positions, b.positions)
        assert a.get_chemical_symbols() == b.get_chemical_symbols()


def test_sulfonate_binds_at_a_bromide_vacancy(slab):
    from dftflow.structures.defects import defect_slab
    from dftflow.structures.placement import enumerate_placements

    defective, _ = defect_slab(slab, "V_Br")
    spec = L.ligand_from_smiles("CS(=O)(=O)[O-]", name="mesylate")
    for mode in ("vacancy_site", "exposed_pb"):
        placements = enumerate_placements(defective, spec, modes=[mode], azimuths_deg=[0.0])
        assert placements and placements[0].anchor == "sulfonate"
