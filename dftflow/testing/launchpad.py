"""Pytest fixtures for workflows: a temporary embedded LaunchPad and a real one-node SLURM cluster.

``slurm_cluster`` starts ``munged``, ``slurmctld`` and ``slurmd`` (Debian's slurm-wlm and munge)
with a generated ``slurm.conf`` whose state, spool, log and PID files live in a temporary
directory; it skips the test with the reason when the daemons cannot start (not root, packages
missing, a SLURM already running) and stops exactly the daemons it started, by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fireworks import FiretaskBase, Firework, FWAction, explicit_serialize

from dftflow.workflows.store import EmbeddedStore, interruptible


@explicit_serialize
class SleepTask(FiretaskBase):
    """Test Firetask: sleep (interruptible by SIGTERM), then append ``label`` to ``log``."""

    required_params = ["label", "log", "seconds"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Sleep, then record that this task ran to completion."""
        with interruptible():
            end = time.monotonic() + float(self["seconds"])
            while time.monotonic() < end:
                time.sleep(0.01)
        with open(self["log"], "a", encoding="utf-8") as fh:
            fh.write(f"{self['label']} {os.getpid()}\n")
        return FWAction(stored_data={"label": self["label"]})


def sleep_fireworks(study_dir: Path, n: int, seconds: float, log: Path, prefix: str = "fw"):
    """``n`` independent SleepTask Fireworks of ``study_dir`` (run by ``dftflow launch``)."""
    spec = {"dftflow": {"study_dir": str(Path(study_dir).absolute())}}
    return [
        Firework(
            SleepTask(label=f"{prefix}{i}", log=str(log), seconds=seconds),
            spec=dict(spec),
            name=f"{prefix}{i}",
        )
        for i in range(n)
    ]


@pytest.fixture
def embedded_store(tmp_path: Path) -> EmbeddedStore:
    """A fresh embedded LaunchPad in ``tmp_path/study/launchpad``."""
    return EmbeddedStore(tmp_path / "study" / "launchpad").create()


