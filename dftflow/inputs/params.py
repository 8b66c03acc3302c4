"""The reference study's parameters, in one place.

Every other module reads its defaults from here; a study YAML may override them and the override is
recorded in each TaskDoc (``TaskDoc.overrides``). Nothing else in dftflow hard-codes these numbers.

Source: supporting information of the CsPbBr3 quantum-dot ligand study (VASP, PBE/PAW, the cutoff,
k-mesh and convergence criteria below, dipole correction along the surface normal for slabs).
:func:`settings_sentence` states them in words for reports.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

#: Exchange-correlation functional (GGA), with PAW potentials.
XC_FUNCTIONAL: Final = "PBE"
#: The VASP GGA tag value that selects :data:`XC_FUNCTIONAL`.
VASP_GGA_TAG: Final = "PE"
#: Plane-wave cutoff, eV.
ENCUT_EV: Final = 400.0
#: Electronic convergence, eV.
EDIFF_EV: Final = 1e-5
#: Ionic convergence: maximum force on free atoms, eV/Angstrom (VASP EDIFFG = -FMAX).
FMAX_EV_PER_A: Final = 0.02
#: Monkhorst-Pack mesh for slabs and complexes (the paper's mesh).
KPOINTS_SLAB: Final = (8, 8, 1)
#: Monkhorst-Pack mesh for the bulk relaxation.
KPOINTS_BULK: Final = (8, 8, 8)
#: Dipole correction of slabs: along the third lattice vector (VASP IDIPOL = 3, LDIPOL = True).
DIPOLE_CORRECTION_AXIS: Final = 3
#: Gaussian smearing width, eV (ISMEAR = 0).
SIGMA_EV: Final = 0.05
#: Number of DOS points in statics.
NEDOS: Final = 3001

#: POTCAR symbols (PBE_54 family).
POTCAR_FUNCTIONAL: Final = "PBE_54"
POTCAR_SYMBOLS: Final = MappingProxyType(
    {
        "Cs": "Cs_sv",
        "Pb": "Pb_d",
        "Br": "Br",
        "C": "C",
        "H": "H",
        "O": "O",
        "N": "N",
        "S": "S",
        "P": "P",
        "F": "F",
        "Cl": "Cl",
        "I": "I",
    }
)

#: Valence electrons (ZVAL) of the PBE_54 POTCARs dftflow uses by default and of a few common
#: alternatives a user may choose with ``potcar_symbols`` (VASP's published values).
POTCAR_ZVAL: Final = MappingProxyType(
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
        "Pb": 4.0,
        "H_h": 1.0,
        "C_h": 4.0,
        "N_h": 5.0,
        "O_h": 6.0,
    }
)

#: Reference study's adsorption energies, eV (for comparison in reports only; never used to choose a
#: model).
PAPER_E_ADS_EV: Final = MappingProxyType({"OA": -0.33, "2-HA": -0.61, "AcO": -1.77})

#: Stages every engine understands.
STAGES: Final = ("bulk_relax", "slab_relax", "molecule_relax", "complex_relax", "static")


def settings_sentence() -> str:
    """The paper's DFT settings in one sentence, built from the constants above (for reports).

    Returns
    -------
    str
        ``"PBE/PAW, ENCUT <cutoff> eV, <mesh> k-points, EDIFF <ediff> eV, forces < <fmax> eV/Å"``.
    """
    mesh = "×".join(str(k) for k in KPOINTS_SLAB)
    return (
        f"{XC_FUNCTIONAL}/PAW, ENCUT {ENCUT_EV:g} eV, {mesh} k-points, "
        f"EDIFF {EDIFF_EV:g} eV, forces < {FMAX_EV_PER_A:g} eV/Å"
    )
