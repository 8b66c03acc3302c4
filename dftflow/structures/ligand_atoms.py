"""Which atoms are the ligand: the atoms the builder added, carried by index (never by element).

Representation
--------------
One boolean per-site array named ``"ligand"``: ``atoms.arrays["ligand"]`` on an ASE ``Atoms`` and
``structure.site_properties["ligand"]`` on a pymatgen ``Structure`` (pymatgen's ``AseAtomsAdaptor``
maps one onto the other). The array moves with the atoms: slicing, deleting, ``extend`` (atoms
without the array count as not ligand), ``copy`` and extended XYZ files keep it. An object
without the array has *unknown* ligand atoms (``None``), which is not the same as *no* ligand
atoms (``[]``).

Indices are 0-based positions in the structure's atom order (the POSCAR order); every engine keeps
that order through relaxations. Formats that cannot store a per-site array (POSCAR, CIF) get a
sidecar JSON file next to them, ``<file>.ligand.json`` (:func:`write_ligand_sidecar`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dftflow.errors import InputError

#: Name of the per-site boolean array (ASE ``arrays``) / site property (pymatgen).
LIGAND_ARRAY = "ligand"
#: Suffix of the sidecar file that holds the ligand indices of a POSCAR/CIF.
SIDECAR_SUFFIX = ".ligand.json"


def ligand_mask(n_atoms: int, indices: Iterable[int]) -> np.ndarray:
    """Boolean mask of length ``n_atoms``, True at ``indices`` (0-based; checked in range)."""
    mask = np.zeros(n_atoms, dtype=bool)
    idx = [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < n_atoms]
    if bad:
        raise InputError(f"ligand indices {bad} out of range for {n_atoms} atoms (0-based)")
    mask[idx] = True
    return mask


def mark_ligand(atoms: Any, indices: Iterable[int]) -> Any:
    """A copy of ``atoms`` (ASE Atoms) whose ligand atoms are exactly ``indices`` (0-based).

    Constraints and ``info`` are kept. ``indices`` may be empty: the copy then says "no ligand".
    """
    marked = atoms.copy()
    marked.arrays[LIGAND_ARRAY] = ligand_mask(len(atoms), indices)
    return marked


def ligand_indices_of(structure_or_atoms: Any) -> list[int] | None:
    """0-based indices of the ligand atoms of an ASE ``Atoms`` or pymatgen ``Structure``.

    Returns
    -------
    list[int] | None
        Sorted indices (``[]``: known to hold no ligand atom), or ``None`` when the object does not
        say which atoms are ligand (no ``"ligand"`` array / site property).
    """
    arrays = getattr(structure_or_atoms, "arrays", None)
    if isinstance(arrays, dict):
        values = arrays.get(LIGAND_ARRAY)
    else:
        values = getattr(structure_or_atoms, "site_properties", {}).get(LIGAND_ARRAY)
    if values is None:
        return None
    flags = np.asarray(values)
    if flags.ndim != 1 or any(v is None for v in flags.tolist()):
        return None
    return [int(i) for i in np.flatnonzero(flags.astype(bool))]


# ---------------------------------------------------------------------------------------------
# Sidecar file for POSCAR/CIF
# ---------------------------------------------------------------------------------------------
def sidecar_path(structure_path: str | Path) -> Path:
    """``POSCAR`` -> ``POSCAR.ligand.json`` (same directory)."""
    path = Path(structure_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


#: ``atoms.info`` keys the sidecar carries besides the indices: the net charge of the structure
#: (e; the inputs compute NELECT from it) and the builder's label of the species.
SIDECAR_INFO_KEYS = ("charge", "model", "form")
#: A defective slab (:mod:`dftflow.structures.defects`) carries its defect name in
#: ``info["defect"]``, its whole record in ``info["defect_record"]`` and, per atom, the number of Br
#: neighbours it lost in the integer array ``"undercoordinated"`` (the one that follows the atoms
#: into a complex). The sidecar carries all three (``"defect"``, ``"defect_record"``,
#: ``"undercoordinated"`` as [index, n_lost] pairs); reading it back restores them, checked.
DEFECT_RECORD_KEY = "defect_record"
UNDERCOORDINATED_ARRAY = "undercoordinated"


def sidecar_content(atoms: Any, structure_name: str) -> dict[str, Any] | None:
    """The sidecar JSON of ``atoms`` (None when its ligand atoms are unknown).

    Besides the ligand indices it carries ``charge`` (net charge in e), ``model`` and ``form``
    from ``atoms.info`` when the builder set them: a POSCAR cannot hold them, and a charged
    species read back without its charge would be computed neutral.
    """
    indices = ligand_indices_of(atoms)
    if indices is None:
        return None
    symbols = atoms.get_chemical_symbols()
    content = {
        "structure": structure_name,
        "n_atoms": len(atoms),
        "formula": atoms.get_chemical_formula("hill"),
        "index_base": 0,
        "ligand_indices": indices,
        "ligand_symbols": [symbols[i] for i in indices],
        "meaning": "atoms the dftflow builder added as the ligand (0-based, file order)",
    }
    info = getattr(atoms, "info", {}) or {}
    for key in SIDECAR_INFO_KEYS:
        if isinstance(info.get(key), (str, int, float)) and not isinstance(info[key], bool):
            content[key] = info[key]
    lost = getattr(atoms, "arrays", {}).get(UNDERCOORDINATED_ARRAY)
    if lost is not None:  # dftflow.structures.defects
        name = info.get("defect")
        content["defect"] = name if isinstance(name, str) else None  # None: name not recorded
        content[UNDERCOORDINATED_ARRAY] = [[int(i), int(n)] for i, n in enumerate(lost) if n]
        content["undercoordinated_symbols"] = [symbols[i] for i, n in enumerate(lost) if n]
        if isinstance(info.get(DEFECT_RECORD_KEY), dict):
            content[DEFECT_RECORD_KEY] = info[DEFECT_RECORD_KEY]
    return content


def write_ligand_sidecar(atoms: Any, structure_path: str | Path) -> Path | None:
    """Write ``<structure_path>.ligand.json`` for ``atoms``; None (nothing written) if unknown."""
    content = sidecar_content(atoms, Path(structure_path).name)
    if content is None:
        return None
    path = sidecar_path(structure_path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_ligand_sidecar(structure_path: str | Path, atoms: Any) -> list[int] | None:
    """Ligand indices from ``<structure_path>.ligand.json`` if it exists, checked against ``atoms``.

    Raises
    ------
    InputError
        If the sidecar is unreadable or describes other atoms (count or elements differ): a stale
        sidecar must not label the wrong atoms.
    """
    path = sidecar_path(structure_path)
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
        indices = [int(i) for i in content["ligand_indices"]]
        n_atoms = int(content["n_atoms"])
        ligand_symbols = list(content["ligand_symbols"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read {path}: {type(exc).__name__}") from None
    symbols = atoms.get_chemical_symbols()
    if n_atoms != len(symbols) or any(not 0 <= i < len(symbols) for i in indices):
        raise InputError(
            f"{path.name} describes {n_atoms} atoms but {Path(structure_path).name} has "
            f"{len(symbols)}: delete the stale sidecar or rebuild the structure"
        )
    if [symbols[i] for i in indices] != ligand_symbols:
        raise InputError(
            f"{path.name} does not match the elements of {Path(structure_path).name}: delete "
            "the stale sidecar or rebuild the structure"
        )
    return indices


def with_ligand_sidecar(atoms: Any, structure_path: str | Path) -> Any:
    """``atoms`` read from ``structure_path``, marked from its sidecar when there is one.

    A ``"ligand"`` array already in the file (extended XYZ) wins; without either, ``atoms`` is
    returned unchanged (ligand atoms unknown). The sidecar's ``charge``/``model``/``form`` go
    into ``atoms.info`` (what the file itself says wins); a defect record
    (:mod:`dftflow.structures.defects`) restores ``info["defect"]``, ``info["defect_record"]`` and
    the per-site array ``"undercoordinated"``.
    """
    if ligand_indices_of(atoms) is not None:
        return atoms
    indices = read_ligand_sidecar(structure_path, atoms)
    if indices is None:
        return atoms
    marked = mark_ligand(atoms, indices)
    content = json.loads(sidecar_path(structure_path).read_text())  # checked just above
    for key in SIDECAR_INFO_KEYS:  # the charge the builder labelled: the inputs compute it
        if key in content and key not in marked.info:
            marked.info[key] = content[key]
    if UNDERCOORDINATED_ARRAY in content:
        _restore_defect(marked, content, sidecar_path(structure_path))
    return marked


def _restore_defect(atoms: Any, content: dict[str, Any], path: Path) -> None:
    """Put a sidecar's defect back on ``atoms`` (info and per-site array), checked."""
    try:
        pairs = [(int(i), int(n)) for i, n in content[UNDERCOORDINATED_ARRAY]]
        elements = [str(el) for el in content["undercoordinated_symbols"]]
        name = content["defect"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"cannot read the defect record of {path}: {type(exc).__name__}") from None
    symbols = atoms.get_chemical_symbols()
    if len(elements) != len(pairs) or any(
        not 0 <= i < len(symbols) or symbols[i] != el
        for (i, _), el in zip(pairs, elements, strict=False)
    ):
        raise InputError(
            f"{path.name}: the defect's under-coordinated atoms do not match "
            f"{path.name.removesuffix(SIDECAR_SUFFIX)}: delete the stale sidecar or rebuild the "
            "structure"
        )
    lost = np.zeros(len(symbols), dtype=int)
    for i, n in pairs:
        lost[i] = n
    atoms.arrays[UNDERCOORDINATED_ARRAY] = lost
    if isinstance(name, str):
        atoms.info["defect"] = name
    if isinstance(content.get(DEFECT_RECORD_KEY), dict):
        atoms.info[DEFECT_RECORD_KEY] = content[DEFECT_RECORD_KEY]


def split_indices(n_atoms: int, ligand_indices: Sequence[int]) -> tuple[list[int], list[int]]:
    """(slab indices, ligand indices) of a structure of ``n_atoms``, both sorted."""
    mask = ligand_mask(n_atoms, ligand_indices)
    return [int(i) for i in np.flatnonzero(~mask)], [int(i) for i in np.flatnonzero(mask)]
