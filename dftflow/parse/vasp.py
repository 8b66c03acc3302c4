"""Parse a finished VASP directory (plain or gzipped files, VASP 5.4 - 6.4) into a TaskDoc.

Built on pymatgen's ``Vasprun`` and ``Outcar``. Conventions:

* ``energy_eV`` is e_0, "energy sigma->0", of the **last ionic step**
(``ionic_steps[-1]["e_0_energy"]``),
  ``free_energy_eV`` its ``e_fr_energy`` (both eV);
* ``max_force_eV_per_A`` is the largest force norm on the free components of the atoms (selective
  dynamics respected: fixed Cartesian components do not count);
* an unconverged run is a valid TaskDoc with ``converged_electronic``/``converged_ionic`` False;
  a truncated or corrupt ``vasprun.xml``/``OUTCAR`` raises :class:`~dftflow.errors.OutputError`.

The VASP 5.4.1 quirk: its vasprun.xml reports ``LORBIT = F`` even though the run wrote ``<partial>``
DOS and ``<projected>`` eigenvalues. Whether the projected DOS exists is therefore decided from the
data, never from the LORBIT parameter; when the ``<dos>`` block lacks ``<partial>`` but projected
eigenvalues exist, :func:`complete_dos` rebuilds the site/orbital DOS from them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dftflow.electronic import BandData
from dftflow.errors import OutputError
from dftflow.parse.files import find_file
from dftflow.schemas import (
    NOT_PHYSICAL_NOTE,
    NOT_PHYSICAL_PROGRAMS,
    Correction,
    Stage,
    TaskDoc,
    jsonable,
)

#: VASP's own SIGMA default, eV (vasprun.xml lists every parameter, so it is rarely needed).
VASP_DEFAULT_SIGMA_EV = 0.2
VOLUMETRIC_KINDS = ("CHGCAR", "LOCPOT", "AECCAR0", "AECCAR1", "AECCAR2", "ELFCAR", "CHG")
INPUT_FILES = ("INCAR", "KPOINTS", "POSCAR", "POTCAR")
_SUFFIXES = ("", ".gz", ".bz2", ".xz", ".GZ", ".relax2", ".relax2.gz", ".relax1", ".relax1.gz")


def _read_bytes(path: Path) -> bytes:
    if path.suffix.lower() == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    from monty.io import zopen

    with zopen(path, mode="rb") as fh:
        return fh.read()


def inputs_digest(directory: str | Path) -> str:
    """sha256 over INCAR, KPOINTS, POSCAR and POTCAR (or POTCAR.spec), names included.

    Returns an empty string when none of these files exist.
    """
    h = hashlib.sha256()
    found = False
    for name in INPUT_FILES:
        path = find_file(directory, name)
        if path is None and name == "POTCAR":
            path = find_file(directory, "POTCAR.spec")
        if path is None:
            continue
        found = True
        h.update(path.name.encode() + b"\0")
        h.update(_read_bytes(path))
        h.update(b"\0")
    return h.hexdigest() if found else ""


def read_corrections(directory: str | Path) -> list[Correction]:
    """Custodian's corrections from ``custodian.json`` (empty list when absent)."""
    path = find_file(directory, "custodian.json")
    if path is None:
        return []
    try:
        runs = json.loads(_read_bytes(path).decode())
    except (ValueError, OSError) as exc:
        raise OutputError(f"{path}: not valid custodian JSON ({exc})") from exc
    out: list[Correction] = []
    attempt = 0
    for run in runs if isinstance(runs, list) else []:
        for corr in run.get("corrections", []) or []:
            attempt += 1
            handler = corr.get("handler")
            if isinstance(handler, dict):
                handler = handler.get("@class", str(handler))
            errors = [str(e) for e in corr.get("errors", []) or []]
            actions = [a for a in corr.get("actions", []) or [] if isinstance(a, dict)]
            out.append(
                Correction(handler=str(handler), errors=errors, actions=actions, attempt=attempt)
            )
    return out


def _load_vasprun(path: Path, parse_projected_eigen: bool = False):
    """(Vasprun, warnings) of ``path``, cached on path, size and mtime.

    The report reads a run's DOS and bands several times; the file is parsed once.
    """
    stat = path.stat()
    return _cached_vasprun(str(path.resolve()), stat.st_size, stat.st_mtime, parse_projected_eigen)


