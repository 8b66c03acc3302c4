"""Adsorption energies ``E_ads = E(slab+L) - multiplier * E(slab) - E(L)`` from e_0 energies.

Sign convention: negative E_ads means binding (the complex is lower in energy than its parts).
Energies are VASP's e_0 ("energy sigma->0", ``TaskDoc.energy_eV``). The reference species L (neutral
acid, anion, radical ...) is stated in every result and table. Without a statement it is what the
adsorbate's run computed (its charge and electron count, :func:`dftflow.schemas.charge_state`); a
statement that contradicts the run ("neutral acid" for an odd-electron radical) is refused, and so
are complex, slab and adsorbate whose net charges do not add up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from dftflow.errors import InputError
from dftflow.parse.run import as_taskdoc
from dftflow.schemas import CHARGED_CELL_NOTE, NOT_PHYSICAL_LABEL, TaskDoc, reference_matches

#: Relative tolerance on in-plane lattice vectors when comparing the slab and complex cells.
CELL_RTOL = 1e-3


class AdsorptionResult(BaseModel):
    """One adsorption energy, with what it was computed from."""

    e_ads_eV: float = Field(description="E(complex) - multiplier*E(slab) - E(adsorbate), eV")
    e_complex_eV: float
    e_slab_eV: float
    e_adsorbate_eV: float
    slab_multiplier: int = 1
    reference_species: str
    converged: dict[str, bool] = Field(description="role -> electronic and ionic convergence")
    engine: str
    physical: bool = Field(default=True, description="False: a mock run is involved")
    charge_states: dict[str, str] = Field(
        default_factory=dict, description="role -> what the run computed (anion, radical ...)"
    )
    formulas: dict[str, str] = Field(default_factory=dict)
    directories: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


def _composition(doc: TaskDoc):
    return doc.final_structure().composition


def _in_plane(doc: TaskDoc) -> np.ndarray:
    return np.asarray(doc.final_structure().lattice.matrix)[:2, :2]


def check_composition(
    complex_: TaskDoc, slab: TaskDoc, adsorbate: TaskDoc, multiplier: int
) -> None:
    """Refuse a complex whose composition is not ``multiplier * slab + adsorbate``.

    A dissociated acid whose H stays on the surface still has the same total composition, so it
    passes.
    """
    expected = _composition(slab) * multiplier + _composition(adsorbate)
    actual = _composition(complex_)
    if not actual.almost_equals(expected, rtol=0, atol=1e-6):
        raise InputError(
            f"complex composition {actual.formula.replace(' ', '')} is not "
            f"{multiplier}x slab + adsorbate = {expected.formula.replace(' ', '')}"
        )


def check_cells(complex_: TaskDoc, slab: TaskDoc, multiplier: int) -> None:
    """Refuse slab and complex whose in-plane cells differ (slab area times ``multiplier``)."""
    a_c = _in_plane(complex_)
    a_s = _in_plane(slab)
    area_c = abs(np.linalg.det(a_c))
    area_s = abs(np.linalg.det(a_s))
    if multiplier == 1:
        same = np.allclose(a_c, a_s, rtol=CELL_RTOL, atol=1e-3)
    else:
        same = bool(np.isclose(area_c, multiplier * area_s, rtol=CELL_RTOL))
    if not same:
        raise InputError(
            f"in-plane cells differ: complex area {area_c:.4f} A^2 vs {multiplier} x slab "
            f"{area_s:.4f} A^2 (complex a,b = {np.round(a_c, 4).tolist()}, "
            f"slab a,b = {np.round(a_s, 4).tolist()})"
        )


def check_charges(complex_: TaskDoc, slab: TaskDoc, adsorbate: TaskDoc, multiplier: int) -> None:
    """Refuse runs whose net charges (e) do not add up: q(complex) = N q(slab) + q(L).

    Runs of unknown charge (``charge_e`` None: not set up by dftflow) are not checked.
    """
    charges = [complex_.charge_e, slab.charge_e, adsorbate.charge_e]
    if any(q is None for q in charges):
        return
    q_c, q_s, q_a = (float(q) for q in charges)
    if abs(q_c - (multiplier * q_s + q_a)) > 1e-6:
        raise InputError(
            f"net charges do not add up: complex {q_c:+g} e vs {multiplier} x slab {q_s:+g} e + "
            f"adsorbate {q_a:+g} e (E_ads would compare different electron counts); compute L "
            "in the form the complex holds"
        )


def adsorption_energy(
    complex: TaskDoc | str | Path,  # noqa: A002 - the agreed API name
    slab: TaskDoc | str | Path,
    adsorbate: TaskDoc | str | Path,
    *,
    slab_multiplier: int = 1,
    reference_species: str | None = None,
    allow_unconverged: bool = False,
) -> AdsorptionResult:
    """Adsorption energy of a ligand on a slab.

    Parameters
    ----------
    complex, slab, adsorbate
        TaskDocs (or run directories / TaskDoc JSON paths) of the slab+ligand complex, the clean
        slab and the isolated adsorbate L.
    slab_multiplier
        How many slab cells fit in the complex cell (E(slab 2x2) = 4 E(slab 1x1)).
    reference_species
        What L is (``"neutral acid"``, ``"acetate anion"``, ``"acetate radical"`` ...); None: what
        the adsorbate's run computed (``TaskDoc.charge_state``). Must agree with that run.
    allow_unconverged
        Accept runs that are not electronically/ionically converged (recorded as warnings).

    Returns
    -------
    AdsorptionResult
        ``e_ads_eV`` in eV; negative means binding.

    Raises
    ------
    InputError
        Unconverged run (unless allowed), composition, cell or charge mismatch, a reference
        species that contradicts the adsorbate's run, bad multiplier.
    """
    if int(slab_multiplier) != slab_multiplier or slab_multiplier < 1:
        raise InputError(f"slab multiplier must be a positive integer, got {slab_multiplier}")
    slab_multiplier = int(slab_multiplier)
    docs = {
        "complex": as_taskdoc(complex),
        "slab": as_taskdoc(slab),
        "adsorbate": as_taskdoc(adsorbate),
    }
    converged = {role: d.converged_electronic and d.converged_ionic for role, d in docs.items()}
    warnings: list[str] = []
    bad = [role for role, ok in converged.items() if not ok]
    if bad:
        message = "unconverged run(s): " + ", ".join(
            f"{r} ({docs[r].directory}: electronic={docs[r].converged_electronic}, "
            f"ionic={docs[r].converged_ionic})"
            for r in bad
        )
        if not allow_unconverged:
            raise InputError(message + "; pass --allow-unconverged to use them anyway")
        warnings.append(message)
    check_composition(docs["complex"], docs["slab"], docs["adsorbate"], slab_multiplier)
    check_cells(docs["complex"], docs["slab"], slab_multiplier)
    check_charges(docs["complex"], docs["slab"], docs["adsorbate"], slab_multiplier)
    computed = docs["adsorbate"].charge_state
    if reference_species is None:
        reference_species = computed
    elif not reference_matches(reference_species, computed.split()[0]):
        raise InputError(
            f"reference species {reference_species!r} contradicts the adsorbate run "
            f"({docs['adsorbate'].directory}), which computed a {computed}"
            + (f", NELECT {docs['adsorbate'].nelect:g}" if docs["adsorbate"].nelect else "")
            + "; state what it computed or rebuild L in the intended form"
        )
    if any(d.charge_e for d in docs.values()):
        warnings.append(f"charged cells: {CHARGED_CELL_NOTE}")
    physical = all(d.physical for d in docs.values())
    if not physical:
        warnings.insert(0, f"{NOT_PHYSICAL_LABEL}: E_ads from mock runs is not a physical number")
    e_c, e_s, e_a = (docs[r].energy_eV for r in ("complex", "slab", "adsorbate"))
    engines = sorted({d.engine for d in docs.values()})
    if len(engines) > 1:
        warnings.append(f"mixed engines: {', '.join(engines)}")
    return AdsorptionResult(
        e_ads_eV=e_c - slab_multiplier * e_s - e_a,
        e_complex_eV=e_c,
        e_slab_eV=e_s,
        e_adsorbate_eV=e_a,
        slab_multiplier=slab_multiplier,
        reference_species=reference_species,
        converged=converged,
        engine="+".join(engines),
        physical=physical,
        charge_states={r: d.charge_state for r, d in docs.items()},
        formulas={r: d.formula for r, d in docs.items()},
        directories={r: d.directory for r, d in docs.items()},
        warnings=warnings,
    )


class AdsorptionRow(BaseModel):
    """One row of the study table."""

    ligand: str
    reference_species: str
    model: str = ""
    e_ads_eV: float | None
    converged: dict[str, bool] = Field(default_factory=dict)
    engine: str = ""
    paper_e_ads_eV: float | None = None
    physical: bool = True


def adsorption_table_markdown(rows: Sequence[AdsorptionRow]) -> str:
    """A Markdown table: ligand, model, reference, E_ads, paper value, converged flags, engine.

    Rows of mock runs say "mock (not physical)" in the E_ads header and engine column, and their
    paper value is not set beside them ("not compared").
    """
    mock = any(not r.physical for r in rows)
    head = f"E_ads (eV), {NOT_PHYSICAL_LABEL}" if mock else "E_ads (eV)"
    lines = [
        f"| ligand | model | reference species L | {head} | paper E_ads (eV) | converged "
        "| engine |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        e = "n/a" if r.e_ads_eV is None else f"{r.e_ads_eV:+.3f}"
        p = "n/a" if r.paper_e_ads_eV is None else f"{r.paper_e_ads_eV:+.2f}"
        if not r.physical:
            p = "not compared"
        if r.converged and all(r.converged.values()):
            conv = f"all ({len(r.converged)})"
        else:
            conv = ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in r.converged.items()) or "n/a"
        engine = r.engine or "n/a"
        if not r.physical:
            engine = f"{engine}, {NOT_PHYSICAL_LABEL}"
        lines.append(
            f"| {r.ligand} | {r.model or 'n/a'} | {r.reference_species} | {e} | {p} | {conv} | "
            f"{engine} |"
        )
    return "\n".join(lines) + "\n"


def plot_adsorption_bars(
    rows: Sequence[AdsorptionRow],
    output: str | Path,
    *,
    show_paper: bool = True,
    dpi: int = 150,
    title: str | None = None,
) -> Path:
    """Bar chart of E_ads per ligand (value labels), the paper's values beside when known."""
    from dftflow.analysis.plotting import new_figure, save_figure

    rows = [r for r in rows if r.e_ads_eV is not None or r.paper_e_ads_eV is not None]
    if not rows:
        raise InputError("no adsorption energies to plot")
    fig, ax = new_figure(figsize=(max(3.5, 1.3 * len(rows) + 1.5), 3.6))
    x = np.arange(len(rows))
    mock = any(not r.physical for r in rows)  # mock numbers are never set beside the paper's
    has_paper = show_paper and not mock and any(r.paper_e_ads_eV is not None for r in rows)
    width = 0.38 if has_paper else 0.6
    ours = [np.nan if r.e_ads_eV is None else r.e_ads_eV for r in rows]
    offset = -width / 2 if has_paper else 0.0
    label = NOT_PHYSICAL_LABEL if mock else "this work"
    bars = ax.bar(x + offset, ours, width, color="#3b6fb6", edgecolor="black", label=label)
    _label_bars(ax, bars, ours)
    if has_paper:
        paper = [np.nan if r.paper_e_ads_eV is None else r.paper_e_ads_eV for r in rows]
        pbars = ax.bar(
            x + width / 2,
            paper,
            width,
            color="#d9d9d9",
            edgecolor="black",
            hatch="//",
            label="paper",
        )
        _label_bars(ax, pbars, paper)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r.ligand}\n(L: {r.reference_species})" for r in rows], fontsize=8)
    ax.set_ylabel(r"$E_\mathrm{ads}$ (eV)")
    # (mock numbers: the legend says so, and the report/CLI draw the red figure note above)
    default_title = r"$E_\mathrm{ads} = E(\mathrm{slab+L}) - E(\mathrm{slab}) - E(\mathrm{L})$"
    ax.set_title(title or default_title)
    values = [v for v in ours + ([] if not has_paper else paper) if np.isfinite(v)]
    lo, hi = min(values + [0.0]), max(values + [0.0])
    pad = 0.18 * max(hi - lo, 0.5)
    ax.set_ylim(lo - pad, hi + pad)
    ax.legend(frameon=False, fontsize=8, loc="best")
    return save_figure(fig, output, dpi=dpi)


def _label_bars(ax, bars, values) -> None:
    for bar, v in zip(bars, values, strict=True):
        if not np.isfinite(v):
            continue
        va = "top" if v < 0 else "bottom"
        y = bar.get_height()
        ax.annotate(
            f"{v:+.2f}",
            (bar.get_x() + bar.get_width() / 2, y),
            xytext=(0, -3 if v < 0 else 3),
            textcoords="offset points",
            ha="center",
            va=va,
            fontsize=8,
        )
