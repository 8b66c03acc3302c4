"""GPAW (PAW-PBE, LCAO) single points for the embedded engine -> :class:`ElectronicResult`.

What is computed, and the approximations (stated in every TaskDoc's metadata):

* energy: GPAW's total energy extrapolated to zero smearing width (``results["energy"]``; the
  analogue of VASP's e_0 "energy sigma->0"); the free energy (``results["free_energy"]``) is VASP's
  F/TOTEN. GPAW energies are relative to its isolated-atom reference; only differences (E_ads) mean
  anything, exactly as for VASP's energies relative to its POTCAR atoms. Never mix the two codes.
* eigenvalues, occupations (0..1 per band and spin, VASP's convention), k-points and weights of the
  irreducible wedge.
* projections: Loewdin populations in the atomic-orbital basis, |S^1/2 C|^2, summed over the radial
  functions (zeta and polarisation) of each (atom, l, m). GPAW orders real spherical harmonics
  y, z, x for l=1 and xy, yz, 3z2-r2, xz, x2-y2 for l=2, which is VASP's LORBIT=11 order
  (s, py, pz, px, dxy, dyz, dz2, dxz, dx2); f functions are dropped. Unlike VASP's projections on
  PAW spheres (which leave the interstitial out) they are non-negative and sum to 1 per band.
* density: GPAW's pseudo valence density on the ``gpts`` grid (e/Angstrom^3), which integrates to
  the number of valence electrons of the GPAW setups (Cs 9, Pb 14, Br 7, C 4, O 6, H 1 -- the
  same counts as VASP's Cs_sv, Pb_d, Br, C, O, H POTCARs). It is not the all-electron density
  (no AECCAR: GPAW's all-electron density took 172 s for the slab, MEASURED.md).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from dftflow.engines.base import ElectronicResult
from dftflow.engines.embedded_settings import grid_points
from dftflow.errors import EngineError
from dftflow.structures.defects import undercoordinated_indices
from dftflow.structures.geometry import VACUUM_THRESHOLD_A, vacuum_width_A
from dftflow.structures.ligand_atoms import ligand_indices_of

HARTREE_EV = 27.211386245988

INSTALL_HINT = (
    'install it with `bash scripts/install.sh` or CC=g++ LDSHARED="g++ -shared" '
    'pip install "dftflow[embedded]"'
)

#: A vacuum gap wider than this along c makes a cell slab-like (non-periodic z, dipole layer), A.
SLAB_VACUUM_MIN_A = VACUUM_THRESHOLD_A  # one threshold (structures.geometry)

#: Atoms that make up the perovskite; any other atom belongs to a ligand (used to seed spin).
PEROVSKITE_ELEMENTS = frozenset({"Cs", "Pb", "Br"})


def import_gpaw():  # -> module
    """The ``gpaw`` module, or a one-line EngineError naming the install command."""
    try:
        import gpaw
    except ImportError as exc:
        raise EngineError(
            f"embedded engine needs GPAW, which is not importable: {INSTALL_HINT}"
        ) from exc
    return gpaw


def setup_valence_electrons(symbols: list[str], xc: str = "PBE") -> dict[str, float]:
    """Valence electrons of GPAW's PAW setup of each element (``Z`` minus frozen core)."""
    from gpaw.setup_data import SetupData

    out: dict[str, float] = {}
    for symbol in sorted(set(symbols)):
        data = SetupData(symbol, xc, readxml=True)
        out[symbol] = float(data.Nv)
    return out


def check_elements(symbols: list[str], basis: str, xc: str = "PBE") -> None:
    """Refuse elements without a GPAW PAW setup or basis file (one-line EngineError)."""
    gpaw = import_gpaw()
    base = basis.split("(")[-1].rstrip(")") if "(" in basis else basis
    missing_setup, missing_basis = [], []
    for symbol in sorted(set(symbols)):
        names = [f"{symbol}.{xc}", f"{symbol}.{xc}.gz"]
        bnames = [f"{symbol}.{base}.basis", f"{symbol}.{base}.basis.gz"]
        paths = [Path(p) for p in gpaw.setup_paths]
        if not any((p / n).is_file() for p in paths for n in names):
            missing_setup.append(symbol)
        if not any((p / n).is_file() for p in paths for n in bnames):
            missing_basis.append(symbol)
    if missing_setup:
        raise EngineError(
            f"GPAW has no {xc} PAW setup for {', '.join(missing_setup)} "
            "(install the gpaw-data sets or choose other elements)"
        )
    if missing_basis:
        raise EngineError(
            f"GPAW has no {base} LCAO basis for {', '.join(missing_basis)}; "
            "choose another basis setting"
        )


