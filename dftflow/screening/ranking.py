"""The output of a screen: the ranked table (CSV + JSON), its figures and its report section.

Ranking rules
-------------
Energies in eV; ``E_ads = E(slab+L) - E(slab) - E(L)`` with L each ligand's reference species
(negative binds, lower = stronger). A placement is *kept* when it is neither excluded nor a
duplicate (:func:`kept_placements`); only kept placements with a finite committee mean
(:meth:`LigandScreen.kept`: the refined ones) can be a ligand's best.

1. **Best placement of a ligand**: its lowest DFT E_ads when any kept placement was computed with
   DFT, else its lowest committee-mean E_ads. The row's MLIP mean/σ, DFT value and
   ``dft_minus_mlip_eV`` (= DFT - committee mean) are all of that one placement.
2. **What the rank sorts on** (``ScreenTable.ranked_by``; the number is the row's
   ``ranked_on_eV``, always one of its shown columns):

   - ``dft``: every ranked ligand has a DFT E_ads: the best placement's DFT E_ads;
   - ``mlip_mean``: no ranked ligand, or only some, have DFT: the committee mean of each ligand's
     best placement (``e_ads_mlip_mean_eV``). A DFT number is never ranked against an MLIP
     number: when only some ligands have DFT, all are ranked on the committee mean (one level
     of theory), every ranked row says ``ranked_by_mlip``, the notes name the ligands without
     DFT, and the DFT values stay beside the rank. For a ligand with DFT this is the committee
     mean of the DFT-lowest placement, not the lowest committee mean: where DFT has shown the
     committee's lowest placement is not the lowest, that number is not used (``dft_reorders``).

   Ties are broken by name; ranks are 1, 2, 3 ... in that order.
3. **Not ranked** (``rank`` None, at the bottom in input order, ``error`` says why): a ligand that
   could not be screened (its one-line error) and one without a kept placement that has a
   committee mean (the reasons its placements were excluded).

Flags (per row; the ligand's own ``flags`` from earlier stages come first):

- ``sigma>0.2 eV``: the committee's spread on the best placement exceeds ``sigma_flag_eV``;
- ``step_cap``: a kept placement stopped at the optimizer's step cap (its energy is an upper bound);
- ``dft_reorders``: DFT's lowest placement is not the committee's lowest;
- ``dft_far``: |DFT - committee mean| of the best placement exceeds :data:`DFT_FAR_EV`;
- ``few_placements``: fewer than :data:`FEW_PLACEMENTS` kept placements;
- ``reference differs``: the ranked ligands' reference species are not all of one kind
  (neutral, radical, anion, cation; :func:`reference_kind`): E_ads against a radical and against
  a neutral molecule are not comparable, so every ranked row of such a table carries the flag,
  the notes list each ligand's kind and the figure marks it;
- ``ranked_by_mlip``: some, not all, ranked ligands have DFT (rule 2).

The table is written with :func:`write_table` (``ranking.csv``, ``ranking.json``), the figures with
:func:`plot_ranking` and :func:`plot_parity`, the report with :func:`write_report`. A table of the
mock engine (``physical`` False) says "mock (not physical)" in its report and on every figure
(drawn above it and in the PNG's ``Description``).
"""

from __future__ import annotations

import csv
import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from dftflow.fileio import atomic_write_text
from dftflow.schemas import NOT_PHYSICAL_LABEL
from dftflow.screening.records import (
    CSV_COLUMNS,
    LigandScreen,
    PlacementRecord,
    ScreenRow,
    ScreenTable,
)

#: |DFT - committee mean| above which a row is flagged ``dft_far`` (eV).
DFT_FAR_EV = 0.2
#: Fewer kept placements than this: flag ``few_placements``.
FEW_PLACEMENTS = 3
#: Half-widths of the parity figure's bands around y = x (eV).
PARITY_BANDS_EV = (0.1, 0.2)
#: Decimals of energies in ranking.csv (the JSON keeps every digit).
CSV_DECIMALS = 4

FLAG_STEP_CAP = "step_cap"
FLAG_DFT_REORDERS = "dft_reorders"
FLAG_DFT_FAR = "dft_far"
FLAG_FEW = "few_placements"
FLAG_REFERENCE = "reference differs"
FLAG_RANKED_BY_MLIP = "ranked_by_mlip"


def kept_placements(ligand: LigandScreen) -> list[PlacementRecord]:
    """Placements neither excluded nor duplicates, refined or not (the table's ``n_kept``)."""
    return [p for p in ligand.placements if not p.excluded and p.duplicate_of is None]


