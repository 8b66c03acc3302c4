"""Trap states at surface defects and their passivation by ligands (issue 15, items 3-4).

For the pristine slab, each defective slab (:mod:`dftflow.structures.defects`) and each ligand on
either, the mid-gap detector (:mod:`dftflow.analysis.midgap`) lists the states inside the pristine
slab's gap (every system against the pristine slab's edges, aligned on a deep level): energy from
the host VBM, spin, occupation, per-atom character and whether the state sits on the Pb atoms the
defect left under-coordinated (the defect's own record, carried by index, never guessed).

Rules, stated in every result
-----------------------------
* A gap state is a *host trap* when at least :data:`MIN_SLAB_WEIGHT` of its projected weight is on
  slab atoms (the rule of :func:`dftflow.analysis.midgap.compare_midgap`); a state of ligand
  character is listed but is no host trap. Without projections every gap state counts.
* A state is *localised on the under-coordinated Pb* when those Pb carry at least
  :data:`UNDERCOORDINATED_FRACTION` of its projected weight (the detector's ``top_atoms``, the
  :data:`N_TOP_ATOMS` heaviest atoms).
* A level holding a fraction of an electron below the CBM (or that hole above the VBM) is a gap
  state: the detector never takes it for a moved host band (``midgap.EDGE_FILLING_TOLERANCE``;
  measured: the embedded engine's V_Br slab puts its excess electron in two levels 0.26 eV below
  the CBM, 0.44 and 0.42 e, 84 % and 52 % on the two under-coordinated Pb).
* Passivation verdict of a ligand at a defect (:func:`passivation_verdict`): the bare defective
  slab's host traps (before) against those of the ligand at the defect (after): ``passivated``
  (some before, none after), ``partly passivated`` (fewer after), ``not passivated`` (as many or
  more after), ``no trap to passivate`` (none before).
* The paper's claim ("the OA-covered surface shows mid-gap states near 0 eV that vanish with AcO-
  or 2-HA", :func:`paper_claim`) is tested per surface model (pristine, each defect): it holds on a
  surface when OA there has at least one host trap and AcO and 2-HA there have none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from dftflow.analysis.midgap import EDGE_FILLING_TOLERANCE, MidgapReport

#: Fraction of a state's projected weight on slab atoms that makes it a host trap.
MIN_SLAB_WEIGHT = 0.5
#: Fraction of a state's projected weight on the under-coordinated Pb that localises it there.
UNDERCOORDINATED_FRACTION = 0.25
#: Electrons (holes) a moved-band state must hold below the CBM (above the VBM) to count, e.
#: Atoms listed per state (the per-atom character).
N_TOP_ATOMS = 8
#: The paper's ligands, as the claim names them (library names).
CLAIM_BASELINE = "OA"
CLAIM_PASSIVATORS = ("AcO", "2-HA")
#: The claim, quoted in the report.
PAPER_CLAIM = "the OA-covered surface shows mid-gap states near 0 eV that vanish with AcO⁻ or 2-HA"


class TrapState(BaseModel):
    """One state in the host gap of one system."""

    energy_from_vbm_eV: float = Field(description="from the host VBM of its spin, eV")
    energy_eV: float = Field(description="on the run's own scale, eV")
    spin: str
    occupation: float = Field(description="0..1 per spin orbital")
    filling: str
    host_trap: bool = Field(description=f"slab weight >= {MIN_SLAB_WEIGHT} (or no projections)")
    undercoordinated_pb_weight: float | None = Field(
        default=None, description="weight on the defect's under-coordinated Pb (None: no record)"
    )
    on_undercoordinated_pb: bool | None = Field(
        default=None, description=f"undercoordinated_pb_weight >= {UNDERCOORDINATED_FRACTION}"
    )
    character: str = Field(default="", description="heaviest atoms: element index (weight)")


class TrapSystem(BaseModel):
    """The gap states of one system of a trap study."""

    label: str = Field(description="e.g. 'pristine slab', 'V_Br slab', 'OA at V_Br'")
    surface: str = Field(description="'pristine' or the defect name")
    ligand: str | None = None
    taskdoc: str | None = None
    electrons: float | None = Field(default=None, description="valence electrons of the run")
    odd_electrons: bool | None = None
    spin_polarized: bool | None = Field(default=None, description="the run computed two spins")
    undercoordinated_pb: list[int] = Field(default_factory=list)
    gap_eV: dict[str, float | None] = Field(default_factory=dict)
    states: list[TrapState] = Field(default_factory=list)
    n_host_traps: int | None = Field(default=None, description="None: analysis not possible")
    verdict: str = ""
    note: str = ""


class Passivation(BaseModel):
    """The answer to: does a ligand at a defect remove the defect's gap states."""

    ligand: str
    defect: str
    verdict: str = Field(
        description="passivated, partly passivated, not passivated, no trap to passivate, "
        "not analysed"
    )
    passivated: bool | None
    before_eV: list[str] = Field(description="host traps of the bare defective slab (from VBM)")
    after_eV: list[str] = Field(description="host traps with the ligand at the defect")
    text: str


