"""Binding-mode labels and anomalies on hand-built geometries (placements moved by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from dftflow.errors import InputError
from dftflow.screening import enumeration as E
from dftflow.screening import labels as LB
from dftflow.screening.records import BINDING_MODES, EXCLUDING_ANOMALIES
from dftflow.structures import ligands as L
from dftflow.structures.ligand_atoms import ligand_indices_of
from dftflow.structures.placement import enumerate_placements, place_ligand
from dftflow.structures.slab import cspbbr3_001_slab


@pytest.fixture(scope="module")
def slab():
    return cspbbr3_001_slab(supercell=(2, 2), layers=5, vacuum=15.0)


@pytest.fixture(scope="module")
def acid():
    return L.ligand_from_smiles("CC(=O)O", name="acetic")


def _complex(slab, spec, mode, form="as_is", dissociate=False):
    """The first placement of one mode, upright, azimuth 0 (and its ligand indices)."""
    placement = enumerate_placements(
        slab, spec, modes=[mode], azimuths_deg=[0.0], form=form, dissociate=dissociate
    )[0]
    cx = place_ligand(slab, spec, placement)
    return cx, ligand_indices_of(cx)


@pytest.fixture(scope="module")
def monodentate(slab, acid):
    return _complex(slab, acid, "monodentate")


def _label(start, lig, moved=None, **kw):
    return LB.label_geometry(moved if moved is not None else start, lig, start, **kw)


def _symbols_of(atoms, idx, element):
    return [i for i in idx if atoms[i].symbol == element]


def test_monodentate_start_is_monodentate(monodentate):
    cx, lig = monodentate
    lab = _label(cx, lig)
    assert (lab.binding_mode, lab.bound_as) == ("monodentate", "monodentate")
    assert len(lab.binding_atoms) == 1 and cx[lab.binding_atoms[0]].symbol == "O"
    assert len(lab.bound_pb) == 1 and cx[lab.bound_pb[0]].symbol == "Pb"
    assert not lab.h_on_br and not lab.excluded and lab.anomalies == [] and lab.reason is None
    assert LB.early_stop_reason(cx, lig) is None


def test_chelating_radical_is_chelating(slab, acid):
    cx, lig = _complex(slab, acid, "bidentate_chelating", form="radical")
    lab = _label(cx, lig)
    assert lab.binding_mode == "chelating"
    assert len(lab.binding_atoms) == 2 and len(lab.bound_pb) == 1
    assert not lab.excluded


@pytest.mark.parametrize("mode", ["bidentate_bridging", "bidentate_bridging_over_br"])
def test_bridging_is_bridging(slab, acid, mode):
    cx, lig = _complex(slab, acid, mode, form="radical")
    lab = _label(cx, lig)
    assert lab.binding_mode == "bridging"
    assert len(lab.binding_atoms) == 2 and len(lab.bound_pb) == 2
    assert not lab.excluded


@pytest.mark.parametrize(
    "mode,bound_as", [("bidentate_chelating", "chelating"), ("monodentate", "monodentate")]
)
def test_dissociated_start_is_dissociated_with_its_binding(slab, acid, mode, bound_as):
    cx, lig = _complex(slab, acid, mode, dissociate=True)
    lab = _label(cx, lig)
    assert (lab.binding_mode, lab.bound_as) == ("dissociated", bound_as)
    assert lab.h_on_br and not lab.excluded and lab.anomalies == []
    assert LB.early_stop_reason(cx, lig) is None  # the H on a Br is no fragment


def test_acidic_h_that_moves_to_a_br_during_relaxation_is_dissociated(slab, monodentate):
    cx, lig = monodentate
    relaxed = cx.copy()
    h = next(
        i
        for i in _symbols_of(cx, lig, "H")
        if min(
            cx.get_distances(i, lig, mic=True)[
                [k for k, j in enumerate(lig) if cx[j].symbol == "O"]
            ]
        )
        < 1.1
    )  # the O-H hydrogen
    top_br = max((i for i in range(len(slab)) if slab[i].symbol == "Br"), key=lambda i: slab[i].z)
    relaxed.positions[h] = slab.positions[top_br] + [0.0, 0.0, 1.45]
    lab = LB.label_geometry(relaxed, lig, cx)
    assert lab.binding_mode == "dissociated" and lab.h_on_br and not lab.excluded


def test_a_methyl_h_on_a_br_is_fragmentation_not_dissociation(slab, monodentate):
    cx, lig = monodentate
    relaxed = cx.copy()
    c_atoms = _symbols_of(cx, lig, "C")
    methyl_h = next(
        i for i in _symbols_of(cx, lig, "H") if cx.get_distances(i, c_atoms, mic=True).min() < 1.2
    )
    top_br = max((i for i in range(len(slab)) if slab[i].symbol == "Br"), key=lambda i: slab[i].z)
    relaxed.positions[methyl_h] = slab.positions[top_br] + [0.0, 0.0, 1.45]
    lab = LB.label_geometry(relaxed, lig, cx)
    assert "fragmented" in lab.anomalies and lab.excluded
    assert f"H{methyl_h} left its atom" in lab.reason


def test_lifted_ligand_is_physisorbed(monodentate):
    cx, lig = monodentate
    lifted = cx.copy()
    lifted.positions[lig] += [0.0, 0.0, 1.5]  # O 4 A above its Pb: no bond, still at the surface
    lab = _label(cx, lig, lifted)
    assert lab.binding_mode == "physisorbed" and lab.bound_as is None
    assert lab.bound_pb == [] and lab.binding_atoms == []
    assert not lab.excluded


def test_ligand_pulled_up_8_A_is_desorbed_and_excluded(monodentate):
    cx, lig = monodentate
    far = cx.copy()
    far.positions[lig] += [0.0, 0.0, 8.0]
    lab = _label(cx, lig, far)
    assert lab.binding_mode == "desorbed" and lab.anomalies == ["desorbed"] and lab.excluded
    assert lab.reason.startswith("desorbed: ligand ") and "A above the surface" in lab.reason
    assert LB.early_stop_reason(far, lig).startswith("desorbed: ligand")
    height = float(far.positions[lig, 2].min() - max(far.positions[: lig[0], 2]))
    assert f"{height:.1f}" in LB.early_stop_reason(far, lig)


def test_stretched_c_c_bond_is_fragmented(monodentate):
    cx, lig = monodentate
    broken = cx.copy()
    c_methyl, c_carboxyl = sorted(
        _symbols_of(cx, lig, "C"),
        key=lambda i: cx.get_distances(i, _symbols_of(cx, lig, "O"), mic=True).min(),
        reverse=True,
    )
    bond = broken.positions[c_methyl] - broken.positions[c_carboxyl]
    shift = bond / np.linalg.norm(bond) * (3.0 - np.linalg.norm(bond))
    methyl = [c_methyl] + [
        i for i in _symbols_of(cx, lig, "H") if cx.get_distance(i, c_methyl, mic=True) < 1.2
    ]
    broken.positions[methyl] += shift  # C-C now 3 A, the methyl group intact
    assert broken.get_distance(c_methyl, c_carboxyl, mic=True) == pytest.approx(3.0)
    lab = _label(cx, lig, broken)
    assert "fragmented" in lab.anomalies and lab.excluded
    assert "2 heavy-atom pieces" in lab.reason
    assert lab.binding_mode == "monodentate"  # still labelled, then excluded with the reason
    assert LB.early_stop_reason(broken, lig).startswith("fragmented")


def test_surface_br_moved_1p5_A_is_excluded_0p5_A_is_not(slab, monodentate):
    cx, lig = monodentate
    top_br = max((i for i in range(len(slab)) if slab[i].symbol == "Br"), key=lambda i: slab[i].z)
    for dx, excluded in ((1.5, True), (0.5, False)):
        moved = cx.copy()
        moved.positions[top_br] += [dx, 0.0, 0.0]
        lab = _label(cx, lig, moved)
        assert ("surface_moved" in lab.anomalies) is excluded
        assert lab.excluded is excluded
        if excluded:
            assert f"Br{top_br} by 1.50 A" in lab.reason


def test_moves_across_the_periodic_boundary_are_not_surface_moves(slab, monodentate):
    cx, lig = monodentate
    wrapped = cx.copy()
    wrapped.positions[: len(slab)] += wrapped.cell[0]  # every slab atom by one lattice vector
    lab = _label(cx, lig, wrapped)
    assert "surface_moved" not in lab.anomalies and lab.binding_mode == "monodentate"


def test_labels_do_not_depend_on_where_the_cell_cuts_the_ligand(monodentate):
    cx, lig = monodentate
    shifted = cx.copy()
    # put the ligand across the cell edge: its atoms wrapped into the cell on both sides
    shifted.translate(-shifted.positions[lig].mean(axis=0) * [1, 1, 0])
    shifted.wrap()
    assert np.ptp(shifted.positions[lig, 0]) > 5.0  # really cut by the boundary
    lab = LB.label_geometry(shifted, lig, shifted)
    assert lab.binding_mode == "monodentate" and lab.anomalies == []
    assert LB.early_stop_reason(shifted, lig) is None


def test_step_cap_is_labelled_not_excluded(monodentate):
    cx, lig = monodentate
    lab = _label(cx, lig, hit_step_cap=True)
    assert lab.anomalies == ["step_cap"] and not lab.excluded and lab.reason is None
    assert "step_cap" not in EXCLUDING_ANOMALIES


def test_every_binding_mode_label_is_a_record_mode(slab):
    """The labels the enumeration's own starts get are record binding modes."""
    spec = L.ligand_from_smiles("CS(=O)(=O)O", name="MsOH")
    enum = E.enumerate_screen(slab, spec, azimuths_deg=[0.0], tilts_deg=[0.0], h_acceptors=1)
    seen = set()
    for cand in enum.candidates:
        cx = E.build_candidate(slab, spec, cand)
        lab = LB.label_geometry(cx, ligand_indices_of(cx), cx)
        assert lab.binding_mode in BINDING_MODES and not lab.excluded
        seen.add((cand.family, lab.binding_mode, lab.bound_as))
    assert ("molecular", "monodentate", "monodentate") in seen
    assert ("dissociated", "dissociated", "chelating") in seen
    assert ("dissociated", "dissociated", "bridging") in seen


def test_bad_label_inputs(monodentate):
    cx, lig = monodentate
    with pytest.raises(InputError, match="same atoms"):
        LB.label_geometry(cx[:-1], lig[:-1], cx)
    with pytest.raises(InputError, match="no ligand atoms"):
        LB.label_geometry(cx, [], cx)
