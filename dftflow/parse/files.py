"""The one output-file finder: a run's file, plain or compressed."""

from __future__ import annotations

from pathlib import Path

from dftflow.errors import OutputError

#: Compression suffixes tried, in order, when looking for an output file.
COMPRESSED_SUFFIXES = ("", ".gz", ".bz2", ".xz", ".lzma", ".GZ")


def find_file(directory: str | Path, name: str) -> Path | None:
    """``name`` (plain or compressed, non-empty) inside ``directory``, or None."""
    directory = Path(directory)
    for suffix in COMPRESSED_SUFFIXES:
        path = directory / f"{name}{suffix}"
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def find_output(path: str | Path, name: str) -> Path:
    """The file ``path`` itself, or ``name`` (plain or compressed) inside the directory ``path``.

    Raises
    ------
    OutputError
        The path does not exist, or the directory holds no such (non-empty) file.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise OutputError(f"{path} does not exist")
    found = find_file(path, name)
    if found is None:
        raise OutputError(f"no {name} (plain or compressed) in {path}")
    return found
