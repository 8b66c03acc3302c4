"""Ligand vs slab atoms for analysis: the builder's indices, an element rule only when unknown.

Every analysis that splits a system into ligand and slab (DOS groups, the Δρ interface plane,
the ligand weight of a mid-gap state, the report) asks :func:`ligand_split` and reports where the
split came from (``ligand_atoms_from``):

* ``"builder indices"``: the atoms the builder added (``TaskDoc.ligand_indices``, given by the
  caller or found in the run's TaskDoc: a TaskDoc object, a TaskDoc JSON path, ``taskdoc.json``
  in the run directory, or the ``POSCAR.ligand.json`` that ``dftflow inputs`` writes beside the
  POSCAR of a hand-run VASP directory). An N, S or P anchor is ligand.
* ``"element rule (C,H,O,N,S,P)"``: only for runs dftflow did not build (a VASP directory without
  either file). Atoms of those elements are ligand when the structure holds C or H at all (an
  oxide's O or a nitride's N is host when there is no organic matter; in a nitride *with* an
  organic ligand the rule is wrong, which is why it is only a fallback and always stated).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from dftflow.errors import InputError
from dftflow.parse.run import read_taskdoc_file
from dftflow.schemas import TASKDOC_FILE, TaskDoc

#: Elements the fallback rule counts as ligand (organic ligands and their N, S, P anchors).
ELEMENT_RULE_ELEMENTS = ("C", "H", "O", "N", "S", "P")
#: ``ligand_atoms_from`` values.
FROM_BUILDER = "builder indices"
FROM_ELEMENT_RULE = f"element rule ({','.join(ELEMENT_RULE_ELEMENTS)})"
#: Name of the TaskDoc file in a run directory (written by ``dftflow calc``).


class LigandSplit(BaseModel):
    """Which atoms of one structure are ligand, and how that was decided."""

    ligand_indices: list[int] = Field(description="0-based, sorted")
    n_atoms: int
    ligand_atoms_from: str = Field(description=f"{FROM_BUILDER!r} or {FROM_ELEMENT_RULE!r}")

    @property
    def mask(self) -> np.ndarray:
        """Boolean per-atom array, True for ligand atoms."""
        out = np.zeros(self.n_atoms, dtype=bool)
        out[self.ligand_indices] = True
        return out

    @property
    def slab_indices(self) -> list[int]:
        """0-based indices of the non-ligand (slab/host) atoms."""
        return [int(i) for i in np.flatnonzero(~self.mask)]


def element_rule_indices(symbols: Sequence[str]) -> list[int]:
    """Fallback: atoms of :data:`ELEMENT_RULE_ELEMENTS` when any C or H is present, else none."""
    if not any(s in ("C", "H") for s in symbols):
        return []
    return [i for i, s in enumerate(symbols) if s in ELEMENT_RULE_ELEMENTS]


def ligand_split(structure: Any, ligand_indices: Sequence[int] | None) -> LigandSplit:
    """Ligand atoms of ``structure`` (pymatgen Structure or ASE Atoms).

    Parameters
    ----------
    structure
        The analysed structure (its atom order is the run's).
    ligand_indices
        The builder's indices (``TaskDoc.ligand_indices``); ``None`` when unknown, which selects
        the element rule.

    Raises
    ------
    InputError
        If an index is outside the structure (the TaskDoc belongs to another structure).
    """
    if hasattr(structure, "get_chemical_symbols"):
        symbols = list(structure.get_chemical_symbols())
    else:
        symbols = [site.specie.symbol for site in structure]
    if ligand_indices is None:
        return LigandSplit(
            ligand_indices=element_rule_indices(symbols),
            n_atoms=len(symbols),
            ligand_atoms_from=FROM_ELEMENT_RULE,
        )
    idx = sorted({int(i) for i in ligand_indices})
    if idx and not 0 <= idx[0] <= idx[-1] < len(symbols):
        raise InputError(
            f"ligand indices up to {idx[-1]} do not fit a structure of {len(symbols)} atoms"
        )
    return LigandSplit(ligand_indices=idx, n_atoms=len(symbols), ligand_atoms_from=FROM_BUILDER)


def ligand_indices_of_run(run: TaskDoc | str | Path) -> list[int] | None:
    """The builder's ligand indices recorded for a run, or ``None`` when none are recorded.

    ``run`` is a TaskDoc, a TaskDoc JSON path, a run directory (its ``taskdoc.json``, else its
    ``POSCAR.ligand.json``) or a file in a run directory (e.g. its CHGCAR: that directory's).

    Raises
    ------
    OutputError
        If the TaskDoc file exists but cannot be read.
    InputError
        If ``POSCAR.ligand.json`` does not match the POSCAR beside it.
    """
    if isinstance(run, TaskDoc):
        return run.ligand_indices
    path = Path(run)
    if path.is_file() and path.suffix == ".json":
        candidate = path
    else:
        candidate = (path if path.is_dir() else path.parent) / TASKDOC_FILE
    if candidate.is_file():
        return read_taskdoc_file(candidate).ligand_indices  # a corrupt TaskDoc is an error
    return _poscar_sidecar_indices(candidate.parent)


def _poscar_sidecar_indices(directory: Path) -> list[int] | None:
    """Indices of ``DIR/POSCAR.ligand.json`` (checked against ``DIR/POSCAR``), else None."""
    from dftflow.structures.ligand_atoms import read_ligand_sidecar, sidecar_path

    poscar = directory / "POSCAR"
    if not (poscar.is_file() and sidecar_path(poscar).is_file()):
        return None
    from ase.io import read

    return read_ligand_sidecar(poscar, read(poscar, format="vasp"))
