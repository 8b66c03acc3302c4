"""Total, element-projected and group-projected densities of states, and multi-system DOS panels.

Reads the run's pymatgen ``CompleteDos`` (:func:`dftflow.parse.run.load_complete_dos`: the embedded
engine's ``dos.json.gz`` or VASP's vasprun.xml, whose projections need LORBIT >= 10). The default
groups are ``"ligand"`` (the atoms the builder added: the run's ``TaskDoc.ligand_indices``, an N, S
or P anchor included) and ``"slab"`` (every other atom), summed site by site; a run that records no
ligand indices falls back to the element rule of :mod:`dftflow.analysis.ligand_split`, stated in
``ligand_atoms_from``. Groups given as element lists (``--groups NAME=El1,El2``) are the user's own
definition and are summed element by element. Energies are shifted so that zero is the Fermi level
(``align="fermi"``) or the valence-band maximum (``align="vbm"``, the occupation-consistent VBM of
:mod:`dftflow.analysis.midgap`: the highest occupied state; a level pinned at E_F is not the
zero). Spin-down DOS is returned and drawn negative (mirrored). Optional Gaussian broadening
``sigma_eV`` is applied on the energy grid (on top of VASP's own smearing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from pymatgen.electronic_structure.core import Spin

from dftflow.analysis.ligand_split import LigandSplit, ligand_indices_of_run, ligand_split
from dftflow.errors import InputError, OutputError
from dftflow.parse.run import load_complete_dos, run_directory

#: ``groups`` value: the ligand atoms vs all other atoms, by site (see the module docstring).
LIGAND_SLAB = "ligand/slab"
GROUP_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
#: Colour of the gap-state markers (the mid-gap detector's states) in DOS panels.
GAP_STATE_COLOUR = "#d4007a"
#: Legend text of the gap-state markers.
GAP_STATE_LABEL = "gap state (mid-gap detector)"
#: Host named in panel titles when the slab is made of Cs, Pb and Br (the builder's only facet).
CSPBBR3_001 = "CsPbBr3 (001)"


class GapStateMark(BaseModel):
    """A state of the mid-gap detector as drawn in a DOS panel."""

    energy_eV: float = Field(description="on the panel's energy axis (minus the plot's zero), eV")
    spin: str = Field(description="'up' or 'down'")
    filling: str = ""


class DosCurves(BaseModel):
    """DOS of one system on its shifted energy axis (states/eV; spin down negative)."""

    directory: str
    label: str = Field(description="the system's name, the panel's title")
    description: str = Field(default="", description="the model, right of the panel's title")
    align: str
    zero_eV: float = Field(description="absolute energy (VASP scale) of the plot's zero, eV")
    efermi_eV: float
    energies_eV: list[float]
    total: dict[str, list[float]]
    groups: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    group_elements: dict[str, list[str]] = Field(default_factory=dict)
    group_atoms: dict[str, list[int]] = Field(
        default_factory=dict, description="0-based atoms of each by-site group (ligand, slab)"
    )
    ligand_atoms_from: str | None = Field(
        default=None, description="where the ligand atoms of the by-site groups came from"
    )
    elements: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    sigma_eV: float
    ispin: int
    has_projections: bool
    gap_states: list[GapStateMark] = Field(
        default_factory=list, description="the mid-gap detector's states, marked in the panel"
    )


def host_name(slab_elements: Sequence[str]) -> str:
    """Name of a slab in figure titles: :data:`CSPBBR3_001` for Cs/Pb/Br, else its elements."""
    elements = sorted(set(slab_elements))
    if set(elements) == {"Cs", "Pb", "Br"}:
        return CSPBBR3_001
    return "".join(elements) + " slab" if elements else "slab"


def system_name(structure, ligand_indices: Sequence[int] | None) -> str:
    """A system's name for a figure, from its atoms (never a directory name).

    ``"C2H3O2 on CsPbBr3 (001)"`` (the ligand's Hill formula on :func:`host_name` of the other
    atoms), ``"clean CsPbBr3 (001) slab"`` for a run without ligand atoms.
    """
    split = ligand_split(structure, ligand_indices)
    slab = [structure[i].specie.symbol for i in split.slab_indices]
    host = host_name(slab)
    if not split.ligand_indices:
        return f"clean {host}" + ("" if host.endswith("slab") else " slab")
    from collections import Counter

    from pymatgen.core import Composition

    ligand = Composition(Counter(structure[i].specie.symbol for i in split.ligand_indices))
    return f"{ligand.hill_formula.replace(' ', '')} on {host}"


def mark_gap_states(curves: DosCurves, report) -> DosCurves:
    """``curves`` with the gap states of ``report`` (a MidgapReport of the same run) marked.

    Their energies are moved onto the panel's axis (minus ``curves.zero_eV``).
    """
    curves.gap_states = [
        GapStateMark(energy_eV=s.energy_eV - curves.zero_eV, spin=s.spin, filling=s.filling)
        for s in report.midgap_states
    ]
    return curves


def parse_groups(specs: Sequence[str] | None) -> dict[str, list[str]] | None:
    """Parse ``["ligand=C,H,O", "slab=Cs,Pb,Br"]`` into ``{"ligand": [...], ...}``."""
    if not specs:
        return None
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, elements = spec.partition("=")
        items = [e.strip() for e in elements.split(",") if e.strip()]
        if not sep or not name.strip() or not items:
            raise InputError(f"bad group {spec!r}: use NAME=El1,El2 (e.g. ligand=C,H,O)")
        groups[name.strip()] = items
    return groups


def default_groups(elements: Sequence[str]) -> dict[str, list[str]]:
    """One group per element: the default of a system without ligand atoms."""
    return {e: [e] for e in elements}


def run_ligand_split(
    directory: str | Path, ligand_indices: Sequence[int] | None = None
) -> LigandSplit:
    """Ligand atoms of a run: ``ligand_indices``, else its recorded ones, else the element rule."""
    path = run_directory(directory)
    if ligand_indices is None:
        ligand_indices = ligand_indices_of_run(directory)
    return ligand_split(load_complete_dos(path).structure, ligand_indices)


def _site_groups(split: LigandSplit) -> dict[str, list[int]]:
    """``{"slab": [...], "ligand": [...]}`` without empty groups."""
    groups = {"slab": split.slab_indices, "ligand": split.ligand_indices}
    return {name: idx for name, idx in groups.items() if idx}


def _broaden(values: np.ndarray, energies: np.ndarray, sigma_eV: float) -> np.ndarray:
    if sigma_eV <= 0:
        return values
    from scipy.ndimage import gaussian_filter1d

    step = float(np.mean(np.diff(energies)))
    return gaussian_filter1d(values, sigma_eV / step, mode="constant")


def _spin_arrays(dos, mask, energies, sigma) -> dict[str, list[float]]:
    from pymatgen.electronic_structure.core import Spin

    out = {}
    for spin, label, sign in ((Spin.up, "up", 1.0), (Spin.down, "down", -1.0)):
        if spin in dos.densities:
            dens = _broaden(np.asarray(dos.densities[spin], dtype=float), energies, sigma)
            out[label] = (sign * dens[mask]).tolist()
    return out


def host_vbm_eV(directory: str | Path) -> float:
    """VBM (highest occupied state over spins, :mod:`dftflow.analysis.midgap`), eV, code's scale."""
    from dftflow.analysis.midgap import find_midgap_states

    report = find_midgap_states(directory)
    values = [v for v in report.vbm_eV.values() if v is not None]
    if not values:
        raise OutputError(f"{directory}: no valence-band maximum found (no occupied band states)")
    return max(values)


