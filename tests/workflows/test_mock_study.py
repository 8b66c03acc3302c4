"""The small study through FireWorks with the mock VASP (custodian): end to end, resume, duplicates.

The paper-size study is in test_paper_study.py (its own file: pytest-xdist hands out files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dftflow.cli import main
from dftflow.schemas import StudySummary, TaskDoc
from dftflow.workflows.flows import build_workflow, count_engine_runs
from dftflow.workflows.launchpad import open_launchpad
from dftflow.workflows.spec import load_study
from dftflow.workflows.status import study_status
from dftflow.workflows.workers import default_workers, thread_env

WORKFLOWS = Path(__file__).parents[2] / "workflows"
SMALL = WORKFLOWS / "test_mock_small.yaml"


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """The small mock study run once by `dftflow run` (shared by the tests of this module)."""
    out = tmp_path_factory.mktemp("mock_small") / "study"
    code = main(["run", str(SMALL), "-o", str(out)])
    return out, code


def _taskdocs(out: Path) -> dict[str, TaskDoc]:
    return {p.name: TaskDoc.from_json_file(p) for p in sorted((out / "taskdocs").glob("*.json"))}


def test_every_firework_completed_and_summary_written(small_study):
    out, code = small_study
    assert code == 0
    handle = open_launchpad(out)
    status = study_status(handle)
    assert status["counts"] == {"COMPLETED": status["total"]}
    wf = build_workflow(load_study(SMALL), out)
    assert status["total"] == len(wf.fws)
    # one engine run per Firework except analysis and report
    docs = _taskdocs(out)
    assert len(docs) == count_engine_runs(wf)
    assert all(d.engine for d in docs.values())
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    assert summary.study == "test_mock_small" and summary.engine == "mock"
    (lig,) = summary.ligands
    assert lig.ligand == "AcO" and lig.reference_species == "acetate radical"
    assert lig.e_ads_eV is not None
    assert set(summary.slab) == {"bulk_relax", "slab_relax", "slab_static"}


def test_e_ads_is_the_difference_of_the_three_statics(small_study):
    out, _ = small_study
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    (lig,) = summary.ligands
    cx = TaskDoc.from_json_file(lig.taskdocs["complex_static"])
    mol = TaskDoc.from_json_file(lig.taskdocs["molecule_static"])
    slab = TaskDoc.from_json_file(summary.slab["slab_static"])
    assert lig.e_ads_eV == pytest.approx(cx.energy_eV - slab.energy_eV - mol.energy_eV, abs=1e-6)


def test_lowest_energy_placement_selected_and_every_one_reported(small_study):
    out, _ = small_study
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    (lig,) = summary.ligands
    spec = load_study(SMALL)
    assert 1 <= len(lig.placements) <= spec.ligands[0].placements.max_candidates
    energies = {p.label: p.energy_eV for p in lig.placements}
    assert all(e is not None for e in energies.values())
    best = min(energies, key=energies.get)
    assert f"({best})" in lig.model
    relaxed = TaskDoc.from_json_file(lig.taskdocs["complex_relax"])
    assert relaxed.energy_eV == pytest.approx(energies[best])


def test_statics_share_one_cell_and_one_fft_grid(small_study):
    out, _ = small_study
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    (lig,) = summary.ligands
    roles = ["complex_static", "slab_fragment_static", "ligand_fragment_static", "molecule_static"]
    docs = [TaskDoc.from_json_file(lig.taskdocs[r]) for r in roles]
    docs.append(TaskDoc.from_json_file(summary.slab["slab_static"]))
    grids = [tuple(d.fft_grid or ()) for d in docs]
    assert len(set(grids)) == 1 and len(grids[0]) == 3, grids
    cells = [d.final_structure().lattice.matrix.round(4).tolist() for d in docs]
    assert all(c == cells[0] for c in cells)
    assert lig.charge_transfer_e is not None


def test_firework_names_and_run_directories(small_study):
    out, _ = small_study
    with open_launchpad(out).read_only() as lp:
        names = sorted(fw["name"] for fw in lp.fireworks.find({}, {"name": 1}))
    assert "test_mock_small/bulk/relax" in names
    assert "test_mock_small/slab/static" in names
    assert "test_mock_small/AcO/complex_static" in names
    assert "test_mock_small/report" in names
    assert any(n.startswith("test_mock_small/AcO/complex_relax/") for n in names)
    assert (out / "calcs" / "test_mock_small" / "slab" / "static" / "vasprun.xml").exists() or any(
        (out / "calcs" / "test_mock_small" / "slab" / "static").glob("vasprun.xml*")
    )


def test_second_run_resumes_without_recomputation(small_study):
    out, _ = small_study
    before = {p: p.stat().st_mtime_ns for p in (out / "taskdocs").glob("*.json")}
    with open_launchpad(out).read_only() as lp:
        n_launches = lp.launches.count_documents({})
    assert main(["run", str(SMALL), "-o", str(out)]) == 0
    after = {p: p.stat().st_mtime_ns for p in (out / "taskdocs").glob("*.json")}
    assert after == before
    with open_launchpad(out).read_only() as lp:
        assert lp.launches.count_documents({}) == n_launches


def test_status_json_reports_completed(small_study, capsys):
    out, _ = small_study
    assert main(["status", "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["failed"] == [] and data["counts"] == {"COMPLETED": data["total"]}


def test_resubmitting_the_same_study_is_a_noop(small_study, capsys):
    out, _ = small_study
    assert main(["submit", str(SMALL), "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["new"] is False


def test_a_resubmitted_copy_reuses_every_finished_calculation(small_study, tmp_path):
    """Same calculations under another study name: DupeFinder links them, nothing recomputed."""
    import yaml

    out, _ = small_study
    data = yaml.safe_load(SMALL.read_text())
    data["study"] = "test_mock_small_copy"
    copy = tmp_path / "copy.yaml"
    copy.write_text(yaml.safe_dump(data))
    n_docs = len(list((out / "taskdocs").glob("*.json")))
    with open_launchpad(out).read_only() as lp:
        n_launches = lp.launches.count_documents({})
    assert main(["run", str(copy), "-o", str(out)]) == 0
    assert len(list((out / "taskdocs").glob("*.json"))) == n_docs
    with open_launchpad(out).read_only() as lp:
        assert lp.launches.count_documents({}) == n_launches
        copies = list(lp.fireworks.find({"name": {"$regex": "^test_mock_small_copy/"}}))
    assert copies and all(fw["state"] == "COMPLETED" for fw in copies)


def test_changed_settings_under_the_same_name_are_refused(small_study, tmp_path, capsys):
    out, _ = small_study
    assert main(["run", str(SMALL), "-o", str(out), "--engine", "vasp"]) == 2
    err = capsys.readouterr().err
    assert "already holds study 'test_mock_small' with other settings" in err


@pytest.mark.slow(seconds=70)
def test_two_worker_processes_run_each_firework_once_with_the_same_result(small_study, tmp_path):
    out1, _ = small_study
    out2 = tmp_path / "two_workers"
    assert main(["run", str(SMALL), "-o", str(out2), "--workers", "2"]) == 0
    handle = open_launchpad(out2)
    status = study_status(handle)
    assert status["counts"] == {"COMPLETED": status["total"]} and status["running"] == []
    with handle.read_only() as lp:
        fws = list(lp.fireworks.find({}, {"fw_id": 1, "launches": 1}))
        launches = list(lp.launches.find({}))
    assert all(len(fw["launches"]) == 1 for fw in fws)  # each Firework ran exactly once
    workers = {d["fworker"]["name"] for d in launches}
    assert 1 <= len(workers) <= 2
    assert all(not n.endswith(f":{os.getpid()}") for n in workers)  # in the worker processes
    assert sorted(p.name for p in (out2 / "logs").glob("worker-*.log")) == [
        "worker-1.log",
        "worker-2.log",
    ]
    s1, s2 = (
        StudySummary.model_validate_json((o / "summary.json").read_text()) for o in (out1, out2)
    )
    assert s2.ligands[0].e_ads_eV == pytest.approx(s1.ligands[0].e_ads_eV, abs=1e-6)


def test_default_workers_follow_the_engine():
    assert default_workers("mock") == 1 and default_workers("vasp") == 1
    assert 1 <= default_workers("embedded") <= min(4, os.cpu_count() or 1)
    assert thread_env(2)["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
