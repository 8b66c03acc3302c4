"""Mid-gap (trap) state detector.

What it does
------------
From the Kohn-Sham eigenvalues, occupations, k-point weights and (when the run has them) per-atom
projections of one run (:func:`dftflow.parse.run.load_bands`: the embedded engine's ``bands.npz``
or VASP's vasprun.xml; projections need LORBIT >= 10), find the host band edges per spin and report
every state inside that gap: its energy (on the code's scale and from the host VBM), spin,
occupation, the number of k-points where it is in the gap and, with projections, its character
(element weights, the atoms that carry it, surface vs interior layer, ligand vs slab). Ligand atoms
are the builder's (the run's ``TaskDoc.ligand_indices``); only a run that records none falls back
to the element rule of :mod:`dftflow.analysis.ligand_split`, stated in ``ligand_atoms_from``.

Band edges follow the occupations (the rule)
--------------------------------------------
Per spin channel and over all k-points, with ``f`` the occupation of a spin orbital (0..1; a
record holding 0..2 for one spin channel is halved):

* ``VBM`` = highest eigenvalue with ``f >= 0.5``, ``CBM`` = lowest with ``f < 0.5``. Every state
  below the VBM that is not reported is occupied, every state above the CBM empty: the edges
  cannot disagree with the occupations, whatever the cell size.
* Smearing: a band that is *partly filled at every k-point* (``0.02 < f < 0.98``) is a level
  pinned at E_F (a half-filled defect level of a non-spin-polarised run, a smeared trap). It is
  left out of the edge search and reported as a gap state when it lies more than ``tolerance``
  inside the edges so found; otherwise (a band crossing E_F: it has filled and empty k-points, or
  partly filled states that touch the edges) the 0.5 rule stands as it is and a metal gets no gap.

*Self-consistent mode* (no reference) therefore reports only partly filled levels pinned at E_F:
a fully occupied or empty defect level *is* the highest occupied or lowest empty state of its
cell, and only the clean host can say that it is not a band edge. A clean bulk, a clean slab and a
molecule (HOMO/LUMO) report no gap states.

*Reference mode* (``reference=DIR``: the clean host, bulk or slab, computed alone): the host
edges are the reference's edges (the rule above, applied to the reference) shifted onto the
system's energy scale; every state of the system inside them by more than ``tolerance`` is a gap
state, so a defect level 0.3 eV above the host VBM is reported, not taken for the VBM. One
exception: a host band that moved across the aligned edge (a conduction band 0.1 eV lower after
adsorption) is listed under ``moved_band_states`` and not counted. A state is taken for one only
when it lies within ``MOVED_BAND_MAX_EV`` of an edge, is filled as the band at that edge
(within ``EDGE_FILLING_TOLERANCE`` of full near the VBM, of empty near the CBM: a hole above the
VBM or an electron below the CBM, even a fraction of one, is always a gap state) and either the
system's eigenvalues run from it to beyond the edge with no spacing wider than ``2 * tolerance``
(a band continuum), or, with projections in both runs, it is
at least ``MOVED_BAND_PARTICIPATION_RATIO`` x as delocalised over the host atoms as the
reference's states at that edge (``reference["moved_band_filter"]`` says which tests applied).

Alignment (``reference["method"]`` says which was used)
-------------------------------------------------------
Eigenvalues of two calculations have no common zero (the average electrostatic potential differs),
hence a deep level, as in core-level alignment of defect calculations.

* ``"deep"`` (default), with projections in both runs: the k-weighted mean energy of the deepest
  cluster of states at least 3 eV below E_F carrying >= 90 % (else >= 50 %) of their projection
  on the heaviest element common to both runs (Pb 5d for CsPbBr3, Ga 3d for GaN).
* ``"deep"`` when a run has no projections (LORBIT 0, common in real defect runs), or when
  the projected level cannot be found: the lowest *band manifold* (bands separated from the rest
  of the spectrum by more than ``MANIFOLD_GAP_EV`` at every k-point, with the same number of bands
  at every k-point, its top at least 3 eV below E_F) matched between the runs by its band count:
  ``m x N_X`` bands in both for one element X common to both and m in 1, 3, 5, 7 (an s, p, d or f
  shell: Cs 5s, Pb 5d, Br 4s, N 2s, Ga 3d ...), so that a vacancy or substitution of X still
  matches. The shift is the difference of the manifolds' k-weighted mean energies (spin channels
  averaged). Measured on the real Mg_Ga/GaN pair (neutral Mg_Ga in 32 atoms vs its bulk): -0.16
  eV from the Ga 3d projections, -0.11 eV from the N 2s manifold without them (-0.14 eV from the
  Ga 3d manifold), while the Fermi levels differ by -0.32 eV; both deep shifts put the acceptor
  hole (spin down) 0.13-0.18 eV above the host VBM.
* ``"fermi"``: the Fermi levels (moved by a charged or partly filled defect level: use with care).
* ``"none"``: the reference's edges on the raw eigenvalues (only for runs that share a cell).

A state is *in the gap* when ``VBM + tolerance < e < CBM - tolerance`` (tolerance 0.05 eV by
default). The states of one band over the k-points where it is in the gap are reported as one
entry (k-weighted mean energy and occupation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from dftflow.analysis.ligand_split import ligand_indices_of_run, ligand_split
from dftflow.errors import InputError, OutputError
from dftflow.parse.run import load_bands, run_directory
from dftflow.structures.geometry import VACUUM_THRESHOLD_A, axis_height_A, widest_gap

#: A state with at least this occupation (fraction of a full spin orbital) is occupied.
OCCUPIED_FRACTION = 0.5
#: Occupations within this of 0 or 1 count as empty or full; in between a state is partly filled.
PARTIAL_MARGIN = 0.02
#: Deep states used for alignment lie at least this far below E_F, eV.
DEEP_BELOW_EF_EV = 3.0
#: Fraction of a state's projection on one element that makes it core-like (deep alignment).
CORE_LIKE_FRACTION = 0.9
#: A band manifold is separated from the rest of the spectrum by more than this, eV.
MANIFOLD_GAP_EV = 0.5
#: Band counts per atom of a manifold matched between runs (s, p, d, f shells).
MANIFOLD_BANDS_PER_ATOM = (1, 3, 5, 7)
#: A state this close to an aligned edge (eV) ...
MOVED_BAND_MAX_EV = 0.5
#: ... and at least this delocalised relative to the reference's edge states is a moved host band.
MOVED_BAND_PARTICIPATION_RATIO = 0.5
#: A state near the CBM holding at least this occupation (or near the VBM missing it) is a carrier
#: in the gap, not a moved band.
EDGE_FILLING_TOLERANCE = 0.1
#: Reference states this close to their edge define its participation fraction, eV.
EDGE_WINDOW_EV = 0.25
#: Vacuum thicker than this along c makes the structure a slab (surface layers exist), Angstrom.
SLAB_VACUUM_MIN_A = VACUUM_THRESHOLD_A  # one threshold (structures.geometry)
#: Atoms within this z distance belong to the same layer, Angstrom.
LAYER_TOL_A = 0.6

#: The edge rule, as stated in every report (``edge_rule``).
EDGE_RULE = (
    "per spin over all k: VBM = highest state with occupation >= 0.5, CBM = lowest with < 0.5; "
    "bands partly filled (0.02..0.98) at every k are levels pinned at E_F, left out of the edges"
)


class AtomWeight(BaseModel):
    """One atom's share of a state's projected weight."""

    index: int
    element: str
    weight: float
    z_A: float
    layer: str = Field(description="'surface', 'interior' (slab) or 'ligand'; 'bulk' if no vacuum")


class MidgapState(BaseModel):
    """One state (one band over the k-points where it is in the gap)."""

    energy_eV: float = Field(description="k-weighted mean eigenvalue, eV (the code's own scale)")
    spin: str = Field(description="'up' or 'down' ('up' for a non-spin-polarised run)")
    band_index: int = Field(description="0-based band index")
    occupation: float = Field(description="k-weighted mean occupation, 0..1 per spin orbital")
    filling: str = Field(description="'occupied' (>= 0.98), 'empty' (<= 0.02) or 'partly filled'")
    electrons: float = Field(description="electrons in the state (x2 for ISPIN=1)")
    distance_to_vbm_eV: float = Field(description="energy from the host VBM of its spin, eV")
    distance_to_cbm_eV: float = Field(description="host CBM of its spin minus the energy, eV")
    n_kpoints: int = Field(description="k-points where this band is inside the gap")
    participation_fraction: float | None = Field(
        default=None, description="participation number / number of atoms (1 = fully delocalised)"
    )
    element_weights: dict[str, float] = Field(default_factory=dict)
    top_atoms: list[AtomWeight] = Field(default_factory=list)
    surface_weight: float | None = None
    interior_weight: float | None = None
    ligand_weight: float | None = None
    slab_weight: float | None = None


class MidgapReport(BaseModel):
    """Result of :func:`find_midgap_states` (the JSON of ``dftflow analyze midgap --json``)."""

    directory: str
    midgap_states: list[MidgapState] = Field(
        default_factory=list, description="states inside the host gap, by energy"
    )
    has_midgap_states: bool
    vbm_eV: dict[str, float | None] = Field(description="host VBM per spin on the system's scale")
    cbm_eV: dict[str, float | None] = Field(description="host CBM per spin on the system's scale")
    gap_eV: dict[str, float | None]
    efermi_eV: float | None
    reference: dict[str, Any] = Field(
        description="mode ('self' or 'reference'), directory, alignment, method, shift_eV "
        "(system - reference), and for reference mode the reference's own edges, the deep "
        "levels or manifold matched, and moved_band_filter"
    )
    moved_band_states: list[MidgapState] = Field(
        default_factory=list,
        description="states inside the aligned reference gap taken for host bands that moved "
        "(reference mode; see reference.moved_band_filter); not counted as gap states",
    )
    edge_rule: str = EDGE_RULE
    ligand_indices: list[int] = Field(
        default_factory=list, description="0-based atoms counted as ligand in each character"
    )
    ligand_atoms_from: str | None = Field(
        default=None,
        description="'builder indices' (the run's TaskDoc) or the element rule used when the "
        "run records none (dftflow.analysis.ligand_split)",
    )
    tolerance_eV: float
    has_projections: bool
    verdict: str


class MidgapComparison(BaseModel):
    """Answer to "does ligand X remove the mid-gap states of system Y?"."""

    question: str
    answer: bool | None = Field(description="True yes, False no, None not applicable")
    answer_text: str
    evidence: list[str]
    before: dict[str, Any]
    after: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Data extraction
# --------------------------------------------------------------------------------------------


class _Bands:
    """Eigenvalues, occupations (0..1), k-weights and per-atom projections of one run."""

    def __init__(self, directory: str | Path) -> None:
        structure, bands = load_bands(directory)
        self.directory = str(directory)
        self.structure = structure
        self.efermi = bands.efermi_eV
        self.ispin = bands.nspin
        self.kweights = bands.kweights
        occupations = np.asarray(bands.occupations, dtype=float)
        if bands.nspin == 1 and occupations.size and occupations.max() > 1.5:
            occupations = occupations / 2.0  # a record holding 0..2 for the single channel
        self.spins: dict[str, dict[str, np.ndarray | None]] = {}
        atom_w = bands.atom_projections
        for i, label in enumerate(("up", "down")[: bands.nspin]):
            self.spins[label] = {
                "e": bands.eigenvalues_eV[i],
                "occ": occupations[i],
                "w": None if atom_w is None else atom_w[i],
            }
        self.has_projections = atom_w is not None


def _participation(w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=-1)
    return total**2 / np.maximum((w**2).sum(axis=-1), 1e-30)


def _pinned_levels(occ: np.ndarray) -> np.ndarray:
    """Bands partly filled (``PARTIAL_MARGIN < f < 1 - PARTIAL_MARGIN``) at every k-point."""
    partial = (occ > PARTIAL_MARGIN) & (occ < 1.0 - PARTIAL_MARGIN)
    return partial.all(axis=0)


def _occupation_edges(
    e: np.ndarray, occ: np.ndarray, tolerance_eV: float
) -> tuple[float | None, float | None, np.ndarray]:
    """(VBM, CBM, pinned) of one spin channel by the rule of the module docstring.

    ``pinned`` marks the bands left out of the edge search (partly filled levels at E_F); it is
    all False when none qualifies.
    """
    pinned = _pinned_levels(occ)
    if pinned.any():
        rest = ~pinned
        vbm, cbm = _edges_of(e[:, rest], occ[:, rest])
        levels = e[:, pinned]
        inside = (vbm is None or levels.min() > vbm + tolerance_eV) and (
            cbm is None or levels.max() < cbm - tolerance_eV
        )
        if inside:
            return vbm, cbm, pinned
    vbm, cbm = _edges_of(e, occ)
    return vbm, cbm, np.zeros(e.shape[1], dtype=bool)


def _edges_of(e: np.ndarray, occ: np.ndarray) -> tuple[float | None, float | None]:
    filled = occ >= OCCUPIED_FRACTION
    vbm = float(e[filled].max()) if filled.any() else None
    cbm = float(e[~filled].min()) if (~filled).any() else None
    return vbm, cbm


def _edges(bands: _Bands, spin: str, tolerance_eV: float) -> tuple[float | None, float | None]:
    data = bands.spins[spin]
    vbm, cbm, _ = _occupation_edges(data["e"], data["occ"], tolerance_eV)
    return vbm, cbm


def _edge_participation(
    bands: _Bands, spin: str, edge: float, below: bool, n_host: int
) -> float | None:
    """k-weighted mean host participation fraction of the states within EDGE_WINDOW_EV of an edge.

    Host participation fraction: participation number / ``n_host`` (the non-ligand atoms).
    """
    data = bands.spins[spin]
    if data["w"] is None:
        return None
    e = data["e"]
    if below:
        near = (e <= edge + 1e-9) & (e >= edge - EDGE_WINDOW_EV)
    else:
        near = (e >= edge - 1e-9) & (e <= edge + EDGE_WINDOW_EV)
    if not near.any():
        return None
    pf = _participation(data["w"]) / max(n_host, 1)
    kw = np.broadcast_to(bands.kweights[:, None], e.shape)
    return float(np.average(pf[near], weights=kw[near]))


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------


def _below_ef(bands: _Bands) -> float:
    """Energy below which deep states are looked for (E_F - DEEP_BELOW_EF_EV)."""
    if bands.efermi is not None:
        return bands.efermi - DEEP_BELOW_EF_EV
    vbms = [_edges(bands, s, 0.0)[0] for s in bands.spins]
    vbms = [v for v in vbms if v is not None]
    return (max(vbms) if vbms else np.inf) - DEEP_BELOW_EF_EV


def _deep_level(bands: _Bands, element: str) -> float:
    """k-weighted mean energy of the deepest cluster of core-like states of ``element``.

    Core-like: at least ``CORE_LIKE_FRACTION`` of the state's projection on ``element`` atoms
    (semicore d bands: Pb 5d, Ga 3d) and at least ``DEEP_BELOW_EF_EV`` below E_F; if there is
    none, states with >= 50 %.
    """
    idx = [i for i, site in enumerate(bands.structure) if site.specie.symbol == element]
    levels: list[tuple[float, float]] = []
    limit = _below_ef(bands)
    for threshold in (CORE_LIKE_FRACTION, 0.5):
        for data in bands.spins.values():
            w = data["w"]
            frac = w[..., idx].sum(axis=-1) / np.maximum(w.sum(axis=-1), 1e-30)
            deep = data["e"] < limit
            for k, b in zip(*np.nonzero((frac >= threshold) & deep), strict=True):
                levels.append((float(data["e"][k, b]), float(bands.kweights[k])))
        if levels:
            break
    if not levels:
        raise OutputError(f"{bands.directory}: no {element}-dominated states for deep alignment")
    levels.sort()
    energies = np.array([lv[0] for lv in levels])
    weights = np.array([lv[1] for lv in levels])
    breaks = np.nonzero(np.diff(energies) > 1.0)[0]
    end = breaks[0] + 1 if breaks.size else len(energies)
    return float(np.average(energies[:end], weights=weights[:end]))


def _anchor_element(a: _Bands, b: _Bands) -> str:
    common = {s.specie for s in a.structure} & {s.specie for s in b.structure}
    if not common:
        raise InputError(
            f"{a.directory} and the reference {b.directory} share no element: "
            "they are not a system and its host"
        )
    return max(common, key=lambda sp: sp.Z).symbol


@dataclass
class _Manifold:
    """Bands isolated from the rest of one spin channel's spectrum at every k-point."""

    first_band: int
    n_bands: int
    lo_eV: float
    hi_eV: float
    mean_eV: float


