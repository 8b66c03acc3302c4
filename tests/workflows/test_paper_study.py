"""The paper's study (OA, 2-HA, AcO; 5-plane 2x2 slab) through FireWorks with the mock VASP.

The study runs once (module fixture, about half of the test suite's CPU time) and the tests below
check it. It has its own file because pytest-xdist (``--dist loadfile``) hands out whole files: the
worker running it starts it first and runs nothing else meanwhile, while the other worker runs the
rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dftflow.cli import main
from dftflow.schemas import StudySummary
from dftflow.workflows.flows import build_workflow, count_engine_runs
from dftflow.workflows.launchpad import open_launchpad
from dftflow.workflows.spec import load_study
from dftflow.workflows.status import study_status

PAPER = Path(__file__).parents[2] / "workflows" / "cspbbr3_ligands.yaml"

pytestmark = pytest.mark.slow(seconds=400)


@pytest.fixture(scope="module")
def paper_study(tmp_path_factory) -> tuple[Path, int]:
    """The paper's study file run by `dftflow run --engine mock --workers 2` (shared by the tests).

    Two FireWorks workers: the study is the longest part of the suite, and its independent
    relaxations and statics then use both cores once the other pytest-xdist worker is done.
    """
    out = tmp_path_factory.mktemp("paper") / "paper"
    code = main(["run", str(PAPER), "-o", str(out), "--engine", "mock", "--workers", "2"])
    return out, code


def test_every_firework_completed_with_one_taskdoc_per_engine_run(paper_study):
    out, code = paper_study
    assert code == 0
    status = study_status(open_launchpad(out))
    assert status["counts"] == {"COMPLETED": status["total"]}
    wf = build_workflow(load_study(PAPER).with_engine("mock"), out)
    assert len(list((out / "taskdocs").glob("*.json"))) == count_engine_runs(wf)


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
