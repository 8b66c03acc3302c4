"""Conversions between ASE ``Atoms`` and pymatgen ``Structure`` that keep fixed atoms.

Selective dynamics (pymatgen site property / POSCAR flags) and ASE constraints (``FixAtoms``,
``FixCartesian``) describe the same thing; every engine and input writer converts through here.
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
    """A pymatgen Structure with ``selective_dynamics`` site property when atoms are fixed."""
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
    """ASE Atoms with a FixAtoms constraint for sites fixed in all directions."""
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
    """Element symbols and counts of consecutive blocks, in POSCAR order."""
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
