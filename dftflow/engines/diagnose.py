"""Diagnose a VASP run directory with custodian's handlers, without changing it.

:func:`diagnose_vasp_run` answers "what went wrong in this run, and what would custodian do about
it?" for any VASP run directory (one dftflow ran, or one from elsewhere). It uses the handler list
the VASP engine runs (:func:`dftflow.engines.vasp.make_handlers`) in the engine's order, exactly as
custodian does after an attempt: each handler's ``check()`` and, when it fires, its ``correct()``,
one after the other on the same files (so a later handler sees the earlier corrections).

The directory itself is never written: the files the handlers read (inputs and vasp.out,
std_err.txt, OSZICAR, vasprun.xml, OUTCAR; plain or compressed) are copied into a temporary
directory, decompressed there, and the handlers run there. Large files no handler reads (WAVECAR,
CHGCAR, ...) are not copied. When INCAR, KPOINTS or POSCAR is missing and vasprun.xml is readable,
the copy gets them from vasprun.xml (the inputs VASP read; listed in ``inputs_from_vasprun``).
The corrections custodian already made in the directory (its ``custodian.json``) are reported as
``earlier_corrections``: the outputs show the last attempt only.

Not diagnosed: FrozenJobErrorHandler judges a *running* job by the age of vasp.out, which says
nothing about a finished directory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from dftflow.engines.vasp import HANDLERS, make_handlers, make_validators, quiet_custodian
from dftflow.errors import InputError, OutputError
from dftflow.parse.files import COMPRESSED_SUFFIXES
from dftflow.parse.vasp import read_corrections
from dftflow.schemas import Correction

#: Output files custodian's handlers read; a directory with none of them is not a VASP run.
OUTPUT_FILES = ("vasp.out", "std_err.txt", "OSZICAR", "vasprun.xml", "OUTCAR")
#: Input files the handlers read and correct.
INPUT_FILES = ("INCAR", "KPOINTS", "POSCAR", "POTCAR", "CONTCAR")
#: Handlers that cannot judge a finished directory, with the reason.
NOT_FROM_FILES = {"FrozenJobErrorHandler": "judges a running job by the age of vasp.out"}
#: What each validator failure means (custodian ends the run with "Validation failed").
VALIDATOR_MEANING = {
    "VasprunXMLValidator": "vasprun.xml is missing, truncated or unreadable",
    "VaspFilesValidator": "CONTCAR, OSZICAR or OUTCAR is missing",
}


class DiagnosedError(BaseModel):
    """One failure a custodian handler detects, and the correction custodian would apply.

    Attributes
    ----------
    name
        Custodian's name of the error (``zbrent``, ``subspacematrix``, ``kpoints_trans`` ...; for
        the handlers without per-error names the name their ``correct()`` reports:
        ``Unconverged``, ``Non-converging job``, ``Positive energy``, ``POTIM``).
    handler
        The custodian handler class that detects it.
    file
        The output file the handler read.
    message
        The VASP line that matched (grep-based handlers), else a short description.
    correction
        Custodian's actions, e.g. ``[{"dict": "INCAR", "action": {"_set": {"ALGO": "Normal"}}}]``;
        one list per handler call (errors found together share it); ``None`` or empty when the
        handler has no correction (left).
    fixable
        Whether custodian would correct and rerun; False: custodian would stop the run
        (it treats ``None`` and an empty list of actions alike).
    """

    name: str
    handler: str
    file: str | None = None
    message: str | None = None
    correction: list[dict[str, Any]] | None = None
    fixable: bool = False


class Diagnosis(BaseModel):
    """What custodian's handlers find in one run directory."""

    directory: str
    errors: list[DiagnosedError] = Field(default_factory=list)
    checked: list[str] = Field(default_factory=list, description="handlers that ran check()")
    not_checked: dict[str, str] = Field(
        default_factory=dict, description="handler -> why it could not run on these files"
    )
    validation: list[dict[str, str]] = Field(
        default_factory=list, description="custodian validators that fail, with their meaning"
    )
    inputs_from_vasprun: list[str] = Field(default_factory=list)
    earlier_corrections: list[Correction] = Field(
        default_factory=list,
        description="corrections custodian already made in this directory (its custodian.json)",
    )


