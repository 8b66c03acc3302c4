"""VASP-format writer round trip through pymatgen, and parsing of real VASP outputs."""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.constraints import FixAtoms
from pymatgen.electronic_structure.core import Spin
from pymatgen.io.vasp import Chgcar, Oszicar, Outcar, Vasprun

from dftflow.cli import main
from dftflow.engines.base import ElectronicResult
from dftflow.errors import OutputError
from dftflow.parse.vasp import complete_dos, inputs_digest, parse_directory
from dftflow.testing.real_vasp import real_vasp_dir
from dftflow.testing.vasp_writer import write_vasp_outputs


def fix(folder: str) -> Path:
    """A custodian real-VASP folder (kept outside the repo; the test fails when absent)."""
    return real_vasp_dir(f"custodian/{folder}")


def _result(nspin: int = 2, converged: bool = True) -> ElectronicResult:
    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    atoms.set_constraint(FixAtoms([0, 1]))
    rng = np.random.default_rng(1)
    nat, nk, nb = len(atoms), 4, 12
    eig = np.sort(rng.normal(size=(nspin, nk, nb)) * 3, axis=2)
    occ = (eig < 0).astype(float)
    proj = rng.random((nspin, nk, nb, nat, 9)) * 0.1
    steps = []
    for i in range(3):
        a = atoms.copy()
        a.positions[2:] += 0.01 * i
        forces = rng.normal(size=(nat, 3)) * 0.1
        forces[0] = [5.0, 5.0, 5.0]  # a large force on a FIXED atom must not count
        steps.append(
            dict(
                structure=a,
                e_0_eV=-10.0 - 0.1 * i,
                free_energy_eV=-10.01 - 0.1 * i,
                forces_eV_per_A=forces,
            )
        )
    return ElectronicResult(
        atoms=steps[-1]["structure"],
        energy_eV=-10.2,
        free_energy_eV=-10.21,
        forces_eV_per_A=steps[-1]["forces_eV_per_A"],
        efermi_eV=0.0,
        eigenvalues_eV=eig,
        occupations=occ,
        kpoints=rng.random((nk, 3)),
        kweights=np.array([1, 2, 3, 2]) / 8,
        projections=proj,
        density=np.full((10, 10, 12), 0.1),
        nelect=40.0,
        ionic_steps=steps,
        electronic_steps_per_ionic=[10, 6, 5],
        converged_electronic=converged,
    )


