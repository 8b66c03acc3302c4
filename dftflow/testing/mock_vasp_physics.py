"""Cheap but real physics for the mock VASP: pair potential, tight binding, atomic densities.

Everything is numpy only and runs in well under a second for the paper's 50-atom slabs.

* :class:`PairPotential` - per-element-pair Morse potential with a smooth cosine cutoff (energies in
  eV, forces in eV/Angstrom, stress in eV/Angstrom^3, ASE calculator). Pb-Br and Cs-Br minima sit at
  the cubic CsPbBr3 distances (a = 5.87 Angstrom), the organic bonds at their textbook lengths.
* :func:`tight_binding` - a Hueckel-like orthogonal tight-binding model (Harrison's universal s/p
  hopping ~ 1/d^2 with Slater-Koster angular factors, flat semicore levels for Cs 5s5p and Pb 5d)
  diagonalised on the k-points; gives eigenvalues with a gap, occupations from NELECT and LORBIT=11
  projections per atom and orbital. Under-coordinated surface atoms lose hopping partners and give
  states at different energies than in the bulk (surface states).
* :func:`atomic_density` - a sum of atomic Gaussians on the FFT grid, each normalised to the atom's
  Mulliken population from the tight-binding model, so charge-density differences are non-trivial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers, covalent_radii
from ase.neighborlist import neighbor_list
from scipy.special import erfc

# -------------------------------------------------------------------------------------------------
# pair potential
# -------------------------------------------------------------------------------------------------
#: (D eV, r0 Angstrom, a 1/Angstrom) per unordered element pair.
MORSE: dict[frozenset, tuple[float, float, float]] = {
    frozenset(("Pb", "Br")): (1.00, 2.95, 1.5),
    frozenset(("Cs", "Br")): (0.25, 4.00, 1.2),
    frozenset(("Br",)): (0.03, 4.15, 1.2),
    frozenset(("Pb",)): (0.01, 5.87, 1.0),
    frozenset(("Cs",)): (0.01, 5.87, 1.0),
    frozenset(("Cs", "Pb")): (0.02, 5.09, 1.0),
    frozenset(("C", "H")): (4.30, 1.09, 1.9),
    frozenset(("C",)): (3.60, 1.52, 1.9),
    frozenset(("C", "O")): (4.00, 1.29, 2.0),
    frozenset(("O", "H")): (4.40, 0.97, 2.2),
    frozenset(("O",)): (0.10, 2.80, 1.5),
    frozenset(("H",)): (0.05, 2.40, 1.5),
    frozenset(("Pb", "O")): (0.80, 2.45, 1.5),
    frozenset(("Cs", "O")): (0.30, 3.10, 1.2),
    frozenset(("H", "Br")): (0.60, 1.45, 1.8),
    frozenset(("N", "H")): (4.10, 1.01, 2.0),
    frozenset(("C", "N")): (3.40, 1.47, 1.9),
    frozenset(("Pb", "N")): (0.70, 2.55, 1.5),
}
#: Energy per isolated atom, eV (roughly PBE reference magnitudes, so totals look like VASP's).
ATOM_ENERGY_EV = {"Cs": -0.9, "Pb": -3.7, "Br": -1.6, "C": -9.2, "H": -3.4, "O": -4.9, "N": -8.3}
CUTOFF_A = 6.5
SWITCH_WIDTH_A = 1.0


def morse_parameters(a: str, b: str) -> tuple[float, float, float]:
    """(D, r0, alpha) for a pair; unknown pairs get a weak Morse at 1.25 x covalent radii sum."""
    key = frozenset((a, b))
    if key in MORSE:
        return MORSE[key]
    r0 = 1.25 * (covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])
    return 0.05, float(r0), 1.5


#: Verlet skin (Angstrom) of :class:`PairPotential`'s pair list: the list holds the pairs within
#: CUTOFF_A + SKIN_A and is rebuilt once an atom has moved SKIN_A / 2 or the cell has changed.
SKIN_A = 2.0


class PairPotential(Calculator):
    """Per-pair Morse potential with a cosine switch to zero at :data:`CUTOFF_A`.

    The pairs within the cutoff are exactly those of ``neighbor_list(CUTOFF_A)``: they are taken
    from a Verlet list (cutoff + :data:`SKIN_A`) kept between the steps of a relaxation, because
    rebuilding ASE's neighbour list at every step was most of a mock relaxation's time (measured:
    3 of 9.5 s for a 106-atom complex; the test suite runs hundreds of mock relaxations).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, well_scale: dict[frozenset, float] | None = None, **kwargs) -> None:
        """``well_scale``: element pair -> factor on its well depth D (a second 'model')."""
        super().__init__(**kwargs)
        self.well_scale = dict(well_scale or {})
        self._pairs: tuple | None = None  # (cell, pbc+numbers, positions, i, j, S, params)

    def _parameters(self, a: str, b: str) -> tuple[float, float, float]:
        dep, r0, alpha = morse_parameters(a, b)
        return dep * self.well_scale.get(frozenset((a, b)), 1.0), r0, alpha

    def _pair_list(self, atoms: Atoms) -> tuple[np.ndarray, ...]:
        """(i, j, S, params) of the pairs i < j within CUTOFF_A + SKIN_A (rebuilt when stale)."""
        cell = np.array(atoms.cell)
        pos = atoms.positions
        kinds = np.concatenate([atoms.pbc, atoms.numbers])
        cached = self._pairs
        if (
            cached is None
            or not np.array_equal(cached[0], cell)
            or not np.array_equal(cached[1], kinds)
            or np.max(np.linalg.norm(pos - cached[2], axis=1), initial=0.0) > SKIN_A / 2
        ):
            symbols = atoms.get_chemical_symbols()
            i, j, S = neighbor_list("ijS", atoms, CUTOFF_A + SKIN_A)
            keep = i < j
            i, j, S = i[keep], j[keep], S[keep]
            params = np.array(
                [self._parameters(symbols[a], symbols[b]) for a, b in zip(i, j, strict=True)]
            ).reshape(-1, 3)
            cached = self._pairs = (cell, kinds, pos.copy(), i, j, S, params)
        return cached[3:]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Compute energy (eV), forces (eV/Angstrom) and stress (eV/Angstrom^3)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        symbols = atoms.get_chemical_symbols()
        i, j, S, params = self._pair_list(atoms)
        D = atoms.positions[j] - atoms.positions[i] + S @ np.array(atoms.cell)
        d = np.linalg.norm(D, axis=1)
        within = d < CUTOFF_A
        i, j, d, D, params = i[within], j[within], d[within], D[within], params[within]
        dep, r0, alpha = params[:, 0], params[:, 1], params[:, 2]
        x = np.exp(-alpha * (d - r0))
        v = dep * ((1 - x) ** 2 - 1)
        dv = dep * 2 * alpha * x * (1 - x)
        rs = CUTOFF_A - SWITCH_WIDTH_A
        t = np.clip((d - rs) / SWITCH_WIDTH_A, 0, 1)
        s = 0.5 * (1 + np.cos(np.pi * t))
        ds = np.where(
            (d > rs) & (d < CUTOFF_A), -0.5 * np.pi / SWITCH_WIDTH_A * np.sin(np.pi * t), 0
        )
        e_pair = v * s
        de = dv * s + v * ds  # dE/dr
        energy = float(e_pair.sum()) + sum(ATOM_ENERGY_EV.get(sym, -2.0) for sym in symbols)
        fvec = (de / np.maximum(d, 1e-12))[:, None] * D  # force on i is +dE/dr * D/r (D = rj - ri)
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, i, fvec)
        np.add.at(forces, j, -fvec)
        stress = np.zeros(6)
        if atoms.cell.rank == 3:
            vol = atoms.get_volume()
            sig = (D[:, :, None] * fvec[:, None, :]).sum(axis=0) / vol
            stress = np.array([sig[0, 0], sig[1, 1], sig[2, 2], sig[1, 2], sig[0, 2], sig[0, 1]])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "stress": stress,
        }


