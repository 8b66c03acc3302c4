"""Ligand library, anchor-group detection and deterministic 3D geometries (RDKit).

The library is one YAML file per ligand in the package data, ``dftflow/data/ligands/`` (name,
aliases, SMILES, formal charge, anchor group, formula). Any other ligand comes from a SMILES string;
its anchor groups are found with SMARTS patterns (carboxylic acid / carboxylate, amine /
ammonium, phosphonic acid / phosphonate, thiol / thiolate, sulfonic acid / sulfonate). The
protonated and deprotonated forms of the first anchor are derived by moving one acidic proton; the
``"radical"`` form is the deprotonated geometry with the anion's charge removed (same atoms, charge
is metadata in ``atoms.info``).

Geometries (conformer 0): RDKit ETKDGv3 with a fixed random seed; torsions inside unbranched chains
set anti; the other rotatable torsions (branch points, allylic, anchor; up to
:data:`MAX_SCAN_TORSIONS`) scanned over 60/180/300 degrees; the :data:`N_OPTIMISED` most slender
candidates (smallest radius around the anchor-to-tail axis, nothing below the anchor, no overlaps)
optimised with MMFF94 (UFF if MMFF lacks parameters) and the most slender kept, so that long
chains stand up in a slab cell without touching their periodic images. Same input, same machine,
same RDKit: identical coordinates.

Alternative conformers (1, 2, ...; :func:`n_conformers`): :data:`CONFORMER_POOL` ETKDGv3 embeddings
(same seed) optimised with MMFF94 (UFF without MMFF parameters), ordered by slenderness, then
force-field energy; kept when their heavy-atom RMSD to conformer 0 and to every kept one exceeds
:data:`CONFORMER_RMSD_A` and nothing points below the anchor. Rigid molecules (acetic acid) have
conformer 0 only; chains have several. Every conformer stands in conformer 0's frame.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dftflow.errors import InputError
from dftflow.structures.bulk import DATA_DIR

#: Folder of the ligand library YAML files (package data, inside
#: :data:`~dftflow.structures.bulk.DATA_DIR`).
LIGAND_DIR = DATA_DIR / "ligands"
#: Seed of RDKit's ETKDG embedding (determinism).
RANDOM_SEED = 20240531
#: Conformers embedded per molecule; the most slender one is kept.
N_CONFORMERS = 1
#: Rotatable torsions outside straight chains scanned over 60/180/300 degrees.
MAX_SCAN_TORSIONS = 5
#: Most slender scanned conformers optimised with the force field; the best one is kept.
N_OPTIMISED = 4
#: ETKDG conformers embedded (then MMFF-optimised) for the alternative conformers 1, 2, ... of
#: :func:`ligand_molecule` (:func:`n_conformers`); a fixed pool, so conformer k does not depend on
#: how many are asked for.
CONFORMER_POOL = 12
#: Two conformers are distinct when their heavy-atom RMSD after the best (symmetry-aware)
#: alignment exceeds this, Angstrom.
CONFORMER_RMSD_A = 0.5
#: An alternative conformer is dropped when a heavy atom lies more than this below its anchor
#: (Angstrom, along the standing axis): it would point into the surface.
CONFORMER_BELOW_A = 1.0

Form = Literal["as_is", "protonated", "deprotonated", "radical"]
FORMS: tuple[str, ...] = ("as_is", "protonated", "deprotonated", "radical")


# ---------------------------------------------------------------------------------------------
# Anchor groups
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnchorPattern:
    """A SMARTS pattern of one anchor kind.

    Map numbers in ``smarts``: 1 = central atom (C, P) or the binding atom itself (N, S);
    ``binding`` lists the map numbers of the atoms that bind to surface Pb; ``acidic`` the map
    number of the atom that carries (or can take) the acidic proton.
    """

    kind: str
    family: str
    protonated: bool
    smarts: str
    binding: tuple[int, ...]
    acidic: int


ANCHOR_PATTERNS: tuple[AnchorPattern, ...] = (
    AnchorPattern("carboxylic_acid", "carboxyl", True, "[CX3:1](=[OX1:2])[OX2H1:3]", (2, 3), 3),
    AnchorPattern("carboxylate", "carboxyl", False, "[CX3:1](=[OX1:2])[OX1-:3]", (2, 3), 3),
    AnchorPattern(
        "phosphonic_acid",
        "phosphonate",
        True,
        "[PX4;$(P[#6]):1](=[OX1:2])([OX2H1:3])[OX2H1:4]",
        (2, 3),
        3,
    ),
    AnchorPattern(
        "phosphonate",
        "phosphonate",
        False,
        "[PX4;$(P[#6]):1](=[OX1:2])([OX1-:3])[OX2H1,OX1-:4]",
        (2, 3),
        3,
    ),
    AnchorPattern(
        "amine",
        "amine",
        False,
        "[NX3;+0;!$(N~[#6,#15,#16]=[#7,#8,#16]);!$(N~[!#6;!#1]);!$(N-a):1]",
        (1,),
        1,
    ),
    AnchorPattern("ammonium", "amine", True, "[NX4+;!$(N~[!#6;!#1]):1]", (1,), 1),
    AnchorPattern("thiol", "thiol", True, "[SX2H1:1][#6]", (1,), 1),
    AnchorPattern("thiolate", "thiol", False, "[SX1-:1][#6]", (1,), 1),
    # R-S(=O)2-OH / R-S(=O)2-O-: binds through two O like a phosphonate; the third O is spectator
    AnchorPattern(
        "sulfonic_acid",
        "sulfonate",
        True,
        "[SX4;$(S[#6]):1](=[OX1:2])(=[OX1])[OX2H1:3]",
        (2, 3),
        3,
    ),
    AnchorPattern(
        "sulfonate", "sulfonate", False, "[SX4;$(S[#6]):1](=[OX1:2])(=[OX1])[OX1-:3]", (2, 3), 3
    ),
)
ANCHOR_KINDS = tuple(p.kind for p in ANCHOR_PATTERNS)
_PATTERN_BY_KIND = {p.kind: p for p in ANCHOR_PATTERNS}
#: Protonated kind -> deprotonated kind of the same family.
DEPROTONATED_KIND = {
    "carboxylic_acid": "carboxylate",
    "phosphonic_acid": "phosphonate",
    "ammonium": "amine",
    "thiol": "thiolate",
    "sulfonic_acid": "sulfonate",
}
PROTONATED_KIND = {v: k for k, v in DEPROTONATED_KIND.items()}
_ANCHOR_HELP = (
    "carboxylic acid/carboxylate, amine/ammonium, phosphonic acid/phosphonate, thiol/thiolate, "
    "sulfonic acid/sulfonate"
)


@dataclass(frozen=True)
class Anchor:
    """An anchor group found in a molecule (atom indices of its RDKit heavy-atom order).

    Attributes
    ----------
    kind
        e.g. ``"carboxylic_acid"``, ``"carboxylate"``, ``"amine"``.
    family
        ``"carboxyl"``, ``"phosphonate"``, ``"amine"``, ``"thiol"`` or ``"sulfonate"``.
    protonated
        Whether the group carries its acidic proton (acid, ammonium, thiol).
    binding_atoms
        Atoms that bind to surface Pb (two O of a carboxyl/phosphonate/sulfonate, N, S); for an acid
        the first is a double-bonded O (used for monodentate molecular binding).
    central_atom
        C of a carboxyl, P of a phosphonate, S of a sulfonate, else the binding atom.
    acidic_atom
        Atom that carries (or would take) the acidic proton.
    """

    kind: str
    family: str
    protonated: bool
    binding_atoms: tuple[int, ...]
    central_atom: int
    acidic_atom: int


def _mol_from_smiles(smiles: str):
    from rdkit import Chem, rdBase

    if not isinstance(smiles, str) or not smiles.strip():
        raise InputError("empty SMILES")
    blocker = rdBase.BlockLogs()  # RDKit would print parse errors on stderr
    try:
        mol = Chem.MolFromSmiles(smiles.strip())
    finally:
        del blocker
    if mol is None:
        raise InputError(f"invalid SMILES {smiles!r} (RDKit cannot parse it)")
    if mol.GetNumAtoms() == 0:
        raise InputError(f"empty SMILES {smiles!r}")
    return mol


@functools.cache
def _compiled(smarts: str):
    from rdkit import Chem

    patt = Chem.MolFromSmarts(smarts)
    if patt is None:  # a bug in ANCHOR_PATTERNS, not a user mistake
        raise ValueError(f"bad SMARTS {smarts}")
    return patt


def detect_anchors(smiles_or_mol) -> list[Anchor]:
    """Anchor groups of a molecule, in a deterministic order (pattern order, then atom index).

    Parameters
    ----------
    smiles_or_mol
        SMILES string or RDKit ``Mol``.

    Returns
    -------
    list[Anchor]
        Possibly empty. An atom belongs to at most one anchor.
    """
    mol = _mol_from_smiles(smiles_or_mol) if isinstance(smiles_or_mol, str) else smiles_or_mol
    found: list[Anchor] = []
    used: set[int] = set()
    for pat in ANCHOR_PATTERNS:
        query = _compiled(pat.smarts)
        mapno = {a.GetAtomMapNum(): a.GetIdx() for a in query.GetAtoms() if a.GetAtomMapNum()}
        for match in sorted(mol.GetSubstructMatches(query, uniquify=True)):
            atoms = {m: match[mapno[m]] for m in mapno}
            binding = tuple(atoms[m] for m in pat.binding)
            if used.intersection(atoms.values()):
                continue
            used.update(atoms.values())
            found.append(
                Anchor(
                    kind=pat.kind,
                    family=pat.family,
                    protonated=pat.protonated,
                    binding_atoms=binding,
                    central_atom=atoms[1],
                    acidic_atom=atoms[pat.acidic],
                )
            )
    return found


# ---------------------------------------------------------------------------------------------
# Library
# ---------------------------------------------------------------------------------------------
class LigandSpec(BaseModel):
    """A ligand: its SMILES in the form used, formal charge and anchor group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    smiles: str
    charge: int = 0
    anchor: str = Field(description="kind of the primary anchor group, e.g. carboxylic_acid")
    full_name: str = ""
    aliases: tuple[str, ...] = ()
    formula: str = Field(default="", description="molecular formula of this form (no charge)")
    source: str = Field(default="smiles", description="library file name or 'smiles'")

    @property
    def anchors(self) -> list[Anchor]:
        """All anchor groups detected in :attr:`smiles`."""
        return detect_anchors(self.smiles)

    @property
    def primary_anchor(self) -> Anchor:
        """The first detected anchor of kind :attr:`anchor`."""
        for anc in self.anchors:
            if anc.kind == self.anchor:
                return anc
        raise InputError(f"ligand {self.name}: no {self.anchor} group in {self.smiles}")


