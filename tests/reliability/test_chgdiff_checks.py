"""Δρ and LOCPOT inputs are checked (issue 12, item 5), through the installed ``dftflow`` script.

* ``analyze chgdiff AB A B``: the complex must be slab + ligand by composition (the complex passed
  as the slab gave ∫Δρ = −23 e and exit 0), the three grids and lattices must agree; each mistake
  is one line on stderr, exit 2, checked from the headers before any grid is read, and no Δρ
  file is written.
* ``analyze locpot``: a charge-density file (CHGCAR: ρ·V, non-negative) is refused (it gave a
  21 eV "work function"); a real VASP LOCPOT is accepted.

Real VASP data (pymatgen-core's test files, MIT) is not committed: ``dftflow.testing.real_vasp``
finds it in ../shared/real_vasp/ beside the clone; those tests fail (never skip) when it is absent.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dftflow.io.chgcar import write_chgcar
from dftflow.testing import synthetic_runs as testdata
from dftflow.testing.real_vasp import public_data

pytestmark = pytest.mark.fault


def _dftflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))
    return subprocess.run(
        [exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def chg(tmp_path_factory):
    return testdata.write_chgdiff_triple(tmp_path_factory.mktemp("chg"), transfer_e=0.05)


def test_complex_passed_as_slab_is_refused(chg, tmp_path):
    p = chg["paths"]
    proc = _dftflow("analyze", "chgdiff", p["AB"], p["AB"], p["B"], "-o", "DELTA", cwd=tmp_path)
    line = _one_line_exit_2(proc)
    assert "composition mismatch" in line
    # names the compositions: the complex, slab + ligand (the ligand's atoms counted twice)
    assert "complex CsHPbC2Br3O2" in line and "ligand HC2O2" in line, line
    assert "= CsH2PbC4Br3O4" in line, line
    assert not (tmp_path / "DELTA").exists()
    assert list(tmp_path.iterdir()) == []


def test_wrong_ligand_and_missing_atoms_are_refused(chg, tmp_path):
    p = chg["paths"]
    complex_, slab, ligand = chg["structures"]
    grid = chg["grid"]
    water = ligand.copy()
    water.remove_sites([2, 3])  # a ligand that lacks the C atoms of the complex's ligand
    write_chgcar(tmp_path / "CHGCAR_water", water, np.ones(grid))
    line = _one_line_exit_2(
        _dftflow("analyze", "chgdiff", p["AB"], p["A"], "CHGCAR_water", cwd=tmp_path)
    )
    assert "composition mismatch" in line and "ligand HO2" in line
    # slab and ligand given in the other order: the same atoms, Δρ is symmetric in them
    proc = _dftflow("analyze", "chgdiff", p["AB"], p["B"], p["A"], "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert abs(json.loads(proc.stdout)["total_charge_e"]) < 1e-6


def test_grid_mismatch_is_refused_before_reading_grids(chg, tmp_path):
    """The header check comes first: a coarse slab whose grid is also cut short is reported as a
    grid mismatch, not as a truncated file, and nothing is written."""
    p = chg["paths"]
    _, slab, _ = chg["structures"]
    write_chgcar(tmp_path / "coarse", slab, np.ones((10, 10, 40)))
    text = (tmp_path / "coarse").read_text().splitlines(keepends=True)
    (tmp_path / "coarse").write_text("".join(text[: len(text) // 2]))
    line = _one_line_exit_2(
        _dftflow("analyze", "chgdiff", p["AB"], "coarse", p["B"], "-o", "DELTA", cwd=tmp_path)
    )
    assert "FFT grids differ" in line and "20x20x80" in line and "10x10x40" in line
    assert not (tmp_path / "DELTA").exists()


def test_truncated_grid_writes_nothing(chg, tmp_path):
    p = chg["paths"]
    text = Path(p["B"]).read_text().splitlines(keepends=True)
    (tmp_path / "B_cut").write_text("".join(text[:-40]))
    (tmp_path / "DELTA").write_text("an earlier result\n")
    line = _one_line_exit_2(
        _dftflow("analyze", "chgdiff", p["AB"], p["A"], "B_cut", "-o", "DELTA", cwd=tmp_path)
    )
    assert "truncated" in line and "B_cut" in line
    assert (tmp_path / "DELTA").read_text() == "an earlier result\n"  # never half-overwritten
    assert sorted(f.name for f in tmp_path.iterdir()) == ["B_cut", "DELTA"]


def test_locpot_refuses_a_chgcar(chg, tmp_path):
    """A CHGCAR (ρ·V) passed as LOCPOT: by its name, and by its values under any name."""
    p = chg["paths"]
    line = _one_line_exit_2(_dftflow("analyze", "locpot", p["AB"], "--efermi", "0", cwd=tmp_path))
    assert "charge-density file" in line and "LOCPOT" in line
    shutil.copy(p["A"], tmp_path / "LOCPOT")  # the slab's density, renamed
    line = _one_line_exit_2(_dftflow("analyze", "locpot", "LOCPOT", "--efermi", "0", cwd=tmp_path))
    assert "does not hold a potential" in line and "non-negative" in line


def test_locpot_real_vasp_accepted_and_real_chgcar_refused(tmp_path):
    folder = public_data("pymatgen_core")
    proc = _dftflow("analyze", "locpot", folder / "LOCPOT.gz", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert min(data["planar_average_eV"]) < -5.0  # eV, the potential well of bulk Li
    assert data["vacuum_level_eV"] is None  # bulk: no vacuum gap, no work function
    with gzip.open(folder / "CHGCAR.nospin.gz", "rb") as src:
        (tmp_path / "LOCPOT").write_bytes(src.read())
    line = _one_line_exit_2(_dftflow("analyze", "locpot", "LOCPOT", "--efermi", "1", cwd=tmp_path))
    assert "does not hold a potential" in line