INCAR = {
    "ENCUT": 400,
    "NSW": 50,
    "IBRION": 2,
    "ISPIN": 2,
    "NELM": 60,
    "EDIFFG": -0.02,
    "LORBIT": 11,
    "NEDOS": 301,
    "SIGMA": 0.05,
    "ISMEAR": 0,
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("written")
    res = _result()
    write_vasp_outputs(d, res, incar=INCAR, kpoints=[2, 2, 2], generator="dftflow-test")
    return d, res


def test_vasprun_round_trip(written):
    d, res = written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(d / "vasprun.xml", parse_potcar_file=False, parse_projected_eigen=True)
    assert vr.final_energy == pytest.approx(-10.2, abs=1e-8)
    assert vr.ionic_steps[-1]["e_fr_energy"] == pytest.approx(-10.21, abs=1e-8)
    assert [s["e_0_energy"] for s in vr.ionic_steps] == pytest.approx([-10.0, -10.1, -10.2])
    assert vr.converged_electronic and vr.converged_ionic
    assert vr.efermi == pytest.approx(0.0)
    assert vr.parameters["NGXF"] == 10 and vr.parameters["NGZF"] == 12
    assert vr.kpoints.kpts == [(2, 2, 2)]
    assert np.allclose(vr.actual_kpoints_weights, [1 / 8, 2 / 8, 3 / 8, 2 / 8])
    eig_up = vr.eigenvalues[Spin.up][..., 0]
    assert np.allclose(eig_up, res.eigenvalues_eV[0], atol=6e-5)
    assert np.allclose(vr.eigenvalues[Spin.down][..., 1], res.occupations[1])
    pe = vr.projected_eigenvalues[Spin.up]
    assert pe.shape == (4, 12, 8, 9)
    assert np.allclose(pe, res.projections[0], atol=6e-5)
    assert np.allclose(vr.ionic_steps[-1]["forces"], res.forces_eV_per_A, atol=1e-7)
    assert vr.final_structure.site_properties["selective_dynamics"][0] == [False] * 3
    cdos = vr.complete_dos
    # projected DOS summed over sites and orbitals equals the total DOS
    # (the projections are the weights)
    pdos_sum = sum(sum(d[Spin.up] for d in site.values()) for site in vr.pdos)
    w = res.projections[0].sum(axis=(2, 3))
    assert pdos_sum.max() > 0
    assert cdos.get_densities(Spin.up).max() > 0
    # total DOS integrates to 2/nspin * nbands per spin channel (all bands inside the window)
    de = cdos.energies[1] - cdos.energies[0]
    assert cdos.densities[Spin.up].sum() * de == pytest.approx(12.0, rel=1e-3)
    assert w.shape == (4, 12)


def test_outcar_oszicar_chgcar_round_trip(written):
    d, res = written
    out = Outcar(d / "OUTCAR")
    assert out.final_energy == pytest.approx(-10.2)
    assert out.final_fr_energy == pytest.approx(-10.21)
    assert out.final_energy_wo_entrp == pytest.approx(2 * -10.2 + 10.21)
    assert out.efermi == pytest.approx(0.0)
    assert out.nelect == pytest.approx(40.0)
    assert out.run_stats["Elapsed time (sec)"] == pytest.approx(1.0)
    out.read_pattern({"ngf": r"NGXF=\s*(\d+)\s*NGYF=\s*(\d+)\s*NGZF=\s*(\d+)"}, postprocess=int)
    assert out.data["ngf"][0] == [10, 10, 12]
    osz = Oszicar(d / "OSZICAR")
    assert [len(e) for e in osz.electronic_steps] == [10, 6, 5]
    assert osz.final_energy == pytest.approx(-10.2)
    assert osz.ionic_steps[-1]["F"] == pytest.approx(-10.21)
    chg = Chgcar.from_file(d / "CHGCAR")
    assert chg.data["total"].shape == (10, 10, 12)
    # CHGCAR stores rho*V; pymatgen divides by V in its integrals
    assert chg.data["total"].mean() / chg.structure.volume == pytest.approx(0.1)
    contcar = (d / "CONTCAR").read_text()
    assert "Selective dynamics" in contcar or "selective dynamics" in contcar.lower()


def test_doscar_read_by_ase(written):
    from ase.calculators.vasp import VaspDos

    d, _ = written
    dos = VaspDos(str(d / "DOSCAR"))
    assert dos.dos.shape == (2, 301)
    assert dos.site_dos(0, "s-up").shape == (301,)


def test_parse_directory_written(written):
    d, res = written
    doc = parse_directory(d, label="x", stage="slab_relax")
    assert doc.energy_eV == pytest.approx(-10.2)
    assert doc.free_energy_eV == pytest.approx(-10.21)
    free = np.linalg.norm(res.forces_eV_per_A[2:], axis=1).max()
    assert doc.max_force_eV_per_A == pytest.approx(free, abs=1e-6)  # fixed atom's 8.7 eV/A ignored
    assert doc.converged_electronic and doc.converged_ionic
    assert doc.n_ionic_steps == 3
    assert doc.fft_grid == [10, 10, 12]
    assert doc.kpoints == [2, 2, 2]
    assert doc.ispin == 2 and doc.nelect == pytest.approx(40.0)
    assert doc.has_dos and doc.has_projected_dos
    assert "CHGCAR" in doc.volumetric_files
    assert doc.formula == "Na4Cl4"
    assert doc.engine == "vasp"  # VASP-format files: the engine that ran them names itself


def test_unconverged_is_marked_not_error(tmp_path):
    res = _result(converged=False)
    write_vasp_outputs(tmp_path, res, incar=INCAR, kpoints=[2, 2, 2])
    doc = parse_directory(tmp_path)
    assert doc.converged_electronic is False
    assert any("SCF" in w for w in doc.warnings)


@pytest.mark.parametrize(
    "folder",
    [
        "v541_ispin2_static_lorbit_quirk",
        "v533_ispin2_relax",
        "v544_ispin1_static",
        "v642_relax",
        "v641_unconverged",
    ],
)
def test_real_vasp_matches_pymatgen(folder):
    d = fix(folder)
    doc = parse_directory(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(next(d.glob("vasprun.xml*")), parse_potcar_file=False)
    assert doc.energy_eV == pytest.approx(float(vr.final_energy), abs=1e-8)
    assert doc.free_energy_eV == pytest.approx(vr.ionic_steps[-1]["e_fr_energy"], abs=1e-8)
    assert doc.efermi_eV == pytest.approx(vr.efermi)
    assert doc.converged_electronic == vr.converged_electronic
    assert doc.converged_ionic == vr.converged_ionic
    assert doc.n_ionic_steps == len(vr.ionic_steps)
    assert doc.ispin == vr.parameters["ISPIN"]
    assert doc.nelect == pytest.approx(vr.parameters["NELECT"])
    assert doc.final_structure() == vr.final_structure
    forces = np.asarray(vr.ionic_steps[-1]["forces"])
    sd = vr.final_structure.site_properties.get("selective_dynamics")
    if sd is not None:
        forces = forces * np.asarray(sd)
    assert doc.max_force_eV_per_A == pytest.approx(np.linalg.norm(forces, axis=1).max())
    assert doc.fft_grid == [vr.parameters["NGXF"], vr.parameters["NGYF"], vr.parameters["NGZF"]]


def test_real_values_known():
    doc = parse_directory(fix("v544_ispin1_static"))
    assert doc.formula == "Na4Cl4"
    assert doc.free_energy_eV == pytest.approx(-27.11090125)
    assert doc.engine_version.startswith("5.4.4")
    assert doc.wall_time_s == pytest.approx(93.923)
    relax = parse_directory(fix("v533_ispin2_relax"))
    assert relax.n_ionic_steps == 3 and relax.kpoints == [2, 4, 2]


def test_nacl_static_matches_pymatgen_vasprun_and_outcar():
    """NaCl static (LORBIT 0): total DOS only; timing and energy agree with pymatgen's Outcar."""
    d = fix("v544_ispin1_static")
    doc = parse_directory(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(d / "vasprun.xml.gz", parse_potcar_file=False)
    outcar = Outcar(str(d / "OUTCAR.gz"))
    assert doc.formula == vr.final_structure.composition.formula.replace(" ", "")
    assert doc.converged_electronic is vr.converged_electronic is True
    assert doc.converged_ionic is vr.converged_ionic is True
    assert doc.n_ionic_steps == len(vr.ionic_steps) == 1
    assert doc.ispin == vr.parameters["ISPIN"] == 1
    assert doc.has_dos and not doc.has_projected_dos  # LORBIT 0: total DOS only
    assert doc.wall_time_s == pytest.approx(outcar.run_stats["Elapsed time (sec)"])
    assert outcar.final_energy == pytest.approx(doc.energy_eV, abs=1e-6)  # same run, both files


def test_real_unconverged_run_is_marked_not_error():
    doc = parse_directory(fix("v641_unconverged"))
    assert doc.converged_electronic is False and doc.engine_version.startswith("6.4.1")
    assert any("did not converge" in w for w in doc.warnings)
    relax = parse_directory(fix("v642_relax"))
    assert relax.converged_ionic and relax.n_ionic_steps == 3 and relax.engine_version == "6.4.2"
    assert relax.wall_time_s == pytest.approx(18.865)


def test_lorbit_quirk_keeps_projected_dos():
    d = fix("v541_ispin2_static_lorbit_quirk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(d / "vasprun.xml.gz", parse_potcar_file=False)
    assert vr.parameters["LORBIT"] is False  # what the file claims
    doc = parse_directory(d)
    assert doc.has_projected_dos and doc.engine_version == "5.4.1"
    cdos = complete_dos(d)
    assert len(cdos.pdos) == 14
    site = cdos.structure[0]
    assert sum(np.sum(v[Spin.up]) for v in cdos.pdos[site].values()) > 0


def test_lorbit_quirk_rebuilds_pdos_from_projections(tmp_path):
    """A 5.4.1-style file with <projected> but no <partial> block still gives a PDOS."""
    d = fix("v541_ispin2_static_lorbit_quirk")
    text = gzip.open(d / "vasprun.xml.gz", "rt").read()
    start, end = text.index("<partial>"), text.index("</partial>") + len("</partial>")
    (tmp_path / "vasprun.xml").write_text(text[:start] + text[end:])
    doc = parse_directory(tmp_path)
    assert doc.has_projected_dos
    cdos = complete_dos(tmp_path)
    assert len(cdos.pdos) == 14
    full = complete_dos(d)
    s_full = full.get_spd_dos()
    s_rebuilt = cdos.get_spd_dos()
    # same spectral weight per orbital type (within the broadening differences)
    for orb in s_full:
        a = np.trapezoid(s_full[orb].densities[Spin.up], s_full[orb].energies)
        b = np.trapezoid(s_rebuilt[orb].densities[Spin.up], s_rebuilt[orb].energies)
        assert b == pytest.approx(a, rel=0.1)


def test_truncated_vasprun_is_one_line_error(capsys):
    with pytest.raises(OutputError, match="truncated or corrupt") as exc:
        parse_directory(fix("v535_truncated_vasprun"))
    assert "\n" not in str(exc.value)
    assert main(["parse", str(fix("v535_truncated_vasprun")), "--json"]) == 2
    err = capsys.readouterr().err
    assert "truncated or corrupt" in err and err.count("\n") == 1


def test_truncated_outcar_is_error(tmp_path):
    src = fix("v544_ispin1_static")
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    text = gzip.open(src / "OUTCAR.gz", "rt").read()
    (tmp_path / "OUTCAR.gz").unlink()
    (tmp_path / "OUTCAR").write_text(text[: len(text) // 2])
    with pytest.raises(OutputError, match="OUTCAR") as exc:
        parse_directory(tmp_path)
    assert "\n" not in str(exc.value)


def test_garbage_vasprun(tmp_path):
    (tmp_path / "vasprun.xml").write_text("this is not xml")
    with pytest.raises(OutputError):
        parse_directory(tmp_path)
    with pytest.raises(OutputError, match="no vasprun.xml"):
        parse_directory(tmp_path / "..")


def test_inputs_digest_changes_with_inputs(tmp_path):
    for name in ("INCAR", "KPOINTS", "POSCAR"):
        shutil.copy(fix("v544_ispin1_static") / name, tmp_path / name)
    (tmp_path / "POTCAR.spec").write_text("Na_pv\nCl\n")
    d1 = inputs_digest(tmp_path)
    (tmp_path / "INCAR").write_text((tmp_path / "INCAR").read_text() + "\nNSW = 3\n")
    assert inputs_digest(tmp_path) != d1 and len(d1) == 64


def test_corrections_from_custodian_json(written, tmp_path):
    d, _ = written
    for f in d.iterdir():
        shutil.copy(f, tmp_path / f.name)
    log = [
        {
            "job": {},
            "corrections": [
                {
                    "errors": ["zbrent"],
                    "actions": [{"dict": "INCAR", "action": {"_set": {"IBRION": 1}}}],
                    "handler": {"@module": "custodian.vasp.handlers", "@class": "VaspErrorHandler"},
                }
            ],
        }
    ]
    import json

    (tmp_path / "custodian.json").write_text(json.dumps(log))
    doc = parse_directory(tmp_path)
    assert doc.corrections[0].handler == "VaspErrorHandler"
    assert doc.corrections[0].actions[0]["action"]["_set"]["IBRION"] == 1
