"""VASP input sets for the paper's stages, as data (in the spirit of pymatgen's ``DictSet``).

One table holds the defaults (:data:`COMMON_INCAR`, :data:`STAGE_INCAR`), all numbers from
:mod:`dftflow.inputs.params`. Structure-dependent values (LREAL by size, ISPIN for open shells,
DIPOL at the slab's centre of mass, NGXF/NGYF/NGZF, selective dynamics) are computed by small pure
functions, and then the user's overrides are merged **once**, last, so nothing automatic ever
replaces
a user setting. ``None`` removes a key. Every override is recorded in :attr:`VaspInputs.overrides`
(and from there in the TaskDoc). An INCAR tag pymatgen does not know raises :class:`InputError`.

Override keys: INCAR tags (upper case), ``KPOINTS`` (3 ints, Monkhorst-Pack; Gamma-centred for
``molecule`` systems), ``system`` (``bulk``/``slab``/``molecule``; inferred from the vacuum
otherwise), ``potcar_symbols`` (element -> POTCAR symbol).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np
from ase import Atoms
from pymatgen.core import Structure
from pymatgen.io.vasp import Incar, Kpoints, Poscar

from dftflow.errors import EngineError, InputError
from dftflow.inputs import params
from dftflow.schemas import Stage

#: Valence electrons (ZVAL) of the PBE_54 POTCARs dftflow uses by default (VASP's published values).
POTCAR_ZVAL = MappingProxyType(
    {
        "Cs_sv": 9.0,
        "Pb_d": 14.0,
        "Br": 7.0,
        "C": 4.0,
        "H": 1.0,
        "O": 6.0,
        "N": 5.0,
        "S": 6.0,
        "P": 5.0,
        "F": 7.0,
        "Cl": 7.0,
        "I": 7.0,
    }
)

#: Systems with more atoms than this use LREAL = Auto (real-space projection); smaller ones False.
LREAL_AUTO_MIN_ATOMS = 20
#: Vacuum (Angstrom) along an axis above which the structure is treated as non-periodic there.
VACUUM_THRESHOLD_A = 6.0
#: Name of the side file recording how the inputs were made (stage, system, overrides).
INPUTS_RECORD = "dftflow_inputs.json"

#: INCAR settings shared by every stage (the paper's numbers come from dftflow.inputs.params).
COMMON_INCAR: Mapping[str, Any] = MappingProxyType(
    {
        "GGA": "PE",
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

#: Stage-specific INCAR settings merged over :data:`COMMON_INCAR`.
STAGE_INCAR: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "bulk_relax": {"IBRION": 2, "ISIF": 3, "NSW": 100},
        "slab_relax": {"IBRION": 2, "ISIF": 2, "NSW": 200},
        "complex_relax": {"IBRION": 2, "ISIF": 2, "NSW": 200},
        "molecule_relax": {"IBRION": 2, "ISIF": 2, "NSW": 200},
        "static": {
            "IBRION": -1,
            "NSW": 0,
            "LORBIT": 11,
            "NEDOS": params.NEDOS,
            "LCHARG": True,
            "LAECHG": True,
        },
    }
)

#: Default system per stage (static infers it from the structure).
STAGE_SYSTEM = {
    "bulk_relax": "bulk",
    "slab_relax": "slab",
    "complex_relax": "slab",
    "molecule_relax": "molecule",
}


# -------------------------------------------------------------------------------------------------
# small pure functions
# -------------------------------------------------------------------------------------------------
def as_structure(structure: Atoms | Structure) -> Structure:
    """Pymatgen Structure (selective dynamics from ASE FixAtoms/FixCartesian kept)."""
    from dftflow.structures.convert import to_structure

    if not isinstance(structure, (Atoms, Structure)):
        raise InputError(
            f"expected ASE Atoms or pymatgen Structure, got {type(structure).__name__}"
        )
    return to_structure(structure)


def _charge_and_spin(structure: Atoms | Structure) -> tuple[float, float | None]:
    """(charge in e, spin or None) from ``atoms.info`` or ``Structure.properties``/``charge``."""
    if isinstance(structure, Atoms):
        info = structure.info
        return float(info.get("charge", 0.0) or 0.0), info.get("spin")
    props = getattr(structure, "properties", {}) or {}
    charge = props.get("charge", getattr(structure, "charge", 0.0) or 0.0)
    return float(charge or 0.0), props.get("spin")


def vacuum_axes(structure: Structure, threshold_A: float = VACUUM_THRESHOLD_A) -> list[bool]:
    """For each lattice axis, whether the largest empty gap along it exceeds ``threshold_A``."""
    out = []
    for axis in range(3):
        frac = np.sort(np.mod(structure.frac_coords[:, axis], 1.0))
        gaps = np.diff(np.concatenate([frac, frac[:1] + 1.0]))
        length = structure.lattice.abc[axis]
        out.append(bool(gaps.max() * length > threshold_A))
    return out


def infer_system(structure: Structure) -> str:
    """``"bulk"``, ``"slab"`` (vacuum along c only) or ``"molecule"`` (vacuum in all directions)."""
    vac = vacuum_axes(structure)
    if all(vac):
        return "molecule"
    if vac[2] and not vac[0] and not vac[1]:
        return "slab"
    if any(vac):
        return "slab"
    return "bulk"


def periodic_center_of_mass(structure: Structure) -> list[float]:
    """Fractional centre of mass with periodic images handled, per axis.

    Along each axis the atoms are unwrapped across the largest empty gap (a slab that wraps across
    the
    cell boundary becomes contiguous), the mass-weighted mean is taken and wrapped back into [0, 1).
    Without any gap (dense along that axis) the mass-weighted circular mean is used.
    """
    masses = np.array([float(site.specie.atomic_mass) for site in structure])
    frac = np.mod(structure.frac_coords, 1.0)
    out = []
    for axis in range(3):
        f = frac[:, axis]
        order = np.argsort(f)
        fs = f[order]
        gaps = np.diff(np.concatenate([fs, fs[:1] + 1.0]))
        i = int(np.argmax(gaps))
        if gaps[i] * structure.lattice.abc[axis] > 1.0:
            start = fs[(i + 1) % len(fs)]  # first atom after the gap
            unwrapped = np.mod(f - start, 1.0) + start
            center = float(np.dot(masses, unwrapped) / masses.sum())
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
    from dftflow.structures.convert import species_blocks

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
    from dftflow.structures.convert import species_blocks

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


def fft_grid(structure: Structure, encut_eV: float = params.ENCUT_EV, prec: str = "Accurate"):
    """(NGX, NGY, NGZ), (NGXF, NGYF, NGZF) of a cell from pymatgen's ``calculate_ng``."""
    from pymatgen.io.vasp.sets import VaspInputSet

    fake = SimpleNamespace(
        incar={"ENCUT": float(encut_eV), "PREC": prec}, poscar=SimpleNamespace(structure=structure)
    )
    coarse, fine = VaspInputSet.calculate_ng(fake)
    return [int(n) for n in coarse], [int(n) for n in fine]