# -------------------------------------------------------------------------------------------------
# tight binding
# -------------------------------------------------------------------------------------------------
#: Orbitals per element: (label, LORBIT column 0..8, onsite eV, electrons), s=0, p=1..3, d=4..8.
ORBITALS: dict[str, list[tuple[str, int, float]]] = {
    "Cs": [("5s", 0, -24.0), ("5p", 1, -9.5), ("6s", 0, -1.5)],
    "Pb": [("5d", 4, -17.5), ("6s", 0, -11.0), ("6p", 1, -3.2)],
    "Br": [("4s", 0, -22.0), ("4p", 1, -8.8)],
    "C": [("2s", 0, -17.5), ("2p", 1, -9.0)],
    "N": [("2s", 0, -23.0), ("2p", 1, -11.5)],
    "O": [("2s", 0, -29.0), ("2p", 1, -13.5)],
    "H": [("1s", 0, -12.0)],
}
#: Shells that take part in hopping (others are flat semicore levels).
VALENCE_SHELLS = {"6s", "6p", "4s", "4p", "2s", "2p", "1s"}
#: Harrison's universal constants eta (hbar^2/m = 7.62 eV Angstrom^2).
ETA = {"sss": -1.40, "sps": 1.84, "pps": 3.24, "ppp": -0.81}
HBAR2_M = 7.62
TB_CUTOFF_A = 4.5
#: Onsite shift per missing neighbour (eV), pushes under-coordinated levels into the gap region.
FALLBACK_ELEMENT = [("s", 0, -10.0), ("p", 1, -4.0)]


