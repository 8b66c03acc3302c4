"""VASP input sets for the paper's stages (placeholder; being written)."""

from __future__ import annotations

from types import MappingProxyType

#: Valence electrons (ZVAL) of the PBE_54 POTCARs dftflow uses by default.
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