@lru_cache(maxsize=4)
def _cached_vasprun(path_str: str, size: int, mtime: float, parse_projected_eigen: bool):  # noqa: ARG001
    from pymatgen.io.vasp import Vasprun

    path = Path(path_str)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vr = Vasprun(
                str(path),
                parse_potcar_file=False,
                parse_projected_eigen=parse_projected_eigen,
                exception_on_bad_xml=True,
            )
    except Exception as exc:  # lxml/ElementTree parse errors, missing blocks
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OutputError(f"{path} is truncated or corrupt: {msg}") from exc
    if not vr.ionic_steps:
        raise OutputError(
            f"{path} has no ionic step: the run stopped before its first SCF finished"
        )
    if "e_0_energy" not in vr.ionic_steps[-1]:
        raise OutputError(f"{path}: the last ionic step has no energy (truncated run)")
    return vr, [str(w.message).splitlines()[0] for w in caught]


def _load_outcar(path: Path):
    from pymatgen.io.vasp import Outcar

    try:
        outcar = Outcar(str(path))
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OutputError(f"{path} is truncated or corrupt: {msg}") from exc
    if not any("Elapsed time" in k for k in outcar.run_stats):
        raise OutputError(
            f"{path} is truncated: it has no final timing block (the run did not finish)"
        )
    return outcar


def e0_energy(vr) -> float:
    """e_0 ("energy sigma->0", eV) of the last ionic step.

    Some VASP 5.x versions write a wrong ``e_0_energy`` in the ionic-step block of vasprun.xml (it
    reads 0.0 while the SCF steps are right); pymatgen's ``Vasprun.final_energy`` repairs it from
    the
    last SCF step (e_0 - e_fr of the last SCF step + the ionic step's e_fr), which is used here.
    """
    energy = vr.final_energy
    return float(getattr(energy, "real", energy))


def max_free_force(forces: np.ndarray, selective: list | None) -> float:
    """Largest force norm (eV/Angstrom) on free atoms; fixed Cartesian components are ignored."""
    forces = np.asarray(forces, float).reshape(-1, 3)
    if selective is not None:
        forces = forces * np.asarray(selective, dtype=bool)
    if forces.size == 0:
        return 0.0
    return float(np.linalg.norm(forces, axis=1).max())


def _has_projected_block(path: Path, chunk_bytes: int = 1 << 24) -> bool:
    """Whether vasprun.xml holds a ``<projected>`` block (streamed: large files stay cheap)."""
    from monty.io import zopen

    tail = b""
    with zopen(path, mode="rb") as fh:
        while chunk := fh.read(chunk_bytes):
            data = tail + chunk
            if b"<projected>" in data or b"<projected " in data:
                return True
            tail = data[-16:]
    return False


def complete_dos(directory: str | Path):
    """The pymatgen ``CompleteDos`` of a directory, rebuilding the PDOS if only projections exist.

    Works around VASP 5.4.1 files that claim ``LORBIT = F``: when vasprun.xml's ``<dos>`` has no
    ``<partial>`` block but ``<projected>`` eigenvalues exist, the site- and orbital-resolved DOS is
    computed from them with the run's Gaussian width (SIGMA) on the total-DOS energy grid.
    """
    from pymatgen.electronic_structure.core import Orbital, Spin
    from pymatgen.electronic_structure.dos import CompleteDos

    path = find_file(directory, "vasprun.xml")
    if path is None:
        raise OutputError(f"no vasprun.xml in {directory}")
    vr, _ = _load_vasprun(path)
    if vr.pdos:
        return vr.complete_dos
    if not _has_projected_block(path):
        return CompleteDos(vr.final_structure, vr.tdos, {})
    vr, _ = _load_vasprun(path, parse_projected_eigen=True)
    energies = vr.tdos.energies
    sigma = float(vr.parameters.get("SIGMA") or VASP_DEFAULT_SIGMA_EV)
    weights = np.asarray(vr.actual_kpoints_weights, float)
    factor = 2.0 / len(vr.eigenvalues)
    pdoss: dict = {}
    for spin, proj in vr.projected_eigenvalues.items():  # (nk, nb, nat, norb)
        eig = vr.eigenvalues[spin][..., 0]  # (nk, nb)
        g = np.exp(-0.5 * ((energies[:, None, None] - eig[None]) / sigma) ** 2)
        g = g / (sigma * np.sqrt(2 * np.pi)) * weights[None, :, None]
        dens = np.einsum("ekb,kbao->aoe", g, proj) * factor
        for i, site in enumerate(vr.final_structure):
            site_pdos = pdoss.setdefault(site, {})
            for o in range(dens.shape[1]):
                site_pdos.setdefault(Orbital(o), {})[spin] = dens[i, o]
    _ = Spin
    return CompleteDos(vr.final_structure, vr.tdos, pdoss)


