"""`dftflow launch --queue` through a real one-node SLURM cluster, and the PBS adapter's script."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dftflow.cli import main
from dftflow.testing.launchpad import sleep_fireworks
from dftflow.workflows.launchpad import LaunchpadHandle, open_launchpad
from dftflow.workflows.queue import load_qadapter, worker_command
from dftflow.workflows.status import study_status

LAUNCHERS = Path(__file__).parents[2] / "launchers"
# Under pytest-xdist (--dist loadfile) every test of this file runs on one worker, so the tests
# needing the one-node SLURM cluster share one: no two slurmctld/slurmd pairs racing for ports.


def _test_qadapter(tmp_path: Path) -> Path:
    """The shipped SLURM adapter with what a 2-CPU test node can give (no modules to load)."""
    data = yaml.safe_load((LAUNCHERS / "my_qadapter_slurm.yaml").read_text())
    data.update(ntasks=1, walltime="00:10:00", pre_rocket="echo start", signal=None)
    path = tmp_path / "qadapter.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slurm
@pytest.mark.slow
def test_queue_workers_run_every_firework_exactly_once(slurm_cluster, embedded_store, tmp_path):
    study = embedded_store.directory.parent
    log = tmp_path / "ran.log"
    with embedded_store.session() as lp:
        for fw in sleep_fireworks(study, 8, 0.1, log):
            lp.add_wf(fw)
    qadapter = _test_qadapter(tmp_path)
    assert main(["launch", "-o", str(study), "--queue", str(qadapter), "--nlaunches", "2"]) == 0
    scripts = sorted((study / "queue").rglob("FW_submit.script"))
    assert len(scripts) == 2
    assert "dftflow launch -o" in scripts[0].read_text()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = study_status(open_launchpad(study))
        if status["counts"].get("COMPLETED", 0) == 8:
            break
        time.sleep(0.5)
    assert slurm_cluster.wait_idle(60)
    status = study_status(open_launchpad(study))
    assert status["counts"] == {"COMPLETED": 8}
    labels = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert labels == Counter({f"fw{i}": 1 for i in range(8)})
    with embedded_store.read_only() as lp:
        assert lp.launches.count_documents({}) == 8


def test_pbs_adapter_writes_the_expected_script(tmp_path):
    qadapter = load_qadapter(LAUNCHERS / "my_qadapter_pbs.yaml")
    handle = LaunchpadHandle("embedded", source="")
    qadapter["rocket_launch"] = worker_command(tmp_path, handle)
    qadapter.update(queue="batch", account="proj42")
    script = qadapter.get_script_str(str(tmp_path))
    assert script.startswith("#!/bin/bash")
    assert "#PBS -l nodes=1:ppn=32" in script
    assert "#PBS -l walltime=24:00:00" in script
    assert "#PBS -q batch" in script and "#PBS -A proj42" in script
    assert "module load vasp/6.4" in script
    assert 'DFTFLOW_VASP_CMD="mpirun -np 32 vasp_std"' in script
    assert f"-m dftflow launch -o {tmp_path}" in script
    assert f"cd {tmp_path}" in script


def test_slurm_adapter_script(tmp_path):
    qadapter = load_qadapter(LAUNCHERS / "my_qadapter_slurm.yaml")
    qadapter.update(queue="standard", account="proj42")
    script = qadapter.get_script_str(str(tmp_path))
    for line in ("#SBATCH --nodes=1", "#SBATCH --ntasks=32", "#SBATCH --time=24:00:00",
                 "#SBATCH --partition=standard", "#SBATCH --account=proj42",
                 "#SBATCH --signal=B:TERM@120", 'DFTFLOW_VASP_CMD="srun vasp_std"'):  # fmt: skip
        assert line in script


def test_missing_qadapter_file(tmp_path, capsys):
    assert main(["launch", "-o", str(tmp_path), "--queue", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "queue adapter file" in err and "does not exist" in err


def test_queue_command_not_found(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    q = LAUNCHERS / "my_qadapter_pbs.yaml"
    assert main(["launch", "-o", str(tmp_path), "--queue", str(q)]) == 2
    assert "queue command 'qsub' not found" in capsys.readouterr().err


def test_not_a_qadapter(tmp_path, capsys):
    bad = tmp_path / "q.yaml"
    bad.write_text("nodes: 1\n")
    assert main(["launch", "-o", str(tmp_path), "--queue", str(bad)]) == 2
    assert "not a FireWorks queue adapter" in capsys.readouterr().err


@pytest.mark.slurm
@pytest.mark.slow(seconds=90)
def test_mock_study_through_slurm(slurm_cluster, tmp_path):
    """The small mock-VASP study submitted, then run by two SLURM worker jobs."""
    from dftflow.schemas import StudySummary

    study = tmp_path / "study"
    spec = Path(__file__).parents[2] / "workflows" / "test_mock_small.yaml"
    assert main(["submit", str(spec), "-o", str(study)]) == 0
    qadapter = _test_qadapter(tmp_path)
    assert main(["launch", "-o", str(study), "--queue", str(qadapter), "--nlaunches", "2"]) == 0
    deadline = time.monotonic() + 600
    status = study_status(open_launchpad(study))
    while time.monotonic() < deadline:
        status = study_status(open_launchpad(study))
        done = status["counts"].get("COMPLETED", 0) + status["counts"].get("FIZZLED", 0)
        if done == status["total"] or (status["failed"] and not status["counts"].get("RUNNING")):
            break
        time.sleep(1.0)
    assert status["counts"] == {"COMPLETED": status["total"]}, status
    with open_launchpad(study).read_only() as lp:
        per_fw = Counter(d["fw_id"] for d in lp.launches.find({}, {"fw_id": 1}))
    assert sorted(per_fw.values()) == [1] * status["total"]  # each Firework ran exactly once
    summary = StudySummary.model_validate_json((study / "summary.json").read_text())
    assert summary.ligands[0].e_ads_eV is not None
    assert slurm_cluster.wait_idle(60)
