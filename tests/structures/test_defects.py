"""Surface vacancies of the PbBr2-terminated CsPbBr3 (001) slab (issue 15, item 1).

Counts, electrons, charge balance, the symmetry classes of the vacancy site, the under-coordinated
Pb, the records that carry the defect through files, the study spec and the console script.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from dftflow.errors import InputError
from dftflow.inputs import params
from dftflow.inputs.vasp import POTCAR_ZVAL
from dftflow.structures.bulk import A_CSPBBR3_CUBIC
from dftflow.structures.defects import (
    DEFECT_NAMES,
    FORMAL_CHARGE,
    check_defect_request,
    defect_slab,
    undercoordinated_indices,
)
from dftflow.structures.slab import cspbbr3_001_slab

REPO = Path(__file__).resolve().parents[2]
A = A_CSPBBR3_CUBIC
#: Valence electrons of the POTCARs the inputs use (Cs_sv 9, Pb_d 14, Br 7).
VALENCE = {el: POTCAR_ZVAL[params.POTCAR_SYMBOLS[el]] for el in ("Cs", "Pb", "Br")}
#: What each defect removes.
REMOVED = {"V_Br": {"Br": 1}, "V_PbBr2": {"Pb": 1, "Br": 2}, "V_CsBr": {"Cs": 1, "Br": 1}}


def _exe() -> str:
    return shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))


def _dftflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_exe(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _top(atoms, el: str | None = None) -> list[int]:
    """Indices of the atoms of the top plane (independent of the builder's plane finder)."""
    z = atoms.positions[:, 2]
    out = np.flatnonzero(z > z.max() - 0.5)
    return [int(i) for i in out if el is None or atoms[i].symbol == el]


def _mic_dist(atoms, i: int, pos: np.ndarray) -> float:
    d = atoms.get_scaled_positions()[i] - np.linalg.solve(atoms.cell[:].T, pos)
    d -= np.round(d)
    return float(np.linalg.norm(d @ atoms.cell[:]))


# ---------------------------------------------------------------------------------------------
# Counts, electrons, charge
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("name", ["V_Br", "V_PbBr2", "V_CsBr"])
def test_removed_atoms_electrons_and_composition(name, n):
    pristine = cspbbr3_001_slab(layers=5, supercell=(n, n))
    defective, s = defect_slab(pristine, name, valence=VALENCE)
    before = Counter(pristine.get_chemical_symbols())
    after = Counter(defective.get_chemical_symbols())
    assert before == Counter({"Cs": 2 * n * n, "Pb": 3 * n * n, "Br": 8 * n * n})
    assert before - after == Counter(REMOVED[name])
    assert len(defective) == len(pristine) - sum(REMOVED[name].values()) == s.n_atoms_defective
    assert Counter(r.element for r in s.removed) == Counter(REMOVED[name])
    # valence electrons: 5-layer n x n slab = n^2 (2*9 + 3*14 + 8*7) = 116 n^2
    removed_e = sum(VALENCE[el] * k for el, k in REMOVED[name].items())
    assert s.valence_electrons_pristine == 116 * n * n
    assert removed_e == {"V_Br": 7, "V_PbBr2": 28, "V_CsBr": 16}[name]
    assert s.valence_electrons_removed == removed_e
    assert s.valence_electrons_defective == 116 * n * n - removed_e
    # formal charges of what is left: +1 for V_Br (one electron beyond the ionic picture), else 0
    left = sum(FORMAL_CHARGE[el] for el in defective.get_chemical_symbols())
    assert left == (1 if name == "V_Br" else 0) == s.excess_electrons
    assert s.charge_balanced is (name != "V_Br")
    assert s.cell_charge == 0
    odd = name == "V_Br"
    assert (int(s.valence_electrons_defective) % 2 == 1) is odd
    assert s.spin_polarized is odd and defective.info["spin_polarized"] is odd
    # without a valence table the parity comes from atomic numbers, and agrees
    _, s_z = defect_slab(pristine, name)
    assert s_z.valence_electrons_removed is None and s_z.spin_polarized is odd
    # fixed bottom planes kept; the removed atoms were free
    assert len(defective.constraints[0].index) == len(pristine.constraints[0].index)
    assert all(r.plane >= 3 for r in s.removed)


def test_zval_parity_equals_atomic_number_parity_for_the_slab_elements():
    """The structures layer's Z-parity rule holds for every Cs/Pb/Br POTCAR dftflow knows."""
    z = {"Cs": 55, "Pb": 82, "Br": 35}
    for sym, zval in POTCAR_ZVAL.items():
        el = sym.split("_")[0]
        if el in z:
            assert (z[el] - int(zval)) % 2 == 0, sym


# ---------------------------------------------------------------------------------------------
# The site, by symmetry
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3])
def test_every_top_plane_br_is_one_symmetry_class(n):
    slab = cspbbr3_001_slab(supercell=(n, n))
    _, s = defect_slab(slab, "V_Br")
    top_br = _top(slab, "Br")
    assert len(top_br) == 2 * n * n
    assert [c.size for c in s.site_classes] == [2 * n * n] == [s.class_size]
    assert s.n_candidates == 2 * n * n
    assert s.removed[0].pristine_index in top_br
    assert "spglib" in s.symmetry_method