@dataclass
class TBResult:
    """Tight-binding eigen-solution; shapes as in ``ElectronicResult``."""

    eigenvalues_eV: np.ndarray  # (nspin, nk, nb)
    occupations: np.ndarray  # (nspin, nk, nb), 0..1
    projections: np.ndarray  # (nspin, nk, nb, nat, 9)
    efermi_eV: float
    populations: np.ndarray  # (nat,) electrons per atom (Mulliken, orthogonal basis)
    gap_eV: float


def _basis(symbols: list[str]) -> list[tuple[int, str, int, float]]:
    """(atom, shell, LORBIT column, onsite) per basis function (p shells give py, pz, px)."""
    basis = []
    for a, sym in enumerate(symbols):
        for shell, col, onsite in ORBITALS.get(sym, FALLBACK_ELEMENT):
            if col == 0:
                basis.append((a, shell, 0, onsite))
            elif col == 1:
                for c in (1, 2, 3):  # py, pz, px (VASP order)
                    basis.append((a, shell, c, onsite))
            else:
                for c in range(4, 9):
                    basis.append((a, shell, c, onsite))
    return basis


def _sk(li: int, lj: int, ci: int, cj: int, u: np.ndarray, d: float) -> float:
    """Slater-Koster element between orbital columns ci (on i) and cj (on j), bond unit vector u."""
    scale = HBAR2_M / d**2
    # column -> cartesian index for p: py=1->y, pz=2->z, px=3->x
    pc = {1: 1, 2: 2, 3: 0}
    if li == 0 and lj == 0:
        return ETA["sss"] * scale
    if li == 0 and lj == 1:
        return ETA["sps"] * scale * u[pc[cj]]
    if li == 1 and lj == 0:
        return -ETA["sps"] * scale * u[pc[ci]]
    a, b = pc[ci], pc[cj]
    return (u[a] * u[b] * (ETA["pps"] - ETA["ppp"]) + (ETA["ppp"] if a == b else 0.0)) * scale


