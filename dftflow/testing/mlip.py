"""Two cheap committee members for tests of the screen (NOT machine-learned, NOT physical).

Screen YAMLs of the tests name them as ``dftflow.testing.mlip:pair_a`` and
``dftflow.testing.mlip:pair_b``: the mock VASP's Morse pair potential, the second with the
ligand-surface wells (Pb-O, Pb-N, H-Br) 20 % shallower, so the two disagree on E_ads by a known
amount and the committee's sigma is not zero.
"""

from __future__ import annotations

from dftflow.testing.mock_vasp_physics import PairPotential

#: Factor on the ligand-surface well depths of the second member.
SOFT_FACTOR = 0.8


def pair_a() -> PairPotential:
    """The mock VASP's pair potential."""
    return PairPotential()


def pair_b() -> PairPotential:
    """The same with Pb-O, Pb-N and H-Br wells scaled by :data:`SOFT_FACTOR`."""
    pairs = (("Pb", "O"), ("Pb", "N"), ("H", "Br"))
    return PairPotential(well_scale={frozenset(p): SOFT_FACTOR for p in pairs})