def test_broken_symmetry_splits_the_br_sites():
    """One top Br pushed up 0.3 A is no longer equivalent to the others: the classes are real."""
    slab = cspbbr3_001_slab(supercell=(2, 2))
    moved = _top(slab, "Br")[3]
    slab.positions[moved, 2] += 0.3
    _, s = defect_slab(slab, "V_Br")
    assert sum(c.size for c in s.site_classes) == 8
    assert len(s.site_classes) > 1
    assert any(c.size == 1 and c.representative == (moved,) for c in s.site_classes)


def test_v_pbbr2_removes_a_pb_with_two_of_its_own_br_cis_first():
    slab = cspbbr3_001_slab(supercell=(2, 2))
    _, s = defect_slab(slab, "V_PbBr2")
    # 4 Pb x 4 cis pairs (Br-Pb-Br 90 deg), then 4 Pb x 2 trans pairs (180 deg)
    assert [(c.size, c.max_separation_A) for c in s.site_classes] == [
        (16, round(A / np.sqrt(2), 2)),
        (8, round(A, 2)),
    ]
    pb = next(r for r in s.removed if r.element == "Pb")
    brs = [r for r in s.removed if r.element == "Br"]
    assert {r.plane for r in s.removed} == {4}
    for br in brs:
        assert _mic_dist(slab, br.pristine_index, np.array(pb.position_A)) == pytest.approx(A / 2)
    v = [np.array(b.position_A) - np.array(pb.position_A) for b in brs]
    v = [x - np.round(x @ np.linalg.inv(slab.cell[:])) @ slab.cell[:] for x in v]
    assert float(np.dot(v[0], v[1])) == pytest.approx(0.0, abs=1e-6)  # cis: 90 deg
    # the other class on request: trans, which takes both Br of one neighbouring Pb in a 2x2 cell
    _, trans = defect_slab(slab, "V_PbBr2", site_class=1)
    assert trans.chosen_class == 1 and trans.class_size == 8
    assert [(u.br_before, u.br_after) for u in trans.undercoordinated_pb] == [(5, 3)]
    with pytest.raises(InputError, match="2 symmetry-distinct site class"):
        defect_slab(slab, "V_PbBr2", site_class=2)


def test_v_csbr_takes_a_nearest_pair_of_the_subsurface_plane():
    slab = cspbbr3_001_slab(supercell=(2, 2))
    d, s = defect_slab(slab, "V_CsBr")
    assert {r.plane for r in s.removed} == {3}
    assert [c.size for c in s.site_classes] == [16]  # 4 Cs x 4 nearest in-plane Br
    cs, br = s.removed
    assert _mic_dist(slab, br.pristine_index, np.array(cs.position_A)) == pytest.approx(
        A / np.sqrt(2)
    )
    z_planes = sorted({round(z, 2) for z in slab.positions[:, 2]})
    assert cs.position_A[2] == pytest.approx(z_planes[-2], abs=0.01)


# ---------------------------------------------------------------------------------------------
# Under-coordinated Pb
# ---------------------------------------------------------------------------------------------
def test_v_br_leaves_the_two_bridged_surface_pb_four_coordinated():
    slab = cspbbr3_001_slab(supercell=(2, 2))
    d, s = defect_slab(slab, "V_Br")
    site = np.array(s.removed[0].position_A)
    expected = sorted(i for i in _top(slab, "Pb") if _mic_dist(slab, i, site) < 0.6 * A)
    assert len(expected) == 2
    assert [u.pristine_index for u in s.undercoordinated_pb] == expected
    assert [(u.br_before, u.br_after) for u in s.undercoordinated_pb] == [(5, 4), (5, 4)]
    # indices of the defective slab: the same Pb atoms, found through the per-site array
    assert undercoordinated_indices(d) == [u.index for u in s.undercoordinated_pb]
    for u in s.undercoordinated_pb:
        assert d[u.index].symbol == "Pb"
        assert np.allclose(d.positions[u.index], slab.positions[u.pristine_index])
    assert d.info["defect"] == "V_Br"
    record = d.info["defect_record"]
    assert [u["index"] for u in record["undercoordinated_pb"]] == undercoordinated_indices(d)


