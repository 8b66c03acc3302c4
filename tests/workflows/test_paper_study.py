"""The paper's study (OA, 2-HA, AcO; 5-plane 2x2 slab) through FireWorks with the mock VASP.

The study runs once (module fixture, the longest single part of the test suite) and the tests below
check it. It has its own file because pytest-xdist (``--dist loadfile``) hands out whole files: the
worker running it starts it first and runs nothing else meanwhile, while the other worker runs the
rest.

What runs is the paper's study file with two cost settings overridden, the small study's
(:data:`CHEAP`: ENCUT 120 eV, 2x2x1 / 2x2x2 k-points), everything else as shipped: the same 30
Fireworks (3 ligands, 2 placements each, both AcO modes, the 5-plane slab with its raised vacuum),
and relaxations to the paper's 0.02 eV/A. At the paper's ENCUT 400 eV and 8x8x1 k-points the mock
wrote about 10 GB of CHGCAR/AECCAR files (13 statics on a 14-million-point grid) and half of the
study's CPU time went into them, while nothing below reads a number that depends on them. That
the paper's own parameters reach every Firework is checked on its workflow (built, not run); the
paper's parameter values themselves are tested in tests/workflows/test_spec.py and
tests/inputs/test_vasp.py, and a mock run at 8x8x1 and 0.02 eV/A in tests/engines/test_vasp.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dftflow.cli import main
from dftflow.schemas import StudySummary
from dftflow.workflows.flows import build_workflow, count_engine_runs
from dftflow.workflows.launchpad import open_launchpad
from dftflow.workflows.spec import load_study
from dftflow.workflows.status import study_status

PAPER = Path(__file__).parents[2] / "workflows" / "cspbbr3_ligands.yaml"
#: The two cost settings overridden (the small study's values, workflows/test_mock_small.yaml).
CHEAP = {"encut_eV": 120, "kpoints_slab": [2, 2, 1], "kpoints_bulk": [2, 2, 2]}

pytestmark = pytest.mark.slow(seconds=200)


@pytest.fixture(scope="module")
def paper_study(tmp_path_factory) -> tuple[Path, int]:
    """The paper's study file (:data:`CHEAP` costs) run by `dftflow run --engine mock --workers 2`.

    Two FireWorks workers: the study is the longest part of the suite, and its independent
    relaxations and statics then use both cores once the other pytest-xdist worker is done.
    """
    work = tmp_path_factory.mktemp("paper")
    data = yaml.safe_load(PAPER.read_text())
    assert data["parameters"] == {}  # the shipped file runs the paper's values
    data["parameters"] = CHEAP
    spec = work / PAPER.name
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    out = work / "paper"
    code = main(["run", str(spec), "-o", str(out), "--engine", "mock", "--workers", "2"])
    return out, code


def _fireworks(spec, out: Path) -> dict[str, dict]:
    """Name -> dftflow spec of every Firework of ``spec``'s workflow (built, not run)."""
    wf = build_workflow(spec.with_engine("mock"), out)
    return {fw.name: fw.spec["dftflow"] for fw in wf.fws}


def test_every_firework_completed_with_one_taskdoc_per_engine_run(paper_study):
    out, code = paper_study
    assert code == 0
    status = study_status(open_launchpad(out))
    assert status["counts"] == {"COMPLETED": status["total"]}
    assert status["total"] == 30
    wf = build_workflow(load_study(PAPER).with_engine("mock"), out)
    assert len(wf.fws) == 30
    assert len(list((out / "taskdocs").glob("*.json"))) == count_engine_runs(wf)


def test_the_run_is_the_paper_study_but_for_the_cost_settings(paper_study, tmp_path):
    """The run's Fireworks are the shipped file's, which carry the paper's parameters."""
    out, _ = paper_study
    paper = load_study(PAPER)
    shipped = _fireworks(paper, tmp_path / "shipped")
    with open_launchpad(out).read_only() as lp:
        ran = {fw["name"]: fw["spec"]["dftflow"] for fw in lp.fireworks.find({})}
    assert sorted(ran) == sorted(shipped)
    cheap = paper.parameters.model_copy(update=CHEAP).effective()
    assert cheap != paper.parameters.effective()
    for name, fw in shipped.items():
        assert fw["parameters"] == paper.parameters.effective(), name
        assert fw["parameters"]["encut_eV"] == 400.0 and fw["parameters"]["fmax_eV_per_A"] == 0.02
        assert ran[name]["parameters"] == cheap, name


def test_summary_has_every_ligand_with_an_adsorption_energy(paper_study):
    out, _ = paper_study
    assert (out / "summary.json").exists()
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    assert [lig.ligand for lig in summary.ligands] == ["OA", "2-HA", "AcO"]
    assert all(lig.e_ads_eV is not None for lig in summary.ligands)


def test_summary_reports_the_paper_values_beside_ours(paper_study):
    out, _ = paper_study
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    assert {lig.ligand: lig.paper_e_ads_eV for lig in summary.ligands} == {
        "OA": -0.33,
        "2-HA": -0.61,
        "AcO": -1.77,
    }
