"""One FireWorks Workflow per study (the graph of issue 5).

::

    bulk/relax -> slab/relax -> slab/static ------------------------------------------+
                           |-> L/molecule_relax -> L/molecule_static -----------------+
                           |-> L/complex_relax/<placement> (every enumerated one)     |
                                  -> L/complex_static (lowest energy selected)        |
                                        -> L/slab_fragment_static, L/ligand_fragment_static
                                                                 -> L/analysis -> report

A study with ``traps`` (issue 15) adds, per defect D, after ``slab/relax``::

    D/slab/relax -> D/slab/static ---------------------------------------+
                |-> D/L/complex_relax/<placement at D> -> D/L/complex_static -+-> traps/analysis
                     (with slab/static, L/molecule_static, L/complex_static) -+     -> report

The bulk and the slab are computed once and shared by every ligand. Firework names are
``<study>/<role>``; each Firework carries a digest of its inputs (its own parameters, the engine,
the parameters and its parents' digests, i.e. everything its structure is computed from) used with
:class:`~dftflow.workflows.firetasks.DigestDupeFinder`, so that resubmitting a study reuses finished
calculations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fireworks import Firework, Workflow

from dftflow.engines.registry import engine_entry
from dftflow.errors import InputError
from dftflow.inputs import params
from dftflow.structures import placement
from dftflow.structures.bulk import A_CSPBBR3_CUBIC
from dftflow.workflows import firetasks as ft
from dftflow.workflows.spec import StudySpec, digest_of

#: FireWorks ``_priority`` of relaxation Fireworks (others have none: lowest).
RELAX_PRIORITY = 1


def required_vacuum_A(spec: StudySpec) -> float:
    """Vacuum (Angstrom) so that every system of the study fits one cell.

    The larger of the spec's ``slab.vacuum_A`` and what the structures API requires for the
    tallest ligand (``structures.placement.required_vacuum_A``) in any form the study uses, with
    ``slab.ligand_clearance_A`` (default: ``slab.vacuum_A``) between its top and the next slab
    image.
    """
    slab = ft.build_slab(spec.slab.model_dump(mode="json"), spec.bulk.a_A)
    specs = [ft.ligand_spec(lig.model_dump(mode="json")) for lig in spec.ligands]
    forms = sorted(
        {lig.molecule_form for lig in spec.ligands}
        | {lig.placements.form or lig.molecule_form for lig in spec.ligands}
    )
    clearance = ligand_clearance_A(spec)
    needed = placement.required_vacuum_A(slab, specs, clearance_A=clearance, forms=forms)
    return max(spec.slab.vacuum_A, float(needed))


def ligand_clearance_A(spec: StudySpec) -> float:
    """Vacuum kept between the tallest ligand's top and the next slab image (Angstrom)."""
    clearance = spec.slab.ligand_clearance_A
    return float(spec.slab.vacuum_A if clearance is None else clearance)


class _Builder:
    """Accumulates Fireworks, their links and digests."""

    def __init__(self, spec: StudySpec, study_dir: Path, config: dict[str, Any]) -> None:
        self.spec = spec
        self.study_dir = study_dir
        self.config = config
        self.fws: dict[str, Firework] = {}
        self.digests: dict[str, str] = {}
        self.links: dict[str, list[str]] = {}
        self._next_id = -1
        # what a calculation depends on besides its parents (not the study name nor its directory)
        self._inputs_base = {
            "engine": config["engine"],
            "engine_fingerprint": engine_fingerprint(config["engine"]["name"]),
            "parameters": config["parameters"],
            "overrides": config["overrides"],
        }

    def add(
        self,
        role: str,
        task: Any,
        parents: list[str],
        allow_fizzled_parents: bool = False,
    ) -> str:
        digest = digest_of(
            {
                **self._inputs_base,
                "role": role,
                "task": task.to_dict(),
                "parents": [self.digests[p] for p in parents],
            }
        )
        study = self.spec.key
        fw_spec: dict[str, Any] = {
            ft.SPEC_CONFIG: self.config,
            ft.SPEC_DIGEST: digest,
            "_dupefinder": ft.DigestDupeFinder(),
            "_launch_dir": str(self.study_dir / "calcs" / study / role),
        }
        if allow_fizzled_parents:
            fw_spec["_allow_fizzled_parents"] = True
        if "relax" in role:
            # relaxations gate every single point: run them first when several Fireworks are
            # READY, so parallel workers (and queue jobs) are not left with one long relax chain
            # at the end. FireWorks' own launcher honours _priority; dftflow's local runner too.
            fw_spec["_priority"] = RELAX_PRIORITY
        fw = Firework([task], spec=fw_spec, name=f"{study}/{role}", fw_id=self._next_id)
        self._next_id -= 1
        self.fws[role] = fw
        self.digests[role] = digest
        for p in parents:
            self.links.setdefault(p, []).append(role)
        return role

    def workflow(self, metadata: dict[str, Any]) -> Workflow:
        links = {self.fws[p]: [self.fws[c] for c in cs] for p, cs in self.links.items()}
        return Workflow(
            list(self.fws.values()),
            links_dict=links,
            name=self.spec.key,
            metadata=metadata,
        )


