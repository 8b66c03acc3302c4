"""How much each speed choice of the embedded engine moves E_ads (acetic acid on the slab).

The acetate case of the study: the 2x2 PbBr2-terminated CsPbBr3 (001) slab (5 planes) in the
study's tall cell (c = 46.96 A, room for oleic acid), acetic acid bound molecularly (carbonyl O on a
surface Pb; closed shell) and the isolated acid in the same cell. Geometries are relaxed once with
CHGNet (the engine's relaxation stages), then GPAW statics are run at each named setting:

    E_ads = E(slab + AcOH) - E(slab) - E(AcOH)

Every run's wall time, SCF iterations and energies are printed as JSON lines and appended to
``--out``; the summary gives each setting's E_ads and its difference from the reference setting.

    python benchmarks/bench_embedded_settings.py --out bench_settings.jsonl \
        --setting fast='{}' --setting reference='{"basis": "dzp", "kpts_slab": [2, 2, 1]}'

Machine load matters (2 shared cores): ``uptime`` is recorded with every line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ase.io import read, write

from dftflow.engines.embedded import EmbeddedEngine

STUDY_CELL_C_A = 46.96  # MEASURED.md: one cell tall enough for OA


def load_avg() -> float:
    return os.getloadavg()[0]


def build_case(workdir: Path, form: str = "protonated", mode: str = "monodentate"):
    """Slab, isolated ligand and complex (unrelaxed), all in the study cell."""
    from dftflow.structures.ligands import get_ligand, ligand_molecule
    from dftflow.structures.placement import enumerate_placements, molecule_in_cell, place_ligand
    from dftflow.structures.slab import cspbbr3_001_slab

    slab = cspbbr3_001_slab(layers=5, supercell=(2, 2), vacuum=15.0)
    slab = cspbbr3_001_slab(
        layers=5, supercell=(2, 2), vacuum=15.0 + STUDY_CELL_C_A - slab.cell.lengths()[2]
    )
    spec = get_ligand("AcO")
    cands = enumerate_placements(slab, spec, modes=[mode], form=form)
    complex_ = place_ligand(slab, spec, cands[0])
    molecule = molecule_in_cell(ligand_molecule(spec, form=form), slab.cell)
    return {"slab": slab, "ligand": molecule, "complex": complex_}, cands[0]


def relax_case(engine: EmbeddedEngine, systems: dict, workdir: Path) -> dict:
    stages = {"slab": "slab_relax", "ligand": "molecule_relax", "complex": "complex_relax"}
    out = {}
    for name, atoms in systems.items():
        cached = workdir / f"{name}_relaxed.traj"
        if cached.is_file():
            out[name] = read(cached)
            continue
        t0 = time.perf_counter()
        doc = engine.run(atoms, stages[name], workdir / f"{name}_relax", label=name)
        relaxed = read(workdir / f"{name}_relax" / "CONTCAR", format="vasp")
        write(cached, relaxed)
        out[name] = relaxed
        print(
            json.dumps(
                {
                    "relax": name,
                    "steps": doc.n_ionic_steps,
                    "converged": doc.converged_ionic,
                    "E_chgnet_eV": doc.energy_eV,
                    "wall_s": round(time.perf_counter() - t0, 1),
                    "load": load_avg(),
                }
            ),
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("bench_embedded_settings"))
    ap.add_argument("--out", type=Path, default=None, help="JSON lines file to append to")
    ap.add_argument(
        "--setting",
        action="append",
        default=None,
        help="NAME=JSON engine settings, e.g. fast='{}' (first one is the reference)",
    )
    args = ap.parse_args(argv)
    settings = args.setting or [
        'reference={"basis": "dzp", "kpts_slab": [2, 2, 1], "grid_spacing_A": 0.25}',
        "fast={}",
    ]
    named = [(s.split("=", 1)[0], json.loads(s.split("=", 1)[1])) for s in settings]
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    systems, placement = build_case(workdir)
    relaxed = relax_case(EmbeddedEngine(), systems, workdir)
    results = {}
    for tag, overrides in named:
        engine = EmbeddedEngine(**overrides)
        energies, walls = {}, {}
        for name in ("ligand", "slab", "complex"):
            t0 = time.perf_counter()
            doc = engine.run(relaxed[name], "static", workdir / tag / name, label=name)
            walls[name] = round(time.perf_counter() - t0, 1)
            energies[name] = doc.energy_eV
            line = {
                "setting": tag,
                "overrides": overrides,
                "system": name,
                "E_eV": doc.energy_eV,
                "wall_s": walls[name],
                "cpu_s": doc.metadata.get("cpu_time_s"),
                "scf_iterations": doc.metadata["gpaw"]["scf_iterations"],
                "gpts": doc.metadata["gpaw"]["gpts"],
                "kpts": doc.metadata["gpaw"]["kpts"],
                "load": load_avg(),
            }
            print(json.dumps(line), flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(line) + "\n")
        e_ads = energies["complex"] - energies["slab"] - energies["ligand"]
        results[tag] = {"E_ads_eV": e_ads, "wall_s": walls}
    ref = named[0][0]
    summary = {
        "case": f"acetic acid {placement.mode} on 2x2 PbBr2 slab, c = {STUDY_CELL_C_A} A",
        "reference": ref,
        "results": {
            t: {**r, "dE_ads_vs_reference_eV": r["E_ads_eV"] - results[ref]["E_ads_eV"]}
            for t, r in results.items()
        },
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps({"summary": summary}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
