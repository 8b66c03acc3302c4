"""Where the embedded engine seeds the unpaired electron of an odd-electron system (no GPAW run)."""

from __future__ import annotations

import numpy as np
import pytest

from dftflow.engines.embedded_gpaw import initial_magmoms
from dftflow.structures.defects import defect_slab, undercoordinated_indices
from dftflow.structures.ligand_atoms import ligand_indices_of
from dftflow.structures.placement import enumerate_placements, place_ligand
from dftflow.structures.slab import cspbbr3_001_slab


@pytest.fixture(scope="module")
def v_br_with_acid():
    """The V_Br slab (odd) and OA at its vacancy (odd: the acid adds an even count)."""
    slab, _ = defect_slab(cspbbr3_001_slab(layers=3, supercell=(2, 2), vacuum=25.0), "V_Br")
    (p, *_) = enumerate_placements(slab, "OA", modes=["exposed_pb"], form="as_is")
    return slab, place_ligand(slab, "OA", p)


def test_odd_defective_slab_seeds_one_mu_b_on_the_undercoordinated_pb(v_br_with_acid):
    slab, complex_ = v_br_with_acid
    for atoms in (slab, complex_):
        under = undercoordinated_indices(atoms)
        symbols = atoms.get_chemical_symbols()
        mags = initial_magmoms(symbols, ligand_indices_of(atoms), under)
        assert [symbols[i] for i in np.flatnonzero(mags)] == ["Pb", "Pb"]
        assert sorted(np.flatnonzero(mags)) == under
        assert mags.sum() == pytest.approx(1.0)  # one unpaired electron, 1 mu_B
        assert mags[under] == pytest.approx([0.5, 0.5])


def test_without_a_defect_the_moment_stays_on_the_ligand(v_br_with_acid):
    _, complex_ = v_br_with_acid
    symbols = complex_.get_chemical_symbols()
    lig = ligand_indices_of(complex_)
    for under in (None, []):
        mags = initial_magmoms(symbols, lig, under)
        assert sorted(np.flatnonzero(mags)) == sorted(lig)
        assert mags.sum() == pytest.approx(1.0)
