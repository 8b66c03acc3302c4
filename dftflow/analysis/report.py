"""The study report: ``STUDY_DIR/report/report.md`` (+ ``report.html``) with figures.

Sections: adsorption energies (table + bar chart beside the paper's values), DOS panels (clean slab
and each ligand's complex), mid-gap verdicts and the trap-state question, charge density differences
(planar average + Δq, isosurfaces), comparison with the paper (computed from the numbers) and
provenance. Missing pieces (a ligand without Δρ, a TaskDoc that does not exist ...) are reported as
missing with the reason; they never stop the report.
"""

from __future__ import annotations

import html
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from dftflow.errors import DftflowError, InputError, OutputError
from dftflow.fileio import atomic_write_text
from dftflow.inputs import params
from dftflow.inputs.params import PAPER_E_ADS_EV
from dftflow.schemas import (
    CHARGED_CELL_NOTE,
    NOT_PHYSICAL_LABEL,
    NOT_PHYSICAL_NOTE,
    LigandResult,
    StudySummary,
    TaskDoc,
)
from dftflow.structures.geometry import vacuum_width_A

#: Extra Gaussian broadening of the report's DOS panels, eV (display only; the runs' own
#: smearing is their SIGMA).
DOS_BROADENING_EV = 0.05


def load_summary(study_dir: str | Path) -> StudySummary:
    """Read ``STUDY_DIR/summary.json`` (one-line error when missing or invalid)."""
    path = Path(study_dir) / "summary.json"
    if not Path(study_dir).is_dir():
        raise OutputError(f"study directory {study_dir} does not exist")
    if not path.is_file():
        raise OutputError(f"no summary.json in {study_dir} (has the study finished?)")
    try:
        return StudySummary.model_validate_json(path.read_text())
    except Exception as exc:
        raise OutputError(f"cannot read {path}: {type(exc).__name__}") from exc


def _resolve(study_dir: Path, path: str | None) -> Path | None:
    if not path:
        return None
    p = Path(path)
    return p if p.is_absolute() else study_dir / p


def _taskdoc(study_dir: Path, path: str | None) -> tuple[TaskDoc | None, str | None]:
    """(TaskDoc, None) or (None, reason)."""
    p = _resolve(study_dir, path)
    if p is None:
        return None, "not in summary.json"
    try:
        doc = TaskDoc.from_json_file(p)
    except FileNotFoundError:
        return None, f"TaskDoc {p} missing"
    except Exception as exc:  # invalid JSON / schema
        return None, f"TaskDoc {p} unreadable ({type(exc).__name__})"
    run = _resolve(study_dir, doc.directory)
    if run is not None:
        doc = doc.model_copy(update={"directory": str(run)})
    return doc, None


