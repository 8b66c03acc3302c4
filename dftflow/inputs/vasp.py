"""VASP input sets for the paper's stages: a subclass of pymatgen's ``VaspInputSet``.

:class:`PaperVaspSet` is a pymatgen input set (a dataclass) like ``MPRelaxSet``/``MPStaticSet``:

- ``CONFIG`` holds the INCAR shared by every stage, the POTCAR table and functional; every
  number in it comes from :mod:`dftflow.inputs.params`.
- ``incar_updates`` is the stage's physics (:data:`STAGE_INCAR`, a small dict of INCAR changes
  per stage) plus the structure-dependent values, each from a small pure function (LREAL by
  size, NELECT for charged species, ISPIN for open shells, DIPOL at the slab's centre of mass,
  NGXF/NGYF/NGZF for statics).
- ``kpoints_updates`` is the stage's mesh (Monkhorst-Pack meshes from params, molecule Γ).
- ``user_incar_settings``, ``user_kpoints_settings``, ``user_potcar_settings`` are the user's
  overrides, merged **last**; ``None`` removes a key. Automatic logic never replaces them.

pymatgen's own INCAR heuristics for Materials Project sets (LMAXMIX from the atomic number,
default MAGMOMs, +U per anion, dropping EDIFFG/IBRION/ISIF when NSW = 0) would silently change
the paper's settings, so :attr:`PaperVaspSet.incar` is the plain merge
``CONFIG -> incar_updates -> user_incar_settings`` (:func:`merge_incar`) and nothing else.

The flat override mapping used by the CLI, study YAMLs and TaskDocs (:func:`validate_overrides`)
has INCAR tags (upper case), ``KPOINTS`` (3 ints), ``system`` (``bulk``/``slab``/``molecule``;
inferred from the vacuum otherwise) and ``potcar_symbols`` (element -> POTCAR symbol). It is
recorded in :attr:`VaspInputs.overrides` (and from there in the TaskDoc). An INCAR tag pymatgen
does not know raises :class:`InputError`, and so does a value of the wrong type or outside VASP's
allowed values (:func:`check_incar_value`, from pymatgen's ``incar_parameters.json``): there is no
way to pass an unchecked tag, so a typo never reaches VASP (which would ignore it silently).

A bulk stage (``bulk_relax``: ISIF = 3, 3D k-mesh) on a structure with a vacuum gap is refused
(:func:`check_stage_fits`), naming the stage to use.
"""

from __future__ import annotations

import json
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from ase import Atoms
from pymatgen.core import Structure
from pymatgen.io.vasp import Incar, Kpoints, Poscar, VaspInput
from pymatgen.io.vasp.sets import BadInputSetWarning, VaspInputSet

from dftflow.errors import EngineError, InputError
from dftflow.fileio import atomic_directory
from dftflow.inputs import params
from dftflow.inputs.params import POTCAR_ZVAL  # with the POTCAR symbols; kept importable here
from dftflow.schemas import Stage
from dftflow.structures.convert import species_blocks, to_structure
from dftflow.structures.geometry import (
    VACUUM_THRESHOLD_A,
    axis_height_A,
    unwrap_across_gap,
    vacuum_axes,
    vacuum_gap,
    widest_vacuum,
)

#: Systems with more atoms than this use LREAL = Auto (real-space projection); smaller ones False.
LREAL_AUTO_MIN_ATOMS = 20
#: An empty gap (Angstrom) wider than this along an axis is where a slab is cut for its centre.
COM_UNWRAP_GAP_A = 1.0
#: Name of the side file recording how the inputs were made (stage, system, overrides).
INPUTS_RECORD = "dftflow_inputs.json"
#: Keys of the flat override mapping that are not INCAR tags.
NON_INCAR_KEYS = ("KPOINTS", "system", "potcar_symbols")

#: INCAR settings shared by every stage (the paper's numbers come from dftflow.inputs.params).
COMMON_INCAR: Mapping[str, Any] = MappingProxyType(
    {
        "GGA": params.VASP_GGA_TAG,
        "ENCUT": params.ENCUT_EV,
        "EDIFF": params.EDIFF_EV,
        "EDIFFG": -params.FMAX_EV_PER_A,
        "PREC": "Accurate",
        "ISMEAR": 0,
        "SIGMA": params.SIGMA_EV,
        "LASPH": True,
        "NELM": 100,
        "ALGO": "Normal",
        "LWAVE": False,
        "LCHARG": False,
    }
)

