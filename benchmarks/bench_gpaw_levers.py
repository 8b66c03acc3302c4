"""GPAW single points of the embedded study: where the CPU goes, and what each SCF lever saves.

The GPAW side of issue 14 item 1. Every static of the embedded paper study is a GPAW LCAO single
point at a CHGNet geometry; this script reruns chosen ones from a finished study directory (the
``POSCAR`` of ``DIR/calcs/<study>/<role>/``, the geometry the study computed) under settings
variants and reports, per run: total energy (GPAW's sigma->0 extrapolation, the one E_ads uses),
SCF iterations, final magnetic moment, the density as ``CHGCAR`` in the run's work folder (to
compare Delta-rho with ``dftflow analyze chgdiff``), CPU seconds of the process
(``time.process_time``: all threads), wall seconds, and GPAW's own timing table (Init / SCF /
Forces).

Variants (``--variant NAME``; settings merged over the engine's defaults, nothing else changes):

* ``base``       the defaults (``embedded_settings.DEFAULT_SETTINGS``)
* ``dens1e-3``   ``scf_density`` 1e-3 instead of GPAW's 1e-4 (electrons per valence electron)
* ``dens3e-4``   ``scf_density`` 3e-4
* ``nospin``     ``spin_polarized: false`` (an odd-electron system computed spin-restricted)
* ``noforces``   the static without the force evaluation (``static_forces: false``)
* ``spin``        ``spin_polarized: true`` (spin-polarised whatever the electron count)
* ``spin_auto``   ``spin_polarized: "auto"`` as the engine now runs it: an odd-electron slab
  computed spin-restricted first, kept when the odd electron is delocalised, else redone
  spin-polarised (the decision and the participation number are in ``spin_note``)

Each run is a fresh subprocess (``--one``), two at a time by default (2 cores: GPAW without MPI
is one process and its BLAS threads). One JSON line per run is appended to ``--out``; runs
already there are skipped (restartable). E_ads for a ligand is formed from the three statics
(complex, clean slab, isolated molecule) of the same variant when all are present.

    python benchmarks/bench_gpaw_levers.py STUDY_DIR --out levers.jsonl \
        --role AcO/complex_static --variant base --variant nospin
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS: dict[str, dict] = {
    "base": {},
    "dens1e-3": {"scf_density": 1.0e-3},
    "dens3e-4": {"scf_density": 3.0e-4},
    "nospin": {"spin_polarized": False},
    "noforces": {"static_forces": False},
    "spin_auto": {"spin_polarized": "auto"},
    "spin": {"spin_polarized": True},
}


def _timing_table(text: str) -> dict[str, float]:
    """GPAW's closing ``timing:`` block -> {"Total": s, "Init": s, "SCF": s, "Forces": s}."""
    out: dict[str, float] = {}
    block = text.rsplit("timing:", 1)[-1] if "timing:" in text else ""
    for name, value in re.findall(r"^\s+(\w+):\s+([0-9.]+)", block, flags=re.M):
        out[name] = float(value)
    return out


def run_one(calc_dir: Path, variant: str, work: Path) -> dict:
    """One GPAW static of ``calc_dir/POSCAR`` under ``variant`` (in this process)."""
    from ase.io import read

    from dftflow.engines.embedded_gpaw import run_gpaw_static
    from dftflow.engines.embedded_settings import DEFAULT_SETTINGS

    atoms = read(calc_dir / "POSCAR", format="vasp")
    settings = {**DEFAULT_SETTINGS, **VARIANTS[variant]}
    work.mkdir(parents=True, exist_ok=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    grun = run_gpaw_static(atoms, settings, work)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if grun.result.density is not None:  # the study's CHGCAR (rho*V), for analyze chgdiff
        from pymatgen.io.ase import AseAtomsAdaptor

        from dftflow.io.chgcar import write_chgcar

        structure = AseAtomsAdaptor.get_structure(atoms)
        write_chgcar(work / "CHGCAR", structure, grun.result.density * structure.volume)
    text = (work / "gpaw.txt").read_text()
    moments = re.findall(r"Total magnetic moment: \(([-0-9.e]+), ([-0-9.e]+), ([-0-9.e]+)\)", text)
    return {
        "energy_eV": grun.result.energy_eV,
        "scf_iterations": grun.scf_iterations,
        "spin_polarized": grun.spin_polarized,
        "spin_note": grun.spin_note,
        "restricted_scf_iterations": grun.restricted_scf_iterations,
        "total_magmom": float(moments[-1][2]) if moments else None,
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "gpaw_timing_s": _timing_table(text),
        "n_atoms": len(atoms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench_gpaw_levers.jsonl"))
    parser.add_argument("--role", action="append", required=True, help="e.g. AcO/complex_static")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench_gpaw_levers_work"))
    parser.add_argument("--one", nargs=2, metavar=("ROLE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    calcs = next((args.study_dir / "calcs").iterdir())
    if args.one:
        role, variant = args.one
        res = run_one(calcs / role, variant, args.work / role.replace("/", "__") / variant)
        print(json.dumps(res))
        return

    done = set()
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            rec = json.loads(line)
            done.add((rec["role"], rec["variant"]))
    todo = [(r, v) for r in args.role for v in args.variant if (r, v) not in done]

    def launch(item: tuple[str, str]) -> dict:
        role, variant = item
        cmd = [sys.executable, __file__, str(args.study_dir), "--role", role]
        cmd += ["--variant", variant, "--work", str(args.work), "--one", role, variant]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        if proc.returncode != 0:
            return {"role": role, "variant": variant, "error": proc.stderr.strip()[-400:]}
        rec = {"role": role, "variant": variant, **json.loads(proc.stdout.splitlines()[-1])}
        rec["load_1min"] = round(os.getloadavg()[0], 2)
        with args.out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
        return rec

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(launch, todo))


if __name__ == "__main__":
    main()
