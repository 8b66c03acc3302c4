"""Fast reader and writer of VASP volumetric files (CHGCAR, LOCPOT, AECCAR*) in the VASP convention.

Why our own code (measured on three 160x160x224 CHGCARs, ``benchmarks/bench_chgdiff_RESULTS.md``):

* Writing: pymatgen's ``Chgcar.write_file`` formats one value per Python call (8.5 s for one grid
  on an idle machine); :func:`write_chgcar` formats chunks with integer arithmetic in numpy on two
  threads (~0.55 CPU s), byte for byte what ``"%18.11E"`` prints (values whose 12th digit is a
  near-tie are formatted by printf).
* Reading: pymatgen's parser is fast (its C float parser, ``parse_n_doubles``, 0.07 s a grid) but
  ``Chgcar.from_file`` keeps every block of a file (total, magnetisation, augmentation) and each
  object holds its own grids. :func:`read_total_grid` reads the header and the first grid only,
  with the same C parser, into an array the caller may supply (so a difference of three files
  needs two grids in memory, not six or more).

The file is laid out exactly as VASP does (POSCAR block, blank line, grid line, values with x
fastest, 5 per line), so VESTA and pymatgen open it.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby, islice
from pathlib import Path
from typing import IO

import numpy as np
from pymatgen.core import Lattice, Structure

from dftflow.fileio import atomic_path

VALUES_PER_LINE = 5
#: Rows formatted per ``%`` operation in :func:`format_rows` (bounds the temporary tuple's size).
ROWS_PER_CHUNK = 20_000
#: Values formatted per numpy pass in :func:`write_chgcar` (~5 MB of text, ~25 MB of temporaries).
VALUES_PER_CHUNK = 200_000
#: Threads formatting chunks while the main thread writes (numpy releases the GIL).
WRITER_THREADS = 2
#: One ``%18.11E`` field plus its separator (space, or newline after every fifth value).
_FIELD = 19
#: 10**k at index k + 130, for the mantissa scaling of :func:`_format_e_block`.
_POW10 = 10.0 ** np.arange(-130, 131)
#: Scaled mantissas this close to a rounding tie are formatted by printf (exact rounding).
_TIE_MARGIN = 2e-3


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


def _format_e_block(flat: np.ndarray, last: bool) -> bytes:
    """``flat`` as ``"%18.11E"`` fields, 5 a line, space-separated (the CHGCAR grid layout).

    Byte for byte what printf writes: sign or space, 12 significant digits from the mantissa
    ``m = rint(|x| * 10**(11 - e))`` split into integer digits, and a two-digit exponent. The
    scaling is exact to a few units in the last place, so a value whose scaled mantissa lies within
    ``_TIE_MARGIN`` of a rounding tie is formatted by printf instead (~0.4 % of values); so is a
    block holding a non-finite value or an exponent outside -99..99 (printf's three-digit form).
    ``flat`` starts a line; ``last``: it ends the grid (a short last line ends in a newline).
    """
    n = flat.size
    a = np.abs(flat)
    if not np.isfinite(a).all():
        return _format_e_printf(flat, last)
    nonzero = a != 0
    e = np.floor(np.log10(a, where=nonzero, out=np.zeros_like(a))).astype(np.int64)
    if e.max(initial=0) > 99 or e.min(initial=0) < -99:
        return _format_e_printf(flat, last)
    t = a * _POW10[141 - e]
    m = np.rint(t)
    near_tie = np.abs(np.abs(t - m) - 0.5) < _TIE_MARGIN
    for wrong, step in ((m >= 1e12, 1), ((m < 1e11) & nonzero, -1)):  # log10 off by one
        if wrong.any():
            e[wrong] += step
            t[wrong] = a[wrong] * _POW10[141 - e[wrong]]
            m[wrong] = np.rint(t[wrong])
            near_tie[wrong] |= np.abs(np.abs(t[wrong] - m[wrong]) - 0.5) < _TIE_MARGIN
    if (e > 99).any() or (e < -99).any():
        return _format_e_printf(flat, last)
    rows = np.empty((_FIELD, n), np.uint8)  # one row per character: contiguous stores
    rows[0] = np.where(np.signbit(flat), ord("-"), ord(" "))
    rows[2] = ord(".")
    rows[14] = ord("E")
    rows[15] = np.where(e < 0, ord("-"), ord("+"))
    exp = np.abs(e).astype(np.int32)
    digit = np.empty(n, np.int32)
    np.divmod(exp, 10, out=(exp, digit))
    rows[17] = digit
    rows[16] = exp
    mi = m.astype(np.int64)
    for part, cols in ((mi % 1_000_000, range(13, 7, -1)), (mi // 1_000_000, range(7, 2, -1))):
        part = part.astype(np.int32)  # digits 6-11, then 0-5
        for col in cols:
            np.divmod(part, 10, out=(part, digit))
            rows[col] = digit
        if cols.stop == 2:
            rows[1] = part
    rows[1:18] += 48
    rows[14:16] -= 48  # "E" and the exponent's sign are characters, not digits
    rows[2] -= 48
    rows[18] = ord(" ")
    rows[18, VALUES_PER_LINE - 1 :: VALUES_PER_LINE] = ord("\n")
    if last:
        rows[18, -1] = ord("\n")
    out = rows.T.copy()
    for i in np.flatnonzero(near_tie):
        out[i, :18] = np.frombuffer(b"%18.11E" % flat[i], np.uint8)
    return out.tobytes()


def _format_e_printf(flat: np.ndarray, last: bool) -> bytes:
    """The slow path of :func:`_format_e_block`: printf for every value."""
    n_full = flat.size // VALUES_PER_LINE * VALUES_PER_LINE
    text = format_rows(
        flat[:n_full].reshape(-1, VALUES_PER_LINE), " ".join(["%18.11E"] * VALUES_PER_LINE)
    )
    if flat.size > n_full:
        rest = " ".join(f"{v:18.11E}" for v in flat[n_full:])
        text += rest + ("\n" if last else " ")
    return text.encode()


def _grid_chunks(data: np.ndarray) -> Iterator[tuple[np.ndarray, bool]]:
    """The grid in VASP order (x fastest), in chunks of whole lines; each with ``is_last``."""
    data = np.asarray(data, dtype=float)
    # A Fortran-ordered grid (as read) is already in VASP order: a view, no copy.
    flat = data.ravel(order="F") if data.flags.f_contiguous else None
    step = VALUES_PER_CHUNK // VALUES_PER_LINE * VALUES_PER_LINE
    n = data.size
    for start in range(0, n, step):
        stop = min(start + step, n)
        if flat is not None:
            chunk = flat[start:stop]
        else:  # copy one chunk at a time, never the whole grid
            chunk = data.ravel(order="F")[start:stop] if n <= step else _f_slice(data, start, stop)
        yield chunk, stop == n


def _f_slice(data: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Values ``start:stop`` of ``data`` in Fortran order, copying only those (whole z planes)."""
    plane = data.shape[0] * data.shape[1]
    k0, k1 = start // plane, -(-stop // plane)
    block = np.asarray(data[:, :, k0:k1]).ravel(order="F")
    return block[start - k0 * plane : stop - k0 * plane]


def _write_grid(fh: IO[bytes], data: np.ndarray) -> None:
    """Write the values of a grid, formatting chunks in threads while writing them in order."""
    chunks = _grid_chunks(data)
    with ThreadPoolExecutor(WRITER_THREADS) as pool:
        pending = []
        for chunk, last in chunks:
            pending.append(pool.submit(_format_e_block, chunk, last))
            if len(pending) > WRITER_THREADS:  # bounded: at most threads + 1 chunks in memory
                fh.write(pending.pop(0).result())
        for fut in pending:
            fh.write(fut.result())


def write_chgcar(
    path: str | Path,
    structure: Structure,
    total: np.ndarray,
    diff: np.ndarray | None = None,
    comment: str | None = None,
) -> Path:
    """Write a CHGCAR-format file (no augmentation occupancies).

    The values are formatted ``%18.11E`` (12 significant digits, relative rounding < 5e-12), 5 a
    line, x fastest; the output is byte for byte that of ``np.savetxt`` with that format.

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
    header = poscar_block(structure, comment or structure.composition.reduced_formula)
    grid_line = ("".join(f"{n:5d}" for n in total.shape) + "\n").encode()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header.encode())
        fh.write(b"\n")
        fh.write(grid_line)
        _write_grid(fh, total)
        if diff is not None:
            fh.write(grid_line)
            _write_grid(fh, diff)
    return path


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


# The POSCAR block of a volumetric file is read and written here rather than with pymatgen's
# Poscar: importing pymatgen.io.vasp costs ~0.65 CPU s (its outputs module pulls in scipy.signal and
# the DOS classes), a third of a whole `dftflow analyze chgdiff` on 160x160x224 grids (measured,
# benchmarks/bench_chgdiff_RESULTS.md). A block this reader does not know (VASP 4: no species
# line) goes to pymatgen's Poscar.


def poscar_block(structure: Structure, comment: str) -> str:
    """The POSCAR block of a volumetric file (VASP 5: species line, direct coordinates).

    Site order is kept: consecutive sites of one element form a block, as pymatgen's Poscar
    writes them. Ends with a newline and no blank line.
    """
    symbols = [site.specie.symbol for site in structure]
    blocks = [(sym, len(list(run))) for sym, run in groupby(symbols)]
    lines = [" ".join(comment.split()) or "dftflow", "1.0"]
    lines += ["".join(f"{x:22.16f}" for x in row) for row in structure.lattice.matrix]
    lines.append("".join(f"{sym:>5s}" for sym, _ in blocks))
    lines.append("".join(f"{n:6d}" for _, n in blocks))
    lines.append("direct")
    lines += ["".join(f"{x:20.16f}" for x in site.frac_coords) for site in structure]
    return "\n".join(lines) + "\n"


def parse_poscar_block(text: str) -> Structure:
    """The structure of a POSCAR block (the lines before a volumetric file's first blank line).

    Raises
    ------
    ValueError
        Not a POSCAR block.
    """
    lines = [line.split() for line in text.splitlines()]
    try:
        scale = float(lines[1][0])
        matrix = [[float(x) for x in row[:3]] for row in lines[2:5]]
        species = lines[5]
        if all(tok.isdigit() for tok in species):  # VASP 4: no species line
            return _pymatgen_poscar(text)
        counts = [int(tok) for tok in lines[6]]
        row = 7
        if lines[row] and lines[row][0][0] in "sS":  # selective dynamics
            row += 1
        cartesian = lines[row][0][0] in "cCkK"
        n = sum(counts)
        coords = [[float(x) for x in line[:3]] for line in lines[row + 1 : row + 1 + n]]
        if len(coords) != n or any(len(c) != 3 for c in coords) or len(counts) != len(species):
            raise ValueError("too few coordinates")
    except (IndexError, ValueError) as exc:
        raise ValueError(f"not a POSCAR block: {exc}") from exc
    lattice = Lattice(matrix)
    if scale < 0:  # a negative scale is the cell volume
        scale = (-scale / lattice.volume) ** (1 / 3)
    lattice = Lattice(lattice.matrix * scale)
    names = [sym.split("/")[0].split("_")[0] for sym in species]  # "Pb_d" or "Pb/hash" -> "Pb"
    elements = [sym for sym, k in zip(names, counts, strict=True) for _ in range(k)]
    if cartesian:
        coords = [[x * scale for x in c] for c in coords]
    return Structure(lattice, elements, coords, coords_are_cartesian=cartesian)


def _pymatgen_poscar(text: str) -> Structure:
    from pymatgen.io.vasp import Poscar

    return Poscar.from_str(text).structure


@dataclass
class VolumetricHeader:
    """What precedes the first grid of a volumetric file: the structure and the grid shape."""

    structure: Structure
    grid: tuple[int, int, int]


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a plain, .gz, .bz2 or .xz file for binary reading."""
    name = str(path).lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith((".xz", ".lzma")):
        return lzma.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def read_header(fh: IO[bytes]) -> VolumetricHeader:
    """Read the POSCAR block and the grid line; ``fh`` is left at the first value.

    Raises
    ------
    ValueError
        No POSCAR block, or no grid line of three positive integers after it.
    """
    lines: list[bytes] = []
    while True:  # the POSCAR block ends at the first blank line (as pymatgen reads it)
        line = fh.readline()
        if not line:
            raise ValueError("no grid after the POSCAR block (file ends)")
        line = line.strip()
        if not line and lines:
            break
        lines.append(line)
    structure = parse_poscar_block(b"\n".join(lines).decode("utf-8", errors="replace"))
    line = fh.readline()
    while line and not line.strip():
        line = fh.readline()
    fields = line.split()
    if len(fields) != 3 or not all(f.isdigit() and int(f) > 0 for f in fields):
        raise ValueError(f"expected the grid line (three positive integers), got {line[:40]!r}")
    nx, ny, nz = (int(f) for f in fields)
    return VolumetricHeader(structure, (nx, ny, nz))


def read_values(fh: IO[bytes], out: np.ndarray) -> None:
    """Fill the 1D float64 array ``out`` with the next ``out.size`` numbers of ``fh``.

    pymatgen's C parser (``pymatgen.optimization.fast_parser.parse_n_doubles``, the one behind
    ``Chgcar.from_file`` since 2026) when present; otherwise lines in batches through numpy.

    Raises
    ------
    ValueError
        Fewer numbers than ``out.size`` before the file ends or text starts.
    """
    n = out.size
    try:
        from pymatgen.optimization.fast_parser import parse_n_doubles
    except ImportError:  # older pymatgen: numpy on batches of lines
        parse_n_doubles = None
    if parse_n_doubles is not None:
        got = parse_n_doubles(fh, out, n)
    else:
        got, per_line = 0, 0
        while got < n:  # never past the grid: augmentation or another grid may follow
            want = 1 if not per_line else min(100_000, -(-(n - got) // per_line))
            batch = list(islice(fh, want))
            if not batch:
                break
            per_line = per_line or len(batch[0].split())
            values = np.array(b" ".join(batch).split(), dtype=float)
            if got + values.size > n:
                raise ValueError(f"more values than the grid's {n} in its last lines")
            out[got : got + values.size] = values
            got += values.size
    if got != n:
        raise ValueError(f"grid truncated: {got} of {n} values")


def read_total_grid(
    path: str | Path, out: np.ndarray | None = None
) -> tuple[VolumetricHeader, np.ndarray]:
    """Read the header and the first (total) grid of a volumetric file, nothing after it.

    Parameters
    ----------
    path
        CHGCAR-format file (plain or compressed).
    out
        Optional preallocated 1D float64 array of the grid's size to read into (reused buffers).

    Returns
    -------
    (VolumetricHeader, numpy.ndarray)
        The header and the grid, shape (ngx, ngy, ngz), Fortran-ordered (a view of ``out``).

    Raises
    ------
    ValueError
        Unreadable header, truncated grid, ``out`` of the wrong size.
    """
    with open_binary(path) as fh:
        header = read_header(fh)
        n = int(np.prod(header.grid))
        if out is None:
            out = np.empty(n)
        elif out.size != n or out.dtype != np.float64:
            raise ValueError(f"buffer of {out.size} values for a grid of {n}")
        read_values(fh, out)
    return header, out.reshape(header.grid, order="F")
