"""Shared pytest configuration; fixtures live in dftflow.testing so users' own tests can use them."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

pytest_plugins = ["dftflow.testing.fixtures"]
