"""``python -m dftflow``."""

from dftflow.cli import run

run()