def engine_fingerprint(engine_name: str) -> dict[str, Any]:
    """What an engine's results depend on beyond the study spec (the registry's fingerprint)."""
    return engine_entry(engine_name).fingerprint()


def study_config(spec: StudySpec, study_dir: Path) -> dict[str, Any]:
    """The configuration every Firework of the study carries in its spec."""
    return {
        "study": spec.key,
        "study_dir": str(Path(study_dir).absolute()),
        "engine": spec.engine.model_dump(mode="json"),
        "parameters": spec.parameters.effective(),
        "overrides": {
            "bulk": spec.parameters.overrides("bulk"),
            "slab": spec.parameters.overrides("slab"),
        },
        "spec_digest": spec.digest(),
    }


def build_workflow(spec: StudySpec, study_dir: str | Path) -> Workflow:
    """The FireWorks Workflow of a study (placements are enumerated now, on the unrelaxed slab)."""
    study_dir = Path(study_dir).absolute()
    config = study_config(spec, study_dir)
    b = _Builder(spec, study_dir, config)

    slab_dict = spec.slab.model_dump(mode="json")
    slab_dict["vacuum_total_A"] = required_vacuum_A(spec)
    a0 = spec.bulk.a_A or A_CSPBBR3_CUBIC

    bulk = b.add("bulk/relax", ft.BulkRelaxTask(role="bulk/relax", a_A=spec.bulk.a_A), [])
    slab_relax = b.add("slab/relax", ft.SlabRelaxTask(role="slab/relax", slab=slab_dict), [bulk])
    slab_static = b.add(
        "slab/static", ft.StaticTask(role="slab/static", source_role="slab/relax"), [slab_relax]
    )
    unrelaxed_slab = ft.build_slab(slab_dict, a0)  # same atoms and order as the relaxed one
    analyses = []
    for lig in spec.ligands:
        key = lig.key
        entry = lig.model_dump(mode="json")
        mol_static = molecule_fireworks(b, key, entry, slab_relax)
        candidates = ft.enumerate_candidates(unrelaxed_slab, entry)
        if not candidates:
            raise InputError(f"ligand {lig.name!r}: no placement enumerated for {lig.placements}")
        labels, relaxes = _placement_relaxes(b, key, entry, candidates, slab_dict, slab_relax)
        cx_static = b.add(
            f"{key}/complex_static",
            ft.ComplexStaticTask(role=f"{key}/complex_static", ligand_key=key, labels=labels),
            relaxes,
            allow_fizzled_parents=True,
        )
        frags = [
            b.add(
                f"{key}/{part}_fragment_static",
                ft.FragmentStaticTask(
                    role=f"{key}/{part}_fragment_static",
                    complex_role=f"{key}/complex_static",
                    part=part,
                ),
                [cx_static],
            )
            for part in ("slab", "ligand")
        ]
        paper = params.PAPER_E_ADS_EV.get(lig.name)
        analyses.append(
            b.add(
                f"{key}/analysis",
                ft.AnalysisTask(role=f"{key}/analysis", ligand=entry, paper_e_ads_eV=paper),
                [slab_static, mol_static, cx_static, *frags],
            )
        )
    report_parents = [slab_static, *analyses]
    report_kwargs: dict[str, Any] = {}
    if spec.traps is not None:
        report_parents.append(_add_traps(b, spec, slab_dict, a0))
        report_kwargs["traps_role"] = "traps/analysis"
    b.add(
        "report",
        ft.ReportTask(role="report", ligands=[lig.key for lig in spec.ligands], **report_kwargs),
        report_parents,
        allow_fizzled_parents=True,
    )
    return b.workflow(workflow_metadata(spec, config, slab_dict))


def workflow_metadata(
    spec: StudySpec, config: dict[str, Any], slab_dict: dict[str, Any]
) -> dict[str, Any]:
    """What a study's (or a screen's) Workflow records: name, spec digest, directory, cell."""
    return {
        "dftflow_study": spec.key,
        "dftflow_spec_digest": config["spec_digest"],
        "dftflow_study_dir": config["study_dir"],
        # the cell every system shares: vacuum above the slab, and what the tallest ligand keeps
        "dftflow_vacuum_A": slab_dict["vacuum_total_A"],
        "dftflow_ligand_clearance_A": ligand_clearance_A(spec),
    }


