"""Settings of the embedded engine (CHGNet relaxations, GPAW LCAO single points) as data.

The defaults are chosen for speed on a 2-core machine and are stated in every TaskDoc
(``TaskDoc.parameters["embedded"]``); a study YAML's ``engine.settings`` and the per-run
``overrides`` are merged over them in ONE place, :func:`merge_settings`. The paper's VASP
parameters stay in :mod:`dftflow.inputs.params`; those with a meaning here (force limit, smearing
width, k-points, energy convergence) are read from there or from the VASP-tag overrides a study
passes (``EDIFFG``, ``SIGMA``, ``KPOINTS``, ``EDIFF``). VASP tags with no GPAW-LCAO meaning
(``ENCUT``, ``NGXF``/``NGYF``/``NGZF``, other INCAR tags) are recorded and reported as ignored,
never silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dftflow.engines.base import validated_settings
from dftflow.inputs import params

#: Defaults (see benchmarks/bench_embedded_settings.py for the measured effect of each on E_ads).
DEFAULT_SETTINGS: dict[str, Any] = {
    # --- relaxations: CHGNet through ASE --------------------------------------------------------
    "fmax_eV_per_A": params.FMAX_EV_PER_A,  # maximum force on free atoms (VASP EDIFFG = -fmax)
    "max_relax_steps": 1000,  # optimizer step cap; converged_ionic is False when hit
    # ASE optimizer: FIRE, BFGS, LBFGS or PreconLBFGS (Exp preconditioner). Measured on the
    # study's relaxations (benchmarks/bench_relax_optimizers_RESULTS.md): PreconLBFGS needs 0.21x
    # FIRE's CPU, converges both OA placements FIRE leaves at the step cap, and ends at the lowest
    # CHGNet energy of every case.
    "optimizer": "PreconLBFGS",
    "chgnet_model": "0.3.0",  # weights shipped in the chgnet wheel
    # --- single points: GPAW, PAW-PBE, LCAO ------------------------------------------------------
    "xc": "PBE",
    "basis": "szp(dzp)",  # single zeta + polarisation cut from the shipped dzp basis files
    # h; gpts derived from the cell only (same cell -> same grid); 0.25 A: 48x48x192 in the study
    # cell. Measured (acetic acid/slab, szp, Gamma): h 0.3 moves E_ads by +0.28 eV vs 0.25 (-0.556
    # vs -0.840 eV) for only 1.2x less CPU (slab 107 vs 130 s, complex 136 vs 142 s).
    "grid_spacing_A": 0.25,
    # Monkhorst-Pack for slab-like systems (slab, complex, molecule in the slab cell). Measured on
    # acetic acid/slab (szp, h 0.3): Gamma only moves E_ads by +0.18 eV vs 2x2x1 (-0.556 vs
    # -0.734 eV) while 2x2x1 costs only 1.35x the CPU (slab 146 vs 107 s, complex 184 vs 136 s).
    "kpts_slab": (2, 2, 1),
    "kpts_bulk": (4, 4, 4),  # Monkhorst-Pack for 3D-periodic systems
    "smearing": "fermi-dirac",  # GPAW occupation function
    "smearing_width_eV": params.SIGMA_EV,
    "scf_energy_eV_per_electron": 5.0e-4,  # GPAW default criterion (relative, per valence electron)
    "scf_energy_eV": None,  # absolute total-energy criterion (set from EDIFF when overridden)
    # Density criterion (electrons per valence electron), GPAW's default 1e-4 -> 1e-3: 9 -> 6 SCF
    # iterations on the slab (0.69x the CPU of a slab fragment); measured effects: energies
    # within 1.5 meV (E_ads within 1 meV), the OA charge transfer 0.0415 -> 0.0395 e
    # (benchmarks/bench_gpaw_levers_RESULTS.md)
    "scf_density": 1.0e-3,
    "scf_eigenstates": 4.0e-8,  # GPAW default (eV^2 per valence electron)
    "scf_maxiter": 200,
    # GPAW density mixer: None = GPAW's default (MSR1). Measured: MSR1 diverged (energy swinging by
    # 100+ eV) on a complex with the acid physisorbed 4 A above the slab, where the Pulay mixer
    # {"backend": "pulay", "beta": 0.05, "nmaxold": 5, "weight": 50.0} stayed stable but slow.
    "mixer": None,
    "dipole_correction": True,  # GPAW dipole layer along z for slabs (VASP IDIPOL=3, LDIPOL)
    # "auto": even electron counts restricted; an odd-electron system without a slab (a radical)
    # or at a surface defect spin-polarised; any other odd-electron slab restricted first, redone
    # spin-polarised only when the odd electron is localised (embedded_gpaw.odd_electron_atoms);
    # "odd": every odd-electron
    # system spin-polarised (the rule before the measurement); true / false force it.
    "spin_polarized": "auto",
    "symmetry": True,  # use point-group symmetry to reduce the k-points
    "nedos": params.NEDOS,
    # Forces in single points: a sixth of a static's CPU (slab: 14.6 of 92.4 s) and nothing in the
    # analysis uses them (E_ads, DOS, density); true puts GPAW's max force at the CHGNet geometry
    # in the TaskDoc (max_force_eV_per_A), false leaves it null.
    "static_forces": False,
    "write_density": True,  # CHGCAR of every static (the Delta-rho analysis needs it)
    "torch_threads": 1,  # CHGNet: 1 thread (measured: 2 threads on a shared 2-core box are
    # 5-80x slower per step than 1, 0.07 s vs 0.4-6 s for 8 atoms); null = torch's default
}

#: VASP tags of a study's overrides with a meaning for this engine -> setting name.
VASP_TAG_TO_SETTING: dict[str, str] = {
    "EDIFFG": "fmax_eV_per_A",
    "SIGMA": "smearing_width_eV",
    "KPOINTS": "kpts_slab",
    "EDIFF": "scf_energy_eV",
}

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]
Kpts = tuple[PositiveInt, PositiveInt, PositiveInt]


class EmbeddedSettings(BaseModel):
    """Typed settings of the embedded engine (defaults: :data:`DEFAULT_SETTINGS`)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    fmax_eV_per_A: PositiveFloat = DEFAULT_SETTINGS["fmax_eV_per_A"]
    max_relax_steps: PositiveInt = DEFAULT_SETTINGS["max_relax_steps"]
    optimizer: Literal["FIRE", "BFGS", "LBFGS", "PreconLBFGS"] = DEFAULT_SETTINGS["optimizer"]
    chgnet_model: str = DEFAULT_SETTINGS["chgnet_model"]
    xc: str = DEFAULT_SETTINGS["xc"]
    basis: str = DEFAULT_SETTINGS["basis"]
    grid_spacing_A: PositiveFloat = DEFAULT_SETTINGS["grid_spacing_A"]
    kpts_slab: Kpts = DEFAULT_SETTINGS["kpts_slab"]
    kpts_bulk: Kpts = DEFAULT_SETTINGS["kpts_bulk"]
    smearing: Literal["fermi-dirac", "marzari-vanderbilt", "methfessel-paxton"] = DEFAULT_SETTINGS[
        "smearing"
    ]
    smearing_width_eV: PositiveFloat = DEFAULT_SETTINGS["smearing_width_eV"]
    scf_energy_eV_per_electron: PositiveFloat = DEFAULT_SETTINGS["scf_energy_eV_per_electron"]
    scf_energy_eV: PositiveFloat | None = DEFAULT_SETTINGS["scf_energy_eV"]
    scf_density: PositiveFloat = DEFAULT_SETTINGS["scf_density"]
    scf_eigenstates: PositiveFloat = DEFAULT_SETTINGS["scf_eigenstates"]
    scf_maxiter: PositiveInt = DEFAULT_SETTINGS["scf_maxiter"]
    mixer: dict[str, Any] | None = DEFAULT_SETTINGS["mixer"]
    dipole_correction: bool = DEFAULT_SETTINGS["dipole_correction"]
    spin_polarized: Literal["auto", "odd"] | bool = DEFAULT_SETTINGS["spin_polarized"]
    symmetry: bool = DEFAULT_SETTINGS["symmetry"]
    nedos: PositiveInt = DEFAULT_SETTINGS["nedos"]
    static_forces: bool = DEFAULT_SETTINGS["static_forces"]
    write_density: bool = DEFAULT_SETTINGS["write_density"]
    torch_threads: PositiveInt | None = DEFAULT_SETTINGS["torch_threads"]


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check names, types and ranges of engine settings; return a normalised copy.

    Validation is :class:`EmbeddedSettings` (pydantic); its first error becomes one line.

    Raises
    ------
    EngineError
        Unknown setting, wrong type or out-of-range value (one line).
    """
    out = dict(settings)
    model = validated_settings(EmbeddedSettings, out, "embedded")
    data = model.model_dump()
    return {key: data[key] for key in out}


def merge_settings(
    base: Mapping[str, Any], overrides: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """Merge per-run overrides (engine settings or VASP tags) over ``base``.

    Parameters
    ----------
    base
        The engine's settings (defaults + constructor settings).
    overrides
        Engine setting names (lower case, as in :data:`DEFAULT_SETTINGS`) and/or VASP tags from a
        study's parameters (``EDIFFG``, ``SIGMA``, ``KPOINTS``, ``EDIFF`` are translated; others are
        recorded as ignored).

    Returns
    -------
    (settings, warnings)
        The effective settings and one line per ignored override.
    """
    settings = dict(base)
    warnings: list[str] = []
    engine_keys: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if key in DEFAULT_SETTINGS:
            engine_keys[key] = value
            continue
        tag = str(key).upper()
        if tag in VASP_TAG_TO_SETTING:
            target = VASP_TAG_TO_SETTING[tag]
            if tag == "EDIFFG":
                value = abs(float(value))
                if float(overrides[key]) > 0:  # type: ignore[index]
                    warnings.append(
                        f"EDIFFG={overrides[key]} is an energy criterion; used as force limit "  # type: ignore[index]
                        f"{value} eV/A"
                    )
            engine_keys[target] = value
            if tag == "KPOINTS":  # a study passes the mesh of the system's kind (bulk or slab)
                engine_keys["kpts_bulk"] = value
        else:
            warnings.append(
                f"override {key}={value!r} has no meaning for GPAW LCAO/CHGNet and was ignored"
            )
    settings.update(validate_settings(engine_keys))
    return settings, warnings


def fft_friendly(n: int, multiple: int = 4) -> int:
    """Smallest integer >= n that is a multiple of ``multiple`` with prime factors 2, 3, 5, 7 only.

    7 is allowed so that, e.g., a 12.01 A edge at h 0.25 A gets 56 points, not 60 (1.5x the cost of
    a static measured on the study cell when only 2, 3, 5 were allowed).
    """
    m = max(int(n), multiple)
    while True:
        if m % multiple == 0:
            k = m
            for p in (2, 3, 5, 7):
                while k % p == 0:
                    k //= p
            if k == 1:
                return m
        m += 1


def grid_points(cell_lengths_A: Sequence[float], grid_spacing_A: float) -> tuple[int, int, int]:
    """GPAW ``gpts`` from the cell lengths and a grid spacing h (Angstrom), deterministic.

    Every system in the same cell gets the same grid (the Delta-rho contract). Each count is the
    smallest FFT-friendly multiple of 4 with spacing <= h.
    """
    return tuple(
        fft_friendly(math.ceil(length / grid_spacing_A - 1e-9)) for length in cell_lengths_A
    )  # type: ignore[return-value]