# ---------------------------------------------------------------------------------------------
# SLURM
# ---------------------------------------------------------------------------------------------
@dataclass
class SlurmCluster:
    """A running one-node SLURM cluster started by the fixture."""

    root: Path
    conf: Path
    env: dict[str, str]
    pids: dict[str, int]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, check=check, timeout=30
        )

    def wait_idle(self, timeout_s: float = 120.0) -> bool:
        """Wait until no job is queued or running; True if it happened in time."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            out = self.run("squeue", "-h", "-o", "%i", check=False).stdout.strip()
            if not out:
                return True
            time.sleep(0.5)
        return False


def _slurm_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "starting munged/slurmctld/slurmd needs root (CI runs as root)"
    for exe in ("munged", "slurmctld", "slurmd", "sbatch", "sinfo"):
        if shutil.which(exe) is None and not Path("/usr/sbin", exe).exists():
            return (
                f"{exe} not installed (apt-get install slurm-wlm munge; scripts/install.sh --test)"
            )
    return None


def _which(exe: str) -> str:
    return shutil.which(exe) or str(Path("/usr/sbin", exe))


def _node_line(env: dict[str, str]) -> str:
    out = subprocess.run(
        [_which("slurmd"), "-C"], capture_output=True, text=True, env=env, timeout=30
    ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("NodeName=")), "")
    if not line:
        raise RuntimeError(f"slurmd -C gave no node line: {out!r}")
    # use the real hostname and keep only the resources
    fields = [f for f in line.split() if f.split("=")[0] in ("CPUs", "Boards", "SocketsPerBoard",
              "CoresPerSocket", "ThreadsPerCore", "RealMemory")]  # fmt: skip
    return f"NodeName={socket.gethostname().split('.')[0]} " + " ".join(fields)


def _slurm_conf(root: Path, node_line: str, port0: int) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""ClusterName=dftflowtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={port0}
SlurmdPort={port0 + 1}
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=2
KillWait=5
{node_line} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _free_port_pair() -> int:
    for port in range(26817, 27800, 2):
        ok = True
        for p in (port, port + 1):
            with socket.socket() as s:
                try:
                    s.bind(("", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair for slurmctld/slurmd")


def _start_munge(root: Path) -> tuple[int | None, str]:
    """Start munged with its socket under ``root``; returns (pid, socket path)."""
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["mungekey", "--create"], check=False, capture_output=True)
    import tempfile

    # pytest's tmp dirs are private to root: munged (user munge) needs a directory it can reach
    run_dir = Path(tempfile.mkdtemp(prefix="dftflow-munge-"))
    os.chmod(run_dir, 0o755)
    shutil.chown(run_dir, "munge", "munge")
    (root / "munge_dir").write_text(str(run_dir))
    sock = run_dir / "munge.socket.2"
    pidfile = run_dir / "munged.pid"
    cmd = ["runuser", "-u", "munge", "--", _which("munged"), f"--socket={sock}",
           f"--pid-file={pidfile}", f"--log-file={run_dir}/munged.log",
           f"--seed-file={run_dir}/munged.seed"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"munged failed: {res.stderr.strip()[:200]}")
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            return int(pidfile.read_text().strip()), str(sock)
        time.sleep(0.05)
    raise RuntimeError("munged wrote no PID file")


def _stop(pid: int | None, timeout_s: float = 10.0) -> None:
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove_munge_dir(root: Path) -> None:
    marker = root / "munge_dir"
    if marker.exists():
        shutil.rmtree(marker.read_text().strip(), ignore_errors=True)


def _read_pid(path: Path, timeout_s: float = 15.0) -> int:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().strip())
        time.sleep(0.05)
    raise RuntimeError(f"no PID file {path}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster (munged, slurmctld, slurmd) for the test session."""
    reason = _slurm_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    os.chmod(root, 0o755)
    for d in ("state", "spool"):
        (root / d).mkdir()
    pids: dict[str, int] = {}
    try:
        munge_pid, munge_sock = _start_munge(root)
        pids["munged"] = munge_pid or 0
        env = dict(os.environ)
        conf = root / "slurm.conf"
        env["SLURM_CONF"] = str(conf)
        conf.write_text(_slurm_conf(root, _node_line(env), _free_port_pair()))
        # client commands and daemons talk to this munged through its socket
        conf.write_text(conf.read_text() + f"AuthInfo=socket={munge_sock}\n")
        res = subprocess.run([_which("slurmctld"), "-f", str(conf)], env=env, capture_output=True,
                             text=True, timeout=30)  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"slurmctld failed: {res.stderr.strip()[:200]}")
        pids["slurmctld"] = _read_pid(root / "slurmctld.pid")
        res = subprocess.run([_which("slurmd"), "-f", str(conf)], env=env, capture_output=True,
                             text=True, timeout=30)  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"slurmd failed: {res.stderr.strip()[:200]}")
        pids["slurmd"] = _read_pid(root / "slurmd.pid")
        cluster = SlurmCluster(root, conf, env, pids)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            out = cluster.run("sinfo", "-h", "-o", "%T", check=False).stdout
            if "idle" in out or "mixed" in out:
                break
            time.sleep(0.5)
        else:
            logs = (
                (root / "slurmctld.log").read_text()[-300:]
                if (root / "slurmctld.log").exists()
                else ""
            )
            raise RuntimeError(f"SLURM node never became idle: {logs}")
    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError, LookupError) as exc:
        for name in ("slurmd", "slurmctld", "munged"):
            _stop(pids.get(name))
        _remove_munge_dir(root)
        pytest.skip(f"cannot start a local SLURM cluster: {exc}")
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        yield cluster
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        for name in ("slurmd", "slurmctld", "munged"):
            _stop(pids.get(name))
        _remove_munge_dir(root)
