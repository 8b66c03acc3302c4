"""CsPbBr3 (001) slabs with a chosen termination, and their layer-by-layer summary.

Along [001] cubic CsPbBr3 is a stack of PbBr2 planes (Pb at (0,0), Br at (1/2,0) and (0,1/2)) and
CsBr planes (Cs at (1/2,1/2), Br at (0,0)), one every a/2. A slab of ``layers`` atomic planes is cut
from a stack of bulk cells at a plane whose *composition* is the requested termination (planes are
found by clustering z-coordinates and counting species, never by the luck of a slicing offset), and
both faces are checked again by composition after the cut.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms
from pydantic import BaseModel, Field

from dftflow.errors import InputError
from dftflow.structures.bulk import cspbbr3_cubic
from dftflow.structures.geometry import DEFAULT_SLAB_VACUUM_A, unwrap_across_gap

#: Elements of the inorganic slab (everything else is adsorbate).
SLAB_ELEMENTS = frozenset({"Cs", "Pb", "Br"})
#: Atoms whose z differ by less than this belong to the same plane (Angstrom); planes are a/2 ~ 2.9
#: Angstrom apart, relaxed rumpling is a few tenths of an Angstrom.
PLANE_TOLERANCE_A = 1.0
#: z of the bottom plane (Angstrom) when the vacuum is larger than twice this: the slab sits low in
#: the cell so that ligands standing on its top face stay inside it (codes with a non-periodic z,
#: e.g. GPAW with a dipole correction, need a few Angstrom to the cell boundary). With periodic
#: boundaries the slab's position along z changes nothing.
BOTTOM_MARGIN_A = 5.0
#: Species order of written slabs (POSCAR species blocks).
SPECIES_ORDER = ("Cs", "Pb", "Br")

Termination = Literal["PbBr2", "CsBr"]
FixMode = Literal["bottom", "center", "none"]


class Layer(BaseModel):
    """One atomic plane of a slab, bottom (index 0) to top."""

    index: int
    z_A: float = Field(description="mean z of the plane's atoms, Angstrom (cell coordinates)")
    composition: dict[str, int]
    kind: str = Field(description="'PbBr2', 'CsBr', or the plane's formula if neither")
    n_fixed: int = 0


class SlabSummary(BaseModel):
    """What a slab (or a slab + adsorbate complex) is made of, counted from its coordinates."""

    formula: str
    n_atoms: int
    n_slab_atoms: int
    adsorbate_formula: str = ""
    n_adsorbate_atoms: int = 0
    supercell: tuple[int, int]
    in_plane_a_A: float = Field(description="in-plane lattice constant (Pb-Pb), Angstrom")
    cell_A: tuple[float, float, float]
    layers: list[Layer]
    termination_bottom: str
    termination_top: str
    thickness_A: float = Field(description="z(top plane) - z(bottom plane), Angstrom")
    vacuum_A: float = Field(description="c - thickness: gap between the slab and its image")
    n_fixed_atoms: int
    fixed_layers: list[int] = Field(description="indices of planes whose atoms are all fixed")


# ---------------------------------------------------------------------------------------------
# Planes
# ---------------------------------------------------------------------------------------------
def _unwrapped_z(atoms: Atoms, indices: np.ndarray) -> np.ndarray:
    """Z of ``indices`` (Angstrom), unwrapped so a slab crossing the cell boundary is contiguous."""
    c = float(atoms.cell[2, 2])
    z = atoms.positions[indices, 2].copy()
    if len(z) < 2 or c <= 0:
        return z
    return unwrap_across_gap(z / c) * c


def find_planes(atoms: Atoms, tol_A: float = PLANE_TOLERANCE_A) -> list[np.ndarray]:
    """Atom indices of each atomic plane of the inorganic slab, from bottom to top.

    Only Cs, Pb and Br atoms are considered; a new plane starts wherever consecutive sorted
    z-coordinates differ by more than ``tol_A``.
    """
    symbols = np.array(atoms.get_chemical_symbols())
    idx = np.flatnonzero(np.isin(symbols, list(SLAB_ELEMENTS)))
    if len(idx) == 0:
        raise InputError("no Cs/Pb/Br atoms: not a CsPbBr3 slab")
    z = _unwrapped_z(atoms, idx)
    order = np.argsort(z, kind="stable")
    planes: list[list[int]] = [[int(idx[order[0]])]]
    for prev, cur in zip(order[:-1], order[1:], strict=True):
        if z[cur] - z[prev] > tol_A:
            planes.append([])
        planes[-1].append(int(idx[cur]))
    return [np.array(sorted(p)) for p in planes]


def plane_kind(composition: dict[str, int]) -> str:
    """'PbBr2' or 'CsBr' when the plane has that stoichiometry, else its formula."""
    cs, pb, br = (composition.get(el, 0) for el in ("Cs", "Pb", "Br"))
    if cs == 0 and pb > 0 and br == 2 * pb:
        return "PbBr2"
    if pb == 0 and cs > 0 and br == cs:
        return "CsBr"
    return "".join(f"{el}{composition[el]}" for el in SPECIES_ORDER if composition.get(el))


def _composition(atoms: Atoms, indices: np.ndarray) -> dict[str, int]:
    counts = Counter(atoms.get_chemical_symbols()[i] for i in indices)
    return {el: counts[el] for el in SPECIES_ORDER if counts.get(el)}


def _fixed_indices(atoms: Atoms) -> set[int]:
    fixed: set[int] = set()
    for c in atoms.constraints:
        if isinstance(c, FixAtoms):
            fixed.update(int(i) for i in c.get_indices())
    return fixed


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def _default_n_fixed(layers: int, fix: FixMode) -> int:
    if fix == "none":
        return 0
    if fix == "bottom":
        return layers // 2
    return 1 if layers % 2 else 2


def _fixed_planes(layers: int, fix: FixMode, n_fixed: int) -> list[int]:
    if fix == "none" or n_fixed == 0:
        return []
    if fix == "bottom":
        return list(range(n_fixed))
    start = (layers - n_fixed) // 2
    return list(range(start, start + n_fixed))


def _sorted_atoms(atoms: Atoms) -> Atoms:
    """Atoms sorted by species (Cs, Pb, Br), then z, y, x: stable POSCAR species blocks."""
    rank = {el: i for i, el in enumerate(SPECIES_ORDER)}
    pos = np.round(atoms.positions, 4)
    keys = [
        (rank.get(s, len(rank)), pos[i, 2], pos[i, 1], pos[i, 0])
        for i, s in enumerate(atoms.get_chemical_symbols())
    ]
    order = sorted(range(len(atoms)), key=lambda i: keys[i])
    return atoms[order]


def cspbbr3_001_slab(
    layers: int = 5,
    supercell: tuple[int, int] = (2, 2),
    vacuum: float = DEFAULT_SLAB_VACUUM_A,
    termination: Termination = "PbBr2",
    a: float | None = None,
    fix: FixMode = "bottom",
    n_fixed_layers: int | None = None,
) -> Atoms:
    """A symmetric CsPbBr3 (001) slab.

    Parameters
    ----------
    layers
        Number of atomic planes, PbBr2 and CsBr together (5 = PbBr2/CsBr/PbBr2/CsBr/PbBr2). Must be
        odd (both faces have the requested termination) and at least 3.
    supercell
        In-plane repetitions (n_a, n_b) of the cubic a x a cell.
    vacuum
        Vacuum gap between the top plane and the periodic image of the bottom plane, Angstrom
        (c = thickness + vacuum). The bottom plane sits at z = min(vacuum/2,
        :data:`BOTTOM_MARGIN_A`), leaving the rest of the gap above the top face for ligands.
    termination
        Composition of both faces: ``"PbBr2"`` (n PbBr2 + (n-1) CsBr planes) or ``"CsBr"``.
    a
        Cubic lattice constant, Angstrom (``None``: ``dftflow.structures.bulk.A_CSPBBR3_CUBIC``).
    fix
        Which planes are fixed (ASE ``FixAtoms`` = VASP selective dynamics F F F): the bottom
        ``n_fixed_layers`` planes, the central ones, or none.
    n_fixed_layers
        Number of fixed planes; default ``layers // 2`` for ``"bottom"``, 1 (odd) or 2 (even) for
        ``"center"``.

    Returns
    -------
    Atoms
        Periodic in x, y and z, atoms sorted Cs, Pb, Br (then by z, y, x); ``info`` records the
        build parameters.
    """
    layers = int(layers)
    if layers < 3:
        raise InputError(f"a slab needs at least 3 atomic planes (got --layers {layers})")
    if termination not in ("PbBr2", "CsBr"):
        raise InputError(f"unknown termination {termination!r}: use PbBr2 or CsBr")
    if layers % 2 == 0:
        raise InputError(
            f"{layers} planes cannot end in {termination} on both faces; use an odd number "
            f"(e.g. {layers - 1} or {layers + 1}) for a symmetric {termination}-terminated slab"
        )
    n_a, n_b = (int(x) for x in supercell)
    if n_a < 1 or n_b < 1:
        raise InputError(f"supercell must be positive integers, got {n_a}x{n_b}")
    if not vacuum > 0:
        raise InputError(f"vacuum must be positive (Angstrom), got {vacuum}")
    if fix not in ("bottom", "center", "none"):
        raise InputError(f"unknown fix mode {fix!r}: use bottom, center or none")
    n_fixed = _default_n_fixed(layers, fix) if n_fixed_layers is None else int(n_fixed_layers)
    if fix == "none" and n_fixed:
        raise InputError("n_fixed_layers given with fix='none'")
    if not 0 <= n_fixed < layers:
        raise InputError(f"n_fixed_layers must be between 0 and {layers - 1} (got {n_fixed})")

    bulk = cspbbr3_cubic(a)
    a_A = float(bulk.cell[0, 0])
    stack = bulk.repeat((1, 1, layers // 2 + 3))
    stack.cell[2, 2] += 10.0  # a vacuum gap above the stack: planes counted from its bottom
    planes = find_planes(stack, tol_A=0.25 * a_A)
    kinds = [plane_kind(_composition(stack, p)) for p in planes]
    starts = [i for i in range(len(planes) - layers + 1) if kinds[i] == termination]
    if not starts:  # cannot happen for a well-formed bulk stack
        raise InputError(f"no {termination} plane found in the bulk stack")
    window = planes[starts[0] : starts[0] + layers]
    if kinds[starts[0] + layers - 1] != termination:
        raise InputError(f"{layers} planes starting at {termination} do not end in {termination}")

    cut = stack[np.concatenate(window)]
    z0 = min(cut.positions[:, 2])
    cut.positions[:, 2] -= z0
    thickness = float(max(cut.positions[:, 2]))
    cut.set_cell([a_A, a_A, thickness + float(vacuum)])
    cut.positions[:, 2] += min(0.5 * float(vacuum), BOTTOM_MARGIN_A)
    slab = _sorted_atoms(cut.repeat((n_a, n_b, 1)))
    slab.pbc = True
    slab.wrap()

    fixed_planes = _fixed_planes(layers, fix, n_fixed)
    slab_planes = find_planes(slab)
    if len(slab_planes) != layers:  # guard the construction itself
        raise InputError(f"built {len(slab_planes)} planes instead of {layers}")
    fixed = sorted(int(i) for k in fixed_planes for i in slab_planes[k])
    if fixed:
        slab.set_constraint(FixAtoms(indices=fixed))
    faces = (
        plane_kind(_composition(slab, slab_planes[0])),
        plane_kind(_composition(slab, slab_planes[-1])),
    )
    if faces != (termination, termination):
        raise InputError(f"slab faces are {faces}, expected {termination} on both")
    slab.info.update(
        {
            "structure": "CsPbBr3(001) slab",
            "layers": layers,
            "termination": termination,
            "supercell": f"{n_a}x{n_b}",
            "a_A": a_A,
            "vacuum_A": float(vacuum),
            "fix": fix,
            "n_fixed_layers": len(fixed_planes),
        }
    )
    return slab


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
def _formula(symbols: list[str]) -> str:
    from ase.formula import Formula

    return Formula("".join(symbols)).format("metal") if symbols else ""


def slab_summary(atoms: Atoms) -> SlabSummary:
    """Layer-by-layer summary of a slab or a slab + adsorbate complex, counted from coordinates.

    Planes are clusters of Cs/Pb/Br z-coordinates; each face's termination is its plane's
    composition. Atoms other than Cs, Pb, Br are counted as adsorbate.
    """
    planes = find_planes(atoms)
    symbols = atoms.get_chemical_symbols()
    fixed = _fixed_indices(atoms)
    zs = _unwrapped_z(atoms, np.concatenate(planes))
    z_of = dict(zip(np.concatenate(planes).tolist(), zs.tolist(), strict=True))
    layers: list[Layer] = []
    for k, p in enumerate(planes):
        comp = _composition(atoms, p)
        layers.append(
            Layer(
                index=k,
                z_A=round(float(np.mean([z_of[int(i)] for i in p])), 4),
                composition=comp,
                kind=plane_kind(comp),
                n_fixed=sum(int(i) in fixed for i in p),
            )
        )
    slab_idx = np.concatenate(planes)
    ads = [s for s in symbols if s not in SLAB_ELEMENTS]
    pb_top = max(layers[0].composition.get("Pb", 0), layers[-1].composition.get("Pb", 0))
    per_plane = pb_top or max(
        layers[0].composition.get("Cs", 0), layers[-1].composition.get("Cs", 0)
    )
    area = float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))
    a_in = float(np.sqrt(area / per_plane)) if per_plane else 0.0
    lengths = atoms.cell.lengths()
    supercell = (int(round(lengths[0] / a_in)), int(round(lengths[1] / a_in))) if a_in else (0, 0)
    thickness = float(layers[-1].z_A - layers[0].z_A)
    return SlabSummary(
        formula=_formula(symbols),
        n_atoms=len(atoms),
        n_slab_atoms=len(slab_idx),
        adsorbate_formula=_formula(ads),
        n_adsorbate_atoms=len(ads),
        supercell=supercell,
        in_plane_a_A=round(a_in, 4),
        cell_A=tuple(round(float(x), 4) for x in lengths),
        layers=layers,
        termination_bottom=layers[0].kind,
        termination_top=layers[-1].kind,
        thickness_A=round(thickness, 4),
        vacuum_A=round(float(lengths[2]) - thickness, 4),
        n_fixed_atoms=len(fixed),
        fixed_layers=[
            ly.index for ly in layers if ly.n_fixed and ly.n_fixed == sum(ly.composition.values())
        ],
    )


def top_plane(atoms: Atoms) -> np.ndarray:
    """Indices of the topmost atomic plane of the inorganic slab."""
    return find_planes(atoms)[-1]
