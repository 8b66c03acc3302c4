"""Nothing overwritten, nothing mislabelled (issue 12, item 3).

* ``dftflow calc -d DIR`` refuses a DIR holding a finished run (one line, exit 2, nothing
  changed) unless ``--force``, which says that it replaces it; ``calc`` defaults to the embedded
  engine, never the mock.
* Mock results say "mock (not physical)" in the TaskDoc, ``dftflow parse``, summary.json, the
  ``dftflow run`` table, the report (banner, no comparison with the paper) and every figure.
* A species is labelled what its inputs compute: the acetate anion built by ``dftflow build``
  gets NELECT = neutral count + 1 (the charge travels in the POSCAR sidecar) and its TaskDoc says
  "anion (charge -1 e)"; the radical form sets no NELECT and is spin-polarised; a study whose
  reference species or adsorbed form contradicts ``molecule_form`` is refused; ``analyze eads``
  names L from what the adsorbate computed and refuses a contradicting statement or charges that
  do not add up.

Every CLI guarantee is checked through the installed ``dftflow`` console script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dftflow.schemas import StudySummary, TaskDoc

pytestmark = pytest.mark.fault

ROOT = Path(__file__).parents[2]
SMALL = ROOT / "workflows" / "test_mock_small.yaml"
DFTFLOW = shutil.which("dftflow") or str(Path(sys.executable).parent / "dftflow")
MOCK = "mock (not physical)"


def dftflow(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it (wide terminal: no wrapped table cells)."""
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("DFTFLOW_VASP_CMD", None)
    return subprocess.run(
        [DFTFLOW, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, one line on stderr holding every word, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A 1x1, 3-plane slab (POSCAR) and a cubic bulk cell built by the CLI."""
    from ase.io import write

    from dftflow.structures.bulk import cspbbr3_cubic

    d = tmp_path_factory.mktemp("labels")
    assert dftflow("build", "slab", "--layers", "3", "--supercell", "1x1", "--vacuum", "12",
                   "-o", d / "slab.vasp").returncode == 0  # fmt: skip
    write(d / "bulk.vasp", cspbbr3_cubic(), format="vasp", direct=True)
    return d


CHEAP = ("--set", "ENCUT=120", "--set", "KPOINTS=2 2 2")


# ---------------------------------------------------------------------------------------------
# calc never overwrites a finished run
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=30)
def test_calc_refuses_a_finished_run_unless_forced(work, tmp_path):
    run_dir = tmp_path / "run"
    calc = ("calc", work / "bulk.vasp", "--stage", "static", "--engine", "mock", *CHEAP)
    first = dftflow(*calc, "-d", run_dir)
    assert first.returncode == 0, first.stderr
    doc_text = (run_dir / "taskdoc.json").read_text()
    outcar = (run_dir / "OUTCAR").stat().st_mtime_ns

    again = dftflow(*calc, "-d", run_dir)
    one_line_error(again, str(run_dir), "finished static", "--force", "nothing was changed")
    assert (run_dir / "taskdoc.json").read_text() == doc_text
    assert (run_dir / "OUTCAR").stat().st_mtime_ns == outcar
    incar = (run_dir / "INCAR").read_text()
    inputs = dftflow("inputs", work / "bulk.vasp", "--stage", "bulk_relax", "-o", run_dir)
    one_line_error(inputs, "finished static", "--force")
    assert (run_dir / "INCAR").read_text() == incar

    forced = dftflow(*calc, "-d", run_dir, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "--force: replacing a finished static" in forced.stderr
    new = TaskDoc.from_json_file(run_dir / "taskdoc.json")
    assert new.wall_time_s != TaskDoc.model_validate_json(doc_text).wall_time_s


def test_calc_refuses_a_finished_vasp_run_it_did_not_write(work, tmp_path):
    run_dir = tmp_path / "vasp_run"
    run_dir.mkdir()
    (run_dir / "vasprun.xml").write_text("<?xml version='1.0'?>\n<modeling>\n</modeling>\n")
    proc = dftflow("calc", work / "bulk.vasp", "--stage", "static", "--engine", "mock",
                   "-d", run_dir)  # fmt: skip
    one_line_error(proc, "complete vasprun.xml", "--force")
    assert sorted(p.name for p in run_dir.iterdir()) == ["vasprun.xml"]


def test_calc_defaults_to_the_embedded_engine_never_the_mock():
    from dftflow.engines import DEFAULT_ENGINE, engine_entry

    assert DEFAULT_ENGINE == "embedded" and engine_entry(DEFAULT_ENGINE).physical
    assert not engine_entry("mock").physical
    help_text = dftflow("calc", "--help").stdout
    assert "[default: embedded]" in help_text


# ---------------------------------------------------------------------------------------------
# the mock says so everywhere
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=25)
def test_mock_taskdoc_and_parse_say_not_physical(work, tmp_path):
    run_dir = tmp_path / "m"
    proc = dftflow("calc", work / "bulk.vasp", "--stage", "static", "--engine", "mock", *CHEAP,
                   "-d", run_dir)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(MOCK)
    doc = TaskDoc.from_json_file(run_dir / "taskdoc.json")
    assert doc.physical is False and MOCK in doc.physical_note and MOCK in doc.warnings[0]
    parsed = json.loads(dftflow("parse", run_dir, "--json").stdout)
    assert parsed["physical"] is False and MOCK in parsed["physical_note"]
    assert dftflow("parse", run_dir).stdout.startswith(MOCK)
    # the mock's VASP files parsed without the TaskDoc still say it (vasprun.xml's program)
    (run_dir / "taskdoc.json").unlink()
    assert json.loads(dftflow("parse", run_dir, "--json").stdout)["physical"] is False


@pytest.fixture(scope="module")
def mock_study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("mock_study") / "study"
    proc = dftflow("run", SMALL, "-o", out, timeout=900)
    return out, proc


@pytest.mark.slow(seconds=80)
def test_mock_study_summary_table_report_and_figures_say_not_physical(mock_study):
    from PIL import Image

    out, proc = mock_study
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    assert summary.physical is False and MOCK in summary.physical_note
    assert all(lig.physical is False for lig in summary.ligands)
    # the table `dftflow run` prints
    assert f"E_ads (eV), {MOCK}" in proc.stderr and "not compared" in proc.stderr
    report = (out / "report" / "report.md").read_text()
    head = report.split("## Adsorption energies")[0]
    assert "MOCK (NOT PHYSICAL)" in head and "none is compared with the paper" in head
    assert f"E_ads (eV), {MOCK}" in report
    comparison = report.split("## Comparison with the paper")[1].split("## Provenance")[0]
    assert "Not compared" in comparison and "differs by" not in comparison
    assert "agrees" not in comparison
    html = (out / "report" / "report.html").read_text()
    assert "MOCK (NOT PHYSICAL)" in html
    pngs = sorted((out / "report").glob("*.png"))
    assert len(pngs) >= 3  # E_ads bars, DOS panels, Δρ plots
    for png in pngs:
        with Image.open(png) as im:
            assert im.text.get("Description") == MOCK, png.name


@pytest.mark.slow(seconds=5)
def test_analyze_dos_figure_of_a_mock_run_is_labelled(mock_study, tmp_path):
    from PIL import Image

    out, _ = mock_study
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    doc = TaskDoc.from_json_file(summary.ligands[0].taskdocs["complex_static"])
    proc = dftflow("analyze", "dos", doc.directory, "-o", tmp_path / "dos.png")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "dos.png") as im:
        assert im.text.get("Description") == MOCK


# ---------------------------------------------------------------------------------------------
# labels are what the inputs compute
# ---------------------------------------------------------------------------------------------
def _incar(directory: Path) -> dict[str, str]:
    out = {}
    for line in (directory / "INCAR").read_text().splitlines():
        if "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            out[key] = value
    return out


@pytest.mark.slow(seconds=15)
def test_acetate_anion_gets_its_nelect_and_the_radical_none(work, tmp_path):
    from ase.io import read

    from dftflow.inputs.params import POTCAR_SYMBOLS
    from dftflow.inputs.vasp import POTCAR_ZVAL

    anion = dftflow("build", "complex", "--slab", work / "slab.vasp", "--ligand", "AcO",
                    "--mode", "monodentate", "-o", tmp_path / "aco.vasp")  # fmt: skip
    assert anion.returncode == 0, anion.stderr
    assert "anion" in anion.stdout and "net charge -1 e" in anion.stdout
    assert "uniform compensating background" in anion.stdout
    atoms = read(tmp_path / "aco.vasp", format="vasp")
    neutral = sum(POTCAR_ZVAL[POTCAR_SYMBOLS[s]] for s in atoms.get_chemical_symbols())
    assert dftflow("inputs", tmp_path / "aco.vasp", "--stage", "static", "--potcar-spec",
                   "-o", tmp_path / "in_anion").returncode == 0  # fmt: skip
    incar = _incar(tmp_path / "in_anion")
    assert float(incar["NELECT"]) == neutral + 1 and incar["ISPIN"] == "1"

    build = ("build", "complex", "--slab", work / "slab.vasp", "--ligand", "AcO")
    radical = dftflow(
        *build, "--form", "radical", "--mode", "monodentate", "-o", tmp_path / "r.vasp"
    )
    assert radical.returncode == 0 and "radical" in radical.stdout
    assert dftflow("inputs", tmp_path / "r.vasp", "--stage", "static", "--potcar-spec",
                   "-o", tmp_path / "in_rad").returncode == 0  # fmt: skip
    incar = _incar(tmp_path / "in_rad")
    assert "NELECT" not in incar and incar["ISPIN"] == "2"  # 95 electrons: open shell


@pytest.mark.slow(seconds=20)
def test_anion_taskdoc_says_what_was_computed(work, tmp_path):
    build = ("build", "complex", "--slab", work / "slab.vasp", "--ligand", "AcO")
    assert dftflow(*build, "--mode", "monodentate", "-o", tmp_path / "aco.vasp").returncode == 0
    calc = ("calc", tmp_path / "aco.vasp", "--stage", "static", "--engine", "mock")
    proc = dftflow(*calc, "--set", "ENCUT=120", "--set", "KPOINTS=2 2 1", "-d", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    doc = TaskDoc.from_json_file(tmp_path / "run" / "taskdoc.json")
    assert doc.charge_e == -1.0 and doc.nelect == 96.0
    assert doc.charge_state == "anion (charge -1 e)"
    assert "anion (charge -1 e)" in proc.stdout


STUDY = """\
study: labels
engine: {name: mock}
ligands:
  - name: AcO
    model: carboxylate on surface Pb
    molecule_form: radical
"""


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("    reference_species: neutral acid\n", ["'neutral acid'", "contradicts", "radical"]),
        ("    reference_species: acetate anion\n", ["contradicts molecule_form radical"]),
        (
            "    reference_species: acetate radical\n    placements: {form: as_is}\n",
            ["differ in charge", "-1 e", "+0 e"],
        ),
    ],
)
def test_study_refuses_a_reference_that_contradicts_the_form(tmp_path, extra, words):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY + extra)
    proc = dftflow("submit", path, "-o", tmp_path / "out")
    one_line_error(proc, "ligand 'AcO'", *words)


def test_study_reference_and_adsorbed_form_follow_molecule_form(tmp_path):
    from dftflow.workflows.spec import load_study

    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    (lig,) = load_study(path).ligands
    assert lig.reference_species == "acetate radical" and lig.placements.form == "radical"
    path.write_text(STUDY.replace("radical", "as_is"))
    (lig,) = load_study(path).ligands
    assert lig.reference_species == "acetate anion (charge -1 e)"
    assert lig.placements.form == "as_is"


@pytest.mark.slow(seconds=15)
def test_eads_reference_follows_the_adsorbate_run(mock_study, tmp_path):
    out, _ = mock_study
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    paths = summary.ligands[0].taskdocs
    triple = ("--complex", paths["complex_static"], "--slab", summary.slab["slab_static"],
              "--adsorbate", paths["molecule_static"])  # fmt: skip
    proc = dftflow("analyze", "eads", *triple, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["reference_species"] == "radical (neutral, odd electron count)"
    assert data["physical"] is False and data["warnings"][0].startswith(MOCK)
    assert dftflow("analyze", "eads", *triple).stdout.startswith(MOCK)
    wrong = dftflow("analyze", "eads", *triple, "--reference-species", "neutral acid")
    one_line_error(wrong, "'neutral acid' contradicts", "radical")
    # a complex computed as the anion against the neutral radical: charges do not add up
    doc = TaskDoc.from_json_file(paths["complex_static"])
    charged = tmp_path / "complex_anion.json"
    charged.write_text(doc.model_copy(update={"charge_e": -1.0}).model_dump_json())
    bad = dftflow("analyze", "eads", "--complex", charged, *triple[2:])
    one_line_error(bad, "net charges do not add up", "complex -1 e")


def test_embedded_engine_refuses_a_charged_slab_cell_up_front(work, tmp_path):
    """GPAW cannot compute a charged cell with the slab's non-periodic z: refused in one line
    before anything runs (calc's default engine is the embedded one)."""
    build = ("build", "complex", "--slab", work / "slab.vasp", "--ligand", "AcO")
    assert dftflow(*build, "--mode", "monodentate", "-o", tmp_path / "aco.vasp").returncode == 0
    proc = dftflow("calc", tmp_path / "aco.vasp", "--stage", "static", "-d", tmp_path / "e",
                   timeout=120)  # fmt: skip
    one_line_error(proc, "embedded engine", "-1 e cell", "--form radical", "--engine vasp")
    assert not (tmp_path / "e" / "taskdoc.json").exists()
