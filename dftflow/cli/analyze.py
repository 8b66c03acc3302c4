# ruff: noqa: B008 - typer declares options as argument defaults
"""CLI: ``dftflow analyze eads|dos|midgap|chgdiff|locpot`` and ``dftflow report STUDY_DIR``.

Every user mistake (missing/truncated/corrupt files, mismatched grids or lattices, no projections
for groups, empty window) raises a :class:`~dftflow.errors.DftflowError`: one line, exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dftflow.cli.common import check_writable, echo_json
from dftflow.errors import DftflowError, InputError

analyze_app = typer.Typer(
    name="analyze",
    help="Adsorption energies, DOS, mid-gap states, charge density differences, LOCPOT.",
    no_args_is_help=True,
)


def _mock_note(paths: list[Path]) -> str | None:
    """``"mock (not physical)"`` when a run among ``paths`` is a mock run, else None.

    ``paths`` are run directories or files in them; figures of mock numbers carry the note.
    """
    from dftflow.parse.run import load_taskdoc
    from dftflow.schemas import NOT_PHYSICAL_LABEL

    for path in paths:
        try:
            if not load_taskdoc(path).physical:
                return NOT_PHYSICAL_LABEL
        except DftflowError:  # not a run directory: nothing says it is a mock run
            continue
    return None


def _echo(data: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        echo_json(data)
    else:
        for line in lines:
            typer.echo(line)


@analyze_app.command("eads")
def eads_cmd(
    complex_dir: Path = typer.Option(..., "--complex", help="Run directory of slab+ligand."),
    slab_dir: Path = typer.Option(..., "--slab", help="Run directory of the clean slab."),
    adsorbate_dir: Path = typer.Option(..., "--adsorbate", help="Run directory of the ligand L."),
    slab_multiplier: int = typer.Option(
        1, "--slab-multiplier", help="Slab cells per complex cell."
    ),
    reference_species: str = typer.Option(
        None,
        "--reference-species",
        help="What L is (e.g. 'neutral acid', 'acetate radical'); default: what the adsorbate "
        "run computed (anion/cation with its charge, radical, neutral). Must agree with it.",
    ),
    allow_unconverged: bool = typer.Option(False, "--allow-unconverged"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (key e_ads_eV)."),
) -> None:
    """E_ads = E(complex) - N*E(slab) - E(adsorbate) from e_0 energies, eV."""
    from dftflow.analysis.adsorption import adsorption_energy
    from dftflow.schemas import NOT_PHYSICAL_LABEL

    result = adsorption_energy(
        complex_dir,
        slab_dir,
        adsorbate_dir,
        slab_multiplier=slab_multiplier,
        reference_species=reference_species,
        allow_unconverged=allow_unconverged,
    )
    _echo(
        result.model_dump(mode="json"),
        as_json,
        [
            ("" if result.physical else f"{NOT_PHYSICAL_LABEL}: ")
            + f"E_ads = {result.e_ads_eV:+.4f} eV (L = {result.reference_species}; "
            f"E_complex {result.e_complex_eV:.4f}, {result.slab_multiplier} x E_slab "
            f"{result.e_slab_eV:.4f}, E_L {result.e_adsorbate_eV:.4f} eV)",
            *[f"warning: {w}" for w in result.warnings],
        ],
    )


@analyze_app.command("dos")
def dos_cmd(
    directories: list[Path] = typer.Argument(..., help="Run directories (one panel each)."),
    groups: list[str] = typer.Option(
        None,
        "--groups",
        help="NAME=El1,El2, by element (repeatable). Default: ligand (the atoms the builder "
        "added, from the run's taskdoc.json) vs slab, by atom.",
    ),
    elements: bool = typer.Option(False, "--elements", help="Plot element projections."),
    align: str = typer.Option("fermi", "--align", help="Zero at fermi or vbm."),
    window: tuple[float, float] = typer.Option((-6.0, 4.0), "--window", help="E range, eV."),
    sigma: float = typer.Option(0.0, "--sigma", help="Extra Gaussian broadening, eV."),
    labels: list[str] = typer.Option(
        None,
        "--label",
        help="Panel title (the system's name) per directory. Default: from the run's atoms, "
        "e.g. 'C2H3O2 on CsPbBr3 (001)', 'clean CsPbBr3 (001) slab'.",
    ),
    reference: Path = typer.Option(
        None,
        "--reference",
        help="Clean host run: the gap states marked in each panel are those inside its aligned "
        "edges (as analyze midgap --reference). Default: each run's own occupation edges.",
    ),
    output: Path = typer.Option(None, "-o", "--output", help="PNG to write."),
    dpi: int = typer.Option(150, "--dpi"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Total/element/group DOS of one or several runs on one energy axis.

    The figure marks the mid-gap detector's states of each run (JSON: gap_states per system).
    """
    from dftflow.analysis.dos import (
        common_groups,
        dos_curves,
        dos_has_projections,
        mark_gap_states,
        parse_groups,
        plot_dos_panels,
    )
    from dftflow.analysis.midgap import midgap_against
    from dftflow.analysis.plotting import figure_note

    if labels and len(labels) != len(directories):
        raise InputError(f"{len(labels)} labels for {len(directories)} directories")
    if reference is not None and not reference.exists():
        raise InputError(f"reference run {reference} does not exist")
    if output is not None:
        check_writable(output)
    parsed = parse_groups(groups)
    defaulted = parsed is None and not elements
    if defaulted:  # the same slab/ligand (or per-element) curves in every panel that has them
        parsed = common_groups(directories)
    reports = [midgap_against(d, None if reference == d else reference) for d in directories]
    curves = []
    notes = []
    for i, (d, (report, note)) in enumerate(zip(directories, reports, strict=True)):
        # --align vbm: the detector's host VBM (with --reference the host's, aligned), so a
        # filled gap state sits above zero; without a report the run's own highest occupied
        vbms = [] if report is None else [v for v in report.vbm_eV.values() if v is not None]
        curves.append(
            dos_curves(
                d,
                groups=None if defaulted and not dos_has_projections(d) else parsed,
                elements=elements,
                align=align,
                window_eV=window,
                sigma_eV=sigma,
                label=labels[i] if labels else None,
                vbm_eV=max(vbms) if vbms else None,
            )
        )
        if report is not None:
            mark_gap_states(curves[-1], report)
        if note:
            state = "not marked: " if report is None else ""
            notes.append(f"{curves[-1].label}: gap states {state}{note}")
    if output is not None:
        with figure_note(_mock_note(list(directories))):
            plot_dos_panels(curves, output, show_elements=elements, dpi=dpi)
    data = {
        "systems": [c.model_dump(mode="json") for c in curves],
        "output": None if output is None else str(output),
    }
    _echo(
        data,
        as_json,
        [
            f"{c.label}: E_F = {c.efermi_eV:.4f} eV, zero = {c.zero_eV:.4f} eV ({c.align}), "
            f"groups: {', '.join(c.groups) or 'none'}"
            + (f" (ligand atoms: {c.ligand_atoms_from})" if c.ligand_atoms_from else "")
            + "; gap states at "
            + (", ".join(f"{g.energy_eV:+.2f} eV ({g.spin})" for g in c.gap_states) or "none")
            for c in curves
        ]
        + notes
        + ([f"wrote {output}"] if output else []),
    )