def dos_curves(
    directory: str | Path,
    *,
    groups: Mapping[str, Sequence[str]] | str | None = None,
    elements: bool = False,
    align: str = "fermi",
    window_eV: tuple[float, float] = (-6.0, 4.0),
    sigma_eV: float = 0.0,
    label: str | None = None,
    vbm_eV: float | None = None,
    ligand_indices: Sequence[int] | None = None,
) -> DosCurves:
    """DOS of one run, shifted and cut to ``window_eV``.

    Parameters
    ----------
    directory
        Run directory of any engine, a TaskDoc or a TaskDoc JSON path.
    groups
        :data:`LIGAND_SLAB` (ligand atoms vs the rest, by site) or ``{name: [elements]}`` to
        project on; ``None`` gives :data:`LIGAND_SLAB` when the run has ligand atoms and one group
        per element otherwise (only when the run has projections). Asking for groups without
        projections is an error.
    elements
        Also return each element's projected DOS.
    align
        ``"fermi"`` or ``"vbm"``.
    window_eV
        Energy window relative to the zero, eV.
    sigma_eV
        Extra Gaussian broadening, eV (0: none).
    label
        The system's name, the panel's title (default: :func:`system_name` of the run's atoms).
    vbm_eV
        The run's host VBM when the caller already has it (:func:`host_vbm_eV`); with
        ``align="vbm"`` it is used instead of being found again.
    ligand_indices
        0-based ligand atoms (the builder's, from the run's TaskDoc); ``None``: those recorded
        for the run (TaskDoc, ``taskdoc.json`` in the directory), else the element rule.
    """
    if align not in ("fermi", "vbm"):
        raise InputError(f"unknown alignment {align!r}: use fermi or vbm")
    lo, hi = window_eV
    if not hi > lo:
        raise InputError(f"empty energy window: {lo} to {hi} eV")
    if sigma_eV < 0:
        raise InputError(f"broadening must be >= 0 eV, got {sigma_eV}")
    path = run_directory(directory)
    cdos = load_complete_dos(directory)
    if cdos is None or len(cdos.energies) == 0:
        raise OutputError(f"{path}: the run holds no DOS")
    has_proj = bool(cdos.pdos)
    if (groups or elements) and not has_proj:
        raise InputError(
            f"{path}: no projected DOS (run with LORBIT >= 10) but groups/elements were asked for"
        )
    efermi = float(cdos.efermi)
    if align == "fermi":
        zero = efermi
    else:
        zero = vbm_eV if vbm_eV is not None else host_vbm_eV(path)
    energies = np.asarray(cdos.energies, dtype=float) - zero
    mask = (energies >= lo) & (energies <= hi)
    if not mask.any():
        raise InputError(
            f"empty energy window: no DOS points between {lo} and {hi} eV "
            f"(DOS spans {energies.min():.2f} to {energies.max():.2f} eV relative to {align})"
        )
    if label is None:
        label = system_name(
            cdos.structure,
            ligand_indices if ligand_indices is not None else ligand_indices_of_run(directory),
        )
    curves = DosCurves(
        directory=str(path),
        label=label,
        align=align,
        zero_eV=zero,
        efermi_eV=efermi,
        energies_eV=energies[mask].tolist(),
        total=_spin_arrays(cdos, mask, energies, sigma_eV),
        sigma_eV=sigma_eV,
        ispin=2 if Spin.down in cdos.densities else 1,
        has_projections=has_proj,
    )
    if has_proj:
        el_dos = {el.symbol: d for el, d in cdos.get_element_dos().items()}
        if groups is None or groups == LIGAND_SLAB:
            if ligand_indices is None:
                ligand_indices = ligand_indices_of_run(directory)
            split = ligand_split(cdos.structure, ligand_indices)
            if groups == LIGAND_SLAB or split.ligand_indices:
                curves.ligand_atoms_from = split.ligand_atoms_from
                for name, idx in _site_groups(split).items():
                    _add_site_group(curves, cdos, name, idx, mask, energies, sigma_eV)
            else:
                _add_element_groups(
                    curves, el_dos, default_groups(sorted(el_dos)), mask, energies, sigma_eV
                )
        elif isinstance(groups, str):
            raise InputError(f"unknown groups {groups!r}: use {LIGAND_SLAB!r} or NAME=El1,El2")
        else:
            _add_element_groups(curves, el_dos, dict(groups), mask, energies, sigma_eV)
        if elements:
            curves.elements = {
                el: _spin_arrays(d, mask, energies, sigma_eV) for el, d in sorted(el_dos.items())
            }
    return curves


