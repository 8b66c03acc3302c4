"""Mid-gap (trap) state detector.

What it does
------------
From the Kohn-Sham eigenvalues, occupations, k-point weights and per-atom projections of one run
(:func:`dftflow.parse.run.load_bands`: the embedded engine's ``bands.npz`` or VASP's vasprun.xml,
projections with LORBIT >= 10), find the host band edges per spin and report every state that lies
inside that gap, with its energy, spin, occupation, distance to both edges, the number of k-points
where it is in the gap and its character (element weights, the atoms that carry it, surface vs
interior layer, ligand vs slab). Ligand atoms are the builder's (the run's
``TaskDoc.ligand_indices``); only a run that records none falls back to the element rule of
:mod:`dftflow.analysis.ligand_split`, stated in ``ligand_atoms_from``.

How the host band edges are found (the documented choice)
---------------------------------------------------------
*Self-consistent mode* (no reference): the host bands are the dense part of the spectrum. Walking
up from the lowest empty state (occupation < 0.5), the CBM is the first state with at least 3
states per spin and cell (k-weighted) within 1 eV above it; walking down from the highest occupied
state (occupation >= 0.5), the VBM is the first with at least 3 within 1 eV below it. A trap level
(one or two states per cell, flat or dispersive over k) never reaches that density, a band
continuum does, however thin the slab or coarse the k-mesh. Occupation 0.5 is the smearing-robust
midpoint: smearing only changes occupations within a few sigma of E_F, and a partly filled trap
that pins E_F fails the density test whichever side it falls on. (A first version used the atomic
participation number; it flagged the Pb 6p conduction-band bottom of a thin PbBr2-terminated GPAW
slab, whose band edges are all surface states, as localised. The participation number is still
reported as ``participation_fraction``.)

*Reference mode* (``reference=DIR``: the clean slab or the bulk): the host edges are the
reference's edges (self-consistent mode on the reference) shifted onto the system's energy scale,
narrowed to the system's own band continua (a state must lie inside the aligned reference gap and
outside the system's own bands: a conduction band that moves 0.1 eV down on adsorption is not a
trap; a cluster of three or more trap states within 1 eV is then taken as a band, a stated
limitation).
Alignment ``"deep"`` (default) uses a core-like level: the k-weighted mean energy of the deepest
cluster of states that lie at least 3 eV below E_F and carry >= 90 % of their projection on the
heaviest element common to both calculations (Pb 5d for CsPbBr3, Ga 3d for GaN; >= 50 % if there
is no such state); ``"fermi"`` aligns the Fermi levels; ``"none"`` uses the raw eigenvalues.
Eigenvalues of two calculations have no common zero (the average electrostatic potential differs),
hence the deep level, as in core-level alignment of defect calculations. On a real defect (neutral
Mg_Ga acceptor in a 32-atom GaN cell against its bulk) the deep (Ga 3d) shift is -0.16 eV while
the Fermi levels differ by -0.32 eV; both find the acceptor hole 0.16 eV above the VBM.

A state is *in the gap* when ``VBM + tolerance < e < CBM - tolerance`` (tolerance 0.05 eV by
default). A clean bulk therefore reports none. The states of one band over the k-points where it
is in the gap are reported as one entry (k-weighted mean energy and occupation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from dftflow.analysis.ligand_split import ligand_indices_of_run, ligand_split
from dftflow.errors import InputError, OutputError
from dftflow.parse.run import load_bands, run_directory
from dftflow.structures.geometry import VACUUM_THRESHOLD_A, axis_height_A, widest_gap

#: A band continuum has at least this many states (per spin and cell, k-weighted) ...
BAND_MIN_STATES = 3.0
#: ... within this energy window from its edge, eV.
BAND_WINDOW_EV = 1.0
#: Core-like states for the deep alignment lie at least this far below E_F, eV.
DEEP_BELOW_EF_EV = 3.0
#: Fraction of a state's projection on one element that makes it core-like (deep alignment).
CORE_LIKE_FRACTION = 0.9
#: Vacuum thicker than this along c makes the structure a slab (surface layers exist), Angstrom.
SLAB_VACUUM_MIN_A = VACUUM_THRESHOLD_A  # one threshold (structures.geometry)
#: Atoms within this z distance belong to the same layer, Angstrom.
LAYER_TOL_A = 0.6


class AtomWeight(BaseModel):
    """One atom's share of a state's projected weight."""

    index: int
    element: str
    weight: float
    z_A: float
    layer: str = Field(description="'surface', 'interior' (slab) or 'ligand'; 'bulk' if no vacuum")


class MidgapState(BaseModel):
    """One state (one band over the k-points where it is in the gap)."""

    energy_eV: float = Field(description="k-weighted mean eigenvalue, eV (VASP's scale)")
    spin: str
    band_index: int = Field(description="0-based band index")
    occupation: float = Field(description="k-weighted mean occupation, 0..1 per spin orbital")
    electrons: float = Field(description="electrons in the state (x2 for ISPIN=1)")
    distance_to_vbm_eV: float
    distance_to_cbm_eV: float
    n_kpoints: int
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
    """Result of :func:`find_midgap_states`."""

    directory: str
    midgap_states: list[MidgapState] = Field(default_factory=list)
    has_midgap_states: bool
    vbm_eV: dict[str, float | None]
    cbm_eV: dict[str, float | None]
    gap_eV: dict[str, float | None]
    efermi_eV: float | None
    reference: dict[str, Any] = Field(description="mode, directory, alignment, shift_eV")
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
    """Eigenvalues, occupations, k-weights and per-atom projections of one run."""

    def __init__(self, directory: str | Path) -> None:
        structure, bands = load_bands(directory)
        self.directory = str(directory)
        self.structure = structure
        self.efermi = bands.efermi_eV
        self.ispin = bands.nspin
        self.kweights = bands.kweights
        self.spins: dict[str, dict[str, np.ndarray | None]] = {}
        atom_w = bands.atom_projections
        for i, label in enumerate(("up", "down")[: bands.nspin]):
            self.spins[label] = {
                "e": bands.eigenvalues_eV[i],
                "occ": bands.occupations[i],
                "w": None if atom_w is None else atom_w[i],
            }
        self.has_projections = atom_w is not None


def _participation(w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=-1)
    return total**2 / np.maximum((w**2).sum(axis=-1), 1e-30)


def _band_edge(energies: np.ndarray, weights: np.ndarray, upward: bool) -> float | None:
    """First energy, walking away from the gap, where a band continuum starts.

    Walking up through the empty states (``upward``) or down through the occupied ones, the edge
    is the first state with at least ``BAND_MIN_STATES`` states (k-weighted, per spin and cell)
    within ``BAND_WINDOW_EV`` beyond it, itself included. A trap level (one or two states per cell,
    flat or dispersive) never reaches that count; a band continuum does.
    """
    if energies.size == 0:
        return None
    order = np.argsort(energies)
    e, w = energies[order], weights[order]
    if not upward:
        e, w = -e[::-1], w[::-1]
    cumulative = np.concatenate([[0.0], np.cumsum(w)])
    ends = np.searchsorted(e, e + BAND_WINDOW_EV, side="right")
    counts = cumulative[ends] - cumulative[np.arange(e.size)]
    dense = np.nonzero(counts >= BAND_MIN_STATES - 1e-9)[0]
    if dense.size == 0:
        return float(e[0] if upward else -e[0])
    value = e[dense[0]]
    return float(value if upward else -value)


def _edges(bands: _Bands, spin: str) -> tuple[float | None, float | None]:
    """(VBM, CBM) of one spin channel: the edges of the occupied and empty band continua."""
    data = bands.spins[spin]
    e, occ = data["e"], data["occ"]
    kw = np.broadcast_to(bands.kweights[:, None], e.shape)
    filled = occ >= 0.5
    vbm = _band_edge(e[filled], kw[filled], upward=False)
    cbm = _band_edge(e[~filled], kw[~filled], upward=True)
    return vbm, cbm


def _deep_level(bands: _Bands, element: str) -> float:
    """k-weighted mean energy of the deepest cluster of core-like states of ``element``.

    Core-like: at least ``CORE_LIKE_FRACTION`` of the state's projection on ``element`` atoms
    (semicore d bands: Pb 5d, Ga 3d) and at least ``DEEP_BELOW_EF_EV`` below E_F; if there is
    none, states with >= 50 %.
    """
    idx = [i for i, site in enumerate(bands.structure) if site.specie.symbol == element]
    levels: list[tuple[float, float]] = []
    for threshold in (CORE_LIKE_FRACTION, 0.5):
        for data in bands.spins.values():
            w = data["w"]
            frac = w[..., idx].sum(axis=-1) / np.maximum(w.sum(axis=-1), 1e-30)
            deep = (
                data["e"]
                < (bands.efermi if bands.efermi is not None else np.inf) - DEEP_BELOW_EF_EV
            )
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
        raise InputError("system and reference share no element: cannot align by a deep level")
    return max(common, key=lambda sp: sp.Z).symbol


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


def find_midgap_states(
    directory: str | Path,
    reference: str | Path | None = None,
    *,
    align: str = "deep",
    tolerance_eV: float = 0.05,
    ligand_indices: Sequence[int] | None = None,
    n_top_atoms: int = 5,
) -> MidgapReport:
    """Find the states inside the host band gap of a VASP run.

    Parameters
    ----------
    directory
        Run directory of any engine (or a file in it, a TaskDoc or a TaskDoc JSON path).
    reference
        Optional run of the host (clean slab or bulk) whose gap defines the edges.
    align
        Reference alignment: ``"deep"`` (core-like level), ``"fermi"`` or ``"none"``.
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
        "shift_eV": 0.0,
    }
    edges: dict[str, tuple[float | None, float | None]] = {}
    if reference is None:
        for spin in bands.spins:
            edges[spin] = _edges(bands, spin)
    else:
        ref = _Bands(run_directory(reference))
        if align == "deep":
            if not (bands.has_projections and ref.has_projections):
                raise OutputError(
                    "deep-level alignment needs projections (LORBIT >= 10) in both runs; "
                    "use --align fermi"
                )
            anchor = _anchor_element(bands, ref)
            shift = _deep_level(bands, anchor) - _deep_level(ref, anchor)
            ref_info["anchor_element"] = anchor
        elif align == "fermi":
            if bands.efermi is None or ref.efermi is None:
                raise OutputError("Fermi-level alignment needs E_F in both runs")
            shift = bands.efermi - ref.efermi
        else:
            shift = 0.0
        ref_info.update(
            {
                "mode": "reference",
                "directory": str(reference),
                "alignment": align,
                "shift_eV": shift,
            }
        )
        for spin in bands.spins:
            ref_spin = spin if spin in ref.spins else "up"
            vbm, cbm = _edges(ref, ref_spin)
            own_vbm, own_cbm = _edges(bands, spin)
            # inside the aligned reference gap and outside the system's own band continua
            edges[spin] = (
                None
                if vbm is None
                else max(vbm + shift, own_vbm if own_vbm is not None else -np.inf),
                None
                if cbm is None
                else min(cbm + shift, own_cbm if own_cbm is not None else np.inf),
            )
    labels, z = _layers(bands.structure, split.mask)
    states: list[MidgapState] = []
    for spin, data in bands.spins.items():
        vbm, cbm = edges[spin]
        if vbm is None or cbm is None or cbm - vbm <= 2 * tolerance_eV:
            continue
        e, occ, w = data["e"], data["occ"], data["w"]
        inside = (e > vbm + tolerance_eV) & (e < cbm - tolerance_eV)
        for band in np.unique(np.nonzero(inside)[1]):
            ks = np.nonzero(inside[:, band])[0]
            kw = bands.kweights[ks]
            energy = float(np.average(e[ks, band], weights=kw))
            occupation = float(np.average(occ[ks, band], weights=kw))
            character: dict[str, Any] = {}
            if w is not None:
                atom_w = (w[ks, band, :] * kw[:, None]).sum(axis=0)
                character = _character(atom_w, bands.structure, labels, z, n_top_atoms)
            states.append(
                MidgapState(
                    energy_eV=round(energy, 6),
                    spin=spin,
                    band_index=int(band),
                    occupation=round(occupation, 6),
                    electrons=round(occupation * (2 if bands.ispin == 1 else 1), 6),
                    distance_to_vbm_eV=round(energy - vbm, 6),
                    distance_to_cbm_eV=round(cbm - energy, 6),
                    n_kpoints=int(ks.size),
                    **character,
                )
            )
    states.sort(key=lambda s: (s.energy_eV, s.spin))
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
        tolerance_eV=tolerance_eV,
        has_projections=bands.has_projections,
        ligand_indices=split.ligand_indices,
        ligand_atoms_from=split.ligand_atoms_from,
        verdict="",
    )
    report.verdict = _verdict(report)
    return report