def _formula_of(mol) -> str:
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    return re.sub(r"[+-]\d*$", "", CalcMolFormula(mol))


def _charge_of(mol) -> int:
    return int(sum(a.GetFormalCharge() for a in mol.GetAtoms()))


def ligand_from_smiles(smiles: str, name: str | None = None) -> LigandSpec:
    """A :class:`LigandSpec` from a SMILES string, with automatic anchor detection.

    Raises
    ------
    InputError
        If the SMILES is invalid or has no anchor group.
    """
    mol = _mol_from_smiles(smiles)
    anchors = detect_anchors(mol)
    if not anchors:
        raise InputError(f"SMILES {smiles!r} has no anchor group ({_ANCHOR_HELP})")
    from rdkit import Chem

    return LigandSpec(
        name=(name or Chem.MolToSmiles(mol)).strip(),
        smiles=smiles.strip(),
        charge=_charge_of(mol),
        anchor=anchors[0].kind,
        formula=_formula_of(mol),
        source="smiles",
    )


def _spec_from_file(path: Traversable) -> LigandSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path.name}: expected a mapping of ligand fields")
    try:
        spec = LigandSpec(
            **{**data, "aliases": tuple(data.get("aliases") or ()), "source": path.name}
        )
    except (ValidationError, TypeError) as exc:
        msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise InputError(f"{path.name}: {msg}") from None
    mol = _mol_from_smiles(spec.smiles)
    kinds = [a.kind for a in detect_anchors(mol)]
    if spec.anchor not in kinds:
        raise InputError(f"{path.name}: anchor {spec.anchor} not found in {spec.smiles} ({kinds})")
    if _charge_of(mol) != spec.charge:
        raise InputError(f"{path.name}: charge {spec.charge} != SMILES charge {_charge_of(mol)}")
    if spec.formula and _formula_of(mol) != spec.formula:
        raise InputError(
            f"{path.name}: formula {spec.formula} != SMILES formula {_formula_of(mol)}"
        )
    return spec