def _manifolds(bands: _Bands, spin: str) -> list[_Manifold]:
    """The deep band manifolds of one spin channel, lowest first (top below E_F - 3 eV).

    Bands are sorted at each k-point (VASP's order); a manifold is a run of band indices whose
    energies, over all k-points, are separated from the bands below and above by more than
    ``MANIFOLD_GAP_EV``. Hand-written (no library finds isolated band groups); a few lines of
    numpy on the eigenvalues.
    """
    e = np.sort(bands.spins[spin]["e"], axis=1)
    limit = _below_ef(bands)
    # a break after band i: min over k of band i+1 above max over k of band i, by the gap
    tops = np.maximum.accumulate(e.max(axis=0))
    bottoms = np.minimum.accumulate(e.min(axis=0)[::-1])[::-1]
    breaks = [i for i in range(e.shape[1] - 1) if bottoms[i + 1] - tops[i] > MANIFOLD_GAP_EV]
    out: list[_Manifold] = []
    start = 0
    for end in breaks:
        block = e[:, start : end + 1]
        if block.max() >= limit:
            break
        out.append(
            _Manifold(
                first_band=start,
                n_bands=end + 1 - start,
                lo_eV=float(block.min()),
                hi_eV=float(block.max()),
                mean_eV=float(np.average(block.mean(axis=1), weights=bands.kweights)),
            )
        )
        start = end + 1
    return out


