"""The one vacuum-gap helper: widest gap, unwrapping across it, widths in Angstrom."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from pymatgen.core import Lattice, Structure

from dftflow.structures.convert import species_blocks, to_atoms, to_structure
from dftflow.structures.geometry import (
    axis_height_A,
    unwrap_across_gap,
    vacuum_axes,
    vacuum_gap,
    vacuum_middle_fraction,
    vacuum_width_A,
    widest_gap,
)


def test_widest_gap_inside_and_across_the_boundary():
    gap = widest_gap([0.1, 0.2, 0.3])  # vacuum from 0.3 over the boundary to 0.1
    assert gap.lower == pytest.approx(0.3) and gap.upper == pytest.approx(0.1)
    assert gap.width == pytest.approx(0.8) and gap.middle == pytest.approx(0.7)
    gap = widest_gap([0.05, 0.95, 0.5])  # slab wrapped across the boundary: vacuum in the middle
    assert gap.lower == pytest.approx(0.05) and gap.upper == pytest.approx(0.5)
    assert gap.width == pytest.approx(0.45)


def test_widest_gap_ties_prefer_the_boundary_and_empty_raises():
    assert widest_gap([0.0, 0.5]).lower == pytest.approx(0.5)
    assert widest_gap([0.3]).width == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no atoms"):
        widest_gap([])


def test_unwrap_makes_a_wrapped_slab_contiguous():
    f = np.array([0.95, 0.02, 0.08, 0.9])
    u = unwrap_across_gap(f)
    assert u.max() - u.min() == pytest.approx(0.18)
    assert u[0] == pytest.approx(0.95) and u[1] == pytest.approx(1.02)
    # rounding in the gap arithmetic must not send the first atom after the gap to +1
    f = [0.3805406, 0.2397057, 0.520598, 0.2395522, 0.23893556, 0.3800823, 0.5208736, 0.5211035]
    assert unwrap_across_gap(f).max() < 0.6


def test_widths_in_angstrom_for_structure_and_atoms():
    lat = Lattice.from_parameters(6.0, 6.0, 30.0, 90, 90, 120)
    s = Structure(lat, ["Pb", "Br"], [[0, 0, 0.4], [0.5, 0.5, 0.5]])
    assert vacuum_width_A(s, 2) == pytest.approx(0.9 * 30.0)
    assert axis_height_A(lat.matrix, 0) == pytest.approx(6.0 * np.sin(np.radians(120)))
    assert vacuum_axes(s, 6.0) == [False, False, True]
    middle, width = vacuum_middle_fraction(s, 2)
    assert middle == pytest.approx(0.95) and width == pytest.approx(27.0)
    atoms = Atoms(
        "PbBr", scaled_positions=[[0, 0, 0.4], [0.5, 0.5, 0.5]], cell=lat.matrix, pbc=True
    )
    assert vacuum_gap(atoms, 2) == vacuum_gap(s, 2)


def test_conversions_keep_fixed_atoms_and_order():
    from ase.constraints import FixAtoms

    atoms = Atoms("CsPbBrBr", positions=np.eye(4, 3) * 2.0, cell=[8, 8, 8], pbc=True)
    atoms.set_constraint(FixAtoms(indices=[1, 2]))
    s = to_structure(atoms)
    sd = s.site_properties["selective_dynamics"]
    assert [not any(f) for f in sd] == [False, True, True, False]
    assert species_blocks(s) == (["Cs", "Pb", "Br"], [1, 1, 2])
    back = to_atoms(s)
    assert back.constraints[0].index.tolist() == [1, 2]
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