@functools.lru_cache(maxsize=4)
def _load_library_cached(folder: Traversable) -> tuple[LigandSpec, ...]:
    if not folder.is_dir():
        raise InputError(f"ligand library folder not found: {folder}")
    yaml_files = sorted(
        (p for p in folder.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name
    )
    specs = tuple(_spec_from_file(p) for p in yaml_files)
    names: dict[str, str] = {}
    for spec in specs:
        for key in (spec.name, *spec.aliases):
            k = _norm(key)
            if k in names and names[k] != spec.name:
                raise InputError(
                    f"ligand name/alias {key!r} used by both {names[k]} and {spec.name}"
                )
            names[k] = spec.name
    return specs


def load_library(directory: str | Path | None = None) -> dict[str, LigandSpec]:
    """All ligands of the library, keyed by name (sorted by file name).

    Parameters
    ----------
    directory
        A folder of ligand YAML files; ``None`` reads the library shipped in the package
        (:data:`LIGAND_DIR`).
    """
    folder = Path(directory).resolve() if directory else LIGAND_DIR
    specs = _load_library_cached(folder)
    return {s.name: s for s in specs}


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("⁻", "-").replace("⁺", "+")).strip().casefold()


def get_ligand(name: str, directory: str | Path | None = None) -> LigandSpec:
    """A library ligand by name or alias (case-insensitive).

    Raises
    ------
    InputError
        If no ligand has that name or alias.
    """
    library = load_library(directory)
    key = _norm(str(name))
    for spec in library.values():
        if key in {_norm(spec.name), *(_norm(a) for a in spec.aliases)}:
            return spec
    known = ", ".join(library)
    raise InputError(f"unknown ligand {name!r}; library: {known} (or give a SMILES)")


