"""User-facing errors.

Every mistake a user can make (bad SMILES, unknown ligand, missing POTCAR directory, mismatched
grids,
corrupt VASP output, malformed study YAML ...) raises :class:`DftflowError` (or a subclass) with a
one-line message. The CLI prints that line and exits with code 2; it never shows a traceback for
them.
"""

from __future__ import annotations


class DftflowError(Exception):
    """A user mistake or an unusable input: printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class InputError(DftflowError):
    """Invalid user input (structure, ligand, SMILES, option, study spec)."""


class OutputError(DftflowError):
    """Missing, truncated or corrupt calculation output."""


class EngineError(DftflowError):
    """An engine cannot run (not installed, not configured, refused input)."""