def _add_site_group(curves, cdos, name, indices, mask, energies, sigma_eV) -> None:
    """Sum the projected DOS of the sites ``indices`` into group ``name`` of ``curves``."""
    dens = None
    for i in indices:
        site_dos = cdos.get_site_dos(cdos.structure[i])
        dens = site_dos if dens is None else dens + site_dos
    curves.groups[name] = _spin_arrays(dens, mask, energies, sigma_eV)
    curves.group_atoms[name] = list(indices)
    curves.group_elements[name] = sorted({cdos.structure[i].specie.symbol for i in indices})


def _add_element_groups(curves, el_dos, use_groups, mask, energies, sigma_eV) -> None:
    """Sum element-projected DOS into the user's ``{name: [elements]}`` groups."""
    from pymatgen.core.periodic_table import Element

    bad = sorted({e for g in use_groups.values() for e in g if not Element.is_valid_symbol(e)})
    if bad:
        raise InputError(f"unknown element symbol(s) in groups: {', '.join(bad)}")
    for name, members in use_groups.items():
        dens = None
        for el in members:
            if el in el_dos:
                dens = el_dos[el] if dens is None else dens + el_dos[el]
        if dens is not None:
            curves.groups[name] = _spin_arrays(dens, mask, energies, sigma_eV)
            curves.group_elements[name] = [e for e in members if e in el_dos]


