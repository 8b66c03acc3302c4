"""Bulk, slab and summary: compositions and terminations counted from coordinates."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from ase.constraints import FixAtoms

from dftflow.errors import InputError
from dftflow.structures import bulk, slab
from dftflow.structures.bulk import A_CSPBBR3_CUBIC


def planes_from_z(atoms, tol=0.5):
    """Independent plane counting for the tests: group sorted z, count species per plane."""
    z = atoms.positions[:, 2]
    order = np.argsort(z)
    planes, current, last = [], [], None
    for i in order:
        if last is not None and z[i] - last > tol:
            planes.append(current)
            current = []
        current.append(i)
        last = z[i]
    planes.append(current)
    symbols = atoms.get_chemical_symbols()
    return [Counter(symbols[i] for i in p) for p in planes], [float(np.mean(z[p])) for p in planes]


def test_bulk_cif_is_cubic_cspbbr3_with_params_lattice_constant():
    atoms = bulk.cspbbr3_cubic()
    assert atoms.get_chemical_formula() == "Br3CsPb"
    assert np.allclose(atoms.cell.lengths(), A_CSPBBR3_CUBIC)
    assert np.allclose(atoms.cell.angles(), 90.0)
    # Pb-Br = a/2 (corner-sharing octahedra), Cs-Br = a/sqrt(2)
    pb = atoms.get_chemical_symbols().index("Pb")
    cs = atoms.get_chemical_symbols().index("Cs")
    d_pb = sorted(atoms.get_distances(pb, range(len(atoms)), mic=True))
    assert d_pb[1] == pytest.approx(A_CSPBBR3_CUBIC / 2, abs=1e-6)
    d_cs = [atoms.get_distance(cs, i, mic=True) for i, s in enumerate(atoms.symbols) if s == "Br"]
    assert np.allclose(d_cs, A_CSPBBR3_CUBIC / np.sqrt(2))


def test_bulk_rescaled_and_readme_states_source():
    atoms = bulk.cspbbr3_cubic(6.0)
    assert atoms.cell[0, 0] == pytest.approx(6.0)
    assert atoms.get_volume() == pytest.approx(216.0)
    readme = (bulk.DATA_DIR / "bulk" / "README.md").read_text()
    assert "5.874" in readme and "cubic" in readme
    with pytest.raises(InputError):
        bulk.cspbbr3_cubic(-1.0)


def test_lattice_constant_from_taskdoc_uses_volume_per_formula_unit(tmp_path):
    from pymatgen.io.ase import AseAtomsAdaptor

    from dftflow.schemas import TaskDoc

    relaxed = bulk.cspbbr3_cubic(5.95).repeat((2, 2, 2))
    structure = AseAtomsAdaptor.get_structure(relaxed)
    doc = TaskDoc(
        engine="test",
        directory=str(tmp_path),
        formula=structure.composition.formula,
        n_atoms=len(structure),
        energy_eV=-1.0,
        converged_electronic=True,
        converged_ionic=True,
        n_ionic_steps=1,
        structure=structure.as_dict(),
    )
    assert bulk.lattice_constant_from_taskdoc(doc) == pytest.approx(5.95, abs=1e-6)
    doc.to_json_file(tmp_path / "bulk.json")
    assert bulk.lattice_constant_from_taskdoc(tmp_path / "bulk.json") == pytest.approx(5.95)
    # a tetragonal cell is refused
    strained = structure.copy()
    strained.scale_lattice(structure.volume)
    strained.lattice = strained.lattice.__class__.from_parameters(11.9, 11.9, 12.6, 90, 90, 90)
    with pytest.raises(InputError, match="not cubic"):
        bulk.lattice_constant_from_taskdoc(strained)
    no_cs = structure.copy()
    no_cs.remove_species(["Cs"])
    with pytest.raises(InputError, match="not a CsPbBr3"):
        bulk.lattice_constant_from_taskdoc(no_cs)


def test_pbbr2_slab_2x2_5_planes_composition_from_z():
    atoms = slab.cspbbr3_001_slab(layers=5, supercell=(2, 2), vacuum=15.0)
    a = A_CSPBBR3_CUBIC
    assert len(atoms) == 52
    assert atoms.get_chemical_formula("metal") == "Cs8Pb12Br32"
    comps, zs = planes_from_z(atoms)
    assert comps == [
        Counter({"Pb": 4, "Br": 8}),
        Counter({"Cs": 4, "Br": 4}),
        Counter({"Pb": 4, "Br": 8}),
        Counter({"Cs": 4, "Br": 4}),
        Counter({"Pb": 4, "Br": 8}),
    ]
    assert np.allclose(np.diff(zs), a / 2)
    assert atoms.cell[2, 2] - (zs[-1] - zs[0]) == pytest.approx(15.0)
    assert np.allclose(atoms.cell.lengths()[:2], 2 * a)
    # PbBr2 plane: Pb at (0,0), Br at (1/2,0),(0,1/2); CsBr plane: Br above Pb, Cs in the hollow
    top = [i for i in range(len(atoms)) if abs(atoms.positions[i, 2] - zs[-1]) < 0.1]
    below = [i for i in range(len(atoms)) if abs(atoms.positions[i, 2] - zs[-2]) < 0.1]
    for i in top:
        if atoms[i].symbol == "Pb":
            xy = {
                atoms[j].symbol
                for j in below
                if np.linalg.norm(atoms.get_distance(i, j, mic=True, vector=True)[:2]) < 0.1
            }
            assert xy == {"Br"}
    summary = slab.slab_summary(atoms)
    assert summary.termination_bottom == summary.termination_top == "PbBr2"
    assert [ly.kind for ly in summary.layers] == ["PbBr2", "CsBr", "PbBr2", "CsBr", "PbBr2"]
    assert summary.thickness_A == pytest.approx(2 * a)
    assert summary.vacuum_A == pytest.approx(15.0)
    assert summary.supercell == (2, 2)
    assert summary.in_plane_a_A == pytest.approx(a)


@pytest.mark.parametrize(
    ("fix", "n_fixed_layers", "expected_fixed", "expected_layers"),
    [
        ("bottom", None, 12 + 8, [0, 1]),
        ("center", None, 12, [2]),
        ("none", None, 0, []),
        ("bottom", 3, 12 + 8 + 12, [0, 1, 2]),
    ],
)
def test_fixed_atoms(fix, n_fixed_layers, expected_fixed, expected_layers):
    atoms = slab.cspbbr3_001_slab(fix=fix, n_fixed_layers=n_fixed_layers)
    fixed = set()
    for c in atoms.constraints:
        assert isinstance(c, FixAtoms)
        fixed.update(c.get_indices().tolist())
    assert len(fixed) == expected_fixed
    summary = slab.slab_summary(atoms)
    assert summary.n_fixed_atoms == expected_fixed
    assert summary.fixed_layers == expected_layers
    # fixed atoms are exactly the atoms of those planes (checked by z)
    _, zs = planes_from_z(atoms)
    z_fixed = {round(float(atoms.positions[i, 2]), 3) for i in fixed}
    assert z_fixed == {round(zs[k], 3) for k in expected_layers}


def test_csbr_termination_and_thicker_slab():
    atoms = slab.cspbbr3_001_slab(layers=3, supercell=(1, 1), termination="CsBr")
    comps, _ = planes_from_z(atoms)
    assert comps == [
        Counter({"Cs": 1, "Br": 1}),
        Counter({"Pb": 1, "Br": 2}),
        Counter({"Cs": 1, "Br": 1}),
    ]
    thick = slab.cspbbr3_001_slab(layers=7, supercell=(3, 2))
    summary = slab.slab_summary(thick)
    assert summary.supercell == (3, 2)
    assert [ly.kind for ly in summary.layers] == ["PbBr2", "CsBr"] * 3 + ["PbBr2"]
    assert thick.get_chemical_formula("metal") == "Cs18Pb24Br66"  # 4x6 PbBr2 + 3x6 CsBr


def test_summary_independent_of_atom_order_and_cell_origin():
    atoms = slab.cspbbr3_001_slab()
    rng = np.random.default_rng(0)
    shuffled = atoms[rng.permutation(len(atoms))]
    shuffled.positions[:, 2] += 0.8 * atoms.cell[2, 2]  # slab now crosses the cell boundary
    shuffled.wrap()
    s = slab.slab_summary(shuffled)
    assert [ly.kind for ly in s.layers] == ["PbBr2", "CsBr", "PbBr2", "CsBr", "PbBr2"]
    assert s.thickness_A == pytest.approx(2 * A_CSPBBR3_CUBIC)


def test_summary_reports_a_non_stoichiometric_face():
    atoms = slab.cspbbr3_001_slab()
    comps_top = max(range(len(atoms)), key=lambda i: atoms.positions[i, 2])
    del atoms[
        [
            i
            for i in range(len(atoms))
            if atoms[i].symbol == "Br"
            and abs(atoms.positions[i, 2] - atoms.positions[comps_top, 2]) < 0.1
        ][:1]
    ]
    s = slab.slab_summary(atoms)
    assert s.termination_top == "Pb4Br7"
    assert s.termination_bottom == "PbBr2"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": 2}, "at least 3"),
        ({"layers": 4}, "odd"),
        ({"supercell": (0, 2)}, "positive"),
        ({"vacuum": 0.0}, "vacuum"),
        ({"termination": "PbBr"}, "termination"),
        ({"fix": "top"}, "fix"),
        ({"n_fixed_layers": 5}, "n_fixed_layers"),
    ],
)
def test_slab_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        slab.cspbbr3_001_slab(**kwargs)