def _find(directory: Path, name: str) -> Path | None:
    """``name`` in ``directory``, plain or compressed, even when empty.

    An empty std_err.txt is a finding (VASP wrote nothing on stderr), unlike for
    :func:`dftflow.parse.files.find_file`, which skips empty files.
    """
    for suffix in COMPRESSED_SUFFIXES:
        path = directory / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _copy_plain(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest``, decompressing .gz/.bz2/.xz on the way (monty, as custodian)."""
    if src.name == dest.name:
        shutil.copyfile(src, dest)
        return
    from monty.io import zopen

    with zopen(src, "rb") as fin, open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def _inputs_from_vasprun(work: Path) -> list[str]:
    """Write INCAR/KPOINTS/POSCAR the copy lacks from its vasprun.xml; the names written."""
    missing = [n for n in ("INCAR", "KPOINTS", "POSCAR") if not (work / n).is_file()]
    if not missing or not (work / "vasprun.xml").is_file():
        return []
    from pymatgen.io.vasp import Poscar, Vasprun

    try:
        run = Vasprun(
            work / "vasprun.xml", parse_dos=False, parse_eigen=False, parse_potcar_file=False
        )
    except Exception:  # truncated or corrupt: the validators report it
        return []
    written = []
    for name in missing:
        if name == "INCAR" and run.incar:
            run.incar.write_file(work / "INCAR")
        elif name == "KPOINTS" and run.kpoints is not None:
            run.kpoints.write_file(work / "KPOINTS")
        elif name == "POSCAR":
            Poscar(run.initial_structure).write_file(work / "POSCAR")
        else:
            continue
        written.append(name)
    return written


def _matched_line(path: Path, patterns: Sequence[str]) -> str | None:
    """The first line of ``path`` holding one of ``patterns`` (stripped)."""
    if not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if any(p in line for p in patterns):
            return line.strip()
    return None


def _message(handler: Any, name: str, work: Path) -> str | None:
    """The VASP line behind error ``name`` (grep-based handlers) or a short description."""
    if name == "psmaxn":  # UnconvergedErrorHandler's second finding, from OUTCAR
        return "PSMAXN for non-local potential too small (OUTCAR)"
    patterns = getattr(handler, "error_msgs", {}).get(name)
    filename = getattr(handler, "output_filename", None)
    if patterns and filename:
        return _matched_line(work / filename, patterns)
    kind = type(handler).__name__
    if kind == "UnconvergedErrorHandler":
        from custodian.vasp.io import load_vasprun

        run = load_vasprun(str(work / handler.output_filename))
        if not run.converged_electronic:
            return "electronic self-consistency not reached (NELM steps in the last ionic step)"
        return "ionic relaxation not converged within NSW steps"
    if kind == "NonConvergingErrorHandler":
        return f"the last {handler.nionic_steps} ionic steps each hit NELM electronic steps"
    if kind == "PositiveEnergyErrorHandler":
        from pymatgen.io.vasp import Oszicar

        return f"final energy {Oszicar(work / handler.output_filename).final_energy:+.6g} eV > 0"
    if kind == "PotimErrorHandler":
        return f"an ionic step raised the energy by more than {handler.dE_threshold} eV/atom"
    return None


def _needs(handler: Any) -> list[str]:
    """Files ``handler.check()`` cannot do without."""
    kind = type(handler).__name__
    files = [handler.output_filename] if getattr(handler, "output_filename", None) else []
    if kind in ("VaspErrorHandler", "NonConvergingErrorHandler"):
        files.append("INCAR")  # check() reads it
    if kind == "PotimErrorHandler":
        files.append(handler.input_filename)
    return files


def diagnose_vasp_run(
    directory: str | Path, handler_names: Sequence[str] | None = None
) -> Diagnosis:
    """Every failure custodian's handlers detect in ``directory`` and the corrections they'd make.

    Parameters
    ----------
    directory
        A VASP run directory (vasp.out, std_err.txt, OSZICAR, vasprun.xml, OUTCAR; plain or
        compressed). It is only read.
    handler_names
        Handlers to run (default: the VASP engine's :data:`~dftflow.engines.vasp.HANDLERS`).

    Returns
    -------
    Diagnosis
        ``errors`` empty when no handler fires.

    Raises
    ------
    InputError
        ``directory`` does not exist, is not a directory, holds none of the output files, or a
        file cannot be read (permissions, corrupt compression).
    """
    directory = Path(directory)
    if not directory.exists():
        raise InputError(f"{directory} does not exist")
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory (give a VASP run directory)")
    if not any(_find(directory, name) for name in OUTPUT_FILES):
        raise InputError(
            f"{directory} is not a VASP run: none of {', '.join(OUTPUT_FILES)} "
            "(plain or compressed)"
        )
    from custodian.utils import tracked_lru_cache

    names = list(handler_names or HANDLERS)
    diagnosis = Diagnosis(directory=str(directory))
    try:
        diagnosis.earlier_corrections = read_corrections(directory)
    except OutputError:  # an unreadable custodian.json is history lost, not a failure of VASP
        pass
    diagnosis.not_checked.update({n: r for n, r in NOT_FROM_FILES.items() if n in names})
    handlers = make_handlers([n for n in names if n not in NOT_FROM_FILES])
    with tempfile.TemporaryDirectory(prefix="dftflow-diagnose-") as tmp, quiet_custodian(names):
        work = Path(tmp)
        for name in (*INPUT_FILES, *OUTPUT_FILES):
            src = _find(directory, name)
            if src is None:
                continue
            try:
                _copy_plain(src, work / name)
            except Exception as exc:  # unreadable; corrupt compression (zlib, lzma, EOF errors)
                raise InputError(f"cannot read {src}: {exc}") from None
        diagnosis.inputs_from_vasprun = _inputs_from_vasprun(work)
        try:
            for handler in handlers:
                _run_handler(handler, work, diagnosis)
            # custodian validates the outputs only after an attempt no handler objected to
            for validator in [] if diagnosis.errors else make_validators():
                kind = type(validator).__name__
                try:
                    failed = bool(validator.check(str(work)))
                except Exception as exc:  # a validator that cannot read the files: report it
                    failed, meaning = True, f"{kind} could not check: {exc}"
                else:
                    meaning = VALIDATOR_MEANING.get(kind, kind)
                if failed:
                    diagnosis.validation.append({"validator": kind, "meaning": meaning})
        finally:
            tracked_lru_cache.tracked_cache_clear()  # custodian caches parsed files by path
    return diagnosis


def _run_handler(handler: Any, work: Path, diagnosis: Diagnosis) -> None:
    """``check()`` and, when it fires, ``correct()`` one handler in ``work``; record the result."""
    kind = type(handler).__name__
    missing = [f for f in _needs(handler) if not (work / f).is_file()]
    if missing:
        diagnosis.not_checked[kind] = f"no {' or '.join(missing)}"
        return
    try:
        fired = bool(handler.check(str(work)))
    except Exception as exc:  # e.g. an unreadable file: custodian would crash here too
        diagnosis.not_checked[kind] = f"check() failed: {type(exc).__name__}: {exc}"
        return
    diagnosis.checked.append(kind)
    if not fired:
        return
    before = sorted(getattr(handler, "errors", None) or [])  # VaspErrorHandler, StdErrHandler
    try:
        result = handler.correct(str(work))
    except Exception as exc:  # custodian would crash: no correction
        result = {"errors": before or [kind], "actions": None}
        diagnosis.not_checked[kind] = f"correct() failed: {type(exc).__name__}: {exc}"
    actions = result.get("actions")
    for name in result.get("errors") or before or [kind]:
        diagnosis.errors.append(
            DiagnosedError(
                name=str(name),
                handler=kind,
                file=getattr(handler, "output_filename", None),
                message=_safe_message(handler, str(name), work),
                correction=None if actions is None else [dict(a) for a in actions],
                fixable=bool(actions),
            )
        )


def _safe_message(handler: Any, name: str, work: Path) -> str | None:
    try:
        return _message(handler, name, work)
    except Exception:  # the description is a courtesy; the error itself is already recorded
        return None