# ---------------------------------------------------------------------------------------------
# Forms and 3D geometry
# ---------------------------------------------------------------------------------------------
def _set_protonation(mol, anchor: Anchor, protonate: bool):
    """Copy of ``mol`` with one proton added to / removed from the anchor's acidic atom."""
    from rdkit import Chem

    rw = Chem.RWMol(mol)
    atom = rw.GetAtomWithIdx(anchor.acidic_atom)
    n_h = atom.GetTotalNumHs()
    if protonate:
        atom.SetFormalCharge(atom.GetFormalCharge() + 1)
        atom.SetNumExplicitHs(n_h + 1)
    else:
        if n_h == 0:
            raise InputError(f"{anchor.kind} has no proton to remove")
        atom.SetFormalCharge(atom.GetFormalCharge() - 1)
        atom.SetNumExplicitHs(n_h - 1)
    atom.SetNoImplicit(True)
    out = rw.GetMol()
    Chem.SanitizeMol(out)
    return out


@functools.lru_cache(maxsize=256)  # specs are frozen (hashable); placement asks very often
def form_smiles(spec: LigandSpec, form: Form = "as_is") -> tuple[str, int, str]:
    """SMILES, formal charge (e) and model name of a ligand form.

    ``"protonated"``/``"deprotonated"`` move one proton on the primary anchor (acid <-> carboxylate,
    ammonium <-> amine, thiol <-> thiolate, phosphonic acid <-> hydrogen phosphonate); ``"radical"``
    is the deprotonated (anionic) form with charge + 1, i.e. the neutral radical (acids only).
    """
    from rdkit import Chem

    if form not in FORMS:
        raise InputError(f"unknown ligand form {form!r}: use one of {', '.join(FORMS)}")
    mol = _mol_from_smiles(spec.smiles)
    anchor = spec.primary_anchor
    if form == "as_is":
        out = mol
    elif form == "protonated":
        out = mol if anchor.protonated else _set_protonation(mol, anchor, True)
    else:
        if anchor.kind == "amine" or (anchor.kind == "ammonium" and form == "radical"):
            if form == "radical":
                raise InputError(
                    f"{spec.name}: the radical form is defined for acidic anchors only"
                )
        out = _set_protonation(mol, anchor, False) if anchor.protonated else mol
    charge = _charge_of(out)
    if form == "radical":
        charge += 1
        model = "radical"
    else:
        model = "anion" if charge < 0 else "cation" if charge > 0 else "neutral"
    return Chem.MolToSmiles(out), charge, model


