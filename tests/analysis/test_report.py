"""Study report from a small fake study directory (synthetic VASP-format runs)."""

from __future__ import annotations

import json

import pytest

from dftflow.cli import main
from dftflow.parse.run import load_taskdoc as taskdoc_from_directory
from dftflow.schemas import LigandResult, StudySummary
from dftflow.testing import synthetic_runs as testdata


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    c, s, lig = testdata.slab_and_ligand_structures()
    runs = root / "calcs"
    docs = root / "taskdocs"
    docs.mkdir()
    chg = testdata.write_chgdiff_triple(root / "chg", transfer_e=0.04)

    def doc(name, structure, energy, trap=None, chgcar=None):
        testdata.write_synthetic_run(runs / name, structure, energy_eV=energy, trap_atom=trap)
        d = taskdoc_from_directory(runs / name)
        if chgcar is not None:
            d.volumetric_files["CHGCAR"] = str(chgcar)
        path = docs / f"{name}.json"
        d.to_json_file(path)
        return str(path.relative_to(root))

    slab = doc("slab_static", s, -30.0)  # the clean host: its edges are every complex's gap
    oa = LigandResult(
        ligand="OA",
        model="molecular",
        reference_species="neutral acid",
        e_ads_eV=-0.85,
        converged={"complex": True},
        engine="vasp",  # synthetic VASP-format runs (a mock summary is not compared)
        taskdocs={"complex_static": doc("oa_complex", c, -45.0, trap=0)},
    )
    aco = LigandResult(
        ligand="AcO",
        model="radical bidentate",
        reference_species="radical",
        e_ads_eV=-1.70,
        converged={"complex": True},
        engine="vasp",
        taskdocs={
            "complex_static": doc("aco_complex", c, -46.0, chgcar=chg["paths"]["AB"]),
            "slab_fragment_static": doc("aco_slabfrag", s, -30.0, chgcar=chg["paths"]["A"]),
            "ligand_fragment_static": doc("aco_ligfrag", lig, -14.0, chgcar=chg["paths"]["B"]),
        },
    )
    summary = StudySummary(
        study="paper",
        engine="vasp",
        slab={"slab_static": slab},
        ligands=[oa, aco],
        parameters={"ENCUT": 400},
    )
    (root / "summary.json").write_text(summary.model_dump_json(indent=2))
    return root


def test_report_written_with_sections(study, capsys):
    code = main(["report", str(study), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    path = json.loads(out)["report"]
    text = open(path).read()
    for heading in (
        "## Adsorption energies",
        "## Densities of states",
        "## Mid-gap",
        "## Charge density differences",
        "## Comparison with the paper",
        "## Provenance",
        "## Calculation settings",
    ):
        assert heading in text
    from pymatgen.core import Structure

    from dftflow.structures.geometry import vacuum_width_A

    st = Structure.from_file(study / "calcs" / "slab_static" / "CONTCAR")
    gap = vacuum_width_A(st, 2)
    assert f"clean slab: cell {st.lattice.a:.2f} × {st.lattice.b:.2f}" in text
    assert f"vacuum (widest atom-free gap along z) {gap:.1f} Å" in text
    assert "| OA | molecular | neutral acid | -0.850 | -0.33 | all (1) |" in text
    assert "OA: E_ads -0.85 eV vs paper -0.33 eV — differs by -0.52 eV" in text
    assert "AcO: E_ads -1.70 eV vs paper -1.77 eV — agrees" in text
    # OA keeps the surface trap, AcO has none: the detector answers yes for AcO
    assert "AcO: **yes" in text
    # OA has no fragments: the report says so instead of failing
    assert "OA: no Δρ" in text
    assert "+0.040 e" in text
    report_dir = study / "report"
    for png in ("eads.png", "dos.png", "chgdiff_AcO_planar.png", "chgdiff_AcO_iso.png"):
        assert (report_dir / png).stat().st_size > 10_000
    assert (report_dir / "report.html").read_text().count("<img") >= 4


def test_report_html_has_every_figure_and_table(study, capsys):
    import re
    from pathlib import Path

    assert main(["report", str(study), "--json"]) == 0
    path = Path(json.loads(capsys.readouterr().out)["report"])
    md = path.read_text()
    page = (path.parent / "report.html").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md)
    assert len(figures) >= 4
    for src in figures:
        assert f'<img src="{src}"' in page, src
    assert page.count("<img") == len(figures)
    separators = [line for line in md.splitlines() if re.match(r"^\|\s*:?-{3,}", line)]
    assert separators  # the Markdown has tables ...
    assert page.count("<table>") == len(separators)  # ... and each is a real HTML table
    assert "<th>" in page and "<td>" in page and "|---" not in page
    assert "<h2>Adsorption energies</h2>" in page


def test_report_missing_summary(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no summary.json" in err and len(err.strip().splitlines()) == 1


def test_paper_figures_script(study):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[2] / "analysis" / "paper_figures.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(study), "--dpi", "80"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    figures = study / "report" / "figures"
    for name in (
        "eads.png",
        "dos.png",
        "chgdiff_AcO_planar.png",
        "chgdiff_AcO_slice.png",
        "chgdiff_AcO_iso.png",
    ):
        assert (figures / name).stat().st_size > 5_000
    assert "OA: no Δρ" in proc.stdout and "AcO: charge transfer +0.0400 e" in proc.stdout


def test_settings_lines_state_the_embedded_settings(study):
    from dftflow.analysis.report import settings_lines
    from dftflow.schemas import TaskDoc

    summary = StudySummary.model_validate_json((study / "summary.json").read_text())
    doc = TaskDoc.from_json_file(study / summary.slab["slab_static"])
    emb = {
        "xc": "PBE",
        "basis": "szp(dzp)",
        "grid_spacing_A": 0.25,
        "smearing": "fermi-dirac",
        "smearing_width_eV": 0.05,
        "dipole_correction": True,
        "spin_polarized": "auto",
        "chgnet_model": "0.3.0",
        "optimizer": "FIRE",
        "fmax_eV_per_A": 0.02,
    }
    doc = doc.model_copy(
        update={
            "parameters": {"embedded": emb},
            "metadata": {
                "gpaw": {"parameters": {"mode": "lcao"}, "gpts": [48, 48, 176], "kpts": [2, 2, 1]}
            },
        }
    )
    text = "\n".join(settings_lines([("clean slab", doc)]))
    assert "GPAW lcao PAW-PBE, basis szp(dzp), grid spacing 0.25 Å (48×48×176 points)" in text
    assert "k-mesh 2×2×1" in text and "fermi-dirac smearing 0.05 eV" in text
    assert "CHGNet 0.3.0 (FIRE) to 0.02 eV/Å" in text


def test_adsorption_table_lists_only_what_did_not_converge():
    from dftflow.analysis.adsorption import AdsorptionRow, adsorption_table_markdown

    rows = [
        AdsorptionRow(
            ligand="A",
            reference_species="acid",
            model="m",
            e_ads_eV=-1.0,
            converged={"complex": True, "slab": True},
            engine="vasp",
        ),
        AdsorptionRow(
            ligand="B",
            reference_species="acid",
            model="m",
            e_ads_eV=-0.5,
            converged={"complex": False, "slab": True},
            engine="vasp",
        ),
    ]
    text = adsorption_table_markdown(rows)
    assert "| A | m | acid | -1.000 |" in text and "all (2)" in text
    assert "complex=NO, slab=yes" in text