def band_data(directory: str | Path):
    """(final Structure, :class:`~dftflow.electronic.BandData`) from a VASP run's vasprun.xml.

    Projections (LORBIT >= 10) are included when the file has them.

    Raises
    ------
    OutputError
        No vasprun.xml, no eigenvalues, or a truncated/corrupt file.
    """
    from pymatgen.electronic_structure.core import Spin

    path = find_file(directory, "vasprun.xml")
    if path is None:
        raise OutputError(f"no vasprun.xml in {directory}")
    vr, _ = _load_vasprun(path, parse_projected_eigen=True)
    if not vr.eigenvalues:
        raise OutputError(f"{directory}: vasprun.xml has no eigenvalues")
    spins = [s for s in (Spin.up, Spin.down) if s in vr.eigenvalues]
    eig = np.stack([np.asarray(vr.eigenvalues[s], dtype=float) for s in spins])
    proj = None
    if vr.projected_eigenvalues and all(s in vr.projected_eigenvalues for s in spins):
        proj = np.stack([np.asarray(vr.projected_eigenvalues[s], dtype=float) for s in spins])
    bands = BandData(
        eigenvalues_eV=eig[..., 0],
        occupations=eig[..., 1],
        kweights=np.asarray(vr.actual_kpoints_weights, dtype=float),
        efermi_eV=None if vr.efermi is None else float(vr.efermi),
        kpoints=np.asarray(vr.actual_kpoints, dtype=float),
        projections=proj,
    )
    return vr.final_structure, bands


_PARAM_KEYS = (
    "NELECT",
    "NBANDS",
    "ISPIN",
    "NELM",
    "NSW",
    "IBRION",
    "ISIF",
    "ENCUT",
    "EDIFF",
    "EDIFFG",
    "ISMEAR",
    "SIGMA",
    "LORBIT",
    "NEDOS",
    "NGXF",
    "NGYF",
    "NGZF",
    "GGA",
    "PREC",
)


def _fft_grid(vr, outcar, directory: Path) -> list[int] | None:
    p = vr.parameters
    if all(k in p for k in ("NGXF", "NGYF", "NGZF")):
        try:
            return [int(p["NGXF"]), int(p["NGYF"]), int(p["NGZF"])]
        except (TypeError, ValueError):
            pass
    if outcar is not None:
        outcar.read_pattern(
            {"ngf": r"dimension x,y,z NGXF=\s*(\d+)\s*NGYF=\s*(\d+)\s*NGZF=\s*(\d+)"},
            terminate_on_match=True,
            postprocess=int,
        )
        if outcar.data.get("ngf"):
            return [int(n) for n in outcar.data["ngf"][0]]
    chg = find_file(directory, "CHGCAR")
    if chg is not None:
        return _chgcar_grid(chg)
    return None


def _chgcar_grid(path: Path) -> list[int] | None:
    import itertools

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt") as fh:
        lines = list(itertools.islice(fh, 0, 400))
    for i, line in enumerate(lines[8:], start=8):
        if not line.strip():
            parts = lines[i + 1].split() if i + 1 < len(lines) else []
            if len(parts) == 3 and all(p.isdigit() for p in parts):
                return [int(p) for p in parts]
            return None
    return None