def test_v_csbr_cuts_the_apical_bond_of_a_surface_pb():
    d, s = defect_slab(cspbbr3_001_slab(supercell=(2, 2)), "V_CsBr")
    assert sorted((u.br_before, u.br_after) for u in s.undercoordinated_pb) == [(5, 4), (6, 5)]


def test_per_site_array_follows_the_atoms_through_a_ligand_extend():
    from ase import Atoms

    d, s = defect_slab(cspbbr3_001_slab(supercell=(2, 2)), "V_Br")
    complex_ = d.copy()
    complex_.extend(Atoms("CO", positions=[[0, 0, 25], [0, 0, 26.2]], cell=d.cell))
    assert undercoordinated_indices(complex_) == [u.index for u in s.undercoordinated_pb]


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------
def test_refusals_name_the_fix():
    with pytest.raises(InputError, match=r"unknown defect 'V_I'.*none, V_Br, V_PbBr2, V_CsBr"):
        check_defect_request("V_I", "PbBr2", 5, (2, 2))
    with pytest.raises(InputError, match="use --termination PbBr2"):
        check_defect_request("V_PbBr2", "CsBr", 5, (2, 2))
    with pytest.raises(InputError, match="use --layers 5 or more"):
        check_defect_request("V_CsBr", "PbBr2", 3, (2, 2))
    for sc in [(1, 1), (2, 1), (1, 3)]:
        with pytest.raises(InputError, match=r"5\.87 A .*11\.75 A.*--supercell 2x2 or larger"):
            check_defect_request("V_Br", "PbBr2", 5, sc)
    assert check_defect_request("V_CsBr", "PbBr2", 5, (2, 2)) == "V_CsBr"
    # the same rules on built slabs
    with pytest.raises(InputError, match="--supercell 2x2 or larger"):
        defect_slab(cspbbr3_001_slab(supercell=(2, 1)), "V_Br")
    with pytest.raises(InputError, match="top plane is CsBr"):
        defect_slab(cspbbr3_001_slab(termination="CsBr"), "V_Br")
    with pytest.raises(InputError, match="--layers 5 or more"):
        defect_slab(cspbbr3_001_slab(layers=3), "V_CsBr")
    with pytest.raises(InputError, match="fixed atoms"):
        defect_slab(cspbbr3_001_slab(n_fixed_layers=4), "V_CsBr")
    assert set(DEFECT_NAMES) == {"none", "V_Br", "V_PbBr2", "V_CsBr"}


# ---------------------------------------------------------------------------------------------
# Study spec
# ---------------------------------------------------------------------------------------------
def _study(**slab):
    data = yaml.safe_load((REPO / "workflows" / "cspbbr3_ligands.yaml").read_text())
    data.setdefault("slab", {}).update(slab)
    return data


def test_study_spec_validates_the_defect():
    from dftflow.workflows.firetasks import build_slab
    from dftflow.workflows.spec import SlabSpec, parse_study

    with pytest.raises(InputError, match=r"slab\.defect: unknown defect 'V_X'.*V_Br, V_PbBr2"):
        parse_study(_study(defect="V_X"))
    with pytest.raises(InputError, match=r"slab\.supercell 2x2 or larger"):
        parse_study(_study(defect="V_Br", supercell=[1, 1]))
    with pytest.raises(InputError, match=r"slab\.termination PbBr2"):
        parse_study(_study(defect="V_Br", termination="CsBr"))
    # a valid defect makes a trap study: the pristine host slab and the defect beside it ...
    for name in ("V_Br", "V_PbBr2", "V_CsBr"):
        spec = parse_study(_study(defect=name))
        assert spec.slab.defect == "none" and spec.traps.defects == [name]
    # ... while the slab spec and the workflow's slab builder make the defective slab
    slab = build_slab(SlabSpec(defect="V_CsBr").model_dump(mode="json"), None)
    assert slab.info["defect"] == "V_CsBr" and len(slab) == 52 - 2
    slab = build_slab(SlabSpec(defect="V_PbBr2").model_dump(mode="json"), None)
    assert slab.info["defect"] == "V_PbBr2" and len(slab) == 52 - 3
    # a perfect slab dumps as before the field existed (study digests unchanged)
    assert "defect" not in SlabSpec().model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# Console script
