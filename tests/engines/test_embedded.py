"""Embedded engine (CHGNet + GPAW): small real calculations checked against physics and formats."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from dftflow.errors import EngineError, InputError
from dftflow.testing.synthetic_runs import PBBR2_WATER_CELL, pbbr2_water_complex

pytestmark = pytest.mark.embedded

# Coarse, fast settings: Gamma only, h = 0.3 A, single zeta + polarisation.
FAST = {"grid_spacing_A": 0.3, "kpts_slab": (1, 1, 1), "basis": "szp(dzp)"}
CELL = list(PBBR2_WATER_CELL)


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("gpaw")
    pytest.importorskip("chgnet")
    from dftflow.engines.embedded import EmbeddedEngine

    return EmbeddedEngine(**FAST)


@pytest.fixture(scope="module")
def trio(engine, tmp_path_factory):
    """Statics of the complex and its two fragments (same cell), and a repeat of the complex."""
    root = tmp_path_factory.mktemp("trio")
    cplx = pbbr2_water_complex()
    docs = {
        "complex": engine.run(cplx, "static", root / "complex", label="complex"),
        "pbbr2": engine.run(cplx[:3], "static", root / "pbbr2", label="pbbr2"),
        "water": engine.run(cplx[3:], "static", root / "water", label="water"),
        "repeat": engine.run(cplx, "static", root / "repeat", label="repeat"),
    }
    return docs


@pytest.mark.slow
def test_static_energy_finite_and_reproducible(trio):
    e1, e2 = trio["complex"].energy_eV, trio["repeat"].energy_eV
    assert np.isfinite(e1)
    assert abs(e1 - e2) < 1e-6
    # e_0 (sigma -> 0) and the free energy of a closed-shell molecule agree closely
    assert abs(trio["complex"].free_energy_eV - e1) < 0.05
    # binding of water to PbBr2 is attractive and chemically sized (not a unit error)
    e_bind = e1 - trio["pbbr2"].energy_eV - trio["water"].energy_eV
    assert -1.5 < e_bind < -0.05


@pytest.mark.slow
def test_trio_shares_one_grid_and_chgcar_counts_electrons(trio):
    from pymatgen.io.vasp import Chgcar

    grids = {k: tuple(d.fft_grid) for k, d in trio.items()}
    assert len(set(grids.values())) == 1
    assert grids["complex"] == (36, 28, 48)  # 10.2/0.3 = 34 -> 36, 8.1/0.3 = 27 -> 28, 45 -> 48
    valence = {"complex": 14 + 2 * 7 + 6 + 2, "pbbr2": 14 + 2 * 7, "water": 6 + 2}
    for key, n in valence.items():
        doc = trio[key]
        assert doc.nelect == pytest.approx(n)
        chg = Chgcar.from_file(doc.volumetric_files["CHGCAR"])
        assert chg.data["total"].shape == grids[key]
        # VASP convention: sum(rho*V)/N_grid = electrons
        assert chg.data["total"].sum() / chg.ngridpts == pytest.approx(n, abs=1e-3)
        assert np.allclose(chg.structure.lattice.abc, CELL)


#: Files only VASP writes: an embedded run must never pretend to be VASP.
VASP_ONLY_FILES = {
    "vasprun.xml",
    "OUTCAR",
    "OSZICAR",
    "DOSCAR",
    "INCAR",
    "KPOINTS",
    "POTCAR",
    "POTCAR.spec",
    "EIGENVAL",
    "PROCAR",
}


@pytest.mark.slow
def test_static_writes_its_own_records_and_no_vasp_file(trio):
    from pathlib import Path

    from dftflow.parse.run import load_bands, load_complete_dos, load_taskdoc

    doc = trio["complex"]
    directory = Path(doc.directory)
    names = {p.name for p in directory.iterdir()}
    assert not names & VASP_ONLY_FILES, names & VASP_ONLY_FILES
    assert {"taskdoc.json", "POSCAR", "gpaw.txt", "bands.npz", "dos.json.gz", "CHGCAR"} <= names
    assert "GPAW" in (directory / "CHGCAR").read_text().splitlines()[0]
    on_disk = load_taskdoc(directory).model_dump(mode="json")
    assert on_disk == doc.model_dump(mode="json")  # the TaskDoc on disk is the one returned
    assert doc.engine == "embedded" and "gpaw" in doc.engine_version
    assert doc.has_dos and doc.has_projected_dos and "CHGCAR" in doc.volumetric_files
    assert doc.converged_electronic and doc.converged_ionic and doc.n_ionic_steps == 1
    assert doc.ispin == 1  # even electron count: spin-paired
    assert doc.metadata["gpaw"]["scf_iterations"] > 1  # a real SCF ran and was counted
    # no force evaluation in a static by default (static_forces: false): null, never a made-up 0
    assert doc.max_force_eV_per_A is None
    assert doc.parameters["embedded"]["static_forces"] is False
    structure, bands = load_bands(directory)
    # LORBIT=11 layout: 9 orbitals per atom; Loewdin weights of each band sum to one
    nspin, nk, nb, nat, norb = bands.projections.shape
    assert (nspin, nat, norb) == (1, 6, 9) and len(structure) == 6
    assert np.allclose(bands.projections.sum(axis=(3, 4)), 1.0, atol=2e-3)
    assert bands.efermi_eV == pytest.approx(doc.efermi_eV)
    # electrons from the occupations (0..1 per spin orbital, x2 for one channel) = nelect
    electrons = 2 * np.einsum("k,skb->", bands.kweights, bands.occupations)
    assert electrons == pytest.approx(doc.nelect, abs=1e-3)
    # the CompleteDos integrates to 2 x nbands states and its Pb d sits far below E_F
    cdos = load_complete_dos(directory)
    assert abs(cdos.efermi - doc.efermi_eV) < 1e-3
    from pymatgen.electronic_structure.core import Spin

    total = np.trapezoid(cdos.densities[Spin.up], cdos.energies)
    assert total == pytest.approx(2 * nb, rel=1e-3)
    eig = bands.eigenvalues_eV[0, 0]
    pb_d = bands.projections[0, 0, :, 0, 4:9].sum(axis=1)
    assert eig[np.argmax(pb_d)] < doc.efermi_eV - 10.0
    assert len(cdos.pdos) == 6


@pytest.mark.slow
def test_odd_electron_system_is_spin_polarised(engine, tmp_path):
    """An odd-electron system with no slab (a radical; here an H atom) is spin-polarised at once."""
    h = Atoms("H", positions=[[5.1, 4.05, 6.5]], cell=CELL, pbc=True)
    doc = engine.run(h, "static", tmp_path / "h")
    assert doc.ispin == 2 and doc.nelect == pytest.approx(1)
    gp = doc.metadata["gpaw"]
    assert gp["spin_polarized"] is True and "no slab (a radical)" in gp["spin_treatment"]
    assert gp["restricted_scf_iterations"] is None


def test_odd_electron_share_and_participation_number():
    """Where the odd electron of a restricted result sits: half-filled states count fully, full
    and empty ones not at all; the participation number counts the atoms it spreads over."""
    from dftflow.engines.embedded_gpaw import odd_electron_atoms

    occ = np.array([[[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]]])  # (1 spin, 2 k, 3 bands)
    proj = np.zeros((1, 2, 3, 4, 9))
    proj[0, :, 0, 0, 0] = 1.0  # the full band on atom 0: not counted
    proj[0, :, 2, 1, 0] = 1.0  # the empty band on atom 1: not counted
    proj[0, 0, 1, 2, 1] = 1.0  # the half-filled band on atom 2 at k0 ...
    proj[0, 1, 1, 3, 2] = 1.0  # ... and on atom 3 at k1
    share, n = odd_electron_atoms(occ, np.array([1.0, 3.0]), proj)
    assert np.allclose(share, [0.0, 0.0, 0.25, 0.75])
    assert n == pytest.approx(1 / (0.25**2 + 0.75**2))
    proj[0, :, 1, :, 0] = 0.25  # the same band spread evenly over the four atoms
    proj[0, 0, 1, 2, 1] = proj[0, 1, 1, 3, 2] = 0.0
    assert odd_electron_atoms(occ, np.ones(2), proj)[1] == pytest.approx(4.0)
    assert odd_electron_atoms(np.ones((1, 2, 3)), np.ones(2), proj)[1] == 0.0  # closed shell


@pytest.mark.slow(seconds=15)
def test_odd_electron_on_a_slab_delocalised_stays_restricted(engine, tmp_path):
    """A 3x3 Br sheet (63 electrons) in a slab cell: restricted first; the odd electron's
    states spread over all nine equivalent atoms, so the restricted result is kept (ispin 1)."""
    sheet = Atoms(
        "Br9",
        positions=[[1.5 + 3.0 * i, 1.5 + 3.0 * j, 6.0] for i in range(3) for j in range(3)],
        cell=[9.0, 9.0, 12.0],
        pbc=True,
    )
    doc = engine.run(sheet, "static", tmp_path / "sheet")
    assert doc.nelect == pytest.approx(63) and doc.ispin == 1
    note = doc.metadata["gpaw"]["spin_treatment"]
    assert "spin-restricted" in note and "spread over 9.0 atoms" in note
    assert doc.metadata["gpaw"]["restricted_scf_iterations"] is None
    assert not (tmp_path / "sheet" / "gpaw-restricted.txt").exists()


@pytest.mark.slow(seconds=10)
def test_odd_electron_on_a_slab_localised_is_redone_spin_polarised(engine, tmp_path):
    """A Br atom in a slab cell (7 electrons, a perovskite element: restricted first): its odd
    electron sits on one atom, so the restricted SCF is kept in its own log and the result is
    spin-polarised with the moment seeded there."""
    br = Atoms("Br", positions=[[5.1, 4.05, 6.5]], cell=CELL, pbc=True)
    doc = engine.run(br, "static", tmp_path / "br")
    assert doc.nelect == pytest.approx(7) and doc.ispin == 2
    gp = doc.metadata["gpaw"]
    assert gp["spin_polarized"] is True and "on 1.0 atoms (localised" in gp["spin_treatment"]
    assert gp["restricted_scf_iterations"] >= 1
    assert (tmp_path / "br" / "gpaw-restricted.txt").is_file()
    assert "Total magnetic moment" in (tmp_path / "br" / "gpaw.txt").read_text()


@pytest.mark.slow(seconds=8)
def test_odd_electron_at_a_surface_defect_is_spin_polarised_directly(engine, tmp_path):
    """A structure carrying a defect record (per-atom under-coordination): no restricted pass,
    spin-polarised at once with the moment seeded on the under-coordinated atom."""
    from dftflow.structures.defects import UNDERCOORDINATED_ARRAY

    br = Atoms("Br", positions=[[5.1, 4.05, 6.5]], cell=CELL, pbc=True)
    br.arrays[UNDERCOORDINATED_ARRAY] = np.array([1])
    doc = engine.run(br, "static", tmp_path / "br")
    gp = doc.metadata["gpaw"]
    assert doc.ispin == 2 and gp["restricted_scf_iterations"] is None
    assert "at a surface defect" in gp["spin_treatment"]
    assert not (tmp_path / "br" / "gpaw-restricted.txt").exists()


def test_molecule_relax_converges_to_fmax(engine, tmp_path):
    water = molecule("H2O")
    water.set_cell(CELL)
    water.center()
    water.positions[1] += [0.1, 0.0, 0.05]  # distort
    doc = engine.run(water, "molecule_relax", tmp_path / "h2o")
    assert doc.converged_ionic and doc.converged_electronic
    assert doc.max_force_eV_per_A <= engine.settings["fmax_eV_per_A"] + 1e-9
    assert doc.n_ionic_steps > 1
    assert doc.metadata["energy_source"].startswith("CHGNet")
    oh = doc.final_structure().get_distance(0, 1)
    assert 0.93 < oh < 1.02  # O-H bond of water (PBE ~0.97 A)
    from ase.io import read

    frames = read(tmp_path / "h2o" / "relax.traj", index=":")
    assert len(frames) == doc.n_ionic_steps  # every CHGNet step recorded, none invented
    assert frames[-1].get_potential_energy() == pytest.approx(doc.energy_eV)
    names = {p.name for p in (tmp_path / "h2o").iterdir()}
    assert not names & VASP_ONLY_FILES and {"POSCAR", "CONTCAR", "taskdoc.json"} <= names
    assert doc.free_energy_eV is None  # no smearing in CHGNet: nothing to report


def test_slab_relax_keeps_fixed_atoms(engine, tmp_path):
    from dftflow.structures.slab import cspbbr3_001_slab

    slab = cspbbr3_001_slab(layers=3, supercell=(1, 1), vacuum=10.0)
    fixed = slab.constraints[0].index
    slab.rattle(0.05, seed=1)
    doc = engine.run(slab, "slab_relax", tmp_path / "slab")
    final = doc.final_structure()
    assert np.allclose(final.cart_coords[fixed], slab.positions[fixed], atol=1e-6)
    assert final.site_properties["selective_dynamics"][fixed[0]] == [False, False, False]
    assert doc.converged_ionic and doc.max_force_eV_per_A <= 0.02 + 1e-9


def test_bulk_relax_changes_the_cell(engine, tmp_path):
    from dftflow.structures.bulk import cspbbr3_cubic

    bulk = cspbbr3_cubic(a=5.6)  # compressed start
    doc = engine.run(bulk, "bulk_relax", tmp_path / "bulk")
    a = doc.final_structure().lattice.a
    assert 5.75 < a < 6.1  # CHGNet (PBE-like) cubic CsPbBr3; experiment 5.87 A
    assert doc.converged_ionic


def test_unsupported_elements_one_line(engine, tmp_path):
    cm = Atoms("Cm", positions=[[1, 1, 1]], cell=[6, 6, 6], pbc=True)
    with pytest.raises(EngineError, match="CHGNet cannot handle element") as exc:
        engine.run(cm, "molecule_relax", tmp_path / "cm")
    assert "\n" not in str(exc.value)
    tc = Atoms("Tc2", positions=[[3, 3, 6], [3, 3, 8.2]], cell=[6, 6, 14], pbc=True)
    with pytest.raises(EngineError, match="no PBE PAW setup for Tc"):
        engine.run(tc, "static", tmp_path / "tc")


def test_bad_stage_and_empty_structure(engine, tmp_path):
    with pytest.raises(InputError, match="unknown stage"):
        engine.run(pbbr2_water_complex(), "md", tmp_path / "x")
    with pytest.raises(InputError, match="no atoms"):
        engine.run(Atoms(cell=CELL), "static", tmp_path / "y")


def test_missing_gpaw_names_install_command(monkeypatch, tmp_path):
    from dftflow.engines import embedded_gpaw

    monkeypatch.setitem(sys.modules, "gpaw", None)
    with pytest.raises(EngineError, match="scripts/install.sh") as exc:
        embedded_gpaw.import_gpaw()
    assert "dftflow[embedded]" in str(exc.value) and "\n" not in str(exc.value)


def test_missing_chgnet_names_install_command(monkeypatch):
    from dftflow.engines import embedded_chgnet

    monkeypatch.setattr(embedded_chgnet, "_MODEL_CACHE", {})
    monkeypatch.setitem(sys.modules, "chgnet.model", None)
    with pytest.raises(EngineError, match="dftflow\\[embedded\\]"):
        embedded_chgnet.load_chgnet()
