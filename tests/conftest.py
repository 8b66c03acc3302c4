"""Shared pytest configuration; fixtures live in dftflow.testing for users' own tests too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# `.venv/bin/python -m pytest` (the README's test command) does not activate the venv: put its bin
# first on PATH so the console scripts (dftflow, dftflow-mock-vasp) are found by subprocesses, site
# wrapper scripts and queue jobs exactly as in an activated shell.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

pytest_plugins = ["dftflow.testing.fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, hand out the longest tests first so both workers finish together.

    A test marked ``@pytest.mark.slow(seconds=N)`` declares its rough duration on CI (2 cores);
    those tests move to the front, longest first (the paper-size mock study is the longest file),
    everything else keeps the collection order. With ``--dist loadfile
    --no-loadscope-reorder`` (pyproject.toml) a file is handed out where its first test stands.
    Without xdist the order is left alone (module-scoped fixtures stay computed once).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return

    def declared_seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("slow")
        return float(mark.kwargs.get("seconds", 0)) if mark else 0.0

    items.sort(key=lambda item: -declared_seconds(item))