def _paper_value(lig: LigandResult) -> float | None:
    if lig.paper_e_ads_eV is not None:
        return lig.paper_e_ads_eV
    for name, value in PAPER_E_ADS_EV.items():
        if name.lower() == lig.ligand.lower():
            return value
    return None


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("dftflow", "pymatgen", "numpy", "matplotlib", "scikit-image"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _rel(path: Path | str, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _image(alt: str, path: Path | str, base: Path) -> str:
    """Markdown image of ``path`` relative to ``base``, its URL percent-encoded.

    A file name with spaces, parentheses or non-ASCII characters stays one image in report.md and
    report.html.
    """
    from urllib.parse import quote

    return f"![{alt}]({quote(_rel(path, base))})"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_report(study_dir: str | Path, summary: StudySummary) -> Path:
    """Write the Markdown (and HTML) report of a finished study.

    Parameters
    ----------
    study_dir
        The study directory (TaskDoc paths in ``summary`` are relative to it unless absolute).
    summary
        The study's :class:`~dftflow.schemas.StudySummary`.

    Returns
    -------
    Path
        ``STUDY_DIR/report/report.md``.
    """
    from dftflow.analysis.plotting import figure_note

    study_dir = Path(study_dir)
    out = study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    physical = summary.physical and all(lig.physical for lig in summary.ligands)
    engine = summary.engine if physical else f"{summary.engine}, {NOT_PHYSICAL_LABEL}"
    md: list[str] = [f"# Study report: {summary.study}", ""]
    if not physical:
        md += [
            f"> **{NOT_PHYSICAL_LABEL.upper()}**: {summary.physical_note or NOT_PHYSICAL_NOTE}. "
            "Every number, table and figure below tests the workflow only; none is compared "
            "with the paper.",
            "",
        ]
    md += [
        f"Engine: **{engine}**. Energies in eV; E_ads = E(slab+L) − E(slab) − "
        "E(L), negative = binding; the reference species L is stated per row.",
        "",
    ]
    facts: dict[str, Any] = {
        "e_ads": {},
        "paper": {},
        "midgap": {},
        "transfer": {},
        "physical": physical,
    }
    with figure_note(None if physical else NOT_PHYSICAL_LABEL):
        md += _report_body(study_dir, summary, out, facts)
    text = "\n".join(md)
    path = atomic_write_text(out / "report.md", text)
    html_text = markdown_to_html(text, title=f"Study report: {summary.study}")
    atomic_write_text(out / "report.html", html_text)
    return path


def _report_body(study_dir: Path, summary: StudySummary, out: Path, facts: dict) -> list[str]:
    """Every section of the report after its title (figures written into ``out``)."""
    from dftflow.analysis.adsorption import (
        AdsorptionRow,
        adsorption_table_markdown,
        plot_adsorption_bars,
    )

    md: list[str] = []

    # ---- adsorption energies -----------------------------------------------------------
    md += ["## Adsorption energies", ""]
    rows = []
    for lig in summary.ligands:
        paper = _paper_value(lig)
        rows.append(
            AdsorptionRow(
                ligand=lig.ligand,
                reference_species=lig.reference_species,
                model=lig.model,
                e_ads_eV=lig.e_ads_eV,
                converged=lig.converged,
                engine=lig.engine or summary.engine,
                paper_e_ads_eV=paper,
                physical=facts["physical"],
            )
        )
        facts["e_ads"][lig.ligand] = lig.e_ads_eV
        facts["paper"][lig.ligand] = paper
    if rows:
        md.append(adsorption_table_markdown(rows))
        try:
            png = plot_adsorption_bars(rows, out / "eads.png")
            md += [_image("Adsorption energies", png, out), ""]
        except DftflowError as exc:
            md += [f"_Bar chart not drawn: {exc}_", ""]
        for lig in summary.ligands:
            if lig.placements:
                md.append(f"Configurations tried for {lig.ligand} (E_ads uses the lowest):")
                for p in lig.placements:
                    e = "n/a" if p.energy_eV is None else f"{p.energy_eV:.4f} eV"
                    md.append(f"- {p.label} ({p.model}): {e}, converged={p.converged}")
                md.append("")
            for note in lig.notes:
                md.append(f"- note ({lig.ligand}): {note}")
    else:
        md += ["_No ligand results in summary.json._", ""]

    systems, missing = study_systems(study_dir, summary)
    # ---- settings -------------------------------------------------------------------
    md += ["", "## Calculation settings", ""]
    md += settings_lines(systems)
    md += ["", "## Charge states", ""]
    md += charge_lines(study_dir, summary)

    # ---- DOS ------------------------------------------------------------------------
    midgap = midgap_reports(systems)
    models = {lig.ligand: lig.model for lig in summary.ligands}
    md += ["", "## Densities of states", ""]
    md += _dos_section(systems, out, missing, facts, models=models, midgap=midgap)

    # ---- mid-gap states -------------------------------------------------------------
    md += ["", "## Mid-gap (trap) states", ""]
    md += _midgap_section(systems, summary, out, facts, midgap)

    # ---- trap states at surface defects --------------------------------------------------
    if summary.traps is not None:
        md += ["", "## Trap states at surface defects", ""]
        md += _traps_section(study_dir, summary, out, facts)

    # ---- charge density differences ---------------------------------------------------
    md += ["", "## Charge density differences", ""]
    md += _chgdiff_section(study_dir, summary, out, facts)

    # ---- comparison with the paper -----------------------------------------------------
    md += ["", "## Comparison with the paper", ""]
    md += _paper_comparison(facts)

    # ---- provenance ---------------------------------------------------------------------
    engine_label = summary.engine
    if not facts["physical"]:
        engine_label += f" ({NOT_PHYSICAL_LABEL})"
    md += ["", "## Provenance", "", f"- engine: {engine_label}"]
    for k, v in _versions().items():
        md.append(f"- {k} {v}")
    for k, v in sorted(summary.parameters.items()):
        md.append(f"- parameter {k} = {v}")
    for k, v in sorted(summary.provenance.items()):
        md.append(f"- {k}: {v}")
    for note in summary.notes:
        md.append(f"- note: {note}")
    md.append("")
    return md


def charge_lines(study_dir: Path, summary: StudySummary) -> list[str]:
    """Markdown bullets: what each ligand's runs computed, and how a charged cell is compensated.

    Read from the static TaskDocs (``charge_e``, ``nelect``): anion/cation with its charge,
    radical (odd electron count) or neutral.
    """
    md: list[str] = []
    charged = False
    for lig in summary.ligands:
        parts = []
        for role in ("complex_static", "molecule_static"):
            doc, why = _taskdoc(study_dir, lig.taskdocs.get(role))
            if doc is None:
                parts.append(f"{role}: {why}")
                continue
            charged = charged or bool(doc.charge_e)
            nel = f", {doc.nelect:g} valence electrons" if doc.nelect is not None else ""
            spin = (doc.metadata.get("gpaw") or {}).get("spin_treatment")
            nel += f" ({spin})" if spin else ""
            parts.append(f"{role.replace('_static', '')} {doc.charge_state}{nel}")
        md.append(f"- {lig.ligand} (L = {lig.reference_species}): " + "; ".join(parts) + ".")
    if charged:
        md.append(f"- Compensation: {CHARGED_CELL_NOTE}.")
    elif summary.ligands:
        md.append(
            "- Every cell is neutral (no NELECT set: the valence electrons of the POTCARs/"
            "setups); odd-electron cells are spin-polarised (VASP ISPIN 2), except that the "
            "embedded engine keeps a slab's spin-restricted result when the odd electron spreads "
            "over a band (stated per calculation above)."
        )
    return md


def _cell_and_vacuum(doc: TaskDoc) -> str:
    st = doc.final_structure()
    a, b, c = st.lattice.abc
    gap = vacuum_width_A(st, 2)
    return f"cell {a:.2f} × {b:.2f} × {c:.2f} Å, vacuum (widest atom-free gap along z) {gap:.1f} Å"


def settings_lines(systems: list[tuple[str, TaskDoc]]) -> list[str]:
    """Markdown bullets stating the settings of the single points and relaxations actually run.

    Read from the static TaskDocs (embedded: GPAW basis, grid spacing and points, k-mesh, smearing,
    spin, dipole correction, CHGNet model and force limit; VASP: the INCAR tags that set the
    precision), plus the cell and vacuum of each system.
    """
    if not systems:
        return ["- No static calculation found: settings unknown."]
    md: list[str] = []
    label, doc = systems[-1]
    emb = doc.parameters.get("embedded")
    gpaw = doc.metadata.get("gpaw") if emb else None
    if emb and gpaw:
        gp = gpaw.get("parameters", {})
        md += [
            f"- Single points: GPAW {gp.get('mode', 'lcao')} PAW-{emb.get('xc')}, basis "
            f"{emb.get('basis')}, grid spacing {emb.get('grid_spacing_A')} Å "
            f"({'×'.join(map(str, gpaw.get('gpts', [])))} points), k-mesh "
            f"{'×'.join(map(str, gpaw.get('kpts', [])))} Monkhorst–Pack, {emb.get('smearing')} "
            f"smearing {emb.get('smearing_width_eV')} eV, dipole correction "
            f"{'on' if emb.get('dipole_correction') else 'off'}, spin polarisation "
            f"{emb.get('spin_polarized')} (auto: odd-electron systems, a slab's odd electron "
            "spin-restricted when it spreads over a band), SCF density criterion "
            f"{emb.get('scf_density')} e per valence electron, forces in single points "
            f"{'on' if emb.get('static_forces') else 'off'}.",
            f"- Relaxations: CHGNet {emb.get('chgnet_model')} ({emb.get('optimizer')}) to "
            f"{emb.get('fmax_eV_per_A')} eV/Å, bottom slab layers fixed; energies for E_ads come "
            "from the GPAW single points, not from CHGNet.",
            f"- The paper's VASP settings ({params.settings_sentence()}) belong to "
            "`--engine vasp`; these embedded settings trade precision for a laptop run "
            "(benchmarks/bench_embedded_settings.py measures each choice's effect on E_ads).",
        ]
    else:
        inc = doc.parameters
        keys = ("ENCUT", "EDIFF", "EDIFFG", "ISMEAR", "SIGMA", "GGA", "IDIPOL", "LDIPOL", "ISPIN")
        tags = ", ".join(f"{k} = {inc[k]}" for k in keys if k in inc)
        kp = "×".join(map(str, doc.kpoints)) if doc.kpoints else "?"
        md.append(f"- {doc.engine} ({label} static): {tags}; k-points {kp}.")
        if doc.fft_grid:
            md.append(f"- FFT grid (NGXF×NGYF×NGZF) {'×'.join(map(str, doc.fft_grid))}.")
    cells = {}
    for lab, d in systems:
        cells.setdefault(_cell_and_vacuum(d), []).append(lab)
    for text, labs in cells.items():
        md.append(f"- {', '.join(labs)}: {text}.")
    md.append("")
    return md


def study_systems(
    study_dir: Path, summary: StudySummary
) -> tuple[list[tuple[str, TaskDoc]], list[str]]:
    """(label, static TaskDoc) of the clean slab and each ligand's complex, and what is missing."""
    systems: list[tuple[str, TaskDoc]] = []
    missing: list[str] = []
    doc, why = _taskdoc(study_dir, summary.slab.get("slab_static"))
    if doc is not None:
        systems.append(("clean slab", doc))
    else:
        missing.append(f"clean slab: {why}")
    for lig in summary.ligands:
        doc, why = _taskdoc(study_dir, lig.taskdocs.get("complex_static"))
        if doc is not None:
            systems.append((lig.ligand, doc))
        else:
            missing.append(f"{lig.ligand} complex: {why}")
    return systems, missing


def midgap_reports(systems: list[tuple[str, TaskDoc]]) -> dict[str, tuple[Any, str]]:
    """``{label: (MidgapReport or None, note)}``: each system against the clean slab's edges.

    The clean slab (label ``"clean slab"``) is analysed on its own occupations; every other
    system against it (:func:`dftflow.analysis.midgap.midgap_against`, deep-level alignment with
    the stated Fermi fallback). One detector run per system, shared by the DOS panels (their
    gap-state markers) and the mid-gap section.
    """
    from dftflow.analysis.midgap import midgap_against

    clean = next((doc for label, doc in systems if label == "clean slab"), None)
    out: dict[str, tuple[Any, str]] = {}
    for label, doc in systems:
        reference = None if clean is None or label == "clean slab" else clean.directory
        out[label] = midgap_against(doc.directory, reference, ligand_indices=doc.ligand_indices)
    return out


def system_title(label: str, doc: TaskDoc) -> str:
    """The name a figure gives a study system (never a directory name).

    ``"OA on CsPbBr3 (001)"`` (the study's ligand name on the slab named from its atoms),
    ``"clean CsPbBr3 (001) slab"``.
    """
    from dftflow.analysis.dos import host_name
    from dftflow.analysis.ligand_split import ligand_split

    st = doc.final_structure()
    split = ligand_split(st, doc.ligand_indices)
    host = host_name([st[i].specie.symbol for i in split.slab_indices])
    if label == "clean slab":
        return f"clean {host}" + ("" if host.endswith("slab") else " slab")
    return f"{label} on {host}"


def dos_figure(
    systems: list[tuple[str, TaskDoc]],
    output: Path,
    missing: list[str],
    *,
    dpi: int = 150,
    models: dict[str, str] | None = None,
    midgap: dict[str, tuple[Any, str]] | None = None,
    titles: dict[str, str] | None = None,
) -> tuple[Path | None, dict[str, list[str]], dict[str, float], str]:
    """DOS panels (slab vs ligand projections) of ``systems``; appends failures to ``missing``.

    Each panel is titled :func:`system_title` (or ``titles[label]``) (left) and the ligand's
    adsorption model from
    ``models`` (``{label: model}``, right), and marks the mid-gap detector's states of that
    system (``midgap``: :func:`midgap_reports`, computed here when None).

    The ligand group of each system is its TaskDoc's ``ligand_indices`` (the atoms the builder
    added; the element rule only for a TaskDoc without them, see
    :mod:`dftflow.analysis.ligand_split`), summed site by site; the slab group is every other atom.

    Returns the PNG (None when no system has a DOS), the elements of each group over all systems
    (``{"slab": [...], "ligand": [...]}``; empty when no run has projections: total DOS only), the
    ligand-slab PDOS overlap between -5 and -3 eV per system
    (:func:`dftflow.analysis.dos.group_overlap`, states) and the zero of the energy axis
    (``"vbm"``: each system's host VBM; ``"fermi"`` when a VBM cannot be found).
    """
    from dftflow.analysis.dos import (
        LIGAND_SLAB,
        dos_curves,
        group_overlap,
        mark_gap_states,
        plot_dos_panels,
    )

    # Zero at each system's host VBM: VASP puts E_F of a gapped slab at the VBM but GPAW's
    # Fermi-Dirac E_F sits mid-gap (and a radical adsorbate's hole moves it to the VBM), so E_F
    # is no common zero; the -5..-3 eV overlap window needs one. All systems or none (fermi).
    # The host VBM is the mid-gap detector's (the clean slab's edge aligned onto the system), not
    # the system's own highest occupied state: an occupied gap state would be that, and its
    # marker would sit at or below a zero labelled VBM.
    if midgap is None:
        midgap = midgap_reports(systems)
    try:
        vbms = {label: _host_vbm(midgap.get(label, (None, ""))[0], doc) for label, doc in systems}
        align = "vbm"
    except DftflowError:
        vbms, align = {}, "fermi"
    curves = []
    labels: list[str] = []
    for label, doc in systems:
        kw = {
            "label": (titles or {}).get(label) or system_title(label, doc),
            "sigma_eV": DOS_BROADENING_EV,
            "align": align,
            "vbm_eV": vbms.get(label),
        }
        try:
            curves.append(
                dos_curves(
                    doc.directory, groups=LIGAND_SLAB, ligand_indices=doc.ligand_indices, **kw
                )
            )
        except InputError as exc:  # no projections: the total DOS is still worth showing
            try:
                curves.append(dos_curves(doc.directory, **kw))
                missing.append(f"{label}: total DOS only ({exc})")
            except DftflowError as exc2:
                missing.append(f"{label}: {exc2}")
                continue
        except DftflowError as exc:
            missing.append(f"{label}: {exc}")
            continue
        labels.append(label)
        curves[-1].description = (models or {}).get(label, "")
        report = midgap.get(label, (None, ""))[0]
        if report is not None:
            mark_gap_states(curves[-1], report)
    if not curves:
        return None, {}, {}, align
    overlaps = {label: group_overlap(c) for label, c in zip(labels, curves, strict=True)}
    projected: dict[str, list[str]] = {}
    for c in curves:
        for name, elements in c.group_elements.items():
            projected[name] = sorted(set(projected.get(name, [])) | set(elements))
    png = plot_dos_panels(curves, output, dpi=dpi)
    return png, projected, {k: v for k, v in overlaps.items() if v is not None}, align


def _host_vbm(report, doc: TaskDoc) -> float:
    """Host VBM on the system's scale, eV: the mid-gap ``report``'s (max over spins).

    Without a report: the run's own highest occupied state
    (:func:`dftflow.analysis.dos.host_vbm_eV`).
    """
    from dftflow.analysis.dos import host_vbm_eV

    values = [] if report is None else [v for v in report.vbm_eV.values() if v is not None]
    return max(values) if values else host_vbm_eV(doc.directory)


def ligand_chgdiff(study_dir: Path, lig: LigandResult, out: Path, *, dpi: int = 150):
    """Δρ plots of one ligand from its three static TaskDocs.

    Returns ``(ChgDiffResult, None)``, or ``(None, reason)`` when a piece is missing or unusable.
    """
    from dftflow.analysis.chgdiff import chgdiff_plots

    paths = {}
    reasons = []
    ligand_indices = None
    for role in ("complex_static", "slab_fragment_static", "ligand_fragment_static"):
        doc, why = _taskdoc(study_dir, lig.taskdocs.get(role))
        if doc is None:
            reasons.append(f"{role}: {why}")
            continue
        if role == "complex_static":
            ligand_indices = doc.ligand_indices
        paths[role] = _resolve(study_dir, doc.volumetric_files.get("CHGCAR")) or Path(doc.directory)
    if reasons:
        return None, "; ".join(reasons)
    try:
        res = chgdiff_plots(
            paths["complex_static"],
            paths["slab_fragment_static"],
            paths["ligand_fragment_static"],
            out,
            prefix=f"chgdiff_{_safe(lig.ligand)}",
            dpi=dpi,
            ligand_indices=ligand_indices,
        )
    except DftflowError as exc:
        return None, str(exc)
    return res, None


def _dos_section(
    systems: list[tuple[str, TaskDoc]],
    out: Path,
    missing: list[str],
    facts: dict,
    *,
    models: dict[str, str],
    midgap: dict[str, tuple[Any, str]],
) -> list[str]:
    from dftflow.analysis.ligand_split import ligand_split

    md: list[str] = []
    png, projected, overlaps, align = dos_figure(
        systems, out / "dos.png", missing, models=models, midgap=midgap
    )
    facts["overlap"] = overlaps
    zero = (
        "host valence-band maximum: the clean slab's VBM aligned onto the system by the mid-gap "
        "detector (section below), so a gap state sits above zero (GPAW's and VASP's Fermi "
        "levels of a gapped slab differ: one sits mid-gap, the other at the VBM)"
        if align == "vbm"
        else "Fermi level (no valence-band maximum found in every system)"
    )
    splits = {
        label: ligand_split(doc.final_structure(), doc.ligand_indices) for label, doc in systems
    }
    sources = sorted({sp.ligand_atoms_from for sp in splits.values() if sp.ligand_indices})
    if png is not None:
        host = projected.get("slab", [])
        lig = projected.get("ligand", [])
        lines = (
            f"lines: slab ({', '.join(host)}) and ligand ({', '.join(lig) or 'none'}) projections, "
            f"summed over atoms (ligand atoms: {'; '.join(sources) or 'none'})"
            if projected
            else "no projections available (total DOS only)"
        )
        md += [
            _image("DOS panels", png, out),
            "",
            f"Zero at each system's {zero}; grey: total DOS; {lines}; spin down (if any) "
            "mirrored below zero (spin ↑ above, spin ↓ below, as labelled right of each panel); "
            "magenta dashed lines with a triangle: the states of the mid-gap detector (section "
            "below) at their energies, in the half of their spin.",
            "",
        ]
    n_lig = {label: len(sp.ligand_indices) for label, sp in splits.items()}
    if overlaps:
        md.append(
            "Ligand–slab PDOS overlap between −5 and −3 eV (∫ min(ligand, slab) dE, states; it "
            "grows with the ligand's size, so compare ligands of similar size): "
            + ", ".join(
                f"{k} {v:.3f}" + (f" ({n_lig[k]} ligand atoms)" if k in n_lig else "")
                for k, v in overlaps.items()
            )
            + "."
        )
        md.append("")
    for m in missing:
        md.append(f"- DOS: {m}")
    return md


def _midgap_section(
    systems, summary: StudySummary, out: Path, facts: dict, midgap: dict[str, tuple[Any, str]]
) -> list[str]:
    from dftflow.analysis.midgap import compare_midgap

    md: list[str] = [
        "Host band edges: the clean slab's occupations (VBM = highest occupied, CBM = lowest "
        "empty state); each complex against the clean slab's edges, aligned on a deep level "
        "(projected core-like level of the heaviest common element, else the lowest band "
        "manifold; Fermi-level alignment when neither is possible, as noted). See "
        "dftflow.analysis.midgap for the method.",
        "",
    ]
    reports = {}
    for label, _doc in systems:
        rep, note = midgap[label]
        if rep is None:
            md.append(f"- {label}: mid-gap analysis not possible — {note}")
            continue
        reports[label] = rep
        facts["midgap"][label] = rep.has_midgap_states
        md.append(f"- **{label}**: {rep.verdict}" + (f" ({note})" if note else ""))
    if summary.slab_midgap and "clean slab" not in reports:
        md.append(f"- clean slab (from summary.json): {summary.slab_midgap.get('verdict', 'n/a')}")
    baseline = next((k for k in reports if k.lower() == "oa"), None)
    if baseline is not None:
        md += ["", f"Does each ligand remove the mid-gap states of the {baseline} surface?", ""]
        for label, rep in reports.items():
            if label in (baseline, "clean slab"):
                continue
            cmp = compare_midgap(reports[baseline], rep, ligand=label, system=f"{baseline} surface")
            facts.setdefault("removes", {})[label] = cmp.answer
            md.append(f"- {label}: **{cmp.answer_text}**")
            for ev in cmp.evidence:
                md.append(f"  - {ev}")
    return md


def _traps_section(study_dir: Path, summary: StudySummary, out: Path, facts: dict) -> list[str]:
    """Gap states per system, passivation verdicts, E_ads at the defect, DOS panels, the claim."""
    from dftflow.analysis.midgap import find_midgap_states
    from dftflow.analysis.traps import (
        N_TOP_ATOMS,
        as_trap_study,
        ligand_markdown,
        system_markdown,
    )

    traps = as_trap_study(summary.traps)
    assert traps is not None
    facts["traps"] = traps.claim
    claim = traps.claim
    md = [
        f"The paper: “{claim['claim']}”. **From the computed numbers: {claim['answer']}** — "
        f"{claim['text']}.",
        "",
    ]
    for surface, v in claim["per_surface"].items():
        state = {True: "holds", False: "does not hold", None: "cannot be answered"}[v["holds"]]
        md.append(f"- {surface} surface: {state}: {v['why']}")
    md += [
        "",
        "Surface models: the pristine PbBr2-terminated slab and "
        + ", ".join(traps.defects)
        + " (dftflow.structures.defects: what each removes, the site by symmetry); every ligand "
        "is placed on both, in the same form and against the same reference species. The "
        "paper's “near 0 eV” is on its own energy axis; here gap-state energies are from the "
        "host VBM (the pristine slab's VBM aligned onto each system on a deep level).",
        "",
        "### Gap states per system",
        "",
    ]
    md += system_markdown(traps.systems)
    chars = [
        f"- {ts.label}, {t.energy_from_vbm_eV:+.2f} eV ({t.spin}): {t.character}"
        for ts in traps.systems
        for t in ts.states
        if t.character
    ]
    if chars:
        md += ["", "Character of each gap state (heaviest atoms, 0-based index, weight):", ""]
        md += chars
    md += [
        "",
        "Spin: as each calculation ran (the column above; odd counts marked): VASP spin-"
        "polarises every odd count; the embedded engine computes an odd-electron slab "
        "spin-restricted first and keeps that only when the odd electron spreads over a band, "
        "otherwise it is redone spin-polarised (each TaskDoc's metadata.gpaw.spin_treatment). "
        "Rules: " + "; ".join(traps.rules) + ".",
        "",
        "### Passivation at the defect",
        "",
    ]
    for p in traps.passivation:
        md.append(f"- **{p.ligand} at {p.defect}: {p.verdict}** — {p.text}")
    if not traps.passivation:
        md.append("- no ligand at a defect was analysed")
    md += ["", "### Adsorption energies at the defect vs on the pristine surface", ""]
    md += ligand_markdown(traps.ligands)
    for row in traps.ligands:
        for q in row.placements:
            e = q.get("energy_eV")
            e_text = "n/a" if e is None else f"{e:.4f} eV"
            md.append(
                f"- {row.ligand} at {row.defect}: {q.get('label')} ({q.get('model')}): {e_text}"
            )
        for n in row.notes:
            md.append(f"- note ({row.ligand} at {row.defect}): {n}")
    # DOS panels of the trap systems with their gap states marked (one detector run each)
    systems: list[tuple[str, TaskDoc]] = []
    midgap: dict[str, tuple[Any, str]] = {}
    titles: dict[str, str] = {}
    missing: list[str] = []
    pristine = None
    for ts in traps.systems:
        doc, why = _taskdoc(study_dir, ts.taskdoc)
        if doc is None:
            missing.append(f"{ts.label}: {why}")
            continue
        if ts.label == "pristine slab":
            pristine = doc
        systems.append((ts.label, doc))
        titles[ts.label] = ts.label
    for label, doc in systems:
        ref = None if pristine is None or doc is pristine else pristine.directory
        try:
            midgap[label] = (
                find_midgap_states(
                    doc.directory,
                    reference=ref,
                    ligand_indices=doc.ligand_indices,
                    n_top_atoms=N_TOP_ATOMS,
                ),
                "",
            )
        except DftflowError as exc:
            midgap[label] = (None, str(exc))
    if systems:
        png, _, _, align = dos_figure(
            systems, out / "dos_traps.png", missing, midgap=midgap, titles=titles
        )
        if png is not None:
            md += [
                "",
                _image("DOS panels of the trap study", png, out),
                "",
                "Zero at each system's host VBM"
                + ("" if align == "vbm" else " (Fermi level: no VBM found in every system)")
                + "; spin ↑ above, spin ↓ below zero; magenta dashed lines with a triangle: the "
                "gap states of the table above.",
            ]
    for m in missing:
        md.append(f"- DOS: {m}")
    return md


def _chgdiff_section(study_dir: Path, summary: StudySummary, out: Path, facts: dict) -> list[str]:
    from dftflow.analysis.chgdiff import ISO_PERCENTILE

    md: list[str] = []
    for lig in summary.ligands:
        res, why = ligand_chgdiff(study_dir, lig, out)
        if res is None:
            md.append(f"- {lig.ligand}: no Δρ — {why}")
            continue
        facts["transfer"][lig.ligand] = res.charge_transfer_e
        ct = "n/a" if res.charge_transfer_e is None else f"{res.charge_transfer_e:+.3f} e"
        plane = "n/a" if res.plane_z_A is None else f"{res.plane_z_A:.2f}"
        md += [f"- warning ({lig.ligand}): {note}" for note in res.notes]
        md += [
            "",
            f"### {lig.ligand}",
            "",
            f"∫Δρ dV = {res.total_charge_e:+.4f} e; charge transfer across the ligand/surface "
            f"plane (z = {plane} Å; electrons gained on the slab side, + = ligand → slab): {ct}; "
            f"ligand atoms: {res.ligand_atoms_from} ({len(res.ligand_indices)} atoms).",
            "",
            _image("planar average", res.files["planar_average"], out)
            + " "
            + _image("slice", res.files["slice"], out)
            + " "
            + _image("isosurface", res.files["isosurface"], out),
            "",
            "Planar average: Δq(z) = ∫ Δρ dV from the middle of the vacuum below the slab up to "
            "z (Δq > 0: electrons accumulated below z). Slice: Δρ in the plane through its "
            "largest |Δρ|, the ligand drawn whole. Isosurfaces at "
            + (
                f"±{res.isovalue_e_per_A3:.1e} e/Å³ "
                f"(the {ISO_PERCENTILE:g}th percentile of |Δρ| at the interface)"
                if res.isovalue_e_per_A3 is not None
                else "the isovalue printed on the figure"
            )
            + ": yellow accumulation, cyan depletion.",
            "",
        ]
    return md


def _paper_comparison(facts: dict) -> list[str]:
    md: list[str] = []
    if not facts.get("physical", True):
        return [
            f"- Not compared: the numbers are {NOT_PHYSICAL_LABEL}; only a physical engine "
            "(embedded, vasp) gives numbers to set beside the paper's."
        ]
    pairs = {k: (v, facts["paper"].get(k)) for k, v in facts["e_ads"].items()}
    both = {k: v for k, v in pairs.items() if v[0] is not None and v[1] is not None}
    if not both:
        md.append("- No ligand has both a computed and a published E_ads.")
    for k, (ours, paper) in both.items():
        diff = ours - paper
        verdict = (
            "agrees (within 0.1 eV)" if abs(diff) <= 0.1 else ("differs by " + f"{diff:+.2f} eV")
        )
        md.append(f"- {k}: E_ads {ours:+.2f} eV vs paper {paper:+.2f} eV — {verdict}.")
    if len(both) >= 2:
        ours_order = sorted(both, key=lambda k: both[k][0])
        paper_order = sorted(both, key=lambda k: both[k][1])
        same = ours_order == paper_order
        md.append(
            f"- Binding order (strongest first): ours {' > '.join(ours_order)}; paper "
            f"{' > '.join(paper_order)} — {'same order' if same else 'different order'}."
        )
    if any(abs(v[0] - v[1]) > 0.1 for v in both.values()):
        md.append(
            "- Likely reasons for differences: the adsorption model and reference species L "
            "(neutral acid vs anion vs radical), the engine and its settings (PBE without "
            "dispersion, basis, k-points), and the geometry of the lowest configuration found."
        )
    removes = facts.get("removes", {})
    if "OA" in facts["midgap"]:
        oa = facts["midgap"]["OA"]
        md.append(
            f"- Paper: the OA surface shows mid-gap states. Here: "
            f"{'mid-gap states found' if oa else 'no mid-gap states found'} for OA."
        )
        if not oa:
            md.append(
                "  - Likely reasons: surface trap states of lead halides come from under-"
                "coordinated Pb or halide (vacancies, Pb-rich or defective surfaces); a slab "
                "without such defects, with the OA binding mode modelled here, stays gap-clean. "
                "The paper's OA surface model (binding mode, coverage, defects) is not reproduced "
                "here."
            )
        for lig, ans in removes.items():
            txt = {
                True: "removes them (as in the paper)" if oa else "n/a",
                False: "does not remove them (the paper says it does)",
                None: "not applicable (no OA trap states here)",
            }[ans]
            md.append(f"  - {lig}: {txt}")
    if facts.get("traps"):
        claim = facts["traps"]
        md.append(
            f"- Paper: {claim['claim']}. Tested on the pristine and defective surfaces "
            f"(section “Trap states at surface defects”): **{claim['answer']}** — "
            f"{claim['text']}."
        )
    ov = facts.get("overlap", {})
    if "OA" in ov and len(ov) > 1:
        others = {k: v for k, v in ov.items() if k not in ("OA", "clean slab")}
        if others:
            larger = [k for k, v in others.items() if v > ov["OA"]]
            md.append(
                "- Paper: the ligand–QD PDOS overlap between −5 and −3 eV grows for AcO⁻/2-HA "
                f"relative to OA. Here: OA {ov['OA']:.3f}, "
                + ", ".join(f"{k} {v:.3f}" for k, v in others.items())
                + f" states — larger than OA for {', '.join(larger) or 'none'}."
            )
    tr = facts["transfer"]
    if "OA" in tr and "2-HA" in tr and tr["OA"] is not None and tr["2-HA"] is not None:
        more = abs(tr["2-HA"]) > abs(tr["OA"])
        md.append(
            f"- Paper: more charge transfer for 2-HA than OA. Here |Δq| 2-HA "
            f"{abs(tr['2-HA']):.3f} e vs OA {abs(tr['OA']):.3f} e — "
            f"{'agrees' if more else 'differs'}."
        )
    return md


#: Style of report.html: figures two per row, tables with cell borders.
HTML_STYLE = (
    "body{font-family:sans-serif;max-width:1000px}"
    "img{max-width:48%}"
    "table{border-collapse:collapse}th,td{border:1px solid #888;padding:3px 6px}"
)


def markdown_to_html(text: str, title: str = "report") -> str:
    """The report's Markdown as a standalone HTML page (markdown-it-py, CommonMark + tables).

    Raw HTML in the Markdown is escaped, not passed through.

    Parameters
    ----------
    text
        Markdown (CommonMark with GitHub-style pipe tables).
    title
        The page title.

    Returns
    -------
    str
        A complete HTML document (UTF-8).
    """
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{HTML_STYLE}</style></head><body>\n{body}</body></html>\n"
    )