def scored_placements(ligand: LigandScreen) -> list[PlacementRecord]:
    """Kept placements with a finite committee mean, lowest first (the candidates for best).

    A non-finite mean (a diverged member) is never ranked.
    """
    return [p for p in ligand.kept() if math.isfinite(p.e_ads_mean_eV)]  # type: ignore[arg-type]


def loose_e_ads_eV(ligand: LigandScreen, table: ScreenTable) -> list[tuple[PlacementRecord, float]]:
    """Kept placements without a committee mean, with their loose single-model E_ads (eV).

    ``e_loose_eV - E(slab) - E(L)`` of the committee's first member (the model that relaxed
    every placement loosely); empty when that member's slab or ligand energy is unknown.
    """
    if not table.committee:
        return []
    first = table.committee[0]
    e_slab, e_ref = table.e_slab_eV.get(first), ligand.e_reference_eV.get(first)
    if e_slab is None or e_ref is None:
        return []
    return [
        (p, p.e_loose_eV - e_slab - e_ref)
        for p in kept_placements(ligand)
        if p.e_ads_mean_eV is None and p.e_loose_eV is not None and math.isfinite(p.e_loose_eV)
    ]


def sigma_flag(sigma_flag_eV: float) -> str:
    """The flag of a committee spread above ``sigma_flag_eV``: ``"sigma>0.2 eV"``."""
    return f"sigma>{sigma_flag_eV:g} eV"


def reference_kind(ligand: LigandScreen) -> str:
    """``radical``, ``anion``, ``cation`` or ``neutral``: what kind of species L is.

    From the reference form (``radical``) and the words of ``reference_species`` (which name what
    the inputs compute: "acetate anion (charge -1 e)", "neutral acid", ...).
    """
    words = ligand.reference_species.lower()
    if ligand.reference_form == "radical" or "radical" in words:
        return "radical"
    for kind in ("anion", "cation"):
        if kind in words:
            return kind
    return "neutral"


