"""Real VASP outputs committed as text (tests/fixtures/vasp_text, custodian, MIT): always in CI.

dftflow's parser and mid-gap detector are checked against pymatgen's own reading of the same
files; the files themselves are checked against the source's git blob ids (see the README there).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.io.vasp import Outcar, Vasprun

from dftflow.analysis.midgap import find_midgap_states
from dftflow.cli import main
from dftflow.errors import OutputError
from dftflow.parse.vasp import parse_directory

TEXT = Path(__file__).parents[1] / "fixtures" / "vasp_text"
NACL = TEXT / "v544_nacl_ispin1_static"
TRUNCATED = TEXT / "v535_truncated_vasprun"
BLOB_IDS = {
    NACL / "vasprun.xml": "71630dec5328bce2cb30ca935bcb6b6c2ea50d3c",
    NACL / "OUTCAR": "233ed3ca263e757d0a2a95379522f17367afa7fe",
    TRUNCATED / "vasprun.xml": "21ca103a2901a9c6c62289b16a83401fa799c052",
}


def git_blob_id(path: Path) -> str:
    """SHA-1 git blob id of a file (what ``git hash-object`` prints)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("path", list(BLOB_IDS), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_is_byte_identical_to_source(path):
    assert git_blob_id(path) == BLOB_IDS[path]


@pytest.fixture(scope="module")
def nacl_vr() -> Vasprun:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Vasprun(NACL / "vasprun.xml", parse_potcar_file=False)


def test_parse_matches_pymatgen(nacl_vr):
    vr = nacl_vr
    doc = parse_directory(NACL)
    assert doc.energy_eV == pytest.approx(float(vr.final_energy), abs=1e-6)
    assert doc.free_energy_eV == pytest.approx(vr.ionic_steps[-1]["e_fr_energy"], abs=1e-6)
    assert doc.efermi_eV == pytest.approx(vr.efermi, abs=1e-6)
    assert doc.converged_electronic is vr.converged_electronic is True
    assert doc.converged_ionic is vr.converged_ionic is True
    assert doc.n_ionic_steps == len(vr.ionic_steps) == 1
    assert doc.ispin == vr.parameters["ISPIN"] == 1
    assert doc.nelect == pytest.approx(vr.parameters["NELECT"])
    assert doc.formula == vr.final_structure.composition.formula.replace(" ", "")
    assert doc.final_structure() == vr.final_structure
    forces = np.linalg.norm(np.asarray(vr.ionic_steps[-1]["forces"]), axis=1)
    assert doc.max_force_eV_per_A == pytest.approx(forces.max())
    assert doc.fft_grid == [vr.parameters["NGXF"], vr.parameters["NGYF"], vr.parameters["NGZF"]]
    assert doc.engine_version.startswith("5.4.4")
    assert doc.has_dos and not doc.has_projected_dos  # LORBIT 0: total DOS only
    outcar = Outcar(str(NACL / "OUTCAR"))
    assert doc.wall_time_s == pytest.approx(outcar.run_stats["Elapsed time (sec)"])
    assert outcar.final_energy == pytest.approx(doc.energy_eV, abs=1e-6)  # same run, both files


def test_truncated_real_outcar_is_error(tmp_path):
    shutil.copy(NACL / "vasprun.xml", tmp_path / "vasprun.xml")
    text = (NACL / "OUTCAR").read_text()
    (tmp_path / "OUTCAR").write_text(text[: len(text) // 2])
    with pytest.raises(OutputError, match="OUTCAR") as exc:
        parse_directory(tmp_path)
    assert "\n" not in str(exc.value)


def test_clean_insulator_reports_no_midgap_state(nacl_vr):
    gap, cbm, vbm, _ = nacl_vr.eigenvalue_band_properties
    rep = find_midgap_states(NACL)
    assert not rep.has_midgap_states and rep.midgap_states == []
    assert rep.gap_eV["up"] == pytest.approx(gap, abs=0.05)
    assert gap > 4.0  # NaCl, PBE: a wide gap with nothing inside it


def test_midgap_cli_json_on_real_run(capsys):
    assert main(["analyze", "midgap", str(NACL), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["has_midgap_states"] is False and data["midgap_states"] == []


def test_truncated_real_vasprun_is_one_line_error(capsys):
    with pytest.raises(OutputError, match="truncated or corrupt") as exc:
        parse_directory(TRUNCATED)
    assert "\n" not in str(exc.value)
    assert main(["parse", str(TRUNCATED), "--json"]) == 2
    err = capsys.readouterr().err
    assert "truncated or corrupt" in err and err.count("\n") == 1