class TrapLigand(BaseModel):
    """One ligand of a trap study at one defect: E_ads there and on the pristine surface."""

    ligand: str
    defect: str
    reference_species: str
    model: str = Field(description="adsorption model at the defect (lowest placement)")
    e_ads_defect_eV: float | None = None
    e_ads_pristine_eV: float | None = None
    placements: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class TrapStudy(BaseModel):
    """``analysis/traps/traps.json``; ``StudySummary.traps``."""

    defects: list[str]
    systems: list[TrapSystem]
    passivation: list[Passivation]
    ligands: list[TrapLigand]
    claim: dict[str, Any]
    rules: list[str] = Field(
        default_factory=lambda: [
            f"host trap: a gap state with >= {MIN_SLAB_WEIGHT:.0%} of its weight on slab atoms",
            f"on the under-coordinated Pb: >= {UNDERCOORDINATED_FRACTION:.0%} of its weight on "
            "the Pb the defect left under-coordinated",
            f"a level holding >= {EDGE_FILLING_TOLERANCE} e below the CBM (or that hole above "
            "the VBM) is a gap state, never a moved host band",
            "energies from the host VBM: the pristine slab's VBM aligned onto each system on a "
            "deep level (dftflow.analysis.midgap)",
        ]
    )


# --------------------------------------------------------------------------------------------
def trap_states(report: MidgapReport, undercoordinated: Sequence[int] | None) -> list[TrapState]:
    """The detector's gap states of one system, with host-trap and localisation flags."""
    under = set(undercoordinated or [])
    out = []
    for s in sorted(report.midgap_states, key=lambda x: (x.energy_eV, x.spin)):
        host = s.slab_weight is None or s.slab_weight >= MIN_SLAB_WEIGHT
        w_under = None
        on = None
        if undercoordinated is not None and s.top_atoms:
            w_under = round(sum(a.weight for a in s.top_atoms if a.index in under), 4)
            on = w_under >= UNDERCOORDINATED_FRACTION
        character = ", ".join(f"{a.element}{a.index} ({a.weight:.2f})" for a in s.top_atoms[:4])
        out.append(
            TrapState(
                energy_from_vbm_eV=round(s.distance_to_vbm_eV, 4),
                energy_eV=round(s.energy_eV, 4),
                spin=s.spin,
                occupation=round(s.occupation, 4),
                filling=s.filling,
                host_trap=host,
                undercoordinated_pb_weight=w_under,
                on_undercoordinated_pb=on,
                character=character,
            )
        )
    return out


def _energies(system: TrapSystem) -> list[str]:
    """The host traps of a system as text (a restricted run's level: "both spins")."""
    return [
        f"{s.energy_from_vbm_eV:+.2f} eV "
        f"({'both spins' if system.spin_polarized is False else s.spin}, occ {s.occupation:.2f})"
        for s in system.states
        if s.host_trap
    ]


