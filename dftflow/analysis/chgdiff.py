"""Differential charge density ``Δρ = ρ(slab+L) − ρ(slab) − ρ(L)`` and charge transfer.

The three CHGCARs must share the cell and the FFT grid (the workflow computes them in the same cell
with explicit NGXF/NGYF/NGZF), and the complex's atoms must be the slab's plus the ligand's (by
composition); anything else is refused with one line naming both grids/lattices or all three
compositions.

Definitions (units in names)
----------------------------
* ``planar_average_e_per_A3[k]``: mean of Δρ (e/Å^3) over grid plane k perpendicular to the axis.
* ``cumulative_charge_e[k]``: Δq(z), electrons gained (negative: lost) between the middle of the
  vacuum below the slab (the integration start, ``integration_start_A``) and the top of plane k,
  going up along the axis; Δq(z) = ∫ A·Δρ̄(z') dz'. At the end of the cell it equals
  ``total_charge_e``.
* ``total_charge_e`` = ∫Δρ dV (≈ 0 when the three calculations hold the same electrons).
* ``charge_transfer_e``: the net charge that moved across the ligand/surface plane: Δq at the plane
  midway between the outermost slab atom layer facing the ligand and the closest ligand atom,
  counted on the slab side. Positive: the slab side gained electrons (ligand → slab donation);
  negative: the ligand side gained electrons.

Ligand atoms (for the plane, the plot window and the anchor centring) are the builder's indices
(``ligand_indices``, or those recorded in the complex's ``taskdoc.json``); without them, the atoms
of the complex that coincide with the ligand fragment B's atoms (the fragments are cut from the
complex); the element rule of :mod:`dftflow.analysis.ligand_split` only when neither is known.
``ligand_atoms_from`` says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from dftflow.analysis.ligand_split import LigandSplit, ligand_indices_of_run, ligand_split
from dftflow.errors import InputError
from dftflow.parse.volumetric import (
    axis_coordinates_A,
    axis_index,
    check_same_grid,
    grid_difference,
    planar_average,
    plane_charges_e,
    read_volumetric_header,
)
from dftflow.structures.geometry import axis_height_A, vacuum_middle_fraction

#: |∫Δρ dV| above this (electrons) means the fragments' electron counts do not add up.
TOTAL_CHARGE_WARN_E = 0.05
#: An atom of the complex and one of fragment B closer than this are the same atom, Angstrom.
FRAGMENT_MATCH_A = 0.05
#: ``ligand_atoms_from`` when the ligand atoms are those of fragment B.
FROM_FRAGMENT = "ligand fragment (B) atoms"


class ChgDiffResult(BaseModel):
    """Result of :func:`charge_density_difference` (JSON-serialisable; arrays as lists)."""

    axis: int
    grid: list[int]
    volume_A3: float
    z_A: list[float] = Field(description="grid-plane positions along the axis, A")
    planar_average_e_per_A3: list[float]
    cumulative_charge_e: list[float]
    integration_start_A: float
    total_charge_e: float
    charge_transfer_e: float | None
    plane_z_A: float | None = Field(description="position of the ligand/surface plane, A")
    ligand_side: str | None = Field(description="'above' or 'below' the slab along the axis")
    ligand_indices: list[int] = Field(
        default_factory=list, description="0-based atoms of the complex taken as ligand"
    )
    ligand_atoms_from: str | None = Field(
        default=None, description="builder indices, ligand fragment (B) atoms, or element rule"
    )
    max_accumulation_e_per_A3: float
    max_depletion_e_per_A3: float
    output: str | None = None
    files: dict[str, str] = Field(default_factory=dict)
    isovalue_e_per_A3: float | None = Field(
        default=None, description="isovalue of the isosurface plot, e/A^3 (None: not plotted)"
    )
    notes: list[str] = Field(default_factory=list)


def _interface_plane(structure, axis: int, origin: float, is_lig: np.ndarray):
    """Plane between the slab's outer layer and the nearest ligand atom (A from the start)."""
    height = axis_height_A(structure.lattice.matrix, axis)
    rel = np.mod(structure.frac_coords[:, axis] - origin, 1.0) * height
    if not is_lig.any() or is_lig.all():
        return None, None
    lig, slab = rel[is_lig], rel[~is_lig]
    if lig.mean() >= slab.mean():
        return 0.5 * (slab.max() + lig.min()), "above"
    return 0.5 * (slab.min() + lig.max()), "below"


def fragment_atoms(
    complex_structure, fragment_structure, tol_A: float = FRAGMENT_MATCH_A
) -> list[int] | None:
    """0-based atoms of the complex that coincide (periodically, same element) with the fragment's.

    ``None`` unless every fragment atom has its partner in the complex.
    """
    if len(fragment_structure) == 0 or len(fragment_structure) >= len(complex_structure):
        return None
    dist = complex_structure.lattice.get_all_distances(
        complex_structure.frac_coords, fragment_structure.frac_coords
    )
    found = []
    for j, site in enumerate(fragment_structure):
        i = int(np.argmin(dist[:, j]))
        if dist[i, j] > tol_A or complex_structure[i].specie != site.specie:
            return None
        found.append(i)
    return sorted(set(found)) if len(set(found)) == len(found) else None


