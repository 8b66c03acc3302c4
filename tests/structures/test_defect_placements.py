"""Ligands at a surface defect (issue 15, item 2): the anchor at the vacancy, no clashes, refusals.

Geometry is checked against the defect's own record (the removed Br's position, the Pb it left
under-coordinated), computed here independently of the placement code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dftflow.errors import InputError
from dftflow.structures.defects import defect_slab, undercoordinated_indices
from dftflow.structures.ligands import get_ligand
from dftflow.structures.placement import (
    BOND_LENGTH_A,
    MIN_SLAB_DISTANCE_A,
    enumerate_placements,
    place_ligand,
)
from dftflow.structures.slab import cspbbr3_001_slab


@pytest.fixture(scope="module")
def v_br():
    """The 2x2, 3-plane slab with a top-plane Br vacancy, and its summary."""
    return defect_slab(cspbbr3_001_slab(layers=3, supercell=(2, 2), vacuum=25.0), "V_Br")


def _mic(atoms, d: np.ndarray) -> np.ndarray:
    frac = np.linalg.solve(atoms.cell[:].T, d.T).T
    frac -= np.round(frac)
    return frac @ atoms.cell[:]


def _anchor_position(complex_, n_slab: int, target: np.ndarray) -> np.ndarray:
    """The ligand O nearest to ``target`` (periodic): the anchor if one sits there."""
    lig = complex_[n_slab:]
    o_atoms = [i for i, s in enumerate(lig.get_chemical_symbols()) if s == "O"]
    d = [np.linalg.norm(_mic(complex_, lig.positions[i] - target)) for i in o_atoms]
    return lig.positions[o_atoms[int(np.argmin(d))]]


@pytest.mark.parametrize(("ligand", "form"), [("AcO", "radical"), ("OA", "as_is")])
def test_vacancy_site_puts_the_anchor_on_the_vacant_br_site_without_clashes(v_br, ligand, form):
    slab, summary = v_br
    (removed,) = summary.removed
    site = np.array(removed.position_A)
    under = undercoordinated_indices(slab)
    assert len(under) == 2  # V_Br leaves two Pb with one Br less
    spec = get_ligand(ligand)
    cands = enumerate_placements(slab, spec, modes=["vacancy_site"], form=form)
    assert cands, "at least one clash-free placement at the vacancy"
    for p in cands:
        assert p.mode == "vacancy_site" and {p.site, p.site2} == set(under)
        assert p.min_slab_distance_A >= MIN_SLAB_DISTANCE_A
        complex_ = place_ligand(slab, spec, p)
        o = _anchor_position(complex_, len(slab), site)
        assert np.linalg.norm(_mic(slab, o - site)) < 0.05  # the O sits where the Br was
        for pb in under:  # bridging both exposed Pb at the Pb-Br distance (a/2)
            d = np.linalg.norm(_mic(slab, o - slab.positions[pb]))
            assert d == pytest.approx(np.linalg.norm(_mic(slab, site - slab.positions[pb])))
        # nothing of the ligand closer than the clash threshold to any slab atom (periodic)
        lig = complex_.positions[len(slab) :]
        for pos in lig:
            d = np.linalg.norm(_mic(slab, slab.positions - pos), axis=1)
            assert d.min() >= MIN_SLAB_DISTANCE_A - 1e-6
        # the complex keeps the defect record and its under-coordinated Pb, by index
        assert complex_.info["defect"] == "V_Br"
        assert complex_.info["defect_record"]["name"] == "V_Br"
        assert undercoordinated_indices(complex_) == under


def test_exposed_pb_binds_on_an_undercoordinated_pb_leaning_into_the_vacancy(v_br):
    slab, summary = v_br
    site = np.array(summary.removed[0].position_A)
    under = undercoordinated_indices(slab)
    spec = get_ligand("AcO")
    cands = enumerate_placements(slab, spec, modes=["exposed_pb"], form="radical")
    assert {p.site for p in cands} <= set(under) and cands
    for p in cands:
        complex_ = place_ligand(slab, spec, p)
        pb = slab.positions[p.site]
        o = _anchor_position(complex_, len(slab), pb)
        assert np.linalg.norm(_mic(slab, o - pb)) == pytest.approx(BOND_LENGTH_A["O"], abs=0.01)
        up = _mic(slab, o - pb)
        assert up[2] > 0  # above the surface
        lateral = up.copy()
        lateral[2] = 0
        to_vacancy = _mic(slab, site - pb)
        to_vacancy[2] = 0
        cos = lateral @ to_vacancy / np.linalg.norm(lateral) / np.linalg.norm(to_vacancy)
        assert cos == pytest.approx(1.0, abs=1e-6)  # leaning towards the vacant site


def test_defect_modes_refuse_slabs_they_cannot_bind_at():
    pristine = cspbbr3_001_slab(layers=3, supercell=(2, 2), vacuum=25.0)
    with pytest.raises(InputError, match="no defect record"):
        enumerate_placements(pristine, "AcO", modes=["vacancy_site"], form="radical")
    v_csbr, _ = defect_slab(cspbbr3_001_slab(layers=5, supercell=(2, 2), vacuum=25.0), "V_CsBr")
    with pytest.raises(InputError, match="cannot reach its site; use mode exposed_pb") as exc:
        enumerate_placements(v_csbr, "AcO", modes=["vacancy_site"], form="radical")
    assert "\n" not in str(exc.value)
    # the Pb above the missing apical Br is reachable: straight up (no vacancy to lean into)
    (p, *_) = enumerate_placements(v_csbr, "AcO", modes=["exposed_pb"], form="radical")
    assert p.site in undercoordinated_indices(v_csbr)


def test_trap_spec_one_line_errors():
    import yaml

    from dftflow.workflows.spec import parse_study

    repo = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((repo / "workflows" / "test_mock_traps.yaml").read_text())
    spec = parse_study(data)
    assert spec.traps.defects == ["V_Br"] and spec.slab.defect == "none"
    for traps, words in [
        ({"defects": ["V_X"]}, "unknown defect 'V_X'"),
        ({"defects": ["none"]}, "list only defects"),
        ({"defects": ["V_Br"], "modes": ["monodentate"]}, "do not bind at a defect"),
        ({"defects": ["V_CsBr"]}, "slab.layers 5 or more"),
    ]:
        with pytest.raises(InputError, match=words) as exc:
            parse_study({**data, "traps": traps})
        assert "\n" not in str(exc.value)
    # by default every mode that reaches the defect: none lands on V_CsBr's subsurface site
    five = {**data, "slab": {**data["slab"], "layers": 5}}
    spec = parse_study({**five, "traps": {"defects": ["V_Br", "V_CsBr"]}})
    assert spec.traps.modes_for("V_Br") == ["vacancy_site", "exposed_pb"]
    assert spec.traps.modes_for("V_CsBr") == ["exposed_pb"]
    # a study without traps dumps as before (digests of earlier studies unchanged)
    no_traps = {k: v for k, v in data.items() if k != "traps"}
    assert "traps" not in parse_study(no_traps).model_dump(mode="json")


def test_cli_build_complex_vacancy_site_on_a_pristine_slab_is_one_line_exit_2(tmp_path):
    exe = shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))
    slab = tmp_path / "slab.vasp"
    run = subprocess.run(
        [exe, "build", "slab", "--layers", "3", "-o", str(slab)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [
            exe,
            "build",
            "complex",
            "--slab",
            str(slab),
            "--ligand",
            "AcO",
            "--mode",
            "vacancy_site",
            "--form",
            "radical",
            "-o",
            str(tmp_path / "c.vasp"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "no defect record" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.vasp").exists()


def test_cli_run_trap_study_with_an_unreachable_vacancy_site_is_one_line_exit_2(tmp_path):
    import yaml

    repo = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((repo / "workflows" / "test_mock_traps.yaml").read_text())
    data["slab"]["layers"] = 5
    data["traps"] = {"defects": ["V_CsBr"], "modes": ["vacancy_site", "exposed_pb"]}
    study = tmp_path / "traps.yaml"
    study.write_text(yaml.safe_dump(data))
    exe = shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))
    out = tmp_path / "out"
    run = subprocess.run(
        [exe, "run", str(study), "-o", str(out)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 2
    assert "vacancy_site cannot reach the V_CsBr vacancy" in run.stderr
    assert "use modes [exposed_pb] for V_CsBr" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert not out.exists()  # refused at load: nothing written
