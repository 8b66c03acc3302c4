"""Matplotlib helpers: Agg backend, one publication style, atomic PNG writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from dftflow.errors import InputError  # noqa: E402
from dftflow.fileio import atomic_path  # noqa: E402

STYLE = {
    "font.size": 9,
    "axes.labelsize": 9,
    "axes.titlesize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.linewidth": 0.8,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "savefig.bbox": "tight",
}

#: Colours of the paper's charge-density-difference figure: accumulation / depletion.
ACCUMULATION_COLOUR = "#f2c200"
DEPLETION_COLOUR = "#00b7d4"

#: Colours of atoms in drawings, by element (CPK-like; Pb and Br shifted to stay distinct).
ATOM_COLOURS = {
    "Cs": "#57178f",
    "Pb": "#6f83ad",  # slate blue: told apart from C (dark grey) in small markers
    "Br": "#a5652a",  # brown: told apart from O (red)
    "C": "#404040",
    "H": "#e6e6e6",
    "O": "#ff0d0d",
    "N": "#3050f8",
    "Ga": "#c28f8f",
    "Mg": "#8aff00",
    "S": "#ffff30",
}


#: Notes every figure saved inside :func:`figure_note` carries (innermost last).
_NOTES: list[str] = []


@contextmanager
def figure_note(note: str | None) -> Iterator[None]:
    """Label every figure saved in this block with ``note`` (None: no label).

    Used for ``"mock (not physical)"``: the note is drawn in red above the figure and stored in
    the PNG's ``Description`` text chunk, so a figure of mock numbers never looks physical.
    """
    if note:
        _NOTES.append(note)
    try:
        yield
    finally:
        if note:
            _NOTES.pop()


def new_figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """A figure and axes in the dftflow style."""
    plt.rcParams.update(STYLE)
    return plt.subplots(nrows, ncols, **kwargs)


def save_figure(fig, output: str | Path, *, dpi: int = 150) -> Path:
    """Save ``fig`` as PNG atomically (temp file then rename) and close it.

    Inside :func:`figure_note` the figure is labelled with the note first.
    """
    output = Path(output)
    if not output.parent.is_dir():
        plt.close(fig)
        raise InputError(f"cannot write {output}: directory {output.parent} does not exist")
    fmt = output.suffix.lstrip(".") or "png"
    metadata = {}
    if _NOTES:
        note = "; ".join(dict.fromkeys(_NOTES))
        # above everything already drawn (a legend placed over the axes included)
        top = fig.get_tightbbox(fig.canvas.get_renderer()).y1 / fig.get_figheight()
        fig.text(
            0.5,
            max(1.0, top) + 0.01,
            note,
            ha="center",
            va="bottom",
            color="#c00000",
            fontweight="bold",
        )
        metadata = {"Description": note} if fmt == "png" else {}
    try:
        with atomic_path(output) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt, metadata=metadata or None)
    finally:
        plt.close(fig)
    return output


def atom_legend_handles(elements: list[str], *, edge_width: float) -> list:
    """Legend entries (one marker per element, in :data:`ATOM_COLOURS`) for the atoms drawn."""
    from matplotlib.lines import Line2D

    return [
        Line2D(
            [],
            [],
            ls="none",
            marker="o",
            markersize=5,
            markerfacecolor=ATOM_COLOURS.get(el, "#999999"),
            markeredgecolor="black",
            markeredgewidth=edge_width,
            label=el,
        )
        for el in elements
    ]
