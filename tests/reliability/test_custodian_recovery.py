"""Every failure the mock VASP can inject is corrected under custodian; a repeating one is one line.

Issue 12, item 7: a failure injected on the first attempt is detected by custodian's handler,
corrected (the INCAR of the successful attempt carries the change), the run ends converged, and
``TaskDoc.corrections`` records the correction. A failure that repeats past ``max_errors`` ends
with one line naming the failure and the correction budget (the reason a FIZZLED Firework shows).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pymatgen.io.vasp import Incar

from dftflow.errors import EngineError
from dftflow.testing.mock_vasp import FAILURES

pytestmark = pytest.mark.fault

#: kind -> (INCAR overrides the failure needs, custodian handler, error name, (INCAR tag, value)).
#: value None: the tag is set, its value depends on the system (NBANDS).
RECOVERY = {
    "zbrent": (None, "VaspErrorHandler", "zbrent", ("EDIFF", 1e-06)),
    "subspacematrix": ({"LREAL": "Auto"}, "VaspErrorHandler", "subspacematrix", ("LREAL", False)),
    "brmix": (None, "VaspErrorHandler", "brmix", ("IMIX", 1)),
    "edddav": (None, "VaspErrorHandler", "edddav", ("ALGO", "All")),
    "eddrmm": (None, "VaspErrorHandler", "eddrmm", ("POTIM", 0.25)),
    "too_few_bands": (None, "VaspErrorHandler", "too_few_bands", ("NBANDS", None)),
    # real-space projection failures: custodian's fix is LREAL = False (needs LREAL on)
    "nicht_konv": ({"LREAL": "Auto"}, "VaspErrorHandler", "nicht_konv", ("LREAL", False)),
    "real_optlay": ({"LREAL": "Auto"}, "VaspErrorHandler", "real_optlay", ("LREAL", False)),
    "kpoints_trans": (None, "StdErrHandler", "kpoints_trans", ("ISYM", 0)),
    "positive_energy": (
        None,
        "PositiveEnergyErrorHandler",
        "Positive energy",
        ("POTIM", 0.25),
    ),
    "potim": (None, "PotimErrorHandler", "POTIM", ("POTIM", 0.25)),
    "unconverged_electronic": (None, "UnconvergedErrorHandler", "Unconverged", ("ALGO", "All")),
    "unconverged_ionic": ({"NSW": 20}, "UnconvergedErrorHandler", "Unconverged", ("IBRION", 1)),
    "nonconverging": (
        {"NELM": 40},
        "NonConvergingErrorHandler",
        "Non-converging job",
        ("ALGO", "Normal"),
    ),
}
#: Kinds tested elsewhere, with the reason.
ELSEWHERE = {"frozen": "tests/engines/test_vasp.py::test_frozen_job_is_killed_and_restarted"}


@pytest.fixture(scope="module")
def slab():
    from dftflow.structures.slab import cspbbr3_001_slab

    return cspbbr3_001_slab(layers=3, supercell=(1, 1))


def test_mock_injects_every_failure_the_issue_names():
    named = {
        "zbrent",
        "subspacematrix",
        "brmix",
        "edddav",
        "eddrmm",
        "nicht_konv",
        "real_optlay",
        "too_few_bands",
        "unconverged_electronic",
        "unconverged_ionic",
        "nonconverging",
        "positive_energy",
    }
    assert named <= set(FAILURES)
    # every kind the mock can inject has a recovery expectation here (or a test elsewhere)
    assert set(FAILURES) == set(RECOVERY) | set(ELSEWHERE)
    # the crash kinds print the text custodian's handlers grep for, verbatim
    from custodian.vasp.handlers import StdErrHandler, VaspErrorHandler

    for kind, spec in FAILURES.items():
        for stream, handler in (("stdout", VaspErrorHandler), ("stderr", StdErrHandler)):
            if stream in spec:
                assert any(msg in spec[stream] for msg in handler.error_msgs[kind]), kind


#: Kinds run in the fast subset (``-m "not slow"``); the others take ~5 s each too.
FAST = {"zbrent", "nicht_konv", "real_optlay", "unconverged_electronic"}


@pytest.mark.parametrize(
    "kind",
    [k if k in FAST else pytest.param(k, marks=pytest.mark.slow(seconds=6)) for k in RECOVERY],
)
def test_first_attempt_failure_is_corrected_and_recorded(slab, tmp_path, mock_vasp, kind):
    overrides, handler, error, (tag, value) = RECOVERY[kind]
    mock_vasp.fail({1: kind})
    doc = mock_vasp.engine().run(slab, "slab_relax", tmp_path, overrides=overrides)
    assert doc.converged_electronic and doc.converged_ionic  # the second attempt succeeded
    assert doc.max_force_eV_per_A <= 0.02
    assert (tmp_path / ".mock_vasp_attempts").read_text() == "2"
    found = [c for c in doc.corrections if c.handler == handler]
    assert found, [c.handler for c in doc.corrections]
    assert error in found[0].errors and found[0].attempt >= 1
    sets = {}
    for action in found[0].actions:
        sets.update(action.get("action", {}).get("_set", {}))
    assert tag in sets and (value is None or sets[tag] == value)
    # custodian really applied it: the INCAR of the successful attempt carries the change
    incar = Incar.from_file(tmp_path / "INCAR")
    assert incar[tag] == sets[tag]
    # the TaskDoc on disk records it too, and says so in its warnings
    stored = json.loads((tmp_path / "taskdoc.json").read_text())
    assert any(c["handler"] == handler and error in c["errors"] for c in stored["corrections"])
    assert any("custodian made" in w and handler in w for w in doc.warnings)


def test_repeating_failure_ends_with_one_line_naming_it_and_the_budget(slab, tmp_path, mock_vasp):
    mock_vasp.fail({n: "zbrent" for n in range(1, 6)})
    with pytest.raises(EngineError) as exc:
        mock_vasp.engine(max_errors=2).run(slab, "slab_relax", tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "zbrent" in msg and "VaspErrorHandler" in msg
    assert "correction budget" in msg and "max_errors=2" in msg
    assert "zbrent (VaspErrorHandler) x2" in msg  # corrected twice, then the budget ended
    # the last correction (EDIFF tightened again) is named: the user can rerun from it
    assert "EDIFF=1e-07" in msg
    assert (tmp_path / ".mock_vasp_attempts").read_text() == "2"
    assert not (tmp_path / "taskdoc.json").exists()  # nothing claims a result


def test_unrecoverable_failure_names_handler_and_error(slab, tmp_path, mock_vasp):
    """PotimErrorHandler has nothing left once on damped MD with a tiny POTIM: one line says so."""
    mock_vasp.fail({n: "potim" for n in range(1, 6)})
    with pytest.raises(EngineError) as exc:
        mock_vasp.engine(max_errors=5).run(slab, "slab_relax", tmp_path, overrides={"POTIM": 0.05})
    msg = str(exc.value)
    assert "\n" not in msg
    assert "PotimErrorHandler found POTIM" in msg and "no further correction" in msg
    assert Incar.from_file(tmp_path / "INCAR")["IBRION"] == 3  # the one correction it had


@pytest.mark.slow(seconds=25)
def test_fizzled_firework_shows_the_failure_in_status(tmp_path):
    """In a study, the Firework whose VASP run custodian gives up on is FIZZLED with that line."""
    small = Path(__file__).parents[2] / "workflows" / "test_mock_small.yaml"
    text = small.read_text().replace(
        "  name: mock\n", "  name: mock\n  settings:\n    max_errors: 1\n", 1
    )
    assert "max_errors: 1" in text
    (tmp_path / "study.yaml").write_text(text)
    dftflow = shutil.which("dftflow") or str(Path(sys.executable).parent / "dftflow")
    env = {**os.environ, "DFTFLOW_MOCK_VASP_FAILURES": "1:zbrent,2:zbrent"}
    out = tmp_path / "out"
    run = subprocess.run(
        [dftflow, "run", str(tmp_path / "study.yaml"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode != 0
    proc = subprocess.run(
        [dftflow, "status", "-o", str(out), "--json"], capture_output=True, text=True, timeout=60
    )
    status = json.loads(proc.stdout)
    assert status["counts"].get("COMPLETED", 0) == 0 and status["failed"]
    reasons = [f["reason"] for f in status["failed"]]
    assert all("\n" not in r for r in reasons)
    assert any(
        "zbrent (VaspErrorHandler)" in r and "correction budget" in r and "max_errors=1" in r
        for r in reasons
    ), reasons
