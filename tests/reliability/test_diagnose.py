"""``dftflow diagnose DIR``: the VASP failures custodian's handlers detect, the directory untouched.

Issue 12, item 7. Failed runs are made by the mock VASP (one attempt, no custodian, stdout and
stderr redirected to vasp.out and std_err.txt as custodian's VaspJob does) and by real VASP
(custodian's own test files in ../shared/real_vasp).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dftflow.engines.diagnose import diagnose_vasp_run
from dftflow.testing.real_vasp import public_data, real_vasp_dir

pytestmark = pytest.mark.fault

#: kind -> (INCAR overrides, error name, handler, (INCAR tag, value) the correction sets).
DIAGNOSES = {
    "zbrent": (None, "zbrent", "VaspErrorHandler", ("EDIFF", 1e-06)),
    "subspacematrix": ({"LREAL": "Auto"}, "subspacematrix", "VaspErrorHandler", ("LREAL", False)),
    "brmix": (None, "brmix", "VaspErrorHandler", ("IMIX", 1)),
    "edddav": (None, "edddav", "VaspErrorHandler", ("ALGO", "All")),
    "eddrmm": (None, "eddrmm", "VaspErrorHandler", ("POTIM", 0.25)),
    "too_few_bands": (None, "too_few_bands", "VaspErrorHandler", ("NBANDS", None)),
    "nicht_konv": ({"LREAL": "Auto"}, "nicht_konv", "VaspErrorHandler", ("LREAL", False)),
    "real_optlay": ({"LREAL": "Auto"}, "real_optlay", "VaspErrorHandler", ("LREAL", False)),
    "kpoints_trans": (None, "kpoints_trans", "StdErrHandler", ("ISYM", 0)),
    "positive_energy": (None, "Positive energy", "PositiveEnergyErrorHandler", ("POTIM", 0.25)),
    "potim": (None, "POTIM", "PotimErrorHandler", ("POTIM", 0.25)),
    "unconverged_electronic": (None, "Unconverged", "UnconvergedErrorHandler", ("ALGO", "All")),
    "unconverged_ionic": ({"NSW": 20}, "Unconverged", "UnconvergedErrorHandler", ("IBRION", 1)),
    "nonconverging": (
        {"NELM": 40},
        "Non-converging job",
        "NonConvergingErrorHandler",
        ("ALGO", "Normal"),
    ),
}


def _dftflow() -> str:
    return shutil.which("dftflow") or str(Path(sys.executable).parent / "dftflow")


def _diagnose_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "240"}  # a wide terminal: rich wraps no table cell
    return subprocess.run(
        [_dftflow(), "diagnose", *args], capture_output=True, text=True, timeout=120, env=env
    )


def _snapshot(directory: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under ``directory``: (sha256, size, mtime_ns)."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(directory))] = (digest, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def slab():
    from dftflow.structures.slab import cspbbr3_001_slab

    return cspbbr3_001_slab(layers=3, supercell=(1, 1))


def failed_run(slab, directory: Path, kind: str | None, overrides=None) -> Path:
    """One mock VASP attempt in ``directory`` with failure ``kind`` (None: a clean run)."""
    from dftflow.inputs.vasp import write_inputs

    directory.mkdir(parents=True, exist_ok=True)
    write_inputs(slab, "slab_relax", directory, overrides=overrides, potcar_spec=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("DFTFLOW_MOCK_VASP_FAILURES", None)
    if kind:
        env["DFTFLOW_MOCK_VASP_FAILURES"] = f"1:{kind}"
    with open(directory / "vasp.out", "w") as out, open(directory / "std_err.txt", "w") as err:
        subprocess.run(
            [sys.executable, "-m", "dftflow.testing.mock_vasp"],
            cwd=directory,
            stdout=out,
            stderr=err,
            env=env,
            timeout=120,
            check=False,
        )
    return directory


@pytest.fixture(scope="module")
def zbrent_dir(slab, tmp_path_factory):
    return failed_run(slab, tmp_path_factory.mktemp("zbrent"), "zbrent")


def _sets(correction) -> dict:
    out = {}
    for action in correction or []:
        out.update(action.get("action", {}).get("_set", {}))
    return out


#: Kinds in the fast subset (``-m "not slow"``); each kind takes one mock VASP attempt (~2-5 s).
FAST = {"zbrent", "nicht_konv", "real_optlay", "positive_energy", "unconverged_ionic"}


@pytest.mark.parametrize(
    "kind",
    [k if k in FAST else pytest.param(k, marks=pytest.mark.slow(seconds=4)) for k in DIAGNOSES],
)
def test_every_mock_failure_is_named_with_custodians_correction(slab, tmp_path, kind):
    overrides, name, handler, (tag, value) = DIAGNOSES[kind]
    run = failed_run(slab, tmp_path / kind, kind, overrides)
    before = _snapshot(run)
    diagnosis = diagnose_vasp_run(run)
    assert _snapshot(run) == before
    found = [e for e in diagnosis.errors if e.name == name]
    assert found, [e.name for e in diagnosis.errors]
    err = found[0]
    assert err.handler == handler
    sets = _sets(err.correction)
    assert tag in sets and (value is None or sets[tag] == value)
    assert err.fixable
    if handler in ("VaspErrorHandler", "StdErrHandler"):  # the VASP line that matched
        from custodian.vasp import handlers

        patterns = getattr(handlers, handler).error_msgs[name]
        assert any(p in err.message for p in patterns)


@pytest.mark.slow(seconds=12)
def test_corrected_run_is_clean_and_reports_custodians_history(slab, tmp_path, mock_vasp):
    """A run custodian saved: the last attempt is clean, custodian.json's correction is listed."""
    mock_vasp.fail({1: "zbrent"})
    run = tmp_path / "saved"
    doc = mock_vasp.engine().run(slab, "slab_relax", run)
    before = _snapshot(run)
    proc = _diagnose_cli(str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["errors"] == [] and data["validation"] == []
    (earlier,) = data["earlier_corrections"]
    assert earlier["handler"] == "VaspErrorHandler" and earlier["errors"] == ["zbrent"]
    assert earlier["actions"] == doc.corrections[0].actions
    assert _snapshot(run) == before
    human = _diagnose_cli(str(run))
    assert "custodian already corrected this run 1 time(s): VaspErrorHandler(zbrent)" in " ".join(
        human.stdout.split()
    )


@pytest.mark.slow(seconds=12)
def test_failure_without_a_correction_is_not_fixable(slab, tmp_path):
    """REAL_OPTLAY with LREAL off: custodian's only fix (LREAL = False) is already in place."""
    run = failed_run(slab, tmp_path / "real_optlay", "real_optlay")  # the stage's LREAL: unset
    (err,) = diagnose_vasp_run(run).errors
    assert (err.name, err.correction, err.fixable) == ("real_optlay", [], False)
    proc = _diagnose_cli(str(run))
    row = next(line for line in proc.stdout.splitlines() if line.startswith("│ real_optlay "))
    assert "custodian would stop the run" in row


def test_cli_json_names_the_failure_and_leaves_the_directory_untouched(zbrent_dir):
    before = _snapshot(zbrent_dir)
    proc = _diagnose_cli(str(zbrent_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # custodian's logging and pymatgen's warnings stay quiet
    data = json.loads(proc.stdout)
    assert [(e["name"], e["handler"]) for e in data["errors"]] == [("zbrent", "VaspErrorHandler")]
    correction = data["errors"][0]["correction"]
    assert {"dict": "INCAR", "action": {"_set": {"EDIFF": 1e-06}}} in correction
    assert {"file": "CONTCAR", "action": {"_file_copy": {"dest": "POSCAR"}}} in correction
    assert data["errors"][0]["file"] == "vasp.out"
    assert "ZBRENT: fatal error in bracketing" in data["errors"][0]["message"]
    assert "FrozenJobErrorHandler" in data["not_checked"]
    assert _snapshot(zbrent_dir) == before  # bytes and mtimes
    assert not list(zbrent_dir.glob("error.*.tar.gz"))  # custodian's backups went elsewhere


def test_cli_reads_compressed_outputs(zbrent_dir, tmp_path):
    run = tmp_path / "gz"
    shutil.copytree(zbrent_dir, run)
    for name in ("vasp.out", "OSZICAR", "OUTCAR", "INCAR"):
        with open(run / name, "rb") as fin, gzip.open(run / f"{name}.gz", "wb") as fout:
            shutil.copyfileobj(fin, fout)
        (run / name).unlink()
    before = _snapshot(run)
    proc = _diagnose_cli(str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [e["name"] for e in data["errors"]] == ["zbrent"]
    assert _snapshot(run) == before
    assert sorted(p.name for p in run.iterdir()) == sorted(before)  # nothing decompressed here


def test_cli_table_names_failure_and_correction(zbrent_dir):
    proc = _diagnose_cli(str(zbrent_dir))
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("│ zbrent "))
    for word in ("VaspErrorHandler", "vasp.out", "ZBRENT: fatal error in bracketing"):
        assert word in row, word
    assert "CONTCAR -> POSCAR; INCAR EDIFF=1e-06; INCAR NELMIN=8" in row


@pytest.mark.slow(seconds=12)
def test_clean_run_has_no_errors(slab, tmp_path):
    run = failed_run(slab, tmp_path / "clean", None)
    proc = _diagnose_cli(str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["errors"] == [] and data["validation"] == []
    assert {"VaspErrorHandler", "UnconvergedErrorHandler", "StdErrHandler"} <= set(data["checked"])
    human = _diagnose_cli(str(run))
    assert human.returncode == 0 and "no VASP failure" in human.stdout


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "afile").write_text("x") and p / "afile", "is not a directory"),
        (lambda p: p, "is not a VASP run"),
    ],
)
def test_not_a_run_is_one_line_exit_2(tmp_path, make, words):
    (tmp_path / "INCAR").write_text("ENCUT = 400\n")  # inputs alone are not a run
    target = make(tmp_path)
    proc = _diagnose_cli(str(target), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr


def test_corrupt_compressed_output_is_one_line_exit_2(zbrent_dir, tmp_path):
    run = tmp_path / "corrupt"
    shutil.copytree(zbrent_dir, run)
    (run / "vasp.out").unlink()
    (run / "vasp.out.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    proc = _diagnose_cli(str(run))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read" in lines[0] and "vasp.out.gz" in lines[0]


# ------------------------------------------------------------------------------------------------
# real VASP outputs (custodian's own test files)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=12)
def test_real_unconverged_run_has_no_correction_left():
    """custodian's tests/files/unconverged/vasprun.xml.unconverged_unfixable: its test
    ``test_uncorrectable`` expects errors {"Unconverged"} and actions None."""
    run = real_vasp_dir("custodian/v641_unconverged")
    before = _snapshot(run)
    proc = _diagnose_cli(str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [(e["name"], e["handler"]) for e in data["errors"]] == [
        ("Unconverged", "UnconvergedErrorHandler")
    ]
    assert data["errors"][0]["correction"] is None  # custodian would stop the run
    assert data["errors"][0]["fixable"] is False
    assert "electronic" in data["errors"][0]["message"]
    # only vasprun.xml is there: its inputs came from it, in the copy
    assert data["inputs_from_vasprun"] == ["INCAR", "KPOINTS", "POSCAR"]
    assert _snapshot(run) == before
    human = _diagnose_cli(str(run))
    assert "custodian would stop the run" in " ".join(human.stdout.split())


def test_real_truncated_vasprun_fails_custodians_validation():
    """custodian's tests/files/large_cell_real_optlay/vasprun.xml stops after <parameters>."""
    run = real_vasp_dir("custodian/v535_truncated_vasprun")
    data = json.loads(_diagnose_cli(str(run), "--json").stdout)
    assert data["errors"] == []
    assert "VasprunXMLValidator" in [v["validator"] for v in data["validation"]]


@pytest.mark.parametrize("name", ["v544_ispin1_static", "v541_ispin2_static_lorbit_quirk"])
def test_real_finished_static_runs_are_clean(name):
    """Finished static runs (vasprun.xml.gz, OUTCAR.gz, OSZICAR): no handler fires."""
    run = real_vasp_dir(f"custodian/{name}")
    before = _snapshot(run)
    diagnosis = diagnose_vasp_run(run)
    assert diagnosis.errors == [] and diagnosis.validation == []
    assert {
        "UnconvergedErrorHandler",
        "NonConvergingErrorHandler",
        "PositiveEnergyErrorHandler",
    } <= set(diagnosis.checked)
    assert diagnosis.not_checked["VaspErrorHandler"] == "no vasp.out"
    assert _snapshot(run) == before


#: custodian's vasp.out error files (tests/files/vasp.<kind> with its INCAR, KPOINTS, POSCAR and
#: CONTCAR) -> the error name and the first correction its tests/vasp/test_handlers.py expects.
REAL_ERRORS = {
    "subspace": ("subspacematrix", {"dict": "INCAR", "action": {"_set": {"LREAL": False}}}),
    "zbrent": ("zbrent", {"dict": "INCAR", "action": {"_set": {"EDIFF": 1e-06}}}),
    "brmix": ("brmix", {"dict": "INCAR", "action": {"_set": {"IMIX": 1}}}),
    "edddav": ("edddav", {"dict": "INCAR", "action": {"_set": {"ALGO": "All", "ISEARCH": 1}}}),
    "eddrmm": ("eddrmm", {"dict": "INCAR", "action": {"_set": {"ALGO": "Normal"}}}),
    "nicht_konvergent": ("nicht_konv", {"dict": "INCAR", "action": {"_set": {"LREAL": False}}}),
    "real_optlay": ("real_optlay", {"dict": "INCAR", "action": {"_set": {"LREAL": False}}}),
}


@pytest.mark.parametrize("kind", sorted(REAL_ERRORS))
def test_real_vasp_error_outputs_are_named_with_custodians_correction(kind, tmp_path):
    """Real VASP error messages (custodian's test files): the name and correction custodian's own
    tests expect, the directory unchanged."""
    data = public_data("custodian_vasp_errors")
    run = tmp_path / kind
    run.mkdir()
    for name in ("INCAR", "KPOINTS", "POSCAR", "CONTCAR"):
        shutil.copy(data / name, run / name)
    shutil.copy(data / f"vasp.{kind}", run / "vasp.out")
    before = _snapshot(run)
    diagnosis = diagnose_vasp_run(run)
    name, action = REAL_ERRORS[kind]
    assert [e.name for e in diagnosis.errors] == [name]
    assert diagnosis.errors[0].handler == "VaspErrorHandler"
    assert action in diagnosis.errors[0].correction
    assert _snapshot(run) == before