@analyze_app.command("midgap")
def midgap_cmd(
    directory: Path = typer.Argument(..., help="Run directory (eigenvalues + occupations)."),
    reference: Path = typer.Option(
        None, "--reference", help="Clean host run (bulk or slab): its aligned edges are the gap."
    ),
    align: str = typer.Option(
        "deep",
        "--align",
        help="Reference alignment: deep (projected core level, else the lowest band manifold "
        "of the eigenvalues), fermi, none.",
    ),
    tolerance: float = typer.Option(0.05, "--tolerance", help="Distance from edges, eV."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print JSON: midgap_states (energy_eV, spin, occupation, filling, electrons, "
        "distance_to_vbm_eV, distance_to_cbm_eV, n_kpoints, element_weights, top_atoms ...), "
        "has_midgap_states, vbm_eV/cbm_eV/gap_eV per spin, efermi_eV, reference (mode, "
        "alignment, method, shift_eV ...), moved_band_states, edge_rule, verdict.",
    ),
) -> None:
    """Report every state inside the host band gap (trap states).

    Without --reference the edges are the run's own occupation edges (only levels pinned at E_F
    can be gap states); with --reference the clean host's edges, aligned, define the gap.
    """
    from dftflow.analysis.midgap import find_midgap_states

    report = find_midgap_states(directory, reference=reference, align=align, tolerance_eV=tolerance)
    ref = report.reference
    lines = [report.verdict]
    if ref["mode"] == "reference":
        lines.append(
            f"reference {ref['directory']}: shift {ref['shift_eV']:+.4f} eV ({ref['method']})"
        )
    lines.append(f"ligand atoms: {report.ligand_atoms_from}")
    for s in report.midgap_states:
        lines.append(
            f"  {s.energy_eV:9.4f} eV {s.spin:4s} occ {s.occupation:.3f}  "
            f"VBM+{s.distance_to_vbm_eV:.3f} / CBM-{s.distance_to_cbm_eV:.3f} eV  "
            f"k-points {s.n_kpoints}  {s.element_weights}"
        )
    _echo(report.model_dump(mode="json"), as_json, lines)


@analyze_app.command("chgdiff")
def chgdiff_cmd(
    ab: Path = typer.Argument(..., help="CHGCAR (or run directory) of the complex AB."),
    a: Path = typer.Argument(..., help="CHGCAR of part A (slab)."),
    b: Path = typer.Argument(..., help="CHGCAR of part B (ligand)."),
    output: Path = typer.Option(None, "-o", "--output", help="Write Δρ as CHGCAR here."),
    axis: str = typer.Option("z", "--axis", help="Planar-average axis: x, y or z."),
    plot: Path = typer.Option(None, "--plot", help="Directory for the plots."),
    iso: float = typer.Option(
        None,
        "--iso",
        help="Isovalue of the isosurface plot, e/Å^3. Default: the 99th percentile of |Δρ| in "
        "the drawn interface window (at least 1e-4); the value used is printed and on the figure.",
    ),
    dpi: int = typer.Option(150, "--dpi"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Δρ = ρ(AB) − ρ(A) − ρ(B): planar average, Δq(z), charge transfer, plots."""
    from dftflow.analysis.chgdiff import charge_density_difference, chgdiff_plots

    if output is not None:
        check_writable(output)
    if plot is not None:
        from dftflow.analysis.plotting import figure_note

        with figure_note(_mock_note([ab, a, b])):
            result = chgdiff_plots(
                ab, a, b, plot, axis=axis, iso_e_per_A3=iso, dpi=dpi, output=output
            )
    else:
        result = charge_density_difference(ab, a, b, axis=axis, output=output)
    ct = "n/a" if result.charge_transfer_e is None else f"{result.charge_transfer_e:+.4f} e"
    _echo(
        result.model_dump(mode="json"),
        as_json,
        [
            f"grid {'x'.join(map(str, result.grid))}, ∫Δρ dV = {result.total_charge_e:+.5f} e, "
            f"charge transfer across the ligand/surface plane = {ct} "
            f"(ligand atoms: {result.ligand_atoms_from})",
            *([f"wrote {result.output}"] if result.output else []),
            *[f"wrote {f}" for f in result.files.values()],
            *(
                [f"isosurfaces at ±{result.isovalue_e_per_A3:.2e} e/Å^3"]
                if result.isovalue_e_per_A3 is not None
                else []
            ),
        ],
    )


@analyze_app.command("locpot")
def locpot_cmd(
    path: Path = typer.Argument(..., help="LOCPOT or run directory."),
    axis: str = typer.Option("z", "--axis"),
    efermi: float = typer.Option(None, "--efermi", help="E_F, eV (default: vasprun.xml beside)."),
    plot: Path = typer.Option(None, "-o", "--plot", help="PNG of the planar average."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Planar-averaged local potential, vacuum level and work function."""
    from dftflow.analysis.locpot import locpot_summary, plot_locpot

    summary, profile = locpot_summary(path, axis=axis, efermi_eV=efermi)
    if plot is not None:
        check_writable(plot)
        plot_locpot(profile, plot)
        summary["plot"] = str(plot)
    vac = summary["vacuum_level_eV"]
    wf = summary["work_function_eV"]
    _echo(
        summary,
        as_json,
        [
            f"vacuum level: {'n/a (no vacuum gap)' if vac is None else f'{vac:.4f} eV'}; "
            f"E_F: {summary['efermi_eV']}; work function: {'n/a' if wf is None else f'{wf:.4f} eV'}"
        ],
    )


def report_cmd(
    study_dir: Path = typer.Argument(..., help="Study directory holding summary.json."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write STUDY_DIR/report/report.md (+ .html and PNGs) from summary.json."""
    from dftflow.analysis.report import load_summary, write_report
    from dftflow.engines import engine_entry
    from dftflow.errors import EngineError
    from dftflow.schemas import NOT_PHYSICAL_NOTE

    summary = load_summary(study_dir)
    try:  # a summary written before the field existed: the registry knows the mock
        mock = not engine_entry(summary.engine).physical
    except EngineError:
        mock = False
    if mock and summary.physical:
        summary = summary.model_copy(update={"physical": False, "physical_note": NOT_PHYSICAL_NOTE})
    path = write_report(study_dir, summary)
    _echo({"report": str(path)}, as_json, [f"wrote {path}"])


def register(app: typer.Typer) -> None:
    """Add ``analyze`` (sub-commands) and ``report`` to the dftflow app."""
    app.add_typer(analyze_app, name="analyze")
    app.command("report")(report_cmd)
