"""Regenerate the paper's figures from a finished study directory (thin wrapper on dftflow).

Usage: python analysis/paper_figures.py STUDY_DIR [--dpi 300]

Writes into STUDY_DIR/report/figures/: binding-energy bars beside the paper's values (eads.png),
DOS panels of the clean slab and each ligand's complex (dos.png), per-ligand charge density
difference panels (chgdiff_<ligand>_planar.png, _slice.png, _iso.png); then the full report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dftflow.analysis.adsorption import AdsorptionRow, plot_adsorption_bars
from dftflow.analysis.plotting import figure_note
from dftflow.analysis.report import (
    _paper_value,
    dos_figure,
    ligand_chgdiff,
    load_summary,
    study_systems,
    write_report,
)
from dftflow.schemas import NOT_PHYSICAL_LABEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("--dpi", type=int, default=300)
    args = parser.parse_args()
    summary = load_summary(args.study_dir)
    out = args.study_dir / "report" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    physical = summary.physical and all(lig.physical for lig in summary.ligands)
    with figure_note(None if physical else NOT_PHYSICAL_LABEL):  # mock figures say so
        _figures(args, summary, out, physical)
    print(write_report(args.study_dir, summary))


def _figures(args: argparse.Namespace, summary, out: Path, physical: bool) -> None:
    rows = [
        AdsorptionRow(
            ligand=lig.ligand,
            reference_species=lig.reference_species,
            model=lig.model,
            e_ads_eV=lig.e_ads_eV,
            paper_e_ads_eV=_paper_value(lig),
            physical=physical,
        )
        for lig in summary.ligands
    ]
    if rows:
        print(plot_adsorption_bars(rows, out / "eads.png", dpi=args.dpi))
    systems, missing = study_systems(args.study_dir, summary)
    models = {lig.ligand: lig.model for lig in summary.ligands}
    png, _, overlaps, _ = dos_figure(systems, out / "dos.png", missing, dpi=args.dpi, models=models)
    print(png, *(f"DOS note: {m}" for m in missing))
    print("ligand-slab PDOS overlap -5..-3 eV (states):", overlaps)
    for lig in summary.ligands:
        res, why = ligand_chgdiff(args.study_dir, lig, out, dpi=args.dpi)
        print(
            f"{lig.ligand}: "
            + (
                f"no Δρ ({why})"
                if res is None
                else f"charge transfer {res.charge_transfer_e:+.4f} e, {res.files}"
            )
        )


if __name__ == "__main__":
    main()
