"""Inputs validated (issue 12, item 5), through the installed ``dftflow`` console script.

- ``--set`` values are type-checked against VASP's tag types and allowed values (pymatgen's
  ``incar_parameters.json``); an unknown tag is refused;
- a bulk stage on a structure with a vacuum gap is refused, naming the stage to use;
- ``build complex`` keeps the slab's vacuum between the ligand's top and the next slab image
  (raising c and saying so);
- a static stage writes a LOCPOT on request (``--locpot``: LVHAR), and the mock VASP's LOCPOT is
  read end to end by ``dftflow analyze locpot``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

pytestmark = pytest.mark.fault


def _dftflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def _refused(proc: subprocess.CompletedProcess) -> str:
    """The one error line of a refused command (exit 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def slab_file(tmp_path_factory) -> Path:
    """A 1x1, 3-plane PbBr2-terminated slab with the default 15 A vacuum."""
    root = tmp_path_factory.mktemp("slab")
    proc = _dftflow(
        "build", "slab", "--layers", "3", "--supercell", "1x1", "-o", "slab.vasp", cwd=root
    )
    assert proc.returncode == 0, proc.stderr
    return root / "slab.vasp"


# -------------------------------------------------------------------------------------------------
# --set values
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("ENCUT=abc", ["ENCUT", "number", "abc"]),  # main wrote ENCUT = Abc and exited 0
        ("EDIFF=small", ["EDIFF", "number"]),
        ("ISMEAR=0.5", ["ISMEAR", "whole number"]),  # pymatgen would truncate it to 0
        ("NSW=ten", ["NSW", "whole number"]),
        ("LWAVE=maybe", ["LWAVE", "logical"]),
        ("LORBIT=13", ["LORBIT", "13", "VASP's values"]),
        ("IDIPOL=5", ["IDIPOL", "5"]),
        ("ISPIN=3", ["ISPIN", "3"]),
        ("PREC=superb", ["PREC", "Superb"]),
        ("NOSUCHTAG=1", ["unknown INCAR tag", "NOSUCHTAG"]),
    ],
)
def test_set_value_of_wrong_type_is_refused(setting, words, slab_file, tmp_path):
    out = tmp_path / "inputs"
    proc = _dftflow(
        "inputs", str(slab_file), "--stage", "slab_relax", "--potcar-spec",
        "--set", setting, "-o", str(out), cwd=tmp_path,
    )  # fmt: skip
    line = _refused(proc)
    for word in words:
        assert word in line, line
    assert not out.exists()  # nothing written, not even the directory


def test_set_values_of_the_right_types_are_written_typed(slab_file, tmp_path):
    out = tmp_path / "inputs"
    settings = [
        "ENCUT=450", "EDIFF=1e-6", "ISMEAR=-5", "LWAVE=.TRUE.", "LREAL=auto", "ALGO=fast",
        "MAGMOM=8*0", "NELECT=100.5", "PREC=normal",
    ]  # fmt: skip
    args = [a for s in settings for a in ("--set", s)]
    proc = _dftflow(
        "inputs", str(slab_file), "--stage", "slab_relax", "--potcar-spec", *args,
        "-o", str(out), "--json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    incar = json.loads(proc.stdout)["incar"]
    assert incar["ENCUT"] == 450 and incar["EDIFF"] == 1e-6 and incar["ISMEAR"] == -5
    assert incar["LWAVE"] is True and incar["LREAL"] == "Auto" and incar["ALGO"] == "Fast"
    assert incar["MAGMOM"] == [0] * 8 and incar["NELECT"] == 100.5 and incar["PREC"] == "Normal"
    from pymatgen.io.vasp import Incar

    written = Incar.from_file(out / "INCAR")
    assert written["ENCUT"] == 450.0 and written["ISMEAR"] == -5 and written["LWAVE"] is True


def test_python_overrides_are_checked_too():
    """Study YAMLs and the Python API go through the same check (one place)."""
    from dftflow.errors import InputError
    from dftflow.inputs.vasp import validate_overrides

    assert validate_overrides({"NSW": np.int64(5), "ENCUT": 400, "LVHAR": np.bool_(True)})
    with pytest.raises(InputError, match="ENCUT takes a number"):
        validate_overrides({"encut": "abc"})
    with pytest.raises(InputError, match="NSW takes a whole number"):
        validate_overrides({"NSW": True})
    assert validate_overrides({"LORBIT": None}) == {"LORBIT": None}  # None removes a tag


# -------------------------------------------------------------------------------------------------
# bulk stage on a slab
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["inputs", "calc"])
def test_bulk_stage_on_a_slab_is_refused_naming_the_slab_stage(command, slab_file, tmp_path):
    out = tmp_path / "run"
    where = ["-o", str(out)] if command == "inputs" else ["--engine", "mock", "-d", str(out)]
    proc = _dftflow(
        command, str(slab_file), "--stage", "bulk_relax", "--potcar-spec", *where, cwd=tmp_path
    )
    line = _refused(proc)
    assert "15.0 A vacuum gap along c" in line and "--stage slab_relax" in line, line
    assert not out.exists()