def _manifold_match(
    system: _Bands, ref: _Bands, sm: _Manifold, rm: _Manifold
) -> list[tuple[str, int]]:
    """Every (element, bands per atom) for which both manifolds hold m x N_X bands.

    Several when the count fits more than one element (NaCl: 12 bands = 3 x 4 Na or 3 x 4 Cl);
    the report lists them all.
    """
    sys_counts = system.structure.composition.element_composition
    ref_counts = ref.structure.composition.element_composition
    common = sorted(
        {el.symbol for el in sys_counts} & {el.symbol for el in ref_counts},
        key=lambda el: -ref_counts[el],
    )
    return [
        (el, m)
        for el in common
        for m in MANIFOLD_BANDS_PER_ATOM
        if rm.n_bands == m * round(ref_counts[el]) and sm.n_bands == m * round(sys_counts[el])
    ]


def _manifold_shift(system: _Bands, ref: _Bands) -> tuple[float, dict[str, Any]]:
    """Shift (system - reference) from the lowest band manifold matched between the runs."""
    shifts: list[float] = []
    info: dict[str, Any] = {}
    for spin in system.spins:
        ref_spin = spin if spin in ref.spins else "up"
        found = None
        for sm in _manifolds(system, spin):
            for rm in _manifolds(ref, ref_spin):
                match = _manifold_match(system, ref, sm, rm)
                if match:
                    found = (sm, rm, match)
                    break
            if found:
                break
        if found is None:
            continue
        sm, rm, match = found
        shifts.append(sm.mean_eV - rm.mean_eV)
        shells = {1: "s", 3: "p", 5: "d", 7: "f"}
        info[spin] = {
            "shells": [f"{el} {shells[m]}" for el, m in match],
            "bands": [sm.n_bands, rm.n_bands],
            "system_range_eV": [round(sm.lo_eV, 4), round(sm.hi_eV, 4)],
            "reference_range_eV": [round(rm.lo_eV, 4), round(rm.hi_eV, 4)],
            "deep_level_eV": {"system": round(sm.mean_eV, 6), "reference": round(rm.mean_eV, 6)},
        }
    if not shifts:
        raise OutputError(
            f"deep-level alignment: no band manifold {DEEP_BELOW_EF_EV:g} eV below E_F matches "
            f"between {system.directory} and the reference {ref.directory} (same element, "
            "m x atoms bands): is the reference the host of this system? (--align fermi or none "
            "to override)"
        )
    return float(np.mean(shifts)), info


