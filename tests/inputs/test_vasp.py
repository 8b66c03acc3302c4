"""The paper's VASP input sets: key-by-key parameters per stage, DIPOL, shared FFT grid, POTCARs."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from pymatgen.io.vasp import Incar, Kpoints, Poscar

from dftflow.errors import EngineError, InputError
from dftflow.inputs import params
from dftflow.inputs.vasp import (
    INPUTS_RECORD,
    fft_grid,
    infer_system,
    make_inputs,
    periodic_center_of_mass,
    shared_fft_grid,
    write_inputs,
)
from dftflow.structures.convert import to_structure


@pytest.fixture(scope="module")
def slab() -> Atoms:
    from dftflow.structures.slab import cspbbr3_001_slab

    return cspbbr3_001_slab(layers=3, supercell=(1, 1))


@pytest.fixture(scope="module")
def bulk_cell() -> Atoms:
    from dftflow.structures.bulk import cspbbr3_cubic

    return cspbbr3_cubic()


def _ligand_in_cell(cell, z_A: float) -> Atoms:
    mol = molecule("CH3COOH")
    mol.positions -= mol.positions.mean(axis=0)
    mol.positions += [cell[0][0] / 2, cell[1][1] / 2, z_A]
    mol.set_cell(cell)
    mol.pbc = True
    return mol


COMMON = {
    "GGA": "PE",
    "ENCUT": params.ENCUT_EV,
    "EDIFF": params.EDIFF_EV,
    "EDIFFG": -params.FMAX_EV_PER_A,
    "PREC": "Accurate",
    "ISMEAR": 0,
    "SIGMA": params.SIGMA_EV,
    "LASPH": True,
    "LWAVE": False,
}

EXPECTED = {
    "bulk_relax": {**COMMON, "ISIF": 3, "IBRION": 2, "LCHARG": False},
    "slab_relax": {**COMMON, "ISIF": 2, "IBRION": 2, "LCHARG": False, "LDIPOL": True, "IDIPOL": 3},
    "complex_relax": {
        **COMMON,
        "ISIF": 2,
        "IBRION": 2,
        "LCHARG": False,
        "LDIPOL": True,
        "IDIPOL": 3,
    },
    "molecule_relax": {**COMMON, "ISIF": 2, "IBRION": 2, "LCHARG": False},
    "static": {**COMMON, "NSW": 0, "LORBIT": 11, "LCHARG": True, "LAECHG": True},
}
KPTS = {
    "bulk_relax": ("Monkhorst", list(params.KPOINTS_BULK)),
    "slab_relax": ("Monkhorst", list(params.KPOINTS_SLAB)),
    "complex_relax": ("Monkhorst", list(params.KPOINTS_SLAB)),
    "molecule_relax": ("Gamma", [1, 1, 1]),
}


def _structure_for(stage, slab, bulk_cell):
    if stage == "bulk_relax":
        return bulk_cell
    if stage == "molecule_relax":
        return _ligand_in_cell(slab.cell, 10.0)
    if stage == "complex_relax":
        top = slab.positions[:, 2].max()
        return slab + _ligand_in_cell(slab.cell, top + 3.0)
    return slab


@pytest.mark.parametrize("stage", list(EXPECTED))
def test_stage_parameters_key_by_key(stage, slab, bulk_cell, tmp_path):
    structure = _structure_for(stage, slab, bulk_cell)
    inputs = write_inputs(structure, stage, tmp_path, potcar_spec=True)
    incar = Incar.from_file(tmp_path / "INCAR")  # what VASP would read
    for key, value in EXPECTED[stage].items():
        got = incar[key]
        if isinstance(value, str):  # VASP reads string tags case-insensitively
            got, value = got.upper(), value.upper()
        assert got == value, key
    assert incar["NELM"] >= 60
    if stage == "static":
        assert incar["NEDOS"] >= 3001
        assert all(k in incar for k in ("NGXF", "NGYF", "NGZF"))
        assert "LDIPOL" in incar  # slab static: dipole correction kept
    else:
        assert incar["NSW"] > 0
    assert incar["ISPIN"] == 1  # closed-shell systems
    kp = Kpoints.from_file(tmp_path / "KPOINTS")
    style, div = KPTS.get(stage, ("Monkhorst", list(params.KPOINTS_SLAB)))
    assert kp.style.name == style and list(kp.kpts[0]) == div
    spec = (tmp_path / "POTCAR.spec").read_text().split()
    assert spec == inputs.potcar_symbols
    assert all(s in params.POTCAR_SYMBOLS.values() for s in spec)
    assert (tmp_path / INPUTS_RECORD).is_file()
    assert not (tmp_path / "POTCAR").exists()


def test_lreal_by_size(slab):
    small = make_inputs(slab, "slab_relax")
    big = make_inputs(slab.repeat((2, 2, 1)), "slab_relax")
    assert small.incar["LREAL"] is False and len(slab) <= 20
    assert big.incar["LREAL"] == "Auto"


def test_selective_dynamics_from_fixatoms(slab, tmp_path):
    write_inputs(slab, "slab_relax", tmp_path, potcar_spec=True)
    pos = Poscar.from_file(tmp_path / "POSCAR")
    sd = pos.structure.site_properties["selective_dynamics"]
    fixed = sorted(slab.constraints[0].index.tolist())
    assert [i for i, f in enumerate(sd) if not any(f)] == fixed
    assert sum(all(f) for f in sd) == len(slab) - len(fixed)


def test_selective_dynamics_from_pymatgen_site_property(slab):
    s = to_structure(slab)
    flags = [[True, True, False]] * len(s)
    s.add_site_property("selective_dynamics", flags)
    inputs = make_inputs(s, "slab_relax")
    got = np.asarray(inputs.poscar.structure.site_properties["selective_dynamics"]).tolist()
    assert got == flags


def test_dipol_is_centre_of_mass(slab):
    s = to_structure(slab)
    masses = np.array([site.specie.atomic_mass for site in s])
    expected_z = float(np.dot(masses, s.frac_coords[:, 2]) / masses.sum())
    dipol = make_inputs(slab, "slab_relax").incar["DIPOL"]
    assert dipol[2] == pytest.approx(expected_z, abs=2e-6)
    assert dipol[:2] == [0.5, 0.5]  # IDIPOL=3: only z matters; in-plane fixed, not ill-defined
    # stable under tiny displacements (a POSCAR round trip, a relaxation step)
    moved = slab.copy()
    moved.positions += np.random.default_rng(0).normal(scale=0.01, size=moved.positions.shape)
    again = make_inputs(moved, "slab_relax").incar["DIPOL"]
    assert again[:2] == [0.5, 0.5] and again[2] == pytest.approx(dipol[2], abs=2e-3)


@pytest.mark.parametrize("offset", [-0.04, 0.0, 0.05])
def test_dipol_of_slab_wrapping_across_boundary(slab, offset):
    s = to_structure(slab)
    z0 = periodic_center_of_mass(s)[2]
    shift = 1.0 - z0 + offset  # moves the slab's centre next to z = 0: it straddles the boundary
    wrapped = s.copy()
    wrapped.translate_sites(list(range(len(s))), [0, 0, shift], frac_coords=True, to_unit_cell=True)
    zf = wrapped.frac_coords[:, 2]
    assert zf.min() < 0.15 and zf.max() > 0.85  # really crosses the boundary
    z = make_inputs(wrapped, "slab_relax").incar["DIPOL"][2]
    expected = (z0 + shift) % 1.0
    d = abs(z - expected)
    assert min(d, 1 - d) < 2e-6  # DIPOL is written with 6 decimals
    # a naive (non-periodic) mean would be wrong for the wrapped slab
    naive = float(np.mean(zf))
    assert min(abs(naive - expected), 1 - abs(naive - expected)) > 0.05


def test_shared_fft_grid_delta_rho_trio(slab):
    top = slab.positions[:, 2].max()
    ligand = _ligand_in_cell(slab.cell, top + 3.0)
    complex_ = slab + ligand
    grid = shared_fft_grid([complex_, slab, ligand])
    assert grid == fft_grid(to_structure(slab))[1]
    assert all(n % 2 == 0 for n in grid)
    over = {"NGXF": grid[0], "NGYF": grid[1], "NGZF": grid[2]}
    grids = set()
    for s in (complex_, slab, ligand):
        inc = make_inputs(s, "static", over).incar
        grids.add((inc["NGXF"], inc["NGYF"], inc["NGZF"]))
    assert grids == {tuple(grid)}
    # the grid resolves ENCUT: NGXF >= 2 * 2 * G_cut * a / (2 pi), VASP's PREC=Accurate rule
    gcut = np.sqrt(400.0 / 13.605693) / 0.529177  # 1/Angstrom
    a = slab.cell.lengths()
    assert all(n >= 4 * gcut * L / (2 * np.pi) for n, L in zip(grid, a, strict=True))


def test_shared_fft_grid_refuses_different_cells(slab, bulk_cell):
    with pytest.raises(InputError, match="share one cell"):
        shared_fft_grid([slab, bulk_cell])


def test_open_shell_species_get_ispin2(slab):
    cell = slab.cell
    acid = _ligand_in_cell(cell, 10.0)  # CH3COOH, 24 valence electrons
    radical = acid[[i for i, a in enumerate(acid) if not (a.symbol == "H" and i == 7)]]
    assert len(radical) == len(acid) - 1  # CH3COO. radical, 23 electrons
    assert make_inputs(acid, "molecule_relax").incar["ISPIN"] == 1
    assert make_inputs(radical, "molecule_relax").incar["ISPIN"] == 2
    anion = radical.copy()
    anion.info["charge"] = -1
    inc = make_inputs(anion, "molecule_relax").incar
    assert inc["ISPIN"] == 1 and inc["NELECT"] == pytest.approx(24.0)
    triplet = acid.copy()
    triplet.info["spin"] = 2
    assert make_inputs(triplet, "molecule_relax").incar["ISPIN"] == 2


def test_overrides_merged_once_and_recorded(slab):
    inputs = make_inputs(slab, "slab_relax", {"encut": 520, "LREAL": None, "ISPIN": 2})
    assert inputs.incar["ENCUT"] == 520
    assert "LREAL" not in inputs.incar  # None removes a key
    assert inputs.incar["ISPIN"] == 2  # the automatic closed-shell ISPIN=1 does not win
    assert inputs.defaults["ENCUT"] == 400.0
    assert inputs.overrides == {"ENCUT": 520, "LREAL": None, "ISPIN": 2}
    k = make_inputs(slab, "slab_relax", {"KPOINTS": [4, 4, 1]})
    assert k.kpoint_divisions == [4, 4, 1]


def test_user_dipol_not_replaced(slab):
    inc = make_inputs(slab, "slab_relax", {"DIPOL": [0.5, 0.5, 0.25]}).incar
    assert inc["DIPOL"] == [0.5, 0.5, 0.25]


def test_unknown_incar_tag_and_stage(slab):
    with pytest.raises(InputError, match="ENCUTT"):
        make_inputs(slab, "slab_relax", {"ENCUTT": 500})
    with pytest.raises(InputError, match="unknown stage"):
        make_inputs(slab, "slab_relaxation")


def test_infer_system(slab, bulk_cell):
    assert infer_system(to_structure(slab)) == "slab"
    assert infer_system(to_structure(bulk_cell)) == "bulk"
    big_cell = slab.repeat((2, 2, 1)).cell  # the paper's 2x2 cell: 11.7 A in-plane
    assert infer_system(to_structure(_ligand_in_cell(big_cell, 10.0))) == "molecule"


def test_potcar_missing_directory_is_one_line(slab, tmp_path, monkeypatch):
    from pymatgen.core import SETTINGS

    monkeypatch.delenv("PMG_VASP_PSP_DIR", raising=False)
    monkeypatch.setitem(SETTINGS, "PMG_VASP_PSP_DIR", None)
    with pytest.raises(EngineError, match="PMG_VASP_PSP_DIR") as exc:
        write_inputs(slab, "slab_relax", tmp_path / "a")
    assert "\n" not in str(exc.value)
    monkeypatch.setenv("PMG_VASP_PSP_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(EngineError, match="does not exist"):
        write_inputs(slab, "slab_relax", tmp_path / "b")


def test_potcar_missing_element(slab, tmp_path, monkeypatch):
    psp = tmp_path / "psp" / "POT_GGA_PAW_PBE_54"
    psp.mkdir(parents=True)
    monkeypatch.setenv("PMG_VASP_PSP_DIR", str(tmp_path / "psp"))
    with pytest.raises(EngineError, match="not found"):
        write_inputs(slab, "slab_relax", tmp_path / "c")


def test_paper_set_is_a_pymatgen_input_set(slab, tmp_path):
    from pymatgen.io.vasp.sets import VaspInputSet

    from dftflow.inputs.vasp import PaperVaspSet

    vis = PaperVaspSet.from_overrides("slab_relax", {"ENCUT": 450}, structure=to_structure(slab))
    assert isinstance(vis, VaspInputSet)
    vis.write_input(str(tmp_path / "pmg"), potcar_spec=True)  # pymatgen's own writer
    ours = write_inputs(
        slab, "slab_relax", tmp_path / "ours", overrides={"ENCUT": 450}, potcar_spec=True
    )
    for name in ("INCAR", "KPOINTS", "POTCAR.spec"):
        assert (tmp_path / "pmg" / name).read_text().split() == (
            tmp_path / "ours" / name
        ).read_text().split()
    assert ours.overrides == vis.overrides == {"ENCUT": 450}
    incar = Incar.from_file(tmp_path / "pmg" / "INCAR")
    assert "LMAXMIX" not in incar and "MAGMOM" not in incar  # no Materials Project heuristics


def test_static_grid_follows_the_effective_encut_and_user_grid_wins(slab):
    default = make_inputs(slab, "static").incar
    finer = make_inputs(slab, "static", {"ENCUT": 520}).incar
    assert finer["NGZF"] > default["NGZF"]
    assert [finer[k] for k in ("NGXF", "NGYF", "NGZF")] == fft_grid(to_structure(slab), 520)[1]
    fixed = make_inputs(slab, "static", {"ENCUT": 520, "NGZF": 200}).incar
    assert fixed["NGZF"] == 200


def test_potcar_and_kpoints_overrides(slab):
    mol = _ligand_in_cell(slab.repeat((2, 2, 1)).cell, 10.0)
    inputs = make_inputs(
        mol, "molecule_relax", {"KPOINTS": [2, 2, 2], "potcar_symbols": {"H": "H_h"}}
    )
    assert inputs.kpoints.style.name == "Gamma" and inputs.kpoint_divisions == [2, 2, 2]
    assert "H_h" in inputs.potcar_symbols
    assert inputs.overrides == {"KPOINTS": [2, 2, 2], "potcar_symbols": {"H": "H_h"}}
