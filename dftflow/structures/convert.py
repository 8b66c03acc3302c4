"""Conversions between ASE ``Atoms`` and pymatgen ``Structure`` that keep fixed atoms.

Fixed atoms travel as ASE constraints (``FixAtoms``, ``FixCartesian``) on ``Atoms`` and as the
``selective_dynamics`` site property (True = free) on a ``Structure``, the property pymatgen's
``Poscar`` writes.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms, FixCartesian
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor


def selective_dynamics(atoms: Atoms) -> list[list[bool]] | None:
    """Selective-dynamics flags (True = free) from ASE constraints, or None when nothing is fixed.

    ``FixAtoms`` fixes all three directions of its atoms, ``FixCartesian`` the masked directions;
    a pymatgen-style ``atoms.arrays["selective_dynamics"]`` is honoured too.

    Parameters
    ----------
    atoms
        The atoms and their constraints.

    Returns
    -------
    list of list of bool or None
        One ``[x, y, z]`` triple per atom, or None when every atom is free.
    """
    flags = np.ones((len(atoms), 3), dtype=bool)
    if "selective_dynamics" in atoms.arrays:
        flags &= np.asarray(atoms.arrays["selective_dynamics"], dtype=bool)
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            flags[constraint.index] = False
        elif isinstance(constraint, FixCartesian):
            flags[constraint.index] &= ~np.asarray(constraint.mask, dtype=bool)
    if flags.all():
        return None
    return flags.tolist()


def to_structure(atoms_or_structure: Atoms | Structure) -> Structure:
    """A pymatgen Structure (a copy) with ``selective_dynamics`` when atoms are fixed.

    Parameters
    ----------
    atoms_or_structure
        ASE atoms (constraints become ``selective_dynamics``) or a Structure (copied as is).

    Returns
    -------
    Structure
        Periodic in all three directions, atoms in the input order.
    """
    if isinstance(atoms_or_structure, Structure):
        return atoms_or_structure.copy()
    atoms = atoms_or_structure
    plain = Atoms(
        atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=True
    )
    structure = AseAtomsAdaptor.get_structure(plain)
    flags = selective_dynamics(atoms)
    if flags is not None:
        structure.add_site_property("selective_dynamics", flags)
    return structure


def to_atoms(structure: Atoms | Structure) -> Atoms:
    """ASE Atoms (a copy) with a ``FixAtoms`` constraint for sites fixed in all directions.

    Parameters
    ----------
    structure
        A Structure (its ``selective_dynamics`` becomes the constraint) or Atoms (copied).

    Returns
    -------
    Atoms
        Numbers, positions, cell and constraint only (no other per-atom arrays).
    """
    if isinstance(structure, Atoms):
        return structure.copy()
    atoms = AseAtomsAdaptor.get_atoms(Structure.from_sites(structure.sites))
    atoms.set_constraint()
    sd = structure.site_properties.get("selective_dynamics")
    if sd is not None:
        fixed = [i for i, f in enumerate(sd) if not any(f)]
        if fixed:
            atoms.set_constraint(FixAtoms(indices=fixed))
    for key in list(atoms.arrays):
        if key not in ("numbers", "positions"):
            del atoms.arrays[key]
    return atoms


def species_blocks(structure: Structure) -> tuple[list[str], list[int]]:
    """Element symbols and counts of consecutive blocks, in POSCAR order.

    Parameters
    ----------
    structure
        Any ordered structure.

    Returns
    -------
    tuple of (list of str, list of int)
        Symbols and counts; an element appears once per consecutive run of its atoms.
    """
    symbols: list[str] = []
    counts: list[int] = []
    for site in structure:
        sym = site.specie.symbol
        if symbols and symbols[-1] == sym:
            counts[-1] += 1
        else:
            symbols.append(sym)
            counts.append(1)
    return symbols, counts
