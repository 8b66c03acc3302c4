"""Volumetric VASP files (CHGCAR, AECCAR*, PARCHG, LOCPOT): reading, grid checks, planar averages.

Whole files are read with pymatgen (``Chgcar``/``Locpot``); the charge density difference reads
only the headers and the total grids, one file at a time, with :mod:`dftflow.io.chgcar` (two grids
in memory for three files). This module turns every failure into one line
(:class:`dftflow.errors.OutputError`) and holds the small numerical helpers.

Units
-----
VASP stores charge densities as rho * V_cell (electrons), on an ngx x ngy x ngz grid. The density in
e/Angstrom^3 is ``total / volume``; the charge in one voxel is ``total / (ngx*ngy*ngz)``. LOCPOT
holds the local potential in eV (not multiplied by the volume).
"""

from __future__ import annotations

import gzip
import lzma
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dftflow.errors import DftflowError, InputError, OutputError
from dftflow.io.chgcar import VolumetricHeader, read_header, read_values
from dftflow.io.chgcar import open_binary as _open_binary
from dftflow.parse.files import find_output
from dftflow.parse.run import load_taskdoc
from dftflow.structures.geometry import axis_height_A, vacuum_middle_fraction

AXES = {"x": 0, "y": 1, "z": 2, "a": 0, "b": 1, "c": 2, "0": 0, "1": 1, "2": 2}
#: Lattice vectors of two grids must agree to this, Angstrom.
LATTICE_ATOL_A = 1e-4
#: What a truncated or corrupt (possibly compressed) file raises while it is parsed.
_READ_ERRORS = (
    ValueError,
    IndexError,
    EOFError,
    OSError,
    UnicodeDecodeError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
)
#: File names of charge-density-type files (CHGCAR layout, not potentials), upper case.
DENSITY_FILE_NAMES = ("CHGCAR", "CHG", "AECCAR", "PARCHG", "ELFCAR", "CHGDIFF")
#: A potential's grid goes below -POTENTIAL_NEGATIVE_SHARE x its largest |value|; a density's not.
POTENTIAL_NEGATIVE_SHARE = 0.01


def axis_index(axis: int | str) -> int:
    """Turn ``"z"``, ``"c"``, ``"2"`` or ``2`` into a lattice-axis index."""
    key = str(axis).lower()
    if key not in AXES:
        raise InputError(f"unknown axis {axis!r}: use x, y or z (or 0, 1, 2)")
    return AXES[key]


def read_volumetric(path: str | Path, kind: str = "CHGCAR"):
    """Read a CHGCAR-like or LOCPOT file (plain or compressed) with pymatgen.

    Parameters
    ----------
    path
        The file, or a run directory holding ``kind``.
    kind
        ``CHGCAR``, ``AECCAR0``, ``AECCAR2``, ``PARCHG`` or ``LOCPOT``.

    Returns
    -------
    pymatgen.io.vasp.VolumetricData
        ``.data["total"]`` (rho*V for charge files, eV for LOCPOT) and ``.structure``.

    Raises
    ------
    OutputError
        Missing, empty, truncated or corrupt file.
    """
    from pymatgen.io.vasp import Chgcar, Locpot

    file = find_output(path, kind)
    if file.stat().st_size == 0:
        raise OutputError(f"{file} is empty")
    reader = Locpot if kind.upper().startswith("LOCPOT") else Chgcar
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = reader.from_file(str(file))
    except Exception as exc:  # pymatgen raises ValueError/IndexError/EOFError/... on bad files
        raise OutputError(
            f"cannot read {file}: truncated or corrupt {kind} ({type(exc).__name__})"
        ) from exc
    total = obj.data.get("total")
    if total is None or np.ndim(total) != 3 or np.size(total) == 0:
        raise OutputError(f"cannot read {file}: no volumetric grid found")
    if not np.all(np.isfinite(total)):
        raise OutputError(f"cannot read {file}: grid holds non-numbers (corrupt)")
    return obj


