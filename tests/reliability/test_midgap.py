"""Mid-gap detector guarantees (issue 12, item 6), through the installed ``dftflow`` script.

* Band edges follow the occupations on every system size: a clean bulk, a clean slab and a
  molecule report no gap states, on real VASP data (``../shared/real_vasp``: NaCl, K4Sn4O6 and the
  GaN supercell; the data set holds no real slab or molecule) and on the mock VASP's output.
* With ``--reference`` the host edges come from the clean host, aligned on a deep level; without
  projections (LORBIT 0) from the lowest band manifold of the eigenvalues: a defect level 0.3 eV
  above the host VBM is reported as a gap state, not taken for the VBM.
* Missing or mismatched reference data: one line on stderr naming the reference, exit 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.io.vasp import Vasprun

from dftflow.electronic import BandData
from dftflow.parse.run import load_bands
from dftflow.structures.bulk import cspbbr3_cubic
from dftflow.testing import synthetic_runs as testdata
from dftflow.testing.real_vasp import real_vasp_dir

pytestmark = pytest.mark.fault

DFTFLOW = shutil.which("dftflow") or str(Path(sys.executable).parent / "dftflow")
#: Rigid shift of every level of the constructed defect run (different potential zero), eV.
SHIFT_EV = 0.7
#: The constructed defect level, above the host VBM, eV.
LEVEL_EV = 0.3


def dftflow(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [DFTFLOW, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def midgap_json(*args) -> dict:
    return json.loads(dftflow("analyze", "midgap", *args, "--json").stdout)


def occupation_edges(vasprun: Path) -> dict[str, tuple[float, float]]:
    """Per spin: (highest eigenvalue with occupation >= 0.5, lowest with < 0.5), by pymatgen."""
    vr = Vasprun(str(vasprun), parse_potcar_file=False, parse_dos=False)
    out = {}
    for spin, arr in vr.eigenvalues.items():
        e, occ = arr[..., 0], arr[..., 1]
        out["up" if spin.value == 1 else "down"] = (e[occ >= 0.5].max(), e[occ < 0.5].min())
    return out


def assert_clean(run: Path) -> None:
    data = midgap_json(run)
    assert data["midgap_states"] == [] and data["has_midgap_states"] is False, data["verdict"]
    assert data["verdict"].startswith("no states inside the host gap")
    for spin, (vbm, cbm) in occupation_edges(next(run.glob("vasprun.xml*"))).items():
        assert data["vbm_eV"][spin] == pytest.approx(vbm, abs=1e-6)
        assert data["cbm_eV"][spin] == pytest.approx(cbm, abs=1e-6)
        assert data["gap_eV"][spin] == pytest.approx(cbm - vbm, abs=1e-6)


@pytest.fixture(scope="module")
def mock_runs(tmp_path_factory) -> dict[str, Path]:
    """Static runs of the mock VASP: 5-atom bulk, 1x1 five-plane slab, acetic acid molecule."""
    from dftflow.cli import main  # in-process: these runs are test data, not the guarantee

    root = tmp_path_factory.mktemp("mock_midgap")
    cspbbr3_cubic().write(root / "bulk.vasp", format="vasp")
    steps = [
        ["build", "slab", "-o", root / "slab.vasp", "--supercell", "1x1", "--layers", "5"],
        ["build", "molecule", "-o", root / "mol.vasp", "--smiles", "CC(=O)O", "--name", "acoh"],
    ]
    runs = {name: root / f"{name}_static" for name in ("bulk", "slab", "mol")}
    steps += [
        ["calc", root / f"{name}.vasp", "-s", "static", "-e", "mock", "-d", run]
        for name, run in runs.items()
    ]
    for step in steps:
        assert main([str(a) for a in step]) == 0, step
    return runs


@pytest.mark.slow(seconds=50)
def test_clean_bulk_slab_and_molecule_report_no_gap_states(mock_runs):
    # real VASP: NaCl (ISPIN 1, 125 k), K4Sn4O6 (ISPIN 2, Gamma), GaN 32-atom supercell
    for run in (
        real_vasp_dir("custodian/v544_ispin1_static"),
        real_vasp_dir("custodian/v541_ispin2_static_lorbit_quirk"),
        real_vasp_dir("Mg_Ga/bulk_sc"),
    ):
        assert_clean(run)
    # the mock's 5-atom bulk, 1x1 slab and molecule (on main: 6, 2 and 5 "mid-gap" states,
    # filled states above the VBM)
    for run in mock_runs.values():
        assert_clean(run)


def _shifted_defect(host: Path, out: Path, *, occupied: bool = True) -> float:
    """Write the host's bands + a rigid shift + one flat level LEVEL_EV above the VBM, E_F moved.

    No projections (LORBIT 0). Returns the host VBM (on the host's scale).
    """
    structure, bands = load_bands(host)
    vbm = float(bands.eigenvalues_eV[bands.occupations >= 0.5].max())
    nspin, nk, _ = bands.eigenvalues_eV.shape
    level = np.full((nspin, nk, 1), vbm + SHIFT_EV + LEVEL_EV)
    eig = np.concatenate([bands.eigenvalues_eV + SHIFT_EV, level], axis=2)
    occ = np.concatenate([bands.occupations, np.full((nspin, nk, 1), float(occupied))], axis=2)
    order = np.argsort(eig, axis=2, kind="stable")
    defect = BandData(
        eigenvalues_eV=np.take_along_axis(eig, order, 2),
        occupations=np.take_along_axis(occ, order, 2),
        kweights=bands.kweights,
        efermi_eV=vbm + SHIFT_EV + LEVEL_EV + 0.6,  # pinned by the (charged) level
        kpoints=bands.kpoints,
    )
    testdata.write_band_run(out, structure, defect)
    return vbm


@pytest.mark.slow(seconds=20)
def test_defect_level_near_host_vbm_with_reference_and_no_projections(tmp_path):
    nacl = real_vasp_dir("custodian/v544_ispin1_static")
    structure, bands = load_bands(nacl)
    testdata.write_band_run(tmp_path / "host", structure, bands)  # LORBIT 0, as written by VASP
    vbm = _shifted_defect(nacl, tmp_path / "defect")

    data = midgap_json(tmp_path / "defect", "--reference", tmp_path / "host")
    ref = data["reference"]
    assert ref["mode"] == "reference" and ref["alignment"] == "deep"
    assert "lowest band manifold" in ref["method"]  # no projections: from the eigenvalues
    assert ref["manifold"]["up"]["bands"] == [12, 12]  # Na 2p (or Cl 3p by count): 3 x 4 atoms
    assert ref["shift_eV"] == pytest.approx(SHIFT_EV, abs=1e-3)
    (state,) = data["midgap_states"]
    assert state["distance_to_vbm_eV"] == pytest.approx(LEVEL_EV, abs=1e-3)
    assert state["energy_eV"] == pytest.approx(vbm + SHIFT_EV + LEVEL_EV, abs=1e-3)
    assert state["occupation"] == 1.0 and state["filling"] == "occupied"
    assert state["electrons"] == 2.0 and state["n_kpoints"] == 125
    assert data["vbm_eV"]["up"] == pytest.approx(vbm + SHIFT_EV, abs=1e-3)
    # the text output says which alignment was used
    text = dftflow("analyze", "midgap", tmp_path / "defect", "--reference", tmp_path / "host")
    assert "shift +0.7000 eV (deep: lowest band manifold" in text.stdout
    # without the host, the filled level is the cell's own VBM: no gap state, by the rule
    alone = midgap_json(tmp_path / "defect")
    assert alone["midgap_states"] == []
    assert alone["vbm_eV"]["up"] == pytest.approx(vbm + SHIFT_EV + LEVEL_EV, abs=1e-3)
    # aligning the Fermi levels (moved by the level) misses it: the reason deep is the default
    fermi = midgap_json(tmp_path / "defect", "--reference", tmp_path / "host", "--align", "fermi")
    assert fermi["reference"]["method"].startswith("fermi")
    assert fermi["reference"]["shift_eV"] > SHIFT_EV + LEVEL_EV
    assert all(abs(s["energy_eV"] - state["energy_eV"]) > 0.01 for s in fermi["midgap_states"])


@pytest.mark.slow(seconds=12)
def test_real_defect_pair_without_projections_aligns_on_the_lowest_manifold(tmp_path):
    pair = real_vasp_dir("Mg_Ga")
    for name in ("bulk_sc", "q=0"):
        structure, bands = load_bands(pair / name)
        bands.projections = None  # as with LORBIT 0
        testdata.write_band_run(tmp_path / name, structure, bands)
    plain = midgap_json(tmp_path / "q=0", "--reference", tmp_path / "bulk_sc")
    projected = midgap_json(pair / "q=0", "--reference", pair / "bulk_sc")
    assert "lowest band manifold" in plain["reference"]["method"]
    assert plain["reference"]["manifold"]["up"]["shells"] == ["N s"]  # N 2s: 16 bands, 16 N
    assert "projected core-like level of Ga" in projected["reference"]["method"]
    assert plain["reference"]["shift_eV"] == pytest.approx(-0.11, abs=0.01)
    assert projected["reference"]["shift_eV"] == pytest.approx(-0.16, abs=0.01)
    for data in (plain, projected):  # the neutral acceptor's hole, spin down, just above the VBM
        (hole,) = data["midgap_states"]
        assert hole["spin"] == "down" and hole["filling"] == "empty"
        assert 0.1 < hole["distance_to_vbm_eV"] < 0.2


@pytest.mark.slow(seconds=60)
def test_partly_filled_level_at_ef_is_a_gap_state_and_a_metal_has_no_gap(mock_runs, tmp_path):
    # the mock's 5-atom bulk + one level 1.5 eV above its VBM holding one electron (occupation
    # 0.5 at every k, ISPIN 1): a level pinned at E_F, as a smeared or unpolarised defect gives
    structure, bands = load_bands(mock_runs["bulk"])
    vbm = float(bands.eigenvalues_eV[bands.occupations >= 0.5].max())
    cbm = float(bands.eigenvalues_eV[bands.occupations < 0.5].min())
    nk = bands.eigenvalues_eV.shape[1]
    eig = np.concatenate([bands.eigenvalues_eV, np.full((1, nk, 1), vbm + 1.5)], axis=2)
    occ = np.concatenate([bands.occupations, np.full((1, nk, 1), 0.5)], axis=2)
    order = np.argsort(eig, axis=2, kind="stable")
    level = BandData(
        eigenvalues_eV=np.take_along_axis(eig, order, 2),
        occupations=np.take_along_axis(occ, order, 2),
        kweights=bands.kweights,
        efermi_eV=vbm + 1.5,
        kpoints=bands.kpoints,
    )
    run = testdata.write_band_run(tmp_path / "level", structure, level)
    data = midgap_json(run)
    (state,) = data["midgap_states"]  # not an edge: the edges are the bulk's own
    assert state["filling"] == "partly filled" and state["electrons"] == pytest.approx(1.0)
    assert state["distance_to_vbm_eV"] == pytest.approx(1.5, abs=1e-4)
    assert data["vbm_eV"]["up"] == pytest.approx(vbm, abs=1e-4)
    assert data["cbm_eV"]["up"] == pytest.approx(cbm, abs=1e-4)
    metal = midgap_json(real_vasp_dir("custodian/v641_unconverged"))  # E_F inside the bands
    assert metal["midgap_states"] == [] and metal["verdict"].startswith("no band gap found")


@pytest.mark.slow(seconds=20)
def test_reference_problems_are_one_line_exit_2(tmp_path):
    nacl = real_vasp_dir("custodian/v544_ispin1_static")
    structure, bands = load_bands(nacl)
    testdata.write_band_run(tmp_path / "host", structure, bands)
    deep = bands.eigenvalues_eV.min(axis=(0, 1)) < bands.efermi_eV - 3.0  # every deep band
    shallow = BandData(
        eigenvalues_eV=bands.eigenvalues_eV[..., ~deep],
        occupations=bands.occupations[..., ~deep],
        kweights=bands.kweights,
        efermi_eV=bands.efermi_eV,
        kpoints=bands.kpoints,
    )
    testdata.write_band_run(tmp_path / "shallow", structure, shallow)
    gan = real_vasp_dir("Mg_Ga/bulk_sc")
    cases = [
        (tmp_path / "missing", "reference"),
        (tmp_path, "reference"),  # a directory without a run
        (real_vasp_dir("custodian/v535_truncated_vasprun"), "reference"),
        (gan, "share no element"),  # not the host of NaCl
        (tmp_path / "shallow", "no band manifold"),  # nothing deep to align on
    ]
    for reference, words in cases:
        proc = dftflow(
            "analyze", "midgap", tmp_path / "host", "--reference", reference, check=False
        )
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert words in err and proc.stdout == ""
