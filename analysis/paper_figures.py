"""Regenerate the paper's figures from a finished study directory (thin wrapper on dftflow).

Usage: python analysis/paper_figures.py STUDY_DIR [--dpi 300]

Writes into STUDY_DIR/report/figures/: binding-energy bars beside the paper's values (eads.png),
DOS panels clean slab / each ligand (dos.png), per-ligand charge density difference panels
(chgdiff_<ligand>_planar.png, _slice.png, _iso.png), and the full report (report.md/html).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dftflow.analysis.adsorption import AdsorptionRow, plot_adsorption_bars
from dftflow.analysis.chgdiff import chgdiff_plots
from dftflow.analysis.dos import dos_curves, plot_dos_panels
from dftflow.analysis.report import _paper_value, _resolve, _taskdoc, load_summary, write_report
from dftflow.errors import DftflowError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("--dpi", type=int, default=300)
    args = parser.parse_args()
    summary = load_summary(args.study_dir)
    out = args.study_dir / "report" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        AdsorptionRow(
            ligand=lig.ligand,
            reference_species=lig.reference_species,
            model=lig.model,
            e_ads_eV=lig.e_ads_eV,
            paper_e_ads_eV=_paper_value(lig),
        )
        for lig in summary.ligands
    ]
    if rows:
        print(plot_adsorption_bars(rows, out / "eads.png", dpi=args.dpi))
    systems = [("clean slab", summary.slab.get("slab_static"))]
    systems += [(lig.ligand, lig.taskdocs.get("complex_static")) for lig in summary.ligands]
    curves = []
    for label, path in systems:
        doc, why = _taskdoc(args.study_dir, path)
        if doc is None:
            print(f"skip DOS of {label}: {why}")
            continue
        curves.append(dos_curves(doc.directory, label=label, sigma_eV=0.05))
    if curves:
        print(plot_dos_panels(curves, out / "dos.png", dpi=args.dpi))
    for lig in summary.ligands:
        roles = ("complex_static", "slab_fragment_static", "ligand_fragment_static")
        docs = [_taskdoc(args.study_dir, lig.taskdocs.get(r))[0] for r in roles]
        if any(d is None for d in docs):
            print(f"skip Δρ of {lig.ligand}: fragment TaskDocs missing")
            continue
        chg = [
            _resolve(args.study_dir, d.volumetric_files.get("CHGCAR")) or d.directory for d in docs
        ]
        try:
            res = chgdiff_plots(*chg, out, prefix=f"chgdiff_{lig.ligand}", dpi=args.dpi)
            print(f"{lig.ligand}: charge transfer {res.charge_transfer_e} e; {res.files}")
        except DftflowError as exc:
            print(f"skip Δρ of {lig.ligand}: {exc}")
    print(write_report(args.study_dir, summary))


if __name__ == "__main__":
    main()