def passivation_verdict(
    ligand: str, defect: str, before: TrapSystem, after: TrapSystem
) -> Passivation:
    """The passivation verdict of ``ligand`` at ``defect`` (rules: the module docstring)."""
    if before.n_host_traps is None or after.n_host_traps is None:
        missing = before.label if before.n_host_traps is None else after.label
        return Passivation(
            ligand=ligand,
            defect=defect,
            verdict="not analysed",
            passivated=None,
            before_eV=_energies(before),
            after_eV=_energies(after),
            text=f"not analysed: no mid-gap analysis of {missing} ({before.note or after.note})",
        )
    b_e, a_e = _energies(before), _energies(after)
    nb, na = before.n_host_traps, after.n_host_traps
    if nb == 0:
        verdict, ok = "no trap to passivate", None
        text = f"the bare {defect} slab has no host trap state in the gap"
        if na:
            text += f"; with {ligand} {na} appear ({', '.join(a_e)})"
    elif na == 0:
        verdict, ok = "passivated", True
        text = f"{nb} host trap state(s) of the bare {defect} slab ({', '.join(b_e)}) -> none"
    elif na < nb:
        verdict, ok = "partly passivated", False
        text = f"{nb} host trap state(s) ({', '.join(b_e)}) -> {na} ({', '.join(a_e)})"
    else:
        verdict, ok = "not passivated", False
        text = f"{nb} host trap state(s) ({', '.join(b_e)}) -> {na} ({', '.join(a_e)})"
    return Passivation(
        ligand=ligand,
        defect=defect,
        verdict=verdict,
        passivated=ok,
        before_eV=b_e,
        after_eV=a_e,
        text=f"{ligand} at {defect}: {verdict}: {text}",
    )


def _find(systems: Sequence[TrapSystem], surface: str, ligand: str) -> TrapSystem | None:
    for s in systems:
        if s.surface == surface and s.ligand is not None and s.ligand.lower() == ligand.lower():
            return s
    return None


def paper_claim(systems: Sequence[TrapSystem], surfaces: Sequence[str]) -> dict[str, Any]:
    """Answer the paper's mid-gap claim from the computed systems, per surface model.

    Returns ``{"answer": "holds" | "does not hold" | "holds only for ..." | "cannot be answered",
    "text": ..., "per_surface": {surface: {"holds": bool | None, "why": str}}}``.
    """
    per: dict[str, dict[str, Any]] = {}
    for surface in surfaces:
        oa = _find(systems, surface, CLAIM_BASELINE)
        others = {name: _find(systems, surface, name) for name in CLAIM_PASSIVATORS}
        where = "the pristine surface" if surface == "pristine" else f"the {surface} surface"
        if oa is None or oa.n_host_traps is None:
            per[surface] = {"holds": None, "why": f"no OA result on {where}"}
            continue
        missing = [n for n, s in others.items() if s is None or s.n_host_traps is None]
        oa_e = _energies(oa)
        if oa.n_host_traps == 0:
            per[surface] = {
                "holds": False,
                "why": f"OA on {where} has no host trap state in the gap",
            }
            continue
        remain = {n: s.n_host_traps for n, s in others.items() if s is not None and s.n_host_traps}
        if remain:
            per[surface] = {
                "holds": False,
                "why": f"OA on {where} has {oa.n_host_traps} host trap(s) ({', '.join(oa_e)}) "
                "but they do not vanish with "
                + ", ".join(f"{n} ({k} remain)" for n, k in remain.items()),
            }
        elif missing:
            per[surface] = {
                "holds": None,
                "why": f"OA on {where} has {oa.n_host_traps} host trap(s) ({', '.join(oa_e)}); "
                f"no result for {', '.join(missing)}",
            }
        else:
            per[surface] = {
                "holds": True,
                "why": f"OA on {where} has {oa.n_host_traps} host trap(s) ({', '.join(oa_e)}); "
                f"none with {' or '.join(CLAIM_PASSIVATORS)}",
            }
    holds = [s for s, v in per.items() if v["holds"] is True]
    known = [s for s, v in per.items() if v["holds"] is not None]
    if not known:
        answer = "cannot be answered"
        text = "no surface model has results for OA and the passivating ligands"
    elif len(holds) == len(per):
        answer = "holds"
        text = "on every surface model computed"
    elif holds:
        answer = f"holds only for {', '.join(holds)}"
        text = "on the other surface models it does not (below)"
    else:
        answer = "does not hold"
        no_states = all(
            "has no host trap state" in v["why"] for v in per.values() if v["holds"] is False
        )
        text = (
            "no surface model computed shows mid-gap states for OA"
            if no_states
            else "in no surface model computed do OA's gap states vanish with AcO and 2-HA"
        )
    return {"claim": PAPER_CLAIM, "answer": answer, "text": text, "per_surface": per}


