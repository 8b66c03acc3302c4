"""CLI: build complex records the ligand atoms (extxyz column, POSCAR sidecar, --json), calc keeps
them in taskdoc.json, inputs writes them beside the POSCAR, analyze uses them."""

from __future__ import annotations

import json

import pytest
from ase.io import read

from dftflow.cli import main
from dftflow.schemas import TaskDoc
from dftflow.structures.ligand_atoms import ligand_indices_of, sidecar_path


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def slab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("slab") / "slab.vasp"
    args = ["build", "slab", "--layers", "3", "--supercell", "1x1", "--vacuum", "24"]
    assert main([*args, "-o", str(path)]) == 0
    return path


def _complex(slab_file, output, capsys, smiles="CCCCCCCCN"):
    code, out, err = run(
        ["build", "complex", "--slab", str(slab_file), "--smiles", smiles, "-o", str(output)]
        + ["--json"],
        capsys,
    )
    assert code == 0, err
    return json.loads(out)


def test_build_complex_poscar_writes_the_indices_in_json_and_sidecar(slab_file, tmp_path, capsys):
    n_slab = len(read(slab_file))
    poscar = tmp_path / "POSCAR"
    data = _complex(slab_file, poscar, capsys)
    atoms = read(poscar, format="vasp")
    assert data["ligand_indices"] == list(range(n_slab, len(atoms)))  # C8H19N: 28 atoms
    assert len(data["ligand_indices"]) == 28
    assert atoms.get_chemical_symbols().index("N") in data["ligand_indices"]
    sidecar = json.loads(sidecar_path(poscar).read_text())
    assert sidecar["ligand_indices"] == data["ligand_indices"]
    assert data["ligand_indices_in"] == str(sidecar_path(poscar))
    # text output names them too
    code, out, _ = run(
        ["build", "complex", "--slab", str(slab_file), "--smiles", "CCCCCCCCS", "-o", str(poscar)],
        capsys,
    )
    assert code == 0 and f"ligand atoms (0-based): {n_slab}-{n_slab + 26}" in out
    # a slab written over it removes the stale sidecar
    assert main(["build", "slab", "--layers", "3", "--supercell", "1x1", "-o", str(poscar)]) == 0
    assert not sidecar_path(poscar).exists()


def test_build_complex_extxyz_has_a_ligand_column(slab_file, tmp_path, capsys):
    out = tmp_path / "cx.extxyz"
    data = _complex(slab_file, out, capsys, smiles="CCCCCCCCP(=O)(O)O")
    atoms = read(out)
    assert ligand_indices_of(atoms) == data["ligand_indices"]
    assert atoms.get_chemical_symbols().index("P") in data["ligand_indices"]
    assert not sidecar_path(out).exists()


def test_inputs_and_calc_carry_the_indices(slab_file, tmp_path, capsys, mock_vasp):
    poscar = tmp_path / "POSCAR"
    data = _complex(slab_file, poscar, capsys)
    assert (
        main(
            [
                "inputs",
                str(poscar),
                "--stage",
                "static",
                "--potcar-spec",
                "-o",
                str(tmp_path / "in"),
            ]
        )
        == 0
    )
    written = json.loads(sidecar_path(tmp_path / "in" / "POSCAR").read_text())
    assert written["ligand_indices"] == data["ligand_indices"]

    d = tmp_path / "run"
    code, _, err = run(
        ["calc", str(poscar), "--stage", "static", "--engine", "mock", "-d", str(d)], capsys
    )
    assert code == 0, err
    doc = TaskDoc.from_json_file(d / "taskdoc.json")
    assert doc.ligand_indices == data["ligand_indices"]
    code, out, _ = run(["analyze", "midgap", str(d), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["ligand_atoms_from"] == "builder indices"
    assert report["ligand_indices"] == data["ligand_indices"]


def test_a_stale_sidecar_is_one_line_exit_2(slab_file, tmp_path, capsys):
    poscar = tmp_path / "POSCAR"
    _complex(slab_file, poscar, capsys)
    poscar.write_text(slab_file.read_text())  # replaced by hand, sidecar left behind
    code, _, err = run(
        ["inputs", str(poscar), "--stage", "static", "--potcar-spec", "-o", str(tmp_path / "i")],
        capsys,
    )
    assert code == 2
    assert "stale sidecar" in err and len(err.strip().splitlines()) == 1
