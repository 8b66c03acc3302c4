"""Every sensible starting placement of one ligand for the screen (issue 13, item 2).

A screen computes ``E_ads = E(slab+L) - E(slab) - E(L)`` with one reference species L per ligand
(:data:`REFERENCES`), so every placement enumerated for a ligand has exactly the composition of
the slab plus that species:

``"neutral"`` (the neutral molecule: an acid, amine, thiol)
    - ``molecular``: the intact molecule, monodentate (carbonyl/P=O/S=O oxygen, N or S on a Pb);
    - ``dissociated`` (acidic anchors and thiols): the acidic H moved onto a surface Br and the
      deprotonated group bound bidentate chelating, bridging two Pb over a Br, or monodentate;
      each of the :data:`H_ACCEPTORS` nearest clash-free Br is tried as the H acceptor.
``"radical"`` / ``"anion"`` (acidic anchors; thiyl/thiolate)
    - the deprotonated group chelating, bridging over a Br, or monodentate (thiolate: monodentate).
``"cation"`` (ammonium)
    - the ammonium N in the A-site hollow (``a_site``).

Bridging: :mod:`dftflow.structures.placement`'s ``bidentate_bridging`` removes the Br between the
two Pb (X-type exchange), which changes the composition; it is *not* enumerated. The screen uses
``bidentate_bridging_over_br`` instead: the same two O on two neighbouring Pb with that Br kept
(the O-O line raised above it), so the composition is slab + L.

Each mode is tried on every symmetry-distinct top-plane Pb × the azimuths (default
:data:`~dftflow.structures.placement.DEFAULT_AZIMUTHS_DEG`; symmetry-equivalent candidates merged
by the placement module) × the starting tilts (:data:`TILTS_DEG`) × the ligand's distinct
conformers (:func:`~dftflow.structures.ligands.n_conformers`; only flexible chains have more than
one), with the placement module's periodic clash and image checks. Order: family group, mode,
conformer, then the placement module's order (tilt, azimuth, site, H acceptor).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field

from dftflow.errors import InputError
from dftflow.structures.ligands import (
    Form,
    LigandSpec,
    form_smiles,
    ligand_anchor,
    n_conformers,
)
from dftflow.structures.placement import (
    MIN_SLAB_DISTANCE_A,
    Placement,
    enumerate_placements,
    ligand_height_A,
    place_ligand,
)
from dftflow.structures.slab import find_planes

#: Reference species an enumeration can be made for (L in E_ads).
REFERENCES = ("neutral", "radical", "anion", "cation")
#: Candidate families (how the ligand sits relative to its reference species).
FAMILIES = ("molecular", "dissociated", "radical", "anion", "cation")
#: Surface Br tried as the acceptor of a dissociated acidic H (nearest clash-free first).
H_ACCEPTORS = 3
#: Starting tilts, degrees: standing, and leaning towards the second anchor atom (monodentate) or
#: about the O-O line (bidentate), which brings the chain or an OH towards the surface.
TILTS_DEG = (0.0, 30.0)
#: Anchor families that bind through two O (chelating and bridging modes exist).
_OXO_FAMILIES = ("carboxyl", "phosphonate", "sulfonate")
#: Short names of the placement modes (keys of ``n_by_mode``: ``"<family>-<mode>"``).
_SHORT_MODE = {
    "monodentate": "monodentate",
    "bidentate_chelating": "chelating",
    "bidentate_bridging_over_br": "bridging",
    "a_site": "a_site",
}


class ScreenCandidate(BaseModel):
    """One starting geometry of the screen (JSON-serialisable; :func:`build_candidate` builds it).

    ``form`` is the form of the molecule on the surface (``deprotonated`` for a dissociated acid,
    whose H sits on a Br); ``conformer`` indexes that form's conformers
    (:func:`dftflow.structures.ligands.ligand_molecule`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="unique, path-safe: placement label + '-c<conformer>'")
    ligand: str
    placement: Placement
    conformer: int
    form: str
    family: str = Field(description="one of FAMILIES")


class Enumeration(BaseModel):
    """The candidates of one ligand for one reference species."""

    model_config = ConfigDict(extra="forbid")

    ligand: str
    reference: str = Field(description="one of REFERENCES")
    reference_form: str = Field(description="ligands.ligand_molecule form of L")
    candidates: list[ScreenCandidate]
    n_by_mode: dict[str, int] = Field(description="'<family>-<mode>' -> candidates kept")
    notes: list[str] = Field(default_factory=list)