def is_slab_like(atoms: Atoms) -> bool:
    """Whether the system is treated as non-periodic along z (slab, complex, molecule in slab cell).

    A cell is slab-like when it is not periodic along z or when its atoms leave a vacuum gap of
    more than VACUUM_THRESHOLD_A (5 Angstrom) along c (the slab cells of the study).
    """
    if not atoms.pbc[2]:
        return True
    if len(atoms) == 0:
        return False
    return vacuum_width_A(atoms, 2) > SLAB_VACUUM_MIN_A


@dataclass
class GpawRun:
    """A finished GPAW single point: the result, the GPAW parameters used and timings."""

    result: ElectronicResult
    gpaw_parameters: dict[str, Any]
    gpts: tuple[int, int, int]
    kpts: tuple[int, int, int]
    spin_polarized: bool
    scf_iterations: int
    wall_time_s: float
    nelect: float
    zvals: dict[str, float]
    spin_note: str | None = None  # how the spin treatment was chosen (spin_polarized "auto")
    restricted_scf_iterations: int | None = None  # a restricted SCF redone spin-polarised
    restricted_wall_time_s: float | None = None  # ... and its wall time (within wall_time_s)


def n_valence_electrons(
    symbols: list[str], zvals: Mapping[str, float], charge: float = 0.0
) -> float:
    """Number of valence electrons of a neutral (or charged) system with these setups."""
    return float(sum(zvals[s] for s in symbols) - charge)


def initial_magmoms(
    symbols: list[str],
    ligand_indices: list[int] | None = None,
    undercoordinated: list[int] | None = None,
) -> np.ndarray:
    """One unpaired electron (1 mu_B) spread over the atoms that should carry it.

    A surface defect's under-coordinated Pb (``undercoordinated``: the defect's own record,
    :func:`dftflow.structures.defects.undercoordinated_indices`) first: the excess electron of a
    Br vacancy sits there, with or without a ligand beside it. Else the ligand atoms (the
    builder's ``ligand_indices``: a radical adsorbate); a structure without them (a bare
    molecule, a user's file) uses every atom that is not Cs, Pb or Br, and then every atom.
    """
    if undercoordinated:
        idx = [int(i) for i in undercoordinated]
    else:
        if ligand_indices is None:
            ligand_indices = [i for i, s in enumerate(symbols) if s not in PEROVSKITE_ELEMENTS]
        idx = list(ligand_indices) or list(range(len(symbols)))
    mags = np.zeros(len(symbols))
    mags[idx] = 1.0 / len(idx)
    return mags


def gpaw_parameters(
    atoms: Atoms, settings: Mapping[str, Any], spin_polarized: bool
) -> dict[str, Any]:
    """The GPAW calculator keywords for ``atoms`` under ``settings`` (pure function)."""
    slab_like = is_slab_like(atoms)
    gpts = grid_points(atoms.cell.lengths(), settings["grid_spacing_A"])
    kpts = tuple(settings["kpts_slab"] if slab_like else settings["kpts_bulk"])
    convergence: dict[str, Any] = {
        "density": settings["scf_density"],
        "eigenstates": settings["scf_eigenstates"],
    }
    if settings.get("scf_energy_eV") is not None:
        convergence["energy"] = {
            "name": "energy",
            "tol": float(settings["scf_energy_eV"]),
            "relative": False,
        }
    else:
        convergence["energy"] = settings["scf_energy_eV_per_electron"]
    par: dict[str, Any] = {
        "mode": "lcao",
        "basis": settings["basis"],
        "xc": settings["xc"],
        "gpts": list(gpts),
        "kpts": {"size": list(kpts), "gamma": False},
        "occupations": {"name": settings["smearing"], "width": settings["smearing_width_eV"]},
        "convergence": convergence,
        "maxiter": settings["scf_maxiter"],
        "spinpol": bool(spin_polarized),
        "symmetry": {} if settings["symmetry"] else "off",
    }
    if settings.get("mixer"):
        par["mixer"] = dict(settings["mixer"])
    if slab_like and settings["dipole_correction"]:
        par["poissonsolver"] = {"dipolelayer": "xy"}
    return par