def check_same_grid(first, second, first_name: str, second_name: str) -> None:
    """Refuse two volumetric data sets whose grids or lattices differ (one line naming both).

    ``first``/``second``: pymatgen ``VolumetricData`` or :class:`VolumetricHeader`.
    """
    g1, g2 = _grid_of(first), _grid_of(second)
    if g1 != g2:
        raise InputError(
            f"FFT grids differ: {first_name} {'x'.join(map(str, g1))} vs "
            f"{second_name} {'x'.join(map(str, g2))} (use the same NGXF/NGYF/NGZF)"
        )
    m1 = np.asarray(first.structure.lattice.matrix)
    m2 = np.asarray(second.structure.lattice.matrix)
    if not np.allclose(m1, m2, atol=LATTICE_ATOL_A):
        raise InputError(
            f"lattices differ: {first_name} abc={_abc(first)} vs {second_name} abc={_abc(second)} "
            f"(max difference {np.abs(m1 - m2).max():.2e} A)"
        )


def _grid_of(vd) -> tuple[int, ...]:
    if isinstance(vd, VolumetricHeader):
        return tuple(vd.grid)
    return tuple(vd.data["total"].shape)


def read_volumetric_header(path: str | Path, kind: str = "CHGCAR") -> tuple[Path, VolumetricHeader]:
    """The file (``path`` or ``kind`` in the run directory ``path``) and its header.

    Reads the POSCAR block and the grid line only (milliseconds for any grid size).

    Raises
    ------
    OutputError
        Missing, empty or unreadable file (one line).
    """
    file = find_output(path, kind)
    if file.stat().st_size == 0:
        raise OutputError(f"{file} is empty")
    try:
        with warnings.catch_warnings(), _open_binary(file) as fh:
            warnings.simplefilter("ignore")
            header = read_header(fh)
    except _READ_ERRORS as exc:
        raise OutputError(
            f"cannot read {file}: truncated or corrupt {kind} ({type(exc).__name__})"
        ) from exc
    return file, header


def grid_difference(files: Sequence[Path], grid: Sequence[int], kind: str = "CHGCAR") -> np.ndarray:
    """``files[0] - files[1] - files[2] - ...`` of the total grids, read one file at a time.

    The first grid is read into the result and each further one into a single scratch buffer
    and subtracted in place (two grids in memory whatever the number of files; the order of the
    subtractions is pymatgen's ``linear_add`` order, so the result is bit for bit pymatgen's).
    Only the header and the first grid of each file are read (augmentation occupancies and
    magnetisation grids are skipped). The headers must have been checked to agree on ``grid``.

    Returns
    -------
    numpy.ndarray
        Shape ``grid``, Fortran-ordered (VASP's order), in the files' units (rho*V).

    Raises
    ------
    OutputError
        A truncated or corrupt file, a grid holding non-numbers (one line naming the file).
    """
    n = int(np.prod(grid))
    result = np.empty(n)
    scratch = np.empty(n) if len(files) > 1 else None
    for i, file in enumerate(files):
        buffer = result if i == 0 else scratch
        try:
            with warnings.catch_warnings(), _open_binary(file) as fh:
                warnings.simplefilter("ignore")
                header = read_header(fh)
                if tuple(header.grid) != tuple(grid):
                    raise ValueError(f"grid {header.grid} changed while reading")
                read_values(fh, buffer)
        except _READ_ERRORS as exc:
            raise OutputError(
                f"cannot read {file}: truncated or corrupt {kind} ({type(exc).__name__}: {exc})"
            ) from exc
        if not np.isfinite(buffer.sum()):
            raise OutputError(f"cannot read {file}: grid holds non-numbers (corrupt)")
        if i > 0:
            np.subtract(result, buffer, out=result)
    del scratch
    return result.reshape(tuple(grid), order="F")


def check_is_potential(file: Path, data: np.ndarray) -> None:
    """Refuse a charge-density-type file given where a potential (LOCPOT) is expected.

    pymatgen cannot tell them apart (``Locpot`` and ``Chgcar`` read the same layout; no header
    field says which quantity the grid holds), so the file's name and its values decide. A
    LOCPOT holds a potential in eV whose electrostatic part averages to zero over the cell (VASP
    drops the G=0 term), so its grid always goes well below zero (the wells at the atoms); a
    CHGCAR, AECCAR, PARCHG (rho*V, mean = electrons in the cell) or ELFCAR (0..1) is
    non-negative up to noise. Refused: a file named like a density file, or a grid whose minimum
    is above ``-POTENTIAL_NEGATIVE_SHARE`` x its largest value.
    """
    name = file.name.upper()
    for suffix in (".GZ", ".BZ2", ".XZ", ".LZMA"):
        name = name.removesuffix(suffix)
    if name.startswith(DENSITY_FILE_NAMES) and not name.startswith("LOCPOT"):
        raise InputError(
            f"{file} is a charge-density file by its name, not a potential: pass the LOCPOT "
            "(written with LVTOT or LVHAR = .TRUE.)"
        )
    vmin, vmax = float(data.min()), float(data.max())
    if vmax > 0 and vmin >= -POTENTIAL_NEGATIVE_SHARE * vmax:
        raise InputError(
            f"{file} does not hold a potential: its values are non-negative (min {vmin:.3g}, "
            f"max {vmax:.3g}, mean {float(data.mean()):.3g}), as in a charge density (rho*V); a "
            "LOCPOT goes negative at the atoms: pass the LOCPOT (LVTOT or LVHAR = .TRUE.)"
        )