def check_fragments_composition(complex_structure, slab, ligand, names: dict[str, str]) -> None:
    """Refuse a complex whose composition is not slab + ligand (one line naming all three).

    Δρ = ρ(AB) − ρ(A) − ρ(B) compares the same atoms; a complex passed as the slab (or any
    swapped or wrong file) would subtract atoms twice and give a meaningless Δρ.
    """
    expected = slab.composition + ligand.composition
    actual = complex_structure.composition
    if not actual.almost_equals(expected, rtol=0.0, atol=1e-6):
        raise InputError(
            f"composition mismatch: complex {_formula(actual)} ({names['AB']}) is not slab "
            f"{_formula(slab.composition)} ({names['A']}) + ligand "
            f"{_formula(ligand.composition)} ({names['B']}) = {_formula(expected)}; pass the "
            "complex, the slab and the ligand in that order"
        )


def _formula(composition) -> str:
    """``Cs8Pb12Br32C2H3O2``: pymatgen's element order, counts of 1 left out."""
    return "".join(
        token.removesuffix("1") if token[-2:-1].isalpha() else token
        for token in composition.formula.split()
    )


def complex_ligand_split(
    complex_structure,
    ligand_indices: Sequence[int] | None,
    ab: str | Path | None = None,
    fragment_structure=None,
) -> LigandSplit:
    """Ligand atoms of the complex: given indices, the run's TaskDoc, fragment B, element rule."""
    if ligand_indices is None and ab is not None:
        ligand_indices = ligand_indices_of_run(ab)
    if ligand_indices is None and fragment_structure is not None:
        matched = fragment_atoms(complex_structure, fragment_structure)
        if matched is not None:
            return LigandSplit(
                ligand_indices=matched,
                n_atoms=len(complex_structure),
                ligand_atoms_from=FROM_FRAGMENT,
            )
    return ligand_split(complex_structure, ligand_indices)


def charge_density_difference(
    ab: str | Path,
    a: str | Path,
    b: str | Path,
    axis: int | str = 2,
    output: str | Path | None = None,
    *,
    ligand_indices: Sequence[int] | None = None,
    return_grid: bool = False,
):
    """Δρ = ρ_AB − ρ_A − ρ_B from three CHGCARs (files or run directories, plain or .gz).

    Parameters
    ----------
    ab, a, b
        CHGCARs of the complex, the slab and the ligand, in the same cell on the same grid.
    axis
        Axis of the planar average (``2``/``"z"`` for slabs).
    output
        Write Δρ here as a CHGCAR (ρ·V convention, opens in VESTA).
    ligand_indices
        0-based ligand atoms of the complex (the builder's, ``TaskDoc.ligand_indices``), to place
        the ligand/surface plane. ``None``: those recorded in the complex's ``taskdoc.json``,
        else the atoms of fragment B, else the element rule (see the module docstring).
    return_grid
        Also return ``(result, delta_rho_e_per_A3, structure)``.

    Returns
    -------
    ChgDiffResult
        See the module docstring for the definitions.

    Raises
    ------
    InputError
        Grids, lattices or compositions (complex ≠ slab + ligand) disagree: checked from the
        three headers before any grid is read; nothing is written.
    OutputError
        A missing, truncated or corrupt file; nothing is written.

    Notes
    -----
    Memory and speed: only the headers and the total grids are read (augmentation occupancies
    and magnetisation grids are skipped), one file at a time into two buffers (Δ and a scratch
    grid, subtracted in place in pymatgen's ``linear_add`` order); the written Δρ CHGCAR has no
    augmentation occupancies (as pymatgen writes a ``linear_add`` result). Peak: two grids plus
    the imports (``benchmarks/bench_chgdiff_RESULTS.md``).
    """
    ax = axis_index(axis)
    names = {"AB": str(ab), "A": str(a), "B": str(b)}
    files, headers = {}, {}
    for key, path in names.items():  # headers only: every check before any grid is read
        files[key], headers[key] = read_volumetric_header(path, "CHGCAR")
    check_same_grid(headers["AB"], headers["A"], names["AB"], names["A"])
    check_same_grid(headers["AB"], headers["B"], names["AB"], names["B"])
    check_fragments_composition(
        headers["AB"].structure, headers["A"].structure, headers["B"].structure, names
    )
    structure = headers["AB"].structure
    volume = float(structure.lattice.volume)
    grid = list(headers["AB"].grid)
    delta_rho_v = grid_difference([files["AB"], files["A"], files["B"]], grid)
    n_axis = grid[ax]
    written = None
    if output is not None:
        from dftflow.io.chgcar import write_chgcar

        written = str(
            write_chgcar(output, structure, delta_rho_v, comment="charge density difference AB-A-B")
        )
    plane_q = plane_charges_e(delta_rho_v, ax)
    origin, _ = vacuum_middle_fraction(structure, ax)
    start = int(np.ceil(origin * n_axis)) % n_axis
    rolled = np.roll(plane_q, -start)
    cumulative_rolled = np.cumsum(rolled)
    cumulative = np.roll(cumulative_rolled, start)
    height = axis_height_A(structure.lattice.matrix, ax)
    start_A = start * height / n_axis
    total = float(delta_rho_v.sum() / delta_rho_v.size)
    split = complex_ligand_split(structure, ligand_indices, ab, headers["B"].structure)
    plane, side = _interface_plane(structure, ax, start / n_axis, split.mask)
    transfer = None
    notes: list[str] = []
    if abs(total) > TOTAL_CHARGE_WARN_E:
        notes.append(
            f"∫Δρ dV = {total:+.3f} e: the three densities do not hold the same electrons "
            "(check NELECT of the fragments); the charge transfer is then not meaningful"
        )
    if plane is None:
        notes.append(
            f"no ligand/slab split ({split.ligand_atoms_from}: {len(split.ligand_indices)} "
            f"ligand atoms of {split.n_atoms}): charge_transfer_e not defined"
        )
        plane_abs = None
    else:
        z_rel = (np.arange(n_axis) + 1) * height / n_axis  # top of each rolled plane
        below = float(
            np.interp(
                plane, np.concatenate([[0.0], z_rel]), np.concatenate([[0.0], cumulative_rolled])
            )
        )
        transfer = below if side == "above" else total - below
        plane_abs = float(np.mod(plane + start_A, height))
    result = ChgDiffResult(
        axis=ax,
        grid=grid,
        volume_A3=volume,
        z_A=axis_coordinates_A(structure, ax, n_axis).tolist(),
        planar_average_e_per_A3=(planar_average(delta_rho_v, ax) / volume).tolist(),
        cumulative_charge_e=cumulative.tolist(),
        integration_start_A=start_A,
        total_charge_e=total,
        charge_transfer_e=transfer,
        plane_z_A=plane_abs,
        ligand_side=side,
        ligand_indices=split.ligand_indices,
        ligand_atoms_from=split.ligand_atoms_from,
        max_accumulation_e_per_A3=float(delta_rho_v.max()) / volume,
        max_depletion_e_per_A3=float(delta_rho_v.min()) / volume,
        output=written,
        notes=notes,
    )
    if return_grid:
        delta_rho_v /= volume  # in place: Δρ in e/Å^3 without a second grid
        return result, delta_rho_v, structure
    return result


