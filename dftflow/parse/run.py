"""Read a finished run of any engine: its TaskDoc, its DOS, its bands and its output files.

Analysis works from these, so one analysis serves every engine:

* a directory written by dftflow holds ``taskdoc.json`` (every engine writes it), which says where
  the run's DOS and volumetric files are;
* the embedded engine's DOS is a pymatgen ``CompleteDos`` (``dos.json.gz``) and its bands a
  :class:`~dftflow.electronic.BandData` (``bands.npz``);
* a VASP directory (written by VASP or the mock VASP) is read with pymatgen from ``vasprun.xml``;
  a real VASP directory that dftflow did not write (no ``taskdoc.json``) is parsed on the fly.

Every failure is one line (``OutputError`` / ``InputError`` of :mod:`dftflow.errors`).
"""

from __future__ import annotations

from pathlib import Path

from dftflow.electronic import BANDS_FILE, BandData, read_complete_dos
from dftflow.errors import InputError, OutputError
from dftflow.parse.files import find_file, find_output
from dftflow.parse.vasp import band_data, complete_dos, parse_directory
from dftflow.schemas import TASKDOC_FILE, TaskDoc


def read_taskdoc_file(path: str | Path) -> TaskDoc:
    """Read a TaskDoc JSON file with a one-line error when it is missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"TaskDoc {path} does not exist")
    try:
        return TaskDoc.from_json_file(path)
    except Exception as exc:
        raise OutputError(f"cannot read TaskDoc {path}: {type(exc).__name__}") from exc


def load_taskdoc(path: str | Path) -> TaskDoc:
    """The TaskDoc of a run directory (its ``taskdoc.json``, else parsed VASP files) or JSON file.

    A file inside a run directory (``vasprun.xml``, ``CHGCAR`` ...) stands for its directory.

    Raises
    ------
    InputError
        ``path`` is neither a directory nor a TaskDoc JSON file.
    OutputError
        Unreadable TaskDoc, or VASP files missing, truncated or corrupt.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return read_taskdoc_file(path)
    if path.is_file():  # a file of the run (vasprun.xml, CHGCAR ...): its directory
        path = path.parent
    if not path.is_dir():
        raise InputError(f"{path} is not a directory (a run directory or a TaskDoc JSON file)")
    if (path / TASKDOC_FILE).is_file():
        doc = read_taskdoc_file(path / TASKDOC_FILE)
        if Path(doc.directory).resolve() != path.resolve():  # the directory was moved or copied
            doc = doc.model_copy(update={"directory": str(path.resolve())})
        return doc
    return parse_directory(path)


def as_taskdoc(obj: TaskDoc | str | Path) -> TaskDoc:
    """Accept a TaskDoc, a TaskDoc JSON path or a run directory."""
    return obj if isinstance(obj, TaskDoc) else load_taskdoc(obj)


def run_directory(obj: TaskDoc | str | Path) -> Path:
    """The run directory of a TaskDoc, a TaskDoc JSON path, a directory or a file inside one."""
    if isinstance(obj, TaskDoc):
        return Path(obj.directory)
    path = Path(obj)
    if path.is_file() and path.suffix == ".json":
        return Path(read_taskdoc_file(path).directory)
    if path.is_file():
        return path.parent
    return path


def _own_file(doc: TaskDoc, recorded: str | None) -> Path | None:
    """A file the TaskDoc names, looked up in the run directory (which may have been moved)."""
    if not recorded:
        return None
    candidate = Path(doc.directory) / Path(recorded).name
    return candidate if candidate.is_file() else None


def load_complete_dos(obj: TaskDoc | str | Path):
    """The pymatgen ``CompleteDos`` of a run (site/orbital projections when the run has them).

    Raises
    ------
    OutputError
        The run has no DOS, or its DOS file is unreadable.
    """
    doc = as_taskdoc(obj)  # read once; its directory follows a moved run (load_taskdoc)
    directory = Path(doc.directory)
    dos_file = _own_file(doc, doc.dos_file)
    if dos_file is not None and dos_file.name.endswith(".json.gz"):
        try:
            return read_complete_dos(dos_file)
        except Exception as exc:
            raise OutputError(f"cannot read {dos_file}: {type(exc).__name__}") from exc
    if doc.dos_file and doc.dos_file.endswith(".json.gz"):
        raise OutputError(f"{directory}: its DOS file {Path(doc.dos_file).name} is missing")
    if not doc.has_dos:
        raise OutputError(f"{directory}: the run holds no DOS (a static stage writes it)")
    cdos = complete_dos(directory)
    if cdos is None:
        raise OutputError(f"{directory}: vasprun.xml holds no DOS")
    return cdos


def load_bands(obj: TaskDoc | str | Path):
    """(final pymatgen Structure, :class:`BandData`) of a run.

    Raises
    ------
    OutputError
        The run has no eigenvalues (a relaxation of the embedded engine) or they are unreadable.
    """
    doc = as_taskdoc(obj)  # read once; its directory follows a moved run (load_taskdoc)
    directory = Path(doc.directory)
    npz = directory / BANDS_FILE
    if npz.is_file():
        try:
            return doc.final_structure(), BandData.load(npz)
        except Exception as exc:
            raise OutputError(f"cannot read {npz}: {type(exc).__name__}") from exc
    if find_file(directory, "vasprun.xml") is None:
        raise OutputError(f"{directory}: this {doc.stage or 'run'} has no bands (a static has)")
    return band_data(directory)


def volumetric_file(obj: TaskDoc | str | Path, kind: str = "CHGCAR") -> Path:
    """A volumetric file of a run (the file itself, or ``kind`` in its directory)."""
    if isinstance(obj, TaskDoc):
        obj = obj.directory
    return find_output(obj, kind)
