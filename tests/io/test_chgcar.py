"""CHGCAR I/O: the row formatter and the grid writer print exactly what printf prints; the reader
reads real VASP CHGCARs (spin-polarised, augmentation occupancies, gzip) as pymatgen does.

Real VASP data (pymatgen-core's test files, MIT) is not committed: ``dftflow.testing.real_vasp``
finds it in ../shared/real_vasp/ beside the clone; those tests fail (never skip) when it is absent.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from dftflow.io.chgcar import (
    ROWS_PER_CHUNK,
    VALUES_PER_CHUNK,
    format_rows,
    read_total_grid,
    write_chgcar,
)
from dftflow.testing.real_vasp import public_data


@pytest.mark.parametrize(
    ("shape", "row_fmt"),
    [
        ((2 * ROWS_PER_CHUNK + 7, 5), " ".join(["%18.11E"] * 5)),  # CHGCAR grid, several chunks
        ((300, 9), "      <r>" + " %7.4f" * 9 + " </r>"),  # vasprun projections
        ((301, 5), "%12.4f" + " %.4E" * 4),  # DOSCAR
        ((0, 3), "%f %f %f"),
    ],
)
def test_format_rows_equals_savetxt(shape, row_fmt):
    rng = np.random.default_rng(7)
    rows = rng.normal(size=shape) * np.exp(rng.normal(size=shape) * 20)
    expected = io.StringIO()
    np.savetxt(expected, rows, fmt=row_fmt)
    assert format_rows(rows, row_fmt) == expected.getvalue()


# ---------------------------------------------------------------- fast writer and reader


def _printf_grid(flat: np.ndarray) -> bytes:
    """The CHGCAR grid as printf writes it: ``%18.11E``, 5 a line, space-separated."""
    buf = io.StringIO()
    n_full = flat.size // 5 * 5
    np.savetxt(buf, flat[:n_full].reshape(-1, 5), fmt=" ".join(["%18.11E"] * 5))
    if flat.size > n_full:
        buf.write(" ".join(f"{v:18.11E}" for v in flat[n_full:]) + "\n")
    return buf.getvalue().encode()


@pytest.mark.parametrize(
    "special",
    [
        # zeros, rounding ties of the 12th digit, the log10 boundary, the two-digit exponent's
        # limits, subnormal and huge values (printf's three-digit exponent), non-finite
        [0.0, -0.0, 9.999999999995, 9.9999999999949, 0.5, 1.000000000005, 1e-99, 9.99e99],
        [1e-120, 5e-324, 1e300, -1e100],
        [np.nan, np.inf, -np.inf, 1.0],
    ],
)
def test_write_chgcar_grid_is_printf_exactly(tmp_path, special):
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(3)
    shape = (7, 9, 2 * VALUES_PER_CHUNK // 63 + 5)  # several chunks, a short last line
    data = rng.normal(size=shape) * np.exp(rng.normal(size=shape) * 10)
    data.flat[: len(special)] = special
    data = np.asfortranarray(data)
    structure = Structure(Lattice.cubic(4.0), ["Cs"], [[0, 0, 0]])
    path = write_chgcar(tmp_path / "CHGCAR", structure, data)
    text = path.read_bytes()
    grid_line = b"    7    9" + f"{shape[2]:5d}".encode() + b"\n"
    values = text.split(grid_line, 1)[1]
    assert values == _printf_grid(data.ravel(order="F"))
    c_ordered = write_chgcar(tmp_path / "CHGCAR_C", structure, np.ascontiguousarray(data))
    assert c_ordered.read_bytes() == text


def test_read_total_grid_real_vasp_spin_polarised():
    """A real VASP CHGCAR (ISPIN 2, augmentation occupancies, Fortran number format, gzip):
    the total grid equals pymatgen's, and the magnetisation grid after it is not read."""
    from pymatgen.io.vasp import Chgcar

    folder = public_data("pymatgen_core")
    for name in ("CHGCAR.spin.gz", "CHGCAR.nospin.gz"):
        poscar, raw, augmentation = Chgcar.parse_file(str(folder / name))  # rho*V as stored
        assert augmentation["total"]  # the file has them; read_total_grid skips them
        header, grid = read_total_grid(folder / name)
        assert header.grid == raw["total"].shape
        assert header.structure.composition == poscar.structure.composition
        assert np.array_equal(grid, raw["total"])
        assert grid.flags.f_contiguous  # VASP's order, written back without a copy
    buffer = np.empty(48**3)
    _, grid = read_total_grid(folder / "CHGCAR.spin.gz", out=buffer)
    assert np.shares_memory(grid, buffer)