# ------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------


def plot_planar_average(
    result: ChgDiffResult, output: str | Path, *, dpi: int = 150, title: str | None = None
) -> Path:
    """Two panels on one z axis: Δρ̄(z) in e/Å^3 and Δq(z) in electrons (from the vacuum start).

    The figure states the sign convention under the z axis (:func:`delta_q_convention`): Δq(z)
    integrates Δρ from the middle of the vacuum below the slab (the left edge) up to z, so
    Δq > 0 means electrons accumulated below z; the value at the ligand/surface plane is counted
    on the slab side (> 0: the slab gained electrons, ligand → slab).
    """
    from dftflow.analysis.plotting import (
        ACCUMULATION_COLOUR,
        DEPLETION_COLOUR,
        new_figure,
        save_figure,
    )

    n = len(result.z_A)
    height = (result.z_A[1] - result.z_A[0]) * n
    start = int(round(result.integration_start_A / height * n)) % n
    z = np.asarray(result.z_A)
    z_unwrapped = np.concatenate([z[start:], z[:start] + height])
    if result.integration_start_A > height / 2:  # show the atoms at their own cell coordinates
        z_unwrapped = z_unwrapped - height
    avg = np.roll(np.asarray(result.planar_average_e_per_A3), -start)
    cum = np.roll(np.asarray(result.cumulative_charge_e), -start)
    fig, (ax1, ax2) = new_figure(2, 1, figsize=(4.8, 4.6), sharex=True)
    ax1.fill_between(
        z_unwrapped, avg, 0, where=avg >= 0, color=ACCUMULATION_COLOUR, label="accumulation", lw=0
    )
    ax1.fill_between(
        z_unwrapped, avg, 0, where=avg < 0, color=DEPLETION_COLOUR, label="depletion", lw=0
    )
    ax1.plot(z_unwrapped, avg, color="black", lw=0.8)
    ax1.axhline(0, color="grey", lw=0.5)
    ax1.set_ylabel(r"$\Delta\bar\rho(z)$ (e/$\mathrm{\AA}^3$)")
    ax1.legend(frameon=False, loc="upper left")
    ax2.plot(z_unwrapped, cum, color="#7a3db8", lw=1.2)
    ax2.axhline(0, color="grey", lw=0.5)
    ax2.set_ylabel(r"$\Delta q(z)$ (e)")
    ax2.set_xlabel(r"$z$ ($\mathrm{\AA}$)")
    if result.plane_z_A is not None:
        zp = result.plane_z_A
        while zp < z_unwrapped[0]:
            zp += height
        while zp > z_unwrapped[-1]:
            zp -= height
        for ax in (ax1, ax2):
            ax.axvline(zp, color="black", ls="--", lw=0.8)
        ax2.set_title(  # above the panel: never on the curve
            f"Δq at the ligand/surface plane (dashed) = {result.charge_transfer_e:+.3f} e",
            loc="right",
            fontsize=8,
        )
    ax2.set_xlim(z_unwrapped[0], z_unwrapped[-1])
    ax2.text(  # under the axis: never on the curves
        0.0,
        -0.3,
        delta_q_convention(float(z_unwrapped[0]), result.ligand_side),
        transform=ax2.transAxes,
        ha="left",
        va="top",
        fontsize=7.5,
        gid="sign-convention",
    )
    ax1.set_title(title or "charge density difference, planar average")
    return save_figure(fig, output, dpi=dpi)


