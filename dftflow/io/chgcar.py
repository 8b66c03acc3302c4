"""Fast writer of VASP volumetric files (CHGCAR, LOCPOT, AECCAR*) in the VASP convention.

Why our own writer: pymatgen reads a 103 MB CHGCAR (160x160x224) in 0.23 s but writes it in 8.4 s;
numpy's formatted write of the same grid takes 2.2 s (measured, ../shared/MEASURED.md). Reading
stays
with pymatgen (``pymatgen.io.vasp.Chgcar``). The file is laid out exactly as VASP does (POSCAR
block,
blank line, grid line, values with x fastest, 5 per line), so VESTA and pymatgen open it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.vasp import Poscar

from dftflow.fileio import atomic_path

VALUES_PER_LINE = 5


def _format_grid(data: np.ndarray) -> str:
    flat = np.asarray(data, dtype=float).ravel(order="F")  # VASP: x fastest, then y, then z
    n_full = flat.size // VALUES_PER_LINE * VALUES_PER_LINE
    buf = io.StringIO()
    if n_full:
        np.savetxt(buf, flat[:n_full].reshape(-1, VALUES_PER_LINE), fmt="%18.11E", delimiter=" ")
    if flat.size > n_full:
        buf.write(" ".join(f"{v:18.11E}" for v in flat[n_full:]) + "\n")
    return buf.getvalue()


def write_chgcar(
    path: str | Path,
    structure: Structure,
    total: np.ndarray,
    diff: np.ndarray | None = None,
    comment: str | None = None,
) -> Path:
    """Write a CHGCAR-format file.

    Parameters
    ----------
    path
        Output path; written atomically (temp file + rename).
    structure
        The cell and atoms of the grid.
    total
        Charge density times cell volume (VASP's rho*V convention, electrons), shape (ngx, ngy,
        ngz).
        For LOCPOT pass the potential in eV.
    diff
        Optional magnetisation density (rho_up - rho_down) * V of the same shape.
    comment
        First line of the file (defaults to the formula).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    total = np.asarray(total, dtype=float)
    if total.ndim != 3:
        raise ValueError(f"volumetric data must be 3D, got shape {total.shape}")
    if diff is not None and np.shape(diff) != total.shape:
        raise ValueError(f"diff grid {np.shape(diff)} differs from total grid {total.shape}")
    poscar = Poscar(structure, comment=comment or structure.composition.reduced_formula)
    header = poscar.get_str(significant_figures=8)
    grid_line = "".join(f"{n:5d}" for n in total.shape) + "\n"
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(header)
        fh.write("\n")
        fh.write(grid_line)
        fh.write(_format_grid(total))
        if diff is not None:
            fh.write(grid_line)
            fh.write(_format_grid(diff))
    return path
