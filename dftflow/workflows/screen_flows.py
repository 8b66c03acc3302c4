"""One FireWorks Workflow per ligand screen (issue 13); its roles are in :mod:`.screen_tasks`.

Placements are enumerated at submission, on the unrelaxed slab (the relaxed one keeps its atoms
and order), so their number per ligand is known and printed before anything runs; they are split
into chunks of ``screen.chunk_size`` per MLIP Firework so that several workers (or queue jobs)
share one ligand. Each ligand has ``top_k + extra_dft`` DFT slots: the first ``top_k`` always run,
the extra ones only when the committee disagrees (sigma) on a placement outside the top k.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fireworks import Workflow

from dftflow.errors import InputError
from dftflow.screening.enumeration import enumerate_screen
from dftflow.structures.bulk import A_CSPBBR3_CUBIC
from dftflow.workflows import firetasks as ft
from dftflow.workflows import screen_tasks as st
from dftflow.workflows.flows import (
    _Builder,
    molecule_fireworks,
    required_vacuum_A,
    study_config,
    workflow_metadata,
)
from dftflow.workflows.spec import StudySpec


def screen_enumerations(spec: StudySpec, slab_atoms: Any) -> dict[str, Any]:
    """Ligand key -> its screen enumeration (``enumeration.Enumeration``) on ``slab_atoms``."""
    assert spec.screen is not None
    out = {}
    for lig in spec.ligands:
        entry = lig.model_dump(mode="json")
        try:
            out[lig.key] = enumerate_screen(
                slab_atoms,
                ft.ligand_spec(entry),
                spec.screen.references.get(lig.key),
                azimuths_deg=spec.screen.azimuths_deg,
                max_conformers=spec.screen.max_conformers,
                max_candidates=spec.screen.max_placements,
            )
        except InputError as exc:
            raise InputError(f"ligand {lig.name!r}: {exc}") from None
    return out


def screen_slab(spec: StudySpec) -> dict[str, Any]:
    """The slab spec of the screen with the vacuum that fits every ligand."""
    slab = spec.slab.model_dump(mode="json")
    slab["vacuum_total_A"] = required_vacuum_A(spec)
    return slab


def build_screen_workflow(spec: StudySpec, study_dir: str | Path) -> Workflow:
    """The FireWorks Workflow of a screen (a StudySpec with a ``screen`` section)."""
    if spec.screen is None:
        raise InputError(f"{spec.study} is a study, not a screen (no `screen:` section)")
    settings = spec.screen
    study_dir = Path(study_dir).absolute()
    slab_dict = screen_slab(spec)
    config = {
        **study_config(spec, study_dir),
        "screen": settings.model_dump(mode="json"),
        "slab": slab_dict,
    }
    b = _Builder(spec, study_dir, config)
    a0 = spec.bulk.a_A or A_CSPBBR3_CUBIC
    enumerations = screen_enumerations(spec, ft.build_slab(slab_dict, a0))

    bulk = b.add("bulk/relax", ft.BulkRelaxTask(role="bulk/relax", a_A=spec.bulk.a_A), [])
    slab_relax = b.add("slab/relax", ft.SlabRelaxTask(role="slab/relax", slab=slab_dict), [bulk])
    mlip_slab = b.add(
        "mlip/slab", st.ScreenSlabTask(role="mlip/slab", slab=slab_dict), [slab_relax]
    )
    rank_parents = [mlip_slab]
    slab_static = None
    if not settings.mlip_only:
        slab_static = b.add(
            "slab/static",
            ft.StaticTask(role="slab/static", source_role="slab/relax"),
            [slab_relax],
        )
        rank_parents.append(slab_static)
    n_slots = settings.top_k + settings.extra_dft
    for lig in spec.ligands:
        key = lig.key
        entry = lig.model_dump(mode="json")
        enum = enumerations[key]
        cands = [c.model_dump(mode="json") for c in enum.candidates]
        size = settings.chunk_size
        chunk_roles = []
        for n, start in enumerate(range(0, len(cands), size)):
            role = f"{key}/mlip/{n:02d}"
            chunk_roles.append(role)
            b.add(
                role,
                st.ScreenMlipTask(
                    role=role, ligand=entry, candidates=cands[start : start + size], slab=slab_dict
                ),
                [slab_relax],
            )
        select = b.add(
            f"{key}/select",
            st.ScreenSelectTask(
                role=f"{key}/select",
                ligand=entry,
                reference=enum.reference,
                chunk_roles=chunk_roles,
                n_by_mode=enum.n_by_mode,
            ),
            [mlip_slab, *chunk_roles],
            allow_fizzled_parents=True,  # a failed chunk is reported, the rest still ranked
        )
        rank_parents.append(select)
        if settings.mlip_only:
            continue
        rank_parents.append(molecule_fireworks(b, key, entry, slab_relax))
        for i in range(n_slots):
            rank_parents.append(
                b.add(
                    f"{key}/dft/{i}",
                    st.ScreenDftTask(role=f"{key}/dft/{i}", ligand_key=key, slot=i),
                    [select, slab_relax],
                    allow_fizzled_parents=True,  # runs nothing when the select failed
                )
            )
    b.add(
        "ranking",
        st.ScreenRankTask(
            role="ranking",
            ligands=[[lig.key, lig.name] for lig in spec.ligands],
            dft_slots=0 if settings.mlip_only else n_slots,
        ),
        rank_parents,
        allow_fizzled_parents=True,
    )
    metadata = {
        **workflow_metadata(spec, config, slab_dict),
        "dftflow_screen_placements": {k: len(e.candidates) for k, e in enumerations.items()},
    }
    return b.workflow(metadata)