def _abc(vd) -> str:
    lat = vd.structure.lattice
    return (
        f"({lat.a:.4f}, {lat.b:.4f}, {lat.c:.4f}; {lat.alpha:.2f}, {lat.beta:.2f}, {lat.gamma:.2f})"
    )


def axis_coordinates_A(structure, axis: int, n: int) -> np.ndarray:
    """Positions (A) of the ``n`` grid planes along ``axis`` (plane k at k/n of the height)."""
    return np.arange(n) * axis_height_A(structure.lattice.matrix, axis) / n


def planar_average(data: np.ndarray, axis: int) -> np.ndarray:
    """Mean of a 3D grid over the planes perpendicular to ``axis`` (same units as ``data``)."""
    other = tuple(i for i in range(3) if i != axis)
    return np.asarray(data, dtype=float).mean(axis=other)


def plane_charges_e(total_rho_v: np.ndarray, axis: int) -> np.ndarray:
    """Electrons in each grid plane along ``axis`` from rho*V data: sum(plane) / n_points."""
    other = tuple(i for i in range(3) if i != axis)
    total_rho_v = np.asarray(total_rho_v, dtype=float)
    return total_rho_v.sum(axis=other) / total_rho_v.size


class LocpotProfile:
    """Planar-averaged local potential and the vacuum level (plain container)."""

    def __init__(self, z_A, potential_eV, vacuum_level_eV, efermi_eV, axis):
        self.z_A = z_A
        self.planar_average_eV = potential_eV
        self.vacuum_level_eV = vacuum_level_eV
        self.efermi_eV = efermi_eV
        self.axis = axis

    @property
    def work_function_eV(self) -> float | None:
        """Vacuum level minus Fermi level, eV (None without E_F)."""
        if self.efermi_eV is None or self.vacuum_level_eV is None:
            return None
        return self.vacuum_level_eV - self.efermi_eV


def locpot_profile(path: str | Path, axis: int | str = 2, efermi_eV: float | None = None):
    """Planar average of LOCPOT along ``axis`` and the vacuum level.

    The vacuum level is the maximum of the planar average inside the widest atom-free gap, at least
    2 A from the outermost atoms (a plateau for a converged vacuum; with a dipole correction it is
    the higher of the two plateaus). The work function is ``vacuum - E_F`` when E_F is given or
    found in a vasprun.xml next to the LOCPOT. A charge-density file (CHGCAR, AECCAR, PARCHG,
    ELFCAR: by name or by its non-negative values) is refused (:func:`check_is_potential`).
    """
    ax = axis_index(axis)
    vd = read_volumetric(path, "LOCPOT")
    data = vd.data["total"]
    check_is_potential(find_output(path, "LOCPOT"), data)
    profile = planar_average(data, ax)
    n = profile.size
    z = axis_coordinates_A(vd.structure, ax, n)
    middle, width = vacuum_middle_fraction(vd.structure, ax)
    height = axis_height_A(vd.structure.lattice.matrix, ax)
    vacuum = None
    if width > 4.0:
        half = (width / 2.0 - 2.0) / height
        frac_grid = np.arange(n) / n
        dist = np.abs((frac_grid - middle + 0.5) % 1.0 - 0.5)
        mask = dist <= half
        if mask.any():
            vacuum = float(profile[mask].max())
    if efermi_eV is None:
        efermi_eV = _efermi_next_to(path)
    return LocpotProfile(z, profile, vacuum, efermi_eV, ax)


def _efermi_next_to(path: str | Path) -> float | None:
    """E_F of the run the LOCPOT belongs to (its TaskDoc or vasprun.xml), or None."""
    directory = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        return load_taskdoc(directory).efermi_eV
    except DftflowError:  # no run record next to the LOCPOT: the work function is not reported
        return None