def _alignment(system: _Bands, ref: _Bands, align: str) -> tuple[float, dict[str, Any]]:
    """Shift (system - reference) of the eigenvalues and how it was found."""
    if align == "none":
        return 0.0, {"method": "none: raw eigenvalues (runs assumed to share a potential zero)"}
    if align == "fermi":
        if system.efermi is None or ref.efermi is None:
            raise OutputError(
                "Fermi-level alignment needs E_F in both runs "
                f"({system.directory}, {ref.directory})"
            )
        return system.efermi - ref.efermi, {"method": "fermi: difference of the Fermi levels"}
    anchor = _anchor_element(system, ref)
    note = "projections missing in one or both runs"
    if system.has_projections and ref.has_projections:
        try:
            sys_level, ref_level = _deep_level(system, anchor), _deep_level(ref, anchor)
        except OutputError as exc:
            note = str(exc)
        else:
            return sys_level - ref_level, {
                "method": f"deep: projected core-like level of {anchor}",
                "anchor_element": anchor,
                "deep_level_eV": {"system": round(sys_level, 6), "reference": round(ref_level, 6)},
            }
    shift, info = _manifold_shift(system, ref)
    first = next(iter(info.values()))
    return shift, {
        "method": f"deep: lowest band manifold matched by band count ({first['bands'][0]} vs "
        f"{first['bands'][1]} bands: {' or '.join(first['shells'])}) from the eigenvalues "
        f"({note})",
        "manifold": info,
    }