def tight_binding(
    atoms: Atoms,
    kpoints: np.ndarray,
    kweights: np.ndarray,
    nelect: float,
    *,
    ispin: int = 1,
    sigma_eV: float = 0.05,
    magnetization: float | None = None,
) -> TBResult:
    """Solve the tight-binding model on the k-points (reduced coordinates).

    Parameters
    ----------
    atoms
        The structure.
    kpoints, kweights
        (nk, 3) reduced k-points and weights summing to 1.
    nelect
        Number of valence electrons (POTCAR ZVALs; the basis holds the semicore shells too).
    ispin
        1 or 2; with 2 the up/down occupations hold ``(nelect +- m) / 2`` electrons, ``m`` =
        ``magnetization`` or ``nelect mod 2``.
    sigma_eV
        Gaussian smearing width of the occupations.
    """
    symbols = atoms.get_chemical_symbols()
    basis = _basis(symbols)
    nb = len(basis)
    nat = len(atoms)
    onsite = np.array([b[3] for b in basis])
    # under-coordination: shift valence onsite energies by the missing hopping partners
    i_idx, j_idx, dist, dvec, shifts = neighbor_list("ijdDS", atoms, TB_CUTOFF_A)
    ncoord = np.bincount(i_idx, minlength=nat)
    hop_terms = []  # (row, col, value, shift)
    by_atom: dict[int, list[int]] = {}
    for m, b in enumerate(basis):
        if b[1] in VALENCE_SHELLS:
            by_atom.setdefault(b[0], []).append(m)
    for i, j, d, dv, sh in zip(i_idx, j_idx, dist, dvec, shifts, strict=True):
        if d < 0.5:
            continue
        u = dv / d
        for mi in by_atom.get(i, []):
            for mj in by_atom.get(j, []):
                li = 0 if basis[mi][2] == 0 else 1
                lj = 0 if basis[mj][2] == 0 else 1
                val = _sk(li, lj, basis[mi][2], basis[mj][2], u, d)
                if abs(val) > 1e-6:
                    hop_terms.append((mi, mj, val, sh))
    mean_coord = max(float(np.median(ncoord)) if nat else 0.0, 1.0)
    for m, b in enumerate(basis):
        if b[1] in VALENCE_SHELLS:
            onsite[m] += 0.15 * (mean_coord - ncoord[b[0]])
    rows = np.array([t[0] for t in hop_terms], dtype=int)
    cols = np.array([t[1] for t in hop_terms], dtype=int)
    vals = np.array([t[2] for t in hop_terms], dtype=float)
    shs = np.array([t[3] for t in hop_terms], dtype=float).reshape(-1, 3)
    kpts = np.asarray(kpoints, float).reshape(-1, 3)
    eig = np.zeros((len(kpts), nb))
    weights = np.zeros((len(kpts), nb, nat, 9))
    atom_of = np.array([b[0] for b in basis])
    col_of = np.array([b[2] for b in basis])
    for k, kv in enumerate(kpts):
        h = np.diag(onsite).astype(complex)
        if len(vals):
            phase = np.exp(2j * np.pi * shs @ kv)
            np.add.at(h, (rows, cols), vals * phase)
        h = 0.5 * (h + h.conj().T)
        e, c = np.linalg.eigh(h)
        eig[k] = e
        w = np.abs(c) ** 2  # (basis, band)
        proj = np.zeros((nb, nat, 9))
        np.add.at(proj, (slice(None), atom_of, col_of), w.T)
        weights[k] = proj
    kw = np.asarray(kweights, float)
    kw = kw / kw.sum()
    if ispin == 2:
        mag = float(magnetization if magnetization is not None else round(nelect) % 2)
        counts = [(nelect + mag) / 2, (nelect - mag) / 2]
    else:
        counts = [nelect / 2]
    eigs, occs = [], []
    mus = []
    for n_spin in counts:
        mu = _fermi_level(eig, kw, n_spin, sigma_eV)
        occ = 0.5 * erfc((eig - mu) / sigma_eV)
        eigs.append(eig)
        occs.append(occ)
        mus.append(mu)
    eig_all = np.array(eigs)
    occ_all = np.array(occs)
    proj_all = np.repeat(weights[None], len(counts), axis=0)
    factor = 2.0 / len(counts)
    pops = np.einsum("skb,k,skbao->a", occ_all, kw, proj_all) * factor
    if pops.sum() > 0:  # the Fermi-level bisection stops ~1e-6 e short per spin: exact NELECT
        pops = pops * (float(nelect) / float(pops.sum()))
    occupied = eig_all[occ_all > 0.5]
    empty = eig_all[occ_all <= 0.5]
    gap = float(empty.min() - occupied.max()) if occupied.size and empty.size else 0.0
    return TBResult(eig_all, occ_all, proj_all, float(max(mus)), pops, gap)


def _fermi_level(eig: np.ndarray, kw: np.ndarray, n_electrons: float, sigma: float) -> float:
    """Lowest chemical potential at which the Gaussian-smeared occupations hold ``n_electrons``."""
    lo, hi = float(eig.min()) - 10 * sigma, float(eig.max()) + 10 * sigma
    target = n_electrons - 1e-6
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        n = float(np.dot(kw, (0.5 * erfc((eig - mid) / sigma)).sum(axis=1)))
        if n < target:
            lo = mid
        else:
            hi = mid
    return hi