def plot_dos_panels(
    curves: Sequence[DosCurves],
    output: str | Path,
    *,
    show_elements: bool = False,
    dpi: int = 150,
    title: str | None = None,
) -> Path:
    """One panel per system on a shared energy axis (like the paper's DOS figure).

    Each panel is titled with the system's name (``label``, left) and its model (``description``,
    right). Total DOS as a grey area, group (or element) projections as lines, the zero (E_F or
    VBM) as a dashed line. A spin-polarised panel draws spin up above zero and spin down mirrored
    below it, and says so right of the panel ("spin ↑", "spin ↓"). The mid-gap detector's states
    (``gap_states``) are marked at their energies by a magenta dashed line with a triangle, in
    the half of their spin (whole height without spin polarisation).
    """
    from dftflow.analysis.plotting import new_figure, save_figure

    if not curves:
        raise InputError("no DOS to plot")
    n = len(curves)
    panel_h, bottom_h = 1.6, 0.55  # inches: a panel, the x axis
    descriptions = [_fit_description(formula_subscripts(c.label), c.description) for c in curves]
    lines = [d.count("\n") + 1 if d else 1 for d in descriptions]
    gap_h = 0.31 + 0.14 * max(lines[1:], default=1)  # between panels: the next panel's titles
    fig, axes = new_figure(n, 1, figsize=(4.8, panel_h * n), sharex=True, squeeze=False)
    names: list[str] = []
    for c in curves:
        for g in c.elements if show_elements else c.groups:
            if g not in names:
                names.append(g)
    colours = {g: GROUP_COLOURS[i % len(GROUP_COLOURS)] for i, g in enumerate(names)}
    for ax, c, description in zip(axes[:, 0], curves, descriptions, strict=True):
        e = np.asarray(c.energies_eV)
        for spin in c.total:
            ax.fill_between(
                e,
                np.asarray(c.total[spin]),
                0,
                color="#cfcfcf",
                lw=0,
                label="total" if spin == "up" else None,
            )
        projections = c.elements if show_elements else c.groups
        for name, spins in projections.items():
            for spin, values in spins.items():
                ax.plot(
                    e, values, color=colours[name], lw=1.0, label=name if spin == "up" else None
                )
        ax.axvline(0.0, color="black", ls="--", lw=0.7)
        if c.ispin == 2:
            ax.axhline(0.0, color="black", lw=0.5)
            for y, text in ((0.75, "spin ↑"), (0.25, "spin ↓")):
                ax.text(
                    1.015,
                    y,
                    text,
                    transform=ax.transAxes,
                    rotation=90,
                    ha="left",
                    va="center",
                    fontsize=8,
                    gid="spin-label",
                )
        ymax = max(np.abs(np.asarray(v)).max() for v in c.total.values())
        ax.set_ylim(-1.08 * ymax if c.ispin == 2 else 0, 1.08 * ymax)
        _mark_gap_states(ax, c)
        ax.set_title(formula_subscripts(c.label), loc="left", fontweight="bold", fontsize=9, pad=3)
        if description:
            ax.set_title(description, loc="right", fontsize=8, pad=3)
        ax.set_ylabel("DOS (states/eV)")
    handles: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    ncol = min(len(handles), 4)
    title_h = 0.3 if title else 0.0
    legend_h = 0.2 * -(-len(handles) // ncol) + 0.1
    top_h = title_h + legend_h + 0.11 + 0.14 * lines[0]  # + the first panel's own titles
    fig_h = panel_h * n + gap_h * (n - 1) + top_h + bottom_h
    fig.set_size_inches(4.8, fig_h)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, 1.0 - title_h / fig_h),
        ncol=ncol,
        frameon=False,
    )
    axes[-1, 0].set_xlim(
        min(c.energies_eV[0] for c in curves), max(c.energies_eV[-1] for c in curves)
    )
    zero = "E_F" if curves[0].align == "fermi" else r"E_\mathrm{VBM}"
    axes[-1, 0].set_xlabel(f"${'E - ' + zero}$ (eV)")
    if title:
        fig.suptitle(title, y=1.0 - 0.05 / fig_h, va="top")
    fig.subplots_adjust(hspace=gap_h / panel_h, top=1.0 - top_h / fig_h, bottom=bottom_h / fig_h)
    return save_figure(fig, output, dpi=dpi)


