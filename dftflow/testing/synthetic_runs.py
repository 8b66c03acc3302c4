"""Small synthetic VASP-format runs and volumetric files with known answers (test equipment).

A PbBr2-like two-plane slab with a small C/O/H fragment above it, in one tetragonal cell. Densities
are sums of normalised Gaussians on the atoms (VASP's rho*V convention); the complex's density is
the sum of the slab's and the ligand's plus a known dipole: ``+transfer_e`` electrons in a Gaussian
just below the ligand/surface plane and ``-transfer_e`` just above it. The exact charge transfer
across the plane is therefore ``transfer_e`` (up to Gaussian tails, < 1e-6 e with the defaults).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from dftflow.inputs import params
from dftflow.io.chgcar import write_chgcar

A_CELL = 5.9
C_CELL = 24.0


#: Cell of :func:`pbbr2_water_complex`, Angstrom (Br-Br across the x boundary 4.9 A).
PBBR2_WATER_CELL = (10.2, 8.1, 13.5)


def pbbr2_water_complex():  # -> ase.Atoms
    """PbBr2 with a water O bound to Pb: a small closed-shell complex of two fragments.

    Atoms 0-2 are PbBr2, atoms 3-5 the water; one cell for the complex and both fragments (the
    embedded engine's tests and ``benchmarks/check_engine_contract.py`` compute it with GPAW).
    """
    from ase import Atoms

    pb = np.array([5.1, 4.05, 6.0])
    return Atoms(
        "PbBr2OH2",
        positions=[
            pb,
            pb + [2.65, 0.0, -0.6],
            pb + [-2.65, 0.0, -0.6],
            pb + [0.0, 0.0, 2.6],
            pb + [0.76, 0.0, 3.2],
            pb + [-0.76, 0.0, 3.2],
        ],
        cell=list(PBBR2_WATER_CELL),
        pbc=True,
    )


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


def write_synthetic_run(
    directory: str | Path,
    structure: Structure,
    *,
    energy_eV: float,
    trap_atom: int | None = None,
    trap_energy_eV: float = 1.1,
    gap_eV: float = 2.3,
    density_rho_v: np.ndarray | None = None,
    converged: bool = True,
    nk: int = 4,
    trap_occupation: float = 0.0,
    ligand_indices: Sequence[int] | None = None,
) -> Path:
    """Write a pymatgen-readable VASP run (vasprun.xml with DOS and projections, OUTCAR, CHGCAR).

    Model band structure: one valence band per atom below 0 eV (delocalised over all non-ligand
    atoms; ligand atoms get their own localised bands at -4 eV), conduction bands from ``gap_eV``,
    and, when ``trap_atom`` is given, one band at ``trap_energy_eV`` localised on that atom (a trap)
    with occupation ``trap_occupation`` (a smeared, partly filled trap when 0 < occupation < 1).
    Eigenvalues are written by :func:`dftflow.testing.vasp_writer.write_vasp_outputs`.

    ``ligand_indices`` (0-based) are the ligand atoms of the band model; when given they are also
    recorded in ``taskdoc.json`` (the parsed run + ``ligand_indices``, as ``dftflow calc`` writes
    it). Without them the ligand atoms of the model are those of the element rule
    (:func:`dftflow.analysis.ligand_split.element_rule_indices`) and no TaskDoc is written.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    from dftflow.analysis.ligand_split import element_rule_indices
    from dftflow.engines.base import ElectronicResult
    from dftflow.testing.vasp_writer import write_vasp_outputs

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n = len(structure)
    lig = np.zeros(n, dtype=bool)
    lig[
        list(ligand_indices)
        if ligand_indices is not None
        else element_rule_indices([s.specie.symbol for s in structure])
    ] = True
    rng = np.random.default_rng(7)
    bands_e, bands_w = [], []
    host = np.where(~lig)[0]
    for i in range(max(len(host), 1)):
        for kind in ("valence", "conduction"):
            w = np.zeros(n)
            w[host] = 1.0 / max(len(host), 1)
            base = -2.0 + 2.0 * i / max(len(host), 1) if kind == "valence" else gap_eV + 0.3 * i
            bands_e.append(base)
            bands_w.append(w)
    for i in np.where(lig)[0]:
        w = np.zeros(n)
        w[i] = 1.0
        bands_e.append(-4.0 - 0.1 * (i % 5))
        bands_w.append(w)
    if trap_atom is not None:
        w = np.zeros(n)
        w[trap_atom] = 1.0
        bands_e.append(trap_energy_eV)
        bands_w.append(w)
    order = np.argsort(bands_e)
    e0 = np.array(bands_e)[order]
    w0 = np.array(bands_w)[order]
    kd = np.linspace(0, 0.1, nk)
    eig = e0[None, :] + 0.5 * kd[:, None] + rng.normal(0, 0.01, (nk, len(e0)))  # small dispersion
    occ = (eig < 0.5).astype(float)  # valence and ligand bands full; trap and conduction empty
    if trap_atom is not None:
        trap_band = int(np.nonzero(order == len(bands_e) - 1)[0][0])
        occ[:, trap_band] = trap_occupation
    proj = np.zeros((1, nk, len(e0), n, 9))
    proj[0, :, :, :, 0] = 0.6 * w0[None, :, :]
    proj[0, :, :, :, 2] = 0.3 * w0[None, :, :]
    result = ElectronicResult(
        atoms=AseAtomsAdaptor.get_atoms(structure),
        energy_eV=energy_eV,
        free_energy_eV=energy_eV - 0.001,
        forces_eV_per_A=np.zeros((n, 3)),
        efermi_eV=float(eig[occ > 0.5].max()) + 0.05,
        eigenvalues_eV=eig[None],
        occupations=occ[None],
        kpoints=np.column_stack([kd, kd, np.zeros(nk)]),
        kweights=np.full(nk, 1.0 / nk),
        projections=proj,
        density=None if density_rho_v is None else density_rho_v / structure.volume,
        converged_electronic=converged,
        converged_ionic=converged,
    )
    incar = {
        "ENCUT": params.ENCUT_EV,
        "EDIFF": params.EDIFF_EV,
        "ISMEAR": 0,
        "SIGMA": params.SIGMA_EV,
        "LORBIT": 11,
        "NEDOS": 601,
        "ISPIN": 1,
        "NSW": 0,
        "IBRION": -1,
    }
    write_vasp_outputs(
        directory, result, incar=incar, kpoints=(2, 2, 1), generator="dftflow-synthetic"
    )
    if ligand_indices is not None:
        from dftflow.parse.vasp import parse_directory

        doc = parse_directory(directory).with_ligand_indices(sorted(int(i) for i in ligand_indices))
        doc.to_json_file(directory / "taskdoc.json")
    return directory


def write_band_run(
    directory: str | Path,
    structure: Structure,
    bands,  # dftflow.electronic.BandData
    *,
    energy_eV: float = -10.0,
    sigma_eV: float = 0.05,
) -> Path:
    """Write given band data as a VASP static run (vasprun.xml, OUTCAR, DOSCAR ...).

    For hand-made band structures: a host run's eigenvalues shifted rigidly, a defect level added,
    a Fermi level moved. LORBIT is 11 when ``bands.projections`` is given, else 0 (no projections,
    as in many real defect calculations); ISPIN follows the band data.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    from dftflow.engines.base import ElectronicResult
    from dftflow.testing.vasp_writer import write_vasp_outputs

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n = len(structure)
    nk = bands.eigenvalues_eV.shape[1]
    kpoints = bands.kpoints if bands.kpoints is not None else np.zeros((nk, 3))
    result = ElectronicResult(
        atoms=AseAtomsAdaptor.get_atoms(structure),
        energy_eV=energy_eV,
        free_energy_eV=energy_eV,
        forces_eV_per_A=np.zeros((n, 3)),
        efermi_eV=bands.efermi_eV,
        eigenvalues_eV=bands.eigenvalues_eV,
        occupations=bands.occupations,
        kpoints=np.asarray(kpoints, float),
        kweights=bands.kweights,
        projections=bands.projections,
    )
    incar = {
        "ISMEAR": 0,
        "SIGMA": sigma_eV,
        "LORBIT": 0 if bands.projections is None else 11,
        "NEDOS": 601,
        "ISPIN": bands.nspin,
        "NSW": 0,
        "IBRION": -1,
    }
    write_vasp_outputs(
        directory, result, incar=incar, kpoints="explicit", generator="dftflow-bands"
    )
    return directory
