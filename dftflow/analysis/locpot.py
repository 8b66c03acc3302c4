"""Planar-averaged LOCPOT: vacuum level and work function (for aligning slab DOS to vacuum)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dftflow.parse.volumetric import LocpotProfile, locpot_profile


def locpot_summary(
    path: str | Path, *, axis: int | str = 2, efermi_eV: float | None = None
) -> tuple[dict[str, Any], LocpotProfile]:
    """JSON-ready summary (planar average in eV, vacuum level, E_F, work function) and profile."""
    profile = locpot_profile(path, axis=axis, efermi_eV=efermi_eV)
    summary = {
        "axis": profile.axis,
        "z_A": np.asarray(profile.z_A).tolist(),
        "planar_average_eV": np.asarray(profile.planar_average_eV).tolist(),
        "vacuum_level_eV": profile.vacuum_level_eV,
        "efermi_eV": profile.efermi_eV,
        "work_function_eV": profile.work_function_eV,
    }
    return summary, profile


def plot_locpot(profile: LocpotProfile, output: str | Path, *, dpi: int = 150) -> Path:
    """Planar-averaged potential with the vacuum level and E_F marked."""
    from dftflow.analysis.plotting import new_figure, save_figure

    fig, ax = new_figure(figsize=(4.8, 3.0))
    ax.plot(profile.z_A, profile.planar_average_eV, color="black", lw=1.0, label="planar average")
    if profile.vacuum_level_eV is not None:
        ax.axhline(
            profile.vacuum_level_eV,
            color="#1f77b4",
            ls="--",
            lw=0.8,
            label=f"vacuum {profile.vacuum_level_eV:.2f} eV",
        )
    if profile.efermi_eV is not None:
        ax.axhline(
            profile.efermi_eV,
            color="#d62728",
            ls=":",
            lw=0.8,
            label=f"$E_F$ {profile.efermi_eV:.2f} eV",
        )
    ax.set_xlabel(r"$z$ ($\mathrm{\AA}$)")
    ax.set_ylabel(r"$\bar V(z)$ (eV)")
    wf = profile.work_function_eV
    if wf is not None:
        ax.set_title(f"work function {wf:.2f} eV")
    ax.legend(frameon=False, loc="lower right")
    return save_figure(fig, output, dpi=dpi)
