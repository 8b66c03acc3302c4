"""The code style is enforced (DESIGN.md): ruff lint (numpy docstrings), formatting, layers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(exe).exists():
        pytest.fail(f"{name} is missing: bash scripts/install.sh --test")
    return exe


def _ruff() -> list[str]:
    return [_tool("ruff")]


def test_ruff_lint_clean():
    proc = subprocess.run([*_ruff(), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_clean():
    proc = subprocess.run(
        [*_ruff(), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_contracts_kept():
    """Layers without cycles and no production import of dftflow.testing ([tool.importlinter])."""
    proc = subprocess.run(
        [_tool("lint-imports"), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