#: The physics of each stage: INCAR changes merged over :data:`COMMON_INCAR`.
STAGE_INCAR: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "bulk_relax": MappingProxyType({"IBRION": 2, "ISIF": 3, "NSW": 100}),
        "slab_relax": MappingProxyType({"IBRION": 2, "ISIF": 2, "NSW": 200}),
        "complex_relax": MappingProxyType({"IBRION": 2, "ISIF": 2, "NSW": 200}),
        "molecule_relax": MappingProxyType({"IBRION": 2, "ISIF": 2, "NSW": 200}),
        "static": MappingProxyType(
            {
                "IBRION": -1,
                "NSW": 0,
                "LORBIT": 11,
                "NEDOS": params.NEDOS,
                "LCHARG": True,
                "LAECHG": True,
            }
        ),
    }
)

#: INCAR changes of slab-like systems: the paper's dipole correction along the surface normal.
SLAB_INCAR: Mapping[str, Any] = MappingProxyType(
    {"LDIPOL": True, "IDIPOL": params.DIPOLE_CORRECTION_AXIS}
)

#: Default system per stage (static infers it from the structure).
STAGE_SYSTEM: Mapping[str, str] = MappingProxyType(
    {
        "bulk_relax": "bulk",
        "slab_relax": "slab",
        "complex_relax": "slab",
        "molecule_relax": "molecule",
    }
)

#: pymatgen input-set configuration (the layout of pymatgen's set YAML files; pymatgen deep-copies
#: it into every set, so it is a plain dict).
PAPER_CONFIG: dict[str, Any] = {
    "INCAR": dict(COMMON_INCAR),
    "KPOINTS": {},
    "POTCAR": dict(params.POTCAR_SYMBOLS),
    "POTCAR_FUNCTIONAL": params.POTCAR_FUNCTIONAL,
}


# -------------------------------------------------------------------------------------------------
# small pure functions
# -------------------------------------------------------------------------------------------------
def as_structure(structure: Atoms | Structure) -> Structure:
    """Pymatgen Structure (selective dynamics from ASE FixAtoms/FixCartesian kept)."""
    if not isinstance(structure, (Atoms, Structure)):
        raise InputError(
            f"expected ASE Atoms or pymatgen Structure, got {type(structure).__name__}"
        )
    return to_structure(structure)


def charge_and_spin(structure: Atoms | Structure) -> tuple[float, float | None]:
    """(charge in e, spin or None) from ``atoms.info`` or ``Structure.properties``/``charge``."""
    if isinstance(structure, Atoms):
        info = structure.info
        return float(info.get("charge", 0.0) or 0.0), info.get("spin")
    props = getattr(structure, "properties", {}) or {}
    charge = props.get("charge", getattr(structure, "charge", 0.0) or 0.0)
    return float(charge or 0.0), props.get("spin")