def shared_fft_grid(
    structures: Iterable[Atoms | Structure],
    encut_eV: float = params.ENCUT_EV,
    prec: str = "Accurate",
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
    return Incar.proc_val(key.upper(), value)


def validate_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalise override keys (INCAR tags upper case) and reject unknown INCAR tags."""
    out: dict[str, Any] = {}
    known = _known_incar_tags()
    for key, value in (overrides or {}).items():
        k = str(key)
        if k in ("system", "potcar_symbols"):
            out[k] = value
            continue
        up = k.upper()
        if up == "KPOINTS":
            kp = None if value is None else [int(x) for x in value]
            if kp is not None and (len(kp) != 3 or min(kp) < 1):
                raise InputError(f"KPOINTS override must be 3 positive integers, got {value!r}")
            out[up] = kp
            continue
        if up not in known:
            raise InputError(f"unknown INCAR tag {k!r} in overrides (not a VASP INCAR tag)")
        out[up] = value
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
# the input set
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

        Raises
        ------
        EngineError
            Real POTCARs requested but PMG_VASP_PSP_DIR is not set, missing, or lacks an element.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if potcar_spec:
            potcar_text = "\n".join(self.potcar_symbols) + "\n"
            potcar_name = "POTCAR.spec"
        else:
            potcar_text = str(load_potcar(self.potcar_symbols))
            potcar_name = "POTCAR"
        Incar(self.incar).write_file(directory / "INCAR")
        self.kpoints.write_file(directory / "KPOINTS")
        self.poscar.write_file(directory / "POSCAR")
        (directory / potcar_name).write_text(potcar_text)
        record = {
            "stage": self.stage,
            "system": self.system,
            "overrides": self.overrides,
            "potcar_symbols": self.potcar_symbols,
            "kpoints": self.kpoint_divisions,
            "kpoints_style": str(self.kpoints.style),
        }
        (directory / INPUTS_RECORD).write_text(json.dumps(record, indent=2, default=str))
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


class PaperVaspSet:
    """The reference study's VASP input set for one stage (data + one merge of overrides).

    Parameters
    ----------
    stage
        One of :class:`~dftflow.schemas.Stage`.
    overrides
        INCAR tags (None removes a tag), ``KPOINTS``, ``system``, ``potcar_symbols``.

    Examples
    --------
    >>> inputs = PaperVaspSet("slab_relax").get_inputs(slab)          # doctest: +SKIP
    >>> inputs.write("run", potcar_spec=True)                           # doctest: +SKIP
    """

    CONFIG = {"common": COMMON_INCAR, "stages": STAGE_INCAR}

    def __init__(self, stage: Stage | str, overrides: Mapping[str, Any] | None = None) -> None:
        self.stage = _stage(stage)
        self.overrides = validate_overrides(overrides)

    def system_for(self, structure: Structure) -> str:
        """The system kind: override, else the stage's, else inferred (static)."""
        if "system" in self.overrides:
            return str(self.overrides["system"])
        return STAGE_SYSTEM.get(self.stage.value) or infer_system(structure)

    def default_incar(self, structure: Atoms | Structure) -> dict[str, Any]:
        """INCAR before user overrides: table defaults plus structure-dependent values."""
        s = as_structure(structure)
        system = self.system_for(s)
        incar: dict[str, Any] = {**COMMON_INCAR, **STAGE_INCAR[self.stage.value]}
        incar["SYSTEM"] = f"{s.composition.reduced_formula} {self.stage.value}"
        incar["LREAL"] = lreal_for(len(s))
        symbols = potcar_symbols_for(s, self.overrides.get("potcar_symbols"))
        charge, spin = _charge_and_spin(structure)
        nelect = valence_electrons(s, symbols) - charge
        if charge:
            incar["NELECT"] = nelect
        incar["ISPIN"] = 2 if is_open_shell(nelect, spin) else 1
        if system == "slab":
            incar.update(LDIPOL=True, IDIPOL=3, DIPOL=dipol_for_slab(s))
        if self.stage is Stage.static:
            ngf = fft_grid(s, float(incar["ENCUT"]), str(incar["PREC"]))[1]
            incar.update(NGXF=ngf[0], NGYF=ngf[1], NGZF=ngf[2])
            incar["NEDOS"] = max(int(incar["NEDOS"]), params.NEDOS)
        return incar

    def default_kpoints(self, structure: Structure) -> tuple[str, list[int]]:
        """(style, divisions): bulk 8x8x8 MP, slab 8x8x1 MP, molecule Gamma only."""
        system = self.system_for(structure)
        if system == "bulk":
            return "Monkhorst", list(params.KPOINTS_BULK)
        if system == "slab":
            return "Monkhorst", list(params.KPOINTS_SLAB)
        return "Gamma", [1, 1, 1]

    def get_inputs(self, structure: Atoms | Structure) -> VaspInputs:
        """All inputs for ``structure``: defaults, then the user's overrides merged once."""
        s = as_structure(structure)
        defaults = self.default_incar(structure)
        incar = dict(defaults)
        for key, value in self.overrides.items():
            if key in ("system", "potcar_symbols", "KPOINTS"):
                continue
            if value is None:
                incar.pop(key, None)
            else:
                incar[key] = value
        style, divisions = self.default_kpoints(s)
        if self.overrides.get("KPOINTS") is not None:
            divisions = list(self.overrides["KPOINTS"])
        if style == "Gamma":
            kpoints = Kpoints.gamma_automatic(tuple(divisions))
        else:
            kpoints = Kpoints.monkhorst_automatic(tuple(divisions))
        sd = s.site_properties.get("selective_dynamics")
        poscar = Poscar(s, comment=s.composition.reduced_formula, selective_dynamics=sd)
        symbols = potcar_symbols_for(s, self.overrides.get("potcar_symbols"))
        return VaspInputs(
            incar=incar,
            kpoints=kpoints,
            poscar=poscar,
            potcar_symbols=symbols,
            stage=self.stage.value,
            system=self.system_for(s),
            defaults=defaults,
            overrides=dict(self.overrides),
        )


def make_inputs(
    structure: Atoms | Structure,
    stage: Stage | str,
    overrides: Mapping[str, Any] | None = None,
) -> VaspInputs:
    """Shortcut: ``PaperVaspSet(stage, overrides).get_inputs(structure)``."""
    return PaperVaspSet(stage, overrides).get_inputs(structure)


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