def _layers(structure, is_lig: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Label each atom 'surface'/'interior' (slab), 'ligand', or 'bulk' (no vacuum); z in A.

    ``is_lig`` marks the ligand atoms (:func:`dftflow.analysis.ligand_split.ligand_split`).
    """
    height = axis_height_A(structure.lattice.matrix, 2)
    frac_z = np.mod(structure.frac_coords[:, 2], 1.0)
    gap = widest_gap(frac_z)
    z = np.mod(frac_z - gap.upper, 1.0) * height  # zero at the first atom above the vacuum
    if gap.width * height < SLAB_VACUUM_MIN_A or is_lig.all():
        return ["ligand" if lig else "bulk" for lig in is_lig], z
    slab_z = np.sort(z[~is_lig])
    # layers: group slab atoms whose z differ by less than LAYER_TOL_A
    bottom_layer_max = slab_z[0]
    for value in slab_z[1:]:
        if value - bottom_layer_max > LAYER_TOL_A:
            break
        bottom_layer_max = value
    top_layer_min = slab_z[-1]
    for value in slab_z[-2::-1]:
        if top_layer_min - value > LAYER_TOL_A:
            break
        top_layer_min = value
    labels = []
    for zi, lig in zip(z, is_lig, strict=True):
        if lig:
            labels.append("ligand")
        elif zi <= bottom_layer_max + 1e-6 or zi >= top_layer_min - 1e-6:
            labels.append("surface")
        else:
            labels.append("interior")
    return labels, z


def _character(
    weights: np.ndarray, structure, labels: list[str], z: np.ndarray, n_top: int
) -> dict[str, Any]:
    total = float(weights.sum())
    if total <= 1e-12:
        return {}
    w = weights / total
    elements: dict[str, float] = {}
    for site, wi in zip(structure, w, strict=True):
        elements[site.specie.symbol] = elements.get(site.specie.symbol, 0.0) + float(wi)
    order = np.argsort(w)[::-1][:n_top]
    top = [
        AtomWeight(
            index=int(i),
            element=structure[int(i)].specie.symbol,
            weight=round(float(w[i]), 4),
            z_A=round(float(z[i]), 3),
            layer=labels[int(i)],
        )
        for i in order
    ]
    lab = np.array(labels)
    out: dict[str, Any] = {
        "element_weights": {
            k: round(v, 4) for k, v in sorted(elements.items(), key=lambda x: -x[1])
        },
        "top_atoms": top,
        "participation_fraction": round(float(_participation(w) / len(w)), 4),
        "ligand_weight": round(float(w[lab == "ligand"].sum()), 4),
        "slab_weight": round(float(w[lab != "ligand"].sum()), 4),
    }
    if "surface" in labels:
        out["surface_weight"] = round(float(w[lab == "surface"].sum()), 4)
        out["interior_weight"] = round(float(w[lab == "interior"].sum()), 4)
    return out


def _filling(occupation: float) -> str:
    if occupation >= 1.0 - PARTIAL_MARGIN:
        return "occupied"
    if occupation <= PARTIAL_MARGIN:
        return "empty"
    return "partly filled"


def find_midgap_states(
    directory: str | Path,
    reference: str | Path | None = None,
    *,
    align: str = "deep",
    tolerance_eV: float = 0.05,
    ligand_indices: Sequence[int] | None = None,
    n_top_atoms: int = 5,
) -> MidgapReport:
    """Find the states inside the host band gap of a run (rules: the module docstring).

    Parameters
    ----------
    directory
        Run directory of any engine (or a file in it, a TaskDoc or a TaskDoc JSON path).
    reference
        Optional run of the host (clean slab or bulk) whose gap, aligned, defines the edges.
    align
        Reference alignment: ``"deep"`` (projected core-like level, else the lowest band
        manifold), ``"fermi"`` or ``"none"``.
    tolerance_eV
        States closer than this to an edge are not counted as in the gap, eV.
    ligand_indices
        0-based atoms that count as ligand in the character analysis (``ligand_weight``,
        layers): the builder's indices. ``None``: those recorded for the run (its TaskDoc, or
        ``taskdoc.json`` in the directory); a run without any falls back to the element rule of
        :mod:`dftflow.analysis.ligand_split`, stated in ``ligand_atoms_from``.
    n_top_atoms
        How many atoms to list per state.

    Returns
    -------
    MidgapReport
        ``midgap_states`` is empty when there are none.

    Raises
    ------
    InputError
        Unknown alignment, a reference that is not a directory, or runs sharing no element.
    OutputError
        A run without eigenvalues, or no deep level/manifold that matches between the runs.
    """
    if align not in ("deep", "fermi", "none"):
        raise InputError(f"unknown alignment {align!r}: use deep, fermi or none")
    bands = _Bands(run_directory(directory))
    if ligand_indices is None:
        ligand_indices = ligand_indices_of_run(directory)
    split = ligand_split(bands.structure, ligand_indices)
    ref_info: dict[str, Any] = {
        "mode": "self",
        "directory": None,
        "alignment": None,
        "method": "self: edges from the run's own occupations (only levels pinned at E_F can be "
        "gap states; give the clean host as reference to find filled or empty defect levels)",
        "shift_eV": 0.0,
    }
    edges: dict[str, tuple[float | None, float | None]] = {}
    pinned: dict[str, np.ndarray] = {}
    edge_pf: dict[str, tuple[float | None, float | None]] = {}
    if reference is None:
        for spin, data in bands.spins.items():
            vbm, cbm, pinned[spin] = _occupation_edges(data["e"], data["occ"], tolerance_eV)
            edges[spin] = (vbm, cbm)
    else:
        ref_dir = run_directory(reference)
        if not Path(ref_dir).is_dir():
            raise InputError(f"reference {reference} is not a run directory")
        try:
            ref = _Bands(ref_dir)
        except (InputError, OutputError) as exc:
            raise type(exc)(f"reference: {exc}") from exc
        shift, how = _alignment(bands, ref, align)
        use_filter = bands.has_projections and ref.has_projections
        ref_hosts = len(ligand_split(ref.structure, ligand_indices_of_run(ref_dir)).slab_indices)
        ref_info = {
            "mode": "reference",
            "directory": str(reference),
            "alignment": align,
            **how,
            "shift_eV": round(shift, 6),
            "reference_vbm_eV": {},
            "reference_cbm_eV": {},
            "moved_band_filter": (
                f"states within {MOVED_BAND_MAX_EV} eV of an edge, filled as its band, continuous "
                f"with it (spacing <= {2 * tolerance_eV:g} eV)"
                + (
                    f" or at least {MOVED_BAND_PARTICIPATION_RATIO} x as delocalised over the host "
                    "atoms as the reference's edge states"
                    if use_filter
                    else " (no participation test: projections missing in one or both runs)"
                )
                + " are host bands that moved"
            ),
        }
        for spin in bands.spins:
            ref_spin = spin if spin in ref.spins else "up"
            vbm, cbm = _edges(ref, ref_spin, tolerance_eV)
            ref_info["reference_vbm_eV"][spin] = vbm
            ref_info["reference_cbm_eV"][spin] = cbm
            edges[spin] = (
                None if vbm is None else vbm + shift,
                None if cbm is None else cbm + shift,
            )
            pinned[spin] = np.zeros(bands.spins[spin]["e"].shape[1], dtype=bool)
            edge_pf[spin] = (
                _edge_participation(ref, ref_spin, vbm, True, ref_hosts)
                if use_filter and vbm is not None
                else None,
                _edge_participation(ref, ref_spin, cbm, False, ref_hosts)
                if use_filter and cbm is not None
                else None,
            )
    labels, z = _layers(bands.structure, split.mask)
    states: list[MidgapState] = []
    moved: list[MidgapState] = []
    for spin, data in bands.spins.items():
        vbm, cbm = edges[spin]
        if vbm is None or cbm is None or cbm - vbm <= 2 * tolerance_eV:
            continue
        e, occ, w = data["e"], data["occ"], data["w"]
        inside = (e > vbm + tolerance_eV) & (e < cbm - tolerance_eV)
        if reference is None:  # self mode: only levels pinned at E_F (the rule)
            inside &= pinned[spin][None, :]
        for band in np.unique(np.nonzero(inside)[1]):
            ks = np.nonzero(inside[:, band])[0]
            kw = bands.kweights[ks]
            energy = float(np.average(e[ks, band], weights=kw))
            occupation = float(np.average(occ[ks, band], weights=kw))
            character: dict[str, Any] = {}
            if w is not None:
                atom_w = (w[ks, band, :] * kw[:, None]).sum(axis=0)
                character = _character(atom_w, bands.structure, labels, z, n_top_atoms)
            state = MidgapState(
                energy_eV=round(energy, 6),
                spin=spin,
                band_index=int(band),
                occupation=round(occupation, 6),
                filling=_filling(occupation),
                electrons=round(occupation * (2 if bands.ispin == 1 else 1), 6),
                distance_to_vbm_eV=round(energy - vbm, 6),
                distance_to_cbm_eV=round(cbm - energy, 6),
                n_kpoints=int(ks.size),
                **character,
            )
            if reference is not None and _is_moved_band(
                e,
                e[ks, band],
                None if w is None else w[ks, band, :],
                kw,
                occupation,
                (vbm, cbm),
                edge_pf.get(spin, (None, None)),
                tolerance_eV,
                len(split.slab_indices),
            ):
                moved.append(state)
            else:
                states.append(state)
    states.sort(key=lambda s: (s.energy_eV, s.spin))
    moved.sort(key=lambda s: (s.energy_eV, s.spin))
    vbm_d = {s: edges[s][0] for s in bands.spins}
    cbm_d = {s: edges[s][1] for s in bands.spins}
    gap_d = {
        s: (None if vbm_d[s] is None or cbm_d[s] is None else max(cbm_d[s] - vbm_d[s], 0.0))
        for s in bands.spins
    }
    report = MidgapReport(
        directory=str(run_directory(directory)),
        midgap_states=states,
        has_midgap_states=bool(states),
        vbm_eV=vbm_d,
        cbm_eV=cbm_d,
        gap_eV=gap_d,
        efermi_eV=bands.efermi,
        reference=ref_info,
        moved_band_states=moved,
        tolerance_eV=tolerance_eV,
        has_projections=bands.has_projections,
        ligand_indices=split.ligand_indices,
        ligand_atoms_from=split.ligand_atoms_from,
        verdict="",
    )
    report.verdict = _verdict(report)
    return report


def _is_moved_band(
    e_all: np.ndarray,
    energies: np.ndarray,
    w: np.ndarray | None,
    kw: np.ndarray,
    occupation: float,
    edges: tuple[float, float],
    edge_pf: tuple[float | None, float | None],
    tolerance_eV: float,
    n_host: int,
) -> bool:
    """Whether an in-gap state is a host band that moved across the aligned edge (not counted).

    Only an occupied state near the VBM or an empty one near the CBM, within
    ``MOVED_BAND_MAX_EV`` of that edge, can be one (a hole above the VBM, an electron below the
    CBM are always gap states); it is when the system's eigenvalues run from it to beyond the edge
    without a spacing wider than ``2 * tolerance`` (a band continuum), or, with projections, when
    it is at least ``MOVED_BAND_PARTICIPATION_RATIO`` x as delocalised over the host atoms as the
    reference's edge states (participation number / ``n_host``, the non-ligand atoms).
    """
    vbm, cbm = edges
    near_vbm = energies.mean() - vbm <= cbm - energies.mean()
    # filled as the band at that edge: a state holding EDGE_FILLING_TOLERANCE electrons or more
    # below the CBM (or missing that many above the VBM) is an electron (hole) in the gap, never
    # a moved band (a defect's excess electron shared by two levels, 0.44 + 0.42 e)
    if near_vbm and occupation < 1.0 - EDGE_FILLING_TOLERANCE:
        return False
    if not near_vbm and occupation >= EDGE_FILLING_TOLERANCE:
        return False
    if (energies.max() - vbm if near_vbm else cbm - energies.min()) > MOVED_BAND_MAX_EV:
        return False
    flat = np.sort(e_all.ravel())
    if near_vbm:
        beyond = flat[flat <= vbm]
        chain = flat[(flat >= (beyond.max() if beyond.size else np.inf)) & (flat <= energies.min())]
    else:
        beyond = flat[flat >= cbm]
        chain = flat[
            (flat >= energies.max()) & (flat <= (beyond.min() if beyond.size else -np.inf))
        ]
    if chain.size >= 2 and np.diff(chain).max() <= 2 * tolerance_eV:
        return True
    ref_pf = edge_pf[0] if near_vbm else edge_pf[1]
    if w is None or ref_pf is None:
        return False
    pf = float(np.average(_participation(w) / max(n_host, 1), weights=kw))
    return pf >= MOVED_BAND_PARTICIPATION_RATIO * ref_pf


def _verdict(report: MidgapReport) -> str:
    gaps = [g for g in report.gap_eV.values() if g is not None]
    if not gaps or max(gaps) <= 2 * report.tolerance_eV:
        return "no band gap found (metallic or edges undefined): mid-gap states not applicable"
    gap_text = ", ".join(f"{s}: {g:.2f} eV" for s, g in report.gap_eV.items() if g is not None)
    if not report.midgap_states:
        return f"no states inside the host gap ({gap_text})" + _moved_text(report)
    parts = []
    for s in report.midgap_states[:4]:
        where = ""
        if s.element_weights:
            main = ", ".join(f"{k} {v:.0%}" for k, v in list(s.element_weights.items())[:2])
            where = f" ({main})"
        parts.append(
            f"{s.spin} {s.distance_to_vbm_eV:+.2f} eV from VBM, occ {s.occupation:.2f}{where}"
        )
    more = "" if len(report.midgap_states) <= 4 else f" and {len(report.midgap_states) - 4} more"
    return (
        f"{len(report.midgap_states)} mid-gap state(s) in the host gap ({gap_text}): "
        + "; ".join(parts)
        + more
        + _moved_text(report)
    )


def _moved_text(report: MidgapReport) -> str:
    n = len(report.moved_band_states)
    return "" if not n else f" ({n} state(s) of host bands that moved into the aligned gap)"


def _trap_states(report: MidgapReport, min_slab_weight: float) -> list[MidgapState]:
    return [
        s for s in report.midgap_states if s.slab_weight is None or s.slab_weight >= min_slab_weight
    ]


def compare_midgap(
    before: MidgapReport,
    after: MidgapReport,
    *,
    ligand: str = "ligand X",
    system: str = "system Y",
    min_slab_weight: float = 0.5,
) -> MidgapComparison:
    """Answer "does ``ligand`` remove the mid-gap states of ``system``?".

    Parameters
    ----------
    before
        Report of system Y (e.g. the OA-covered surface).
    after
        Report of the system with ligand X (e.g. the AcO- covered surface).
    min_slab_weight
        A state counts as a trap of the host when at least this fraction of its projected weight is
        on slab atoms (states of ligand character are listed but are not host traps).
    """
    question = f"does {ligand} remove the mid-gap states of {system}?"
    traps_before = _trap_states(before, min_slab_weight)
    traps_after = _trap_states(after, min_slab_weight)

    def _describe(tag: str, rep: MidgapReport, traps: list[MidgapState]) -> str:
        energies = ", ".join(f"{s.energy_eV:.2f} eV ({s.spin})" for s in traps[:6]) or "none"
        return (
            f"{tag}: {len(traps)} host trap state(s) of {len(rep.midgap_states)} in-gap state(s); "
            f"trap energies {energies}; {rep.verdict}"
        )

    evidence = [_describe(system, before, traps_before), _describe(ligand, after, traps_after)]
    if not traps_before:
        answer, text = None, f"not applicable: {system} has no mid-gap trap states"
    elif not traps_after:
        answer, text = True, f"yes: {ligand} leaves no host trap state in the gap"
    else:
        answer = False
        text = (
            f"no: {len(traps_after)} host trap state(s) remain with {ligand} "
            f"({len(traps_before)} in {system})"
        )
    return MidgapComparison(
        question=question,
        answer=answer,
        answer_text=text,
        evidence=evidence,
        before={"directory": before.directory, "n_traps": len(traps_before)},
        after={"directory": after.directory, "n_traps": len(traps_after)},
    )


def midgap_against(
    directory: str | Path,
    reference: str | Path | None,
    ligand_indices: Sequence[int] | None = None,
) -> tuple[MidgapReport | None, str]:
    """Mid-gap report of ``directory`` against ``reference`` with a stated alignment fallback.

    Deep-level alignment first (projected core-like level, else the lowest band manifold); when
    neither is possible (no element in common, no deep manifold that matches) Fermi-level
    alignment, and the returned note says so. Returns
    ``(report, note)`` or ``(None, reason)``. ``ligand_indices`` as in
    :func:`find_midgap_states`.
    """
    try:
        return find_midgap_states(directory, reference=reference, ligand_indices=ligand_indices), ""
    except (InputError, OutputError) as exc:
        first = str(exc)
    if reference is None:
        return None, first
    try:
        report = find_midgap_states(
            directory, reference=reference, align="fermi", ligand_indices=ligand_indices
        )
    except (InputError, OutputError) as exc:
        return None, f"{first}; with Fermi alignment: {exc}"
    return report, f"aligned at the Fermi level: {first}"
