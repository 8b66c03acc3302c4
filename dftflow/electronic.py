"""Kohn-Sham band data of one calculation and the DOS built from it, whatever the code.

:class:`BandData` holds what a single point computed: eigenvalues, occupations, k-points and
weights, the Fermi level and (optionally) the per-atom, per-orbital projections of every state.
The embedded engine stores it as ``bands.npz`` (its native record of GPAW's eigenstates); for a
VASP run it is read from ``vasprun.xml`` (:func:`dftflow.parse.vasp.band_data`). The mid-gap
detector works from it, so it is one for every engine.

:func:`complete_dos` turns band data into a pymatgen ``CompleteDos`` (Gaussian broadening), which
the embedded engine writes as ``dos.json.gz``.

Conventions: energies in eV on the code's own scale; occupations 0..1 per band and spin channel;
``projections`` shape (nspin, nkpts, nbands, natoms, norbitals) in VASP's LORBIT=11 orbital order
(s, py, pz, px, dxy, dyz, dz2, dxz, x2-y2); k-point weights sum to 1; for one spin channel every
band holds two electrons (DOS and electron counts carry the factor 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dftflow.fileio import atomic_path

#: LORBIT = 11 orbital order.
LM_ORBITALS = ("s", "py", "pz", "px", "dxy", "dyz", "dz2", "dxz", "x2-y2")

#: File name of the band record in a run directory (embedded engine).
BANDS_FILE = "bands.npz"
#: File name of the pymatgen CompleteDos (JSON, gzipped) in a run directory (embedded engine).
DOS_FILE = "dos.json.gz"
#: Decimals kept for DOS curves and energies in ``dos.json.gz`` (states/eV and eV: 1e-6 is far
#: below anything a broadened DOS resolves; measured: 3x faster to write than full repr).
DOS_DECIMALS = 6


@dataclass
class BandData:
    """Eigenvalues and occupations of one calculation (see module docstring for shapes/units)."""

    eigenvalues_eV: np.ndarray
    occupations: np.ndarray
    kweights: np.ndarray
    efermi_eV: float | None = None
    kpoints: np.ndarray | None = None
    projections: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.eigenvalues_eV = np.asarray(self.eigenvalues_eV, dtype=float)
        self.occupations = np.asarray(self.occupations, dtype=float)
        if self.eigenvalues_eV.ndim != 3 or self.occupations.shape != self.eigenvalues_eV.shape:
            raise ValueError(
                "eigenvalues and occupations must both be (nspin, nkpts, nbands), got "
                f"{self.eigenvalues_eV.shape} and {self.occupations.shape}"
            )
        w = np.asarray(self.kweights, dtype=float)
        self.kweights = w / w.sum()
        if self.projections is not None:
            self.projections = np.asarray(self.projections)

    @property
    def nspin(self) -> int:
        """Number of spin channels (1 or 2)."""
        return int(self.eigenvalues_eV.shape[0])

    @property
    def atom_projections(self) -> np.ndarray | None:
        """Projections summed over orbitals: (nspin, nkpts, nbands, natoms), or None."""
        if self.projections is None:
            return None
        return np.asarray(self.projections, dtype=float).sum(axis=-1)

    def save(self, path: str | Path) -> Path:
        """Write this band data as a compressed ``.npz`` (projections stored as float32)."""
        path = Path(path)
        arrays = {
            "eigenvalues_eV": self.eigenvalues_eV,
            "occupations": self.occupations,
            "kweights": self.kweights,
            "efermi_eV": np.array(np.nan if self.efermi_eV is None else self.efermi_eV),
        }
        if self.kpoints is not None:
            arrays["kpoints"] = np.asarray(self.kpoints, dtype=float)
        if self.projections is not None:
            arrays["projections"] = np.asarray(self.projections, dtype=np.float32)
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BandData:
        """Read band data written by :meth:`save`."""
        with np.load(Path(path)) as data:
            efermi = float(data["efermi_eV"])
            return cls(
                eigenvalues_eV=data["eigenvalues_eV"],
                occupations=data["occupations"],
                kweights=data["kweights"],
                efermi_eV=None if np.isnan(efermi) else efermi,
                kpoints=data["kpoints"] if "kpoints" in data else None,
                projections=data["projections"].astype(float) if "projections" in data else None,
            )


def dos_energy_grid(eigenvalues_eV: np.ndarray, nedos: int, sigma_eV: float) -> np.ndarray:
    """Uniform energy grid covering every eigenvalue with 5 sigma + 1 eV margins (eV)."""
    lo = float(np.min(eigenvalues_eV)) - 5 * sigma_eV - 1.0
    hi = float(np.max(eigenvalues_eV)) + 5 * sigma_eV + 1.0
    return np.linspace(lo, hi, int(nedos))


def gaussian_dos(
    eigenvalues_eV: np.ndarray,
    kweights: np.ndarray,
    energies_eV: np.ndarray,
    sigma_eV: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Gaussian-broadened DOS (states/eV per spin channel; callers apply x2 for one channel).

    Each state's weight is split linearly between its two neighbouring grid points, then the
    histogram is convolved with a normalised Gaussian (O(nedos) per column; the integral of every
    column is exact).

    Parameters
    ----------
    eigenvalues_eV
        (nspin, nkpts, nbands).
    kweights
        (nkpts,) summing to 1.
    energies_eV
        (nedos,) uniform grid.
    sigma_eV
        Gaussian width.
    weights
        Optional (nspin, nkpts, nbands, ncol) projections; then the result is (nspin, nedos, ncol).

    Returns
    -------
    np.ndarray
        (nspin, nedos) or (nspin, nedos, ncol).
    """
    energies_eV = np.asarray(energies_eV, float)
    n = len(energies_eV)
    de = energies_eV[1] - energies_eV[0]
    sigma = max(float(sigma_eV), 1e-3)
    half = int(np.ceil(6 * sigma / de))
    xk = np.arange(-half, half + 1) * de
    kernel = np.exp(-0.5 * (xk / sigma) ** 2)
    kernel /= kernel.sum() * de
    out = []
    nk, nb = eigenvalues_eV.shape[1], eigenvalues_eV.shape[2]
    w_state = np.repeat(np.asarray(kweights, float), nb)
    for s in range(eigenvalues_eV.shape[0]):
        pos = (eigenvalues_eV[s].reshape(-1) - energies_eV[0]) / de
        lo = np.clip(np.floor(pos).astype(int), 0, n - 2)
        frac = np.clip(pos - lo, 0.0, 1.0)
        cols = np.ones((nk * nb, 1)) if weights is None else weights[s].reshape(nk * nb, -1)
        hist = np.zeros((n, cols.shape[1]))
        np.add.at(hist, lo, (w_state * (1 - frac))[:, None] * cols)
        np.add.at(hist, lo + 1, (w_state * frac)[:, None] * cols)
        dens = np.stack(
            [np.convolve(hist[:, c], kernel, mode="same") for c in range(hist.shape[1])], axis=1
        )
        out.append(dens[:, 0] if weights is None else dens)
    return np.asarray(out)


