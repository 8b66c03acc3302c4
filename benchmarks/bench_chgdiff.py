"""Δρ pipeline: ``dftflow analyze chgdiff`` against pymatgen's, on three synthetic CHGCARs.

    python benchmarks/bench_chgdiff.py [--grid NX NY NZ] [--repeat N] [--skip-pymatgen] [--keep DIR]

Default grid 160 x 160 x 224 (three ~100 MB CHGCARs). The files are a 2x2 PbBr2-terminated
CsPbBr3 (001) slab (5 planes, 52 atoms, 11.748 x 11.748 x 46.96 A), an acetic acid molecule above
it, and the complex of both, each density a sum of per-atom Gaussians (a narrow core and a wide
valence part, VASP's rho*V convention, values from ~1e3 at the Pb cores down to ~1e-6 in the
vacuum with small negative noise as VASP writes) followed by augmentation occupancies (as in a
real CHGCAR); the complex holds a known charge transfer of 0.05 e across the interface.

Each pipeline runs in its own subprocess; wall, CPU seconds (user + sys of the child) and peak
RSS (``ru_maxrss`` of the child) are measured from outside, and one Python process that only
imports what the pipeline imports gives the interpreter + imports baseline. The pipelines:

* dftflow: the console script, ``dftflow analyze chgdiff AB A B -o DELTA --json``;
* pymatgen: ``Chgcar.from_file`` x 3, ``linear_add`` x 2, ``get_average_along_axis(2)``,
  ``write_file``.

pymatgen writes a ``linear_add`` result without augmentation occupancies (``linear_add`` empties
``data_aug``), and so does dftflow: like is compared with like. Both written files are read back
with pymatgen and compared with pymatgen's in-memory result (relative 1e-10).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Cell of the benchmark, A (the study's 2x2 CsPbBr3 slab cell).
A_CELL, C_CELL = 11.748, 46.96
VALENCE = {"Cs": 9.0, "Pb": 14.0, "Br": 7.0, "C": 4.0, "O": 6.0, "H": 1.0}
#: Share of each atom's electrons in the narrow (core-like) Gaussian, and the two widths (A).
CORE_SHARE, CORE_SIGMA, VALENCE_SIGMA = 0.4, 0.25, 0.8
AUG_PER_ATOM = 18  # augmentation occupancies written per atom (VASP writes lmmax*lmmax-like counts)


def structures():
    """(complex, slab, ligand) pymatgen Structures in one orthorhombic cell."""
    from pymatgen.core import Lattice, Structure

    a = A_CELL / 2
    species, cart = [], []
    z0 = 15.0
    for plane in range(5):  # PbBr2 / CsBr / PbBr2 / CsBr / PbBr2
        z = z0 + plane * a / 2
        for i in range(2):
            for j in range(2):
                x, y = i * a, j * a
                if plane % 2 == 0:
                    species += ["Pb", "Br", "Br"]
                    cart += [[x, y, z], [x + a / 2, y, z], [x, y + a / 2, z]]
                else:
                    species += ["Cs", "Br"]
                    cart += [[x + a / 2, y + a / 2, z], [x, y, z]]
    top = z0 + 2 * a
    lig_species = ["O", "O", "C", "C", "H", "H", "H", "H"]
    lig_cart = np.array(
        [
            [1.1, 0.0, 2.3],
            [-1.1, 0.0, 2.3],
            [0.0, 0.0, 3.0],
            [0.0, 0.0, 4.5],
            [0.9, 0.5, 4.9],
            [-0.9, 0.5, 4.9],
            [0.0, -1.0, 4.9],
            [1.9, 0.0, 2.0],
        ]
    ) + [a / 2, a / 2, top]
    lattice = Lattice.orthorhombic(A_CELL, A_CELL, C_CELL)
    slab = Structure(lattice, species, cart, coords_are_cartesian=True).get_sorted_structure()
    ligand = Structure(lattice, lig_species, lig_cart, coords_are_cartesian=True)
    ligand = ligand.get_sorted_structure()
    complex_ = Structure(
        lattice,
        [*slab.species, *ligand.species],
        np.vstack([slab.cart_coords, ligand.cart_coords]),
        coords_are_cartesian=True,
    )
    return complex_, slab, ligand


def _gauss_1d(n: int, length: float, centre: float, sigma: float) -> np.ndarray:
    x = np.arange(n) * length / n - centre
    x -= np.round(x / length) * length  # nearest periodic image
    return np.exp(-0.5 * (x / sigma) ** 2)


def rho_v(structure, grid, extra=()) -> np.ndarray:
    """rho*V of the structure (Gaussians per atom, normalised on the grid) plus ``extra``.

    ``extra``: (cartesian centre, electrons) Gaussians of width 0.2 A (the charge transfer).
    Built as separable products (orthorhombic cell) in a Fortran-ordered array.
    """
    lengths = structure.lattice.abc
    n_points = int(np.prod(grid))
    rho = np.zeros(grid, order="F")
    blobs = []
    for site in structure:
        q = VALENCE[site.specie.symbol]
        blobs += [(site.coords, q * CORE_SHARE, CORE_SIGMA)]
        blobs += [(site.coords, q * (1 - CORE_SHARE), VALENCE_SIGMA)]
    blobs += [(np.asarray(c), q, 0.2) for c, q in extra]
    for centre, q, sigma in blobs:
        g = [
            _gauss_1d(n, length, c, sigma)
            for n, length, c in zip(grid, lengths, centre, strict=True)
        ]
        norm = g[0].sum() * g[1].sum() * g[2].sum()
        gxy = np.multiply.outer(g[0], g[1]) * (q * n_points / norm)  # sum(rho*V)/N = q
        rho += gxy[:, :, None] * g[2][None, None, :]
    # VASP's densities are noisy at the 1e-6 level in the vacuum (slightly negative in places)
    rng = np.random.default_rng(len(structure))
    rho += rng.normal(scale=2e-6, size=grid[2])[None, None, :]
    return rho


def write_vasp_chgcar(path: Path, structure, data: np.ndarray) -> None:
    """CHGCAR with VASP's layout, including augmentation occupancies after the grid."""
    from dftflow.io.chgcar import write_chgcar

    write_chgcar(path, structure, data, comment=structure.composition.reduced_formula)
    rng = np.random.default_rng(7)
    with open(path, "a") as fh:
        for i in range(len(structure)):
            fh.write(f"augmentation occupancies {i + 1:3d} {AUG_PER_ATOM:3d}\n")
            vals = rng.normal(scale=0.1, size=AUG_PER_ATOM)
            for k in range(0, AUG_PER_ATOM, 5):
                fh.write(" ".join(f"{v:15.7E}" for v in vals[k : k + 5]) + "\n")


