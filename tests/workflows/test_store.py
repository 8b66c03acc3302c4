"""The embedded LaunchPad under concurrent workers, SIGTERM, read-only commands and many openers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from dftflow.cli import main
from dftflow.testing.launchpad import sleep_fireworks
from dftflow.workflows.launchpad import open_launchpad
from dftflow.workflows.status import _pid_alive, study_status
from dftflow.workflows.store import EmbeddedStore


def _worker(study_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dftflow", "launch", "-o", str(study_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _states(store: EmbeddedStore) -> Counter:
    with store.read_only() as lp:
        return Counter(fw["state"] for fw in lp.fireworks.find({}, {"state": 1}))


def _log_labels(log: Path) -> Counter:
    if not log.exists():
        return Counter()
    return Counter(line.split()[0] for line in log.read_text().splitlines())


def test_add_and_read_back_across_processes(embedded_store, tmp_path):
    study = embedded_store.directory.parent
    lp = embedded_store.launchpad()
    lp.add_wf(sleep_fireworks(study, 1, 0.0, tmp_path / "log")[0])
    code = (
        "from dftflow.workflows.store import EmbeddedStore;"
        f"s=EmbeddedStore({str(embedded_store.directory)!r});"
        "print(sorted(s.launchpad().get_fw_ids()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1]"


def test_concurrent_workers_run_each_firework_exactly_once(embedded_store, tmp_path):
    study = embedded_store.directory.parent
    log = tmp_path / "ran.log"
    n = 24
    with embedded_store.session() as lp:
        for fw in sleep_fireworks(study, n, 0.05, log):
            lp.add_wf(fw)
    workers = [_worker(study) for _ in range(3)]
    # a workflow added while the workers run is not lost
    time.sleep(0.5)
    late = sleep_fireworks(study, 4, 0.05, log, prefix="late")
    embedded_store.launchpad().add_wf(late[0])
    with embedded_store.session() as lp:
        for fw in late[1:]:
            lp.add_wf(fw)
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err[-2000:]
    # late Fireworks may arrive after every worker finished: one more worker picks them up
    w = _worker(study)
    w.communicate(timeout=60)
    labels = _log_labels(log)
    assert len(labels) == n + 4
    assert set(labels.values()) == {1}, labels
    assert _states(embedded_store) == Counter({"COMPLETED": n + 4})
    with embedded_store.read_only() as lp:
        assert lp.launches.count_documents({}) == n + 4
    pids = {line.split()[1] for line in log.read_text().splitlines()}
    assert len(pids) >= 2  # the work was really shared


def test_sigterm_keeps_finished_work_and_fizzles_the_running_one(embedded_store, tmp_path):
    study = embedded_store.directory.parent
    log = tmp_path / "ran.log"
    with embedded_store.session() as lp:
        for fw in sleep_fireworks(study, 3, 0.1, log, prefix="quick"):
            lp.add_wf(fw)
        lp.add_wf(sleep_fireworks(study, 1, 60.0, log, prefix="slow")[0])
    w = _worker(study)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        with embedded_store.read_only() as lp:
            if lp.fireworks.find_one({"name": "slow0", "state": "RUNNING"}):
                break
        time.sleep(0.1)
    w.send_signal(signal.SIGTERM)
    w.communicate(timeout=30)
    states = _states(embedded_store)
    assert states == Counter({"COMPLETED": 3, "FIZZLED": 1})
    status = study_status(open_launchpad(study))
    assert status["failed"][0]["name"] == "slow0"
    assert "SIGTERM" in status["failed"][0]["reason"]
    # rerun puts it back; nothing finished is run again
    assert main(["rerun", "-o", str(study)]) == 0
    assert _states(embedded_store)["READY"] == 1
    with embedded_store.session() as lp:
        fw_id = lp.get_fw_ids({"name": "slow0"})[0]
        lp.fireworks.update_one({"fw_id": fw_id}, {"$set": {"spec._tasks.0.seconds": 0.1}})
    _worker(study).communicate(timeout=60)
    assert _states(embedded_store) == Counter({"COMPLETED": 4})
    assert _log_labels(log) == Counter({"quick0": 1, "quick1": 1, "quick2": 1, "slow0": 1})


def test_status_is_read_only(embedded_store, tmp_path, capsys):
    study = embedded_store.directory.parent
    embedded_store.launchpad().add_wf(sleep_fireworks(study, 2, 0.0, tmp_path / "log")[0])
    before = hashlib.sha256(embedded_store.file.read_bytes()).hexdigest()
    mtime = embedded_store.file.stat().st_mtime_ns
    assert main(["status", "-o", str(study), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"READY": 1' in out
    assert hashlib.sha256(embedded_store.file.read_bytes()).hexdigest() == before
    assert embedded_store.file.stat().st_mtime_ns == mtime


def test_read_operations_do_not_rewrite_the_store(embedded_store, tmp_path):
    study = embedded_store.directory.parent
    lp = embedded_store.launchpad()
    lp.add_wf(sleep_fireworks(study, 1, 0.0, tmp_path / "log")[0])
    writes = embedded_store.writes
    lp.get_fw_ids()
    lp.get_fw_dict_by_id(1)
    lp.run_exists()
    assert embedded_store.writes == writes


@pytest.mark.slow(seconds=25)
def test_sixteen_simultaneous_openers(embedded_store, tmp_path):
    study = embedded_store.directory.parent
    with embedded_store.session() as lp:
        for fw in sleep_fireworks(study, 50, 0.0, tmp_path / "log"):
            lp.add_wf(fw)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dftflow", "status", "-o", str(study), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-300:] for r in results]
    assert all('"total": 50' in out for out, _ in results)


def test_corrupt_store_is_one_line_error(embedded_store, capsys):
    embedded_store.file.write_text('{"dftflow": ')
    assert main(["status", "-o", str(embedded_store.directory.parent)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "Traceback" not in err


def test_missing_store_is_one_line_error(tmp_path, capsys):
    assert main(["status", "-o", str(tmp_path)]) == 2
    assert "no dftflow LaunchPad" in capsys.readouterr().err


def test_atomic_flush_leaves_no_temp_files(embedded_store, tmp_path):
    study = embedded_store.directory.parent
    lp = embedded_store.launchpad()
    for fw in sleep_fireworks(study, 5, 0.0, tmp_path / "log"):
        lp.add_wf(fw)
    names = sorted(p.name for p in embedded_store.directory.iterdir())
    assert names == ["fireworks.json", "store.lock"]
    assert os.path.getsize(embedded_store.file) > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "dftflow_launchpad: mongodb\nhost: x\npassword: hunter2\n",
            "password must not be written",
        ),
        ("dftflow_launchpad: mongodb\nhost: ${DFTFLOW_TEST_UNSET_VAR}\n", "DFTFLOW_TEST_UNSET_VAR"),
        ("dftflow_launchpad: couchdb\n", "must be 'embedded' or 'mongodb'"),
        ("dftflow_launchpad: mongodb\nhots: x\n", "unknown LaunchPad key"),
    ],
)
def test_launchpad_file_mistakes(tmp_path, capsys, content, message):
    lpad = tmp_path / "lpad.yaml"
    lpad.write_text(content)
    assert main(["status", "-o", str(tmp_path), "-l", str(lpad)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unreachable_mongodb_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DFTFLOW_MONGO_HOST", "127.0.0.1")
    monkeypatch.setenv("DFTFLOW_MONGO_PORT", "1")  # nothing listens on port 1
    lpad = Path(__file__).parents[2] / "launchers" / "my_launchpad_mongodb.yaml"
    t0 = time.monotonic()
    assert main(["status", "-o", str(tmp_path), "-l", str(lpad)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach MongoDB at 127.0.0.1:1" in err
    assert len(err.strip().splitlines()) == 1
    assert time.monotonic() - t0 < 20


def test_killed_worker_is_detected_as_lost_and_rerun(embedded_store, tmp_path, capsys):
    study = embedded_store.directory.parent
    log = tmp_path / "ran.log"
    embedded_store.launchpad().add_wf(sleep_fireworks(study, 1, 60.0, log, prefix="slow")[0])
    w = _worker(study)
    end = time.monotonic() + 60
    while time.monotonic() < end and not _states(embedded_store).get("RUNNING"):
        time.sleep(0.1)
    w.kill()  # SIGKILL: no chance to record anything
    w.communicate(timeout=30)
    assert _states(embedded_store) == Counter({"RUNNING": 1})
    assert main(["status", "-o", str(study), "--json"]) == 0
    assert '"lost": [\n    {\n      "fw_id": 1' in capsys.readouterr().out
    assert main(["rerun", "-o", str(study)]) == 0
    assert _states(embedded_store) == Counter({"READY": 1})


def test_stopping_run_workers_stops_its_workers_cleanly(embedded_store, tmp_path):
    """SIGTERM to the parent of `run_workers`: every worker stops, running Fireworks FIZZLE."""
    study = embedded_store.directory.parent
    log = tmp_path / "ran.log"
    with embedded_store.session() as lp:
        for fw in sleep_fireworks(study, 4, 60.0, log, prefix="slow"):
            lp.add_wf(fw)
    code = (
        "import sys; from dftflow.workflows.launchpad import open_launchpad; "
        "from dftflow.workflows.workers import run_workers; "
        "h = open_launchpad(sys.argv[1]); run_workers(h, sys.argv[1], 2)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(study)])
    end = time.monotonic() + 60
    while time.monotonic() < end and _states(embedded_store)["RUNNING"] < 2:
        time.sleep(0.1)
    assert _states(embedded_store)["RUNNING"] == 2  # two workers side by side
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) == 128 + signal.SIGTERM
    assert _states(embedded_store) == Counter({"FIZZLED": 2, "READY": 2})
    assert sorted(p.name for p in (study / "logs").glob("worker-*.log")) == [
        "worker-1.log",
        "worker-2.log",
    ]
    with embedded_store.read_only() as lp:
        pids = {int(d["fworker"]["name"].rsplit(":", 1)[1]) for d in lp.launches.find({})}
    assert len(pids) == 2 and not any(_pid_alive(p) for p in pids)  # no worker left
    assert not log.exists()  # nothing ran to completion


_ADAPTER_CHECK = """
import sys
import mongomock
import mongomock.collection as mc