def broadened_dos(
    eigenvalues_eV: np.ndarray,
    kweights: np.ndarray,
    projections: np.ndarray | None,
    *,
    sigma_eV: float,
    nedos: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Energy grid, total DOS and (with projections) site/orbital DOS, states/eV.

    For one spin channel every band holds two electrons, so both DOS carry the factor 2.

    Returns
    -------
    (energies, total, partial)
        ``energies`` (nedos,); ``total`` (nspin, nedos); ``partial`` (nspin, nedos, natoms,
        norbitals) or None.
    """
    eig = np.asarray(eigenvalues_eV, float)
    energies = dos_energy_grid(eig, nedos, sigma_eV)
    factor = 2.0 / eig.shape[0]
    total = gaussian_dos(eig, kweights, energies, sigma_eV) * factor
    partial = None
    if projections is not None:
        proj = np.asarray(projections, float)
        nspin, nk, nb, nat, norb = proj.shape
        flat = proj.reshape(nspin, nk, nb, nat * norb)
        partial = gaussian_dos(eig, kweights, energies, sigma_eV, flat) * factor
        partial = partial.reshape(nspin, len(energies), nat, norb)
    return energies, total, partial


def complete_dos(structure, bands: BandData, *, sigma_eV: float, nedos: int):
    """A pymatgen ``CompleteDos`` (total and, with projections, site/orbital DOS) from band data.

    Parameters
    ----------
    structure
        pymatgen ``Structure`` whose sites match the projections' atom axis.
    bands
        The band data.
    sigma_eV
        Gaussian broadening width (eV).
    nedos
        Number of energy points.
    """
    from pymatgen.electronic_structure.core import Orbital, Spin
    from pymatgen.electronic_structure.dos import CompleteDos, Dos

    if bands.projections is not None and bands.projections.shape[3] != len(structure):
        raise ValueError(
            f"projections cover {bands.projections.shape[3]} atoms, "
            f"the structure has {len(structure)}"
        )
    energies, total, partial = broadened_dos(
        bands.eigenvalues_eV, bands.kweights, bands.projections, sigma_eV=sigma_eV, nedos=nedos
    )
    spins = (Spin.up, Spin.down)[: bands.nspin]
    efermi = 0.0 if bands.efermi_eV is None else float(bands.efermi_eV)
    tdos = Dos(efermi, energies, {s: total[i] for i, s in enumerate(spins)})
    pdoss: dict = {}
    if partial is not None:
        for a, site in enumerate(structure):
            pdoss[site] = {
                Orbital(o): {s: partial[i, :, a, o] for i, s in enumerate(spins)}
                for o in range(partial.shape[3])
            }
    return CompleteDos(structure, tdos, pdoss)


def _rounded(obj, decimals: int):
    """Long float lists (DOS curves, energies) rounded to ``decimals`` with numpy; rest as is."""
    if isinstance(obj, list) and len(obj) > 64 and isinstance(obj[0], float):
        return np.round(np.asarray(obj, dtype=float), decimals).tolist()
    if isinstance(obj, list):
        return [_rounded(v, decimals) for v in obj]
    if isinstance(obj, dict):
        return {k: _rounded(v, decimals) for k, v in obj.items()}
    return obj


def write_complete_dos(path: str | Path, cdos, decimals: int = DOS_DECIMALS) -> Path:
    """Write a pymatgen ``CompleteDos`` as gzipped JSON (``CompleteDos.as_dict``), atomically.

    DOS curves and their energy grid are kept to ``decimals`` decimals (states/eV, eV).
    """
    import gzip
    import json

    path = Path(path)
    data = _rounded(cdos.as_dict(), decimals)
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", compresslevel=3) as fh:
        json.dump(data, fh, separators=(",", ":"))
    return path


def read_complete_dos(path: str | Path):
    """Read a ``CompleteDos`` written by :func:`write_complete_dos`."""
    import gzip
    import json

    from pymatgen.electronic_structure.dos import CompleteDos

    with gzip.open(Path(path), "rt") as fh:
        return CompleteDos.from_dict(json.load(fh))
