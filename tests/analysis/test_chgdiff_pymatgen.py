"""Δρ against pymatgen: the written CHGCAR equals pymatgen's own ``linear_add`` result, and the
three grids are never all in memory (issue 14, item 2: at most 4 grids at any size).

The inputs are written as VASP writes them: augmentation occupancies after each grid, and a
spin-polarised complex (a magnetisation grid after the total one), which Δρ does not need.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pymatgen.io.vasp import Chgcar

import dftflow.io.chgcar as chgcar_io
from dftflow.analysis.chgdiff import charge_density_difference
from dftflow.io.chgcar import write_chgcar
from dftflow.testing import synthetic_runs as testdata

#: Large enough (3.7 MB a grid) that the reader's fixed ~2 MB buffer is not what is measured.
GRID = (48, 48, 200)


def _append_augmentation(path: Path, n_atoms: int) -> None:
    """Append VASP-style augmentation occupancies (what a real CHGCAR has after each grid)."""
    rng = np.random.default_rng(n_atoms)
    with open(path, "a") as fh:
        for atom in range(1, n_atoms + 1):
            fh.write(f"augmentation occupancies {atom:3d}  12\n")
            values = rng.normal(size=12)
            for k in range(0, 12, 5):
                fh.write("".join(f"{v:16.7E}" for v in values[k : k + 5]) + "\n")


@pytest.fixture(scope="module")
def triple(tmp_path_factory):
    directory = tmp_path_factory.mktemp("chgdiff_pmg")
    made = testdata.write_chgdiff_triple(directory, grid=GRID)
    for key, structure in zip(("AB", "A", "B"), made["structures"], strict=True):
        _append_augmentation(made["paths"][key], len(structure))
    return made


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))


@pytest.mark.filterwarnings("ignore:Structures are different")
def test_written_delta_equals_pymatgen_linear_add(triple, tmp_path):
    p = triple["paths"]
    ab, a, b = (Chgcar.from_file(str(p[k])) for k in ("AB", "A", "B"))
    assert ab.data_aug["total"]  # the inputs carry augmentation occupancies, as VASP writes
    expected = ab.linear_add(a, -1.0).linear_add(b, -1.0)  # pymatgen's own pipeline
    expected.write_file(tmp_path / "CHGCAR_pymatgen")
    result = charge_density_difference(p["AB"], p["A"], p["B"], output=tmp_path / "DELTA")
    written = Chgcar.from_file(str(tmp_path / "DELTA"))
    theirs = Chgcar.from_file(str(tmp_path / "CHGCAR_pymatgen"))
    volume = ab.structure.volume
    assert written.structure == expected.structure
    assert written.dim == expected.dim == GRID
    assert relative_difference(written.data["total"], expected.data["total"]) <= 1e-10
    assert relative_difference(written.data["total"], theirs.data["total"]) <= 1e-10
    assert not written.data_aug.get("total")  # like pymatgen's linear_add: no augmentation
    average = expected.get_average_along_axis(2) / volume  # pymatgen's Chgcar holds rho*V
    assert np.allclose(
        result.planar_average_e_per_A3, average, rtol=1e-10, atol=1e-12 * np.abs(average).max()
    )
    assert result.total_charge_e == pytest.approx(expected.data["total"].mean(), abs=1e-12)
    assert result.max_accumulation_e_per_A3 == pytest.approx(expected.data["total"].max() / volume)


def test_spin_polarised_complex_uses_the_total_grid(triple, tmp_path):
    p = triple["paths"]
    ab = Chgcar.from_file(str(p["AB"]))
    rho_v = ab.data["total"]  # pymatgen's Chgcar holds VASP's rho*V
    spin = tmp_path / "CHGCAR_spin"
    write_chgcar(spin, ab.structure, rho_v, diff=0.3 * rho_v)
    _append_augmentation(spin, len(ab.structure))
    plain = charge_density_difference(p["AB"], p["A"], p["B"])
    res = charge_density_difference(spin, p["A"], p["B"], output=tmp_path / "DELTA")
    assert np.allclose(res.planar_average_e_per_A3, plain.planar_average_e_per_A3, atol=1e-12)
    assert res.charge_transfer_e == pytest.approx(triple["transfer_e"], abs=2e-3)
    assert Chgcar.from_file(str(tmp_path / "DELTA")).data.keys() == {"total"}


def test_delta_holds_at_most_two_grids_in_memory(triple, tmp_path, monkeypatch):
    """Peak traced memory of the whole Δρ (read three, subtract, average, write) ≤ 3 grids.

    Today's pymatgen route holds three Chgcar objects and their differences (≥ 6 grids). The
    writer formats in chunks; a small chunk keeps its temporaries small at this small grid as
    its default chunk does on a production grid (where the benchmark measures the peak RSS).
    """
    monkeypatch.setattr(chgcar_io, "VALUES_PER_CHUNK", 2_000, raising=False)
    p = triple["paths"]
    grid_bytes = int(np.prod(GRID)) * 8
    tracemalloc.start()
    try:
        charge_density_difference(p["AB"], p["A"], p["B"], output=tmp_path / "DELTA")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 3 * grid_bytes, f"peak {peak / grid_bytes:.1f} grids"