def delta_q_convention(start_A: float, ligand_side: str | None) -> str:
    """The sign convention of Δq as the planar-average figure states it (two lines).

    ``start_A``: the integration start on the figure's z axis (the middle of the vacuum below the
    slab); ``ligand_side``: ``"above"``/``"below"`` (:attr:`ChgDiffResult.ligand_side`).
    """
    slab_side = {"above": "below", "below": "above"}.get(ligand_side or "", None)
    transfer = (
        f"At the plane Δq is counted on the slab side ({slab_side} it): > 0 = the slab gained "
        "electrons (ligand → slab)."
        if slab_side
        else "No ligand/surface plane: no charge transfer."
    )
    import textwrap

    return textwrap.fill(
        f"Δq(z) = ∫ Δρ dV between z₀ = {start_A:.1f} Å (mid-vacuum, the left edge) and z; "
        "Δq > 0: electrons accumulated below z. " + transfer,
        width=72,
    )


def _cmap():
    from matplotlib.colors import LinearSegmentedColormap

    from dftflow.analysis.plotting import ACCUMULATION_COLOUR, DEPLETION_COLOUR

    return LinearSegmentedColormap.from_list(
        "depl_acc", [DEPLETION_COLOUR, "#ffffff", ACCUMULATION_COLOUR]
    )


#: Covalent radii for the ligand's bonds in drawings, Angstrom (Cordero et al. 2008).
COVALENT_RADII_A = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "S": 1.05, "P": 1.07}
#: Two atoms are bonded in a drawing when closer than this times their covalent radii's sum.
BOND_FACTOR = 1.25


def ligand_anchor(structure, is_ligand: np.ndarray) -> int | None:
    """Index of the ligand's anchor: its atom nearest (in 3D, periodically) to a slab atom."""
    if not is_ligand.any() or is_ligand.all():
        return None
    lig, slab = np.flatnonzero(is_ligand), np.flatnonzero(~is_ligand)
    dist = structure.lattice.get_all_distances(
        structure.frac_coords[lig], structure.frac_coords[slab]
    )
    return int(lig[int(np.argmin(dist.min(axis=1)))])


def unwrapped_ligand_frac(structure, is_ligand: np.ndarray) -> np.ndarray:
    """Fractional coordinates with the ligand whole (not split at the cell edge).

    The anchor (:func:`ligand_anchor`) and every slab atom stay inside the cell (0..1); the other
    ligand atoms are placed along the ligand's bonds (:func:`ligand_bonds`, periodic distances),
    each at the periodic image nearest to the bonded atom placed before it (a chain longer than
    half the cell stays whole); a ligand atom bonded to nothing takes the image nearest the anchor.
    """
    frac = np.mod(np.asarray(structure.frac_coords, dtype=float), 1.0)
    anchor = ligand_anchor(structure, is_ligand)
    if anchor is None:
        return frac
    lig = np.flatnonzero(is_ligand)
    symbols = [structure[i].specie.symbol for i in lig]
    dist = structure.lattice.get_all_distances(frac[lig], frac[lig])
    radii = np.array([COVALENT_RADII_A.get(el, 0.8) for el in symbols])
    bonded = (dist < BOND_FACTOR * (radii[:, None] + radii[None, :])) & (dist > 0)
    start = int(np.flatnonzero(lig == anchor)[0])
    placed = {start}
    queue = [start]
    while queue:  # breadth first from the anchor along the bonds
        a = queue.pop(0)
        for b in np.flatnonzero(bonded[a]):
            if int(b) in placed:
                continue
            d = frac[lig[b]] - frac[lig[a]]
            frac[lig[b]] = frac[lig[a]] + d - np.round(d)
            placed.add(int(b))
            queue.append(int(b))
    for b in set(range(len(lig))) - placed:
        d = frac[lig[b]] - frac[anchor]
        frac[lig[b]] = frac[anchor] + d - np.round(d)
    return frac


