"""Fast writer of VASP volumetric files (CHGCAR, LOCPOT, AECCAR*) in the VASP convention.

Why our own writer: pymatgen reads a 103 MB CHGCAR (160x160x224) in 0.23 s but writes it in 8.4 s;
numpy's formatted write of the same grid takes 2.2 s (measured, ../shared/MEASURED.md). Reading
stays
with pymatgen (``pymatgen.io.vasp.Chgcar``). The file is laid out exactly as VASP does (POSCAR
block,
blank line, grid line, values with x fastest, 5 per line), so VESTA and pymatgen open it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.vasp import Poscar

from dftflow.fileio import atomic_path

VALUES_PER_LINE = 5
#: Rows formatted per ``%`` operation in :func:`format_rows` (bounds the temporary tuple's size).
ROWS_PER_CHUNK = 20_000


def format_rows(rows: np.ndarray, row_fmt: str) -> str:
    """Format a 2D array one line per row, byte for byte as ``np.savetxt(fh, rows, row_fmt)``.

    ``row_fmt`` holds one ``%`` conversion per column. The rows are formatted in chunks with one
    ``%`` operation each instead of one Python call per row (measured ~1.8x faster than
    ``np.savetxt`` on a 2-million-value grid with ``%18.11E``).

    Parameters
    ----------
    rows
        2D array, shape (n_rows, n_columns).
    row_fmt
        printf-style format of one row, without the newline.

    Returns
    -------
    str
        The formatted lines, each ending in a newline.
    """
    rows = np.asarray(rows, dtype=float)
    line = row_fmt + "\n"
    parts = []
    for start in range(0, len(rows), ROWS_PER_CHUNK):
        chunk = rows[start : start + ROWS_PER_CHUNK]
        parts.append((line * len(chunk)) % tuple(chunk.ravel().tolist()))
    return "".join(parts)


def _format_grid(data: np.ndarray) -> str:
    flat = np.asarray(data, dtype=float).ravel(order="F")  # VASP: x fastest, then y, then z
    n_full = flat.size // VALUES_PER_LINE * VALUES_PER_LINE
    text = format_rows(
        flat[:n_full].reshape(-1, VALUES_PER_LINE), " ".join(["%18.11E"] * VALUES_PER_LINE)
    )
    if flat.size > n_full:
        text += " ".join(f"{v:18.11E}" for v in flat[n_full:]) + "\n"
    return text


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