def _orbital_index_map(calc, natoms: int) -> tuple[np.ndarray, np.ndarray]:
    """For each basis function M: its atom and its VASP LORBIT=11 orbital index (-1: dropped)."""
    atom_M, orb_M = [], []
    for a, setup in enumerate(calc.setups):
        for bf in setup.basis_functions_J:
            for m in range(2 * bf.l + 1):
                atom_M.append(a)
                orb_M.append(bf.l * bf.l + m if bf.l <= 2 else -1)
    if len(set(atom_M)) != natoms:
        raise EngineError("GPAW basis functions do not cover every atom; cannot project the DOS")
    return np.asarray(atom_M), np.asarray(orb_M)


def loewdin_weights(c_nm: np.ndarray, s_mm: np.ndarray) -> np.ndarray:
    """Loewdin populations |(S^1/2 c_n)_M|^2 per band n and basis function M (rows sum to 1).

    ``s_mm`` may hold only its lower triangle (GPAW's storage): it is read as Hermitian from it.
    """
    from scipy.linalg import eigh

    w, v = eigh(s_mm, lower=True)
    s_half = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.conj().T
    d = c_nm @ s_half.T
    return np.abs(d) ** 2


def _projections(calc, natoms: int, nspin: int, nk: int, nbands: int) -> np.ndarray:
    atom_M, orb_M = _orbital_index_map(calc, natoms)
    proj = np.zeros((nspin, nk, nbands, natoms, 9))
    keep = orb_M >= 0
    for wfs in calc.dft.ibzwfs:
        c_nm = np.asarray(wfs.C_nM.data)
        s_mm = np.asarray(wfs.S_MM.data)
        weights = loewdin_weights(c_nm, s_mm)  # (nbands, nao)
        target = proj[wfs.spin, wfs.k]
        np.add.at(
            target,
            (slice(None), atom_M[keep], orb_M[keep]),
            weights[:, keep],
        )
    return proj


#: An odd electron whose fractionally occupied states spread over at least this many atoms
#: (participation number) is a delocalised band: the spin-restricted result is kept.
DELOCALISED_MIN_ATOMS = 8.0


def odd_electron_atoms(
    occupations: np.ndarray, kweights: np.ndarray, projections: np.ndarray
) -> tuple[np.ndarray, float]:
    """Where the odd electron of a spin-restricted result sits, and over how many atoms.

    Parameters
    ----------
    occupations
        (1, nk, nbands), 0..1 per band (VASP's convention).
    kweights
        (nk,) k-point weights (any normalisation).
    projections
        (1, nk, nbands, natoms, norb) Loewdin populations (each band sums to 1 over atoms).

    Returns
    -------
    (share, n_atoms)
        ``share`` (natoms,) sums to 1: the fractionally occupied states' weight per atom, each
        state counted by ``4 f (1 - f)`` (1 at half occupation, 0 when full or empty) times its
        k weight; ``n_atoms`` = 1 / sum(share**2), the participation number (1: one atom; N: N
        atoms equally). No fractional occupation at all gives (zeros, 0.0).
    """
    f = np.clip(np.asarray(occupations, float)[0], 0.0, 1.0)  # (nk, nb)
    w = 4.0 * f * (1.0 - f) * (np.asarray(kweights, float) / np.sum(kweights))[:, None]
    per_atom = np.einsum("kn,knao->a", w, np.asarray(projections, float)[0])
    total = per_atom.sum()
    if total < 1e-8:
        return np.zeros(per_atom.shape), 0.0
    share = per_atom / total
    return share, float(1.0 / np.sum(share**2))


