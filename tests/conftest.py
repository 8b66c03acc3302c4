"""Shared pytest configuration; fixtures live in dftflow.testing for users' own tests too."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

pytest_plugins = ["dftflow.testing.fixtures"]
