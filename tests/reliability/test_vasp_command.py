"""How VASP is launched: one option, one environment variable, one precedence (issue 12, item 4).

``--vasp-cmd`` > ``DFTFLOW_VASP_CMD`` > the FWorker's ``env.vasp_cmd`` > the study's
``engine.settings.vasp_cmd`` > ``vasp_std``, for ``calc``, ``run``, ``launch`` and queue workers.
The shipped PBS and SLURM adapters (with the shipped FWorker) must run the command they show.
Fake ``mpirun``/``srun``/``vasp_std`` scripts record how they were called and hand over to the mock
VASP, so the command that really ran is checked, never a real VASP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dftflow.schemas import TaskDoc

pytestmark = pytest.mark.fault

ROOT = Path(__file__).parents[2]
LAUNCHERS = ROOT / "launchers"
SMALL = ROOT / "workflows" / "test_mock_small.yaml"
DFTFLOW = shutil.which("dftflow") or str(Path(sys.executable).parent / "dftflow")


def _fake_launchers(tmp_path: Path) -> tuple[Path, Path]:
    """``mpirun``, ``srun``, ``vasp_std``, ``vasp_gam`` that log their argv and run the mock."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "launched.log"
    scripts = {
        "mpirun": 'echo "mpirun $*" >> "$LAUNCH_LOG"\nwhile [ "$1" = -np ]; do shift 2; done\n'
        'exec "$@"\n',
        "srun": 'echo "srun $*" >> "$LAUNCH_LOG"\nexec "$@"\n',
        "vasp_std": 'echo "vasp_std $*" >> "$LAUNCH_LOG"\nexec dftflow-mock-vasp\n',
        "vasp_gam": 'echo "vasp_gam $*" >> "$LAUNCH_LOG"\nexec dftflow-mock-vasp\n',
    }
    for name, body in scripts.items():
        path = bindir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return bindir, log


