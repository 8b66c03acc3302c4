"""Band data and the DOS built from it: the embedded engine's records, read back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Orbital, Spin

from dftflow.electronic import BandData, complete_dos, read_complete_dos, write_complete_dos
from dftflow.parse.vasp import band_data
from dftflow.testing.real_vasp import real_vasp_dir


def _bands(nspin: int = 1) -> tuple[Structure, BandData]:
    rng = np.random.default_rng(3)
    structure = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nk, nb = 3, 6
    eig = np.sort(rng.normal(0.0, 3.0, (nspin, nk, nb)), axis=2)
    proj = rng.random((nspin, nk, nb, 2, 9))
    proj /= proj.sum(axis=(3, 4), keepdims=True)
    bands = BandData(eig, (eig < 0).astype(float), [1, 2, 1], efermi_eV=0.0, projections=proj)
    return structure, bands


def test_band_data_round_trip(tmp_path):
    _, bands = _bands(nspin=2)
    assert bands.kweights.sum() == pytest.approx(1.0)  # normalised on construction
    back = BandData.load(bands.save(tmp_path / "bands.npz"))
    assert np.array_equal(back.eigenvalues_eV, bands.eigenvalues_eV)
    assert np.array_equal(back.occupations, bands.occupations)
    assert back.efermi_eV == 0.0 and back.nspin == 2
    assert np.allclose(back.projections, bands.projections, atol=1e-7)  # stored as float32
    assert back.atom_projections.shape == (2, 3, 6, 2)


def test_complete_dos_counts_every_state_and_reads_back(tmp_path):
    structure, bands = _bands()
    cdos = complete_dos(structure, bands, sigma_eV=0.1, nedos=2001)
    total = np.trapezoid(cdos.densities[Spin.up], cdos.energies)
    assert total == pytest.approx(2 * 6, rel=1e-3)  # two electrons per band, one spin channel
    site_sum = sum(
        np.trapezoid(d[Spin.up], cdos.energies) for d in cdos.pdos.values() for d in d.values()
    )
    assert site_sum == pytest.approx(total, rel=1e-6)  # projections sum to one per state
    back = read_complete_dos(write_complete_dos(tmp_path / "dos.json.gz", cdos))
    assert np.allclose(back.densities[Spin.up], cdos.densities[Spin.up], atol=1e-6)
    site = back.structure[1]
    assert np.allclose(
        back.pdos[site][Orbital.px][Spin.up],
        cdos.pdos[cdos.structure[1]][Orbital.px][Spin.up],
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="2 atoms"):
        complete_dos(structure * (2, 1, 1), bands, sigma_eV=0.1, nedos=101)


def test_band_data_from_real_vasp_matches_pymatgen():
    from pymatgen.io.vasp import Vasprun

    run = real_vasp_dir("custodian/v541_ispin2_static_lorbit_quirk")
    structure, bands = band_data(run)
    vr = Vasprun(str(run / "vasprun.xml.gz"), parse_projected_eigen=True, parse_potcar_file=False)
    assert bands.nspin == 2 and len(structure) == len(vr.final_structure)
    assert np.allclose(bands.eigenvalues_eV[1], vr.eigenvalues[Spin.down][..., 0])
    assert np.allclose(bands.occupations[0], vr.eigenvalues[Spin.up][..., 1])
    assert bands.projections.shape[3] == len(structure)
    assert bands.efermi_eV == pytest.approx(vr.efermi)
