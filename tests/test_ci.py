"""CI runs the README's test command unchanged, and pytest's exit status reaches CI untouched."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_COMMAND = "bash scripts/install.sh --test && .venv/bin/python -m pytest"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert f"```bash\n{TEST_COMMAND}\n```" in readme
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip()]
    assert "set -euo pipefail" in lines
    assert lines[-1] == TEST_COMMAND  # last command: its exit status (5: no tests) is CI's


def test_nothing_masks_pytests_exit_status():
    script = (ROOT / ".ci" / "run").read_text()
    code = "\n".join(ln for ln in script.splitlines() if not ln.lstrip().startswith("#"))
    assert not re.search(r"\|\|\s*(true|:|exit 0)|set \+e|;\s*(true|exit 0)", code)
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
        "addopts"
    ]
    assert "--import-mode=importlib" in addopts and "-ra" in addopts.split()
    assert "suppress-no-test-exit-code" not in addopts
