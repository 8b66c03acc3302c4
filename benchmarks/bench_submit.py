"""Submitting many ligand workflows to the embedded LaunchPad: dftflow vs bare FireWorks.

Each "ligand workflow" has the graph dftflow builds for a one-ligand study (12 Fireworks: bulk
relax, slab relax and static, molecule relax and static, two complex relaxations, complex static,
two fragment statics, analysis, report) with the same Firetasks and spec (study configuration,
digest, DupeFinder). Measured:

* dftflow: ``EmbeddedStore.session()`` (exclusive lock, one reload, ``add_wf`` for each
  workflow, one atomic fsync'ed write) - what ``dftflow submit`` does;
* bare FireWorks: ``LaunchPad.add_wf`` on a mongomock-persistence store in the same kind of
  file, plus the store's own write of the file (which it otherwise does at interpreter exit);
* ``dftflow status --json`` on the resulting store (a fresh process, as a user runs it).

Usage: ``python benchmarks/bench_submit.py [N]`` (default 1000).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dftflow.workflows import firetasks as ft
from dftflow.workflows.flows import _Builder, study_config
from dftflow.workflows.spec import StudySpec
from dftflow.workflows.store import STORE_FILE, EmbeddedStore, _atomic_write_text


def ligand_workflow(i: int, study_dir: Path):
    spec = StudySpec.model_validate(
        {
            "study": f"bench{i}",
            "ligands": [
                {
                    "name": f"L{i}",
                    "smiles": "CC(=O)O",
                    "model": "bidentate carboxylate",
                    "reference_species": "radical",
                    "molecule_form": "radical",
                }
            ],
        }
    )
    b = _Builder(spec, study_dir, study_config(spec, study_dir))
    slab = spec.slab.model_dump(mode="json")
    entry = spec.ligands[0].model_dump(mode="json")
    k = spec.ligands[0].key
    bulk = b.add("bulk/relax", ft.BulkRelaxTask(role="bulk/relax"), [])
    sr = b.add("slab/relax", ft.SlabRelaxTask(role="slab/relax", slab=slab), [bulk])
    ss = b.add("slab/static", ft.StaticTask(role="slab/static", source_role="slab/relax"), [sr])
    mr = b.add(f"{k}/molecule_relax", ft.MoleculeRelaxTask(role="m", ligand=entry), [sr])
    ms = b.add(f"{k}/molecule_static", ft.StaticTask(role="ms", source_role="m"), [mr])
    labels = ["bidentate-0", "bidentate-1"]
    cr = [
        b.add(
            f"{k}/complex_relax/{lab}",
            ft.ComplexRelaxTask(role=lab, ligand=entry, placement={"label": lab}, slab=slab),
            [sr],
        )
        for j, lab in enumerate(labels)
    ]
    cs = b.add(
        f"{k}/complex_static", ft.ComplexStaticTask(role="cs", ligand_key=k, labels=labels), cr
    )
    fr = [
        b.add(
            f"{k}/{p}_fragment_static",
            ft.FragmentStaticTask(role=p, complex_role="cs", part=p),
            [cs],
        )
        for p in ("slab", "ligand")
    ]
    an = b.add(f"{k}/analysis", ft.AnalysisTask(role="a", ligand=entry), [ss, ms, cs, *fr])
    b.add("report", ft.ReportTask(role="report", ligands=[k]), [ss, an])
    return b.workflow({"dftflow_study": spec.key})


def bench_dftflow(wfs, study_dir: Path) -> float:
    store = EmbeddedStore(study_dir / "launchpad").create()
    t0 = time.perf_counter()
    with store.session() as lp:
        for wf in wfs:
            lp.add_wf(wf)
    return time.perf_counter() - t0


def bench_bare(wfs, directory: Path) -> float:
    import os

    import mongomock
    from fireworks import LaunchPad

    from dftflow.workflows import mongomock_adapter

    directory.mkdir(parents=True)
    path = directory / "fireworks.json"
    _atomic_write_text(path, "{}")
    mongomock_adapter.install()  # mongomock-persistence, as FireWorks loads it for such a store
    os.environ["MONGOMOCK_SERVERSTORE_FILE"] = str(path)
    with mongomock_adapter.fireworks_client(mongomock.MongoClient):
        lp = LaunchPad(name="bare", strm_lvl="ERROR")
    lp.reset("", require_password=False)
    t0 = time.perf_counter()
    for wf in wfs:
        lp.add_wf(wf)
    lp.connection._store._to_file()  # what mongomock-persistence does at exit
    elapsed = time.perf_counter() - t0
    lp.connection._store._finalizer.detach()
    return elapsed


def main(n: int = 1000) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench_submit_"))
    study_dir = root / "study"
    t0 = time.perf_counter()
    wfs_a = [ligand_workflow(i, study_dir) for i in range(n)]
    wfs_b = [ligand_workflow(i, study_dir) for i in range(n)]
    build_s = time.perf_counter() - t0
    n_fws = sum(len(wf.fws) for wf in wfs_a)
    # alternate the order (dftflow, bare, bare, dftflow): the machine's load drifts
    import copy

    wfs_c, wfs_d = copy.deepcopy(wfs_a), copy.deepcopy(wfs_b)
    dftflow_runs = [bench_dftflow(wfs_a, study_dir)]
    bare_runs = [bench_bare(wfs_b, root / "bare")]
    bare_runs.append(bench_bare(wfs_d, root / "bare2"))
    dftflow_runs.append(bench_dftflow(wfs_c, root / "study2"))
    dftflow_s, bare_s = sum(dftflow_runs) / 2, sum(bare_runs) / 2
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "dftflow", "status", "-o", str(study_dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    status_s = time.perf_counter() - t0
    total = json.loads(out.stdout)["total"]
    result = {
        "workflows": n,
        "fireworks": n_fws,
        "build_workflows_s": round(build_s / 2, 2),
        "dftflow_submit_s": round(dftflow_s, 2),  # mean of two runs
        "bare_fireworks_add_wf_s": round(bare_s, 2),
        "runs_dftflow_s": [round(x, 2) for x in dftflow_runs],
        "runs_bare_s": [round(x, 2) for x in bare_runs],
        "ratio_dftflow_to_bare": round(dftflow_s / bare_s, 2),
        "status_cli_s": round(status_s, 2),
        "status_total_fireworks": total,
        "store_size_MB": round((study_dir / "launchpad" / STORE_FILE).stat().st_size / 1e6, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
