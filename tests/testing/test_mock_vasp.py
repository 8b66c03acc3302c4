"""The mock VASP executable: input checks, physics of its outputs, failure plans."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pymatgen.electronic_structure.core import Spin
from pymatgen.io.vasp import Chgcar, Incar, Poscar, Vasprun

from dftflow.inputs.vasp import write_inputs
from dftflow.parse.vasp import parse_directory
from dftflow.testing import mock_vasp
from dftflow.testing.mock_vasp import FAILURES, failure_plan, kpoint_set


@pytest.fixture(scope="module")
def slab():
    from dftflow.structures.slab import cspbbr3_001_slab

    return cspbbr3_001_slab(layers=3, supercell=(1, 1))


@pytest.fixture(scope="module")
def bulk_cell():
    from dftflow.structures.bulk import cspbbr3_cubic

    return cspbbr3_cubic()


def _run(directory, monkeypatch, capsys):
    monkeypatch.chdir(directory)
    code = mock_vasp.main()
    out = capsys.readouterr()
    return code, out.out, out.err


def test_refuses_changed_encut_and_kpoints(slab, tmp_path, monkeypatch, capsys, mock_vasp):
    write_inputs(slab, "slab_relax", tmp_path, potcar_spec=True)
    incar = Incar.from_file(tmp_path / "INCAR")
    incar["ENCUT"] = 300
    incar.write_file(tmp_path / "INCAR")
    code, _, err = _run(tmp_path, monkeypatch, capsys)
    assert code != 0 and "ENCUT" in err and "400" in err
    assert not (tmp_path / "vasprun.xml").exists()
    write_inputs(slab, "slab_relax", tmp_path, potcar_spec=True)
    (tmp_path / "KPOINTS").write_text("auto\n0\nMonkhorst\n4 4 1\n")
    code, _, err = _run(tmp_path, monkeypatch, capsys)
    assert code != 0 and "KPOINTS mesh [4, 4, 1]" in err


def test_refuses_foreign_tag_and_wrong_potcar(slab, tmp_path, monkeypatch, capsys, mock_vasp):
    write_inputs(slab, "slab_relax", tmp_path, potcar_spec=True)
    incar = Incar.from_file(tmp_path / "INCAR")
    incar["KSPACING"] = 0.3
    incar.write_file(tmp_path / "INCAR")
    code, _, err = _run(tmp_path, monkeypatch, capsys)
    assert code != 0 and "KSPACING" in err
    write_inputs(slab, "slab_relax", tmp_path, potcar_spec=True)
    (tmp_path / "POTCAR.spec").write_text("Cs_sv\nPb\nBr\n")
    code, _, err = _run(tmp_path, monkeypatch, capsys)
    assert code != 0 and "POTCAR" in err


def test_accepts_custodian_changes(slab, tmp_path, monkeypatch, capsys, mock_vasp):
    write_inputs(slab, "slab_relax", tmp_path, potcar_spec=True)
    incar = Incar.from_file(tmp_path / "INCAR")
    incar.update({"ALGO": "All", "ISEARCH": 1, "IBRION": 1, "EDIFF": 1e-6, "NELMIN": 8})
    incar.write_file(tmp_path / "INCAR")
    code, _, err = _run(tmp_path, monkeypatch, capsys)
    assert code == 0, err
    # looser EDIFF is not a custodian fix: refused
    incar["EDIFF"] = 1e-3
    incar.write_file(tmp_path / "INCAR")
    code, _, err = _run(tmp_path, monkeypatch, capsys)
    assert code != 0 and "EDIFF" in err


def test_relaxation_honours_selective_dynamics(slab, tmp_path, monkeypatch, capsys, mock_vasp):
    write_inputs(slab, "slab_relax", tmp_path, potcar_spec=True)
    code, out, err = _run(tmp_path, monkeypatch, capsys)
    assert code == 0, err
    doc = parse_directory(tmp_path)
    assert doc.n_ionic_steps > 2 and doc.converged_ionic and doc.converged_electronic
    assert doc.max_force_eV_per_A <= 0.02
    vr = Vasprun(tmp_path / "vasprun.xml", parse_potcar_file=False)
    energies = [s["e_0_energy"] for s in vr.ionic_steps]
    assert energies[-1] < energies[0]
    start = Poscar.from_file(tmp_path / "POSCAR").structure
    end = Poscar.from_file(tmp_path / "CONTCAR").structure
    fixed = sorted(slab.constraints[0].index.tolist())
    moved = np.linalg.norm(end.cart_coords - start.cart_coords, axis=1)
    assert np.allclose(moved[fixed], 0, atol=1e-6)
    free = [i for i in range(len(slab)) if i not in fixed]
    assert moved[free].max() > 1e-3
    assert "reached required accuracy" in out


def test_bulk_relax_changes_cell(bulk_cell, tmp_path, monkeypatch, capsys, mock_vasp):
    strained = bulk_cell.copy()
    strained.set_cell(bulk_cell.cell * 1.03, scale_atoms=True)
    write_inputs(strained, "bulk_relax", tmp_path, potcar_spec=True)
    code, _, err = _run(tmp_path, monkeypatch, capsys)
    assert code == 0, err
    doc = parse_directory(tmp_path)
    a_end = doc.final_structure().lattice.a
    assert a_end < strained.cell.lengths()[0] - 0.05  # ISIF=3 relaxed the volume


def test_static_electronic_structure(slab, bulk_cell, tmp_path, monkeypatch, capsys, mock_vasp):
    results = {}
    for name, atoms in (("slab", slab), ("bulk", bulk_cell)):
        d = tmp_path / name
        over = {"ENCUT": 150} if name == "slab" else {"ENCUT": 150, "KPOINTS": [4, 4, 4]}
        write_inputs(atoms, "static", d, overrides=over, potcar_spec=True)
        code, _, err = _run(d, monkeypatch, capsys)
        assert code == 0, err
        vr = Vasprun(d / "vasprun.xml", parse_potcar_file=False, parse_projected_eigen=True)
        results[name] = (d, vr)
    d, vr = results["slab"]
    gap, cbm, vbm, _ = vr.eigenvalue_band_properties
    bulk_gap = results["bulk"][1].eigenvalue_band_properties[0]
    assert 0.5 < gap < bulk_gap  # a gap; surface states narrow it relative to the bulk
    assert vbm - 0.3 <= vr.efermi <= cbm
    # projections: LORBIT 11 weights of each band sum to 1 over atoms and orbitals
    proj = vr.projected_eigenvalues[Spin.up]
    assert np.allclose(proj.sum(axis=(2, 3)), 1.0, atol=1e-3)
    assert len(vr.complete_dos.pdos) == len(slab)
    chg = Chgcar.from_file(d / "CHGCAR")
    incar = Incar.from_file(d / "INCAR")
    assert list(chg.data["total"].shape) == [incar["NGXF"], incar["NGYF"], incar["NGZF"]]
    nelect = vr.parameters["NELECT"]
    assert chg.data["total"].mean() == pytest.approx(nelect, rel=1e-6)  # rho*V averaged = N
    assert (d / "AECCAR0").is_file() and (d / "AECCAR2").is_file()
    doc = parse_directory(d)
    assert doc.has_projected_dos and doc.fft_grid == list(chg.data["total"].shape)


def test_kpoint_set_time_reversal():
    k, w = kpoint_set([8, 8, 1], "Monkhorst")
    assert len(k) == 32 and w.sum() == pytest.approx(1.0)
    k, w = kpoint_set([1, 1, 1], "Gamma")
    assert np.allclose(k, 0) and w.tolist() == [1.0]
    k, w = kpoint_set([3, 3, 1], "Gamma")
    assert len(k) == 5 and w[0] == pytest.approx(1 / 9)


def test_failure_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("DFTFLOW_MOCK_VASP_FAILURES", "1:zbrent, 3:brmix")
    (tmp_path / "MOCK_VASP_FAILURES").write_text("2: eddrmm\n")
    assert failure_plan(tmp_path) == {1: "zbrent", 2: "eddrmm", 3: "brmix"}
    monkeypatch.setenv("DFTFLOW_MOCK_VASP_FAILURES", "1:nonsense")
    with pytest.raises(mock_vasp.MockVaspRefusal, match="unknown failure kind"):
        failure_plan(tmp_path)
    assert {"zbrent", "subspacematrix", "brmix", "edddav", "eddrmm", "too_few_bands"} <= set(
        FAILURES
    )


def test_injected_message_is_vasp_text(slab, tmp_path, monkeypatch, capsys, mock_vasp):
    from custodian.vasp.handlers import VaspErrorHandler

    write_inputs(slab, "slab_relax", tmp_path, potcar_spec=True)
    mock_vasp.fail({1: "zbrent"})
    code, out, _ = _run(tmp_path, monkeypatch, capsys)
    assert code == 1
    assert any(msg in out for msg in VaspErrorHandler.error_msgs["zbrent"])
    (tmp_path / "vasp.out").write_text(out)
    handler = VaspErrorHandler()
    assert handler.check(str(tmp_path)) and handler.errors == {"zbrent"}


def test_console_script_runs(slab, tmp_path, mock_vasp):
    write_inputs(slab, "molecule_relax" if False else "slab_relax", tmp_path, potcar_spec=True)
    proc = subprocess.run(
        [sys.executable, "-m", "dftflow.testing.mock_vasp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "vasprun.xml").is_file() and (tmp_path / "OSZICAR").is_file()


def test_radical_molecule_is_spin_polarised(tmp_path, monkeypatch, capsys, mock_vasp):
    from ase.build import molecule
    from pymatgen.io.vasp import Oszicar

    acid = molecule("CH3COOH")
    radical = acid[[i for i in range(len(acid)) if i != 7]]  # CH3COO., 23 valence electrons
    radical.center(vacuum=5.0)
    radical.pbc = True
    write_inputs(radical, "molecule_relax", tmp_path, potcar_spec=True)
    assert Incar.from_file(tmp_path / "INCAR")["ISPIN"] == 2
    code, _, err = _run(tmp_path, monkeypatch, capsys)
    assert code == 0, err
    doc = parse_directory(tmp_path)
    assert doc.ispin == 2 and doc.nelect == pytest.approx(23.0) and doc.kpoints == [1, 1, 1]
    vr = Vasprun(tmp_path / "vasprun.xml", parse_potcar_file=False)
    occ_up = vr.eigenvalues[Spin.up][..., 1].sum()
    occ_down = vr.eigenvalues[Spin.down][..., 1].sum()
    assert occ_up - occ_down == pytest.approx(1.0, abs=1e-3)  # one unpaired electron
    assert Oszicar(tmp_path / "OSZICAR").ionic_steps[-1]["mag"] == pytest.approx(1.0, abs=1e-3)
    assert doc.converged_ionic and doc.max_force_eV_per_A <= 0.02


# -------------------------------------------------------------------------------------------------
# charge densities: every CHGCAR holds NELECT electrons, the Δρ trio conserves charge
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def acetate_trio():
    """Acetate radical (bidentate) on a 1x1, 3-plane slab: complex, slab and ligand, one cell."""
    from dftflow.structures import ligands, placement
    from dftflow.structures.slab import cspbbr3_001_slab

    slab = cspbbr3_001_slab(layers=3, supercell=(1, 1), vacuum=10.0)
    spec = ligands.get_ligand("AcO")
    chosen = placement.enumerate_placements(
        slab, spec, modes=["bidentate_chelating"], form="radical"
    )[0]
    complex_ = placement.place_ligand(slab, spec, chosen)
    slab_part, ligand_part = placement.split_complex(complex_)
    return {"complex": complex_, "slab": slab_part, "ligand": ligand_part}


def test_atomic_density_integral_exact_on_any_grid(acetate_trio):
    from dftflow.testing.mock_vasp_physics import atomic_density

    atoms = acetate_trio["complex"]
    frac = atoms.get_scaled_positions(wrap=False)
    assert (frac < 0).any()  # the ligand sticks out of the cell (unwrapped complex)
    wrapped = atoms.copy()
    wrapped.wrap()
    charges = np.random.default_rng(3).uniform(0.5, 9.0, len(atoms))
    vol = atoms.get_volume()
    for grid in [(6, 7, 9), (12, 12, 32), (24, 24, 64)]:
        rho = atomic_density(atoms, charges, grid)
        assert rho.mean() * vol == pytest.approx(charges.sum(), rel=1e-12)
        assert np.allclose(rho, atomic_density(wrapped, charges, grid), atol=1e-12 * rho.max())
        # widths broadened to the grid: no Fourier ringing into negative densities
        assert rho.min() > -1e-3 * rho.max()


@pytest.mark.slow
@pytest.mark.parametrize(
    "over",
    [
        {"ENCUT": 120},  # the test study's cutoff
        {},  # the paper's 400 eV: the default (fine) grid
        {"ENCUT": 120, "NGXF": 12, "NGYF": 12, "NGZF": 32},  # coarser than the Gaussians
    ],
    ids=["encut120", "default", "coarse"],
)
def test_chgcar_trio_conserves_charge(acetate_trio, over, tmp_path, monkeypatch, capsys, mock_vasp):
    from pymatgen.io.vasp import Outcar

    from dftflow.inputs.vasp import shared_fft_grid

    over = {"KPOINTS": [2, 2, 1], **over}  # the k-mesh does not matter here: fewer projections
    if "NGXF" not in over:
        grid = shared_fft_grid(list(acetate_trio.values()), over.get("ENCUT", 400))
        over.update(NGXF=grid[0], NGYF=grid[1], NGZF=grid[2])
    dens, nelect = {}, {}
    for name, atoms in acetate_trio.items():
        d = tmp_path / name
        write_inputs(atoms, "static", d, overrides=over, potcar_spec=True)
        code, _, err = _run(d, monkeypatch, capsys)
        assert code == 0, err
        outcar = Outcar(d / "OUTCAR")
        outcar.read_pattern({"nelect": r"NELECT\s*=\s*([\d.]+)"}, terminate_on_match=True)
        nelect[name] = float(outcar.data["nelect"][0][0])
        chg = Chgcar.from_file(d / "CHGCAR")
        assert list(chg.data["total"].shape) == [over["NGXF"], over["NGYF"], over["NGZF"]]
        dens[name] = chg.data["total"]
        # pymatgen's convention: rho*V summed over the grid / grid points = electrons
        assert chg.data["total"].sum() / chg.ngridpts == pytest.approx(nelect[name], rel=1e-6)
        assert chg.data["total"].min() > -1e-3 * chg.data["total"].max()
    assert nelect["complex"] == nelect["slab"] + nelect["ligand"]  # 80 + 23 e (Cs_sv Pb_d Br)
    drho = dens["complex"] - dens["slab"] - dens["ligand"]
    assert abs(drho.mean()) < 1e-3  # ∫Δρ in electrons
    # Δρ is not trivial: the Mulliken populations move charge between slab and ligand
    assert np.abs(drho).max() > 1e-3 * dens["complex"].max()
    assert drho.max() > 0 > drho.min()