# ---------------------------------------------------------------------------------------------
def test_cli_build_slab_defect_json_summary_and_sidecar(tmp_path):
    r = _dftflow("build", "slab", "-o", "POSCAR", "--defect", "V_Br", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    d = out["defect"]
    assert {"name", "removed", "valence_electrons_removed", "spin_polarized"} <= set(d)
    assert {"class_size", "charge_balanced", "formula_defective"} <= set(d)
    assert {"undercoordinated_pb", "site_classes", "defect_image_distance_A"} <= set(d)
    assert d["name"] == "V_Br" and d["spin_polarized"] is True and d["class_size"] == 8
    assert d["valence_electrons_pristine"] - d["valence_electrons_defective"] == 7
    assert out["summary"]["formula"] == "Cs8Pb12Br31"
    sidecar = json.loads((tmp_path / "POSCAR.ligand.json").read_text())
    assert sidecar["defect_record"]["name"] == "V_Br" and sidecar["ligand_indices"] == []

    # read back as every later stage does: the defect site is found by index
    from dftflow.cli.build import read_structure

    atoms = read_structure(tmp_path / "POSCAR")
    assert atoms.info["defect"] == "V_Br"
    assert undercoordinated_indices(atoms) == [u["index"] for u in d["undercoordinated_pb"]]
    assert all(atoms[i].symbol == "Pb" for i in undercoordinated_indices(atoms))

    # the VASP inputs of the odd-electron slab are spin-polarised
    r = _dftflow("inputs", "POSCAR", "-s", "slab_relax", "-o", "in", "--potcar-spec", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ISPIN = 2" in (tmp_path / "in" / "INCAR").read_text()

    assert sidecar["undercoordinated"] == [[u["index"], 1] for u in d["undercoordinated_pb"]]

    # a stale sidecar naming other atoms is refused, not trusted
    sidecar["undercoordinated"][0][0] = 0  # a Cs
    (tmp_path / "POSCAR.ligand.json").write_text(json.dumps(sidecar))
    with pytest.raises(InputError, match="stale sidecar"):
        read_structure(tmp_path / "POSCAR")


def test_defect_site_survives_a_complex_written_to_poscar(tmp_path):
    """A ligand placed on a V_CsBr slab: the complex's sidecar still names the defect's Pb."""
    from dftflow.cli.build import read_structure, write_structure
    from dftflow.structures.placement import enumerate_placements, place_ligand

    d, s = defect_slab(cspbbr3_001_slab(supercell=(2, 2)), "V_CsBr")
    complex_ = place_ligand(d, "AcO", enumerate_placements(d, "AcO")[0])
    assert undercoordinated_indices(complex_) == [u.index for u in s.undercoordinated_pb]
    write_structure(complex_, tmp_path / "POSCAR")
    back = read_structure(tmp_path / "POSCAR")
    assert back.info["defect"] == "V_CsBr"
    assert undercoordinated_indices(back) == [u.index for u in s.undercoordinated_pb]
    assert len(back) == len(d) + 7  # acetate C2H3O2 appended after the slab


def test_cli_build_slab_defect_text_summary(tmp_path):
    r = _dftflow("build", "slab", "-o", "s.vasp", "--defect", "V_PbBr2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "defect V_PbBr2" in text and "removed PbBr2" in text
    assert "first of 16 symmetry-equivalent choices" in text
    assert "464 -> 436 (-28" in text and "change even" in text
    assert "(5 -> 4 Br)" in text
    r = _dftflow("build", "slab", "-o", "t.vasp", "--defect", "V_Br", cwd=tmp_path)
    assert "spin-polarised" in r.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--defect", "V_Xx"], "unknown defect 'V_Xx': use one of none, V_Br, V_PbBr2, V_CsBr"),
        (["--defect", "V_PbBr2", "--termination", "CsBr"], "use --termination PbBr2"),
        (["--defect", "V_CsBr", "--layers", "3"], "use --layers 5 or more"),
        (["--defect", "V_Br", "--supercell", "1x1"], "use --supercell 2x2 or larger"),
    ],
)
def test_cli_bad_defect_one_line_exit_2(tmp_path, args, words):
    r = _dftflow("build", "slab", "-o", "s.vasp", *args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert list(tmp_path.iterdir()) == []
