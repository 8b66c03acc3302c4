"""CLI: dftflow inputs / calc / parse, including one-line errors with exit code 2."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from ase.io import write
from pymatgen.io.vasp import Incar, Kpoints, Vasprun

from dftflow.cli import main
from dftflow.testing.real_vasp import real_vasp_dir


def real_run(folder: str) -> Path:
    """A real VASP run from custodian's test files (kept outside the repo, see real_vasp.py)."""
    return real_vasp_dir(f"custodian/{folder}")


@pytest.fixture
def poscar(tmp_path):
    from dftflow.structures.slab import cspbbr3_001_slab

    path = tmp_path / "POSCAR"
    write(path, cspbbr3_001_slab(layers=3, supercell=(1, 1)), format="vasp", direct=True)
    return path


def test_inputs_with_overrides(poscar, tmp_path, capsys):
    out = tmp_path / "in"
    code = main(
        [
            "inputs",
            str(poscar),
            "--stage",
            "slab_relax",
            "-o",
            str(out),
            "--potcar-spec",
            "--set",
            "ENCUT=450",
            "--set",
            "KPOINTS=4 4 1",
            "--set",
            "LREAL=none",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["overrides"] == {"ENCUT": 450.0, "KPOINTS": [4, 4, 1], "LREAL": None}
    incar = Incar.from_file(out / "INCAR")
    assert incar["ENCUT"] == 450 and "LREAL" not in incar and incar["IDIPOL"] == 3
    assert list(Kpoints.from_file(out / "KPOINTS").kpts[0]) == [4, 4, 1]
    from pymatgen.io.vasp import Poscar

    from dftflow.inputs.params import POTCAR_SYMBOLS

    site_symbols = Poscar.from_file(out / "POSCAR").site_symbols
    assert (out / "POTCAR.spec").read_text().split() == [POTCAR_SYMBOLS[s] for s in site_symbols]
    assert "Selective dynamics" in (out / "POSCAR").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stage", "slab_relaxx"], "unknown stage"),
        (["--stage", "static", "--set", "ENCUTT=3"], "unknown INCAR tag"),
        (["--stage", "static", "--set", "ENCUT"], "KEY=VALUE"),
    ],
)
def test_inputs_mistakes(poscar, tmp_path, capsys, args, message):
    code = main(["inputs", str(poscar), "-o", str(tmp_path / "x"), "--potcar-spec", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_unreadable_structure_and_missing_potcar_dir(poscar, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif")
    assert main(["inputs", str(bad), "--stage", "static", "-o", str(tmp_path / "a")]) == 2
    assert "cannot read a structure" in capsys.readouterr().err
    assert main(["inputs", str(tmp_path / "nope.vasp"), "--stage", "static", "-o", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    from pymatgen.core import SETTINGS

    monkeypatch.delenv("PMG_VASP_PSP_DIR", raising=False)
    monkeypatch.setitem(SETTINGS, "PMG_VASP_PSP_DIR", None)
    assert main(["inputs", str(poscar), "--stage", "static", "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "PMG_VASP_PSP_DIR" in err and err.count("\n") == 1


def test_parse_json_keys_and_values(capsys):
    nacl = real_run("v544_ispin1_static")  # VASP 5.4.4, ISPIN 1, static NaCl
    code = main(["parse", str(nacl), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    for key in (
        "energy_eV",
        "free_energy_eV",
        "efermi_eV",
        "converged_electronic",
        "converged_ionic",
        "max_force_eV_per_A",
        "formula",
        "n_ionic_steps",
    ):
        assert key in data
    assert data["free_energy_eV"] == pytest.approx(-27.11090125)
    assert data["formula"] == "Na4Cl4" and data["n_ionic_steps"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(nacl / "vasprun.xml.gz", parse_potcar_file=False)
    assert data["energy_eV"] == pytest.approx(float(vr.final_energy), abs=1e-6)
    assert data["free_energy_eV"] == pytest.approx(vr.ionic_steps[-1]["e_fr_energy"], abs=1e-6)
    assert data["efermi_eV"] == pytest.approx(vr.efermi, abs=1e-6)


def test_parse_truncated_is_exit_2(tmp_path, capsys):
    assert main(["parse", str(real_run("v535_truncated_vasprun")), "--json"]) == 2
    err = capsys.readouterr().err
    assert "truncated or corrupt" in err and err.count("\n") == 1
    d = tmp_path / "run"
    d.mkdir()
    for f in real_run("v544_ispin1_static").iterdir():  # the shared copies are read-only
        shutil.copyfile(f, d / f.name)
    (d / "OUTCAR.gz").write_bytes(b"\x1f\x8b garbage")
    assert main(["parse", str(d)]) == 2
    assert "OUTCAR" in capsys.readouterr().err


def test_calc_mock_end_to_end(poscar, tmp_path, capsys, mock_vasp):
    d = tmp_path / "run"
    code = main(
        ["calc", str(poscar), "--stage", "slab_relax", "--engine", "mock", "-d", str(d), "--json"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["converged_ionic"] and data["engine"] == "mock"
    assert data["max_force_eV_per_A"] <= 0.02
    saved = json.loads((d / "taskdoc.json").read_text())
    assert saved["energy_eV"] == pytest.approx(data["energy_eV"])
    assert main(["calc", str(poscar), "--stage", "static", "--engine", "nope", "-d", str(d)]) == 2
