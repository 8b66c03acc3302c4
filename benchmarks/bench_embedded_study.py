"""Wall time and E_ads of the whole embedded study (the README's main command).

Runs ``dftflow run STUDY.yaml -o DIR`` (embedded engine), then lists every calculation's wall time
from ``DIR/taskdocs/*.json`` and the adsorption energies from ``DIR/summary.json``:

    python benchmarks/bench_embedded_study.py workflows/cspbbr3_ligands.yaml -o runs/bench

With ``--summarise-only`` it only reads an existing study directory. The machine load (1-minute
load average) is sampled every 30 s while the study runs and reported (2 shared cores: a load above
2 means the timings are pessimistic).

Before/after in one run (issue 14): ``--variant NAME='{"setting": value, ...}'`` (repeatable) runs
the study once per variant, in the order given, each with its JSON merged into the study's
``engine.settings`` (a copy of the YAML is written beside the output) into ``OUT/NAME``, and
prints per variant: the sum of every Firework's CPU seconds (TaskDoc ``metadata.cpu_time_s``), the
CPU seconds of the whole ``dftflow run`` process tree (``RUSAGE_CHILDREN``: workers, FireWorks,
start-up), wall seconds, E_ads per ligand with the placement chosen, and placements that hit the
step cap; then each variant's ratios to the first one:

    python benchmarks/bench_embedded_study.py workflows/cspbbr3_ligands.yaml -o runs/ba \
        --variant before='{"optimizer": "FIRE", "static_forces": true}' --variant after='{}'
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path


def summarise(study_dir: Path) -> dict:
    """Per-calculation wall times and E_ads of a finished (or partial) study directory."""
    calcs = []
    for path in sorted((study_dir / "taskdocs").glob("*.json")):
        doc = json.loads(path.read_text())
        meta = doc.get("metadata", {})
        gpaw = meta.get("gpaw", {})
        relax = meta.get("relax", {})
        calcs.append(
            {
                "role": path.stem,
                "stage": doc.get("stage"),
                "formula": doc.get("formula"),
                "n_atoms": doc.get("n_atoms"),
                "wall_s": round(doc.get("wall_time_s") or 0.0, 1),
                "cpu_s": meta.get("cpu_time_s"),
                "scf_iterations": gpaw.get("scf_iterations"),
                "ionic_steps": relax.get("n_steps"),
                "ispin": doc.get("ispin"),
                "nelect": doc.get("nelect"),
                "spin_treatment": gpaw.get("spin_treatment"),
                "restricted_scf_iterations": gpaw.get("restricted_scf_iterations"),
                "restricted_wall_s": gpaw.get("restricted_wall_time_s"),
                "energy_eV": doc.get("energy_eV"),
                "converged": bool(doc.get("converged_electronic") and doc.get("converged_ionic")),
            }
        )
    out: dict = {
        "calculations": calcs,
        "sum_calc_wall_s": round(sum(c["wall_s"] for c in calcs), 1),
    }
    summary = study_dir / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        traps = data.get("traps") or {}
        if traps:  # a trap study: gap states per system, passivation verdicts, E_ads at defects
            out["trap_systems"] = [
                {
                    "system": sys_.get("label"),
                    "electrons": sys_.get("electrons"),
                    "spin_polarized": sys_.get("spin_polarized"),
                    "host_traps": sys_.get("n_host_traps"),
                    "states_eV_from_vbm": [
                        (st.get("energy_from_vbm_eV"), st.get("spin"), st.get("occupation"))
                        for st in sys_.get("states", [])
                    ],
                }
                for sys_ in traps.get("systems", [])
            ]
            out["passivation"] = [p.get("text") for p in traps.get("passivation", [])]
            out["claim"] = (traps.get("claim") or {}).get("text")
        out["e_ads_eV"] = {
            lig["ligand"]: {
                "e_ads_eV": lig.get("e_ads_eV"),
                "paper_eV": lig.get("paper_e_ads_eV"),
                "model": lig.get("model"),
                "reference": lig.get("reference_species"),
            }
            for lig in data.get("ligands", [])
        }
    return out


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_variants(study: Path, out: Path, variants: list[str]) -> dict:
    """Run the study once per ``NAME=JSON`` variant and compare them (see the module docstring)."""
    import yaml

    spec = yaml.safe_load(study.read_text())
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for item in variants:
        name, _, settings = item.partition("=")
        variant_spec = json.loads(json.dumps(spec))
        engine = variant_spec.setdefault("engine", {})
        engine["settings"] = {**(engine.get("settings") or {}), **json.loads(settings or "{}")}
        yaml_path = out / f"{study.stem}.{name}.yaml"
        yaml_path.write_text(yaml.safe_dump(variant_spec, sort_keys=False))
        cpu0, t0 = _cpu_children(), time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "dftflow", "run", str(yaml_path), "-o", str(out / name)],
            check=False,
        )
        wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
        summary = summarise(out / name)
        calcs = summary["calculations"]
        summary.update(
            {
                "engine_settings": engine["settings"],
                "exit_code": proc.returncode,
                "study_wall_s": round(wall, 1),
                "process_tree_cpu_s": round(cpu, 1),
                "sum_firework_cpu_s": round(sum(c["cpu_s"] or 0.0 for c in calcs), 1),
                "relax_cpu_s": round(
                    sum(c["cpu_s"] or 0.0 for c in calcs if c["stage"] != "static"), 1
                ),
                "static_cpu_s": round(
                    sum(c["cpu_s"] or 0.0 for c in calcs if c["stage"] == "static"), 1
                ),
                "step_cap_hit": [c["role"] for c in calcs if not c["converged"]],
                "load_1min_end": round(os.getloadavg()[0], 2),
            }
        )
        results[name] = summary
        (out / f"{name}.json").write_text(json.dumps(summary, indent=1))
    first = next(iter(results.values()))
    for summary in results.values():
        summary["ratios_to_first"] = {
            key: round(summary[key] / first[key], 3) if first[key] else None
            for key in ("sum_firework_cpu_s", "process_tree_cpu_s", "study_wall_s")
        }
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    args = ap.parse_args(argv)
    if args.variant:
        print(json.dumps(run_variants(args.study, args.out, args.variant), indent=1))
        return 0
    loads: list[float] = []
    wall = None
    if not args.summarise_only:
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(30.0):
                loads.append(os.getloadavg()[0])

        threading.Thread(target=sample, daemon=True).start()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "dftflow", "run", str(args.study), "-o", str(args.out)],
            check=False,
        )
        wall = time.perf_counter() - t0
        stop.set()
        if proc.returncode != 0:
            print(f"dftflow run exited with {proc.returncode}", file=sys.stderr)
    result = summarise(args.out)
    result["study_wall_s"] = None if wall is None else round(wall, 1)
    if loads:
        result["load_avg_mean"] = round(sum(loads) / len(loads), 2)
        result["load_avg_max"] = round(max(loads), 2)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