def _fit_description(title: str, description: str) -> str:
    """``description`` wrapped to fit right of ``title`` above a 4.8 in wide panel.

    Widths estimated from the character counts (bold 9 pt title, 8 pt description, a 268 pt
    axis): the two titles never overlap, a long model name takes more lines.
    """
    import textwrap

    if not description:
        return ""
    room = int((268 - 5.6 * len(title) - 12) / 4.4)
    if len(description) <= room:
        return description
    return textwrap.fill(description, max(room, 14), break_on_hyphens=False)


def formula_subscripts(text: str) -> str:
    """``text`` with the counts of chemical formulas as subscripts: ``CsPbBr3`` -> ``CsPbBr₃``.

    Only digits right after a letter (``(001)`` and ``2-HA`` stay as they are).
    """
    import re

    sub = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
    return re.sub(r"(?<=[A-Za-z])\d+", lambda m: m.group(0).translate(sub), text)


def _mark_gap_states(ax, c: DosCurves) -> None:
    """Draw the mid-gap detector's states of ``c`` into ``ax`` (lines ``gid="gap-state"``)."""
    lo, hi = c.energies_eV[0], c.energies_eV[-1]
    for i, state in enumerate(c.gap_states):
        if not lo <= state.energy_eV <= hi:
            continue
        down = c.ispin == 2 and state.spin == "down"
        y0, y1 = (0.0, 0.5) if down else (0.5 if c.ispin == 2 else 0.0, 1.0)
        ax.axvline(
            state.energy_eV,
            ymin=y0,
            ymax=y1,
            color=GAP_STATE_COLOUR,
            lw=1.2,
            ls=(0, (3, 1.5)),
            alpha=0.8,
            gid="gap-state",
            label=GAP_STATE_LABEL if i == 0 else None,
            zorder=1.5,  # under the DOS curves: the state's own peak stays visible
        )
        ax.plot(
            state.energy_eV,
            0.03 if down else 0.97,
            marker="^" if down else "v",
            color=GAP_STATE_COLOUR,
            markersize=5,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=5,
        )


def group_overlap(
    curves: DosCurves,
    first: str = "ligand",
    second: str = "slab",
    window_eV: tuple[float, float] = (-5.0, -3.0),
) -> float | None:
    """Overlap of two projected DOS in a window: ∫ min(g1, g2) dE over both spins, states.

    The paper's measure of ligand-QD hybridisation is the PDOS overlap between -5 and -3 eV; this
    is its number. ``None`` when a group is missing.
    """
    if first not in curves.groups or second not in curves.groups:
        return None
    e = np.asarray(curves.energies_eV)
    mask = (e >= window_eV[0]) & (e <= window_eV[1])
    if mask.sum() < 2:
        return None
    total = 0.0
    for spin in curves.groups[first]:
        g1 = np.abs(np.asarray(curves.groups[first][spin]))[mask]
        g2 = np.abs(np.asarray(curves.groups[second][spin]))[mask]
        total += float(np.trapezoid(np.minimum(g1, g2), e[mask]))
    return total


def common_groups(directories: Sequence[str | Path]) -> dict[str, list[str]] | str:
    """One default grouping for several systems so that every panel shows the same curves.

    :data:`LIGAND_SLAB` (each run's own ligand atoms vs the rest) when any system has ligand
    atoms (:func:`run_ligand_split`); otherwise one group per element of all systems.
    """
    elements: set[str] = set()
    for d in directories:
        split = run_ligand_split(d)
        if split.ligand_indices:
            return LIGAND_SLAB
        elements |= {el.symbol for el in load_complete_dos(d).structure.composition}
    return default_groups(sorted(elements))


def dos_has_projections(directory: str | Path) -> bool:
    """Whether the run's DOS has site projections."""
    cdos = load_complete_dos(directory)
    return cdos is not None and bool(cdos.pdos)
