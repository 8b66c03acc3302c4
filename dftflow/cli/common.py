"""Helpers shared by CLI modules: JSON output, atomic file writes, progress bars."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console

from dftflow.errors import InputError
from dftflow.fileio import atomic_path

console = Console(stderr=True)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (numpy and pydantic aware)."""
    typer.echo(json.dumps(data, indent=2, default=_default))


def check_writable(path: str | Path) -> Path:
    """Check that ``path`` can be written (its directory exists and is writable)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}: directory {parent} is not writable")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory")
    return path


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same directory; rename it to ``path`` only on success.

    No partial file is ever left at ``path``.
    """
    with atomic_path(check_writable(path)) as tmp_path:
        yield tmp_path


def screen_placements_line(handle, spec) -> str | None:
    """'placements enumerated: L1 27, L2 4 ...' from the screen's workflow in the LaunchPad."""
    with handle.read_only() as lp:
        doc = lp.workflows.find_one(
            {"metadata.dftflow_study": spec.key, "metadata.dftflow_spec_digest": spec.digest()},
            {"metadata": 1},
        )
    counts = ((doc or {}).get("metadata") or {}).get("dftflow_screen_placements")
    if not counts:
        return None
    return "placements enumerated: " + ", ".join(f"{k} {n}" for k, n in counts.items())