def _env(bindir: Path, log: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DFTFLOW_VASP_CMD"}
    env.update(
        PATH=os.pathsep.join([str(bindir), str(Path(sys.executable).parent), env["PATH"]]),
        LAUNCH_LOG=str(log),
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        **extra,
    )
    return env


# ---------------------------------------------------------------------------------------------
# The precedence, source by source
# ---------------------------------------------------------------------------------------------
def test_each_source_in_order_of_precedence():
    from dftflow.engines.vasp import resolve_vasp_cmd

    env = {"DFTFLOW_VASP_CMD": "mpirun -np 32 vasp_std"}
    full = dict(fworker="srun vasp_std", study="mpiexec vasp_std", environ=env)
    assert resolve_vasp_cmd("ibrun vasp_std", **full).command == "ibrun vasp_std"
    assert resolve_vasp_cmd(None, **full).command == "mpirun -np 32 vasp_std"
    got = resolve_vasp_cmd(None, fworker="srun vasp_std", study="mpiexec vasp_std", environ={})
    assert (got.command, got.source) == ("srun vasp_std", "FWorker env vasp_cmd")
    got = resolve_vasp_cmd(None, study=["mpiexec", "vasp_std"], environ={})
    assert got.command == "mpiexec vasp_std" and "study" in got.source
    assert resolve_vasp_cmd(None, environ={}).command == "vasp_std"
    assert resolve_vasp_cmd(None, environ={"DFTFLOW_VASP_CMD": ""}).source == "default"


def test_the_engine_runs_the_resolved_command_and_its_gamma_twin():
    from dftflow.engines import get_engine

    eng = get_engine("vasp", vasp_cmd="mpirun -np 32 vasp_std", potcar_spec=True)
    assert eng.command()[-4:] == ["mpirun", "-np", "32", "vasp_std"]
    # Gamma-only runs (molecules) start the same way, vasp_gam instead of vasp_std
    assert eng.command(gamma=True)[-4:] == ["mpirun", "-np", "32", "vasp_gam"]


def test_firetask_engine_follows_the_precedence(monkeypatch):
    from dftflow.workflows.firetasks import _engine_for

    def spec(fw_env, settings=None):
        engine = {"name": "vasp", "settings": {"potcar_spec": True, **(settings or {})}}
        return {"dftflow": {"engine": engine}, "_fw_env": fw_env}

    monkeypatch.setenv("DFTFLOW_VASP_CMD", "mpirun -np 32 vasp_std")
    # the queue script's variable beats the FWorker's srun (the PBS example)
    assert _engine_for(spec({"vasp_cmd": "srun vasp_std"})).vasp_cmd[-2:] == ["32", "vasp_std"]
    # --vasp-cmd of `dftflow launch` beats the variable
    opt = {"vasp_cmd": "srun vasp_std", "dftflow_vasp_cmd": "ibrun vasp_std"}
    assert _engine_for(spec(opt)).vasp_cmd[-2:] == ["ibrun", "vasp_std"]
    monkeypatch.delenv("DFTFLOW_VASP_CMD")
    assert _engine_for(spec({"vasp_cmd": "srun vasp_std"})).vasp_cmd[-2:] == ["srun", "vasp_std"]
    study = {"vasp_cmd": "mpiexec -n 4 vasp_std"}
    assert _engine_for(spec({}, study)).vasp_cmd[-2:] == ["4", "vasp_std"]
    assert _engine_for(spec({})).vasp_cmd[-1].endswith("vasp_std")


# ---------------------------------------------------------------------------------------------
# The shipped queue examples run the command they show
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=40)
@pytest.mark.parametrize(
    ("adapter", "expected"),
    [
        ("my_qadapter_pbs.yaml", "mpirun -np 32 vasp_std"),
        ("my_qadapter_slurm.yaml", "srun vasp_std"),
    ],
)
def test_queue_example_runs_the_command_it_shows(tmp_path, adapter, expected):
    """The adapter's job script with the shipped FWorker (whose vasp_cmd is srun) runs a VASP
    stage: the command that starts VASP is the one the adapter exports."""
    from dftflow.workflows.launchpad import open_launchpad
    from dftflow.workflows.queue import load_qadapter, worker_command

    bindir, log = _fake_launchers(tmp_path)
    study_yaml = tmp_path / "study.yaml"
    data = yaml.safe_load(SMALL.read_text())
    data["engine"] = {
        "name": "vasp",
        "settings": {"potcar_spec": True, "polling_time_step": 0.1, "monitor_freq": 600},
    }
    study_yaml.write_text(yaml.safe_dump(data))
    study = tmp_path / "study"
    env = _env(bindir, log)
    subprocess.run(
        [DFTFLOW, "submit", str(study_yaml), "-o", str(study)], env=env, check=True, timeout=120
    )
    qadapter = load_qadapter(LAUNCHERS / adapter)
    rocket = worker_command(study, open_launchpad(study), LAUNCHERS / "my_fworker.yaml")
    qadapter["rocket_launch"] = rocket + " --nlaunches 1"  # the first Firework: the bulk relax
    script = qadapter.get_script_str(str(study)).replace("module load vasp/6.4", "true")
    assert f'export DFTFLOW_VASP_CMD="{expected}"' in script
    job = tmp_path / "job.sh"
    job.write_text(script)
    proc = subprocess.run(["bash", str(job)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    launched = log.read_text().splitlines()
    assert launched[0].startswith(expected.split()[0])
    assert launched[0].replace(str(bindir) + "/", "") == expected
    (doc_path,) = (study / "taskdocs").glob("*bulk__relax.json")
    doc = TaskDoc.from_json_file(doc_path)
    assert doc.metadata["vasp_cmd"] == expected
    assert doc.converged_ionic and doc.engine == "vasp"


# ---------------------------------------------------------------------------------------------
# dftflow calc: --vasp-cmd and DFTFLOW_VASP_CMD
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def bulk_poscar(tmp_path) -> Path:
    from ase.io import write

    from dftflow.structures.bulk import cspbbr3_cubic

    path = tmp_path / "bulk.vasp"
    write(path, cspbbr3_cubic(), format="vasp", direct=True)
    return path


@pytest.mark.slow(seconds=35)
def test_calc_uses_the_option_over_the_variable(tmp_path, bulk_poscar):
    bindir, log = _fake_launchers(tmp_path)
    env = _env(bindir, log, DFTFLOW_VASP_CMD="srun vasp_std")
    base = [DFTFLOW, "calc", str(bulk_poscar), "--stage", "static", "--engine", "vasp"]
    base += ["--potcar-spec", "--set", "ENCUT=120", "--set", "KPOINTS=2 2 2"]
    run = subprocess.run(
        [*base, "-d", str(tmp_path / "a"), "--vasp-cmd", "mpirun -np 4 vasp_std", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert log.read_text().splitlines()[0] == "mpirun -np 4 vasp_std"
    doc = TaskDoc.from_json_file(tmp_path / "a" / "taskdoc.json")
    assert doc.metadata["vasp_cmd"] == "mpirun -np 4 vasp_std"
    log.unlink()
    run = subprocess.run(
        [*base, "-d", str(tmp_path / "b")], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert log.read_text().splitlines()[0] == "srun vasp_std"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--engine", "mock", "--vasp-cmd", "srun vasp_std"], ["--vasp-cmd", "mock"]),
        (["--engine", "vasp", "--vasp-cmd", "  "], ["empty VASP command"]),
    ],
)
def test_calc_refuses_a_meaningless_command(tmp_path, bulk_poscar, args, words):
    run = subprocess.run(
        [DFTFLOW, "calc", str(bulk_poscar), "--stage", "static", "-d", str(tmp_path / "r"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert all(w in run.stderr for w in words)
    assert not (tmp_path / "r").exists()


def test_run_and_launch_take_the_option():
    for cmd in ("run", "launch", "calc"):
        out = subprocess.run(
            [DFTFLOW, cmd, "--help"], capture_output=True, text=True, timeout=60
        ).stdout
        assert "--vasp-cmd" in out


def test_queue_worker_carries_the_option(tmp_path):
    from dftflow.workflows.launchpad import LaunchpadHandle
    from dftflow.workflows.queue import worker_command

    handle = LaunchpadHandle("embedded", source="")
    line = worker_command(tmp_path, handle, None, "mpirun -np 8 vasp_std")
    assert line.endswith("--vasp-cmd 'mpirun -np 8 vasp_std'")