def merge_incar(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge INCAR layers left to right; a ``None`` value removes the key (pymatgen's rule).

    Parameters
    ----------
    *layers
        Mappings of INCAR tags, lowest priority first (config, stage updates, user settings).

    Returns
    -------
    dict
        The merged tags.
    """
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
    return out


def infer_system(structure: Structure) -> str:
    """``"bulk"``, ``"slab"`` (vacuum along some axes) or ``"molecule"`` (vacuum along all)."""
    vac = vacuum_axes(structure, VACUUM_THRESHOLD_A)
    if all(vac):
        return "molecule"
    if any(vac):
        return "slab"
    return "bulk"


def periodic_center_of_mass(structure: Structure) -> list[float]:
    """Fractional centre of mass with periodic images handled, per axis.

    Along each axis with an empty gap wider than :data:`COM_UNWRAP_GAP_A` the atoms are unwrapped
    across the widest gap (a slab that wraps across the cell boundary becomes contiguous), the
    mass-weighted mean is taken and wrapped back into [0, 1). Without such a gap (dense along that
    axis) the mass-weighted circular mean is used.
    """
    masses = np.array([float(site.specie.atomic_mass) for site in structure])
    frac = np.mod(structure.frac_coords, 1.0)
    out = []
    for axis in range(3):
        f = frac[:, axis]
        height = axis_height_A(structure.lattice.matrix, axis)
        if vacuum_gap(structure, axis).width * height > COM_UNWRAP_GAP_A:
            center = float(np.dot(masses, unwrap_across_gap(f)) / masses.sum())
        else:
            ang = 2 * np.pi * f
            center = float(
                np.arctan2(np.dot(masses, np.sin(ang)), np.dot(masses, np.cos(ang))) / (2 * np.pi)
            )
        out.append(float(np.mod(center, 1.0)))
    return out


def dipol_for_slab(structure: Structure) -> list[float]:
    """DIPOL (fractional) for IDIPOL = 3: z at the periodic centre of mass, x = y = 0.5.

    With IDIPOL = 3 VASP corrects the dipole along the third lattice vector only, so only the z
    component matters; the in-plane components are fixed at 0.5 because an in-plane "centre" of a
    periodic slab is ill-defined (it would jump between equivalent choices on tiny displacements).
    """
    return [0.5, 0.5, round(periodic_center_of_mass(structure)[2], 6)]


def potcar_symbols_for(structure: Structure, custom: Mapping[str, str] | None = None) -> list[str]:
    """POTCAR symbol per species block of the POSCAR (defaults: params.POTCAR_SYMBOLS)."""
    table = {**params.POTCAR_SYMBOLS, **(custom or {})}
    symbols, _ = species_blocks(structure)
    missing = [s for s in symbols if s not in table]
    if missing:
        raise InputError(
            f"no POTCAR symbol configured for {', '.join(missing)}; pass potcar_symbols={{...}}"
        )
    return [table[s] for s in symbols]


def valence_electrons(structure: Structure, potcar_symbols: Sequence[str]) -> float:
    """Sum of POTCAR valences (ZVAL) for the structure (neutral)."""
    _, counts = species_blocks(structure)
    total = 0.0
    for sym, n in zip(potcar_symbols, counts, strict=True):
        if sym not in POTCAR_ZVAL:
            raise InputError(f"unknown valence (ZVAL) for POTCAR {sym}; add it to POTCAR_ZVAL")
        total += POTCAR_ZVAL[sym] * n
    return total


def is_open_shell(nelect: float, spin: float | None = None) -> bool:
    """Open shell: an explicit non-zero ``spin`` (unpaired electrons) or an odd electron count."""
    if spin is not None:
        return float(spin) != 0.0
    return int(round(nelect)) % 2 == 1


def lreal_for(n_atoms: int) -> str | bool:
    """LREAL by size: ``"Auto"`` above :data:`LREAL_AUTO_MIN_ATOMS` atoms, else False."""
    return "Auto" if n_atoms > LREAL_AUTO_MIN_ATOMS else False


def kpoints_for(system: str, divisions: Sequence[int] | None = None) -> Kpoints:
    """The k-mesh of a system kind: Monkhorst-Pack from params (bulk, slab), molecule Γ only.

    Parameters
    ----------
    system
        ``"bulk"``, ``"slab"`` or ``"molecule"``.
    divisions
        Divisions replacing the default ones (same style: Γ-centred for molecules).

    Returns
    -------
    Kpoints
        An automatic mesh.
    """
    default = {
        "bulk": params.KPOINTS_BULK,
        "slab": params.KPOINTS_SLAB,
        "molecule": (1, 1, 1),
    }[system]
    mesh = tuple(int(k) for k in (divisions if divisions is not None else default))
    if system == "molecule":
        return Kpoints.gamma_automatic(mesh)
    return Kpoints.monkhorst_automatic(mesh)


def _known_incar_tags() -> set[str]:
    return set(Incar.INCAR_PARAMS) | {"NGXF", "NGYF", "NGZF", "NGX", "NGY", "NGZ", "SYSTEM"}


def parse_override_value(key: str, value: Any) -> Any:
    """A value from the command line (``KEY=VALUE`` text) converted as pymatgen's Incar would."""
    if not isinstance(value, str):
        return value
    if value.strip().lower() in {"none", "null", ""}:
        return None
    if key.upper() == "KPOINTS":
        try:
            return [int(x) for x in value.replace(",", " ").split()]
        except ValueError as exc:
            raise InputError(f"KPOINTS must be 3 integers, got {value!r}") from exc
    return _incar_text_value(key.upper(), value.strip())


def _incar_types(tag: str) -> set[str]:
    """VASP's type(s) of ``tag`` from pymatgen's incar_parameters.json (empty when unknown)."""
    return {t.strip() for t in str(Incar.INCAR_PARAMS.get(tag, {}).get("type", "")).split("|")} - {
        ""
    }


def _incar_text_value(tag: str, text: str) -> Any:
    """``text`` as the type VASP reads for ``tag``, strictly; left as text when it does not parse.

    pymatgen's ``Incar.proc_val`` is lenient (``ENCUT = abc`` becomes the string ``"Abc"``,
    ``ISMEAR = 0.5`` becomes 0, ``LWAVE = maybe`` a string); here a number must be a whole number
    and a logical one of ``T``/``F``/``.TRUE.``/``.FALSE.``/``true``/``false``, so that
    :func:`check_incar_value` can refuse the rest. Lists and strings are read by pymatgen.
    """
    types = _incar_types(tag)
    if "list" in types or not types:
        return Incar.proc_val(tag, text)
    if "bool" in types and re.fullmatch(r"\.?(t|f|true|false)\.?", text, flags=re.IGNORECASE):
        return text.lstrip(".").lower().startswith("t")
    if "int" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "float" in types:
        try:
            return float(text.lower().replace("d", "e"))  # Fortran 1d-5 too
        except ValueError:
            return text
    if "str" in types:
        return Incar.proc_val(tag, text)
    return text


def check_incar_value(tag: str, value: Any) -> None:
    """Refuse a value of the wrong type for ``tag``, or one outside VASP's allowed values.

    Types and allowed values are pymatgen's (``Incar.INCAR_PARAMS``, from VASP's documentation):
    ``float`` takes any real number, ``int`` a whole number (not a bool), ``bool`` a logical,
    ``str`` text (compared case-insensitively with the allowed values), ``list`` a sequence or a
    single number. Tags pymatgen lists without a type are not checked. ``None`` (remove the tag)
    is always accepted.

    Raises
    ------
    InputError
        One line naming the tag, the value and what VASP expects.
    """
    if value is None:
        return
    types = _incar_types(tag)
    if not types:
        return
    is_bool = isinstance(value, (bool, np.bool_))
    is_int = isinstance(value, (numbers.Integral, np.integer)) and not is_bool
    is_real = isinstance(value, (numbers.Real, np.floating)) and not is_bool
    ok = (
        ("float" in types and is_real)
        or ("int" in types and is_int)
        or ("bool" in types and is_bool)
        or ("str" in types and isinstance(value, str))
        or ("list" in types and (isinstance(value, (list, tuple, np.ndarray)) or is_real))
    )
    if not ok:
        kinds = {"float": "a number", "int": "a whole number", "bool": "a logical (T or F)"}
        kinds.update({"str": "text", "list": "a list of values"})
        expected = " or ".join(kinds[t] for t in sorted(types) if t in kinds)
        raise InputError(f"INCAR tag {tag} takes {expected}, got {value!r}")
    allowed = Incar.INCAR_PARAMS[tag].get("values")
    if allowed is None or isinstance(value, (list, tuple, np.ndarray)):
        return

    def norm(v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    if norm(value) not in {norm(a) for a in allowed}:
        shown = ", ".join(dict.fromkeys(str(a) for a in allowed))
        raise InputError(f"INCAR tag {tag} = {value!r} is not one of VASP's values: {shown}")


def validate_incar_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """INCAR tags upper case; an unknown tag or a wrongly typed value raises :class:`InputError`."""
    known = _known_incar_tags()
    out: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        up = str(key).upper()
        if up not in known:
            raise InputError(f"unknown INCAR tag {key!r} in overrides (not a VASP INCAR tag)")
        check_incar_value(up, value)
        out[up] = value
    return out


def validate_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalise override keys (INCAR tags upper case) and reject unknown INCAR tags."""
    out: dict[str, Any] = {}
    incar: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        k = str(key)
        if k in ("system", "potcar_symbols"):
            out[k] = value
        elif k.upper() == "KPOINTS":
            kp = None if value is None else [int(x) for x in value]
            if kp is not None and (len(kp) != 3 or min(kp) < 1):
                raise InputError(f"KPOINTS override must be 3 positive integers, got {value!r}")
            out["KPOINTS"] = kp
        else:
            incar[k] = value
    out.update(validate_incar_settings(incar))
    if "system" in out and out["system"] not in ("bulk", "slab", "molecule"):
        raise InputError(f"system must be bulk, slab or molecule, got {out['system']!r}")
    return out


def _stage(stage: Stage | str) -> Stage:
    try:
        return Stage(stage)
    except ValueError:
        raise InputError(
            f"unknown stage {stage!r}; choose one of {', '.join(s.value for s in Stage)}"
        ) from None


# -------------------------------------------------------------------------------------------------
# what one run gets
# -------------------------------------------------------------------------------------------------
@dataclass
class VaspInputs:
    """The complete inputs of one run, ready to write.

    Attributes
    ----------
    incar
        Final INCAR tags (after the one merge of overrides).
    kpoints
        pymatgen ``Kpoints``.
    poscar
        pymatgen ``Poscar`` (selective dynamics when atoms are fixed).
    potcar_symbols
        POTCAR symbol per species block.
    stage, system
        What was asked for and the system kind used.
    defaults
        The INCAR before overrides (for auditing what was changed).
    overrides
        The user's overrides, as applied (recorded in TaskDocs).
    """

    incar: dict[str, Any]
    kpoints: Kpoints
    poscar: Poscar
    potcar_symbols: list[str]
    stage: str
    system: str
    defaults: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def kpoint_divisions(self) -> list[int]:
        """The k-point mesh divisions."""
        return [int(k) for k in self.kpoints.kpts[0]]

    def write(self, directory: str | Path, *, potcar_spec: bool = False) -> Path:
        """Write INCAR, KPOINTS, POSCAR, POTCAR (or POTCAR.spec) and the inputs record.

        The four VASP files are written by pymatgen's ``VaspInput`` (``POTCAR.spec`` holds the
        symbols, no licence needed).

        Raises
        ------
        EngineError
            Real POTCARs requested but PMG_VASP_PSP_DIR is not set, missing, or lacks an element.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise InputError(f"cannot write inputs in {directory}: it is not a directory")
        potcar = "\n".join(self.potcar_symbols) if potcar_spec else load_potcar(self.potcar_symbols)
        record = {
            "stage": self.stage,
            "system": self.system,
            "overrides": self.overrides,
            "potcar_symbols": self.potcar_symbols,
            "kpoints": self.kpoint_divisions,
            "kpoints_style": str(self.kpoints.style),
        }
        # all files or none: a failure (read-only or missing directory ...) leaves nothing behind
        with atomic_directory(directory) as tmp:
            VaspInput(
                incar=self.incar,
                kpoints=self.kpoints,
                poscar=self.poscar,
                potcar=potcar,
                potcar_spec=potcar_spec,
            ).write_input(str(tmp), make_dir_if_not_present=False)
            (tmp / INPUTS_RECORD).write_text(json.dumps(record, indent=2, default=str))
        return directory


def load_potcar(symbols: Sequence[str], functional: str = params.POTCAR_FUNCTIONAL):
    """Pymatgen ``Potcar`` from ``PMG_VASP_PSP_DIR``; one-line EngineError when unavailable."""
    from pymatgen.core import SETTINGS
    from pymatgen.io.vasp import Potcar

    psp_dir = os.environ.get("PMG_VASP_PSP_DIR") or SETTINGS.get("PMG_VASP_PSP_DIR")
    how = (
        "set PMG_VASP_PSP_DIR (environment or ~/.config/.pmgrc.yaml) to the directory holding "
        "POT_GGA_PAW_PBE_54/ (see `pmg config`), or use --potcar-spec"
    )
    if not psp_dir:
        raise EngineError(f"no POTCAR directory configured: {how}")
    if not Path(psp_dir).is_dir():
        raise EngineError(f"POTCAR directory {psp_dir} does not exist: {how}")
    SETTINGS["PMG_VASP_PSP_DIR"] = psp_dir
    try:
        return Potcar(list(symbols), functional=functional)
    except Exception as exc:  # pymatgen raises OSError/ValueError/RuntimeError variants
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EngineError(
            f"POTCAR for {' '.join(symbols)} ({functional}) not found in {psp_dir}: {first}"
        ) from exc


# -------------------------------------------------------------------------------------------------
# the input set
# -------------------------------------------------------------------------------------------------
@dataclass
class PaperVaspSet(VaspInputSet):
    """The reference study's VASP input set for one stage (a pymatgen ``VaspInputSet``).

    Parameters
    ----------
    structure
        The structure (pymatgen; use :meth:`get_inputs` or :func:`make_inputs` for ASE Atoms).
    stage
        One of :class:`~dftflow.schemas.Stage`.
    system
        ``"bulk"``, ``"slab"`` or ``"molecule"``; None: the stage's kind (static: inferred from
        the vacuum).
    charge_e, spin
        Net charge (e; sets NELECT) and explicit spin (unpaired electrons; None: from the
        electron count).
    user_incar_settings, user_kpoints_settings, user_potcar_settings
        pymatgen's override fields, merged last (``None`` removes an INCAR tag). Prefer
        :meth:`from_overrides` for the flat mapping the CLI and study YAMLs use.

    Examples
    --------
    >>> vis = PaperVaspSet.from_overrides("slab_relax", {"ENCUT": 520})  # doctest: +SKIP
    >>> vis.get_inputs(slab).write("run", potcar_spec=True)               # doctest: +SKIP
    """

    stage: str = ""
    system: str | None = None
    charge_e: float = 0.0
    spin: float | None = None
    sort_structure: bool = False  # atoms keep their order: ligand atoms are tracked by index
    validate_magmom: bool = False  # no MAGMOM in these sets
    CONFIG = PAPER_CONFIG

    def __post_init__(self) -> None:
        """Validate the stage and overrides, then pymatgen's own set-up."""
        self.stage = _stage(self.stage).value
        if self.system is not None and self.system not in ("bulk", "slab", "molecule"):
            raise InputError(f"system must be bulk, slab or molecule, got {self.system!r}")
        self.user_incar_settings = validate_incar_settings(self.user_incar_settings)
        self._recorded = self._flat_overrides()
        with warnings.catch_warnings():  # the POTCAR override is recorded, not just warned about
            warnings.simplefilter("ignore", BadInputSetWarning)
            super().__post_init__()

    @classmethod
    def from_overrides(
        cls, stage: Stage | str, overrides: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> PaperVaspSet:
        """The set of ``stage`` with the flat override mapping split into pymatgen's fields.

        Parameters
        ----------
        stage
            One of :class:`~dftflow.schemas.Stage`.
        overrides
            INCAR tags (None removes a tag), ``KPOINTS`` (3 ints), ``system``, ``potcar_symbols``.
        **kwargs
            Further fields (``structure``, ``charge_e``, ``spin``).
        """
        flat = validate_overrides(overrides)
        kpoints = flat.get("KPOINTS")
        return cls(
            stage=_stage(stage).value,
            system=flat.get("system"),
            user_incar_settings={k: v for k, v in flat.items() if k not in NON_INCAR_KEYS},
            user_kpoints_settings={"divisions": list(kpoints)} if kpoints is not None else {},
            user_potcar_settings=dict(flat.get("potcar_symbols") or {}),
            **kwargs,
        )

    # -- the record of what the user changed ------------------------------------------------------
    def _flat_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.user_incar_settings)
        if self.user_kpoints_settings:
            out["KPOINTS"] = [int(k) for k in self._user_divisions()]
        if self.system is not None:
            out["system"] = self.system
        if self.user_potcar_settings:
            out["potcar_symbols"] = dict(self.user_potcar_settings)
        return out

    @property
    def overrides(self) -> dict[str, Any]:
        """The user's overrides as one flat mapping (what TaskDocs record)."""
        return dict(self._recorded)

    def _user_divisions(self) -> list[int]:
        settings = self.user_kpoints_settings
        if isinstance(settings, Kpoints):
            return [int(k) for k in settings.kpts[0]]
        if set(settings) != {"divisions"}:
            raise InputError(
                f"user_kpoints_settings takes a Kpoints or {{'divisions': [n1, n2, n3]}}, "
                f"got {settings!r}"
            )
        return [int(k) for k in settings["divisions"]]

    # -- structure-dependent pieces ---------------------------------------------------------------
    def _require_structure(self) -> Structure:
        if self.structure is None:
            raise InputError("no structure given to the input set")
        return self.structure

    @property
    def system_kind(self) -> str:
        """The system kind: the user's, else the stage's, else inferred (static)."""
        if self.system is not None:
            return self.system
        return STAGE_SYSTEM.get(self.stage) or infer_system(self._require_structure())

    @property
    def potcar_symbols(self) -> list[str]:
        """POTCAR symbols per species block; an element without a configured symbol raises."""
        symbols, _ = species_blocks(self._require_structure())
        missing = [s for s in symbols if s not in self._config_dict["POTCAR"]]
        if missing:
            raise InputError(
                f"no POTCAR symbol configured for {', '.join(missing)}; pass potcar_symbols={{...}}"
            )
        return super().potcar_symbols

    @property
    def nelect(self) -> float:
        """Electrons: the POTCAR valences (:data:`POTCAR_ZVAL`, no POTCAR files read) - charge."""
        return valence_electrons(self._require_structure(), self.potcar_symbols) - self.charge_e

    @property
    def poscar(self) -> Poscar:
        """POSCAR with selective dynamics (fixed atoms) and the reduced formula as comment."""
        s = self._require_structure()
        sd = s.site_properties.get("selective_dynamics")
        return Poscar(s, comment=s.composition.reduced_formula, selective_dynamics=sd)

    def fft_grids(self, encut_eV: float, prec: str) -> tuple[list[int], list[int]]:
        """(NGX, NGY, NGZ), (NGXF, NGYF, NGZF) of the structure (pymatgen's ``calculate_ng``)."""
        coarse, fine = self.calculate_ng(custom_encut=float(encut_eV), custom_prec=str(prec))
        return [int(n) for n in coarse], [int(n) for n in fine]

    # -- pymatgen's hooks -------------------------------------------------------------------------
    @property
    def incar_updates(self) -> dict[str, Any]:
        """The stage's INCAR changes plus the structure-dependent values (before the user's)."""
        s = self._require_structure()
        updates: dict[str, Any] = dict(STAGE_INCAR[self.stage])
        updates["SYSTEM"] = f"{s.composition.reduced_formula} {self.stage}"
        updates["LREAL"] = lreal_for(len(s))
        nelect = self.nelect
        if self.charge_e:
            updates["NELECT"] = nelect
        user_nelect = self.user_incar_settings.get("NELECT")
        effective_nelect = float(user_nelect) if user_nelect is not None else nelect
        updates["ISPIN"] = 2 if is_open_shell(effective_nelect, self.spin) else 1
        if self.system_kind == "slab":
            updates.update(SLAB_INCAR)
            updates["DIPOL"] = dipol_for_slab(s)
        if self.stage == Stage.static.value:
            effective = merge_incar(self._config_dict["INCAR"], updates, self.user_incar_settings)
            if "ENCUT" not in effective:
                raise InputError("static runs need ENCUT (for NGXF/NGYF/NGZF); do not remove it")
            fine = self.fft_grids(effective["ENCUT"], effective.get("PREC", "Normal"))[1]
            updates.update(NGXF=fine[0], NGYF=fine[1], NGZF=fine[2])
        return updates

    @property
    def kpoints_updates(self) -> Kpoints:
        """The stage's mesh (:func:`kpoints_for` of the system kind)."""
        return kpoints_for(self.system_kind)

    @property
    def kpoints(self) -> Kpoints:
        """The user's KPOINTS (``Kpoints`` or divisions in the stage's style), else the stage's."""
        if isinstance(self.user_kpoints_settings, Kpoints):
            return self.user_kpoints_settings
        if self.user_kpoints_settings:
            return kpoints_for(self.system_kind, self._user_divisions())
        return self.kpoints_updates

    @property
    def default_incar(self) -> dict[str, Any]:
        """The INCAR before the user's settings: ``CONFIG`` then :attr:`incar_updates`."""
        return merge_incar(self._config_dict["INCAR"], self.incar_updates)

    @property
    def incar(self) -> Incar:
        """The INCAR: ``CONFIG``, then :attr:`incar_updates`, then ``user_incar_settings``."""
        return Incar(self.incar_dict)

    @property
    def incar_dict(self) -> dict[str, Any]:
        """:attr:`incar` as a plain dict (values as given, not re-parsed by ``Incar``)."""
        return merge_incar(self.default_incar, self.user_incar_settings)

    def get_inputs(self, structure: Atoms | Structure | None = None) -> VaspInputs:
        """All inputs for ``structure`` (or the set's structure): defaults, then the user's."""
        if structure is not None:
            self.structure = as_structure(structure)
        defaults = self.default_incar
        return VaspInputs(
            incar=merge_incar(defaults, self.user_incar_settings),
            kpoints=self.kpoints,
            poscar=self.poscar,
            potcar_symbols=self.potcar_symbols,
            stage=self.stage,
            system=self.system_kind,
            defaults=defaults,
            overrides=self.overrides,
        )


# -------------------------------------------------------------------------------------------------
# the public shortcuts
# -------------------------------------------------------------------------------------------------
def fft_grid(
    structure: Atoms | Structure,
    encut_eV: float = params.ENCUT_EV,
    prec: str = COMMON_INCAR["PREC"],
) -> tuple[list[int], list[int]]:
    """(NGX, NGY, NGZ), (NGXF, NGYF, NGZF) of a cell from pymatgen's ``calculate_ng``."""
    vis = PaperVaspSet(structure=as_structure(structure), stage=Stage.static.value)
    return vis.fft_grids(encut_eV, prec)


def shared_fft_grid(
    structures: Iterable[Atoms | Structure],
    encut_eV: float = params.ENCUT_EV,
    prec: str = COMMON_INCAR["PREC"],
    tol_A: float = 1e-3,
) -> list[int]:
    """One NGXF/NGYF/NGZF for the charge-density-difference trio (complex, bare slab, ligand).

    The three must share one cell; a mismatch raises :class:`InputError` (Δρ would be meaningless).
    """
    items = [as_structure(s) for s in structures]
    if not items:
        raise InputError("shared_fft_grid needs at least one structure")
    ref = items[0].lattice.matrix
    for s in items[1:]:
        if np.abs(s.lattice.matrix - ref).max() > tol_A:
            raise InputError(
                "the structures of a charge-density difference must share one cell; lattices differ"
            )
    grids = [fft_grid(s, encut_eV, prec)[1] for s in items]
    return [int(n) for n in np.max(np.array(grids), axis=0)]


def make_inputs(
    structure: Atoms | Structure,
    stage: Stage | str,
    overrides: Mapping[str, Any] | None = None,
) -> VaspInputs:
    """The inputs of one run: ``PaperVaspSet.from_overrides(stage, overrides)`` on ``structure``.

    The charge and spin come from ``atoms.info`` (ASE) or ``Structure.properties``.
    """
    check_stage_fits(structure, stage)
    charge, spin = charge_and_spin(structure)
    vis = PaperVaspSet.from_overrides(stage, overrides, charge_e=charge, spin=spin)
    return vis.get_inputs(structure)


#: INCAR of a LOCPOT request: VASP writes the electrostatic (ionic + Hartree) potential, the one
#: a work function is read from (LVTOT would add exchange-correlation, which does not level off
#: in the vacuum the same way). Static stage only.
LOCPOT_INCAR: Mapping[str, Any] = MappingProxyType({"LVHAR": True, "LVTOT": False})


def with_locpot(stage: Stage | str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``overrides`` plus :data:`LOCPOT_INCAR`, for a static stage (a LOCPOT on request).

    Raises
    ------
    InputError
        Not a static stage, or the overrides already set LVHAR/LVTOT otherwise.
    """
    if _stage(stage) is not Stage.static:
        raise InputError(f"a LOCPOT is written by the static stage, not {_stage(stage).value}")
    out = dict(overrides or {})
    for tag, value in LOCPOT_INCAR.items():
        if tag in out and out[tag] != value:
            raise InputError(f"--locpot sets {tag} = {value}, but the overrides set {out[tag]!r}")
        out[tag] = value
    return out


#: The stage for a structure with vacuum along some axes (slab) or along all three (molecule).
STAGE_FOR_VACUUM = MappingProxyType({"slab": "slab_relax", "molecule": "molecule_relax"})


def check_stage_fits(structure: Atoms | Structure, stage: Stage | str) -> None:
    """Refuse a bulk stage on a structure with a vacuum gap, naming the stage to use.

    ``bulk_relax`` relaxes the cell (ISIF = 3) on a 3D k-mesh: on a slab or a molecule in a box
    it would close the vacuum. A gap wider than
    :data:`~dftflow.structures.geometry.VACUUM_THRESHOLD_A` along any axis is vacuum.

    Raises
    ------
    InputError
        E.g. ``structure has a 15.0 A vacuum gap along c: bulk_relax would relax the cell
        (ISIF 3) across it; use --stage slab_relax``.
    """
    if _stage(stage) is not Stage.bulk_relax:
        return
    vacuum = widest_vacuum(structure, VACUUM_THRESHOLD_A)
    if vacuum is None:
        return
    axis, width = vacuum
    use = STAGE_FOR_VACUUM[infer_system(as_structure(structure))]
    raise InputError(
        f"structure has a {width:.1f} A vacuum gap along {'abc'[axis]}: bulk_relax would relax "
        f"the cell (ISIF 3) across it; use --stage {use}"
    )


def write_inputs(
    structure: Atoms | Structure,
    stage: Stage | str,
    directory: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    potcar_spec: bool = False,
) -> VaspInputs:
    """Make and write the inputs of one run; returns them."""
    inputs = make_inputs(structure, stage, overrides)
    inputs.write(directory, potcar_spec=potcar_spec)
    return inputs
