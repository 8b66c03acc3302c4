"""The empty (vacuum) gap of a periodic cell along one lattice axis, in one place.

A slab, a molecule in a box or a complex leaves an atom-free interval along some axes. Which
interval is "the vacuum" is decided here once: the widest interval between consecutive atoms
along the axis, the periodic boundary included (when two are equally wide, the one that crosses
the cell boundary). Everything else (slab planes, DIPOL, system kind, Δρ/LOCPOT origins, layer
labels, report text) asks these functions.

Fractions are fractional coordinates along the axis; widths in Angstrom are the distance between
the two lattice planes that bound the gap (the cell height along that axis, which equals the
lattice-vector length when the axis is perpendicular to the other two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # pymatgen is not imported at run time: the CLI reads the defaults at start-up
    from pymatgen.core import Structure

#: Two gaps whose widths differ by less than this (fraction of the axis) count as equally wide.
TIE_TOLERANCE = 1e-9
#: An atom-free gap (Angstrom, nucleus to nucleus) wider than this along an axis is vacuum: the
#: system is not periodic there (slab, molecule). One threshold for the input sets (system kind),
#: the embedded engine (slab-like cells) and the mid-gap detector. Bulk CsPbBr3's widest gap is
#: a/2 ~ 2.9 A; the study's slabs leave >= 12 A.
VACUUM_THRESHOLD_A = 5.0
#: The vacuum (Angstrom) between a slab and its periodic image when none is asked for (``dftflow
#: build slab``, :func:`dftflow.structures.slab.cspbbr3_001_slab`, a study's ``slab.vacuum_A``).
DEFAULT_SLAB_VACUUM_A = 15.0


@dataclass(frozen=True)
class PeriodicGap:
    """An atom-free interval along one periodic axis (fractional coordinates).

    Attributes
    ----------
    lower
        Fractional coordinate of the last atom below the gap, in [0, 1).
    upper
        Fractional coordinate of the first atom above the gap, in [0, 1) (equal to ``lower``
        for a single atom).
    width
        Width of the gap as a fraction of the axis, in (0, 1].
    """

    lower: float
    upper: float
    width: float

    @property
    def middle(self) -> float:
        """Fractional coordinate (in [0, 1)) of the middle of the gap."""
        return float(np.mod(self.lower + 0.5 * self.width, 1.0))


def widest_gap(fractions: ArrayLike) -> PeriodicGap:
    """The widest atom-free interval of points on a periodic axis.

    Parameters
    ----------
    fractions
        Fractional coordinates along the axis (any real numbers; wrapped into [0, 1)).

    Returns
    -------
    PeriodicGap
        The widest interval; among equally wide ones the one crossing the cell boundary.

    Raises
    ------
    ValueError
        No points.
    """
    f = np.sort(np.mod(np.asarray(fractions, dtype=float).ravel(), 1.0))
    if f.size == 0:
        raise ValueError("no atoms: the vacuum gap of an empty cell is undefined")
    gaps = np.diff(np.concatenate([f, f[:1] + 1.0]))
    i = int(np.argmax(gaps))
    if gaps[-1] >= gaps[i] - TIE_TOLERANCE:
        i = len(gaps) - 1
    return PeriodicGap(lower=float(f[i]), upper=float(f[(i + 1) % f.size]), width=float(gaps[i]))


def unwrap_across_gap(fractions: ArrayLike) -> np.ndarray:
    """Fractional coordinates made contiguous: the cut is placed in the widest gap.

    A slab that wraps across the cell boundary becomes one block; the result lies in
    ``[gap.upper, gap.upper + 1)`` (an atom within :data:`TIE_TOLERANCE` below ``gap.upper``
    counts as at it), in the input order.

    Parameters
    ----------
    fractions
        Fractional coordinates along the axis.

    Returns
    -------
    numpy.ndarray
        Unwrapped fractional coordinates.
    """
    f = np.mod(np.asarray(fractions, dtype=float), 1.0)
    start = widest_gap(f).upper
    shifted = np.mod(f - start, 1.0)
    shifted[shifted > 1.0 - TIE_TOLERANCE] -= 1.0
    return start + np.maximum(shifted, 0.0)


def axis_height_A(cell: ArrayLike, axis: int) -> float:
    """Distance (Angstrom) between the two faces of the cell perpendicular to the other axes.

    Parameters
    ----------
    cell
        3x3 lattice vectors as rows, Angstrom.
    axis
        0, 1 or 2.

    Returns
    -------
    float
        Cell volume divided by the area of the face spanned by the two other vectors.
    """
    m = np.asarray(cell, dtype=float)
    others = [m[i] for i in range(3) if i != axis]
    area = float(np.linalg.norm(np.cross(others[0], others[1])))
    return abs(float(np.linalg.det(m))) / area


def _fractions_and_cell(system: Structure | Atoms, axis: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(system, Atoms):
        return system.get_scaled_positions(wrap=False)[:, axis], np.asarray(system.cell[:])
    return np.asarray(system.frac_coords)[:, axis], np.asarray(system.lattice.matrix)


def vacuum_gap(system: Structure | Atoms, axis: int = 2) -> PeriodicGap:
    """The widest atom-free interval of a cell along ``axis`` (fractional).

    Parameters
    ----------
    system
        A pymatgen Structure or ASE Atoms with a cell.
    axis
        Lattice axis, 2 (c) for slabs.

    Returns
    -------
    PeriodicGap
        See :func:`widest_gap`.
    """
    frac, _ = _fractions_and_cell(system, axis)
    return widest_gap(frac)


def vacuum_width_A(system: Structure | Atoms, axis: int = 2) -> float:
    """Width (Angstrom) of the widest atom-free gap along ``axis``, nucleus to nucleus.

    Parameters
    ----------
    system
        A pymatgen Structure or ASE Atoms with a cell.
    axis
        Lattice axis.

    Returns
    -------
    float
        Gap width times the cell height along ``axis``.
    """
    frac, cell = _fractions_and_cell(system, axis)
    return widest_gap(frac).width * axis_height_A(cell, axis)


def vacuum_axes(system: Structure | Atoms, threshold_A: float) -> list[bool]:
    """For each lattice axis, whether the widest atom-free gap is wider than ``threshold_A``.

    Parameters
    ----------
    system
        A pymatgen Structure or ASE Atoms with a cell.
    threshold_A
        Minimum width (Angstrom) that counts as vacuum.

    Returns
    -------
    list of bool
        Three flags (a, b, c).
    """
    return [vacuum_width_A(system, axis) > threshold_A for axis in range(3)]


def widest_vacuum(system: Structure | Atoms, threshold_A: float = VACUUM_THRESHOLD_A):
    """The axis (0, 1, 2) and width (Angstrom) of the widest vacuum gap, or None without vacuum.

    Parameters
    ----------
    system
        A pymatgen Structure or ASE Atoms with a cell.
    threshold_A
        Minimum width (Angstrom) that counts as vacuum.

    Returns
    -------
    tuple of (int, float) or None
        The axis with the widest gap wider than ``threshold_A`` and that width.
    """
    widths = [vacuum_width_A(system, axis) for axis in range(3)]
    axis = int(np.argmax(widths))
    return (axis, float(widths[axis])) if widths[axis] > threshold_A else None


def vacuum_middle_fraction(system: Structure | Atoms, axis: int = 2) -> tuple[float, float]:
    """Middle of the widest atom-free gap (fraction along ``axis``) and its width (Angstrom).

    Parameters
    ----------
    system
        A pymatgen Structure or ASE Atoms with a cell.
    axis
        Lattice axis.

    Returns
    -------
    tuple of (float, float)
        Fractional coordinate of the middle of the gap, and the gap width in Angstrom.
    """
    frac, cell = _fractions_and_cell(system, axis)
    gap = widest_gap(frac)
    return gap.middle, gap.width * axis_height_A(cell, axis)