def make_inputs(directory: Path, grid) -> dict[str, Path]:
    """Write AB/CHGCAR, A/CHGCAR, B/CHGCAR (complex, slab, ligand)."""
    complex_, slab, ligand = structures()
    plane_z = 0.5 * (max(s.coords[2] for s in slab) + min(s.coords[2] for s in ligand))
    centre = [A_CELL / 4, A_CELL / 4]
    transfer = [([*centre, plane_z - 0.6], 0.05), ([*centre, plane_z + 0.6], -0.05)]
    paths = {}
    for name, struct, extra in (
        ("AB", complex_, transfer),
        ("A", slab, ()),
        ("B", ligand, ()),
    ):
        (directory / name).mkdir(parents=True, exist_ok=True)
        paths[name] = directory / name / "CHGCAR"
        write_vasp_chgcar(paths[name], struct, rho_v(struct, grid, extra))
    return paths


#: pymatgen's pipeline; prints the seconds (wall, CPU) spent after its imports.
PYMATGEN_PIPELINE = """
import sys, time, warnings
import numpy as np
from pymatgen.io.vasp import Chgcar
warnings.simplefilter("ignore")
t0, c0 = time.perf_counter(), time.process_time()
ab, a, b, out, avg = sys.argv[1:6]
c_ab, c_a, c_b = (Chgcar.from_file(p) for p in (ab, a, b))
delta = c_ab.linear_add(c_a, -1.0).linear_add(c_b, -1.0)
np.save(avg, delta.get_average_along_axis(2))
delta.write_file(out)
print(time.perf_counter() - t0, time.process_time() - c0)
"""
#: dftflow's CLI path in one process (``dftflow.cli.main``), timed after its imports.
DFTFLOW_PIPELINE = """
import contextlib, io, sys, time
from dftflow.cli import main
import dftflow.analysis.chgdiff
t0, c0 = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["analyze", "chgdiff", *sys.argv[1:4], "-o", sys.argv[4], "--json"])
print(time.perf_counter() - t0, time.process_time() - c0)
sys.exit(code)
"""
#: What the dftflow pipeline imports (the interpreter + imports baseline of its peak RSS).
BASELINE_IMPORTS = "import dftflow.cli, dftflow.analysis.chgdiff"
FIGURES = ("wall_s", "cpu_s", "peak_rss_MB")


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd`` in a child: wall and CPU (user + sys) seconds, peak RSS (MB), its stdout.

    The child's figures come from GNU ``/usr/bin/time -v`` (per process), or else from
    ``getrusage(RUSAGE_CHILDREN)`` (whose ``ru_maxrss`` is the largest child so far).
    """
    if Path("/usr/bin/time").exists():
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        fields = {}
        for line in proc.stderr.splitlines():
            key, _, value = line.strip().rpartition(": ")
            fields[key] = value
        if proc.returncode != 0 or "User time (seconds)" not in fields:
            raise SystemExit(f"{cmd[:4]} failed: {proc.stderr.strip()[-2000:]}")
        cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
        rss = int(fields["Maximum resident set size (kbytes)"]) / 1024
        return {"wall_s": wall, "cpu_s": cpu, "peak_rss_MB": rss, "stdout": proc.stdout}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {proc.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_MB": after.ru_maxrss / 1024,
        "stdout": proc.stdout,
    }


def _median(runs: list[dict], keys=FIGURES) -> dict:
    return {k: float(np.median([r[k] for r in runs])) for k in keys}


def check_read_back(paths: dict[str, Path], ours: Path, theirs: Path, result: dict, avg: Path):
    """Both written files against pymatgen's in-memory Δ(ρV); the planar averages."""
    from pymatgen.io.vasp import Chgcar

    grids = [Chgcar.from_file(str(paths[k])).data["total"] for k in ("AB", "A", "B")]
    expected = grids[0] + -1.0 * grids[1] + -1.0 * grids[2]  # what linear_add computes
    del grids
    scale = np.maximum(np.abs(expected), np.finfo(float).tiny)
    rel = {}
    for name, path in (("dftflow", ours), ("pymatgen", theirs)):
        if path.exists():
            rel[name] = float(
                np.max(np.abs(Chgcar.from_file(str(path)).data["total"] - expected) / scale)
            )
    pm_avg = np.load(avg) if avg.exists() else expected.mean(axis=(0, 1))
    ours_avg = np.asarray(result["planar_average_e_per_A3"]) * float(result["volume_A3"])
    rel["planar_average"] = float(np.max(np.abs(ours_avg - pm_avg)) / np.max(np.abs(pm_avg)))
    return rel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs=3, type=int, default=[160, 160, 224])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each pipeline (median)")
    parser.add_argument("--skip-pymatgen", action="store_true", help="dftflow only")
    parser.add_argument("--keep", type=Path, help="write (or reuse) the inputs in this directory")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    grid = tuple(args.grid)
    python = sys.executable
    dftflow = str(Path(python).parent / "dftflow")
    grid_MB = float(np.prod(grid)) * 8 / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        paths = {k: work / k / "CHGCAR" for k in ("AB", "A", "B")}
        t0 = time.perf_counter()
        if not all(p.exists() for p in paths.values()):
            paths = make_inputs(work, grid)
        size = paths["AB"].stat().st_size / 1e6
        print(
            f"inputs: {'x'.join(map(str, grid))}, {size:.0f} MB each "
            f"({time.perf_counter() - t0:.0f} s to make or find)",
            flush=True,
        )
        out_d, out_p, avg_p = work / "DELTA_dftflow", work / "DELTA_pymatgen", work / "avg.npy"
        files = [str(p) for p in paths.values()]
        cmds = {
            "baseline": [python, "-c", BASELINE_IMPORTS],
            "dftflow": [dftflow, "analyze", "chgdiff", *files, "-o", str(out_d), "--json"],
            "dftflow_inproc": [python, "-c", DFTFLOW_PIPELINE, *files, str(out_d) + "_inproc"],
            "pymatgen": [python, "-c", PYMATGEN_PIPELINE, *files, str(out_p), str(avg_p)],
        }
        if args.skip_pymatgen:
            del cmds["pymatgen"]
        runs: dict[str, list[dict]] = {k: [] for k in cmds}
        for _ in range(args.repeat):  # in turn, so that a drift of the machine hits all
            for name, cmd in cmds.items():
                runs[name].append(run_measured(cmd))
        med = {name: _median(rs) for name, rs in runs.items()}
        for name in ("dftflow_inproc", "pymatgen"):
            if name in runs:
                for r in runs[name]:
                    r["after_imports_wall_s"], r["after_imports_cpu_s"] = map(
                        float, r["stdout"].split()[-2:]
                    )
                med[name].update(
                    _median(runs[name], ("after_imports_wall_s", "after_imports_cpu_s"))
                )
        result = json.loads(runs["dftflow"][-1]["stdout"])
        base = med["baseline"]["peak_rss_MB"]
        print(
            f"grid {'x'.join(map(str, grid))} ({grid_MB:.0f} MB of float64 a grid), "
            f"median of {args.repeat}, whole processes:"
        )
        for name in ("baseline", "dftflow", "pymatgen"):
            if name in med:
                m = med[name]
                above = m["peak_rss_MB"] - base
                print(
                    f"  {name:9s} wall {m['wall_s']:6.2f} s  CPU {m['cpu_s']:6.2f} s  peak RSS "
                    f"{m['peak_rss_MB']:5.0f} MB ({above:+.0f} MB = {above / grid_MB:.1f} grids "
                    "over the dftflow imports)"
                )
        if "pymatgen" in med:
            d, p = med["dftflow"], med["pymatgen"]
            di, pi = med["dftflow_inproc"], med["pymatgen"]
            print(
                f"  speed-up, whole process: wall {p['wall_s'] / d['wall_s']:.1f}x, "
                f"CPU {p['cpu_s'] / d['cpu_s']:.1f}x"
            )
            print(
                f"  after the imports: dftflow wall {di['after_imports_wall_s']:.2f} s CPU "
                f"{di['after_imports_cpu_s']:.2f} s; pymatgen wall {pi['after_imports_wall_s']:.2f}"
                f" s CPU {pi['after_imports_cpu_s']:.2f} s; speed-up wall "
                f"{pi['after_imports_wall_s'] / di['after_imports_wall_s']:.1f}x, CPU "
                f"{pi['after_imports_cpu_s'] / di['after_imports_cpu_s']:.1f}x"
            )
            rel = check_read_back(paths, out_d, out_p, result, avg_p)
            print(
                f"  read back in pymatgen vs pymatgen's in-memory Δ(ρV): dftflow's file "
                f"{rel['dftflow']:.1e}, pymatgen's own file {rel['pymatgen']:.1e} (max relative); "
                f"planar average {rel['planar_average']:.1e} (of its largest value)"
            )
            assert rel["dftflow"] <= 1e-10 and rel["planar_average"] <= 1e-10
            med["read_back_relative"] = rel
        print(
            f"  ∫Δρ dV = {result['total_charge_e']:+.1e} e; charge transfer across the "
            f"ligand/surface plane {result['charge_transfer_e']:+.4f} e (built in: +0.05 e)"
        )
        if args.json:
            args.json.write_text(json.dumps({"grid": grid, "median": med}, indent=2) + "\n")


if __name__ == "__main__":
    main()