def _verdict(report: MidgapReport) -> str:
    gaps = [g for g in report.gap_eV.values() if g is not None]
    if not gaps or max(gaps) <= 2 * report.tolerance_eV:
        return "no band gap found (metallic or edges undefined): mid-gap states not applicable"
    gap_text = ", ".join(f"{s}: {g:.2f} eV" for s, g in report.gap_eV.items() if g is not None)
    if not report.midgap_states:
        return f"no states inside the host gap ({gap_text})"
    parts = []
    for s in report.midgap_states[:4]:
        where = ""
        if s.element_weights:
            main = ", ".join(f"{k} {v:.0%}" for k, v in list(s.element_weights.items())[:2])
            where = f" ({main})"
        parts.append(
            f"{s.spin} {s.energy_eV - (report.vbm_eV[s.spin] or 0):+.2f} eV from VBM, "
            f"occ {s.occupation:.2f}{where}"
        )
    more = "" if len(report.midgap_states) <= 4 else f" and {len(report.midgap_states) - 4} more"
    return (
        f"{len(report.midgap_states)} mid-gap state(s) in the host gap ({gap_text}): "
        + "; ".join(parts)
        + more
    )


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

    Deep-level alignment first; when it is impossible (no projections, no core-like states of a
    common element) Fermi-level alignment, and the returned note says so. Returns
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
