# ruff: noqa: E501 - one case per line in the table of cases
"""One contract for every command (issue 12, item 1), through the installed ``dftflow`` script.

For every sub-command: a usage error, a bad value, an unreadable input path and an unwritable
output path (where the command has one) each give exit code 2, exactly one non-empty line on
stderr (``error: ...``, no traceback), and leave the working directory exactly as it was (no
partial file, no empty directory).

"Unreadable" and "unwritable" are made with permissions (``chmod 000`` file or directory,
``chmod 0o555`` directory) for a normal user; when the tests run as root, who ignores permissions,
with a directory where a file is read, a regular file where a directory is read, and a path under
a regular file for outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fault

REPO = Path(__file__).resolve().parents[2]
STUDY_YAML = REPO / "workflows" / "test_mock_small.yaml"
ROOT = os.geteuid() == 0


def _exe() -> str:
    return shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))


def _dftflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_exe(), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


# -------------------------------------------------------------------------------------------------
# the cases: (command, kind, argv with {placeholders})
# -------------------------------------------------------------------------------------------------
CASES: list[tuple[str, str, str]] = [
    # ligands (no value options, no paths)
    ("ligands", "usage", "ligands --no-such-option"),
    ("ligands", "usage", "ligands --json=yes"),
    # inputs
    ("inputs", "usage", "inputs {slab} -o out"),
    ("inputs", "value", "inputs {slab} --stage no_such_stage --potcar-spec -o out"),
    ("inputs", "value", "inputs {slab} --stage slab_relax --potcar-spec --set ENCUT=abc -o out"),
    ("inputs", "value", "inputs {slab} --stage slab_relax --potcar-spec --set NOSUCHTAG=1 -o out"),
    ("inputs", "unreadable", "inputs {unreadable_file} --stage slab_relax --potcar-spec -o out"),
    ("inputs", "unwritable", "inputs {slab} --stage slab_relax --potcar-spec -o {unwritable}"),
    # calc
    ("calc", "usage", "calc {slab} --stage static --engine mock"),
    ("calc", "value", "calc {slab} --stage static --engine no_such_engine -d run"),
    ("calc", "value", "calc {slab} --stage static --engine mock --set ISMEAR=0.5 -d run"),
    ("calc", "unreadable", "calc {unreadable_file} --stage static --engine mock -d run"),
    ("calc", "unwritable", "calc {slab} --stage static --engine mock -d {unwritable}"),
    # parse
    ("parse", "usage", "parse"),
    ("parse", "unreadable", "parse {unreadable_dir}"),
    ("parse", "unreadable", "parse {empty_dir}"),
    # diagnose (writes nothing: custodian's corrections go to a temporary copy)
    ("diagnose", "usage", "diagnose"),
    ("diagnose", "usage", "diagnose {run} --no-such-option"),
    ("diagnose", "unreadable", "diagnose {unreadable_dir}"),
    ("diagnose", "unreadable", "diagnose {empty_dir}"),
    # report
    ("report", "usage", "report --no-such-option"),
    ("report", "unreadable", "report {unreadable_dir}"),
    ("report", "unwritable", "report {unwritable_study}"),
    # run / submit / launch / status / rerun
    ("run", "usage", "run {study}"),
    ("run", "value", "run {study} -o st --engine no_such_engine"),
    ("run", "value", "run {study} -o st --workers -1"),
    ("run", "unreadable", "run {unreadable_file} -o st"),
    ("run", "unwritable", "run {study} -o {unwritable}"),
    ("submit", "usage", "submit"),
    ("submit", "value", "submit {study} -o st --engine no_such_engine"),
    ("submit", "unreadable", "submit {unreadable_file} -o st"),
    ("submit", "unwritable", "submit {study} -o {unwritable}"),
    ("screen", "usage", "screen --no-such-option"),
    ("screen", "usage", "screen --smiles CN --name a --top-k 0 -o sc"),
    ("screen", "value", "screen --smiles CN --smiles CS --name a -o sc"),
    ("screen", "value", "screen --smiles CCCC --name butane -o sc"),
    ("screen", "value", "screen --smiles CN --name a --engine no_such_engine -o sc"),
    ("screen", "unreadable", "screen {unreadable_file} -o sc"),
    ("screen", "unwritable", "screen --smiles CN --name a -o {unwritable}"),
    ("launch", "usage", "launch --no-such-option"),
    ("launch", "value", "launch -o st --nlaunches -1"),
    ("launch", "unreadable", "launch -o {unreadable_dir}"),
    ("launch", "unreadable", "launch -o {empty_dir} --fworker {unreadable_file}"),
    ("status", "usage", "status --no-such-option"),
    ("status", "unreadable", "status -o {unreadable_dir}"),
    ("rerun", "usage", "rerun --no-such-option"),
    ("rerun", "value", "rerun -o {empty_dir} --silent-hours -1"),
    ("rerun", "unreadable", "rerun -o {unreadable_dir}"),
    # build slab / complex / molecule
    ("build slab", "usage", "build slab --layers 3"),
    ("build slab", "value", "build slab --layers abc -o s.vasp"),
    ("build slab", "value", "build slab --supercell 2y2 -o s.vasp"),
    ("build slab", "value", "build slab --vacuum -3 -o s.vasp"),
    ("build slab", "value", "build slab --termination XY -o s.vasp"),
    ("build slab", "unwritable", "build slab --layers 3 --supercell 1x1 -o {unwritable}/s.vasp"),
    ("build slab", "value", "build slab --defect V_Xx -o s.vasp"),
    ("build slab", "value", "build slab --defect V_PbBr2 --termination CsBr -o s.vasp"),
    ("build slab", "value", "build slab --defect V_CsBr --layers 3 -o s.vasp"),
    ("build slab", "value", "build slab --defect V_Br --supercell 1x1 -o s.vasp"),
    ("build slab", "value", "build slab --defect V_Br --supercell 2x1 -o s.vasp"),
    ("build slab", "unwritable", "build slab --defect V_Br -o {unwritable}/s.vasp"),
    ("build complex", "usage", "build complex --ligand AcO -o c.vasp"),
    ("build complex", "value", "build complex --slab {slab} --ligand NoSuchLigand -o c.vasp"),
    ("build complex", "value", "build complex --slab {slab} --ligand AcO --placement 999 -o c.vasp"),
    ("build complex", "unreadable", "build complex --slab {unreadable_file} --ligand AcO -o c.vasp"),
    ("build complex", "unwritable", "build complex --slab {slab} --ligand AcO -o {unwritable}/c.vasp"),
    ("build molecule", "usage", "build molecule --ligand AcO"),
    ("build molecule", "value", "build molecule --smiles C1CC -o m.xyz"),
    ("build molecule", "value", "build molecule --ligand AcO --form no_such_form -o m.xyz"),
    ("build molecule", "unreadable", "build molecule --ligand AcO --cell-from {unreadable_file} -o m.xyz"),
    ("build molecule", "unwritable", "build molecule --ligand AcO -o {unwritable}/m.xyz"),
    # analyze
    ("analyze eads", "usage", "analyze eads --complex {run}"),
    ("analyze eads", "value", "analyze eads --complex {run} --slab {run} --adsorbate {run} --slab-multiplier 0"),
    ("analyze eads", "unreadable", "analyze eads --complex {unreadable_dir} --slab {run} --adsorbate {run}"),
    ("analyze dos", "usage", "analyze dos {run} --window 1"),
    ("analyze dos", "value", "analyze dos {run} --align no_such_alignment"),
    ("analyze dos", "unreadable", "analyze dos {unreadable_dir}"),
    ("analyze dos", "unwritable", "analyze dos {run} -o {unwritable}/dos.png"),
    ("analyze midgap", "usage", "analyze midgap"),
    ("analyze midgap", "value", "analyze midgap {run} --align no_such_alignment"),
    ("analyze midgap", "unreadable", "analyze midgap {unreadable_dir}"),
    ("analyze chgdiff", "usage", "analyze chgdiff {ab}"),
    ("analyze chgdiff", "value", "analyze chgdiff {ab} {a} {b} --axis q"),
    ("analyze chgdiff", "unreadable", "analyze chgdiff {unreadable_file} {a} {b}"),
    ("analyze chgdiff", "unwritable", "analyze chgdiff {ab} {a} {b} -o {unwritable}/d.vasp"),
    ("analyze locpot", "usage", "analyze locpot"),
    ("analyze locpot", "value", "analyze locpot {locpot} --axis q"),
    ("analyze locpot", "unreadable", "analyze locpot {unreadable_file}"),
    ("analyze locpot", "unwritable", "analyze locpot {locpot} --plot {unwritable}/v.png"),
]  # fmt: skip

#: Commands with neither an input nor an output path (only usage errors and bad values apply).
NO_INPUT_PATH = {"ligands", "build slab"}
#: Commands that write nothing (no unwritable-output case).
NO_OUTPUT = {
    "ligands",
    "parse",
    "diagnose",
    "launch",
    "status",
    "rerun",
    "analyze eads",
    "analyze midgap",
}


def leaf_commands() -> set[str]:
    """Every leaf sub-command of the installed app (``dftflow --help`` and each group's)."""
    import typer

    from dftflow.cli import app

    root = typer.main.get_command(app)
    names: set[str] = set()

    def walk(group, prefix: str) -> None:
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")
            else:
                names.add(f"{prefix}{name}")

    walk(root, "")
    return names


def test_every_command_has_its_cases():
    """A new sub-command without contract cases fails here."""
    commands = leaf_commands()
    assert commands == {c for c, _, _ in CASES}
    kinds: dict[str, set[str]] = {}
    for command, kind, _ in CASES:
        kinds.setdefault(command, set()).add(kind)
    for command in commands:
        assert "usage" in kinds[command], command
        if command not in NO_INPUT_PATH:
            assert "unreadable" in kinds[command], command
        if command not in NO_OUTPUT:
            assert "unwritable" in kinds[command], command


# -------------------------------------------------------------------------------------------------
# fixtures: one set of good inputs, and the bad paths
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_inputs(tmp_path_factory) -> Path:
    """A slab, a finished synthetic run, a Δρ triple and a LOCPOT (read-only for the tests)."""
    from dftflow.testing import synthetic_runs
    from dftflow.testing.vasp_writer import write_locpot

    root = tmp_path_factory.mktemp("good")
    proc = _dftflow(
        "build", "slab", "--layers", "3", "--supercell", "1x1", "-o", "slab.vasp", cwd=root
    )
    assert proc.returncode == 0, proc.stderr
    complex_, slab, _ = synthetic_runs.slab_and_ligand_structures()
    synthetic_runs.write_synthetic_run(root / "run", slab, energy_eV=-30.0)
    synthetic_runs.write_chgdiff_triple(root / "chg", grid=(10, 10, 40))
    write_locpot(root / "LOCPOT", slab, grid=(8, 8, 60), vacuum_level_eV=3.5)
    return root


@pytest.fixture
def workdir(tmp_path, good_inputs) -> dict[str, str]:
    """The working directory of one case and its placeholders."""
    work = tmp_path / "work"
    work.mkdir()
    places = {
        "slab": str(good_inputs / "slab.vasp"),
        "run": str(good_inputs / "run"),
        "ab": str(good_inputs / "chg" / "AB" / "CHGCAR"),
        "a": str(good_inputs / "chg" / "A" / "CHGCAR"),
        "b": str(good_inputs / "chg" / "B" / "CHGCAR"),
        "locpot": str(good_inputs / "LOCPOT"),
        "study": str(STUDY_YAML),
    }
    (work / "empty").mkdir()
    places["empty_dir"] = "empty"
    (work / "a_file").write_text("not a directory\n")
    study = work / "study_ro"
    study.mkdir()
    from dftflow.schemas import StudySummary

    (study / "summary.json").write_text(
        StudySummary(study="t", engine="mock", slab={}, ligands=[]).model_dump_json()
    )
    if ROOT:
        (work / "unreadable.vasp").mkdir()  # a directory where a file is read
        places["unreadable_file"] = "unreadable.vasp"
        places["unreadable_dir"] = "a_file"  # a regular file where a directory is read
        places["unwritable"] = "a_file/out"  # a path under a regular file
        (study / "report").write_text("a file where the report directory goes\n")
    else:
        shutil.copy(good_inputs / "slab.vasp", work / "unreadable.vasp")
        (work / "unreadable.vasp").chmod(0)
        places["unreadable_file"] = "unreadable.vasp"
        (work / "noread").mkdir()
        (work / "noread").chmod(0)
        places["unreadable_dir"] = "noread"
        (work / "ro").mkdir()
        (work / "ro").chmod(0o555)
        places["unwritable"] = "ro/out"
        study.chmod(0o555)
    places["unwritable_study"] = "study_ro"
    yield {"dir": str(work), **places}
    for p in work.rglob("*"):  # let pytest clean up
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    work.chmod(0o755)


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and mtime (what a failed command must keep)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize(
    ("command", "kind", "argv"),
    CASES,
    ids=[f"{c.replace(' ', '-')}-{k}-{i}" for i, (c, k, _) in enumerate(CASES)],
)
def test_one_line_exit_2_nothing_written(command, kind, argv, workdir):
    work = Path(workdir["dir"])
    args = [a.format(**workdir) for a in argv.split()]
    before = _snapshot(work)
    proc = _dftflow(*args, cwd=work)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-400:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(lines) == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert _snapshot(work) == before  # no partial file, no directory left behind


def test_click_package_exceptions_are_one_line_too(capsys):
    """A ClickException of the click package (``dftflow run``'s StudyIncomplete) is one line.

    main's handler matched only typer's copy and then failed on ``typer._click`` having no
    ``Exit`` (AttributeError traceback); it is one line with its own exit code, 1.
    """
    from dftflow.cli import _click_error
    from dftflow.cli.study import StudyIncomplete

    assert _click_error(StudyIncomplete("2 of 9 Fireworks not completed")) == 1
    err = capsys.readouterr().err
    assert err == "error: 2 of 9 Fireworks not completed\n"