# ---------------------------------------------------------------------------------------------
# MLIP vs DFT
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How well the committee mean reproduces DFT over a set of placements."""

    n: int
    mae_eV: float
    spearman_rho: float | None  # None when undefined (a constant series)


def mlip_dft_agreement(mlip_eV: Sequence[float], dft_eV: Sequence[float]) -> Agreement | None:
    """MAE and Spearman rank correlation between committee means and DFT E_ads (eV).

    Parameters
    ----------
    mlip_eV, dft_eV
        Paired values (same placements, same order).

    Returns
    -------
    Agreement or None
        None for fewer than 3 pairs (a rank correlation of two points says nothing).
    """
    from scipy.stats import spearmanr

    if len(mlip_eV) != len(dft_eV):
        raise ValueError(f"{len(mlip_eV)} MLIP values but {len(dft_eV)} DFT values")
    n = len(mlip_eV)
    if n < 3:
        return None
    mae = sum(abs(d - m) for m, d in zip(mlip_eV, dft_eV, strict=True)) / n
    if len(set(mlip_eV)) == 1 or len(set(dft_eV)) == 1:
        return Agreement(n=n, mae_eV=mae, spearman_rho=None)  # no ranks to correlate
    rho = float(spearmanr(mlip_eV, dft_eV).statistic)
    return Agreement(n=n, mae_eV=mae, spearman_rho=None if math.isnan(rho) else rho)


def dft_points(ligands: Sequence[LigandScreen]) -> list[tuple[str, PlacementRecord]]:
    """(ligand name, placement) of every escalated placement with a finite DFT and MLIP E_ads."""
    return [
        (lig.name, p)
        for lig in ligands
        for p in lig.placements
        if p.escalated
        and p.e_ads_dft_eV is not None
        and p.e_ads_mean_eV is not None
        and math.isfinite(p.e_ads_dft_eV)
        and math.isfinite(p.e_ads_mean_eV)
    ]


def ligands_agreement(ligands: Sequence[LigandScreen]) -> Agreement | None:
    """:func:`mlip_dft_agreement` over :func:`dft_points`."""
    pts = [p for _, p in dft_points(ligands)]
    return mlip_dft_agreement([p.e_ads_mean_eV for p in pts], [p.e_ads_dft_eV for p in pts])  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# the ranked table
# ---------------------------------------------------------------------------------------------


def _not_ranked_reason(lig: LigandScreen) -> str:
    """Why a ligand without an error has no kept placement with a committee mean."""
    if not lig.placements:
        return "no placement was relaxed"
    n_kept = len(kept_placements(lig))
    if n_kept:
        return f"none of its {n_kept} kept placements has a finite committee E_ads"
    reasons: dict[str, int] = {}
    for p in lig.placements:
        if p.excluded:  # the kind (desorbed, surface_moved ...); the report lists each reason
            why = (p.reason or "excluded").split(":", 1)[0]
        elif p.duplicate_of is not None:
            why = "duplicate"
        else:
            why = "no committee E_ads"
        reasons[why] = reasons.get(why, 0) + 1
    listed = "; ".join(f"{why} ({n})" for why, n in reasons.items())
    return f"no placement kept of {len(lig.placements)}: {listed}"


def rank_ligands(
    ligands: Sequence[LigandScreen],
    *,
    screen: str,
    engine: str,
    physical: bool,
    committee: Sequence[str],
    slab: dict,
    e_slab_eV: dict[str, float],
    sigma_flag_eV: float = 0.2,
) -> ScreenTable:
    """The ranked table of a screen (rules and flags: module docstring).

    Parameters
    ----------
    ligands
        Every ligand of the screen, screened or not (input order is kept for unranked rows).
    screen, engine, physical, committee, slab, e_slab_eV
        Copied into the table (``physical`` False: mock numbers).
    sigma_flag_eV
        Committee spread σ (eV) on the best placement above which a row is flagged.

    Returns
    -------
    ScreenTable
        Ranked rows first (rank 1 = strongest binding), then the unranked ones.
    """
    ranked: list[ScreenRow] = []
    unranked: list[ScreenRow] = []
    kinds: dict[str, str] = {}
    for lig in ligands:
        n_tried = len(lig.placements)
        n_escalated = sum(p.escalated for p in lig.placements)
        kept = kept_placements(lig)
        scored = scored_placements(lig)
        base = {
            "ligand": lig.name,
            "smiles": lig.smiles,
            "reference_species": lig.reference_species,
            "n_tried": n_tried,
            "n_kept": len(kept),
            "n_escalated": n_escalated,
        }
        if lig.error is not None or not scored:
            unranked.append(
                ScreenRow(
                    rank=None,
                    best_binding_mode=None,
                    best_placement=None,
                    e_ads_mlip_mean_eV=None,
                    e_ads_mlip_sigma_eV=None,
                    e_ads_dft_eV=None,
                    dft_minus_mlip_eV=None,
                    flags=list(dict.fromkeys(lig.flags)),
                    error=lig.error or _not_ranked_reason(lig),
                    **base,
                )
            )
            continue
        kinds[lig.name] = reference_kind(lig)
        mlip_best = scored[0]
        with_dft = [
            p for p in scored if p.e_ads_dft_eV is not None and math.isfinite(p.e_ads_dft_eV)
        ]
        best = min(with_dft, key=lambda p: p.e_ads_dft_eV) if with_dft else mlip_best  # type: ignore[arg-type, return-value]
        flags = list(lig.flags)
        if best.e_ads_sigma_eV is not None and best.e_ads_sigma_eV > sigma_flag_eV:
            flags.append(sigma_flag(sigma_flag_eV))
        if any(p.hit_step_cap for p in kept):
            flags.append(FLAG_STEP_CAP)
        diff = None
        if best.e_ads_dft_eV is not None:
            diff = best.e_ads_dft_eV - best.e_ads_mean_eV  # type: ignore[operator]
            if best.key != mlip_best.key:
                flags.append(FLAG_DFT_REORDERS)
            if abs(diff) > DFT_FAR_EV:
                flags.append(FLAG_DFT_FAR)
        if len(kept) < FEW_PLACEMENTS:
            flags.append(FLAG_FEW)
        row = ScreenRow(
            rank=None,
            best_binding_mode=best.binding_mode,
            best_placement=best.key,
            e_ads_mlip_mean_eV=best.e_ads_mean_eV,
            e_ads_mlip_sigma_eV=best.e_ads_sigma_eV,
            e_ads_dft_eV=best.e_ads_dft_eV,
            dft_minus_mlip_eV=diff,
            flags=flags,
            **base,
        )
        ranked.append(row)

    notes: list[str] = []
    have_dft = [row.ligand for row in ranked if row.e_ads_dft_eV is not None]
    if not ranked:
        ranked_by = "none"
        notes.append("no ligand could be ranked")
    elif len(have_dft) == len(ranked):
        ranked_by = "dft"
        notes.append("ranked by the DFT E_ads of each ligand's lowest DFT placement")
    else:
        ranked_by = "mlip_mean"
        notes.append("ranked by the committee-mean E_ads of each ligand's best placement")
        if have_dft:
            missing = [row.ligand for row in ranked if row.e_ads_dft_eV is None]
            notes.append(
                f"DFT E_ads exists for {', '.join(have_dft)} but not for {', '.join(missing)}: "
                "all are ranked on the committee mean (a DFT number is never ranked against an "
                "MLIP number); the DFT values are shown beside the rank"
            )
    if len(set(kinds.values())) > 1:
        notes.append(
            "reference species differ ("
            + ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
            + "): E_ads against different kinds of L are not comparable across those ligands"
        )

    def key(row: ScreenRow) -> tuple[float, str]:
        value = row.e_ads_dft_eV if ranked_by == "dft" else row.e_ads_mlip_mean_eV
        return (value, row.ligand)  # type: ignore[return-value]

    rows: list[ScreenRow] = []
    for rank, row in enumerate(sorted(ranked, key=key), start=1):
        extra = []
        if ranked_by == "mlip_mean" and have_dft:
            extra.append(FLAG_RANKED_BY_MLIP)
        if len(set(kinds.values())) > 1:
            extra.append(FLAG_REFERENCE)
        rows.append(
            row.model_copy(
                update={
                    "rank": rank,
                    "ranked_on_eV": key(row)[0],
                    "flags": list(dict.fromkeys(row.flags + extra)),
                }
            )
        )
    return ScreenTable(
        screen=screen,
        engine=engine,
        physical=physical,
        committee=list(committee),
        slab=dict(slab),
        e_slab_eV=dict(e_slab_eV),
        ranked_by=ranked_by,
        sigma_flag_eV=sigma_flag_eV,
        notes=notes,
        rows=rows + unranked,
    )


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{CSV_DECIMALS}f}"
    if isinstance(value, list):
        return ";".join(value)
    return str(value)


def table_csv(table: ScreenTable) -> str:
    """The table as CSV text: a header of :data:`CSV_COLUMNS`, one line per row.

    Energies with :data:`CSV_DECIMALS` decimals, flags joined by ``;``, None as an empty field.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        data = row.model_dump()
        writer.writerow([_csv_value(data[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def write_table(table: ScreenTable, directory: Path) -> dict[str, Path]:
    """Write ``ranking.csv`` and ``ranking.json`` into ``directory`` (each atomically).

    Returns
    -------
    dict
        ``{"csv": path, "json": path}``.
    """
    directory = Path(directory)
    csv_text, json_text = table_csv(table), table.model_dump_json(indent=2)  # both before writing
    csv_path = atomic_write_text(directory / "ranking.csv", csv_text)
    json_path = atomic_write_text(directory / "ranking.json", json_text)
    return {"csv": csv_path, "json": json_path}


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

_MLIP_COLOUR = "#3b6fb6"
_DFT_COLOUR = "#e07b00"
_FLAG_SHORT = {
    FLAG_STEP_CAP: "step cap",
    FLAG_DFT_REORDERS: "DFT reorders",
    FLAG_DFT_FAR: "DFT far",
    FLAG_FEW: "few placements",
    FLAG_REFERENCE: "reference differs",
    FLAG_RANKED_BY_MLIP: "ranked by MLIP",
}


def _short_flag(flag: str) -> str:
    if flag.startswith("sigma>"):
        return "σ" + flag[len("sigma") :]
    return _FLAG_SHORT.get(flag, flag)


def _ranked_by_text(table: ScreenTable) -> str:
    return {
        "dft": "ranked by DFT $E_\\mathrm{ads}$",
        "mlip_mean": "ranked by committee-mean $E_\\mathrm{ads}$",
    }.get(table.ranked_by, "not ranked")


def plot_ranking(table: ScreenTable, ligands: Sequence[LigandScreen], path: Path) -> Path:
    """The ranking figure: one row per ranked ligand, best at the top.

    Per ligand: the best placement's committee mean with ±σ error bars (circle), its DFT E_ads
    where computed (diamond), every refined placement's committee mean as faint dots below and
    every other kept placement's loose single-model E_ads (:func:`loose_e_ads_eV`) as faint
    rings; the flags right of the axes; ligands that could not be screened listed in a note
    below. Labelled "mock (not physical)" when ``table.physical`` is False.
    """
    from dftflow.analysis.plotting import figure_note, new_figure, save_figure

    by_name = {lig.name: lig for lig in ligands}
    ranked = [r for r in table.rows if r.rank is not None]
    unranked = [r for r in table.rows if r.rank is None]
    n = max(len(ranked), 1)
    fig, ax = new_figure(figsize=(6.4, 0.55 * n + 1.4))
    reference_differs = any(FLAG_REFERENCE in r.flags for r in ranked)
    labels = []
    values: list[float] = []
    dft_in_legend = dots_in_legend = loose_in_legend = False
    for i, row in enumerate(ranked):
        y = n - 1 - i
        lig = by_name.get(row.ligand)
        dots = [p.e_ads_mean_eV for p in scored_placements(lig)] if lig is not None else []
        loose = [e for _, e in loose_e_ads_eV(lig, table)] if lig is not None else []
        ax.scatter(
            dots,
            [y - 0.25] * len(dots),
            s=10,
            color="#7f7f7f",
            alpha=0.45,
            linewidths=0,
            label=None if dots_in_legend else "refined placements (committee mean)",
            zorder=2,
        )
        dots_in_legend = True
        if loose:
            ax.scatter(
                loose,
                [y - 0.25] * len(loose),
                s=10,
                facecolors="none",
                edgecolors="#7f7f7f",
                alpha=0.45,
                linewidths=0.6,
                label=None
                if loose_in_legend
                else f"other kept placements (not refined: {table.committee[0]} only)",
                zorder=2,
            )
            loose_in_legend = True
        values += dots + loose  # type: ignore[operator]
        if row.e_ads_mlip_mean_eV is not None:
            ax.errorbar(
                row.e_ads_mlip_mean_eV,
                y,
                xerr=row.e_ads_mlip_sigma_eV or 0.0,
                fmt="o",
                color=_MLIP_COLOUR,
                markersize=5,
                capsize=3,
                elinewidth=1.0,
                label="best placement: committee mean ± σ" if i == 0 else None,
                zorder=3,
            )
            values += [
                row.e_ads_mlip_mean_eV - (row.e_ads_mlip_sigma_eV or 0.0),
                row.e_ads_mlip_mean_eV + (row.e_ads_mlip_sigma_eV or 0.0),
            ]
        if row.e_ads_dft_eV is not None:
            ax.plot(
                row.e_ads_dft_eV,
                y + 0.22,
                "D",
                color=_DFT_COLOUR,
                markeredgecolor="black",
                markeredgewidth=0.5,
                markersize=5,
                ls="none",
                label=None if dft_in_legend else "best placement: DFT",
                zorder=4,
            )
            values.append(row.e_ads_dft_eV)
            dft_in_legend = True
        dagger = "†" if reference_differs else ""
        labels.append(f"{row.rank}. {row.ligand}{dagger}\nL: {row.reference_species}")
        # (reference differs and ranked by MLIP hold for every row: said once, below the axes)
        flags = ", ".join(
            _short_flag(f) for f in row.flags if f not in (FLAG_REFERENCE, FLAG_RANKED_BY_MLIP)
        )
        if flags:
            ax.annotate(
                flags,
                xy=(1.0, y),
                xycoords=("axes fraction", "data"),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                ha="left",
                fontsize=7,
                color="#a00000",
            )
    if ranked:
        ax.set_yticks(range(n - 1, n - 1 - len(ranked), -1))
        ax.set_yticklabels(labels, fontsize=8)
        for y in range(n):
            if y % 2 == 0:
                ax.axhspan(y - 0.5, y + 0.5, color="#f2f2f2", zorder=0)
        lo, hi = min(values + [0.0]), max(values + [0.0])
        pad = 0.08 * max(hi - lo, 0.5)
        ax.set_xlim(lo - pad, hi + pad)
        handles, names = ax.get_legend_handles_labels()
        first = ("best placement: committee mean ± σ", "best placement: DFT")
        order = sorted(range(len(names)), key=lambda k: (names[k] not in first, k))
        ax.legend(
            [handles[k] for k in order],
            [names[k] for k in order],
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=2,
            frameon=False,
            fontsize=7,
            handletextpad=0.3,
            columnspacing=1.0,
        )
    else:
        ax.set_yticks([])
        ax.set_xticks([])
        ax.text(
            0.5, 0.5, "no ligand could be ranked", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_ylim(-0.5, n - 0.5)
    ax.axvline(0.0, color="black", lw=0.8, zorder=1)
    ranked_by = f"; {_ranked_by_text(table)}, strongest at the top" if ranked else ""
    ax.set_xlabel(
        r"$E_\mathrm{ads} = E(\mathrm{slab+L}) - E(\mathrm{slab}) - E(\mathrm{L})$ (eV)" + ranked_by
    )
    notes = []
    if reference_differs:
        notes.append(
            "† reference species L differ in kind between ligands: their E_ads are not comparable"
        )
    if table.ranked_by == "mlip_mean" and any(r.e_ads_dft_eV is not None for r in ranked):
        notes.append(
            "DFT missing for some ligands: all are ranked by the committee mean (blue circles)"
        )
    for row in unranked:
        notes.append(f"not ranked: {row.ligand}: {row.error}")
    if notes:
        text = "\n".join(textwrap.fill(t, 110, subsequent_indent="   ") for t in notes)
        ax.annotate(
            text,
            xy=(0.0, 0.0),
            xycoords="axes fraction",
            xytext=(0, -34),  # below the tick labels and the x label
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=7,
            color="#a00000" if reference_differs else "black",
        )
    with figure_note(None if table.physical else NOT_PHYSICAL_LABEL):
        return save_figure(fig, path)


def plot_parity(
    ligands: Sequence[LigandScreen], path: Path, *, physical: bool = True
) -> Path | None:
    """Committee mean (x, ±σ) vs DFT (y) E_ads of every escalated placement; None without DFT.

    The y = x line, bands of ±0.1 and ±0.2 eV around it, one colour and marker per ligand, and
    MAE and Spearman ρ (:func:`mlip_dft_agreement`) in the title. Labelled "mock (not physical)"
    when ``physical`` is False.
    """
    from dftflow.analysis.plotting import figure_note, new_figure, save_figure

    points = dft_points(ligands)
    if not points:
        return None
    fig, ax = new_figure(figsize=(4.6, 4.2))
    names = list(dict.fromkeys(name for name, _ in points))
    markers = "osD^vP*Xh<>"
    colours = [f"C{i % 10}" for i in range(len(names))]
    xs = [p.e_ads_mean_eV for _, p in points]
    ys = [p.e_ads_dft_eV for _, p in points]
    sig = [p.e_ads_sigma_eV or 0.0 for _, p in points]
    lo = min(min(x - s for x, s in zip(xs, sig, strict=True)), min(ys))  # type: ignore[operator]
    hi = max(max(x + s for x, s in zip(xs, sig, strict=True)), max(ys))  # type: ignore[operator]
    pad = 0.1 * max(hi - lo, 0.5)
    lo, hi = lo - pad, hi + pad
    line = [lo, hi]
    for width, alpha in zip(sorted(PARITY_BANDS_EV, reverse=True), (0.10, 0.22), strict=True):
        ax.fill_between(
            line,
            [lo - width, hi - width],
            [lo + width, hi + width],
            color="#3b6fb6",
            alpha=alpha,
            linewidth=0,
            label=f"±{width:g} eV",
            zorder=0,
        )
    ax.plot(line, line, color="black", lw=0.8, ls="--", label="y = x", zorder=1)
    for i, name in enumerate(names):
        own = [p for n_, p in points if n_ == name]
        ax.errorbar(
            [p.e_ads_mean_eV for p in own],
            [p.e_ads_dft_eV for p in own],
            xerr=[p.e_ads_sigma_eV or 0.0 for p in own],
            fmt=markers[i % len(markers)],
            color=colours[i],
            markeredgecolor="black",
            markeredgewidth=0.4,
            markersize=5,
            capsize=2,
            elinewidth=0.8,
            ls="none",
            label=name,
            zorder=3,
        )
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$E_\mathrm{ads}$, MLIP committee mean ± σ (eV)")
    ax.set_ylabel(r"$E_\mathrm{ads}$, DFT (eV)")
    agreement = mlip_dft_agreement(xs, ys)  # type: ignore[arg-type]
    ax.set_title(_agreement_text(agreement, len(points)))
    ax.legend(  # outside the axes: points far off y = x are never hidden
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        frameon=False,
        fontsize=7,
        ncol=1 if len(names) < 16 else 2,
    )
    with figure_note(None if physical else NOT_PHYSICAL_LABEL):
        return save_figure(fig, path)


def _agreement_text(agreement: Agreement | None, n: int) -> str:
    if agreement is None:
        return f"MLIP vs DFT, n = {n} placements:\nfewer than 3, no MAE or Spearman ρ"
    rho = "undefined" if agreement.spearman_rho is None else f"{agreement.spearman_rho:.2f}"
    return (
        f"MLIP vs DFT, n = {agreement.n} placements:\n"
        f"MAE = {agreement.mae_eV:.3f} eV, Spearman ρ = {rho}"
    )


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _e(value: float | None, fmt: str = "+.3f") -> str:
    if value is None:
        return "n/a"
    text = format(value, fmt)
    return text.replace("-", "+") if float(text) == 0.0 else text  # no "-0.000"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _placement_line(p: PlacementRecord) -> str:
    steps = [s for s in (p.n_steps_loose, p.n_steps_fine) if s is not None]
    step_text = f", {sum(steps)} steps" if steps else ""
    cap = ", **stopped at the step cap** (E_ads an upper bound)" if p.hit_step_cap else ""
    return (
        f"`{p.key}` ({p.mode_enumerated} → {p.binding_mode or 'unlabelled'}, site {p.site}, "
        f"{p.azimuth_deg:g}°, {p.form}{', H on Br' if p.dissociate else ''}{step_text}{cap})"
    )


def report_section(
    table: ScreenTable,
    ligands: Sequence[LigandScreen],
    figures: dict[str, Path],
    *,
    base: Path | None = None,
) -> str:
    """The "Ligand screen" section of a report (Markdown).

    The ranked table; the figures; per ligand what was tried, kept and escalated, every excluded
    placement with its reason, every step-capped placement labelled, the reference species; the
    MLIP-vs-DFT agreement (and how many placements off by more than :data:`DFT_FAR_EV` the
    committee's σ > ``table.sigma_flag_eV`` caught). Per-ligand sections follow the table's order.
    Figure links are relative to ``base`` (default: as given).
    """
    physical_label = "" if table.physical else f", {NOT_PHYSICAL_LABEL}"
    md = ["## Ligand screen", ""]
    if not table.physical:
        md += [
            f"> **{NOT_PHYSICAL_LABEL.upper()}**: the numbers of this screen come from the mock "
            "engine of the tests, not from an ML potential or DFT; it tests the workflow only. "
            "Never compare them with experiment or a paper.",
            "",
        ]
    committee = ", ".join(table.committee) or "n/a"
    md += [
        f"Screen **{table.screen}**, engine **{table.engine}{physical_label}**, MLIP committee: "
        f"{committee}. E_ads = E(slab+L) − E(slab) − E(L) in eV (negative binds), L the reference "
        "species of each row; MLIP = committee mean ± σ (σ the population standard deviation "
        "of the members); DFT − MLIP on the same placement.",
        "",
    ]
    for note in table.notes:
        md.append(f"- {note}")
    md += [
        "",
        f"| rank | ligand | reference species L | best mode | best placement | E_ads MLIP "
        f"(eV){physical_label} | E_ads DFT (eV) | DFT − MLIP (eV) | tried / kept / escalated "
        "| flags |",
        "|---:|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in table.rows:
        mlip = (
            "n/a"
            if r.e_ads_mlip_mean_eV is None
            else f"{r.e_ads_mlip_mean_eV:+.3f} ± {_e(r.e_ads_mlip_sigma_eV, '.3f')}"
        )
        flags = ", ".join(r.flags)
        if r.error:
            flags = (flags + "; " if flags else "") + f"**not ranked: {r.error}**"
        md.append(
            f"| {r.rank if r.rank is not None else '—'} | {_md_cell(r.ligand)} | "
            f"{_md_cell(r.reference_species)} | {r.best_binding_mode or 'n/a'} | "
            f"{r.best_placement or 'n/a'} | {mlip} | {_e(r.e_ads_dft_eV)} | "
            f"{_e(r.dft_minus_mlip_eV)} | {r.n_tried} / {r.n_kept} / {r.n_escalated} | "
            f"{_md_cell(flags) or '—'} |"
        )
    md.append("")
    for title, key in (("Ranking", "ranking"), ("MLIP vs DFT parity", "parity")):
        fig = figures.get(key)
        if fig is not None:
            rel = _relative(fig, base)
            md += [f"![{title}]({quote(rel)})", ""]
    if figures.get("ranking") is not None:
        md += [
            "Ranking figure: per ligand the best placement's committee mean ± σ (blue circle), its "
            "DFT E_ads where computed (orange diamond), every refined placement's committee mean "
            "(grey dots) and every other kept placement's E_ads after its relaxation by "
            "the committee's first member (grey rings); flags right of each row.",
            "",
        ]

    # ---- agreement ----------------------------------------------------------------------
    md += ["### MLIP committee vs DFT", ""]
    points = dft_points(ligands)
    agreement = ligands_agreement(ligands)
    if not points:
        md.append("- No placement was computed with DFT.")
    else:
        md.append(f"- {_agreement_text(agreement, len(points)).replace(chr(10), ' ')}.")
        far = [p for _, p in points if abs(p.e_ads_dft_eV - p.e_ads_mean_eV) > DFT_FAR_EV]  # type: ignore[operator]
        sigma_flag_eV = table.sigma_flag_eV
        caught = [p for p in far if (p.e_ads_sigma_eV or 0.0) > sigma_flag_eV]
        md.append(
            f"- {len(far)} of {len(points)} placements have |DFT − MLIP| > {DFT_FAR_EV:g} eV; "
            f"the committee's σ > {sigma_flag_eV:g} eV flagged {len(caught)} of them."
        )
    md.append("")

    # ---- per ligand -----------------------------------------------------------------------
    md += ["### Placements per ligand", ""]
    order = {r.ligand: i for i, r in enumerate(table.rows)}
    for lig in sorted(ligands, key=lambda lig: order.get(lig.name, len(order))):
        md += [f"#### {lig.name}", ""]
        if lig.error:
            smiles = f"SMILES `{lig.smiles}`: " if lig.smiles else ""
            md.append(f"- {smiles}**not screened: {lig.error}**")
        else:
            md.append(
                f"- SMILES `{lig.smiles}`, anchor {lig.anchor}; reference species L: "
                f"{lig.reference_species} ({reference_kind(lig)}, form {lig.reference_form})."
            )
        if lig.error and not lig.placements:
            md.append("")
            continue
        kept = lig.kept()
        n_kept = len(kept_placements(lig))
        escalated = [p for p in lig.placements if p.escalated]
        by_mode = ", ".join(f"{m} {c}" for m, c in lig.n_by_mode.items())
        md.append(
            f"- Placements: {lig.n_enumerated} enumerated"
            + (f" ({by_mode})" if by_mode else "")
            + f", {len(lig.placements)} relaxed, {n_kept} kept (not excluded, not duplicates), "
            f"{len(kept)} of them refined with the committee, {len(escalated)} escalated to DFT."
        )
        excluded = [p for p in lig.placements if p.excluded]
        if excluded:
            md.append("- Excluded (not ranked):")
            for p in excluded:
                why = p.reason or ", ".join(p.anomalies) or "no reason recorded"
                md.append(f"  - {_placement_line(p)}: {why}")
        dups = [p for p in lig.placements if not p.excluded and p.duplicate_of is not None]
        if dups:
            md.append(
                "- Duplicates (same geometry after relaxation): "
                + ", ".join(f"`{p.key}` = `{p.duplicate_of}`" for p in dups)
            )
        no_energy = [
            p
            for p in lig.placements
            if not p.excluded and p.duplicate_of is None and p.e_ads_mean_eV is None
        ]
        for p in no_energy:
            why = p.stopped_early or "no committee E_ads"
            md.append(f"- Not ranked: {_placement_line(p)}: {why}")
        capped = [p for p in kept_placements(lig) if p.hit_step_cap]
        for p in capped:
            md.append(f"- Kept but step-capped: {_placement_line(p)}")
        if kept:
            shown = kept[:10] + [p for p in kept[10:] if p.escalated]
            md.append("- Refined, lowest committee E_ads first (every escalated one shown):")
            for p in shown:
                dft = "" if p.e_ads_dft_eV is None else f", DFT {p.e_ads_dft_eV:+.3f}"
                md.append(
                    f"  - {_placement_line(p)}: MLIP {p.e_ads_mean_eV:+.3f} ± "
                    f"{_e(p.e_ads_sigma_eV, '.3f')}{dft} eV"
                    + (f" (escalated: {p.escalation_reason})" if p.escalation_reason else "")
                )
            if len(kept) > len(shown):
                md.append(
                    f"  - ... and {len(kept) - len(shown)} more (the ligand's placement records)"
                )
        loose = loose_e_ads_eV(lig, table)
        if loose:
            lo, hi = min(e for _, e in loose), max(e for _, e in loose)
            md.append(
                f"- Kept, not refined: {len(loose)}, E_ads ({table.committee[0]} only) "
                f"{lo:+.3f} to {hi:+.3f} eV."
            )
        for flag in lig.flags:
            md.append(f"- flag: {flag}")
        md.append("")
    return "\n".join(md)


def _relative(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


def write_report(
    table: ScreenTable,
    ligands: Sequence[LigandScreen],
    directory: Path,
    *,
    name: str = "screen_report.md",
) -> Path:
    """Write ``directory/<name>`` (+ the same name ``.html``), ``ranking.png`` and ``parity.png``.

    ``parity.png`` only when a placement was computed with DFT. Every file is written atomically.
    The default name keeps the screen's report apart from a study's ``report/report.md``.

    Returns
    -------
    Path
        The Markdown report.
    """
    from dftflow.analysis.report import markdown_to_html

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {"ranking": plot_ranking(table, ligands, directory / "ranking.png")}
    parity = plot_parity(ligands, directory / "parity.png", physical=table.physical)
    if parity is not None:
        figures["parity"] = parity
    text = f"# Screen report: {table.screen}\n\n" + report_section(
        table, ligands, figures, base=directory
    )
    path = atomic_write_text(directory / name, text)
    html = markdown_to_html(text, title=f"Screen report: {table.screen}")
    atomic_write_text(path.with_suffix(".html"), html)
    return path