def reference_form(spec: LigandSpec, reference: str) -> Form:
    """The :func:`~dftflow.structures.ligands.ligand_molecule` form of a reference species.

    ``"neutral"``: the neutral molecule (an acid, amine or thiol: ``"as_is"`` when the ligand is
    given so, else ``"protonated"``, or ``"deprotonated"`` for an ammonium); ``"radical"``: the
    deprotonated atoms without the charge; ``"anion"``: the deprotonated form (charge -1);
    ``"cation"``: an ammonium.

    Raises
    ------
    InputError
        Unknown reference, or one that does not exist for this anchor (the radical or anion of an
        amine, the cation of an acid).
    """
    if reference not in REFERENCES:
        raise InputError(
            f"unknown reference species {reference!r}: use one of {', '.join(REFERENCES)}"
        )
    anchor = spec.primary_anchor
    amine = anchor.family == "amine"
    if reference == "neutral":
        candidates: tuple[Form, ...] = (
            ("as_is", "deprotonated") if amine else ("as_is", "protonated")
        )
        want = 0
    elif reference == "cation":
        if not amine:
            raise InputError(f"{spec.name}: the cation reference is for amines/ammonium only")
        candidates, want = ("as_is", "protonated"), 1
    elif amine:
        raise InputError(
            f"{spec.name}: the {reference} reference is defined for acidic anchors only "
            f"(an amine has no acidic H); use neutral"
        )
    elif reference == "radical":
        return "radical"
    else:
        candidates, want = ("as_is", "deprotonated"), -1
    for form in candidates:
        _, charge, model = form_smiles(spec, form)
        if charge == want and model != "radical":
            return form
    raise InputError(f"{spec.name}: no {reference} form (its SMILES {spec.smiles} carries charges)")


def default_reference(spec: LigandSpec) -> str:
    """The reference species a screen uses when none is given.

    A ligand given neutral (acid, amine, thiol) -> ``"neutral"``. A given anion (acetate,
    a thiolate) -> ``"radical"`` and a given ammonium -> ``"neutral"`` (the amine): the embedded
    engine cannot compute charged slabs, so the charged species is only used when asked for.
    """
    _, charge, _ = form_smiles(spec, "as_is")
    if charge < 0:
        return "radical"
    return "neutral"


def _groups(
    spec: LigandSpec, reference: str, ref_form: Form
) -> list[tuple[str, str, bool, list[str]]]:
    """(family, form, dissociate, modes) groups whose candidates have slab + L composition."""
    anchor = ligand_anchor(spec, ref_form)
    oxo = anchor.family in _OXO_FAMILIES
    bound = (
        ["bidentate_chelating", "bidentate_bridging_over_br", "monodentate"]
        if oxo
        else ["monodentate"]
    )
    if reference == "neutral":
        groups = [("molecular", ref_form, False, ["monodentate"])]
        if anchor.protonated and anchor.kind != "ammonium":
            groups.append(("dissociated", ref_form, True, bound))
        return groups
    if reference == "cation":
        return [("cation", ref_form, False, ["a_site"])]
    return [(reference, ref_form, False, bound)]


def _check_fits_standing(slab: Atoms, spec: LigandSpec, form: Form) -> None:
    """One-line error when the standing ligand does not fit under the slab's periodic image.

    The placement module would tilt such a ligand until it clears the image (and keep only the
    tilted and bent starts that fit): a screen must not be biased that way without saying so.
    """
    planes = find_planes(slab)
    z_top = float(np.mean(slab.positions[planes[-1], 2]))
    gap = float(np.min(slab.positions[planes[0], 2])) + float(slab.cell[2, 2]) - z_top
    need = ligand_height_A(slab, spec, form) + MIN_SLAB_DISTANCE_A
    if gap < need:
        raise InputError(
            f"vacuum {gap:.1f} A above the slab is too small for {spec.name} standing on it "
            f"(needs > {need:.1f} A; e.g. build the slab with --vacuum {np.ceil(need + 8.0):.0f})"
        )


def _spread(groups: list[list[ScreenCandidate]], cap: int) -> set[str]:
    """Keys of at most ``cap`` candidates taken round-robin over the groups (deterministic)."""
    chosen: list[str] = []
    depth = 0
    while len(chosen) < cap and any(depth < len(g) for g in groups):
        for g in groups:
            if depth < len(g) and len(chosen) < cap:
                chosen.append(g[depth].key)
        depth += 1
    return set(chosen)


def _interleave_conformers(cands: list[ScreenCandidate]) -> list[ScreenCandidate]:
    """Order for the cap: first of each conformer, second of each, ... (a stable spread)."""
    seen: dict[int, int] = {}
    ranked = []
    for i, c in enumerate(cands):
        k = seen.get(c.conformer, 0)
        seen[c.conformer] = k + 1
        ranked.append((k, c.conformer, i, c))
    return [c for *_, c in sorted(ranked, key=lambda r: r[:3])]