def reference_species_name(spec: LigandSpec, form: Form = "as_is") -> str:
    """What the isolated ligand in ``form`` is, in words (the default E_ads reference L).

    ``"neutral acid"`` (an acid as is), ``"acetate radical"``, ``"acetate anion (charge -1 e)"``,
    ``"... cation (charge +1 e)"``, ``"neutral molecule"``: the kind is the form's model
    (:func:`form_smiles`), so the words always name what the inputs compute.
    """
    _, charge, model = form_smiles(spec, form)
    name = spec.full_name or spec.name
    if model == "radical":
        return f"{name} radical"
    if model in ("anion", "cation"):
        return f"{name} {model} (charge {charge:+d} e)"
    acid = ligand_anchor(spec, form).kind in ("carboxylic_acid", "phosphonic_acid", "sulfonic_acid")
    return "neutral acid" if acid else "neutral molecule"


def _chain_torsions(mol) -> list[tuple[int, int, int, int]]:
    """Torsions k-i-j-l of single, acyclic bonds inside unbranched chains (set anti)."""
    from rdkit import Chem

    torsions = []
    for bond in mol.GetBonds():
        if bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing():
            continue
        i, j = bond.GetBeginAtom(), bond.GetEndAtom()
        heavy = []
        for a, other in ((i, j), (j, i)):
            nbrs = [
                n for n in a.GetNeighbors() if n.GetAtomicNum() > 1 and n.GetIdx() != other.GetIdx()
            ]
            multiple = any(b.GetBondType() != Chem.BondType.SINGLE for b in a.GetBonds())
            if len(nbrs) != 1 or multiple:
                break
            heavy.append(nbrs[0].GetIdx())
        else:
            torsions.append((heavy[0], i.GetIdx(), j.GetIdx(), heavy[1]))
    return torsions