def _gpaw_scf(gpaw, work: Atoms, settings: Mapping[str, Any], spin: bool, charge: float, directory):
    """One GPAW SCF of ``work`` -> (calc, energy e_0, free energy, forces or None)."""
    par = gpaw_parameters(work, settings, spin)
    if not spin:
        work.set_initial_magnetic_moments(None)
    try:
        calc = gpaw.GPAW(**par, charge=charge, txt=str(Path(directory) / "gpaw.txt"))
        work.calc = calc
        energy = float(work.get_potential_energy())
        free = float(work.get_potential_energy(force_consistent=True))
        # The force evaluation is a sixth of an LCAO single point's CPU and E_ads, the DOS and
        # the density do not use it (benchmarks/bench_gpaw_levers_RESULTS.md): optional.
        forces = np.asarray(work.get_forces()) if settings.get("static_forces", True) else None
    except gpaw.KohnShamConvergenceError as exc:
        raise EngineError(
            f"GPAW SCF of {work.get_chemical_formula()} did not converge in "
            f"{settings['scf_maxiter']} iterations (raise scf_maxiter or check the structure)"
        ) from exc
    except (ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EngineError(f"GPAW refused {work.get_chemical_formula()}: {msg}") from exc
    return calc, energy, free, forces


def _bands(calc, natoms: int) -> tuple:
    """(nspin, ibz k-points, k weights, eigenvalues eV, occupations 0..1, projections)."""
    nspin = calc.get_number_of_spins()
    ibzk = np.asarray(calc.get_ibz_k_points())
    kweights = np.asarray(calc.get_k_point_weights(), dtype=float)
    nk = len(ibzk)
    nbands = calc.get_number_of_bands()
    eig = np.zeros((nspin, nk, nbands))
    occ = np.zeros((nspin, nk, nbands))
    for wfs in calc.dft.ibzwfs:
        eig[wfs.spin, wfs.k] = np.asarray(wfs.eig_n) * HARTREE_EV
        occ[wfs.spin, wfs.k] = np.asarray(wfs.occ_n)
    projections = _projections(calc, natoms, nspin, nk, nbands)
    return nspin, ibzk, kweights, eig, occ, projections


def run_gpaw_static(
    atoms: Atoms,
    settings: Mapping[str, Any],
    directory: str | Path,
    *,
    charge: float = 0.0,
) -> GpawRun:
    """GPAW LCAO single point of ``atoms`` (positions as given) with ``settings``.

    Parameters
    ----------
    atoms
        The system; slab-like cells (see :func:`is_slab_like`) are made non-periodic along z,
        get the dipole correction and ``kpts_slab``; others ``kpts_bulk``.
    settings
        Effective engine settings (:data:`DEFAULT_SETTINGS` merged with overrides).
    directory
        Where GPAW's text log ``gpaw.txt`` is written.
    charge
        Net charge (e), e.g. for an anion reference.

    Raises
    ------
    EngineError
        Missing setups/basis, SCF not converged in ``scf_maxiter`` iterations, atoms too close to a
        non-periodic boundary (one line each).
    """
    gpaw = import_gpaw()
    symbols = atoms.get_chemical_symbols()
    check_elements(symbols, settings["basis"], settings["xc"])
    zvals = setup_valence_electrons(symbols, settings["xc"])
    nelect = n_valence_electrons(symbols, zvals, charge)
    odd = round(nelect) % 2 == 1

    work = atoms.copy()
    work.calc = None
    slab_like = is_slab_like(work)
    if slab_like:
        work.pbc = [True, True, False]
    directory = Path(directory)
    mode = settings["spin_polarized"]
    # restricted first only for a slab (perovskite atoms present); an odd-electron molecule is a
    # radical, its electron localised: spin-polarised straight away
    has_slab = any(sym in PEROVSKITE_ELEMENTS for sym in symbols)
    # a surface defect's odd electron (a Br vacancy's, with or without a ligand beside it) is
    # spin-polarised straight away, seeded on the under-coordinated Pb: the trap question needs
    # the spin-polarised state, and a restricted SCF cannot localise it (the relaxed V_Br slab's
    # restricted odd electron spread over 12.8 atoms)
    at_defect = bool(undercoordinated_indices(atoms))  # an all-zero record: no defect
    check_first = mode == "auto" and odd and slab_like and has_slab and not at_defect
    spin = False if check_first else (odd if mode in ("auto", "odd") else bool(mode))
    spin_note = None
    restricted_iterations = None
    restricted_wall = None
    t0 = time.perf_counter()
    if check_first:
        # An odd electron on a slab: spin-restricted first; kept when the fractionally occupied
        # states are a delocalised band (no moment forms: the acetate-radical complex's
        # spin-polarised SCF ends at 0.0095 muB, 0.27 meV from the restricted energy, for 1.8x
        # the CPU; benchmarks/bench_gpaw_levers_RESULTS.md), redone spin-polarised, with the
        # moment seeded where the electron sits, when they are localised (a radical left on the
        # ligand).
        calc, energy, free, forces = _gpaw_scf(gpaw, work, settings, False, charge, directory)
        bands = _bands(calc, len(work))
        atoms_share, n_atoms = odd_electron_atoms(bands[4], bands[2], bands[5])
        if n_atoms >= DELOCALISED_MIN_ATOMS:
            spin_note = (
                f"odd electron count computed spin-restricted: the fractionally occupied states "
                f"spread over {n_atoms:.1f} atoms (a delocalised band, >= "
                f"{DELOCALISED_MIN_ATOMS:g}: no moment forms)"
            )
        else:
            restricted_iterations = int(calc.get_number_of_iterations())
            restricted_wall = time.perf_counter() - t0
            (directory / "gpaw.txt").replace(directory / "gpaw-restricted.txt")
            spin = True
            work.set_initial_magnetic_moments(atoms_share)
            spin_note = (
                f"spin-polarised: the spin-restricted SCF put the odd electron on "
                f"{n_atoms:.1f} atoms (localised, < {DELOCALISED_MIN_ATOMS:g}); moment seeded "
                "there (restricted log: gpaw-restricted.txt)"
            )
    elif spin:
        work.set_initial_magnetic_moments(
            initial_magmoms(symbols, ligand_indices_of(atoms), undercoordinated_indices(atoms))
        )
    if spin:
        calc, energy, free, forces = _gpaw_scf(gpaw, work, settings, True, charge, directory)
        bands = _bands(calc, len(work))
        if mode == "odd":
            spin_note = "spin-polarised: odd electron count (spin_polarized: odd)"
        elif mode == "auto" and at_defect:
            spin_note = (
                "spin-polarised: odd electron count at a surface defect (moment seeded on the "
                "under-coordinated Pb)"
            )
        elif mode == "auto" and not check_first:
            spin_note = "spin-polarised: odd electron count, no slab (a radical)"
    elif not check_first:
        calc, energy, free, forces = _gpaw_scf(gpaw, work, settings, False, charge, directory)
        bands = _bands(calc, len(work))
    par = gpaw_parameters(work, settings, spin)
    wall = time.perf_counter() - t0
    nspin, ibzk, kweights, eig, occ, projections = bands
    density = magnetization = None
    if settings["write_density"]:
        if nspin == 2:
            up = np.asarray(calc.get_pseudo_density(spin=0))
            down = np.asarray(calc.get_pseudo_density(spin=1))
            density, magnetization = up + down, up - down
        else:
            density = np.asarray(calc.get_pseudo_density())
    niter = int(calc.get_number_of_iterations())
    final = atoms.copy()
    final.calc = None
    result = ElectronicResult(
        atoms=final,
        energy_eV=energy,
        free_energy_eV=free,
        forces_eV_per_A=forces,
        efermi_eV=float(calc.get_fermi_level()),
        eigenvalues_eV=eig,
        occupations=occ,
        kpoints=ibzk,
        kweights=kweights / kweights.sum(),
        projections=projections,
        density=density,
        magnetization_density=magnetization,
        nelect=nelect,
        ionic_steps=[
            {
                "structure": final,
                "e_0_eV": energy,
                "free_energy_eV": free,
                "forces_eV_per_A": forces,
            }
        ],
        electronic_steps_per_ionic=[niter],
        converged_electronic=True,
        converged_ionic=True,
        generator="dftflow-embedded (GPAW LCAO)",
    )
    gpts = tuple(int(n) for n in par["gpts"])
    with contextlib.suppress(AttributeError):
        gpts = tuple(int(n) for n in calc.get_number_of_grid_points())
    return GpawRun(
        result=result,
        gpaw_parameters=par,
        gpts=gpts,  # type: ignore[arg-type]
        kpts=tuple(par["kpts"]["size"]),  # type: ignore[arg-type]
        spin_polarized=spin,
        scf_iterations=niter,
        spin_note=spin_note,
        restricted_scf_iterations=restricted_iterations,
        restricted_wall_time_s=restricted_wall,
        wall_time_s=wall,
        nelect=nelect,
        zvals=zvals,
    )
