"""Shared pytest configuration; fixtures live in dftflow.testing for users' own tests too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

# `.venv/bin/python -m pytest` (the README's test command) does not activate the venv: put its bin
# first on PATH so the console scripts (dftflow, dftflow-mock-vasp) are found by subprocesses, site
# wrapper scripts and queue jobs exactly as in an activated shell.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

pytest_plugins = ["dftflow.testing.fixtures"]