def _scan_torsions(mol, chain: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Rotatable heavy-atom torsions outside straight chains (branch points, allylic, anchor)."""
    from rdkit import Chem

    done = {frozenset(t[1:3]) for t in chain}
    out = []
    for bond in mol.GetBonds():
        if bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing():
            continue
        i, j = bond.GetBeginAtom(), bond.GetEndAtom()
        if frozenset((i.GetIdx(), j.GetIdx())) in done:
            continue
        ends = []
        for a, other in ((i, j), (j, i)):
            nbrs = sorted(
                n.GetIdx()
                for n in a.GetNeighbors()
                if n.GetAtomicNum() > 1 and n.GetIdx() != other.GetIdx()
            )
            ends.append(nbrs[0] if nbrs else None)
        if None in ends:
            continue
        out.append((ends[0], i.GetIdx(), j.GetIdx(), ends[1]))
    return out


def _axis_frame(pos: np.ndarray, heavy: np.ndarray, anchor_idx: tuple[int, ...]) -> tuple:
    """Origin (anchor centroid) and unit axis to the farthest heavy atom."""
    origin = pos[list(anchor_idx)].mean(axis=0)
    d = np.linalg.norm(pos[heavy] - origin, axis=1)
    far = heavy[int(np.argmax(d))]
    axis = pos[far] - origin
    norm = np.linalg.norm(axis)
    return origin, (axis / norm if norm > 1e-8 else np.array([0.0, 0.0, 1.0]))


def lateral_radius_A(pos: np.ndarray, origin: np.ndarray, axis: np.ndarray) -> float:
    """Largest distance (Angstrom) of any atom from the line through ``origin`` along ``axis``."""
    rel = pos - origin
    perp = rel - np.outer(rel @ axis, axis)
    return float(np.max(np.linalg.norm(perp, axis=1)))


def rotation_to(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotation matrix taking unit vector ``u`` onto unit vector ``v``."""
    u = u / np.linalg.norm(u)
    v = v / np.linalg.norm(v)
    c = float(u @ v)
    w = np.cross(u, v)
    s = float(np.linalg.norm(w))
    if s < 1e-10:
        if c > 0:
            return np.eye(3)
        perp = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        perp -= (perp @ u) * u
        perp /= np.linalg.norm(perp)
        return 2.0 * np.outer(perp, perp) - np.eye(3)
    k = w / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


@functools.lru_cache(maxsize=64)
def _geometry(smiles: str) -> tuple[tuple[str, ...], tuple[tuple[float, float, float], ...]]:
    """Deterministic 3D geometry of a (canonical) SMILES: symbols and positions (Angstrom).

    Atom order: RDKit heavy atoms in SMILES order, then hydrogens. Standing frame: centroid of the
    first anchor's binding atoms at the origin, farthest heavy atom along +z.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem import AllChem, rdMolTransforms

    blocker = rdBase.BlockLogs()  # noqa: F841 (until return: RDKit's UFF typer warns on stderr)

    mol = Chem.AddHs(_mol_from_smiles(smiles))
    anchors = detect_anchors(mol)
    n_heavy = sum(a.GetAtomicNum() > 1 for a in mol.GetAtoms())
    n_conf = 1 if n_heavy <= 6 else N_CONFORMERS
    params = AllChem.ETKDGv3()
    params.randomSeed = RANDOM_SEED
    params.numThreads = 1
    params.pruneRmsThresh = -1.0
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conf, params=params))
    if not ids:
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conf, params=params))
    if not ids:
        raise InputError(f"RDKit could not build 3D coordinates for {smiles}")
    torsions = _chain_torsions(mol)
    # chain torsions next to a branch point decide where a branch points: scan them too
    branch = {
        a.GetIdx()
        for a in mol.GetAtoms()
        if sum(n.GetAtomicNum() > 1 for n in a.GetNeighbors()) >= 3
    }
    near_branch = [t for t in torsions if t[0] in branch or t[3] in branch]
    scan = (_scan_torsions(mol, torsions) + near_branch)[:MAX_SCAN_TORSIONS]
    torsions = [t for t in torsions if t not in scan]
    heavy = np.array([a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1])
    anchor_idx = anchors[0].binding_atoms if anchors else (int(heavy[0]),)
    topo = Chem.GetDistanceMatrix(mol)
    far_apart = np.triu(topo > 3)  # atom pairs more than 3 bonds apart (non-bonded contacts)

    def shape_score(pos: np.ndarray) -> float:
        """Slender, nothing below the anchor (it would point into the surface), no overlaps."""
        origin, axis = _axis_frame(pos, heavy, anchor_idx)
        below = max(0.0, -float(np.min((pos[heavy] - origin) @ axis)))
        d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)[far_apart]
        overlap = float(np.clip(1.8 - d, 0.0, None).sum())
        return lateral_radius_A(pos, origin, axis) + 2.0 * below + 10.0 * overlap

    # straight chains, then a staggered scan (60/180/300 deg) of the other torsions on the rigid
    # embedded geometry; only the most slender few are optimised with the force field
    trials: list[tuple[float, int, Chem.Conformer]] = []
    for cid in ids:
        conf0 = Chem.Conformer(mol.GetConformer(cid))
        for t in torsions:
            rdMolTransforms.SetDihedralDeg(conf0, *t, 180.0)
        for values in itertools.product((60.0, 180.0, 300.0), repeat=len(scan)):
            conf = Chem.Conformer(conf0)
            for t, v in zip(scan, values, strict=True):
                rdMolTransforms.SetDihedralDeg(conf, *t, v)
            trials.append((round(shape_score(conf.GetPositions()), 3), len(trials), conf))
    trials.sort(key=lambda x: (x[0], x[1]))
    mol.RemoveAllConformers()
    for _, _, conf in trials[:N_OPTIMISED]:
        mol.AddConformer(conf, assignId=True)
    ids = [c.GetId() for c in mol.GetConformers()]
    if AllChem.MMFFHasAllMoleculeParams(mol):
        results = AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=5000)
    else:
        results = AllChem.UFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=5000)
    best = None
    for k, cid in enumerate(ids):
        pos = mol.GetConformer(cid).GetPositions()
        origin, axis = _axis_frame(pos, heavy, anchor_idx)
        key = (round(shape_score(pos), 3), round(results[k][1], 4), k)
        if best is None or key < best[0]:
            best = (key, pos, origin, axis)
    _, pos, origin, axis = best
    pos = (pos - origin) @ rotation_to(axis, np.array([0.0, 0.0, 1.0])).T
    symbols = tuple(a.GetSymbol() for a in mol.GetAtoms())
    return symbols, tuple(tuple(float(round(x, 8)) for x in p) for p in pos)


_Positions = tuple[tuple[float, float, float], ...]


@functools.lru_cache(maxsize=64)
def _conformers(smiles: str) -> tuple[_Positions, ...]:
    """Distinct conformers of a (canonical) SMILES, conformer 0 (:func:`_geometry`) first.

    Positions in :func:`_geometry`'s atom order and standing frame (anchor centroid at the origin,
    farthest heavy atom on +z). See the module docstring for the selection.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem import AllChem, rdMolAlign

    blocker = rdBase.BlockLogs()  # noqa: F841 (until return: RDKit's UFF typer warns on stderr)

    _, pos0 = _geometry(smiles)
    mol = Chem.AddHs(_mol_from_smiles(smiles))
    heavy = np.array([a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1])
    anchors = detect_anchors(mol)
    anchor_idx = anchors[0].binding_atoms if anchors else (int(heavy[0]),)
    n_rotatable = len(_chain_torsions(mol)) + len(_scan_torsions(mol, _chain_torsions(mol)))
    if n_rotatable == 0:  # no heavy-atom torsion: every embedding is conformer 0 (up to H)
        return (pos0,)
    params = AllChem.ETKDGv3()
    params.randomSeed = RANDOM_SEED
    params.numThreads = 1
    params.pruneRmsThresh = -1.0
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=CONFORMER_POOL, params=params))
    if not ids:
        return (pos0,)
    if AllChem.MMFFHasAllMoleculeParams(mol):
        results = AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000)
    else:
        results = AllChem.UFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000)
    ranked = []
    for k, cid in enumerate(ids):
        pos = mol.GetConformer(cid).GetPositions()
        origin, axis = _axis_frame(pos, heavy, anchor_idx)
        below = -float(np.min((pos[heavy] - origin) @ axis))
        if below > CONFORMER_BELOW_A:
            continue
        slender = lateral_radius_A(pos, origin, axis)
        standing = (pos - origin) @ rotation_to(axis, np.array([0.0, 0.0, 1.0])).T
        ranked.append((round(slender, 1), round(results[k][1], 3), k, standing))
    ranked.sort(key=lambda r: r[:3])
    # heavy-atom copies for the symmetry-aware RMSD
    skeleton = Chem.RemoveHs(Chem.Mol(mol), sanitize=False)
    skeleton.RemoveAllConformers()
    kept = [np.array(pos0)]
    for *_, pos in ranked:
        probe = Chem.Mol(skeleton)
        probe.AddConformer(_conformer_of(pos[heavy]), assignId=True)
        distinct = True
        for ref_pos in kept:
            ref = Chem.Mol(skeleton)
            ref.AddConformer(_conformer_of(ref_pos[heavy]), assignId=True)
            if rdMolAlign.GetBestRMS(probe, ref, maxMatches=1000) <= CONFORMER_RMSD_A:
                distinct = False
                break
        if distinct:
            kept.append(pos)
    return tuple(tuple(tuple(float(round(x, 8)) for x in p) for p in pos) for pos in kept)


