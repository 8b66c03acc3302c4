"""Same calculations, same analysis numbers: the embedded records before and after the contract.

Runs three embedded statics (PbBr2 + water complex and its two fragments, one cell, one grid) with
the code in ``--code-root`` (a checkout of dftflow, put first on PYTHONPATH), then every analysis
command on them through the ``dftflow`` console script, and prints one JSON document. Run it once
with the old checkout (VASP-format files written by the embedded engine) and once with the new one
(taskdoc.json, dos.json.gz, bands.npz, CHGCAR), then compare::

    git worktree add --detach ../dftflow-old fb10f0b
    python benchmarks/check_engine_contract.py --code-root ../dftflow-old -o runs/old.json
    python benchmarks/check_engine_contract.py --code-root . -o runs/new.json
    python benchmarks/check_engine_contract.py --compare runs/old.json runs/new.json

GPAW is deterministic for the same inputs, so E_ads, the mid-gap verdicts, the band edges and the
Delta-rho charge transfer must agree to 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _structures(root: Path) -> dict[str, Path]:
    from ase.io import write

    from dftflow.testing.synthetic_runs import pbbr2_water_complex

    cplx = pbbr2_water_complex()
    out = {}
    for name, atoms in (("complex", cplx), ("slab", cplx[:3]), ("ligand", cplx[3:])):
        path = root / f"{name}.vasp"
        write(path, atoms, format="vasp", direct=True, sort=False)
        out[name] = path
    return out


def _dftflow(code_root: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root.resolve())}
    exe = str(Path(sys.executable).with_name("dftflow"))
    proc = subprocess.run([exe, *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dftflow {' '.join(args)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout) if "--json" in args else {}


def run(code_root: Path, work: Path) -> dict:
    """Compute the triple with ``code_root`` and collect every analysis number."""
    dirs = {}
    for name, path in _structures(work).items():
        d = work / name
        _dftflow(
            code_root, "calc", str(path), "--stage", "static", "--engine", "embedded", "-d", str(d)
        )
        dirs[name] = d
    c, s, lig = (str(dirs[k]) for k in ("complex", "slab", "ligand"))
    eads = _dftflow(
        code_root, "analyze", "eads", "--complex", c, "--slab", s, "--adsorbate", lig, "--json"
    )
    midgap = _dftflow(code_root, "analyze", "midgap", c, "--reference", s, "--json")
    midgap_self = _dftflow(code_root, "analyze", "midgap", s, "--json")
    chg = _dftflow(
        code_root,
        "analyze",
        "chgdiff",
        f"{c}/CHGCAR",
        f"{s}/CHGCAR",
        f"{lig}/CHGCAR",
        "-o",
        str(work / "delta.vasp"),
        "--json",
    )
    dos = _dftflow(code_root, "analyze", "dos", s, c, "--json", "-o", str(work / "dos.png"))
    files = {k: sorted(p.name for p in Path(d).iterdir()) for k, d in dirs.items()}
    return {
        "e_ads_eV": eads["e_ads_eV"],
        "midgap_complex_vs_slab": {
            "n": len(midgap["midgap_states"]),
            "has": midgap["has_midgap_states"],
            "vbm": midgap["vbm_eV"],
            "cbm": midgap["cbm_eV"],
        },
        "midgap_slab": {
            "n": len(midgap_self["midgap_states"]),
            "vbm": midgap_self["vbm_eV"],
            "cbm": midgap_self["cbm_eV"],
            "gap": midgap_self["gap_eV"],
        },
        "chgdiff": {k: v for k, v in chg.items() if isinstance(v, int | float)},
        "dos_keys": sorted(dos) if isinstance(dos, dict) else None,
        "files": files,
    }


def _numbers(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield prefix, float(obj)


#: vasprun.xml stores eigenvalues with 4 decimals ("%12.4f"): band edges read from the old files
#: carry that rounding (and the JSON of ``analyze midgap`` rounds edges to 4 decimals too).
ROUNDED_KEYS = ("midgap",)
ROUNDED_TOL_EV = 5e-5


def compare(old: dict, new: dict, tol: float = 1e-6) -> int:
    """Print every number side by side; return 1 if any differs by more than its tolerance.

    ``tol`` for everything, except band edges (keys under ``midgap``), which the old files and the
    midgap JSON hold to 4 decimals: half a step, :data:`ROUNDED_TOL_EV`.
    """
    a, b = (
        dict(_numbers({k: v for k, v in old.items() if k != "files"})),
        dict(_numbers({k: v for k, v in new.items() if k != "files"})),
    )
    bad = 0
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        limit = ROUNDED_TOL_EV if key.startswith(ROUNDED_KEYS) else tol
        ok = va is not None and vb is not None and abs(va - vb) <= limit
        bad += not ok
        print(f"{'ok ' if ok else 'DIFF'} {key:45s} {va!s:>22} {vb!s:>22}")
    for k in ("complex", "slab", "ligand"):
        print(f"files {k}: before {old['files'][k]}\n{'':14s}after  {new['files'][k]}")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code-root", type=Path)
    ap.add_argument("-o", "--output", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path)
    args = ap.parse_args()
    if args.compare:
        old, new = (json.loads(p.read_text()) for p in args.compare)
        return compare(old, new)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.code_root, Path(tmp))
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