def _add_traps(b: _Builder, spec: StudySpec, slab_dict: dict[str, Any], a0: float) -> str:
    """The trap-study Fireworks (issue 15); returns the role of their analysis.

    Per defect D: ``D/slab/relax`` (after the pristine ``slab/relax``: same cell, its FFT grid)
    -> ``D/slab/static``; per ligand L: ``D/L/complex_relax/<placement>`` (every placement at the
    defect, :func:`~dftflow.workflows.firetasks.enumerate_defect_candidates`) ->
    ``D/L/complex_static`` (lowest kept). The reference molecule's static is the pristine
    study's ``L/molecule_static`` (same cell). ``traps/analysis`` collects every system.
    """
    assert spec.traps is not None
    traps = spec.traps.model_dump(mode="json")
    parents = ["slab/static"]
    for lig in spec.ligands:
        parents += [f"{lig.key}/molecule_static", f"{lig.key}/complex_static"]
    for defect in spec.traps.defects:
        d_slab = {**slab_dict, "defect": defect}
        relax = b.add(
            f"{defect}/slab/relax",
            ft.SlabRelaxTask(role=f"{defect}/slab/relax", slab=d_slab),
            ["slab/relax"],
        )
        parents.append(
            b.add(
                f"{defect}/slab/static",
                ft.StaticTask(role=f"{defect}/slab/static", source_role=f"{defect}/slab/relax"),
                [relax],
            )
        )
        unrelaxed = ft.build_slab(d_slab, a0)
        for lig in spec.ligands:
            entry = lig.model_dump(mode="json")
            key = f"{defect}/{lig.key}"
            candidates = ft.enumerate_defect_candidates(
                unrelaxed, entry, {**traps, "modes": spec.traps.modes_for(defect)}
            )
            if not candidates:
                raise InputError(f"ligand {lig.name!r}: no placement at {defect} enumerated")
            labels, relaxes = _placement_relaxes(
                b, key, entry, candidates, d_slab, relax, slab_role=f"{defect}/slab/relax"
            )
            parents.append(
                b.add(
                    f"{key}/complex_static",
                    ft.ComplexStaticTask(
                        role=f"{key}/complex_static", ligand_key=key, labels=labels
                    ),
                    relaxes,
                    allow_fizzled_parents=True,
                )
            )
    return b.add(
        "traps/analysis",
        ft.TrapAnalysisTask(
            role="traps/analysis",
            defects=list(spec.traps.defects),
            ligands=[lig.model_dump(mode="json") for lig in spec.ligands],
            modes={d: spec.traps.modes_for(d) for d in spec.traps.defects},
        ),
        parents,
        allow_fizzled_parents=True,
    )


def molecule_fireworks(b: _Builder, key: str, entry: dict[str, Any], slab_relax: str) -> str:
    """The isolated reference ligand's relaxation (slab cell) and static; the static's role.

    A study and a screen compute their reference ligands alike.
    """
    mol = b.add(
        f"{key}/molecule_relax",
        ft.MoleculeRelaxTask(role=f"{key}/molecule_relax", ligand=entry),
        [slab_relax],
    )
    return b.add(
        f"{key}/molecule_static",
        ft.StaticTask(role=f"{key}/molecule_static", source_role=f"{key}/molecule_relax"),
        [mol, slab_relax],
    )


def count_engine_runs(wf: Workflow) -> int:
    """Number of Fireworks that run an engine (all but analysis and report)."""
    return sum(
        1 for fw in wf.fws if not fw.name.endswith("/analysis") and not fw.name.endswith("/report")
    )


def _placement_relaxes(b, key, entry, candidates, slab, parent, slab_role=None):
    """One CHGNet/engine relaxation Firework per placement of ``candidates`` on ``slab``.

    Returns the placement labels and the Fireworks; ``slab_role`` (the slab relaxation the
    placements go on) is passed only when given, so pristine studies keep their task digests.
    """
    labels = [ft.placement_label(p) for p in candidates]
    extra = {} if slab_role is None else {"slab_role": slab_role}
    relaxes = [
        b.add(
            f"{key}/complex_relax/{label}",
            ft.ComplexRelaxTask(
                role=f"{key}/complex_relax/{label}",
                ligand=entry,
                placement=p.model_dump(mode="json"),
                slab=slab,
                **extra,
            ),
            [parent],
        )
        for p, label in zip(candidates, labels, strict=True)
    ]
    return labels, relaxes
