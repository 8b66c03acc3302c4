"""Reading VASP outputs for analysis: one-line errors for missing, truncated or corrupt files.

All reading goes through pymatgen (``Vasprun``, ``Chgcar``, ``Locpot``); this module only finds the
files (plain or compressed), turns every failure into :class:`dftflow.errors.OutputError` with one
line, and caches parsed ``Vasprun`` objects (keyed on path, size and mtime) so that the report does
not parse the same file twice.

TaskDocs of run directories come from :func:`dftflow.parse.vasp.parse_directory`.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

from dftflow.errors import InputError, OutputError
from dftflow.schemas import TaskDoc

COMPRESSED_SUFFIXES = ("", ".gz", ".bz2", ".xz", ".lzma")


def find_output(directory: str | Path, name: str) -> Path:
    """Return the path of ``name`` (or ``name.gz``/``.bz2``/``.xz``) in ``directory``.

    ``directory`` may also be the file itself.

    Raises
    ------
    OutputError
        If the directory or the file does not exist.
    """
    from dftflow.parse.volumetric import volumetric_path

    return volumetric_path(directory, name)  # same lookup for every VASP output file


def _check_nonempty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise OutputError(f"{path} is empty")


@lru_cache(maxsize=4)
def _cached_vasprun(path: str, size: int, mtime: float, projections: bool):  # noqa: ARG001
    from pymatgen.io.vasp import Vasprun

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Vasprun(
            path,
            parse_potcar_file=False,
            parse_projected_eigen=projections,
            exception_on_bad_xml=True,
        )


def read_vasprun(directory: str | Path, *, projections: bool = False):
    """Parse ``vasprun.xml`` of a directory (or the file itself) with pymatgen.

    Parameters
    ----------
    directory
        A VASP run directory or a vasprun.xml(.gz) path.
    projections
        Also parse the projected eigenvalues (LORBIT >= 10).

    Returns
    -------
    pymatgen.io.vasp.Vasprun

    Raises
    ------
    OutputError
        Missing, empty, truncated or corrupt file.
    """
    path = find_output(directory, "vasprun.xml")
    _check_nonempty(path)
    stat = path.stat()
    try:
        return _cached_vasprun(str(path.resolve()), stat.st_size, stat.st_mtime, projections)
    except OutputError:
        raise
    except Exception as exc:  # pymatgen raises many types for broken XML / gzip streams
        kind = type(exc).__name__
        raise OutputError(f"cannot read {path}: truncated or corrupt vasprun.xml ({kind})") from exc


def taskdoc_from_directory(directory: str | Path) -> TaskDoc:
    """TaskDoc of a VASP run directory (or a TaskDoc JSON file).

    Directories are parsed by :func:`dftflow.parse.vasp.parse_directory` (the VASP engine's parser,
    shared by every engine).
    """
    from dftflow.parse.vasp import parse_directory

    path = Path(directory)
    if path.is_file() and path.suffix == ".json":
        return load_taskdoc(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a directory")
    return parse_directory(path)


def load_taskdoc(path: str | Path) -> TaskDoc:
    """Read a TaskDoc JSON file with a one-line error when it is missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"TaskDoc {path} does not exist")
    try:
        return TaskDoc.from_json_file(path)
    except Exception as exc:
        raise OutputError(f"cannot read TaskDoc {path}: {type(exc).__name__}") from exc


def as_taskdoc(obj: TaskDoc | str | Path) -> TaskDoc:
    """Accept a TaskDoc, a TaskDoc JSON path or a run directory."""
    if isinstance(obj, TaskDoc):
        return obj
    return taskdoc_from_directory(obj)


def run_directory(obj: TaskDoc | str | Path) -> Path:
    """The run directory of a TaskDoc, TaskDoc JSON path or directory."""
    if isinstance(obj, TaskDoc):
        return Path(obj.directory)
    path = Path(obj)
    if path.is_file() and path.suffix == ".json":
        return Path(load_taskdoc(path).directory)
    return path