def test_read_total_grid_refuses_truncated_and_wrong_buffer(tmp_path):
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice.cubic(4.0), ["Cs"], [[0, 0, 0]])
    path = write_chgcar(tmp_path / "CHGCAR", structure, np.ones((4, 4, 6)))
    lines = path.read_text().splitlines(keepends=True)
    (tmp_path / "cut").write_text("".join(lines[:-2]))
    with pytest.raises(ValueError, match="truncated: 90 of 96"):
        read_total_grid(tmp_path / "cut")
    with pytest.raises(ValueError, match="buffer of 10 values"):
        read_total_grid(path, out=np.empty(10))


def test_read_total_grid_without_pymatgens_fast_parser(monkeypatch):
    """Older pymatgen (no ``fast_parser``): the numpy fallback reads the same values."""
    import sys

    folder = public_data("pymatgen_core")
    _, fast = read_total_grid(folder / "CHGCAR.spin.gz")
    monkeypatch.setitem(sys.modules, "pymatgen.optimization.fast_parser", None)
    _, slow = read_total_grid(folder / "CHGCAR.spin.gz")
    assert np.array_equal(fast, slow)


def test_poscar_block_reader_matches_pymatgen_on_every_form():
    """The POSCAR block of a volumetric file (read here without pymatgen.io.vasp, for speed) gives
    pymatgen's structure: VASP 6 species with POTCAR hashes, Cartesian coordinates, a negative
    scale (the volume), selective dynamics; a VASP 4 block (no species line) goes to pymatgen."""
    from pymatgen.io.vasp import Poscar

    from dftflow.io.chgcar import parse_poscar_block, poscar_block

    cell = "  4.0 0.0 0.0\n  0.0 4.0 0.0\n  0.0 0.0 9.0\n"
    blocks = [
        "Li hash\n1.0\n" + cell + "Li_sv/8d9c  O/1a2b\n 1 2\nDirect\n0 0 0\n0.5 0.5 0.1\n"
        "0.5 0.5 0.9\n",
        "cart\n1.5\n" + cell + "Pb Br\n1 1\nselective dynamics\nCartesian\n0 0 0 T T T\n"
        "1 1 1 F F F\n",
        "vol\n-288.0\n" + cell + "Cs\n1\nDirect\n0.25 0.25 0.25\n",
    ]
    for text in blocks:
        ours = parse_poscar_block(text)
        theirs = Poscar.from_str(text).structure
        assert [s.symbol for s in ours.species] == [s.symbol for s in theirs.species]
        assert np.allclose(ours.lattice.matrix, theirs.lattice.matrix, atol=1e-12)
        assert np.allclose(ours.cart_coords, theirs.cart_coords, atol=1e-12)
    assert abs(parse_poscar_block(blocks[2]).volume - 288.0) < 1e-9
    theirs = Poscar.from_str(blocks[0]).structure
    written = poscar_block(theirs, "round trip")
    again = Poscar.from_str(written).structure  # pymatgen reads what dftflow writes
    assert np.allclose(again.cart_coords, theirs.cart_coords, atol=1e-12)
    assert [s.symbol for s in again.species] == ["Li", "O", "O"]
    with pytest.raises(ValueError, match="not a POSCAR block"):
        parse_poscar_block("x\n1.0\n" + cell + "Li\n2\nDirect\n0 0 0\n")