def _conformer_of(pos: np.ndarray):
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    conf = Chem.Conformer(len(pos))
    for i, p in enumerate(pos):
        conf.SetAtomPosition(i, Point3D(*(float(x) for x in p)))
    return conf


def n_conformers(spec: LigandSpec, form: Form = "as_is", max_conformers: int = 3) -> int:
    """How many distinct conformers :func:`ligand_molecule` offers for a form (at most ``max``).

    1 for rigid molecules (no heavy-atom torsion, e.g. acetic acid); more for chains. Cached per
    SMILES; deterministic (:data:`RANDOM_SEED`).
    """
    if max_conformers < 1:
        raise InputError(f"max_conformers must be >= 1 (got {max_conformers})")
    smi, _, _ = form_smiles(spec, form)
    if max_conformers == 1:  # conformer 0 always exists: no need to build the pool
        return 1
    return min(int(max_conformers), len(_conformers(smi)))


@functools.lru_cache(maxsize=256)  # Anchor is frozen; specs are hashable
def ligand_anchor(spec: LigandSpec, form: Form = "as_is") -> Anchor:
    """The primary anchor of ``spec`` in a form (atom indices valid for :func:`ligand_molecule`)."""
    smi, _, _ = form_smiles(spec, form)
    anchors = detect_anchors(smi)
    family = _PATTERN_BY_KIND[spec.anchor].family
    for anc in anchors:
        if anc.family == family:
            return anc
    raise InputError(f"{spec.name} ({form}): no {family} anchor")  # pragma: no cover