def parse_directory(
    directory: str | Path, *, label: str = "", stage: Stage | str | None = None
) -> TaskDoc:
    """Parse a finished VASP run directory into a :class:`~dftflow.schemas.TaskDoc`.

    Parameters
    ----------
    directory
        The run directory (vasprun.xml[.gz] required; OUTCAR[.gz], CHGCAR, custodian.json used
        when present).
    label
        Free-text label stored in the TaskDoc.
    stage
        The stage this run was (stored; not inferred).

    Returns
    -------
    TaskDoc
        Energies in eV (``energy_eV`` = e_0 of the last ionic step), forces in eV/Angstrom.

    Raises
    ------
    OutputError
        Missing directory or vasprun.xml, truncated/corrupt vasprun.xml or OUTCAR.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise OutputError(f"{directory} is not a directory")
    vpath = find_file(directory, "vasprun.xml")
    if vpath is None:
        raise OutputError(f"no vasprun.xml in {directory}: the run has not finished or failed")
    vr, caught = _load_vasprun(vpath)
    opath = find_file(directory, "OUTCAR")
    outcar = _load_outcar(opath) if opath is not None else None

    last = vr.ionic_steps[-1]
    final = vr.final_structure
    selective = final.site_properties.get("selective_dynamics")
    if selective is None:
        selective = vr.initial_structure.site_properties.get("selective_dynamics")
    forces = last.get("forces")
    max_force = None if forces is None else max_free_force(forces, selective)

    params = vr.parameters
    incar = {str(k): jsonable(v) for k, v in dict(vr.incar).items()}
    parameters = {k: jsonable(params[k]) for k in _PARAM_KEYS if k in params}
    parameters.update(incar)

    kpts = None
    try:
        style = str(vr.kpoints.style).lower()
        if ("monkhorst" in style or "gamma" in style) and vr.kpoints.kpts:
            kpts = [int(k) for k in vr.kpoints.kpts[0]]
    except (AttributeError, TypeError, ValueError):
        kpts = None

    has_dos = getattr(vr, "tdos", None) is not None
    has_pdos = bool(getattr(vr, "pdos", None)) or (has_dos and _has_projected_block(vpath))
    dos_file = None
    if has_dos:
        dos_file = str(vpath)
    elif find_file(directory, "DOSCAR") is not None:
        dos_file = str(find_file(directory, "DOSCAR"))

    volumetric = {}
    for kind in VOLUMETRIC_KINDS:
        path = find_file(directory, kind)
        if path is not None:
            volumetric[kind] = str(path)

    efermi = vr.efermi
    if efermi is None and outcar is not None:
        efermi = outcar.efermi
    nelect = params.get("NELECT")
    if nelect is None and outcar is not None:
        nelect = outcar.nelect
    wall = None
    if outcar is not None:
        wall = outcar.run_stats.get("Elapsed time (sec)")

    converged_e = bool(vr.converged_electronic)
    converged_i = bool(vr.converged_ionic)
    notes = [w for w in caught if "unconverged" not in w.lower() and "POTCAR" not in w]
    if not converged_e:
        notes.append("electronic SCF did not converge in the last ionic step (NELM reached)")
    if not converged_i:
        notes.append("ionic relaxation did not converge within NSW steps")
    stage_value = Stage(stage) if stage is not None else None
    # pymatgen's Incar-style dict upper-cases keys and capitalises values ("Dftflow-mock-vasp")
    generator = {str(k).lower(): str(v).strip().lower() for k, v in dict(vr.generator).items()}
    physical = generator.get("program", "") not in NOT_PHYSICAL_PROGRAMS
    return TaskDoc(
        physical=physical,
        physical_note="" if physical else NOT_PHYSICAL_NOTE,
        label=label,
        stage=stage_value,
        engine="vasp",  # the engine that ran it sets its own name (e.g. "mock") in its TaskDoc
        engine_version=str(vr.vasp_version).strip(),
        directory=str(directory.resolve()),
        formula=final.composition.formula.replace(" ", ""),
        n_atoms=len(final),
        energy_eV=e0_energy(vr),
        free_energy_eV=float(last["e_fr_energy"]) if "e_fr_energy" in last else None,
        max_force_eV_per_A=max_force,
        converged_electronic=converged_e,
        converged_ionic=converged_i,
        n_ionic_steps=len(vr.ionic_steps),
        efermi_eV=None if efermi is None else float(efermi),
        ispin=int(params.get("ISPIN", 1)),
        nelect=None if nelect is None else float(nelect),
        structure=final.as_dict(),
        has_dos=has_dos,
        has_projected_dos=has_pdos,
        dos_file=dos_file,
        volumetric_files=volumetric,
        fft_grid=_fft_grid(vr, outcar, directory),
        parameters=parameters,
        kpoints=kpts,
        inputs_digest=inputs_digest(directory),
        corrections=read_corrections(directory),
        warnings=notes,
        wall_time_s=None if wall is None else float(wall),
        metadata={"generator": jsonable(dict(vr.generator)), "potcar_symbols": vr.potcar_symbols},
    )


def summary_dict(doc: TaskDoc) -> dict[str, Any]:
    """The TaskDoc as a dict with the keys ``dftflow parse --json`` promises first."""
    keys = (
        "energy_eV",
        "free_energy_eV",
        "efermi_eV",
        "converged_electronic",
        "converged_ionic",
        "max_force_eV_per_A",
        "formula",
        "n_ionic_steps",
    )
    data = doc.model_dump(mode="json")
    data["charge_state"] = doc.charge_state  # anion/cation (charge), radical or neutral
    return {**{k: data[k] for k in keys}, **{k: v for k, v in data.items() if k not in keys}}


_ = re