def trap_system(
    label: str,
    surface: str,
    ligand: str | None,
    report: MidgapReport | None,
    note: str,
    *,
    taskdoc: str | None = None,
    electrons: float | None = None,
    spin_polarized: bool | None = None,
    undercoordinated: Sequence[int] | None = None,
) -> TrapSystem:
    """A :class:`TrapSystem` from the detector's report (None: analysis not possible, ``note``)."""
    odd = None if electrons is None else int(round(electrons)) % 2 == 1
    system = TrapSystem(
        label=label,
        surface=surface,
        ligand=ligand,
        taskdoc=taskdoc,
        electrons=electrons,
        odd_electrons=odd,
        spin_polarized=spin_polarized,
        undercoordinated_pb=list(undercoordinated or []),
        note=note,
    )
    if report is None:
        return system
    states = trap_states(report, undercoordinated)
    system.gap_eV = dict(report.gap_eV)
    system.states = states
    system.n_host_traps = sum(1 for s in states if s.host_trap)
    system.verdict = report.verdict
    return system


def passivation_table(
    systems: Sequence[TrapSystem], defects: Sequence[str], ligands: Sequence[str]
) -> list[Passivation]:
    """One verdict per (defect, ligand): the bare defective slab vs the ligand at the defect."""
    out = []
    for defect in defects:
        before = next((s for s in systems if s.surface == defect and s.ligand is None), None)
        for lig in ligands:
            after = _find(systems, defect, lig)
            if before is None or after is None:
                continue
            out.append(passivation_verdict(lig, defect, before, after))
    return out


def system_markdown(systems: Sequence[TrapSystem]) -> list[str]:
    """The per-system gap-state table (Markdown lines; a restricted run's state: "both spins")."""
    md = [
        "| System | Electrons | Spin | Host traps | Gap states: energy from host VBM (spin, "
        "occupation) [on under-coordinated Pb] |",
        "|---|---|---|---|---|",
    ]
    for s in systems:
        electrons = "n/a" if s.electrons is None else f"{s.electrons:g}"
        if s.odd_electrons:
            electrons += " (odd)"
        spin = {True: "polarised", False: "restricted", None: "n/a"}[s.spin_polarized]
        traps = "n/a" if s.n_host_traps is None else str(s.n_host_traps)
        if s.n_host_traps is None:
            states = f"not analysed: {s.note}"
        elif not s.states:
            states = "none"
        else:
            parts = []
            for t in s.states:
                where = ""
                if t.on_undercoordinated_pb is not None:
                    where = (
                        f" [yes, {t.undercoordinated_pb_weight:.2f}]"
                        if t.on_undercoordinated_pb
                        else f" [no, {t.undercoordinated_pb_weight:.2f}]"
                    )
                kind = "" if t.host_trap else " ligand-like"
                spin_label = "both spins" if s.spin_polarized is False else t.spin
                parts.append(
                    f"{t.energy_from_vbm_eV:+.2f} eV ({spin_label}, {t.occupation:.2f})"
                    f"{kind}{where}"
                )
            states = "; ".join(parts)
        md.append(f"| {s.label} | {electrons} | {spin} | {traps} | {states} |")
    return md


def ligand_markdown(rows: Sequence[TrapLigand]) -> list[str]:
    """E_ads at the defect vs on the pristine surface (Markdown lines)."""

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    md = [
        "| Ligand | Defect | Reference L | Model at the defect | E_ads at defect (eV) | "
        "E_ads pristine (eV) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r.ligand} | {r.defect} | {r.reference_species} | {r.model} | "
            f"{f(r.e_ads_defect_eV)} | {f(r.e_ads_pristine_eV)} |"
        )
    return md


def build_trap_study(
    defects: Sequence[str],
    systems: Sequence[TrapSystem],
    ligands: Sequence[TrapLigand],
    ligand_names: Sequence[str],
) -> TrapStudy:
    """Assemble the trap study's result (verdicts and the claim from ``systems``)."""
    return TrapStudy(
        defects=list(defects),
        systems=list(systems),
        passivation=passivation_table(systems, defects, ligand_names),
        ligands=list(ligands),
        claim=paper_claim(systems, ["pristine", *defects]),
    )


def as_trap_study(data: Mapping[str, Any] | None) -> TrapStudy | None:
    """``StudySummary.traps`` back as a :class:`TrapStudy` (None when the study has none)."""
    return None if data is None else TrapStudy.model_validate(dict(data))
