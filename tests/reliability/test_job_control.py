"""Job control of `dftflow run`, `launch` and `status`, driven as from a terminal (issue 12.2).

Every test runs the installed ``dftflow`` console script in its own session, so that a Ctrl-C can be
sent as a terminal sends it: SIGINT to the whole foreground process group (``os.killpg``), which
reaches the worker and the (mock) VASP it runs. The mock VASP is slowed down with
``DFTFLOW_MOCK_VASP_SECONDS`` so that the interrupt or the kill lands mid-calculation.
The slow marks are wall times measured with other jobs on the two cores (load 4-5); the
resumed runs of the study dominate them. The study is the small one (workflows/
test_mock_small.yaml) with one placement (:func:`job_study`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from dftflow.workflows.launchpad import open_launchpad
from dftflow.workflows.status import study_status

pytestmark = pytest.mark.fault

SMALL = Path(__file__).parents[2] / "workflows" / "test_mock_small.yaml"
DFTFLOW = shutil.which("dftflow") or str(Path(sys.executable).parent / "dftflow")
BULK = "test_mock_small/bulk/relax"
BULK_DOC = "test_mock_small__bulk__relax.json"


@pytest.fixture(scope="module")
def job_study(tmp_path_factory) -> Path:
    """The small study with one placement (same study name and Firework names: BULK, BULK_DOC).

    Each placement relaxation of the mock is two runs (custodian restarts it after NSW steps):
    one placement fewer makes a resumed run about a third shorter, and job control does not
    depend on the number of placements.
    """
    study = yaml.safe_load(SMALL.read_text())
    (ligand,) = study["ligands"]
    assert ligand["placements"]["max_candidates"] == 2
    ligand["placements"]["max_candidates"] = 1
    path = tmp_path_factory.mktemp("job_study") / SMALL.name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _restore_sigint() -> None:  # a background pytest may hand SIGINT down ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args: str, seconds: float = 0.0, failures: str = "") -> subprocess.Popen:
    """``dftflow ARGS`` in a new session (its own process group, like a terminal's job)."""
    env = {**os.environ, "DFTFLOW_MOCK_VASP_SECONDS": str(seconds)}
    env.pop("DFTFLOW_MOCK_VASP_FAILURES", None)
    if failures:
        env["DFTFLOW_MOCK_VASP_FAILURES"] = failures
    return subprocess.Popen(
        [DFTFLOW, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=_restore_sigint,
    )


def _dftflow(*args: str, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    proc = _start(*args, **kw)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _status(out: Path) -> dict:
    return study_status(open_launchpad(out))


def _wait_running(out: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> list[str]:
    """Names of the RUNNING Fireworks once ``n`` run (the mock VASP is sleeping in each)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        if (out / "launchpad" / "fireworks.json").is_file():
            running = _status(out)["running"]
            if len(running) >= n and len(_mock_vasps(proc)) >= n:  # inside the calculations
                return running
        time.sleep(0.2)
    raise AssertionError(f"no {n} Fireworks RUNNING after {timeout} s")


def _mock_vasps(proc: subprocess.Popen) -> list[psutil.Process]:
    """The mock VASP processes started (through workers and custodian) by ``proc``."""
    found = []
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            if any("mock_vasp" in a or "mock-vasp" in a for a in p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    """TaskDoc bytes and mtimes (ns): what a resume must leave untouched."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "taskdocs").glob("*")}


def _first_firework_done(study: Path, out: Path) -> dict[str, tuple[bytes, int]]:
    """Submit the study and run its first Firework (bulk relax) quickly."""
    assert _dftflow("submit", str(study), "-o", str(out)).returncode == 0
    r = _dftflow("launch", "-o", str(out), "--nlaunches", "1")
    assert r.returncode == 0, r.stderr
    assert _status(out)["counts"].get("COMPLETED") == 1
    done = _snapshot(out)
    assert list(done) == [BULK_DOC]
    return done


def _interrupt(proc: subprocess.Popen) -> tuple[str, float, list[psutil.Process]]:
    """Ctrl-C as a terminal sends it.

    Returns (stderr, seconds until the process exited, its workers and VASP processes).
    """
    children = psutil.Process(proc.pid).children(recursive=True)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return err, time.monotonic() - t0, children


def _assert_stopped_cleanly(
    out: Path, running: list[str], stopped: tuple[str, float, list], code: int
) -> None:
    err, dt, children = stopped
    assert code == 130, err
    assert dt < 15, f"took {dt:.1f} s to stop"
    lines = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and "run the same command again" in lines[0], err
    status = _status(out)
    # what was running is recorded FIZZLED (resumable), with the interrupt as the reason
    assert sorted(f["name"] for f in status["failed"]) == sorted(running), status
    assert all("SIGINT" in f["reason"] for f in status["failed"]), status["failed"]
    # nothing new was started: only the bulk relax completed, nothing RUNNING or lost
    assert status["counts"].get("COMPLETED") == 1, status
    assert status["running"] == [] and status["lost"] == []
    with open_launchpad(out).read_only() as lp:
        launched = {fw["name"] for fw in lp.fireworks.find({"launches": {"$ne": []}}, {"name": 1})}
    assert launched == {BULK, *running}
    assert children and not any(c.is_running() for c in children)  # no worker, no VASP left


@pytest.mark.slow(seconds=100)
def test_ctrl_c_with_one_worker_stops_then_the_same_command_resumes(job_study, tmp_path):
    out = tmp_path / "study"
    done = _first_firework_done(job_study, out)
    run = _start("run", str(job_study), "-o", str(out), "--engine", "mock", seconds=120)
    running = _wait_running(out, 1, run)
    assert len(running) == 1  # one worker: the default of the mock engine
    _assert_stopped_cleanly(out, running, _interrupt(run), run.returncode)
    assert _snapshot(out) == done

    # the same command resumes and completes the study; the finished bulk relax is untouched
    r = _dftflow("run", str(job_study), "-o", str(out), "--engine", "mock")
    assert r.returncode == 0, r.stderr
    assert "1 failed/lost put back to READY" in " ".join(r.stderr.split())  # console: stderr
    status = _status(out)
    assert status["counts"] == {"COMPLETED": status["total"]}
    assert _snapshot(out)[BULK_DOC] == done[BULK_DOC]
    assert (out / "summary.json").is_file()


@pytest.mark.slow(seconds=130)
def test_ctrl_c_with_two_workers_then_a_killed_worker_then_one_run_finishes(job_study, tmp_path):
    out = tmp_path / "study"
    done = _first_firework_done(job_study, out)
    # Ctrl-C with --workers 2: both worker processes stop, the running Firework FIZZLES
    run = _start("run", str(job_study), "-o", str(out), "--workers", "2", seconds=120)
    running = _wait_running(out, 1, run)  # after the bulk relax only the slab relax can run
    assert len(psutil.Process(run.pid).children()) == 2  # two workers
    _assert_stopped_cleanly(out, running, _interrupt(run), run.returncode)
    assert _snapshot(out) == done

    # the same command again, and its worker is killed (SIGKILL) mid-calculation: no chance to
    # record anything, its VASP is orphaned and goes on running
    run = _start("run", str(job_study), "-o", str(out), seconds=120)
    (running,) = _wait_running(out, 1, run)
    (vasp,) = _mock_vasps(run)
    run.kill()
    run.communicate(timeout=30)
    assert vasp.is_running()
    # the Firework stays RUNNING in the LaunchPad and is reported as lost, with the command
    status = json.loads(_dftflow("status", "-o", str(out), "--json").stdout)
    assert status["counts"].get("RUNNING") == 1
    assert [f["name"] for f in status["lost"]] == [running]
    r = _dftflow("status", "-o", str(out))
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("LOST")]
    assert running in line and "`dftflow run` again" in line

    # one command stops the orphan, reruns the lost Firework and finishes the study; the
    # finished bulk relax is untouched
    r = _dftflow("run", str(job_study), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "1 failed/lost put back to READY" in " ".join(r.stderr.split())  # console: stderr
    assert not vasp.is_running()
    status = _status(out)
    assert status["counts"] == {"COMPLETED": status["total"]}
    assert _snapshot(out)[BULK_DOC] == done[BULK_DOC]


@pytest.mark.slow(seconds=50)
def test_fizzled_firework_fails_launch_and_run_and_status_says_why(tmp_path):
    out = tmp_path / "study"
    study = yaml.safe_load(SMALL.read_text())
    study["engine"]["settings"] = {"max_errors": 2}  # custodian's correction budget
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump(study))
    # ZBRENT on every attempt: custodian corrects it twice (its budget), then gives up
    zbrent = ",".join(f"{i}:zbrent" for i in range(1, 20))
    assert _dftflow("submit", str(spec), "-o", str(out)).returncode == 0
    r = _dftflow("launch", "-o", str(out), failures=zbrent)
    assert r.returncode == 1, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: 1 Firework(s) FIZZLED: ") and BULK in line
    assert "Traceback" not in r.stderr

    # status: one line per FIZZLED Firework with custodian's reason; the same in --json
    r = _dftflow("status", "-o", str(out))
    assert r.returncode == 0
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("FIZZLED")]
    assert BULK in line and "failed under custodian" in line and "zbrent" in line
    (failed,) = json.loads(_dftflow("status", "-o", str(out), "--json").stdout)["failed"]
    assert failed["name"] == BULK
    reason = failed["reason"]  # custodian's diagnosis, without the exception's class
    assert reason.startswith("VASP in ") and "failed under custodian" in reason
    assert "max_errors=2" in reason and "zbrent" in reason
    assert "\n" not in failed["reason"]

    # run: puts it back to READY, it fails again, exit 1 with one summary line naming it
    r = _dftflow("run", str(spec), "-o", str(out), failures=zbrent)
    assert r.returncode == 1, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: 1 Firework(s) FIZZLED: ") and BULK in line
    assert "Traceback" not in r.stderr  # the traceback is in DIR/logs/, the reason in status
    assert "zbrent" in (out / "logs" / "tracebacks.log").read_text()
