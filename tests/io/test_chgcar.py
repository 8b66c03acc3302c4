"""The fast row formatter writes exactly what numpy's savetxt writes (CHGCAR, vasprun, DOSCAR)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from dftflow.io.chgcar import ROWS_PER_CHUNK, format_rows


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
