"""End to end: ten new ligands from SMILES to the ranked table with DFT on the top k, 2 cores.

Runs ``dftflow screen`` with the default settings (committee CHGNet + SevenNet-0, every placement
to 0.02 eV/A, top_k 2 + one sigma slot) on the embedded engine and records the wall time, the CPU
seconds of the whole process tree and the Fireworks' run time per stage.

Usage::

    python benchmarks/bench_screen_e2e.py --out runs/bench_e2e [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml
from bench_screen_quality import _stage_seconds

LIGANDS = [
    {"name": "PrCOOH", "smiles": "CCC(=O)O"},
    {"name": "BzOH", "smiles": "OC(=O)c1ccccc1"},
    {"name": "BuNH2", "smiles": "CCCCN"},
    {"name": "EtSH", "smiles": "CCS"},
    {"name": "PhPA", "smiles": "OP(=O)(O)c1ccccc1"},
    {"name": "ESA", "smiles": "CCS(=O)(=O)O"},
    {"name": "HexA", "smiles": "CCCCCC(=O)O"},
    {"name": "TFA", "smiles": "OC(=O)C(F)(F)F"},
    {"name": "MPrA", "smiles": "OC(=O)CCS"},
    {"name": "OctNH2", "smiles": "CCCCCCCCN"},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "bench_e2e.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "screen": "bench_e2e",
                "engine": {"name": "embedded"},
                "slab": {"supercell": [2, 2], "layers": 5, "vacuum_A": 15.0},
                "ligands": LIGANDS,
            },
            sort_keys=False,
        )
    )
    exe = Path(sys.executable).with_name("dftflow")
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [str(exe), "screen", str(spec), "-o", str(out / "screen"), "-j", str(args.workers)],
        check=False,
    )
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "returncode": proc.returncode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), 1),
        "workers": args.workers,
        "stage_run_s": _stage_seconds(out / "screen"),
    }
    table = out / "screen" / "ranking.json"
    if table.is_file():
        result["ranking"] = [
            (r["rank"], r["ligand"], r["e_ads_dft_eV"], r["e_ads_mlip_mean_eV"], r["flags"])
            for r in json.loads(table.read_text())["rows"]
        ]
    (out / "e2e.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
