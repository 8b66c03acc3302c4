"""Ligand placement on the PbBr2-terminated CsPbBr3 (001) face: enumeration, clash checks, cells.

A placement is a surface site (a Pb of the top plane), a binding mode, an azimuth and optionally a
dissociated acidic proton moved onto a surface Br. Starting geometries:

- ``monodentate``: one binding atom (the C=O oxygen of an acid, an O of a carboxylate/phosphonate,
  the N of an amine, the S of a thiol/thiolate) straight above the Pb at the Pb-X bond length
  (:data:`BOND_LENGTH_A`: O 2.5, N 2.6, S 2.9 Angstrom).
- ``bidentate_chelating``: both O of a carboxylate/phosphonate on the same Pb at 2.5 Angstrom, the
  O-O line horizontal along the azimuth.
- ``bidentate_bridging``: the two O on two neighbouring Pb (along the azimuth: 0/90/180/270
  degrees), each at 2.5 Angstrom. The Pb-Pb distance (a ~ 5.9 Angstrom) leaves no room for the Br
  between them, so that Br is removed (X-type exchange: the carboxylate replaces a surface Br); the
  complex then has one Br less than the slab (recorded in :attr:`Placement.removed`). Not in the
  default modes.
- ``bidentate_bridging_over_br``: the same two O on two neighbouring Pb, but the Br between them
  stays (the slab's composition is kept): the O-O midpoint is raised above that Br until each
  Pb-O is :data:`BRIDGING_OVER_BR_PB_O_A` (a long Pb-O bond; the relaxation decides whether the
  bridge holds). Not in the default modes.
- ``a_site``: an ammonium N in the hollow above the top plane where the next Cs would sit.

Modes at a surface defect (a slab from :func:`dftflow.structures.defects.defect_slab`; its
``defect_record`` and per-atom ``undercoordinated`` array say where the vacancy is, never guessed):

- ``vacancy_site``: the binding atom (the carbonyl O of an acid, an O of a carboxylate) on the
  vacant top-plane Br site, bridging the Pb that lost that Br (the site is the midpoint of those Pb
  in the slab as it is, relaxed or not; the recorded position of the removed Br when only one Pb
  is left beside it). The ligand stands along +z from there. A vacancy below the top plane
  (``V_CsBr``) cannot be reached: one-line error.
- ``exposed_pb``: the binding atom on an under-coordinated Pb, at the Pb-X bond length and leaning
  45 degrees towards the vacant Br site it faces (straight up when the missing Br was below it).

The molecule stands along +z (anchor down, chain into the vacuum); ``conformer`` chooses which
of the ligand's conformers (:func:`dftflow.structures.ligands.ligand_molecule`). Bidentate modes
need the anchor deprotonated: use a carboxylate/phosphonate/sulfonate ligand,
``form="deprotonated"``/``"radical"``, or ``dissociate=True`` (the acidic H goes to a top-plane
Br, 1.45 Angstrom straight above it: the Br nearest to the acidic O that clears the ligand, or
each of the ``h_acceptors`` nearest).

Every candidate is checked with periodic boundaries: no ligand atom closer than
``min_slab_distance_A`` to a slab atom (its own Pb-X bonds and the transferred H-Br are the intended
contacts and are above that threshold or exempt), nor closer than ``min_image_distance_A`` to a
periodic image of the ligand. Candidates related by a symmetry operation of the slab that keeps the
surface normal (spglib, in-plane translations and point operations) are duplicates; the first one in
the deterministic order (mode, dissociation, azimuth, site index) is kept.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field

from dftflow.errors import InputError
from dftflow.structures.ligand_atoms import (
    DEFECT_RECORD_KEY,
    LIGAND_ARRAY,
    ligand_indices_of,
    mark_ligand,
)
from dftflow.structures.ligands import (
    Anchor,
    Form,
    LigandSpec,
    get_ligand,
    ligand_anchor,
    ligand_molecule,
    rotation_to,
)
from dftflow.structures.slab import SLAB_ELEMENTS, find_planes, plane_kind, slab_summary

#: Pb-X starting bond lengths, Angstrom.
BOND_LENGTH_A = {"O": 2.5, "N": 2.6, "S": 2.9}
#: H-Br bond of a dissociated proton on a surface Br, Angstrom.
H_BR_A = 1.45
#: Pb-O of the starting geometry of ``bidentate_bridging_over_br`` (O-O above the kept Br), A.
BRIDGING_OVER_BR_PB_O_A = 2.8
#: Default minimum ligand-slab and ligand-image distances, Angstrom.
MIN_SLAB_DISTANCE_A = 2.0
MIN_IMAGE_DISTANCE_A = 2.0
#: Two candidates are symmetry-equivalent if an operation maps every atom within this, Angstrom.
MATCH_TOLERANCE_A = 0.3
#: Default azimuths, degrees.
DEFAULT_AZIMUTHS_DEG = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
#: Modes and the anchor families they apply to.
MODES = (
    "monodentate",
    "bidentate_chelating",
    "bidentate_bridging",
    "bidentate_bridging_over_br",
    "a_site",
    "vacancy_site",
    "exposed_pb",
)
#: Modes that need a defective slab (they bind at its vacancy).
DEFECT_MODES = ("vacancy_site", "exposed_pb")
#: Lean of the binding atom of ``exposed_pb`` from the surface normal towards the vacancy, degrees.
EXPOSED_PB_LEAN_DEG = 45.0
#: A Pb within this of a removed Br's recorded position (Angstrom) faced that Br (relaxed slabs
#: move Pb by a few tenths; the next Pb is a * sqrt(5)/2 = 6.6 A away).
VACANCY_PB_REACH_A = 4.0
#: A removed Br within this of the top plane's mean height (Angstrom) was in the top plane.
TOP_PLANE_TOL_A = 1.0
_MODE_FAMILIES = {
    "vacancy_site": {"carboxyl", "phosphonate", "sulfonate", "amine", "thiol"},
    "exposed_pb": {"carboxyl", "phosphonate", "sulfonate", "amine", "thiol"},
    "monodentate": {"carboxyl", "phosphonate", "sulfonate", "amine", "thiol"},
    "bidentate_chelating": {"carboxyl", "phosphonate", "sulfonate"},
    "bidentate_bridging": {"carboxyl", "phosphonate", "sulfonate"},
    "bidentate_bridging_over_br": {"carboxyl", "phosphonate", "sulfonate"},
    "a_site": {"amine"},
}


class Placement(BaseModel):
    """One candidate adsorption configuration (JSON-serialisable, enough to rebuild it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(description="position in the enumeration (0-based)")
    label: str
    ligand: str
    mode: str
    site: int = Field(
        description="index of the top-plane Pb in the slab (vacancy_site: the first Pb beside "
        "the vacant Br site)"
    )
    site2: int | None = Field(
        default=None, description="second Pb (bridging; vacancy_site: the other exposed Pb)"
    )
    azimuth_deg: float
    form: str = "as_is"
    dissociate: bool = False
    h_acceptor: int | None = Field(default=None, description="Br that takes the acidic H")
    removed: tuple[int, ...] = Field(default=(), description="slab atoms removed (bridging Br)")
    anchor: str
    charge: int = Field(description="formal charge of the ligand form (e), metadata")
    model: str = Field(description="molecular, dissociated, anion, radical, X-type exchange ...")
    min_slab_distance_A: float
    min_image_distance_A: float
    n_equivalent: int = Field(default=1, description="symmetry-equivalent candidates merged")
    conformer: int = Field(
        default=0, description="conformer of the placed molecule (ligands.ligand_molecule)"
    )
    tilt_deg: float = Field(
        default=0.0,
        description="starting tilt asked for, degrees (towards the second anchor atom; "
        "bidentate: about the O-O line); 'tilt' adds any tilt needed to clear the slab",
    )
    tilt: str = Field(
        default="upright", description="tilt applied so the ligand clears the slab (if any)"
    )


@dataclass
class _Built:
    """Positions of a candidate before it becomes a Placement."""

    symbols: list[str]
    positions: np.ndarray  # ligand atoms (+ dissociated H last), Cartesian, Angstrom
    removed: tuple[int, ...]
    h_acceptor: int | None
    site2: int | None
    exempt: dict[int, set[int]]  # ligand atom -> slab atoms exempt from the clash check
    tilt: str = "upright"


# ---------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------
def _rot_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _standing(pos: np.ndarray, symbols: Sequence[str], origin_atoms: Sequence[int]) -> np.ndarray:
    """Origin at the centroid of ``origin_atoms``, farthest heavy atom along +z."""
    heavy = np.array([i for i, s in enumerate(symbols) if s != "H"])
    origin = pos[list(origin_atoms)].mean(axis=0)
    rel = pos - origin
    far = heavy[int(np.argmax(np.linalg.norm(rel[heavy], axis=1)))]
    return rel @ rotation_to(rel[far], np.array([0.0, 0.0, 1.0])).T


def _local_frame(pos: np.ndarray, symbols: Sequence[str], anchor: Anchor, mode: str) -> np.ndarray:
    """Ligand in its binding frame: binding point at the origin, chain up, reference along +x.

    Monodentate/a_site: the binding atom at the origin, the second anchor atom (or the centroid) in
    the +x half-plane. Bidentate: the O-O midpoint at the origin, the O-O line on the x axis.
    """
    if mode.startswith("bidentate"):
        o1, o2 = anchor.binding_atoms[:2]
        p = _standing(pos, symbols, (o1, o2))
        v = p[o2] - p[o1]
        p = p @ _rot_z(-np.degrees(np.arctan2(v[1], v[0]))).T
        v = p[o2] - p[o1]
        tilt = np.arctan2(v[2], v[0])  # rotate about y so that both O are at the same height
        c, s = np.cos(tilt), np.sin(tilt)
        ry = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
        return p @ ry.T
    b = anchor.binding_atoms[0]
    if anchor.family in ("amine", "thiol"):
        # N/S bind through their lone pair: the bonds point away from the surface
        rel = pos - pos[b]
        dist = np.linalg.norm(rel, axis=1)
        nbrs = [i for i in range(len(pos)) if 0.0 < dist[i] < 2.0]
        up = sum(rel[i] / dist[i] for i in nbrs)
        if np.linalg.norm(up) < 0.3:  # ammonium: C-N along +z, the N-H point down to the Br
            heavy = [i for i in nbrs if symbols[i] != "H"]
            up = rel[heavy[0]] if heavy else np.array([0.0, 0.0, 1.0])
        p = rel @ rotation_to(up, np.array([0.0, 0.0, 1.0])).T
    else:
        p = _standing(pos, symbols, (b,))
    if len(anchor.binding_atoms) > 1:
        ref = p[anchor.binding_atoms[1]]
    else:
        ref = np.delete(p, b, axis=0).mean(axis=0)
    if np.hypot(ref[0], ref[1]) > 1e-6:
        p = p @ _rot_z(-np.degrees(np.arctan2(ref[1], ref[0]))).T
    return p


def _q(x: float, step: float = 0.05) -> int:
    return int(np.floor(x / step + 0.5))


def _axis_rotation(axis: np.ndarray, deg: float) -> np.ndarray:
    """Rotation by ``deg`` about the unit vector ``axis`` (Rodrigues)."""
    k = axis / np.linalg.norm(axis)
    t = np.deg2rad(deg)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * (kx @ kx)


#: Tilts (degrees) tried, in order, when the upright ligand touches the slab.
TILTS_DEG = (0.0, 15.0, 30.0, 45.0)


def _tilts(mode: str) -> list[tuple[str, np.ndarray]]:
    """Tilts in the binding frame: about the O-O line (bidentate) or horizontal axes (others).

    Each is (description, rotation); the description names the angle and the axis direction in the
    ligand's own frame (before the azimuth).
    """
    out: list[tuple[str, np.ndarray]] = [("upright", np.eye(3))]
    for theta in TILTS_DEG[1:]:
        if mode.startswith("bidentate"):
            for sg in (1.0, -1.0):
                out.append(
                    (
                        f"{sg * theta:+g} deg about O-O",
                        _axis_rotation(np.array([1.0, 0, 0]), sg * theta),
                    )
                )
        else:
            for psi in (0.0, 90.0, 180.0, 270.0):
                axis = _rot_z(psi) @ np.array([1.0, 0.0, 0.0])
                out.append((f"{theta:g} deg about {psi:g} deg", _axis_rotation(axis, theta)))
    return out


def _mic_vectors(d: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image version of Cartesian difference vectors ``d`` (..., 3) in a periodic cell."""
    frac = d @ np.linalg.inv(cell)
    frac -= np.round(frac)
    return frac @ cell


def _min_distance(a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Matrix of minimum-image distances between points ``a`` (n,3) and ``b`` (m,3)."""
    d = a[:, None, :] - b[None, :, :]
    # the cell is large compared to bonds; check the 27 neighbour shifts around the MIC vector
    # (all at once: the enumeration calls this thousands of times)
    d = _mic_vectors(d, cell)
    shifts = _NEIGHBOUR_SHIFTS @ cell
    return np.sqrt(((d[:, :, None, :] + shifts[None, None]) ** 2).sum(axis=-1)).min(axis=-1)


_NEIGHBOUR_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)


def image_distance_A(positions: np.ndarray, cell: np.ndarray, reach: int = 2) -> float:
    """Smallest distance (Angstrom) between a group of atoms and its own periodic images."""
    shifts = np.array(
        [
            s
            for s in itertools.product(
                range(-reach, reach + 1), range(-reach, reach + 1), (-1, 0, 1)
            )
            if s != (0, 0, 0)
        ],
        dtype=float,
    ) @ np.asarray(cell, dtype=float)
    d = positions[:, None, :] - positions[None, :, :]  # (n, n, 3), all shifts at once
    return float(np.sqrt(((d[:, :, None, :] - shifts[None, None]) ** 2).sum(axis=-1)).min())


# ---------------------------------------------------------------------------------------------
# Surface sites
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Surface:
    top: np.ndarray  # indices of the top-plane atoms
    pb: tuple[int, ...]  # top-plane Pb, sorted
    br: tuple[int, ...]  # top-plane Br, sorted
    z_top: float
    a_A: float  # in-plane lattice constant
    supercell: tuple[int, int]


def _surface(slab: Atoms) -> _Surface:
    planes = find_planes(slab)
    symbols = np.array(slab.get_chemical_symbols())
    top = planes[-1]
    comp = {el: int(np.sum(symbols[top] == el)) for el in ("Cs", "Pb", "Br")}
    kind = plane_kind({k: v for k, v in comp.items() if v})
    # a top-plane vacancy (defects.defect_slab, recorded in info) leaves a Pb/Br plane off 1:2
    defective_top = (
        isinstance(slab.info.get(DEFECT_RECORD_KEY), dict)
        and comp["Cs"] == 0
        and comp["Pb"] > 0
        and comp["Br"] > 0
    )
    if kind != "PbBr2" and not defective_top:
        raise InputError(f"ligands are placed on a PbBr2 top face; this slab's top plane is {kind}")
    summary = slab_summary(slab[[i for i, s in enumerate(symbols) if s in SLAB_ELEMENTS]])
    pb = tuple(int(i) for i in top if symbols[i] == "Pb")
    br = tuple(int(i) for i in top if symbols[i] == "Br")
    return _Surface(
        top=top,
        pb=pb,
        br=br,
        z_top=float(np.mean(slab.positions[top, 2])),
        a_A=summary.in_plane_a_A,
        supercell=summary.supercell,
    )


def _neighbour_pb(slab: Atoms, surf: _Surface, site: int, direction: np.ndarray) -> int | None:
    """Top-plane Pb nearest to ``site + a * direction`` (within 0.2 a), else None."""
    target = slab.positions[site] + surf.a_A * direction
    best, best_d = None, 0.2 * surf.a_A
    for j in surf.pb:
        if j == site:
            continue
        d = float(np.linalg.norm(_mic_vectors(slab.positions[j] - target, slab.cell[:])))
        if d < best_d:
            best, best_d = j, d
    return best


@dataclass(frozen=True)
class VacancySite:
    """A vacant top-plane Br site of a defective slab, and the top-plane Pb that faced it."""

    position: np.ndarray  # Cartesian, Angstrom
    pb: tuple[int, ...]  # under-coordinated top-plane Pb beside it, sorted by index
    removed_index: int  # the removed Br's index in the pristine slab


def _defect_of(slab: Atoms) -> tuple[str, dict, list[int]]:
    """(name, record, under-coordinated indices) of a defective slab; one-line error otherwise."""
    from dftflow.structures.defects import undercoordinated_indices

    record = slab.info.get(DEFECT_RECORD_KEY)
    under = undercoordinated_indices(slab)
    if not isinstance(record, dict) or under is None:
        raise InputError(
            "modes vacancy_site and exposed_pb bind at a surface defect: this slab has no defect "
            "record (build it with `dftflow build slab --defect V_Br`, or list the study's "
            "defects)"
        )
    return str(record.get("name", slab.info.get("defect", "defect"))), record, under


def vacancy_sites(slab: Atoms) -> list[VacancySite]:
    """The vacant top-plane Br sites of a defective slab (see the module docstring).

    Raises
    ------
    InputError
        The slab has no defect record, or its defect removed no Br of the top plane (``V_CsBr``:
        the vacancy lies under the surface, out of a ligand's reach).
    """
    name, record, under = _defect_of(slab)
    surf = _surface(slab)
    cell = slab.cell[:]
    top_pb = [i for i in under if i in surf.pb]
    sites = []
    for atom in record.get("removed", []):
        if atom["element"] != "Br":
            continue
        pos = np.array(atom["position_A"], dtype=float)
        if abs(pos[2] - surf.z_top) > TOP_PLANE_TOL_A:
            continue
        near = [
            j
            for j in top_pb
            if np.linalg.norm(_mic_vectors(slab.positions[j] - pos, cell)) < VACANCY_PB_REACH_A
        ]
        if len(near) >= 2:  # the midpoint of the Pb it bridged, as they are now
            first = slab.positions[near[0]]
            pos = first + 0.5 * _mic_vectors(slab.positions[near[1]] - first, cell)
        sites.append(VacancySite(pos, tuple(sorted(near)), int(atom["pristine_index"])))
    if not sites:
        raise InputError(
            f"the {name} vacancy is not in the top PbBr2 plane (it removed "
            f"{record.get('removed_formula', '?')} below the surface): a ligand on the surface "
            "cannot reach its site; use mode exposed_pb (on the Pb that lost a Br)"
        )
    return sites


def _vacancy_of(slab: Atoms, site: int) -> VacancySite:
    """The vacancy site a ``vacancy_site`` placement names by its first Pb (``site``)."""
    for v in vacancy_sites(slab):
        if (v.pb[0] if v.pb else None) == site:
            return v
    raise InputError(f"Pb{site} is not beside a vacant Br site of this slab")


def _defect_sites(slab: Atoms, surf: _Surface, mode: str) -> list[int]:
    """The sites a mode is tried on: top-plane Pb, or the defect's (vacancy / exposed Pb)."""
    if mode == "vacancy_site":
        out = []
        for v in vacancy_sites(slab):
            if not v.pb:
                raise InputError(
                    "the vacant Br site has no under-coordinated top-plane Pb beside it: "
                    "nothing for a ligand there to bind to"
                )
            out.append(v.pb[0])
        return out
    if mode == "exposed_pb":
        name, _, under = _defect_of(slab)
        out = [i for i in under if i in surf.pb]
        if not out:
            raise InputError(f"the {name} defect leaves no under-coordinated Pb in the top plane")
        return out
    return list(surf.pb)


def _lean_direction(slab: Atoms, surf: _Surface, site: int) -> np.ndarray:
    """Unit in-plane vector from Pb ``site`` to the nearest vacant top-plane Br (zero if none)."""
    try:
        sites = vacancy_sites(slab)
    except InputError:
        return np.zeros(3)
    best = None
    for v in sites:
        d = _mic_vectors(v.position - slab.positions[site], slab.cell[:])
        d[2] = 0.0
        n = float(np.linalg.norm(d))
        if n > 1e-6 and n < VACANCY_PB_REACH_A and (best is None or n < best[0]):
            best = (n, d / n)
    return np.zeros(3) if best is None else best[1]


# ---------------------------------------------------------------------------------------------
# Candidate construction
# ---------------------------------------------------------------------------------------------
def _placed_form(anchor: Anchor, form: str, dissociate: bool) -> str:
    if not dissociate:
        return form
    if not anchor.protonated:
        raise InputError(f"dissociate needs a protonated anchor; this one is {anchor.kind}")
    if anchor.kind == "ammonium":
        raise InputError("dissociate is not defined for ammonium (use the amine form instead)")
    return "deprotonated"


def _check_mode(spec: LigandSpec, mode: str, anchor: Anchor) -> None:
    if mode not in MODES:
        raise InputError(f"unknown binding mode {mode!r}: use one of {', '.join(MODES)}")
    if anchor.family not in _MODE_FAMILIES[mode]:
        raise InputError(f"mode {mode} does not apply to the {anchor.kind} anchor of {spec.name}")
    if mode.startswith("bidentate") and anchor.protonated:
        raise InputError(
            f"{mode} needs a deprotonated {anchor.family} group: use --dissociate (H to a surface "
            f"Br) or the deprotonated/radical form of {spec.name}"
        )
    if mode == "a_site" and anchor.kind != "ammonium":
        raise InputError("a_site binding is for ammonium anchors")
    if mode in ("monodentate", *DEFECT_MODES) and anchor.kind == "ammonium":
        raise InputError(f"an ammonium group binds at the A site (mode a_site), not by {mode}")


def _build(
    slab: Atoms,
    surf: _Surface,
    spec: LigandSpec,
    mode: str,
    site: int,
    azimuth_deg: float,
    form: str,
    dissociate: bool,
    min_slab_distance_A: float,
    h_acceptor: int | None = None,
    conformer: int = 0,
    h_rank: int = 0,
    tilt_deg: float = 0.0,
) -> _Built | None:
    """Ligand positions of one candidate (None if the mode's geometry does not exist here).

    ``h_rank``: with ``dissociate`` and no ``h_acceptor``, take the ``h_rank``-th best Br (0 =
    the nearest clash-free one); None when there are fewer.
    """
    return _build_variants(
        slab,
        surf,
        spec,
        mode,
        site,
        azimuth_deg,
        form,
        dissociate,
        min_slab_distance_A,
        h_acceptor=h_acceptor,
        conformer=conformer,
        h_ranks=(h_rank,),
        tilt_deg=tilt_deg,
    )[0]


def _build_variants(
    slab: Atoms,
    surf: _Surface,
    spec: LigandSpec,
    mode: str,
    site: int,
    azimuth_deg: float,
    form: str,
    dissociate: bool,
    min_slab_distance_A: float,
    h_acceptor: int | None = None,
    conformer: int = 0,
    h_ranks: Sequence[int] = (0,),
    tilt_deg: float = 0.0,
) -> list[_Built | None]:
    """:func:`_build` for several H-acceptor ranks at once (the ligand is placed once)."""
    mol_form = _placed_form(ligand_anchor(spec, form), form, dissociate)
    mol = ligand_molecule(spec, mol_form, conformer)
    anchor = ligand_anchor(spec, mol_form)
    _check_mode(spec, mode, anchor)
    symbols = mol.get_chemical_symbols()
    local0 = _local_frame(mol.positions, symbols, anchor, mode)
    if tilt_deg:  # a requested tilt: towards +x (the second anchor atom) or about the O-O line
        axis = np.array([1.0, 0.0, 0.0] if mode.startswith("bidentate") else [0.0, 1.0, 0.0])
        local0 = local0 @ _axis_rotation(axis, tilt_deg).T
    rz = _rot_z(azimuth_deg)
    pb = slab.positions[site]
    cell = slab.cell[:]
    exempt: dict[int, set[int]] = {}
    removed: tuple[int, ...] = ()
    site2 = None
    bond = BOND_LENGTH_A[symbols[anchor.binding_atoms[0]]]
    if mode == "monodentate":
        point = pb + np.array([0.0, 0.0, bond])
    elif mode == "vacancy_site":
        vac = _vacancy_of(slab, site)
        point = vac.position.copy()
        site2 = vac.pb[1] if len(vac.pb) > 1 else None
    elif mode == "exposed_pb":
        lean = np.deg2rad(EXPOSED_PB_LEAN_DEG)
        u = _lean_direction(slab, surf, site)
        if np.linalg.norm(u) < 1e-6:
            lean = 0.0
        point = pb + bond * (np.cos(lean) * np.array([0.0, 0.0, 1.0]) + np.sin(lean) * u)
    elif mode == "bidentate_chelating":
        half = 0.5 * float(
            np.linalg.norm(local0[anchor.binding_atoms[1]] - local0[anchor.binding_atoms[0]])
        )
        if half >= bond:
            return [None] * len(h_ranks)
        point = pb + np.array([0.0, 0.0, np.sqrt(bond**2 - half**2)])
    elif mode in ("bidentate_bridging", "bidentate_bridging_over_br"):
        if not np.isclose(azimuth_deg % 90.0, 0.0):
            return [None] * len(h_ranks)
        site2 = _neighbour_pb(slab, surf, site, rz @ np.array([1.0, 0.0, 0.0]))
        if site2 is None:
            return [None] * len(h_ranks)
        pb2 = pb + _mic_vectors(slab.positions[site2] - pb, cell)
        span = float(np.linalg.norm(pb2 - pb))
        oo = float(
            np.linalg.norm(local0[anchor.binding_atoms[1]] - local0[anchor.binding_atoms[0]])
        )
        reach = 0.5 * (span - oo)
        if mode == "bidentate_bridging_over_br":
            bond = BRIDGING_OVER_BR_PB_O_A  # the Br stays: the O-O line goes above it
        if reach >= bond or reach < 0:
            return [None] * len(h_ranks)
        mid = 0.5 * (pb + pb2)
        point = mid + np.array([0.0, 0.0, np.sqrt(bond**2 - reach**2)])
        if mode == "bidentate_bridging":
            # the Br bridging the two Pb has no room left: the carboxylate replaces it
            removed = tuple(
                sorted(
                    b
                    for b in surf.br
                    if np.linalg.norm(_mic_vectors(slab.positions[b] - mid, cell)) < 0.25 * span
                )
            )
    else:  # a_site: N in the hollow where the next plane's Cs would sit
        point = pb + np.array([0.5 * surf.a_A, 0.5 * surf.a_A, 0.5 * surf.a_A])
    # tilt about the binding atom (or the O-O line) until the ligand clears the slab
    keep = np.array([i for i in range(len(slab)) if i not in removed])
    pos = None
    tilt_used = "upright"
    for label, tilt in _tilts(mode):
        trial = (local0 @ tilt.T) @ rz.T + point
        if pos is None:
            pos = trial
        if float(_min_distance(trial, slab.positions[keep], cell).min()) >= min_slab_distance_A:
            pos, tilt_used = trial, label
            break
    if not dissociate:
        return [_Built(symbols, pos, removed, None, site2, exempt, tilt_used)] * len(h_ranks)
    acceptors = [h_acceptor] if h_acceptor is not None else list(surf.br)
    acceptors = [br for br in acceptors if br not in removed]
    if not acceptors:
        return [None] * len(h_ranks)
    hs = slab.positions[acceptors] + np.array([0.0, 0.0, H_BR_A])
    dists = _min_distance(hs, pos, cell).min(axis=1)  # every acceptor at once
    to_acid = np.linalg.norm(_mic_vectors(hs - pos[anchor.acidic_atom], cell), axis=1)
    # ties broken by the Br's position in the ligand's own frame (the same choice for
    # symmetry-equivalent candidates), quantised to 0.05 Angstrom against rounding noise
    rels = _mic_vectors(slab.positions[acceptors] - pb, cell) @ _rot_z(-azimuth_deg).T
    ranked = []
    for br, h, dist, acid_d, rel in zip(acceptors, hs, dists, to_acid, rels, strict=True):
        key = (bool(dist >= min_slab_distance_A), -_q(acid_d), _q(rel[0]), _q(rel[1]))
        ranked.append((key, br, h))
    ranked.sort(key=lambda r: r[0], reverse=True)
    out: list[_Built | None] = []
    for h_rank in h_ranks:
        rank = 0 if h_acceptor is not None else h_rank
        if rank >= len(ranked) or (rank > 0 and not ranked[rank][0][0]):
            out.append(None)  # no such acceptor (or only ones that clash with the ligand)
            continue
        _, br, h = ranked[rank]
        out.append(
            _Built(
                [*symbols, "H"],
                np.vstack([pos, h]),
                removed,
                br,
                site2,
                {**exempt, len(symbols): {br}},
                tilt_used,
            )
        )
    return out


def _slab_clearance(slab: Atoms, built: _Built) -> float:
    keep = np.array([i for i in range(len(slab)) if i not in built.removed])
    d = _min_distance(built.positions, slab.positions[keep], slab.cell[:])
    for lig_atom, slab_atoms in built.exempt.items():
        for s in slab_atoms:
            d[lig_atom, int(np.flatnonzero(keep == s)[0])] = np.inf
    return float(d.min())


def _model(anchor: Anchor, form: str, mode: str, dissociate: bool, charge: int) -> str:
    if dissociate:
        base = "dissociated acid, H on surface Br"
    elif form == "radical":
        base = "radical"
    elif charge < 0:
        base = "anion"
    elif charge > 0:
        base = "cation"
    else:
        base = "molecular"
    if mode == "bidentate_bridging":
        base += ", replaces a surface Br"
    elif mode == "bidentate_bridging_over_br":
        base += ", bridging two Pb over a surface Br"
    elif mode == "vacancy_site":
        base += ", anchor on the vacant Br site"
    elif mode == "exposed_pb":
        base += ", on an under-coordinated Pb"
    return f"{base} ({anchor.kind}, {mode})"


# ---------------------------------------------------------------------------------------------
# Symmetry
# ---------------------------------------------------------------------------------------------
def _surface_symmetry(slab: Atoms, symprec_A: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Symmetry operations (fractional R, t) of the slab that keep the surface normal (+z)."""
    import spglib

    cell = (slab.cell[:], slab.get_scaled_positions(), slab.numbers)
    with warnings.catch_warnings():  # spglib's deprecation notice about its error handling
        warnings.simplefilter("ignore", DeprecationWarning)
        data = spglib.get_symmetry(cell, symprec=symprec_A)
    if data is None:
        return [(np.eye(3), np.zeros(3))]
    ops = []
    for r, t in zip(data["rotations"], data["translations"], strict=True):
        if r[2, 2] == 1 and r[2, 0] == 0 and r[2, 1] == 0 and r[0, 2] == 0 and r[1, 2] == 0:
            ops.append((np.array(r, dtype=float), np.array(t, dtype=float)))
    return ops or [(np.eye(3), np.zeros(3))]


def _fingerprint(slab: Atoms, built: _Built) -> tuple[list[str], np.ndarray, int]:
    """Atoms that define a candidate: ligand (contiguous core first), moved H, removed Br as 'X'."""
    n_core = len(built.symbols) - (1 if built.h_acceptor is not None else 0)
    symbols = list(built.symbols) + ["X"] * len(built.removed)
    pos = (
        np.vstack([built.positions, slab.positions[list(built.removed)]])
        if built.removed
        else built.positions
    )
    return symbols, pos, n_core


def _equivalent(
    fp_a: tuple[list[str], np.ndarray, int],
    fp_b: tuple[list[str], np.ndarray, int],
    ops: list[tuple[np.ndarray, np.ndarray]],
    cell: np.ndarray,
    tol_A: float,
) -> bool:
    """Whether a symmetry operation maps candidate ``a``'s atoms onto ``b``'s (any atom order)."""
    from scipy.optimize import linear_sum_assignment

    sym_a, pos_a, core_a = fp_a
    sym_b, pos_b, core_b = fp_b
    if sorted(sym_a) != sorted(sym_b):
        return False
    # operations keep the surface normal: the heights of each element are a cheap invariant
    for el in set(sym_a):
        za = np.sort([p[2] for s, p in zip(sym_a, pos_a, strict=True) if s == el])
        zb = np.sort([p[2] for s, p in zip(sym_b, pos_b, strict=True) if s == el])
        if np.abs(za - zb).max() > tol_A:
            return False
    inv = np.linalg.inv(cell)
    frac_a = pos_a @ inv
    frac_b = pos_b @ inv
    cen_b = frac_b[:core_b].mean(axis=0)
    groups = {
        el: (
            np.array([i for i, s in enumerate(sym_a) if s == el]),
            np.array([i for i, s in enumerate(sym_b) if s == el]),
        )
        for el in set(sym_a)
    }
    # the core is contiguous: its centroid is a cheap pre-check, for every operation at once
    rots = np.array([r for r, _ in ops])
    trans = np.array([t for _, t in ops])
    dcs = np.einsum("kij,j->ki", rots, frac_a[:core_a].mean(axis=0)) + trans - cen_b
    dcs -= np.round(dcs)
    near = np.linalg.norm(dcs @ cell, axis=-1) <= tol_A
    for (r, t), close in zip(ops, near, strict=True):
        if not close:
            continue
        mapped = frac_a @ r.T + t
        ok = True
        for ia, ib in groups.values():
            d = mapped[ia][:, None, :] - frac_b[ib][None, :, :]
            d -= np.round(d)
            dist = np.linalg.norm(d @ cell, axis=-1)
            rows, cols = linear_sum_assignment(dist)
            if dist[rows, cols].max() > tol_A:
                ok = False
                break
        if ok:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def default_modes(
    spec: LigandSpec, form: str = "as_is", dissociate: bool | None = False
) -> list[str]:
    """Modes enumerated when none are given, in order.

    Bridging (which removes a surface Br, changing the slab's composition) is only enumerated when
    asked for explicitly.
    """
    anchor = ligand_anchor(spec, form)
    if anchor.kind == "ammonium":
        return ["a_site"]
    if anchor.family in ("carboxyl", "phosphonate", "sulfonate"):
        if anchor.protonated and not dissociate:
            return ["monodentate"]
        return ["bidentate_chelating", "monodentate"]
    return ["monodentate"]


def _label(
    mode: str,
    site: int,
    azimuth: float,
    dissociate: bool,
    site2: int | None,
    h_acceptor: int | None = None,
    tilt_deg: float = 0.0,
) -> str:
    """Path-safe name; ``h_acceptor`` is named (``-HBr<i>``) only when several were tried."""
    sites = f"Pb{site}" + (f"-Pb{site2}" if site2 is not None else "")
    az = f"{azimuth:g}".replace(".", "p").replace("-", "m")
    tilt = f"-t{tilt_deg:g}".replace(".", "p").replace("-t-", "-tm") if tilt_deg else ""
    h = (f"-HBr{h_acceptor}" if h_acceptor is not None else "-H") if dissociate else ""
    return f"{mode}-{sites}-az{az}{tilt}{h}"


def _as_spec(spec: LigandSpec | str) -> LigandSpec:
    return get_ligand(spec) if isinstance(spec, str) else spec


def enumerate_placements(
    slab: Atoms,
    spec: LigandSpec | str,
    modes: Iterable[str] | None = None,
    azimuths_deg: Iterable[float] | None = None,
    form: Form = "as_is",
    dissociate: bool | None = False,
    min_slab_distance_A: float = MIN_SLAB_DISTANCE_A,
    min_image_distance_A: float = MIN_IMAGE_DISTANCE_A,
    symprec_A: float = 0.2,
    dedupe: bool = True,
    *,
    conformer: int = 0,
    h_acceptors: int = 1,
    tilts_deg: Iterable[float] = (0.0,),
) -> list[Placement]:
    """Symmetry-distinct, clash-free placements of one ligand on the slab's top face.

    Parameters
    ----------
    slab
        A slab whose top plane is PbBr2 (any supercell; relaxed slabs work).
    spec
        The ligand (or its library name).
    modes
        Binding modes to try, in this order; default :func:`default_modes`.
    azimuths_deg
        Orientations about the surface normal, degrees (default 0, 45, ..., 315).
    form
        Ligand form (see :func:`dftflow.structures.ligands.ligand_molecule`).
    dissociate
        Move the acidic H to a surface Br: ``False`` (default), ``True``, or ``None`` for both.
    min_slab_distance_A, min_image_distance_A
        Clash thresholds, Angstrom.
    symprec_A
        Tolerance of the slab's symmetry search (spglib), Angstrom; relaxed slabs keep their
        symmetry within it. Candidates are equivalent when a symmetry operation maps one onto the
        other within :data:`MATCH_TOLERANCE_A`.
    dedupe
        Drop symmetry-equivalent candidates (keep the first).
    conformer
        Conformer of the placed molecule (:func:`dftflow.structures.ligands.n_conformers`).
    h_acceptors
        Dissociated candidates: how many surface Br to try as the acceptor of the acidic H (the
        nearest clash-free ones to the acidic O, nearest first); with more than one, labels name
        the Br (``-HBr<i>``).
    tilts_deg
        Starting tilts to try, degrees (0 = standing; labels name a non-zero tilt, ``-t<deg>``):
        towards the second anchor atom (monodentate and the other single-atom modes) or about the
        O-O line (bidentate). Tilts needed to clear the slab are added on top (``tilt``).

    Returns
    -------
    list[Placement]
        In deterministic order: mode, dissociation (no before yes), tilt, azimuth, site index (then
        the H acceptor rank).

    Raises
    ------
    InputError
        If no candidate fits; when the ligand touches its own periodic images the message names the
        smallest in-plane supercell that would fit.
    """
    spec = _as_spec(spec)
    surf = _surface(slab)
    anchor = ligand_anchor(spec, form)
    diss_options = [False, True] if dissociate is None else [bool(dissociate)]
    if dissociate is True and (not anchor.protonated or anchor.kind == "ammonium"):
        raise InputError(
            f"cannot dissociate {spec.name} ({form}): its {anchor.kind} group has no acidic H to "
            f"move (use --form protonated for the acid)"
        )
    if dissociate is None and (not anchor.protonated or anchor.kind == "ammonium"):
        diss_options = [False]
    mode_list = list(modes) if modes else default_modes(spec, form, dissociate)
    for m in mode_list:
        if m not in MODES:
            raise InputError(f"unknown binding mode {m!r}: use one of {', '.join(MODES)}")
    azimuths = [
        float(a) % 360.0
        for a in (azimuths_deg if azimuths_deg is not None else DEFAULT_AZIMUTHS_DEG)
    ]
    tilts = [float(t) for t in tilts_deg] or [0.0]
    ops = _surface_symmetry(slab, symprec_A) if dedupe else []
    cell = slab.cell[:]

    accepted: list[tuple[Placement, tuple[list[str], np.ndarray, int]]] = []
    n_tried = 0
    best_image: tuple[float, _Built] | None = None
    errors: list[str] = []
    planes = find_planes(slab)
    z_image_bottom = float(np.min(slab.positions[planes[0], 2])) + float(cell[2, 2])
    min_height = np.inf  # lowest top of a candidate above the top plane (Angstrom)
    n_vertical = 0  # candidates that only touch the periodic image of the slab above
    for mode in mode_list:
        for diss in diss_options:
            try:
                _check_mode(spec, mode, ligand_anchor(spec, _placed_form(anchor, form, diss)))
            except InputError as exc:
                errors.append(str(exc))
                continue
            sites = _defect_sites(slab, surf, mode)
            for tilt_deg, az, site in itertools.product(tilts, azimuths, sites):
                variants = _build_variants(
                    slab,
                    surf,
                    spec,
                    mode,
                    site,
                    az,
                    form,
                    diss,
                    min_slab_distance_A,
                    conformer=conformer,
                    h_ranks=range(max(1, int(h_acceptors)) if diss else 1),
                    tilt_deg=tilt_deg,
                )
                for built in variants:
                    if built is None:
                        continue
                    n_tried += 1
                    d_slab = _slab_clearance(slab, built)
                    top = float(built.positions[:, 2].max())
                    min_height = min(min_height, top - surf.z_top)
                    if d_slab < min_slab_distance_A and z_image_bottom - top < min_slab_distance_A:
                        n_vertical += 1
                    d_img = image_distance_A(built.positions, cell)
                    if d_slab >= min_slab_distance_A and (
                        best_image is None or d_img > best_image[0]
                    ):
                        best_image = (d_img, built)
                    if d_slab < min_slab_distance_A or d_img < min_image_distance_A:
                        continue
                    fp = _fingerprint(slab, built)
                    dup = None
                    if dedupe:
                        for k, (p, fp_b) in enumerate(accepted):
                            if (
                                p.mode == mode
                                and p.dissociate == diss
                                and _equivalent(fp, fp_b, ops, cell, MATCH_TOLERANCE_A)
                            ):
                                dup = k
                                break
                    if dup is not None:
                        p = accepted[dup][0]
                        accepted[dup] = (
                            p.model_copy(update={"n_equivalent": p.n_equivalent + 1}),
                            accepted[dup][1],
                        )
                        continue
                    placed_form = _placed_form(anchor, form, diss)
                    mol = ligand_molecule(spec, form)
                    accepted.append(
                        (
                            Placement(
                                index=len(accepted),
                                label=_label(
                                    mode,
                                    site,
                                    az,
                                    diss,
                                    built.site2,
                                    built.h_acceptor if h_acceptors > 1 else None,
                                    tilt_deg,
                                ),
                                ligand=spec.name,
                                mode=mode,
                                site=site,
                                site2=built.site2,
                                azimuth_deg=az,
                                form=form,
                                dissociate=diss,
                                h_acceptor=built.h_acceptor,
                                removed=built.removed,
                                anchor=ligand_anchor(spec, placed_form).kind,
                                charge=int(mol.info["charge"]),
                                model=_model(anchor, form, mode, diss, int(mol.info["charge"])),
                                min_slab_distance_A=round(d_slab, 3),
                                min_image_distance_A=round(d_img, 3),
                                tilt=built.tilt,
                                conformer=conformer,
                                tilt_deg=tilt_deg,
                            ),
                            fp,
                        )
                    )
    if accepted:
        return [p for p, _ in accepted]
    if n_tried == 0:
        why = (
            "; ".join(dict.fromkeys(errors))
            or f"modes {', '.join(mode_list)} have no geometry here"
        )
        raise InputError(f"no placement of {spec.name}: {why}")
    if n_vertical:
        gap = z_image_bottom - surf.z_top
        need = min_height + min_slab_distance_A
        raise InputError(
            f"vacuum {gap:.1f} A above the slab is too small for {spec.name} standing on it (needs "
            f"> {need:.1f} A; e.g. build the slab with --vacuum {np.ceil(need + 8.0):.0f})"
        )
    if best_image is not None and best_image[0] < min_image_distance_A:
        n = _smallest_supercell(best_image[1].positions, slab, surf, min_image_distance_A)
        raise InputError(
            f"supercell {surf.supercell[0]}x{surf.supercell[1]} is too small for {spec.name}: "
            f"it comes within {best_image[0]:.2f} A of its periodic image "
            f"(need {min_image_distance_A:g}); "
            f"the smallest that fits is {n}x{n}"
        )
    raise InputError(
        f"no placement of {spec.name} keeps {min_slab_distance_A:g} A from the slab atoms "
        f"(modes {', '.join(mode_list)})"
    )


def _smallest_supercell(
    positions: np.ndarray, slab: Atoms, surf: _Surface, min_image_A: float
) -> int:
    """Smallest n: an n x n supercell keeps ``positions`` ``min_image_A`` from their images."""
    cell = slab.cell[:].copy()
    for n in range(1, 21):
        trial = cell.copy()
        trial[0] = cell[0] / surf.supercell[0] * n
        trial[1] = cell[1] / surf.supercell[1] * n
        if image_distance_A(positions, trial) >= min_image_A:
            return max(n, 1)
    return 21


def hill_order(symbols: Sequence[str]) -> list[int]:
    """Stable order grouping atoms by element, C then H then alphabetical (one POSCAR block each).

    A dissociated H (last in the ligand) stays the last H.
    """
    rank = {el: (0 if el == "C" else 1 if el == "H" else 2, el) for el in set(symbols)}
    return sorted(range(len(symbols)), key=lambda i: (rank[symbols[i]], i))


def place_ligand(slab: Atoms, spec: LigandSpec | str, placement: Placement) -> Atoms:
    """The complex: the slab (minus any replaced Br) with the ligand atoms appended.

    The slab's constraints (selective dynamics) are kept; ligand atoms are free and come last,
    grouped by element (C, H, then alphabetical; a dissociated H is the last H). The appended atoms
    are marked as the ligand (``arrays["ligand"]``, see :mod:`dftflow.structures.ligand_atoms`;
    a dissociated H is one of them; ligand atoms already marked on ``slab`` stay marked). ``info``
    records ligand, form, charge (e), model and placement.
    """
    spec = _as_spec(spec)
    surf = _surface(slab)
    if placement.site not in surf.pb:
        raise InputError(f"placement site {placement.site} is not a Pb of this slab's top plane")
    built = _build(
        slab,
        surf,
        spec,
        placement.mode,
        placement.site,
        placement.azimuth_deg,
        placement.form,
        placement.dissociate,
        MIN_SLAB_DISTANCE_A,
        h_acceptor=placement.h_acceptor,
        conformer=placement.conformer,
        tilt_deg=placement.tilt_deg,
    )
    if built is None:
        raise InputError(f"placement {placement.label} has no geometry on this slab")
    complex_ = slab.copy()
    complex_.set_constraint([c.copy() for c in slab.constraints])
    if built.removed:
        del complex_[list(built.removed)]
    order = hill_order(built.symbols)
    if ligand_indices_of(complex_) is None:
        complex_ = mark_ligand(complex_, [])
    ligand = Atoms(
        symbols=[built.symbols[i] for i in order],
        positions=built.positions[order],
        cell=slab.cell,
        pbc=slab.pbc,
    )
    ligand.arrays[LIGAND_ARRAY] = np.ones(len(ligand), dtype=bool)
    complex_.extend(ligand)
    # not wrapped: the ligand stays a contiguous molecule (periodic codes do not mind)
    info = {k: v for k, v in slab.info.items() if isinstance(v, (str, int, float, bool))}
    if isinstance(slab.info.get(DEFECT_RECORD_KEY), dict):  # the defect the ligand sits at
        info[DEFECT_RECORD_KEY] = slab.info[DEFECT_RECORD_KEY]
    info.update(
        {
            "ligand": spec.name,
            "form": placement.form,
            "charge": placement.charge,
            "model": placement.model,
            "placement": placement.label,
            "mode": placement.mode,
            "n_ligand_atoms": len(built.symbols),
        }
    )
    complex_.info = info
    return complex_


def place_ligands(
    slab: Atoms,
    items: Sequence[tuple[LigandSpec | str, Placement]],
    min_distance_A: float = MIN_IMAGE_DISTANCE_A,
) -> Atoms:
    """Several ligands on distinct sites (coverage); checks ligand-ligand distances (periodic).

    Placements that remove slab atoms (bridging) cannot be combined here.
    """
    if not items:
        raise InputError("no ligands to place")
    sites = [p.site for _, p in items]
    if len(set(sites)) != len(sites):
        raise InputError(f"two ligands on the same Pb site: {sites}")
    if any(p.removed for _, p in items):
        raise InputError("bridging placements (which remove a Br) cannot be combined for coverage")
    result = slab.copy()
    result.set_constraint([c.copy() for c in slab.constraints])
    if ligand_indices_of(result) is None:
        result = mark_ligand(result, [])
    groups: list[np.ndarray] = []
    names = []
    for spec, p in items:
        complex_ = place_ligand(slab, spec, p)
        lig = complex_.positions[len(slab) :]
        for g in groups:
            d = float(_min_distance(lig, g, slab.cell[:]).min())
            if d < min_distance_A:
                raise InputError(f"ligand on Pb{p.site} comes within {d:.2f} A of another ligand")
        groups.append(lig)
        names.append(complex_.info["ligand"])
        result.extend(complex_[len(slab) :])
    result.info.update({"ligand": "+".join(names), "n_ligands": len(items)})
    return result


def coverage_placements(slab: Atoms, placement: Placement, n: int) -> list[Placement]:
    """``n`` copies of a placement on distinct, mutually far-apart top-plane Pb (farthest-point).

    The copies keep the mode, azimuth and form; they are translations of the first one by the
    in-plane lattice of the top plane.
    """
    surf = _surface(slab)
    if not 1 <= n <= len(surf.pb):
        raise InputError(f"coverage of {n} ligands needs 1..{len(surf.pb)} (top-plane Pb sites)")
    if placement.removed or placement.dissociate:
        raise InputError("coverage supports non-dissociated, non-bridging placements")
    chosen = [placement.site]
    cell = slab.cell[:]
    while len(chosen) < n:
        rest = [j for j in surf.pb if j not in chosen]
        dmin = [
            min(
                float(np.linalg.norm(_mic_vectors(slab.positions[j] - slab.positions[c], cell)))
                for c in chosen
            )
            for j in rest
        ]
        chosen.append(rest[int(np.argmax(np.round(dmin, 6)))])
    out = []
    for k, site in enumerate(chosen):
        out.append(
            placement.model_copy(
                update={
                    "site": site,
                    "index": k,
                    "label": _label(placement.mode, site, placement.azimuth_deg, False, None),
                }
            )
        )
    return out


def molecule_in_cell(
    molecule: Atoms, cell, min_image_distance_A: float = MIN_IMAGE_DISTANCE_A
) -> Atoms:
    """An isolated molecule centred in a (slab's) cell, long axis along z.

    Parameters
    ----------
    molecule
        A molecule from :func:`dftflow.structures.ligands.ligand_molecule` (standing along z).
    cell
        The cell to use (3x3 array or ASE Cell), e.g. the slab's, so that slab, complex and molecule
        share one cell and FFT grid.

    Raises
    ------
    InputError
        If the molecule comes closer than ``min_image_distance_A`` to its periodic images.
    """
    cell = np.array(cell[:] if hasattr(cell, "__getitem__") else cell, dtype=float)
    atoms = mark_ligand(molecule[hill_order(molecule.get_chemical_symbols())], range(len(molecule)))
    atoms.set_cell(cell)
    atoms.pbc = True
    centre = 0.5 * cell.sum(axis=0)
    lo, hi = atoms.positions.min(axis=0), atoms.positions.max(axis=0)
    atoms.positions += centre - 0.5 * (lo + hi)
    d = image_distance_A(atoms.positions, cell)
    if d < min_image_distance_A:
        raise InputError(
            f"molecule {atoms.info.get('ligand', '')} comes within {d:.2f} A of its periodic image "
            f"in this cell (need {min_image_distance_A:g}): use a taller or wider cell"
        )
    return atoms


def split_complex(
    complex_: Atoms, ligand_indices: Sequence[int] | None = None
) -> tuple[Atoms, Atoms]:
    """Slab part and ligand part of a complex, cut by the ligand indices; positions kept.

    Parameters
    ----------
    complex_
        A complex from :func:`place_ligand` (its ``"ligand"`` array says which atoms the builder
        added) or any structure with ``ligand_indices``.
    ligand_indices
        0-based ligand atoms; default :func:`~dftflow.structures.ligand_atoms.ligand_indices_of`
        ``(complex_)``. Never guessed from elements: an N, S or P anchor is ligand.

    Both parts keep the complex's cell and pbc and are marked (slab: no ligand atom; ligand: every
    atom); the slab part keeps the fixed-atom constraints of its atoms.

    Raises
    ------
    InputError
        If the ligand atoms are unknown, or one of the parts would be empty.
    """
    from ase.constraints import FixAtoms

    from dftflow.structures.ligand_atoms import split_indices

    if ligand_indices is None:
        ligand_indices = ligand_indices_of(complex_)
    if ligand_indices is None:
        raise InputError(
            "which atoms are the ligand is unknown (no 'ligand' array): build the complex with "
            "place_ligand / `dftflow build complex`, or give ligand_indices"
        )
    symbols = complex_.get_chemical_symbols()
    slab_idx, lig_idx = split_indices(len(complex_), ligand_indices)
    if not slab_idx or not lig_idx:
        raise InputError("not a slab + ligand complex (needs ligand atoms and slab atoms)")
    fixed = set()
    for c in complex_.constraints:
        if isinstance(c, FixAtoms):
            fixed.update(int(i) for i in c.get_indices())
    slab = Atoms(
        symbols=[symbols[i] for i in slab_idx],
        positions=complex_.positions[slab_idx],
        cell=complex_.cell,
        pbc=complex_.pbc,
    )
    new_fixed = [k for k, i in enumerate(slab_idx) if i in fixed]
    if new_fixed:
        slab.set_constraint(FixAtoms(indices=new_fixed))
    ligand = Atoms(
        symbols=[symbols[i] for i in lig_idx],
        positions=complex_.positions[lig_idx],
        cell=complex_.cell,
        pbc=complex_.pbc,
    )
    scalar = {k: v for k, v in complex_.info.items() if isinstance(v, (str, int, float, bool))}
    slab.info.update(
        {k: v for k, v in scalar.items() if k not in ("ligand", "charge", "model", "form")}
    )
    ligand.info.update(scalar)
    return mark_ligand(slab, []), mark_ligand(ligand, range(len(ligand)))


def ligand_height_A(slab: Atoms, spec: LigandSpec | str, form: Form = "as_is") -> float:
    """Height (Angstrom) of the highest atom of the standing ligand above the top plane."""
    spec = _as_spec(spec)
    slab = slab.copy()
    slab.cell[2, 2] += 200.0  # measure the upright ligand, not one tilted away from a close image
    surf = _surface(slab)
    best = 0.0
    anchor = ligand_anchor(spec, form)
    for mode in default_modes(spec, form, None if anchor.protonated else False):
        diss = mode.startswith("bidentate") and anchor.protonated
        built = _build(slab, surf, spec, mode, surf.pb[0], 0.0, form, diss, MIN_SLAB_DISTANCE_A)
        if built is not None:
            best = max(best, float(built.positions[:, 2].max()) - surf.z_top)
    return best


def required_vacuum_A(
    slab: Atoms,
    specs: Iterable[LigandSpec | str],
    clearance_A: float = 10.0,
    forms: Sequence[Form] = ("as_is",),
) -> float:
    """Vacuum (Angstrom, slab top plane to the bottom plane's image) so that every ligand fits.

    The tallest ligand standing on the top face keeps ``clearance_A`` to the periodic image of the
    slab above it. Forms that do not exist for a ligand (e.g. the radical of an amine) are skipped.
    Use the result as ``vacuum`` of :func:`dftflow.structures.slab.cspbbr3_001_slab` to put slab,
    complexes and isolated ligands in one cell.
    """
    height = 0.0
    for spec in specs:
        heights = []
        errors = []
        for form in forms:
            try:
                heights.append(ligand_height_A(slab, spec, form))
            except InputError as exc:  # a form that does not exist for this ligand
                errors.append(str(exc))
        if not heights:
            raise InputError(errors[0])
        height = max(height, *heights)
    return round(height + float(clearance_A), 3)


def vacuum_above_ligand_A(complex_: Atoms) -> float:
    """Vacuum (Angstrom) between the highest atom of a complex and the slab's periodic image above.

    The distance along z from the topmost atom (the ligand's top) to the lowest slab atom (not a
    marked ligand atom) one c vector up; the slab's own vacuum when nothing stands on it.
    """
    lig = set(ligand_indices_of(complex_) or [])
    slab_idx = [i for i in range(len(complex_)) if i not in lig]
    if not slab_idx:
        raise InputError("the structure has no slab atoms (every atom is marked as ligand)")
    z = complex_.positions[:, 2]
    return float(np.min(z[slab_idx]) + complex_.cell[2, 2] - np.max(z))


def raise_cell_for_vacuum(complex_: Atoms, vacuum_A: float) -> tuple[Atoms, float]:
    """The complex with c raised so that the ligand's top is ``vacuum_A`` below the next slab image.

    The study does the same for its shared cell (:func:`required_vacuum_A`): the slab's vacuum is
    kept above the tallest ligand, not only a contact distance. Atoms keep their Cartesian
    positions; only the c vector (along z) grows. A complex that already has the vacuum is
    returned unchanged (a copy).

    Parameters
    ----------
    complex_
        Slab + ligand, c along z, ligand atoms marked.
    vacuum_A
        The vacuum to keep above the ligand, Angstrom (the slab's own, usually).

    Returns
    -------
    tuple of (Atoms, float)
        The complex and how much c was raised, Angstrom (0.0 when not).
    """
    out = complex_.copy()
    out.set_constraint([c.copy() for c in complex_.constraints])
    cell = np.array(out.cell[:])
    if abs(cell[2, 0]) > 1e-6 or abs(cell[2, 1]) > 1e-6:
        raise InputError("the slab's c vector must be along z to raise the vacuum above a ligand")
    missing = float(vacuum_A) - vacuum_above_ligand_A(out)
    if missing <= 1e-6:
        return out, 0.0
    raise_by = round(missing, 4)
    cell[2, 2] += raise_by
    out.set_cell(cell, scale_atoms=False)
    return out, raise_by
