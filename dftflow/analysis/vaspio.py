"""Reading VASP outputs for analysis: one-line errors for missing, truncated or corrupt files.

All reading goes through pymatgen (``Vasprun``, ``Chgcar``, ``Locpot``); this module only finds the
files (plain or compressed), turns every failure into :class:`dftflow.errors.OutputError` with one
line, and caches parsed ``Vasprun`` objects (keyed on path, size and mtime) so that the report
does not
parse the same file twice.

TaskDocs come from :func:`dftflow.parse.vasp.parse_directory` when the VASP engine's parser is
installed; :func:`taskdoc_from_directory` falls back to a minimal TaskDoc built from ``vasprun.xml``
(clearly a stand-in, same keys) when it is not.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

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
    path = Path(directory)
    if path.is_file():
        return path
    if not path.exists():
        raise OutputError(f"{path} does not exist")
    for suffix in COMPRESSED_SUFFIXES:
        candidate = path / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    raise OutputError(f"no {name} (plain or compressed) in {path}")


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


def _fallback_taskdoc(directory: Path) -> TaskDoc:
    """A minimal TaskDoc from vasprun.xml (stand-in for dftflow.parse.vasp.parse_directory)."""
    vr = read_vasprun(directory)
    structure = vr.final_structure
    last = vr.ionic_steps[-1]
    forces = last.get("forces")
    max_force = None
    if forces is not None and len(forces):
        import numpy as np

        max_force = float(np.max(np.linalg.norm(np.asarray(forces), axis=1)))
    volumetric: dict[str, str] = {}
    for kind in ("CHGCAR", "LOCPOT", "AECCAR0", "AECCAR2"):
        try:
            volumetric[kind] = str(find_output(directory, kind))
        except OutputError:
            pass
    params: dict[str, Any] = {k: v for k, v in vr.incar.items() if isinstance(v, int | float | str)}
    return TaskDoc(
        engine="vasp",
        engine_version=str(vr.vasp_version),
        directory=str(directory),
        formula=structure.composition.formula.replace(" ", ""),
        n_atoms=len(structure),
        energy_eV=float(vr.final_energy),
        free_energy_eV=float(last["e_fr_energy"]),
        max_force_eV_per_A=max_force,
        converged_electronic=bool(vr.converged_electronic),
        converged_ionic=bool(vr.converged_ionic),
        n_ionic_steps=len(vr.ionic_steps),
        efermi_eV=None if vr.efermi is None else float(vr.efermi),
        ispin=2 if vr.is_spin else 1,
        nelect=float(vr.parameters.get("NELECT", 0.0)) or None,
        structure=structure.as_dict(),
        has_dos=vr.complete_dos is not None if vr.parameters.get("LORBIT") is not None else False,
        has_projected_dos=int(vr.parameters.get("LORBIT", 0) or 0) >= 10,
        dos_file=str(find_output(directory, "vasprun.xml")),
        volumetric_files=volumetric,
        parameters=params,
        kpoints=None,
    )


def taskdoc_from_directory(directory: str | Path) -> TaskDoc:
    """TaskDoc of a VASP run directory (or a TaskDoc JSON file).

    Uses :func:`dftflow.parse.vasp.parse_directory` (VASP engine) when available, otherwise
    :func:`_fallback_taskdoc`.
    """
    path = Path(directory)
    if path.is_file() and path.suffix == ".json":
        return load_taskdoc(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a directory")
    try:
        from dftflow.parse.vasp import parse_directory  # type: ignore[attr-defined]
    except ImportError:
        return _fallback_taskdoc(path)
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