def ligand_bonds(symbols: Sequence[str], cart: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (positions in ``symbols``) closer than :data:`BOND_FACTOR` x their covalent radii."""
    radii = np.array([COVALENT_RADII_A.get(el, 0.8) for el in symbols])
    dist = np.linalg.norm(cart[:, None, :] - cart[None, :, :], axis=-1)
    limit = BOND_FACTOR * (radii[:, None] + radii[None, :])
    i, j = np.nonzero(np.triu(dist < limit, k=1))
    return list(zip(i.tolist(), j.tolist(), strict=True))


def plot_slice(
    delta_rho: np.ndarray,
    structure,
    output: str | Path,
    *,
    normal: int = 1,
    position_frac: float | None = None,
    dpi: int = 150,
    title: str | None = None,
    ligand_indices: Sequence[int] | None = None,
) -> Path:
    """2D slice of Δρ through the plane ``normal`` = const (default: through the largest |Δρ|).

    Coordinates are the cell's (A). Slab atoms within 1.5 A of the plane are drawn at their
    projected positions (with their periodic images in the window). The ligand is drawn whole,
    every atom projected and bonded to its neighbours: its atoms are unwrapped across the cell
    boundaries along its bonds from the anchor atom (:func:`unwrapped_ligand_frac`) and the
    window, one cell wide (wider when the ligand is), is centred on the anchor (Δρ is periodic:
    the map is tiled). A legend
    gives each element's colour. ``ligand_indices``: 0-based ligand atoms (``None``: the element
    rule of :mod:`dftflow.analysis.ligand_split`; :func:`chgdiff_plots` passes the result's).
    """
    from matplotlib.collections import LineCollection

    from dftflow.analysis.plotting import ATOM_COLOURS, atom_legend_handles, new_figure, save_figure

    n = delta_rho.shape[normal]
    if position_frac is None:
        other = tuple(i for i in range(3) if i != normal)
        position_frac = float(np.argmax(np.abs(delta_rho).max(axis=other)) / n)
    k = int(round(position_frac * n)) % n
    plane = np.take(delta_rho, k, axis=normal)
    iu, iv = [i for i in range(3) if i != normal]
    lat = np.asarray(structure.lattice.matrix)

    def length(i: int) -> float:
        return axis_height_A(lat, i) if i == 2 else float(np.linalg.norm(lat[i]))

    len_u, len_v, len_n = length(iu), length(iv), length(normal)
    is_lig = ligand_split(structure, ligand_indices).mask
    frac = unwrapped_ligand_frac(structure, is_lig)
    pos = frac[:, [iu, iv]] * [len_u, len_v]  # slice coordinates, A
    anchor = ligand_anchor(structure, is_lig)
    centre = pos[anchor] if anchor is not None else np.array([len_u / 2, len_v / 2])
    u_lo, u_hi = centre[0] - len_u / 2, centre[0] + len_u / 2
    if is_lig.any():
        u_lo = min(u_lo, pos[is_lig, 0].min() - 1.0)
        u_hi = max(u_hi, pos[is_lig, 0].max() + 1.0)
    if iv == 2:  # crop the vacuum: atoms +- 4 A along z
        v_lo, v_hi = pos[:, 1].min() - 4.0, pos[:, 1].max() + 4.0
    else:
        v_lo, v_hi = centre[1] - len_v / 2, centre[1] + len_v / 2
    vmax = float(np.abs(plane).max()) or 1e-6
    aspect = (v_hi - v_lo) / (u_hi - u_lo)  # equal axes: the figure follows the window's shape
    fig_h = 1.4 + 2.6 * min(max(aspect, 0.6), 2.4)
    fig, ax = new_figure(figsize=(4.2, fig_h))
    fig.subplots_adjust(top=1.0 - 0.3 / fig_h, bottom=0.9 / fig_h)  # no empty band at the top
    reps = (int(np.ceil(max(-u_lo, u_hi - len_u, 0) / len_u)) + 1, 1)
    reps = (reps[0], int(np.ceil(max(-v_lo, v_hi - len_v, 0) / len_v)) + 1)
    tiled = np.tile(plane, (2 * reps[0] + 1, 2 * reps[1] + 1))
    im = ax.imshow(
        tiled.T,
        origin="lower",
        extent=(
            -reps[0] * len_u,
            (reps[0] + 1) * len_u,
            -reps[1] * len_v,
            (reps[1] + 1) * len_v,
        ),
        cmap=_cmap(),
        vmin=-vmax,
        vmax=vmax,
        aspect="equal",
        interpolation="bilinear",
    )
    drawn: list[str] = []
    symbols = [site.specie.symbol for site in structure]
    slab_xy, slab_c = [], []
    for i in np.flatnonzero(~is_lig):
        d = (frac[i, normal] - position_frac + 0.5) % 1.0 - 0.5
        if abs(d) * len_n > 1.5:
            continue
        for su in range(-reps[0], reps[0] + 1):
            for sv in range(-reps[1], reps[1] + 1):
                u, v = pos[i] + [su * len_u, sv * len_v]
                if u_lo <= u <= u_hi and v_lo <= v <= v_hi:
                    slab_xy.append((u, v))
                    slab_c.append(ATOM_COLOURS.get(symbols[i], "#999999"))
                    drawn.append(symbols[i])
    if slab_xy:
        ax.scatter(
            *np.array(slab_xy).T,
            s=22,
            c=slab_c,
            edgecolors="black",
            linewidths=0.4,
            zorder=3,
            gid="slab-atoms",
        )
    lig = np.flatnonzero(is_lig)
    if lig.size:
        cart = frac[lig] @ lat
        segments = [
            (pos[lig[a]], pos[lig[b]]) for a, b in ligand_bonds([symbols[i] for i in lig], cart)
        ]
        ax.add_collection(
            LineCollection(segments, colors="#333333", linewidths=1.0, zorder=3, gid="ligand-bonds")
        )
        ax.scatter(
            *pos[lig].T,
            s=[10 if symbols[i] == "H" else 22 for i in lig],
            c=[ATOM_COLOURS.get(symbols[i], "#999999") for i in lig],
            edgecolors="black",
            linewidths=0.4,
            zorder=4,
            gid="ligand-atoms",
        )
        drawn += [symbols[i] for i in lig]
    ax.set_xlim(u_lo, u_hi)
    ax.set_ylim(v_lo, v_hi)
    labels = "xyz"
    ax.set_xlabel(f"{labels[iu]} ($\\mathrm{{\\AA}}$)")
    ax.set_ylabel(f"{labels[iv]} ($\\mathrm{{\\AA}}$)")
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(r"$\Delta\rho$ (e/$\mathrm{\AA}^3$)")
    handles = atom_legend_handles(list(dict.fromkeys(drawn)), edge_width=0.4)
    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.1),
            ncol=min(len(handles), 6),
            frameon=False,
            handletextpad=0.2,
            columnspacing=0.9,
        )
    ax.set_title(
        title
        or f"Δρ in the plane {labels[normal]} = {position_frac * len_n:.2f} Å "
        f"({position_frac:.2f} of the cell)",
        fontsize=8.5,
    )
    return save_figure(fig, output, dpi=dpi)


#: The automatic isovalue is this percentile of |Δρ| inside the drawn window ...
ISO_PERCENTILE = 99.0
#: ... and at least this, e/Å^3.
ISO_FLOOR_E_PER_A3 = 1e-4


def default_isovalue(delta_rho: np.ndarray) -> float:
    """Automatic isovalue (e/Å^3): the 99th percentile of |Δρ|, at least 1e-4.

    (:data:`ISO_PERCENTILE`, :data:`ISO_FLOOR_E_PER_A3`.) The isosurfaces then enclose the 1 % of
    grid points with the largest change; on a GPAW acetate/CsPbBr3 complex this is ~0.01 e/Å^3
    (10 % of the maximum would be 0.1 and show only the cores of the O atoms).
    """
    return max(float(np.percentile(np.abs(delta_rho), ISO_PERCENTILE)), ISO_FLOOR_E_PER_A3)


def _interface_window(
    z_rel: np.ndarray,
    is_ligand: np.ndarray,
    below_A: float = 6.0,
    above_A: float = 2.0,
    reach_A: float = 10.0,
) -> tuple[float, float]:
    """Window along z (A, from the vacuum origin) that frames the ligand/surface interface.

    From ``below_A`` under the slab's outer layer facing the ligand to ``above_A`` over the
    ligand's far end, but at most ``reach_A`` beyond the slab's outer layer (the charge moves at
    the anchor; a C18 chain's far end only stretches the plot). Without a ligand (or without a
    slab): all atoms ±3 A.
    """
    if not is_ligand.any() or is_ligand.all():
        return float(z_rel.min() - 3.0), float(z_rel.max() + 3.0)
    lig, slab = z_rel[is_ligand], z_rel[~is_ligand]
    if lig.mean() >= slab.mean():
        top = min(lig.max() + above_A, slab.max() + reach_A)
        return float(slab.max() - below_A), float(top)
    bottom = max(lig.min() - above_A, slab.min() - reach_A)
    return float(bottom), float(slab.min() + below_A)


def _anchor_centring_steps(
    frac: np.ndarray, z_rel: np.ndarray, is_ligand: np.ndarray, shape_xy
) -> tuple[int, int]:
    """Grid steps along x and y that move the ligand's anchor atoms to the cell's middle.

    Anchor atoms: the ligand atoms within 2.5 A (in z) of the ligand atom closest to the slab;
    their centre is the periodic (circular) mean, so a ligand split across the cell boundary is
    found whole. (0, 0) without a ligand or without a slab.
    """
    if not is_ligand.any() or is_ligand.all():
        return 0, 0
    dist = np.abs(z_rel - z_rel[~is_ligand].mean())
    near = is_ligand & (dist <= dist[is_ligand].min() + 2.5)
    steps = []
    for ax in (0, 1):
        angle = 2 * np.pi * frac[near, ax]
        centre = np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()) / (2 * np.pi)
        steps.append(int(round((0.5 - centre) * shape_xy[ax])))
    return steps[0], steps[1]


def plot_isosurface(
    delta_rho: np.ndarray,
    structure,
    output: str | Path,
    *,
    iso_e_per_A3: float | None = None,
    dpi: int = 150,
    max_faces: int = 60000,
    title: str | None = None,
    z_window_A: tuple[float, float] | None = None,
    ligand_indices: Sequence[int] | None = None,
    record: dict | None = None,
) -> Path:
    """3D isosurfaces of Δρ at +iso (yellow, accumulation) and −iso (cyan, depletion) with atoms.

    The cell is unwrapped along z from the middle of the vacuum and shifted in x, y so that the
    ligand's anchor atoms sit in the middle of the drawing; only the interface is drawn:
    from 6 A below the slab's outer layer to 2 A above the ligand, at most 10 A above the slab
    (``z_window_A`` overrides it, in A from the vacuum origin). The axes are the cell's Cartesian
    coordinates x, y, z in A (as in the planar-average and slice figures: every atom is drawn at
    its cell position or a periodic image of it). The automatic isovalue is
    :func:`default_isovalue` of Δρ inside that window; the isovalue used is printed in the
    legend's title, and the legend lists only the surfaces drawn (a sign whose |Δρ| never reaches
    the isovalue has no surface and no entry) and the elements drawn. ``ligand_indices``: 0-based
    ligand atoms of ``structure`` (``None``: the element rule of
    :mod:`dftflow.analysis.ligand_split`; :func:`chgdiff_plots` passes the result's).
    ``record``: when given, ``record["isovalue_e_per_A3"]`` and ``record["surfaces"]`` (the
    surfaces drawn, ``"accumulation"``/``"depletion"``) are set.
    """
    from matplotlib.patches import Patch
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes

    from dftflow.analysis.plotting import (
        ACCUMULATION_COLOUR,
        ATOM_COLOURS,
        DEPLETION_COLOUR,
        atom_legend_handles,
        save_figure,
    )

    lat = np.asarray(structure.lattice.matrix)
    shape = np.array(delta_rho.shape)
    nz = int(shape[2])
    origin, _ = vacuum_middle_fraction(structure, 2)
    shift = int(round(origin * nz)) % nz
    field_all = np.roll(delta_rho, -shift, axis=2)  # plane 0 is now the vacuum middle
    frac = np.mod(structure.frac_coords, 1.0)
    frac[:, 2] = np.mod(frac[:, 2] - shift / nz, 1.0)
    c_height = axis_height_A(structure.lattice.matrix, 2)
    z_rel = frac[:, 2] * c_height
    is_lig = ligand_split(structure, ligand_indices).mask
    steps = _anchor_centring_steps(frac, z_rel, is_lig, shape[:2])
    for ax, step in enumerate(steps):
        field_all = np.roll(field_all, step, axis=ax)
        frac[:, ax] = np.mod(frac[:, ax] + step / shape[ax], 1.0)
    # drawing coordinates = the cell's: undo the rolls (z as the planar-average plot shows it)
    z_back = shift / nz - (1.0 if shift > nz / 2 else 0.0)
    offset = np.array([-steps[0] / shape[0], -steps[1] / shape[1], z_back]) @ lat
    zmin, zmax = z_window_A if z_window_A is not None else _interface_window(z_rel, is_lig)
    zmin, zmax = max(zmin, 0.0), min(zmax, c_height)
    if zmax <= zmin:
        raise InputError(f"empty z window for the isosurface plot: {zmin:.2f}..{zmax:.2f} A")
    k0 = max(int(np.floor(zmin / c_height * nz)) - 1, 0)
    k1 = min(int(np.ceil(zmax / c_height * nz)) + 2, nz)
    field_win = field_all[:, :, k0:k1]
    iso = iso_e_per_A3 if iso_e_per_A3 is not None else default_isovalue(field_win)
    if iso <= 0:
        raise InputError(f"isovalue must be positive, got {iso}")
    drawn: list[str] = []

    plt = __import__("matplotlib.pyplot", fromlist=["figure"])
    width = float(np.linalg.norm(lat[0] + lat[1]))
    fig = plt.figure(figsize=(4.8, 3.0 + 2.4 * min((zmax - zmin) / max(width, 1.0), 2.0)))
    ax = fig.add_subplot(111, projection="3d")
    surfaces = (("accumulation", 1.0, ACCUMULATION_COLOUR), ("depletion", -1.0, DEPLETION_COLOUR))
    for name, sign, colour in surfaces:
        field = sign * field_win
        if field.max() <= iso:
            continue
        step = 1
        while True:
            verts, faces, _, _ = marching_cubes(field, level=iso, step_size=step)
            if len(faces) <= max_faces or step >= 4:
                break
            step += 1
        verts[:, 2] += k0
        cart = (verts / shape) @ lat + offset
        ax.add_collection3d(
            Poly3DCollection(
                cart[faces], facecolor=colour, edgecolor="none", alpha=0.6, gid=f"iso-{name}"
            )
        )
        drawn.append(name)
    xyz = frac @ lat + offset
    shown = (z_rel >= zmin - 0.5) & (z_rel <= zmax + 0.5)
    elements: list[str] = []
    for site, p, keep in zip(structure, xyz, shown, strict=True):
        if not keep:
            continue
        symbol = site.specie.symbol
        if symbol not in elements:
            elements.append(symbol)
        ax.scatter(
            *p,
            s=14 if symbol == "H" else 34,
            color=ATOM_COLOURS.get(symbol, "#999999"),
            edgecolors="black",
            linewidths=0.3,
            depthshade=False,
        )
    base = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]) @ lat[:2, :2] + offset[:2]
    zmin, zmax = zmin + offset[2], zmax + offset[2]
    for z in (zmin, zmax):
        ax.plot(base[:, 0], base[:, 1], z, color="grey", lw=0.5)
    for x, y in base[:4]:
        ax.plot([x, x], [y, y], [zmin, zmax], color="grey", lw=0.5)
    xs, ys = base[:, 0], base[:, 1]
    ax.set_xlim(xs.min(), xs.max())
    ax.set_ylim(ys.min(), ys.max())
    ax.set_zlim(zmin, zmax)
    ax.set_box_aspect((xs.max() - xs.min(), ys.max() - ys.min(), zmax - zmin))
    ax.set_xlabel(r"x ($\mathrm{\AA}$)")
    ax.set_ylabel(r"y ($\mathrm{\AA}$)")
    ax.set_zlabel(r"z ($\mathrm{\AA}$)")
    from matplotlib.ticker import MaxNLocator

    for axis in (ax.xaxis, ax.yaxis):  # few ticks: the short in-plane axes stay readable
        axis.set_major_locator(MaxNLocator(nbins=3, integer=True))
    ax.view_init(elev=10, azim=-65)
    text = {"accumulation": ("+", ACCUMULATION_COLOUR), "depletion": ("−", DEPLETION_COLOUR)}
    handles = [
        Patch(color=text[name][1], label=f"{name} (Δρ = {text[name][0]}iso)") for name in drawn
    ] + atom_legend_handles(elements, edge_width=0.3)
    how = "--iso" if iso_e_per_A3 is not None else f"auto: {ISO_PERCENTILE:g}th percentile of |Δρ|"
    legend_title = f"iso = {iso:.1e} e/Å³\n({how})"
    if not drawn:
        legend_title += "\nno surface: |Δρ| < iso"
    ax.grid(False)
    fig.subplots_adjust(top=1.02, bottom=0.0)  # a 3D box leaves its own margin inside the axes
    ax.set_title(title or "Δρ isosurfaces at the interface", pad=2)
    # the legend right of everything the 3D axes draw (its z label included), never on it
    right = ax.get_tightbbox(fig.canvas.get_renderer()).transformed(fig.transFigure.inverted()).x1
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(right + 0.01, 0.85),
        bbox_transform=fig.transFigure,
        fontsize=7,
        title=legend_title,
        title_fontsize=7,
        alignment="left",
        frameon=False,
    )
    if record is not None:
        record["isovalue_e_per_A3"] = iso
        record["surfaces"] = list(drawn)
    return save_figure(fig, output, dpi=dpi)


def chgdiff_plots(
    ab,
    a,
    b,
    plot_dir: str | Path,
    *,
    axis: int | str = 2,
    iso_e_per_A3: float | None = None,
    dpi: int = 150,
    prefix: str = "chgdiff",
    output: str | Path | None = None,
    ligand_indices: Sequence[int] | None = None,
) -> ChgDiffResult:
    """Compute Δρ and write the planar-average, slice and isosurface plots into ``plot_dir``.

    ``ligand_indices`` as in :func:`charge_density_difference`.
    """
    plot_dir = Path(plot_dir)
    if not plot_dir.is_dir():
        if not plot_dir.parent.is_dir():
            raise InputError(f"cannot create plot directory {plot_dir}: parent does not exist")
        plot_dir.mkdir()
    result, delta_rho, structure = charge_density_difference(
        ab, a, b, axis=axis, output=output, ligand_indices=ligand_indices, return_grid=True
    )
    record: dict = {}
    files = {
        "planar_average": str(
            plot_planar_average(result, plot_dir / f"{prefix}_planar.png", dpi=dpi)
        ),
        "slice": str(
            plot_slice(
                delta_rho,
                structure,
                plot_dir / f"{prefix}_slice.png",
                dpi=dpi,
                ligand_indices=result.ligand_indices,
            )
        ),
        "isosurface": str(
            plot_isosurface(
                delta_rho,
                structure,
                plot_dir / f"{prefix}_iso.png",
                iso_e_per_A3=iso_e_per_A3,
                dpi=dpi,
                ligand_indices=result.ligand_indices,
                record=record,
            )
        ),
    }
    result.files = files
    result.isovalue_e_per_A3 = record["isovalue_e_per_A3"]
    return result