# -------------------------------------------------------------------------------------------------
# densities
# -------------------------------------------------------------------------------------------------
#: Gaussian width (Angstrom) of each element's valence density.
DENSITY_WIDTH_A = {"Cs": 1.1, "Pb": 0.9, "Br": 0.8, "C": 0.55, "N": 0.5, "O": 0.5, "H": 0.45}
#: Smallest Gaussian width in units of the coarsest grid spacing: narrower Gaussians are not
#: resolved by the grid and their truncated Fourier series rings to negative densities (a 0.45 A
#: H Gaussian on a 0.7 A grid gave rho*V down to -150 e); at 1.3 spacings the ringing is < 1e-3
#: of the peak.
MIN_WIDTH_GRID_SPACINGS = 1.3


def grid_spacing_A(cell: np.ndarray, grid: tuple[int, int, int]) -> float:
    """Coarsest grid spacing (Angstrom): max over axes of interplanar distance / points.

    This sets the grid's Nyquist wavevector ``pi / spacing`` (the smallest over the three axes).
    """
    recip = np.linalg.inv(np.asarray(cell, float)).T  # rows b_i / (2 pi)
    planes_A = 1.0 / np.linalg.norm(recip, axis=1)
    return float(np.max(planes_A / np.asarray(grid, float)))


def effective_widths(
    symbols: list[str], cell: np.ndarray, grid: tuple[int, int, int], widths: dict | None = None
) -> dict[str, float]:
    """Gaussian width (Angstrom) per element on this grid.

    The element's width, at least :data:`MIN_WIDTH_GRID_SPACINGS` grid spacings; the same for
    every system that shares one cell and grid.
    """
    widths = widths or DENSITY_WIDTH_A
    floor = MIN_WIDTH_GRID_SPACINGS * grid_spacing_A(cell, grid)
    return {s: max(float(widths.get(s, 0.7)), floor) for s in sorted(set(symbols))}


def atomic_density(
    atoms: Atoms, charges: np.ndarray, grid: tuple[int, int, int], widths: dict | None = None
) -> np.ndarray:
    """Periodic sum of normalised atomic Gaussians, electrons/Angstrom^3 on ``grid``.

    Built in reciprocal space: the G = 0 coefficient is ``charges.sum()``, so the grid integral
    (``rho.mean() * volume``) equals the total charge exactly on any grid, wherever the atoms are
    (positions outside [0, 1) and periodic images enter only through the structure factor). Widths
    narrower than the grid resolves are broadened (:func:`effective_widths`), so coarse grids give
    smooth, non-negative densities instead of Fourier ringing; the width depends on the cell and
    grid only, so systems sharing them (a charge-density-difference trio) get the same Gaussians.
    """
    nx, ny, nz = (int(n) for n in grid)
    vol = atoms.get_volume()
    frac = atoms.get_scaled_positions(wrap=True)
    gx = np.fft.fftfreq(nx, 1.0 / nx)
    gy = np.fft.fftfreq(ny, 1.0 / ny)
    gz = np.fft.rfftfreq(nz, 1.0 / nz)
    recip = 2 * np.pi * np.linalg.inv(atoms.cell.array).T  # rows b1, b2, b3 (1/Angstrom)
    gvec = (
        gx[:, None, None, None] * recip[0]
        + gy[None, :, None, None] * recip[1]
        + gz[None, None, :, None] * recip[2]
    )
    g2 = (gvec**2).sum(axis=-1)
    rho_g = np.zeros(g2.shape, dtype=complex)
    symbols = atoms.get_chemical_symbols()
    width_of = effective_widths(symbols, atoms.cell.array, (nx, ny, nz), widths)
    q_all = np.asarray(charges, float)
    for sym in sorted(set(symbols)):
        idx = [i for i, s in enumerate(symbols) if s == sym]
        w = width_of[sym]
        form = np.exp(-0.5 * g2 * w**2)
        ex = np.exp(-2j * np.pi * np.outer(gx, frac[idx, 0]))  # (nx, na)
        ey = np.exp(-2j * np.pi * np.outer(gy, frac[idx, 1]))
        ez = np.exp(-2j * np.pi * np.outer(gz, frac[idx, 2]))
        sf = np.einsum("xa,ya,za,a->xyz", ex, ey, ez, q_all[idx], optimize=True)
        rho_g += form * sf
    rho_g[0, 0, 0] = q_all.sum()  # exact total (the G = 0 term is real)
    rho = np.fft.irfftn(rho_g, s=(nx, ny, nz), axes=(0, 1, 2)) * (nx * ny * nz) / vol
    return rho
