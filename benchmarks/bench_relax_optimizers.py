"""Which ASE optimizer relaxes the study's CHGNet problems in the fewest CPU seconds?

The relaxation lever of issue 14 (and "the optimizer chosen by measurement" of issue 13): the same
starting geometries, built with dftflow's own builders as the study builds them, relaxed with CHGNet
0.3.0 (the embedded engine's model and calculator) by several ASE optimizers to the same force limit
(0.02 eV/A on free atoms) under the same step cap (1000 optimizer iterations):

* ``FIRE``            today's default (ASE defaults, as the engine runs it)
* ``BFGS``, ``LBFGS`` quasi-Newton (ASE defaults)
* ``PreconLBFGS``     ``ase.optimize.precon.PreconLBFGS(precon="Exp")`` (Armijo line search, so
  force calls can exceed iterations; the engine's FixAtoms stay fixed: checked below)
* ``FIRE:0.1>0.02``, ``BFGS:0.1>0.02``  loose-then-tight: to 0.1 eV/A, then 0.02 with a fresh
  optimizer (the two stages share the step cap)

Cases (``--case``, in this order by default):

* ``2HA_molecule``  the isolated 2-HA molecule (``molecule_form: as_is``) in the study cell
  (``workflows/cspbbr3_ligands.yaml``: vacuum raised for OA, 10 A clearance), as
  ``MoleculeRelaxTask`` builds it
* ``AcOH_slab``     acetic acid, molecular, carbonyl O on a surface Pb, on the 2x2 5-plane
  PbBr2-terminated slab (c = 46.96 A): exactly ``bench_embedded_settings.build_case`` (the case
  that took 661 FIRE steps)
* ``OA_slab_az45``, ``OA_slab_az0``  the study's two OA placements (monodentate, ``as_is``, at
  azimuth 45 and 0 deg), on the unrelaxed study slab (the study places them on the CHGNet-relaxed
  slab: same atoms, positions moved by the slab relaxation)
* ``slab``          the clean study slab, as ``SlabRelaxTask`` builds it (bottom planes fixed)

Per run: optimizer iterations, force calls (CHGNet evaluations, counted on the calculator), CPU
seconds (``time.process_time`` of this process, torch on 1 thread), wall seconds, converged, final
CHGNet energy; per case, every optimizer's final geometry against FIRE's and against the lowest
one: energy difference (meV and meV/atom) and the largest atomic displacement (minimum image). One
JSON line per run is appended to ``--out`` and runs already there are skipped (restartable).

    python benchmarks/bench_relax_optimizers.py --out bench_relax.jsonl \
        --case 2HA_molecule --case AcOH_slab

Machine load matters (2 shared cores): ``os.getloadavg()`` is recorded with every line. Torch runs
on 1 thread (as the engine's default ``torch_threads: 1``); numpy's OpenBLAS uses its own threads
unless ``OPENBLAS_NUM_THREADS=1`` is set in the environment (recorded with every line).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.geometry import find_mic
from ase.io import read, write

from dftflow.engines.embedded_chgnet import load_chgnet, max_free_force

STUDY_YAML = Path(__file__).resolve().parents[1] / "workflows" / "cspbbr3_ligands.yaml"
OPTIMIZERS = ["FIRE", "BFGS", "LBFGS", "PreconLBFGS", "FIRE:0.1>0.02", "BFGS:0.1>0.02"]
CASES = ["2HA_molecule", "AcOH_slab", "OA_slab_az45", "OA_slab_az0", "slab"]


def build_cases(names: list[str]) -> dict[str, Atoms]:
    """The starting geometries (with their FixAtoms constraints), built as the study builds them."""
    from dftflow.structures.ligands import ligand_molecule
    from dftflow.structures.placement import molecule_in_cell, place_ligand
    from dftflow.workflows import firetasks as ft
    from dftflow.workflows.flows import required_vacuum_A
    from dftflow.workflows.spec import load_study

    out: dict[str, Atoms] = {}
    spec = load_study(STUDY_YAML)
    slab_dict = spec.slab.model_dump(mode="json")
    slab_dict["vacuum_total_A"] = required_vacuum_A(spec)
    slab = ft.build_slab(slab_dict, spec.bulk.a_A)
    entries = {lig.name: lig.model_dump(mode="json") for lig in spec.ligands}
    if "2HA_molecule" in names:
        entry = entries["2-HA"]
        mol = ligand_molecule(ft.ligand_spec(entry), form=entry["molecule_form"])
        out["2HA_molecule"] = molecule_in_cell(mol, slab.cell)
    if "AcOH_slab" in names:
        import importlib.util

        path = Path(__file__).with_name("bench_embedded_settings.py")
        mod_spec = importlib.util.spec_from_file_location("bench_embedded_settings", path)
        mod = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
        mod_spec.loader.exec_module(mod)  # type: ignore[union-attr]
        systems, _ = mod.build_case(Path("."))
        out["AcOH_slab"] = systems["complex"]
    for name in names:
        if not name.startswith("OA_slab_"):
            continue
        entry, az = entries["OA"], name.rsplit("_", 1)[1]
        cands = ft.enumerate_candidates(slab, entry)
        chosen = [c for c in cands if ft.placement_label(c).endswith(az)]
        if not chosen:
            raise SystemExit(f"no {az} OA placement in {[ft.placement_label(c) for c in cands]}")
        out[name] = place_ligand(slab, ft.ligand_spec(entry), chosen[0])
    if "slab" in names:
        out["slab"] = slab  # the clean study slab (SlabRelaxTask relaxes it as built)
    return out


class Counter:
    """Counts CHGNet evaluations (calls of the calculator's ``calculate``)."""

    def __init__(self, calc) -> None:
        self.n = 0
        inner = calc.calculate

        def calculate(*args, **kwargs):
            self.n += 1
            return inner(*args, **kwargs)

        calc.calculate = calculate


def make_optimizer(name: str, atoms: Atoms):
    from ase.optimize import BFGS, FIRE, LBFGS
    from ase.optimize.precon import PreconLBFGS

    if name == "PreconLBFGS":
        return PreconLBFGS(atoms, precon="Exp", logfile=None)
    return {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}[name](atoms, logfile=None)


def relax(start: Atoms, optimizer: str, fmax: float, cap: int) -> tuple[Atoms, dict]:
    """Relax a copy of ``start`` with ``optimizer`` ("NAME" or "NAME:loose>tight")."""
    from chgnet.model import CHGNetCalculator

    atoms = start.copy()
    atoms.calc = CHGNetCalculator(model=load_chgnet("0.3.0"), use_device="cpu",
                                  on_isolated_atoms="ignore")  # fmt: skip
    counter = Counter(atoms.calc)
    if ":" in optimizer:
        name, sched = optimizer.split(":")
        stages = [float(x) for x in sched.split(">")]
    else:
        name, stages = optimizer, [fmax]
    iterations, stage_iters = 0, []
    c0, w0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for target in stages:
            opt = make_optimizer(name, atoms)
            opt.run(fmax=target, steps=max(cap - iterations, 0))
            stage_iters.append(int(opt.nsteps))
            iterations += int(opt.nsteps)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    forces = atoms.get_forces()
    energy = float(atoms.get_potential_energy())
    final = atoms.copy()
    final.calc = None
    moved_fixed = 0.0
    for c in start.constraints:
        if type(c).__name__ == "FixAtoms":
            idx = np.asarray(c.index, dtype=int)
            moved_fixed = float(np.abs(final.positions[idx] - start.positions[idx]).max())
    fm = max_free_force(final, forces)
    return final, {
        "iterations": iterations,
        "stage_iterations": stage_iters,
        "force_calls": counter.n,
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "converged": bool(fm <= fmax),
        "final_fmax_eV_per_A": round(fm, 4),
        "E_chgnet_eV": energy,
        "fixed_atoms_moved_A": moved_fixed,
    }


def compare(a: Atoms, b: Atoms) -> float:
    """Largest displacement (A, minimum image) between two geometries of the same atoms."""
    d, _ = find_mic(a.positions - b.positions, a.cell, a.pbc)
    return float(np.linalg.norm(d, axis=1).max())


def traj_name(optimizer: str) -> str:
    return f"{optimizer.replace(':', '_').replace('>', '-')}.traj"


def compare_case(case: str, cdir: Path, out: Path) -> None:
    """Every run's final geometry of ``case`` against FIRE's and against the lowest-energy one."""
    recs = {}
    for line in out.read_text().splitlines():
        rec = json.loads(line)
        if (
            rec.get("case") == case
            and "optimizer" in rec
            and (cdir / traj_name(rec["optimizer"])).is_file()
        ):
            recs[rec["optimizer"]] = rec
    if not recs:
        return
    finals = {name: read(cdir / traj_name(name)) for name in recs}
    lowest = min(recs, key=lambda n: recs[n]["E_chgnet_eV"])
    for name, rec in recs.items():
        cmp: dict = {"case": case, "optimizer": name, "lowest": lowest}
        for ref in ("FIRE", lowest):
            if ref not in recs:
                continue
            tag = "FIRE" if ref == "FIRE" else "lowest"
            dE = (rec["E_chgnet_eV"] - recs[ref]["E_chgnet_eV"]) * 1000
            cmp[f"dE_vs_{tag}_meV"] = round(dE, 2)
            cmp[f"dE_vs_{tag}_meV_per_atom"] = round(dE / rec["n_atoms"], 3)
            cmp[f"max_disp_vs_{tag}_A"] = round(compare(finals[name], finals[ref]), 3)
        print(json.dumps(cmp), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("bench_relax_optimizers"))
    ap.add_argument("--out", type=Path, default=Path("bench_relax_optimizers.jsonl"))
    ap.add_argument("--case", action="append", default=None, choices=CASES)
    ap.add_argument("--optimizer", action="append", default=None)
    ap.add_argument("--fmax", type=float, default=0.02)
    ap.add_argument("--cap", type=int, default=1000)
    ap.add_argument("--compare-only", action="store_true", help="no relaxation, compare finals")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cases = args.case or CASES
    optimizers = args.optimizer or OPTIMIZERS
    done = set()
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            rec = json.loads(line)
            if "optimizer" in rec:
                done.add((rec["case"], rec["optimizer"]))
    if args.compare_only:
        for case in cases:
            compare_case(case, args.workdir / case, args.out)
        return 0
    starts = build_cases(cases)
    for case in cases:
        start = starts[case]
        cdir = args.workdir / case
        cdir.mkdir(parents=True, exist_ok=True)
        write(cdir / "start.traj", start)
        for optimizer in optimizers:
            if (case, optimizer) in done:
                continue
            final, rec = relax(start, optimizer, args.fmax, args.cap)
            write(cdir / traj_name(optimizer), final)
            line = {
                "case": case,
                "n_atoms": len(start),
                "optimizer": optimizer,
                **rec,
                "torch_threads": torch.get_num_threads(),
                # numpy's OpenBLAS (BFGS's Hessian algebra): threads unless set before start
                "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                "load": os.getloadavg()[0],
            }
            print(json.dumps(line), flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(line) + "\n")
        compare_case(case, cdir, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