@pytest.mark.slow(seconds=12)
def test_bulk_stage_on_a_molecule_names_molecule_relax_and_bulk_is_accepted(tmp_path):
    from ase.build import molecule
    from ase.io import write

    from dftflow.structures.bulk import cspbbr3_cubic

    mol = molecule("CH3COOH")
    mol.center(vacuum=6.0)
    write(tmp_path / "mol.vasp", mol, format="vasp")
    proc = _dftflow(
        "inputs", "mol.vasp", "--stage", "bulk_relax", "--potcar-spec", "-o", "m", cwd=tmp_path
    )
    assert "--stage molecule_relax" in _refused(proc)
    write(tmp_path / "bulk.vasp", cspbbr3_cubic(), format="vasp")
    proc = _dftflow(
        "inputs", "bulk.vasp", "--stage", "bulk_relax", "--potcar-spec", "-o", "b", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["incar"]["ISIF"] == 3 and data["kpoints"] == [8, 8, 8]


def test_one_vacuum_threshold_for_inputs_and_the_embedded_engine():
    """A 5.5 A gap: main's input set said bulk (6 A threshold), the embedded engine slab (5 A)."""
    from ase import Atoms

    from dftflow.engines.embedded_gpaw import is_slab_like
    from dftflow.inputs.vasp import as_structure, infer_system
    from dftflow.structures.geometry import VACUUM_THRESHOLD_A

    atoms = Atoms("Pb2", positions=[[0, 0, 0], [0, 0, 3.0]], cell=[3.0, 3.0, 8.5], pbc=True)
    assert VACUUM_THRESHOLD_A < 5.5
    assert is_slab_like(atoms) and infer_system(as_structure(atoms)) == "slab"


def test_default_slab_vacuum_is_one_constant():
    import inspect

    from dftflow.cli.build import slab_cmd
    from dftflow.structures.geometry import DEFAULT_SLAB_VACUUM_A
    from dftflow.structures.slab import cspbbr3_001_slab
    from dftflow.workflows.spec import SlabSpec

    assert inspect.signature(cspbbr3_001_slab).parameters["vacuum"].default == DEFAULT_SLAB_VACUUM_A
    assert SlabSpec().vacuum_A == DEFAULT_SLAB_VACUUM_A
    assert inspect.signature(slab_cmd).parameters["vacuum"].default.default == DEFAULT_SLAB_VACUUM_A


# -------------------------------------------------------------------------------------------------
# vacuum above the ligand
# -------------------------------------------------------------------------------------------------
def _gap_above_ligand_A(path: Path) -> float:
    atoms = read(path)
    lig = set(json.loads(Path(f"{path}.ligand.json").read_text())["ligand_indices"])
    slab = [i for i in range(len(atoms)) if i not in lig]
    z = atoms.positions[:, 2]
    return float(z[slab].min() + atoms.cell[2, 2] - z.max())


@pytest.mark.slow(seconds=30)
def test_readme_opa_complex_keeps_the_slabs_vacuum_above_the_ligand(tmp_path):
    """The README's OPA on the 15 A slab: main left 2.3 A between its top and the next image."""
    proc = _dftflow(
        "build", "slab", "--layers", "5", "--supercell", "2x2", "--vacuum", "15",
        "--termination", "PbBr2", "-o", "slab.vasp", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    c_slab = float(read(tmp_path / "slab.vasp").cell[2, 2])
    proc = _dftflow(
        "build", "complex", "--slab", "slab.vasp", "--smiles", "CCCCCCCCP(=O)(O)O",
        "--name", "OPA", "-o", "opa.vasp", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _gap_above_ligand_A(tmp_path / "opa.vasp") == pytest.approx(15.0, abs=0.01)
    c = float(read(tmp_path / "opa.vasp").cell[2, 2])
    assert c > c_slab + 10.0  # an octyl chain stands > 10 A tall
    assert f"cell c raised from {c_slab:.2f} to {c:.2f} A" in proc.stdout, proc.stdout
    # a vacuum asked for explicitly, and a slab with room to spare: c unchanged
    proc = _dftflow(
        "build", "complex", "--slab", "slab.vasp", "--ligand", "AcO", "--vacuum", "5",
        "-o", "aco.vasp", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    vac = json.loads(proc.stdout)["vacuum"]
    assert vac["c_raised_A"] == 0.0 and vac["vacuum_kept_A"] == 5.0
    assert float(read(tmp_path / "aco.vasp").cell[2, 2]) == pytest.approx(c_slab)
    gap = _gap_above_ligand_A(tmp_path / "aco.vasp")
    assert 5.0 < gap and vac["vacuum_above_ligand_A"] == pytest.approx(gap, abs=1e-3)


def test_raise_cell_for_vacuum_keeps_positions():
    from dftflow.structures.ligand_atoms import mark_ligand
    from dftflow.structures.placement import raise_cell_for_vacuum, vacuum_above_ligand_A
    from dftflow.testing.synthetic_runs import slab_and_ligand_structures

    complex_, _, _ = slab_and_ligand_structures()  # slab planes z = 8, 11; ligand top 16.7; c 24
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = mark_ligand(AseAtomsAdaptor.get_atoms(complex_), range(5, 10))
    assert vacuum_above_ligand_A(atoms) == pytest.approx(8.0 + 24.0 - 16.7)
    raised, by = raise_cell_for_vacuum(atoms, 20.0)
    assert by == pytest.approx(20.0 - 15.3) and raised.cell[2, 2] == pytest.approx(24.0 + by)
    assert np.allclose(raised.positions, atoms.positions)
    assert vacuum_above_ligand_A(raised) == pytest.approx(20.0)
    same, by = raise_cell_for_vacuum(atoms, 10.0)
    assert by == 0.0 and same.cell[2, 2] == pytest.approx(24.0)


# -------------------------------------------------------------------------------------------------
# LOCPOT on request
# -------------------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=30)
def test_static_locpot_on_request_read_by_analyze_locpot(slab_file, tmp_path):
    from dftflow.testing.mock_vasp import MOCK_WORK_FUNCTION_EV

    proc = _dftflow(
        "calc", str(slab_file), "--stage", "static", "--engine", "mock", "--locpot",
        "--set", "ENCUT=150", "-d", "run", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    from pymatgen.io.vasp import Incar, Locpot

    incar = Incar.from_file(run / "INCAR")
    assert incar["LVHAR"] is True and incar["LVTOT"] is False
    locpot = Locpot.from_file(run / "LOCPOT")
    assert locpot.dim == tuple(incar[k] for k in ("NGXF", "NGYF", "NGZF"))
    proc = _dftflow("analyze", "locpot", "run", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    efermi = json.loads((run / "taskdoc.json").read_text())["efermi_eV"]
    assert data["efermi_eV"] == pytest.approx(efermi)
    assert data["work_function_eV"] == pytest.approx(MOCK_WORK_FUNCTION_EV, abs=0.01)
    profile = np.array(data["planar_average_eV"])
    z = np.array(data["z_A"])
    middle = (z > 15.0) & (z < 20.0)  # planes at z = 5.0-10.9 A, c = 20.9 A: > 4 A from atoms
    assert middle.sum() > 10 and np.ptp(profile[middle]) < 1e-3  # flat in the vacuum
    assert profile[middle].mean() == pytest.approx(data["vacuum_level_eV"], abs=1e-3)
    assert profile.min() < data["vacuum_level_eV"] - 2.0  # wells at the atomic planes


@pytest.mark.slow(seconds=15)
def test_locpot_only_for_a_static_stage_and_not_without_asking(slab_file, tmp_path):
    proc = _dftflow(
        "inputs", str(slab_file), "--stage", "slab_relax", "--potcar-spec", "--locpot",
        "-o", "relax", cwd=tmp_path,
    )  # fmt: skip
    assert "static stage" in _refused(proc)
    proc = _dftflow(
        "inputs", str(slab_file), "--stage", "static", "--potcar-spec", "--locpot",
        "--set", "LVHAR=F", "-o", "s", cwd=tmp_path,
    )  # fmt: skip
    assert "LVHAR" in _refused(proc)
    proc = _dftflow(
        "inputs", str(slab_file), "--stage", "static", "--potcar-spec", "-o", "plain", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "LVHAR" not in json.loads(proc.stdout)["incar"]


def test_study_cell_keeps_the_slab_vacuum_above_the_tallest_ligand():
    """A study raises its shared cell so that the tallest ligand's top keeps the slab's vacuum to
    the next slab image (as `build complex` does), unless the spec states another clearance; the
    paper's YAML states 10 A (the cell of its measured figures)."""
    from dftflow.structures import placement
    from dftflow.workflows import firetasks as ft
    from dftflow.workflows.flows import ligand_clearance_A, required_vacuum_A
    from dftflow.workflows.spec import load_study, parse_study

    repo = Path(__file__).resolve().parents[2]
    spec = load_study(repo / "workflows" / "test_mock_small.yaml")
    slab = ft.build_slab(spec.slab.model_dump(mode="json"), spec.bulk.a_A)
    lig = ft.ligand_spec(spec.ligands[0].model_dump(mode="json"))
    height = placement.ligand_height_A(slab, lig, "radical")
    assert ligand_clearance_A(spec) == 12.0
    assert required_vacuum_A(spec) == pytest.approx(height + 12.0, abs=1e-3)
    data = spec.model_dump(mode="json")
    data["slab"]["ligand_clearance_A"] = 20.0
    assert required_vacuum_A(parse_study(data)) == pytest.approx(height + 20.0, abs=1e-3)
    paper = load_study(repo / "workflows" / "cspbbr3_ligands.yaml")
    assert ligand_clearance_A(paper) == 10.0