def ligand_molecule(spec: LigandSpec, form: Form = "as_is", conformer: int = 0) -> Atoms:
    """3D geometry of a ligand form, standing along +z (deterministic).

    Parameters
    ----------
    spec
        The ligand.
    form
        ``"as_is"`` (the library/SMILES form), ``"protonated"``, ``"deprotonated"`` or
        ``"radical"`` (deprotonated atoms, neutral charge).
    conformer
        0 (default): the slender standing geometry; 1, 2, ...: the alternative conformers counted
        by :func:`n_conformers` (same atom order and frame).

    Returns
    -------
    Atoms
        Non-periodic molecule (no cell); the centroid of the anchor's binding atoms at the origin
        and the farthest heavy atom on +z. ``info``: ``ligand``, ``form``, ``charge`` (e), ``model``
        (neutral/anion/cation/radical), ``smiles``, ``anchor``, ``conformer``.

    Raises
    ------
    InputError
        If ``conformer`` is not one of the molecule's distinct conformers.
    """
    smi, charge, model = form_smiles(spec, form)
    symbols, positions = _geometry(smi)
    if conformer:
        pool = _conformers(smi)
        if not 0 <= int(conformer) < len(pool):
            raise InputError(
                f"{spec.name} ({form}) has {len(pool)} distinct conformer(s) (0..{len(pool) - 1}); "
                f"conformer {conformer} does not exist"
            )
        positions = pool[int(conformer)]
    atoms = Atoms(symbols=list(symbols), positions=np.array(positions))
    atoms.info.update(
        {
            "ligand": spec.name,
            "form": form,
            "charge": int(charge),
            "model": model,
            "smiles": smi,
            "anchor": ligand_anchor(spec, form).kind,
            "conformer": int(conformer),
        }
    )
    return atoms
