"""dftflow: DFT studies of ligands on CsPbBr3 (001) surfaces."""

from __future__ import annotations

__version__ = "0.1.0"
