"""Small synthetic VASP-format volumetric files with known answers (tests and demos).

A PbBr2-like two-plane slab with a small C/O/H fragment above it, in one tetragonal cell. Densities
are sums of normalised Gaussians on the atoms (VASP's rho*V convention); the complex's density
is the
sum of the slab's and the ligand's plus a known dipole: ``+transfer_e`` electrons in a Gaussian just
below the ligand/surface plane and ``-transfer_e`` just above it. The exact charge transfer
across the
plane is therefore ``transfer_e`` (up to Gaussian tails, < 1e-6 e with the defaults).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from dftflow.io.chgcar import write_chgcar

A_CELL = 5.9
C_CELL = 24.0


def slab_and_ligand_structures() -> tuple[Structure, Structure, Structure]:
    """(complex, slab, ligand) in one cell; slab planes at z = 8 and 11 A, ligand from 14 A."""
    lattice = Lattice.tetragonal(A_CELL, C_CELL)
    slab_species = ["Pb", "Br", "Br", "Cs", "Br"]
    slab_cart = [[0, 0, 11.0], [2.95, 0, 11.0], [0, 2.95, 11.0], [2.95, 2.95, 8.0], [0, 0, 8.0]]
    lig_species = ["O", "O", "C", "C", "H"]
    lig_cart = [
        [1.0, 0.0, 14.0],
        [-1.0, 0.0, 14.0],
        [0.0, 0.0, 14.8],
        [0.0, 0.0, 16.3],
        [0.0, 1.0, 16.7],
    ]
    slab = Structure(
        lattice,
        slab_species,
        np.mod(slab_cart, [A_CELL, A_CELL, C_CELL]),
        coords_are_cartesian=True,
    )
    ligand = Structure(
        lattice, lig_species, np.mod(lig_cart, [A_CELL, A_CELL, C_CELL]), coords_are_cartesian=True
    )
    complex_ = Structure(
        lattice,
        slab_species + lig_species,
        np.mod(slab_cart + lig_cart, [A_CELL, A_CELL, C_CELL]),
        coords_are_cartesian=True,
    )
    return complex_, slab, ligand


def gaussian_rho_v(
    structure: Structure,
    grid: tuple[int, int, int],
    centres_cart: np.ndarray,
    charges_e: np.ndarray,
    sigma_A: float,
) -> np.ndarray:
    """rho*V on ``grid`` for periodic Gaussians of ``charges_e`` electrons at ``centres_cart``."""
    lat = np.asarray(structure.lattice.matrix)
    volume = abs(np.linalg.det(lat))
    axes = [np.arange(n) / n for n in grid]
    fx, fy, fz = np.meshgrid(*axes, indexing="ij")
    frac = np.stack([fx, fy, fz], axis=-1)
    rho = np.zeros(grid)
    inv = np.linalg.inv(lat)
    for centre, q in zip(np.atleast_2d(centres_cart), np.atleast_1d(charges_e), strict=True):
        d = frac - (centre @ inv)
        d -= np.round(d)
        r2 = np.sum((d @ lat) ** 2, axis=-1)
        g = np.exp(-r2 / (2 * sigma_A**2))
        g *= q / (g.sum() * volume / g.size)  # normalise on the grid: sum(rho) dV = q
        rho += g
    return rho * volume


def write_chgdiff_triple(
    directory: str | Path, *, transfer_e: float = 0.05, grid: tuple[int, int, int] = (20, 20, 80)
) -> dict:
    """Write AB/, A/, B/ CHGCARs under ``directory``; return paths and the known answers."""
    directory = Path(directory)
    complex_, slab, ligand = slab_and_ligand_structures()
    valence = {"Pb": 4.0, "Br": 7.0, "Cs": 9.0, "O": 6.0, "C": 4.0, "H": 1.0}
    rho_slab = gaussian_rho_v(
        slab, grid, slab.cart_coords, [valence[s.specie.symbol] for s in slab], 0.9
    )
    rho_lig = gaussian_rho_v(
        ligand, grid, ligand.cart_coords, [valence[s.specie.symbol] for s in ligand], 0.7
    )
    dipole = gaussian_rho_v(
        complex_,
        grid,
        np.array([[1.5, 1.5, 11.4], [1.5, 1.5, 13.8]]),
        np.array([transfer_e, -transfer_e]),
        0.25,
    )
    rho_ab = rho_slab + rho_lig + dipole
    paths = {}
    for name, struct, rho in (
        ("AB", complex_, rho_ab),
        ("A", slab, rho_slab),
        ("B", ligand, rho_lig),
    ):
        (directory / name).mkdir(parents=True, exist_ok=True)
        paths[name] = write_chgcar(directory / name / "CHGCAR", struct, rho)
    return {
        "paths": paths,
        "transfer_e": transfer_e,
        "plane_z_A": 0.5 * (11.0 + 14.0),
        "grid": grid,
        "structures": (complex_, slab, ligand),
    }
