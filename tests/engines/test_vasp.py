"""VaspEngine under custodian with the mock VASP: end to end, injected errors corrected, guards."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from pymatgen.io.vasp import Chgcar

from dftflow.engines import get_engine
from dftflow.engines.base import Engine
from dftflow.engines.vasp import VaspEngine
from dftflow.errors import EngineError, InputError
from dftflow.inputs.vasp import shared_fft_grid


@pytest.fixture(scope="module")
def slab():
    from dftflow.structures.slab import cspbbr3_001_slab

    return cspbbr3_001_slab(layers=3, supercell=(1, 1))


def _log(directory):
    return json.loads((directory / "custodian.json").read_text())


def test_slab_relax_end_to_end(slab, tmp_path, mock_vasp):
    engine = get_engine("mock")
    assert isinstance(engine, Engine) and engine.name == "mock"
    doc = engine.run(slab, "slab_relax", tmp_path, overrides={"NSW": 150}, label="slab")
    assert doc.engine == "mock" and doc.stage.value == "slab_relax" and doc.label == "slab"
    assert doc.converged_electronic and doc.converged_ionic
    assert doc.max_force_eV_per_A <= 0.02
    assert doc.overrides == {"NSW": 150}
    assert doc.kpoints == [8, 8, 1] and doc.corrections == []
    assert doc.inputs_digest and len(doc.inputs_digest) == 64
    assert doc.formula == "Cs1Pb2Br5" or sorted(doc.formula) == sorted("CsPb2Br5")
    assert _log(tmp_path)[0]["corrections"] == []
    assert (tmp_path / "POTCAR.spec").is_file() and not (tmp_path / "POTCAR").exists()


# Every injected failure corrected under custodian: tests/reliability/test_custodian_recovery.py


def test_unfixable_error_is_one_line_engine_error(slab, tmp_path, mock_vasp):
    mock_vasp.fail({1: "zbrent", 2: "zbrent", 3: "zbrent", 4: "zbrent"})
    with pytest.raises(EngineError, match="custodian") as exc:
        mock_vasp.engine(max_errors=2).run(slab, "slab_relax", tmp_path)
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_static_trio_shares_fft_grid_and_gives_charge_transfer(slab, tmp_path, mock_vasp):
    from ase.build import molecule

    mol = molecule("CH3COOH")
    mol.positions += [slab.cell[0][0] / 2, slab.cell[1][1] / 2, slab.positions[:, 2].max() + 3.0]
    mol.set_cell(slab.cell)
    mol.pbc = True
    complex_ = slab + mol
    grid = shared_fft_grid([complex_, slab, mol], encut_eV=150)
    over = {"ENCUT": 150, "NGXF": grid[0], "NGYF": grid[1], "NGZF": grid[2], "KPOINTS": [2, 2, 1]}
    engine = mock_vasp.engine()
    docs = {}
    for name, atoms in (("complex", complex_), ("slab", slab), ("ligand", mol)):
        lig_over = {**over, "system": "slab"} if name == "ligand" else over
        docs[name] = engine.run(atoms, "static", tmp_path / name, overrides=lig_over)
    assert {tuple(d.fft_grid) for d in docs.values()} == {tuple(grid)}
    rho = {n: Chgcar.from_file(d.volumetric_files["CHGCAR"]).data["total"] for n, d in docs.items()}
    diff = rho["complex"] - rho["slab"] - rho["ligand"]
    n_e = {n: rho[n].mean() for n in rho}
    assert n_e["complex"] == pytest.approx(n_e["slab"] + n_e["ligand"], rel=1e-6)
    assert abs(diff.mean()) < 1e-6 * n_e["complex"]  # charge is conserved ...
    assert np.abs(diff).max() > 1e-3 * np.abs(rho["complex"]).max()  # ... but redistributed


def test_engine_errors_are_one_line(slab, tmp_path, mock_vasp):
    with pytest.raises(EngineError, match="not found on PATH"):
        VaspEngine(vasp_cmd="no-such-vasp-binary").run(slab, "static", tmp_path)
    with pytest.raises(InputError, match="unknown stage"):
        get_engine("mock").run(slab, "relaxx", tmp_path)
    with pytest.raises(EngineError, match="unknown custodian handler"):
        VaspEngine(handlers=["NoSuchHandler"])
    with pytest.raises(InputError, match="unknown INCAR tag"):
        get_engine("mock").run(slab, "static", tmp_path, overrides={"ENCUTT": 3})


def test_guard_blocks_real_vasp(tmp_path):
    from dftflow.testing.vasp import is_real_vasp_command

    assert is_real_vasp_command(["srun", "-n", "4", "vasp_std"])
    assert is_real_vasp_command("mpirun /opt/vasp/bin/vasp_gam")
    assert not is_real_vasp_command(["dftflow-mock-vasp"])
    with pytest.raises(pytest.fail.Exception, match="real VASP"):
        subprocess.Popen(["vasp_std"], cwd=tmp_path)


@pytest.mark.slow
def test_frozen_job_is_killed_and_restarted(slab, tmp_path, mock_vasp, monkeypatch):
    monkeypatch.setenv("DFTFLOW_MOCK_VASP_FROZEN_S", "120")
    mock_vasp.fail({1: "frozen"})
    # monitor every 8 s; the mock writes CONTCAR and vasp.out within ~3 s, then hangs
    engine = mock_vasp.engine(frozen_timeout_s=4, polling_time_step=0.2, monitor_freq=40)
    doc = engine.run(slab, "slab_relax", tmp_path)
    assert [c.handler for c in doc.corrections] == ["FrozenJobErrorHandler"]
    assert doc.corrections[0].actions[0]["action"] == {"_file_copy": {"dest": "POSCAR"}}
    assert doc.converged_ionic


@pytest.mark.slow
def test_gamma_only_runs_use_gamma_command(slab, tmp_path, mock_vasp):
    """A configured cluster command: Gamma-only molecules go to gamma_cmd, others to vasp_cmd."""
    from ase.build import molecule

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("site_std", "site_gam"):
        script = bindir / name
        script.write_text(f"#!/bin/sh\necho {name} > ran_with\nexec dftflow-mock-vasp\n")
        script.chmod(0o755)
    engine = VaspEngine(
        vasp_cmd=str(bindir / "site_std"),
        gamma_cmd=str(bindir / "site_gam"),
        potcar_spec=True,
        polling_time_step=0.1,
        monitor_freq=600,
    )
    assert engine.name == "vasp"
    mol = molecule("CH3COOH")
    mol.center(vacuum=5.0)
    mol.pbc = True
    doc = engine.run(mol, "molecule_relax", tmp_path / "mol")
    assert (tmp_path / "mol" / "ran_with").read_text().strip() == "site_gam"
    assert doc.kpoints == [1, 1, 1] and doc.converged_ionic and doc.engine == "vasp"
