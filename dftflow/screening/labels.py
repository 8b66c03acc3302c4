"""Binding-mode labels and anomaly flags of relaxed screen geometries (issue 13, item 4).

Every relaxed placement gets a label; anomalies exclude it from the ranking with the reason kept,
nothing is dropped unseen. Rules (thresholds are the module constants below):

- A ligand O, N or S *binds* a Pb of the slab when their minimum-image distance is within
  :data:`PB_BOND_CUTOFF_A` for that element.
- One ligand atom bound (to one Pb, or to two as a mu2 atom) = ``monodentate``; two ligand atoms
  on one Pb = ``chelating``; two ligand atoms on two different Pb (none sharing one) =
  ``bridging``.
- ``dissociated``: a ligand H is on a Br of the slab (H-Br < :data:`H_BR_BOND_A`, and bonded to
  no ligand heavy atom) *and* the ligand binds a Pb; how the deprotonated group binds is kept in
  :attr:`GeometryLabel.bound_as` (monodentate/chelating/bridging), ``bound_pb`` and
  ``binding_atoms``.
- No Pb bond: ``physisorbed`` while the lowest ligand atom is at most :data:`DESORBED_HEIGHT_A`
  above the top plane of the slab, else ``desorbed`` (an excluding anomaly).

Anomalies (:data:`dftflow.screening.records.EXCLUDING_ANOMALIES` exclude):

- ``fragmented``: the ligand's heavy-atom bond graph (ASE ``natural_cutoffs`` x
  :data:`BOND_MULT`, periodic) has more than one component, or an H is bonded to no ligand heavy
  atom, unless it is an acidic H (bonded to O, N or S at the start, or already on a Br there) now
  on a surface Br (that is ``dissociated``; a phosphonic acid may give both).
- ``desorbed``: as above.
- ``surface_moved``: a slab atom moved more than :data:`SURFACE_MOVED_A` from the start
  (minimum image).
- ``step_cap``: the relaxation hit its step cap; labelled, never excluded.

Positions are taken as the engines leave them (not wrapped); the top plane is the slab atoms
within :data:`TOP_PLANE_TOL_A` of the highest slab atom of the start, at their relaxed heights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.geometry import find_mic, get_distances
from ase.neighborlist import natural_cutoffs
from pydantic import BaseModel, ConfigDict, Field

from dftflow.errors import InputError
from dftflow.screening.records import BINDING_MODES, EXCLUDING_ANOMALIES

#: Pb-X bond cutoffs (Angstrom) by ligand element: within this a ligand atom binds the Pb
#: (Pb-O bonds in lead carboxylates span ~2.3-2.9 A, Pb-N ~2.5-2.8, Pb-S ~2.7-3.1).
PB_BOND_CUTOFF_A = {"O": 3.0, "N": 3.0, "S": 3.3}
#: A ligand H closer than this to a slab Br sits on it (H-Br bond 1.41 A; the builder puts 1.45).
H_BR_BOND_A = 1.7
#: Lowest ligand atom above the top plane (Angstrom) beyond which an unbound ligand is desorbed.
DESORBED_HEIGHT_A = 5.0
#: A slab atom moved farther than this from its start (Angstrom) flags ``surface_moved``.
SURFACE_MOVED_A = 1.0
#: Covalent bond: distance < BOND_MULT x (sum of ASE natural cutoffs), Angstrom.
BOND_MULT = 1.2
#: Slab atoms within this (Angstrom) of the highest slab atom form the top plane.
TOP_PLANE_TOL_A = 1.0
#: During a relaxation (:func:`early_stop_reason`) only clear cases stop it: desorbed higher than
#: this above the top plane (Angstrom) ...
EARLY_DESORBED_HEIGHT_A = 6.0
#: ... or bonds stretched beyond this multiple of the natural cutoffs.
EARLY_BOND_MULT = 1.5
#: Elements that bind Pb.
_BINDING_ELEMENTS = tuple(PB_BOND_CUTOFF_A)
#: Elements that carry an acidic H.
_ACIDIC_ELEMENTS = ("O", "N", "S")


class GeometryLabel(BaseModel):
    """What a relaxed geometry is (one of :data:`~dftflow.screening.records.BINDING_MODES`)."""

    model_config = ConfigDict(extra="forbid")

    binding_mode: str = Field(description="one of records.BINDING_MODES")
    bound_as: str | None = Field(
        default=None,
        description="monodentate/chelating/bridging: how the ligand binds Pb (for a "
        "dissociated label, the deprotonated group); None when unbound",
    )
    bound_pb: list[int] = Field(description="indices of the Pb bound to the ligand")
    binding_atoms: list[int] = Field(description="indices of the ligand atoms bound to a Pb")
    h_on_br: bool = Field(description="a ligand H sits on a slab Br")
    anomalies: list[str] = Field(default_factory=list)
    excluded: bool = False
    reason: str | None = Field(default=None, description="why excluded, one line")


def _pbc_distances(a: np.ndarray, b: np.ndarray, atoms: Atoms) -> np.ndarray:
    _, d = get_distances(a, b, cell=atoms.cell, pbc=atoms.pbc)
    return d


def _split(atoms: Atoms, ligand_indices: Sequence[int]) -> tuple[list[int], list[int]]:
    lig = sorted({int(i) for i in ligand_indices})
    if not lig:
        raise InputError("no ligand atoms given: cannot label the geometry")
    if lig[0] < 0 or lig[-1] >= len(atoms):
        raise InputError(f"ligand indices out of range for {len(atoms)} atoms")
    lig_set = set(lig)
    slab = [i for i in range(len(atoms)) if i not in lig_set]
    if not slab:
        raise InputError("every atom is a ligand atom: no slab to label against")
    return lig, slab


def _top_plane(atoms: Atoms, slab: list[int]) -> list[int]:
    z = atoms.positions[slab, 2]
    return [i for i, zi in zip(slab, z, strict=True) if zi >= z.max() - TOP_PLANE_TOL_A]


def _bond_matrix(atoms: Atoms, idx: list[int], mult: float) -> np.ndarray:
    """Boolean covalent-bond matrix among ``idx`` (periodic, natural cutoffs x ``mult``)."""
    radii = np.array(natural_cutoffs(atoms[idx], mult=mult))
    d = _pbc_distances(atoms.positions[idx], atoms.positions[idx], atoms)
    bonded = d < radii[:, None] + radii[None, :]
    np.fill_diagonal(bonded, False)
    return bonded


def _n_components(bonded: np.ndarray) -> int:
    from scipy.sparse.csgraph import connected_components

    if len(bonded) == 0:
        return 0
    n, _ = connected_components(bonded.astype(int), directed=False)
    return int(n)


def _fragments(atoms: Atoms, lig: list[int], mult: float) -> tuple[int, list[int]]:
    """(heavy-atom components, ligand H bonded to no ligand heavy atom) of the ligand."""
    symbols = atoms.get_chemical_symbols()
    bonded = _bond_matrix(atoms, lig, mult)
    heavy = [k for k, i in enumerate(lig) if symbols[i] != "H"]
    hydrogens = [k for k, i in enumerate(lig) if symbols[i] == "H"]
    n_comp = _n_components(bonded[np.ix_(heavy, heavy)])
    loose = [lig[k] for k in hydrogens if not bonded[k, heavy].any()] if heavy else []
    return n_comp, loose


def _on_br(atoms: Atoms, h_atoms: list[int], slab: list[int]) -> dict[int, int]:
    """Ligand H -> slab Br it sits on (H-Br < :data:`H_BR_BOND_A`)."""
    symbols = atoms.get_chemical_symbols()
    br = [i for i in slab if symbols[i] == "Br"]
    if not h_atoms or not br:
        return {}
    d = _pbc_distances(atoms.positions[h_atoms], atoms.positions[br], atoms)
    return {
        h: br[int(np.argmin(row))]
        for h, row in zip(h_atoms, d, strict=True)
        if row.min() < H_BR_BOND_A
    }


def _acidic_at_start(start: Atoms, lig: list[int], slab: list[int], h: int) -> bool:
    """Whether ligand H ``h`` was an acidic H in ``start`` (on O/N/S, or already on a Br)."""
    symbols = start.get_chemical_symbols()
    if _on_br(start, [h], slab):
        return True
    partners = [i for i in lig if symbols[i] in _ACIDIC_ELEMENTS]
    if not partners:
        return False
    radii = natural_cutoffs(start[[h, *partners]], mult=BOND_MULT)
    d = _pbc_distances(start.positions[[h]], start.positions[partners], start)[0]
    return bool(np.any(d < radii[0] + np.array(radii[1:])))


def _pb_bonds(atoms: Atoms, lig: list[int], slab: list[int]) -> list[tuple[int, int]]:
    """(ligand atom, Pb) pairs within :data:`PB_BOND_CUTOFF_A` (by the ligand atom's element)."""
    symbols = atoms.get_chemical_symbols()
    pb = [i for i in slab if symbols[i] == "Pb"]
    donors = [i for i in lig if symbols[i] in _BINDING_ELEMENTS]
    if not pb or not donors:
        return []
    d = _pbc_distances(atoms.positions[donors], atoms.positions[pb], atoms)
    return [
        (a, pb[j])
        for k, a in enumerate(donors)
        for j in range(len(pb))
        if d[k, j] <= PB_BOND_CUTOFF_A[symbols[a]]
    ]


def _denticity(bonds: list[tuple[int, int]]) -> str | None:
    """Monodentate / chelating / bridging from (ligand atom, Pb) bonds; None when unbound."""
    atoms_bound = {a for a, _ in bonds}
    if not atoms_bound:
        return None
    if len(atoms_bound) == 1:
        return "monodentate"
    per_pb: dict[int, set[int]] = {}
    for a, p in bonds:
        per_pb.setdefault(p, set()).add(a)
    if any(len(s) >= 2 for s in per_pb.values()):
        return "chelating"
    return "bridging"


def _lowest_height_A(atoms: Atoms, lig: list[int], top: list[int]) -> float:
    """Height (Angstrom) of the lowest ligand atom above the mean top plane."""
    return float(atoms.positions[lig, 2].min() - atoms.positions[top, 2].mean())


def label_geometry(
    relaxed: Atoms,
    ligand_indices: Sequence[int],
    start: Atoms,
    *,
    hit_step_cap: bool = False,
) -> GeometryLabel:
    """The binding mode and anomalies of a relaxed slab + ligand geometry.

    Parameters
    ----------
    relaxed
        The relaxed complex (same atoms, same order as ``start``).
    ligand_indices
        0-based ligand atoms (a dissociated H included), as marked by the builder.
    start
        The starting geometry of the relaxation (the placement).
    hit_step_cap
        The relaxation stopped at its step cap: adds the anomaly ``step_cap`` (not excluding).

    Returns
    -------
    GeometryLabel
        ``excluded`` when an anomaly of :data:`~dftflow.screening.records.EXCLUDING_ANOMALIES`
        was found; ``reason`` says which, with numbers.

    Raises
    ------
    InputError
        Start and relaxed geometries do not hold the same atoms; no ligand or no slab atoms.
    """
    if len(relaxed) != len(start) or relaxed.get_chemical_symbols() != start.get_chemical_symbols():
        raise InputError(
            "relaxed and start geometries do not hold the same atoms in the same order"
        )
    lig, slab = _split(relaxed, ligand_indices)
    symbols = relaxed.get_chemical_symbols()
    top = _top_plane(start, slab)
    anomalies: list[str] = []
    reasons: list[str] = []

    # --- ligand integrity ------------------------------------------------------------------
    n_comp, loose = _fragments(relaxed, lig, BOND_MULT)
    on_br = _on_br(relaxed, loose, slab)
    acidic_on_br = [h for h in loose if h in on_br and _acidic_at_start(start, lig, slab, h)]
    stray = [h for h in loose if h not in acidic_on_br]
    if n_comp > 1 or stray:
        anomalies.append("fragmented")
        what = []
        if n_comp > 1:
            what.append(f"{n_comp} heavy-atom pieces")
        if stray:
            what.append(f"H{','.join(map(str, stray))} left its atom")
        reasons.append("fragmented: " + ", ".join(what))
    h_on_br = bool(acidic_on_br)

    # --- binding -----------------------------------------------------------------------------
    bonds = _pb_bonds(relaxed, lig, slab)
    bound_as = _denticity(bonds)
    height = _lowest_height_A(relaxed, lig, top)
    if bound_as is None:
        if height > DESORBED_HEIGHT_A:
            mode = "desorbed"
            anomalies.append("desorbed")
            reasons.append(f"desorbed: ligand {height:.1f} A above the surface")
        else:
            mode = "physisorbed"
    else:
        mode = "dissociated" if h_on_br else bound_as

    # --- surface -----------------------------------------------------------------------------
    moved, _ = find_mic(relaxed.positions[slab] - start.positions[slab], relaxed.cell, relaxed.pbc)
    shift = np.linalg.norm(moved, axis=1)
    if shift.max() > SURFACE_MOVED_A:
        worst = slab[int(np.argmax(shift))]
        anomalies.append("surface_moved")
        reasons.append(
            f"surface_moved: {int((shift > SURFACE_MOVED_A).sum())} slab atom(s) moved more than "
            f"{SURFACE_MOVED_A:g} A ({symbols[worst]}{worst} by {shift.max():.2f} A)"
        )
    if hit_step_cap:
        anomalies.append("step_cap")
    assert mode in BINDING_MODES
    excluded = any(a in EXCLUDING_ANOMALIES for a in anomalies)
    return GeometryLabel(
        binding_mode=mode,
        bound_as=bound_as,
        bound_pb=sorted({p for _, p in bonds}),
        binding_atoms=sorted({a for a, _ in bonds}),
        h_on_br=h_on_br,
        anomalies=anomalies,
        excluded=excluded,
        reason="; ".join(reasons) if excluded else None,
    )


def early_stop_reason(atoms: Atoms, ligand_indices: Sequence[int]) -> str | None:
    """Why a relaxation in progress is hopeless, or None (cheap; call every few steps).

    ``"desorbed: ligand 6.2 A above the surface"`` when the lowest ligand atom is more than
    :data:`EARLY_DESORBED_HEIGHT_A` above the top plane and no ligand atom binds a Pb;
    ``"fragmented: ..."`` when the ligand's heavy atoms fall apart or an H is bonded to nothing
    (bonds up to :data:`EARLY_BOND_MULT` x the natural cutoffs still count; an H on a surface Br
    is allowed: it may be the dissociated acidic H). Thresholds are looser than
    :func:`label_geometry`'s, so a relaxation passing through a stretched state is not stopped.
    """
    lig, slab = _split(atoms, ligand_indices)
    n_comp, loose = _fragments(atoms, lig, EARLY_BOND_MULT)
    stray = [h for h in loose if h not in _on_br(atoms, loose, slab)]
    if n_comp > 1:
        return f"fragmented: the ligand fell into {n_comp} heavy-atom pieces"
    if stray:
        return f"fragmented: H{','.join(map(str, stray))} left its atom"
    height = _lowest_height_A(atoms, lig, _top_plane(atoms, slab))
    if height > EARLY_DESORBED_HEIGHT_A and not _pb_bonds(atoms, lig, slab):
        return f"desorbed: ligand {height:.1f} A above the surface"
    return None