original = mc.Collection.insert_one
import dftflow.cli, dftflow.workflows.launchpad, dftflow.workflows.store  # noqa: E401
assert mc.Collection.insert_one is original, "mongomock patched at import"
assert "mongomock_persistence" not in sys.modules, "mongomock-persistence imported at import"

from dftflow.workflows import mongomock_adapter as adapter
adapter.install()
counted = mc.Collection.insert_one
assert counted.__wrapped__ is original and "mongomock_persistence" in sys.modules
adapter.install()
assert mc.Collection.insert_one is counted, "second install wrapped again"

coll = mongomock.MongoClient().db.things  # no store file named: an in-memory store
n = adapter.write_count()
coll.insert_one({"x": 1})
coll.find_one({"x": 1})
assert adapter.write_count() == n + 1, (n, adapter.write_count())
print("ok")
"""


def test_mongomock_adapter_is_explicit_and_idempotent():
    """Importing dftflow patches nothing; install() patches once and counts only writes."""
    env = {k: v for k, v in os.environ.items() if k != "MONGOMOCK_SERVERSTORE_FILE"}
    out = subprocess.run(
        [sys.executable, "-c", _ADAPTER_CHECK], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_opening_a_store_leaves_the_environment_alone(embedded_store):
    """The store file is named to mongomock-persistence only while a LaunchPad is made."""
    before = os.environ.get("MONGOMOCK_SERVERSTORE_FILE")
    embedded_store.launchpad().get_fw_ids()
    with embedded_store.read_only() as lp:
        lp.get_fw_ids()
    assert os.environ.get("MONGOMOCK_SERVERSTORE_FILE") == before
