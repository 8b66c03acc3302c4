"""Pytest plugin collecting dftflow's fixtures (mock VASP, no-real-VASP guard, launchpad)."""

from __future__ import annotations

pytest_plugins = ["dftflow.testing.launchpad", "dftflow.testing.vasp"]
