"""Writing a CHGCAR: dftflow's numpy writer against pymatgen's ``Chgcar.write_file``.

    python benchmarks/bench_chgcar_write.py [NX NY NZ]

Default grid 160 x 160 x 224 (a 103 MB CHGCAR). Both files are read back with pymatgen and compared.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp import Chgcar, Poscar

from dftflow.io.chgcar import write_chgcar


def main() -> None:
    shape = tuple(int(x) for x in sys.argv[1:4]) if len(sys.argv) >= 4 else (160, 160, 224)
    structure = Structure(
        Lattice.orthorhombic(11.748, 11.748, 46.96), ["Pb", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    data = np.random.default_rng(0).random(shape) * structure.volume
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "CHGCAR_dftflow", Path(tmp) / "CHGCAR_pymatgen"
        t0 = time.perf_counter()
        write_chgcar(ours, structure, data)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        Chgcar(Poscar(structure), {"total": data}).write_file(theirs)
        t_theirs = time.perf_counter() - t0
        a = Chgcar.from_file(ours).data["total"]
        b = Chgcar.from_file(theirs).data["total"]
        assert np.allclose(a, b, rtol=1e-9), "the two files differ"
        print(f"grid {shape}: {ours.stat().st_size / 1e6:.0f} MB")
        print(f"dftflow write_chgcar {t_ours:.2f} s; pymatgen Chgcar.write_file {t_theirs:.2f} s")
        print(f"speed-up {t_theirs / t_ours:.1f}x; read back identical to 1e-9")


if __name__ == "__main__":
    main()