def enumerate_screen(
    slab: Atoms,
    spec: LigandSpec,
    reference: str | None = None,
    *,
    azimuths_deg: Iterable[float] | None = None,
    max_conformers: int = 3,
    max_candidates: int | None = None,
    h_acceptors: int = H_ACCEPTORS,
    tilts_deg: Iterable[float] = TILTS_DEG,
) -> Enumeration:
    """Every starting placement of ``spec`` on ``slab`` for one reference species.

    Parameters
    ----------
    slab
        PbBr2-terminated slab (any supercell).
    spec
        The ligand.
    reference
        One of :data:`REFERENCES`; default :func:`default_reference`.
    azimuths_deg
        Orientations about the surface normal, degrees (default: the placement module's 8).
    max_conformers
        Conformers per form at most (only flexible molecules have more than one).
    max_candidates
        Cap on the total; candidates are taken round-robin over the (family, mode) groups, and
        within a group over the conformers, so a cap keeps every mode (deterministic).
    h_acceptors
        Surface Br tried as the acceptor of a dissociated acidic H.
    tilts_deg
        Starting tilts (see :func:`dftflow.structures.placement.enumerate_placements`).

    Returns
    -------
    Enumeration
        Candidates in deterministic order; ``notes`` say what was not possible (a mode without
        geometry here, a cap).

    Raises
    ------
    InputError
        One line: unknown/impossible reference, bad ``max_*``, no candidate fits, or the standing
        ligand (conformer 0) is too large for the cell (the vacuum it needs, or the smallest
        supercell that fits, from the placement module), because a screen of only the tilted or
        bent starts that happen to fit would be biased.
    """
    if max_conformers < 1:
        raise InputError(f"max_conformers must be >= 1 (got {max_conformers})")
    if max_candidates is not None and max_candidates < 1:
        raise InputError(f"max_candidates must be >= 1 (got {max_candidates})")
    ref = reference if reference is not None else default_reference(spec)
    ref_form = reference_form(spec, ref)
    _check_fits_standing(slab, spec, ref_form)
    azimuths = list(azimuths_deg) if azimuths_deg is not None else None
    tilts = tuple(float(t) for t in tilts_deg)
    notes: list[str] = []
    errors: list[str] = []
    groups: list[list[ScreenCandidate]] = []
    for family, form, dissociate, modes in _groups(spec, ref, ref_form):
        molecule_form: Form = "deprotonated" if dissociate else form  # type: ignore[assignment]
        n_conf = n_conformers(spec, molecule_form, max_conformers)
        for mode in modes:
            group: list[ScreenCandidate] = []
            for conformer in range(n_conf):
                try:
                    placements = enumerate_placements(
                        slab,
                        spec,
                        modes=[mode],
                        azimuths_deg=azimuths,
                        form=form,
                        dissociate=dissociate,
                        conformer=conformer,
                        h_acceptors=h_acceptors if dissociate else 1,
                        tilts_deg=tilts,
                    )
                except InputError as exc:
                    if conformer == 0 and "too small" in str(exc):
                        # the standing ligand does not fit this cell (vacuum or supercell): only
                        # bent conformers would be left, a biased screen; the user must resize
                        raise
                    errors.append(str(exc))
                    notes.append(f"{family} {mode} conformer {conformer}: {exc}")
                    continue
                group.extend(
                    ScreenCandidate(
                        key=f"{p.label}-c{conformer}",
                        ligand=spec.name,
                        placement=p,
                        conformer=conformer,
                        form=molecule_form,
                        family=family,
                    )
                    for p in placements
                )
            groups.append(group)
    flat = [c for g in groups for c in g]
    if not flat:
        raise InputError(errors[0] if errors else f"no placement of {spec.name}")
    if max_candidates is not None and len(flat) > max_candidates:
        keep = _spread([_interleave_conformers(g) for g in groups], max_candidates)
        notes.append(f"capped at max_candidates={max_candidates} of {len(flat)} enumerated")
        flat = [c for c in flat if c.key in keep]
    keys = [c.key for c in flat]
    if len(set(keys)) != len(keys):  # a bug in the labels, not a user mistake
        raise RuntimeError(f"duplicate candidate keys for {spec.name}")
    candidates = [
        c.model_copy(update={"placement": c.placement.model_copy(update={"index": k})})
        for k, c in enumerate(flat)
    ]
    n_by_mode: dict[str, int] = {}
    for c in candidates:
        name = f"{c.family}-{_SHORT_MODE.get(c.placement.mode, c.placement.mode)}"
        n_by_mode[name] = n_by_mode.get(name, 0) + 1
    return Enumeration(
        ligand=spec.name,
        reference=ref,
        reference_form=ref_form,
        candidates=candidates,
        n_by_mode=n_by_mode,
        notes=notes,
    )


def build_candidate(slab: Atoms, spec: LigandSpec, candidate: ScreenCandidate) -> Atoms:
    """The complex of one candidate: slab + ligand (+ a dissociated H on its Br).

    Ligand atoms (the dissociated H included) are marked (``arrays["ligand"]``,
    :func:`dftflow.structures.ligand_atoms.mark_ligand`); ``info``: ``charge`` (e), ``model``,
    ``form`` (as :func:`dftflow.structures.placement.place_ligand`), ``candidate`` (the key),
    ``family`` and ``conformer``.
    """
    if candidate.placement.conformer != candidate.conformer:
        raise InputError(
            f"candidate {candidate.key}: conformer {candidate.conformer} != its placement's "
            f"{candidate.placement.conformer}"
        )
    complex_ = place_ligand(slab, spec, candidate.placement)
    complex_.info.update(
        {"candidate": candidate.key, "family": candidate.family, "conformer": candidate.conformer}
    )
    return complex_
