"""Point defects of the PbBr2-terminated CsPbBr3 (001) surface: vacancies, their site and summary.

Defects (:data:`DEFECTS`), all on the top face of a PbBr2-terminated slab (the bottom face stays
perfect; the slab is no longer symmetric, which the dipole correction of slab calculations
handles):

``V_Br``
    One Br of the top PbBr2 plane. The cell stays neutral (a neutral Br atom is removed), so it
    holds an odd number of electrons: one electron more than the formal ionic charges
    (Cs+1, Pb+2, Br-1) account for. Spin-polarised calculations are needed.
``V_PbBr2``
    A Pb of the top plane and two of its own top-plane Br neighbours: a neutral formula unit,
    charge-balanced, even electron count.
``V_CsBr``
    A Cs and one of its nearest Br in the CsBr plane below the top PbBr2 plane (that Br is the
    apical Br of a top-plane Pb): charge-balanced, even electron count.

Site choice, by symmetry
------------------------
The candidate sets of removed atoms (every top-plane Br; every top-plane Pb with two of its
top-plane Br; every subsurface Cs with one of its nearest subsurface Br) are grouped into classes of
equivalent sets by the slab's symmetry operations that keep the surface normal (+z), from spglib
(the same operations the ligand placements use). Candidates are ordered deterministically:
compact first (largest distance between two removed atoms, to 0.01 A), then by atom indices; the
chosen set is the first candidate of the first class. Every class, its size and its compactness is
recorded, so the choice is stated, never hidden; ``site_class`` builds another class. (For
``V_PbBr2`` compact-first takes the cis pair, Br-Pb-Br 90 deg; the trans pair, class 1, leaves one
Pb of a 2x2 cell with two missing Br.)

Electron count
--------------
Removing atoms removes their valence electrons. This layer does not know the POTCARs (the
``inputs`` layer does; structures may not import it): :func:`defect_slab` takes an optional
``valence`` table (element -> valence electrons; the CLI passes the POTCAR ZVALs the inputs use,
``dftflow.inputs.params.POTCAR_ZVAL``). Without it, the parity of the change is computed from
atomic numbers, which equals the parity of the valence change for Cs, Pb and Br (their PAW cores
hold an even number of electrons: Cs_sv 46, Pb_d 68, Pb 78, Br 28), so whether spin polarisation is
needed is always stated.

Records
-------
The defective slab carries ``info["defect"]`` (the name, a string that every format keeps),
``info["defect_record"]`` (the :class:`DefectSummary` as a dict; written to the POSCAR/CIF sidecar
by :mod:`dftflow.structures.ligand_atoms`) and the per-site integer array
``arrays["undercoordinated"]``: for each atom, the number of Br neighbours it lost (non-zero on the
under-coordinated Pb). The array moves with the atoms (slicing, deleting, ``extend`` with ligand
atoms), so later stages find the defect site by index, never by guessing.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from ase import Atoms
from pydantic import BaseModel, Field

from dftflow.errors import InputError
from dftflow.structures.bulk import A_CSPBBR3_CUBIC
from dftflow.structures.ligand_atoms import (
    DEFECT_RECORD_KEY,
    UNDERCOORDINATED_ARRAY,
    ligand_indices_of,
    mark_ligand,
)
from dftflow.structures.slab import (
    _fixed_indices,
    find_planes,
    plane_kind,
    slab_summary,
)

DefectName = Literal["none", "V_Br", "V_PbBr2", "V_CsBr"]

#: Known defects and what each removes (``none``: the perfect slab).
DEFECTS: Mapping[str, str] = MappingProxyType(
    {
        "none": "perfect slab",
        "V_Br": "one Br of the top PbBr2 plane (neutral cell, odd electron count)",
        "V_PbBr2": "a Pb of the top PbBr2 plane and two of its top-plane Br (charge-balanced)",
        "V_CsBr": "a Cs and a nearest Br of the CsBr plane below the top PbBr2 plane "
        "(charge-balanced)",
    }
)
#: The known names, in order (messages, CLI help, study validation).
DEFECT_NAMES: tuple[str, ...] = tuple(DEFECTS)
#: Formal ionic charges (e) used for the charge balance of a removed unit.
FORMAL_CHARGE: Mapping[str, int] = MappingProxyType({"Cs": 1, "Pb": 2, "Br": -1})
#: A Pb and a Br closer than this (Angstrom) are bonded. Ideal cubic Pb-Br = a/2 = 2.94 A, the next
#: Pb-Br distance is 1.12 a = 6.57 A; relaxed surface Pb-Br bonds stay below ~3.3 A.
PB_BR_BOND_CUTOFF_A = 3.6
#: Minimum distance between a defect and its nearest periodic image, in in-plane lattice constants
#: (2 a = 11.75 A for a = 5.874 A): a 2x2 supercell is the smallest that keeps them apart.
MIN_DEFECT_IMAGE_CELLS = 2
#: Tolerance (Angstrom) of the symmetry search and of mapping atoms onto their images.
SYMPREC_A = 0.1


class RemovedAtom(BaseModel):
    """One atom the defect removed."""

    element: str
    pristine_index: int = Field(description="0-based index in the pristine slab")
    position_A: tuple[float, float, float] = Field(description="Cartesian, Angstrom")
    plane: int = Field(description="atomic plane of the pristine slab, 0 = bottom")


class UndercoordinatedPb(BaseModel):
    """A Pb that lost Br neighbours (bonded: Pb-Br < ``PB_BR_BOND_CUTOFF_A``)."""

    index: int = Field(description="0-based index in the defective slab")
    pristine_index: int
    br_before: int
    br_after: int


class SiteClass(BaseModel):
    """A class of symmetry-equivalent candidate sets of removed atoms."""

    size: int = Field(description="number of equivalent candidate sets on the top face")
    representative: tuple[int, ...] = Field(description="pristine indices of its first set")
    max_separation_A: float = Field(description="largest distance between two removed atoms")


class DefectSummary(BaseModel):
    """What a defect removed and what it leaves (counted from the coordinates)."""

    name: str
    description: str
    removed: list[RemovedAtom]
    removed_formula: str
    formula_pristine: str
    formula_defective: str
    n_atoms_pristine: int
    n_atoms_defective: int
    formal_charge_removed: int = Field(description="sum of formal charges (Cs+1 Pb+2 Br-1), e")
    charge_balanced: bool = Field(description="the removed unit is formally neutral")
    cell_charge: int = Field(0, description="net charge of the cell (neutral atoms removed), e")
    excess_electrons: int = Field(
        description="electrons beyond what the formal ionic charges account for (V_Br: 1)"
    )
    valence_source: str = Field(description="where valence electron counts come from")
    valence_electrons_pristine: float | None = None
    valence_electrons_defective: float | None = None
    valence_electrons_removed: float | None = None
    odd_electron_count_change: bool = Field(
        description="the electron count changed by an odd number"
    )
    spin_polarized: bool = Field(
        description="spin-polarised calculation needed: the defective cell's count is odd"
    )
    symmetry_method: str
    n_candidates: int
    site_classes: list[SiteClass]
    chosen_class: int = 0
    class_size: int = Field(description="size of the chosen set's equivalence class")
    undercoordinated_pb: list[UndercoordinatedPb]
    defect_image_distance_A: float = Field(description="shortest in-plane lattice translation")
    min_defect_image_distance_A: float


# ---------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------
def _mic(d: np.ndarray, cell: np.ndarray) -> np.ndarray:
    frac = d @ np.linalg.inv(cell)
    frac -= np.round(frac)
    return frac @ cell


def _distances(atoms: Atoms, i: int, js: Sequence[int]) -> np.ndarray:
    if len(js) == 0:
        return np.zeros(0)
    d = atoms.positions[list(js)] - atoms.positions[i]
    return np.linalg.norm(_mic(d, atoms.cell[:]), axis=-1)


def pb_br_coordination(atoms: Atoms) -> dict[int, int]:
    """Number of Br within :data:`PB_BR_BOND_CUTOFF_A` of every Pb (minimum image), by index."""
    symbols = np.array(atoms.get_chemical_symbols())
    br = np.flatnonzero(symbols == "Br")
    return {
        int(p): int(np.sum(_distances(atoms, int(p), br) < PB_BR_BOND_CUTOFF_A))
        for p in np.flatnonzero(symbols == "Pb")
    }


def shortest_translation_A(cell: np.ndarray) -> float:
    """Shortest non-zero in-plane lattice translation n1 a1 + n2 a2 (Angstrom)."""
    best = math.inf
    for n1, n2 in itertools.product(range(-2, 3), repeat=2):
        if (n1, n2) != (0, 0):
            best = min(best, float(np.linalg.norm(n1 * cell[0] + n2 * cell[1])))
    return best


def _max_separation(atoms: Atoms, indices: Sequence[int]) -> float:
    sep = 0.0
    for i, j in itertools.combinations(indices, 2):
        sep = max(sep, float(_distances(atoms, i, [j])[0]))
    return round(sep, 2)


# ---------------------------------------------------------------------------------------------
# Symmetry
# ---------------------------------------------------------------------------------------------
def surface_permutations(slab: Atoms, symprec_A: float = SYMPREC_A) -> list[np.ndarray]:
    """Atom permutations of the slab's symmetry operations that keep the surface normal (+z).

    Operations from spglib (``get_symmetry``); an operation maps atom ``i`` onto ``perm[i]``.
    """
    import spglib

    cell = (slab.cell[:], slab.get_scaled_positions(), slab.numbers)
    with warnings.catch_warnings():  # spglib's deprecation notice about its error handling
        warnings.simplefilter("ignore", DeprecationWarning)
        data = spglib.get_symmetry(cell, symprec=symprec_A)
    identity = np.arange(len(slab))
    if data is None:
        return [identity]
    frac = slab.get_scaled_positions()
    lattice = slab.cell[:]
    perms = []
    for r, t in zip(data["rotations"], data["translations"], strict=True):
        if not (r[2, 2] == 1 and r[2, 0] == 0 and r[2, 1] == 0 and r[0, 2] == 0 and r[1, 2] == 0):
            continue
        mapped = frac @ np.asarray(r, dtype=float).T + t
        d = mapped[:, None, :] - frac[None, :, :]
        d -= np.round(d)
        dist = np.linalg.norm(d @ lattice, axis=-1)
        same = slab.numbers[:, None] == slab.numbers[None, :]
        dist[~same] = np.inf
        perm = np.argmin(dist, axis=1)
        if dist[identity, perm].max() > symprec_A or len(set(perm.tolist())) != len(slab):
            continue
        perms.append(perm)
    return perms or [identity]


def _classes(
    slab: Atoms, candidates: list[tuple[int, ...]], perms: list[np.ndarray]
) -> list[list[tuple[int, ...]]]:
    """Candidates grouped into symmetry classes; candidates and classes in deterministic order."""
    ordered = sorted(candidates, key=lambda c: (_max_separation(slab, c), c))
    seen: dict[frozenset[int], int] = {}
    classes: list[list[tuple[int, ...]]] = []
    for cand in ordered:
        key = frozenset(cand)
        if key in seen:
            classes[seen[key]].append(cand)
            continue
        k = len(classes)
        classes.append([cand])
        seen[key] = k
        for perm in perms:
            image = frozenset(int(perm[i]) for i in cand)
            seen.setdefault(image, k)
    return classes


# ---------------------------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------------------------
def _candidates(slab: Atoms, name: str, planes: list[np.ndarray]) -> list[tuple[int, ...]]:
    symbols = np.array(slab.get_chemical_symbols())
    top = planes[-1]
    top_pb = [int(i) for i in top if symbols[i] == "Pb"]
    top_br = [int(i) for i in top if symbols[i] == "Br"]
    if name == "V_Br":
        return [(b,) for b in top_br]
    if name == "V_PbBr2":
        out = []
        for p in top_pb:
            d = _distances(slab, p, top_br)
            own = [b for b, x in zip(top_br, d, strict=True) if x < PB_BR_BOND_CUTOFF_A]
            out += [(p, *pair) for pair in itertools.combinations(sorted(own), 2)]
        return out
    sub = planes[-2]
    cs = [int(i) for i in sub if symbols[i] == "Cs"]
    br = [int(i) for i in sub if symbols[i] == "Br"]
    out = []
    for c in cs:
        d = _distances(slab, c, br)
        nearest = d.min()
        out += [(c, b) for b, x in zip(br, d, strict=True) if x < nearest + SYMPREC_A]
    return out


def _check_slab(slab: Atoms, name: str, planes: list[np.ndarray]) -> None:
    """One-line InputError when ``name`` does not exist on this slab."""
    symbols = slab.get_chemical_symbols()

    def kind(p: np.ndarray) -> str:
        comp: dict[str, int] = {}
        for i in p:
            comp[symbols[i]] = comp.get(symbols[i], 0) + 1
        return plane_kind(comp)

    top = kind(planes[-1])
    if top != "PbBr2":
        raise InputError(
            f"{name} is a defect of the PbBr2-terminated surface; this slab's top plane is {top}: "
            "use --termination PbBr2"
        )
    if any(s not in ("Cs", "Pb", "Br") for s in symbols):
        raise InputError(f"{name} is built on a bare slab; this structure holds adsorbate atoms")
    if name == "V_CsBr" and (len(planes) < 5 or kind(planes[-2]) != "CsBr"):
        raise InputError(
            f"V_CsBr removes atoms of the CsBr plane below the top face; with {len(planes)} "
            "planes that plane is the slab's centre (under both faces): use --layers 5 or more"
        )


def _check_supercell(slab: Atoms, name: str) -> tuple[float, float]:
    summary = slab_summary(slab)
    a_in = summary.in_plane_a_A
    shortest = shortest_translation_A(slab.cell[:])
    minimum = MIN_DEFECT_IMAGE_CELLS * a_in
    if shortest < minimum - SYMPREC_A:
        n = max(MIN_DEFECT_IMAGE_CELLS, math.ceil((minimum - SYMPREC_A) / a_in))
        n_a, n_b = summary.supercell
        raise InputError(
            f"{name} in a {n_a}x{n_b} supercell is {shortest:.2f} A from its periodic image "
            f"(minimum {minimum:.2f} A = {MIN_DEFECT_IMAGE_CELLS} lattice constants): use "
            f"--supercell {n}x{n} or larger"
        )
    return shortest, minimum


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def check_defect_name(name: str) -> str:
    """``name`` if it is a known defect, else a one-line InputError listing the known ones."""
    if name not in DEFECTS:
        raise InputError(f"unknown defect {name!r}: use one of {', '.join(DEFECT_NAMES)}")
    return name


def check_defect_request(
    name: str,
    termination: str,
    layers: int,
    supercell: tuple[int, int],
    a_A: float | None = None,
) -> str:
    """Refuse (one-line InputError) a defect the requested slab cannot hold, before building it.

    The same rules :func:`defect_slab` applies to a built slab: a PbBr2 top face, at least 5
    planes for ``V_CsBr``, and an in-plane supercell of at least :data:`MIN_DEFECT_IMAGE_CELLS`
    cells along each axis (the builder's cells are square, so that is the defect-image distance;
    ``a_A``: its lattice constant in Angstrom, default the cubic bulk's, for the message).
    """
    check_defect_name(name)
    if name == "none":
        return name
    if termination != "PbBr2":
        raise InputError(
            f"{name} is a defect of the PbBr2-terminated surface; a {termination}-terminated slab "
            "has no top PbBr2 plane: use --termination PbBr2"
        )
    if name == "V_CsBr" and layers < 5:
        raise InputError(
            f"V_CsBr removes atoms of the CsBr plane below the top face; with {layers} planes "
            "that plane is the slab's centre (under both faces): use --layers 5 or more"
        )
    n = MIN_DEFECT_IMAGE_CELLS
    if min(supercell) < n:
        a = float(a_A) if a_A is not None else A_CSPBBR3_CUBIC
        raise InputError(
            f"{name} in a {supercell[0]}x{supercell[1]} supercell is {min(supercell) * a:.2f} A "
            f"from its periodic image (minimum {n * a:.2f} A = {n} lattice constants): use "
            f"--supercell {n}x{n} or larger"
        )
    return name


def _formula(symbols: Sequence[str]) -> str:
    from ase.formula import Formula

    return Formula("".join(symbols)).format("metal") if symbols else ""


def defect_slab(
    slab: Atoms,
    name: str,
    valence: Mapping[str, float] | None = None,
    symprec_A: float = SYMPREC_A,
    site_class: int = 0,
) -> tuple[Atoms, DefectSummary]:
    """The slab with defect ``name`` on its top face, and the summary of what was removed.

    Parameters
    ----------
    slab
        A bare PbBr2-terminated CsPbBr3 (001) slab (e.g. from
        :func:`dftflow.structures.slab.cspbbr3_001_slab`), at most a few planes fixed.
    name
        One of :data:`DEFECT_NAMES` except ``"none"``.
    valence
        Valence electrons per element (e.g. the POTCAR ZVALs of the inputs layer); ``None``:
        only the parity of the electron-count change is computed (from atomic numbers).
    symprec_A
        Tolerance of the symmetry search, Angstrom.
    site_class
        Which class of symmetry-equivalent sites (0 = the first in the stated order; the summary
        of any choice lists every class, e.g. to build the trans ``V_PbBr2`` as well).

    Returns
    -------
    tuple of (Atoms, DefectSummary)
        The defective slab (same atom order minus the removed atoms; constraints, ``info`` and
        per-site arrays kept; ``info["defect"]``, ``info["defect_record"]`` and
        ``arrays["undercoordinated"]`` set) and its summary.

    Raises
    ------
    InputError
        Unknown name, a defect that does not exist on this slab (termination, too few planes,
        removed atoms fixed), or a supercell too small to keep the defect apart from its images.
    """
    check_defect_name(name)
    if name == "none":
        raise InputError("defect 'none' removes nothing: use the pristine slab")
    planes = find_planes(slab)
    _check_slab(slab, name, planes)
    shortest, minimum = _check_supercell(slab, name)

    candidates = _candidates(slab, name, planes)
    if not candidates:
        raise InputError(f"no {name} site found on this slab's top face")
    perms = surface_permutations(slab, symprec_A)
    classes = _classes(slab, candidates, perms)
    if not 0 <= site_class < len(classes):
        raise InputError(
            f"{name} has {len(classes)} symmetry-distinct site class(es) on this slab; "
            f"site_class {site_class} is not one of 0-{len(classes) - 1}"
        )
    chosen = tuple(sorted(classes[site_class][0]))

    fixed = _fixed_indices(slab) & set(chosen)
    if fixed:
        raise InputError(
            f"{name} would remove fixed atoms {sorted(fixed)}: fix fewer planes (--n-fixed-layers)"
        )

    symbols = slab.get_chemical_symbols()
    plane_of = {int(i): k for k, p in enumerate(planes) for i in p}
    removed = [
        RemovedAtom(
            element=symbols[i],
            pristine_index=i,
            position_A=tuple(round(float(x), 4) for x in slab.positions[i]),
            plane=plane_of[i],
        )
        for i in chosen
    ]
    removed_symbols = [symbols[i] for i in chosen]
    formal = sum(FORMAL_CHARGE[s] for s in removed_symbols)

    before = pb_br_coordination(slab)
    keep = np.ones(len(slab), dtype=bool)
    keep[list(chosen)] = False
    new_index = np.cumsum(keep) - 1
    defective = slab[keep]  # ASE keeps constraints (FixAtoms re-indexed), info and arrays
    after = pb_br_coordination(defective)
    under = [
        UndercoordinatedPb(
            index=int(new_index[p]),
            pristine_index=p,
            br_before=n,
            br_after=after[int(new_index[p])],
        )
        for p, n in sorted(before.items())
        if keep[p] and after[int(new_index[p])] < n
    ]

    # parities from atomic numbers (equal to the valence parities for Cs, Pb, Br; module doc)
    odd = int(sum(slab.numbers[list(chosen)])) % 2 == 1
    odd_total = int(sum(defective.numbers)) % 2 == 1
    if valence is not None:
        missing = sorted({s for s in symbols if s not in valence})
        if missing:
            raise InputError(f"no valence electron count for {', '.join(missing)}")
        n_before = float(sum(valence[s] for s in symbols))
        n_removed = float(sum(valence[s] for s in removed_symbols))
        odd = int(round(n_removed)) % 2 == 1
        odd_total = int(round(n_before - n_removed)) % 2 == 1
        source = "valence table: " + ", ".join(
            f"{el} {valence[el]:g}" for el in ("Cs", "Pb", "Br") if el in valence
        )
        counts: dict[str, float | None] = {
            "valence_electrons_pristine": n_before,
            "valence_electrons_defective": n_before - n_removed,
            "valence_electrons_removed": n_removed,
        }
    else:
        source = "atomic numbers (parity only; Cs, Pb and Br PAW cores are even)"
        counts = {}

    summary = DefectSummary(
        name=name,
        description=DEFECTS[name],
        removed=removed,
        removed_formula=_formula(removed_symbols),
        formula_pristine=_formula(symbols),
        formula_defective=_formula(defective.get_chemical_symbols()),
        n_atoms_pristine=len(slab),
        n_atoms_defective=len(defective),
        formal_charge_removed=formal,
        charge_balanced=formal == 0,
        excess_electrons=-formal,
        valence_source=source,
        odd_electron_count_change=odd,
        spin_polarized=odd_total,
        symmetry_method=(
            f"spglib operations keeping +z (symprec {symprec_A:g} A); candidates ordered "
            "compact first, then by index; first candidate of "
            + ("the first class" if site_class == 0 else f"class {site_class}")
        ),
        chosen_class=site_class,
        n_candidates=len(candidates),
        site_classes=[
            SiteClass(
                size=len(c),
                representative=tuple(sorted(c[0])),
                max_separation_A=_max_separation(slab, c[0]),
            )
            for c in classes
        ],
        class_size=len(classes[site_class]),
        undercoordinated_pb=under,
        defect_image_distance_A=round(shortest, 4),
        min_defect_image_distance_A=round(minimum, 4),
        **counts,
    )
    lost = np.zeros(len(defective), dtype=int)
    for u in under:
        lost[u.index] = u.br_before - u.br_after
    if ligand_indices_of(defective) is None:  # a bare slab: known to hold no ligand atom
        defective = mark_ligand(defective, [])
    defective.arrays[UNDERCOORDINATED_ARRAY] = lost
    defective.info["defect"] = name
    defective.info[DEFECT_RECORD_KEY] = summary.model_dump(mode="json")
    defective.info["spin_polarized"] = summary.spin_polarized
    return defective, summary


def undercoordinated_indices(atoms: Any) -> list[int] | None:
    """Indices of atoms that lost Br neighbours to a defect (``None``: not recorded)."""
    arrays = getattr(atoms, "arrays", None)
    if not isinstance(arrays, dict) or UNDERCOORDINATED_ARRAY not in arrays:
        return None
    return [int(i) for i in np.flatnonzero(np.asarray(arrays[UNDERCOORDINATED_ARRAY]) > 0)]
