"""Cubic CsPbBr3 (Pm-3m) bulk and its lattice constant.

The structure ships as package data, a CIF in ``dftflow/data/bulk/`` (source of the lattice constant
in that folder's README), read through :mod:`importlib.resources` so that an installed wheel finds
it; :func:`cspbbr3_cubic` reads it and optionally rescales it to another lattice constant, e.g. one
from a bulk relaxation (:func:`lattice_constant_from_taskdoc`).
"""

from __future__ import annotations

from collections import Counter
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read

from dftflow.errors import InputError
from dftflow.schemas import TaskDoc

#: Cubic CsPbBr3 (Pm-3m) lattice constant, Angstrom (source: dftflow/data/bulk/README.md). A
#: structural input of the builder, not a calculation setting (those live in inputs/params.py).
A_CSPBBR3_CUBIC = 5.874

#: Package data folder (bulk CIFs, ligand library), ``dftflow/data`` inside the installed package.
DATA_DIR = files("dftflow") / "data"
#: The shipped cubic CsPbBr3 CIF.
BULK_CIF = DATA_DIR / "bulk" / "CsPbBr3_Pm-3m.cif"


def cspbbr3_cubic(a: float | None = None) -> Atoms:
    """Cubic CsPbBr3 (one formula unit, Pm-3m) from the shipped CIF.

    Parameters
    ----------
    a
        Lattice constant in Angstrom; ``None`` keeps the CIF's value
        (:data:`A_CSPBBR3_CUBIC`, 5.874 Angstrom).

    Returns
    -------
    Atoms
        Cs, Pb, Br, Br, Br with Pb at the origin, periodic in all three directions.
    """
    if not BULK_CIF.is_file():
        raise InputError(f"bulk CIF not found: {BULK_CIF} (is the dftflow installation complete?)")
    with as_file(BULK_CIF) as path:
        atoms = read(path, format="cif")
    if a is not None:
        a = float(a)
        if not 3.0 < a < 10.0:
            raise InputError(f"lattice constant {a} Angstrom is not plausible for CsPbBr3 (3-10)")
        atoms.set_cell(np.eye(3) * a, scale_atoms=True)
    atoms.pbc = True
    atoms.info["a_A"] = float(atoms.cell.lengths()[0])
    return atoms


def _structure_of(doc: Any):  # -> pymatgen Structure
    from pymatgen.core import Structure

    if isinstance(doc, (str, Path)):
        path = Path(doc)
        if not path.is_file():
            raise InputError(f"TaskDoc file not found: {path}")
        doc = TaskDoc.from_json_file(path)
    if isinstance(doc, TaskDoc):
        return doc.final_structure()
    if isinstance(doc, dict):
        if "structure" in doc:
            return Structure.from_dict(doc["structure"])
        return Structure.from_dict(doc)
    if isinstance(doc, Structure):
        return doc
    raise InputError(f"cannot read a structure from {type(doc).__name__}")


def lattice_constant_from_taskdoc(doc: Any) -> float:
    """Cubic lattice constant (Angstrom) of the final structure of a bulk calculation.

    The lattice constant is the edge of the cube holding one formula unit,
    ``(V / N_formula_units) ** (1/3)``, so a relaxed supercell works too.

    Parameters
    ----------
    doc
        A :class:`dftflow.schemas.TaskDoc`, the path of its JSON file, its ``structure`` dict or a
        pymatgen ``Structure``.

    Raises
    ------
    InputError
        If the structure is not CsPbBr3 or its cell is not (close to) cubic.
    """
    structure = _structure_of(doc)
    counts = Counter(site.specie.symbol for site in structure)
    n_fu = counts.get("Pb", 0)
    if (
        n_fu == 0
        or set(counts) != {"Cs", "Pb", "Br"}
        or counts["Cs"] != n_fu
        or counts["Br"] != 3 * n_fu
    ):
        raise InputError(f"not a CsPbBr3 bulk structure: {structure.composition.formula}")
    lat = structure.lattice
    if max(abs(x - 90.0) for x in lat.angles) > 1.0:
        raise InputError(f"bulk cell is not cubic: angles {tuple(round(x, 2) for x in lat.angles)}")
    lengths = np.array(lat.abc)
    if np.ptp(lengths) > 0.02 * lengths.mean():
        raise InputError(
            f"bulk cell is not cubic: lengths {tuple(round(x, 3) for x in lengths)} Angstrom"
        )
    return float((structure.volume / n_fu) ** (1.0 / 3.0))


def default_lattice_constant() -> float:
    """The lattice constant used when none is given (Angstrom)."""
    return float(A_CSPBBR3_CUBIC)
