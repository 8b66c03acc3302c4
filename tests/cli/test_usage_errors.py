"""Usage errors through the installed ``dftflow`` console script: one line on stderr, exit 2.

typer >= 0.2x raises the exceptions of its own click copy (``typer._click``); these tests run the
console script as a user does, so a traceback anywhere shows up here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _dftflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [(), ("-h",), ("--help",), ("build", "-h")])
def test_help_is_printed_not_a_traceback(args, tmp_path):
    proc = _dftflow(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("build", "slab", "--layers", "abc", "-o", "s.vasp"), "--layers"),
        (("build", "slab", "--no-such-option"), "No such option"),
        (("calc",), "Missing argument"),
        (("analyze", "eads", "--complex", "c"), "Missing option"),
        (("no-such-command",), "No such command"),
    ],
)
def test_usage_error_is_one_line_exit_2(args, expected, tmp_path):
    proc = _dftflow(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and expected in proc.stderr
    assert "--help" in proc.stderr  # says where to look
    assert not any(tmp_path.iterdir())  # nothing written
