"""CLI: dftflow ligands, dftflow build slab|complex (formats, determinism, bad input)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from ase.io import read

from dftflow.cli import main


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def slab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("slab") / "slab.vasp"
    assert main(["build", "slab", "--vacuum", "32", "-o", str(path)]) == 0
    return path


def test_ligands_lists_library(capsys):
    code, out, _ = run(["ligands"], capsys)
    assert code == 0
    for name in ("OA", "2-HA", "AcO", "C18H34O2", "carboxylate"):
        assert name in out
    code, out, _ = run(["ligands", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["AcO"]["charge"] == -1 and rows["2-HA"]["formula"] == "C16H32O2"


def test_build_slab_poscar_with_selective_dynamics(tmp_path, capsys):
    out_file = tmp_path / "POSCAR"
    code, out, _ = run(
        [
            "build",
            "slab",
            "--layers",
            "5",
            "--supercell",
            "2x2",
            "--vacuum",
            "15",
            "--termination",
            "PbBr2",
            "--fix",
            "bottom",
            "-o",
            str(out_file),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(out)["summary"]
    assert data["formula"] == "Cs8Pb12Br32" and data["n_atoms"] == 52
    assert [ly["kind"] for ly in data["layers"]] == ["PbBr2", "CsBr", "PbBr2", "CsBr", "PbBr2"]
    assert data["n_fixed_atoms"] == 20
    text = out_file.read_text().splitlines()
    assert text[5].split() == ["Cs", "Pb", "Br"] and text[6].split() == ["8", "12", "32"]
    assert text[7].strip() == "Selective dynamics"
    flags = Counter(tuple(line.split()[3:6]) for line in text[9:61])
    assert flags == {("F", "F", "F"): 20, ("T", "T", "T"): 32}
    # pymatgen reads it back with the same flags
    from pymatgen.io.vasp import Poscar

    poscar = Poscar.from_file(out_file)
    assert sum(not any(f) for f in poscar.selective_dynamics) == 20


@pytest.mark.parametrize("suffix", [".cif", ".extxyz", ".vasp"])
def test_output_format_from_suffix(tmp_path, capsys, suffix):
    path = tmp_path / f"slab{suffix}"
    assert (
        run(["build", "slab", "--layers", "3", "--supercell", "1x1", "-o", str(path)], capsys)[0]
        == 0
    )
    atoms = read(path)
    assert Counter(atoms.get_chemical_symbols()) == {"Pb": 2, "Br": 5, "Cs": 1}
    assert np.allclose(atoms.cell.lengths()[:2], 5.874)


def test_build_complex_formula_and_list(slab_file, tmp_path, capsys):
    code, out, _ = run(
        [
            "build",
            "complex",
            "--slab",
            str(slab_file),
            "--ligand",
            "AcO",
            "--list-placements",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    cands = json.loads(out)
    assert cands[0]["mode"] == "bidentate_chelating"
    assert [c["index"] for c in cands] == list(range(len(cands)))
    out_file = tmp_path / "complex.vasp"
    code, out, _ = run(
        [
            "build",
            "complex",
            "--slab",
            str(slab_file),
            "--ligand",
            "acetate",
            "--mode",
            "bidentate_chelating",
            "--azimuth",
            "45",
            "-o",
            str(out_file),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert data["placement"]["azimuth_deg"] == 45.0
    assert data["summary"]["formula"] == "Cs8Pb12Br32C2H3O2"
    atoms = read(out_file)
    assert Counter(atoms.get_chemical_symbols()) == {
        "Br": 32,
        "Pb": 12,
        "Cs": 8,
        "C": 2,
        "H": 3,
        "O": 2,
    }
    assert len(atoms.constraints[0].get_indices()) == 20  # slab's fixed atoms survive


def test_build_complex_from_smiles_dissociated(slab_file, tmp_path, capsys):
    out_file = tmp_path / "c.extxyz"
    code, out, _ = run(
        [
            "build",
            "complex",
            "--slab",
            str(slab_file),
            "--smiles",
            "CCCC(=O)O",
            "--name",
            "BuA",
            "--mode",
            "bidentate_chelating",
            "--dissociate",
            "-o",
            str(out_file),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert data["placement"]["dissociate"] and data["summary"]["adsorbate_formula"] == "C4H8O2"
    atoms = read(out_file)
    br = data["placement"]["h_acceptor"]
    h = max(i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "H")
    assert atoms.get_distance(br, h, mic=True) == pytest.approx(1.45, abs=1e-4)


def test_two_runs_give_identical_files(slab_file, tmp_path, capsys):
    paths = [tmp_path / "a.vasp", tmp_path / "b.vasp"]
    for p in paths:
        assert (
            run(
                ["build", "complex", "--slab", str(slab_file), "--ligand", "AcO", "-o", str(p)],
                capsys,
            )[0]
            == 0
        )
    assert paths[0].read_bytes() == paths[1].read_bytes()
    s1, s2 = tmp_path / "s1.vasp", tmp_path / "s2.vasp"
    for p in (s1, s2):
        assert run(["build", "slab", "-o", str(p)], capsys)[0] == 0
    assert s1.read_bytes() == s2.read_bytes()
    # a fresh interpreter (new RDKit embedding) writes the same bytes
    fresh = tmp_path / "fresh.vasp"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dftflow",
            "build",
            "complex",
            "--slab",
            str(slab_file),
            "--ligand",
            "AcO",
            "-o",
            str(fresh),
        ],
        check=True,
        capture_output=True,
    )
    assert fresh.read_bytes() == paths[0].read_bytes()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["build", "complex", "--ligand", "not-a-ligand"], "unknown ligand"),
        (["build", "complex", "--smiles", "C1CC(("], "invalid SMILES"),
        (["build", "complex", "--smiles", "CCCCCC"], "no anchor"),
        (["build", "complex", "--ligand", "OA", "--mode", "bidentate_chelating"], "deprotonated"),
        (["build", "complex", "--ligand", "AcO", "--placement", "99"], "out of range"),
        (["build", "complex", "--ligand", "AcO", "--mode", "sideways"], "unknown binding mode"),
        (["build", "complex", "--ligand", "AcO", "--dissociate"], "no acidic H"),
        (["build", "slab", "--layers", "2"], "at least 3"),
        (["build", "slab", "--layers", "4"], "odd"),
        (["build", "slab", "--supercell", "2by2"], "supercell"),
    ],
)
def test_bad_input_one_line_exit_2_no_file(slab_file, tmp_path, capsys, args, needle):
    out_file = tmp_path / "out.vasp"
    if args[1] == "complex":
        args = [*args, "--slab", str(slab_file)]
    code, _, err = run([*args, "-o", str(out_file)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out_file.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary leftovers either


def test_supercell_too_small_names_the_fix(tmp_path, capsys):
    small = tmp_path / "small.vasp"
    assert (
        run(["build", "slab", "--supercell", "1x1", "--vacuum", "32", "-o", str(small)], capsys)[0]
        == 0
    )
    out_file = tmp_path / "c.vasp"
    code, _, err = run(
        ["build", "complex", "--slab", str(small), "--ligand", "2-HA", "-o", str(out_file)], capsys
    )
    assert code == 2 and "smallest that fits is 2x2" in err and len(err.strip().splitlines()) == 1
    assert not out_file.exists()


def test_unwritable_or_unknown_output(slab_file, tmp_path, capsys):
    for target, needle in [
        (tmp_path / "missing" / "c.vasp", "does not exist"),
        (tmp_path / "c.txt", "cannot tell the format"),
        (tmp_path, "cannot"),
    ]:
        code, _, err = run(
            ["build", "complex", "--slab", str(slab_file), "--ligand", "AcO", "-o", str(target)],
            capsys,
        )
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    immutable = False
    try:
        if os.access(ro, os.W_OK):  # root ignores modes (CI runs as root): the immutable flag binds
            immutable = (
                subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode == 0
            )
        if os.access(ro, os.W_OK):
            pytest.skip("neither modes nor chattr +i make a directory unwritable for this user")
        code, _, err = run(["build", "slab", "-o", str(ro / "s.vasp")], capsys)
        assert code == 2 and "not writable" in err
        assert list(ro.iterdir()) == []
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o700)


def test_bad_slab_file(tmp_path, capsys):
    bad = tmp_path / "bad.vasp"
    bad.write_text("this is not a POSCAR\n")
    code, _, err = run(
        ["build", "complex", "--slab", str(bad), "--ligand", "AcO", "-o", str(tmp_path / "c.vasp")],
        capsys,
    )
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(
        [
            "build",
            "complex",
            "--slab",
            str(tmp_path / "nope.vasp"),
            "--ligand",
            "AcO",
            "-o",
            str(tmp_path / "c.vasp"),
        ],
        capsys,
    )
    assert code == 2 and "not found" in err


def test_build_molecule_in_the_slab_cell(slab_file, tmp_path, capsys):
    out_file = tmp_path / "aco.vasp"
    code, out, _ = run(
        [
            "build",
            "molecule",
            "--ligand",
            "AcO",
            "--form",
            "radical",
            "--cell-from",
            str(slab_file),
            "-o",
            str(out_file),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert (data["formula"], data["charge"], data["model"]) == ("C2H3O2", 0, "radical")
    mol, slab = read(out_file), read(slab_file)
    assert np.allclose(mol.cell[:], slab.cell[:])
    code, _, err = run(
        ["build", "molecule", "--smiles", "CCCCCC", "-o", str(tmp_path / "m.vasp")], capsys
    )
    assert code == 2 and "no anchor" in err


def test_build_complex_coverage(slab_file, tmp_path, capsys):
    out_file = tmp_path / "cov.vasp"
    code, out, _ = run(
        [
            "build",
            "complex",
            "--slab",
            str(slab_file),
            "--ligand",
            "AcO",
            "--coverage",
            "4",
            "-o",
            str(out_file),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["summary"]["adsorbate_formula"] == "C8H12O8"  # 4 acetates, 1 per Pb
    code, _, err = run(
        [
            "build",
            "complex",
            "--slab",
            str(slab_file),
            "--ligand",
            "AcO",
            "--coverage",
            "5",
            "-o",
            str(tmp_path / "x.vasp"),
        ],
        capsys,
    )
    assert code == 2 and "1..4" in err
