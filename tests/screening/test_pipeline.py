"""The screen's MLIP stages as functions: records, resume after an interruption, duplicates,
refinement by the committee and the choice of DFT escalations (cheap pair-potential members)."""

from __future__ import annotations

import pytest

from dftflow.screening import committee, pipeline
from dftflow.screening.enumeration import enumerate_screen
from dftflow.screening.records import LigandScreen, PlacementRecord
from dftflow.structures.ligands import ligand_from_smiles
from dftflow.workflows.firetasks import build_slab

MEMBERS = ["dftflow.testing.mlip:pair_a", "dftflow.testing.mlip:pair_b"]
SETTINGS = {
    "committee": MEMBERS,
    "optimizer": "PreconLBFGS",
    "fmax_loose_eV_per_A": 0.1,
    "max_steps_loose": 300,
    "fmax_fine_eV_per_A": 0.05,
    "max_steps_fine": 300,
    "n_refine": 2,
    "max_conformers": 1,
}


@pytest.fixture(scope="module")
def setup():
    slab = build_slab({"supercell": [2, 2], "layers": 3, "vacuum_A": 12.0}, None)
    spec = ligand_from_smiles("CN", name="MeNH2")
    enum = enumerate_screen(slab, spec, azimuths_deg=[0, 90], max_conformers=1)
    return slab, spec, enum.candidates


def test_records_are_reused_and_an_interrupted_chunk_resumes(setup, tmp_path, monkeypatch):
    slab, spec, cands = setup
    assert len(cands) == 2
    real_relax = committee.relax
    calls = []

    def interrupted(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C during the second placement
        calls.append(1)
        return real_relax(*args, **kwargs)

    monkeypatch.setattr(committee, "relax", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.relax_candidates(slab, spec, cands, SETTINGS, tmp_path)
    first = tmp_path / f"{cands[0].key}.json"
    assert first.is_file() and not (tmp_path / f"{cands[1].key}.json").exists()
    mtime = first.stat().st_mtime_ns
    monkeypatch.setattr(committee, "relax", real_relax)
    seen = []
    recs = pipeline.relax_candidates(slab, spec, cands, SETTINGS, tmp_path, on_done=seen.append)
    assert [r.key for r in recs] == [c.key for c in cands] == [r.key for r in seen]
    assert first.stat().st_mtime_ns == mtime  # the finished placement was not recomputed
    for r in recs:
        assert r.n_steps_loose and r.n_steps_loose > 0 and r.e_loose_eV is not None
        assert (tmp_path / str(r.structure_file)).is_file()
        atoms = pipeline.read_geometry(tmp_path / str(r.structure_file))
        assert len(atoms) == r.n_atoms == len(slab) + 7  # CH3NH2
        assert atoms.constraints, "the slab's fixed atoms are kept in the geometry file"
    # a changed setting is a different calculation: recomputed, not reused
    again = pipeline.relax_candidates(
        slab, spec, cands[:1], {**SETTINGS, "fmax_loose_eV_per_A": 0.2}, tmp_path
    )
    assert first.stat().st_mtime_ns != mtime and again[0].key == cands[0].key


def _rec(key: str, e: float, mode: str = "monodentate", pb=(8,), **kw) -> PlacementRecord:
    return PlacementRecord(
        key=key,
        ligand="L",
        mode_enumerated="monodentate",
        site=pb[0],
        azimuth_deg=0.0,
        form="as_is",
        n_atoms=10,
        binding_mode=mode,
        bound_pb=list(pb),
        e_loose_eV=e,
        **kw,
    )


def test_duplicates_are_same_mode_same_sites_same_energy():
    recs = [
        _rec("a", -10.000),
        _rec("b", -10.003),  # same minimum as a (3 meV)
        _rec("c", -10.020),  # 20 meV lower: another minimum
        _rec("d", -10.001, mode="chelating"),  # other binding
        _rec("e", -10.002, pb=(9,)),  # other Pb
        _rec("f", -10.0005, excluded=True, reason="desorbed: ..."),
    ]
    out = {r.key: r.duplicate_of for r in pipeline.mark_duplicates(recs)}
    assert out == {"a": "b", "b": None, "c": None, "d": None, "e": None, "f": None}


def test_refinement_gives_committee_mean_and_sigma(setup, tmp_path):
    slab, spec, cands = setup
    recs = pipeline.relax_candidates(slab, spec, cands, SETTINGS, tmp_path)
    e_slab = pipeline.relax_reference(slab, SETTINGS, tmp_path / "refs", "slab")
    e_lig = pipeline.reference_ligand_energies(spec, "as_is", slab.cell, SETTINGS, tmp_path / "L")
    assert set(e_slab) == set(e_lig) == set(MEMBERS)
    out = pipeline.refine(recs, {**SETTINGS, "n_refine": 1}, tmp_path, e_slab, e_lig)
    refined = [r for r in out if r.refined]
    assert len(refined) == 1 and refined[0].key == min(recs, key=lambda r: r.e_loose_eV).key
    r = refined[0]
    a, b = (r.e_complex_eV[m] - e_slab[m] - e_lig[m] for m in MEMBERS)
    assert r.e_ads_eV == pytest.approx(dict(zip(MEMBERS, (a, b), strict=True)))
    assert r.e_ads_mean_eV == pytest.approx((a + b) / 2)
    assert r.e_ads_sigma_eV == pytest.approx(abs(a - b) / 2) and r.e_ads_sigma_eV > 0.05
    assert r.n_steps_fine is not None and r.structure_file.endswith(".fine.extxyz")


def test_escalations_top_k_then_high_sigma():
    rows = [
        _rec("p1", -1.0, refined=True, e_ads_mean_eV=-1.0, e_ads_sigma_eV=0.05),
        _rec("p2", -1.0, refined=True, e_ads_mean_eV=-0.9, e_ads_sigma_eV=0.05, pb=(9,)),
        _rec("p3", -1.0, refined=True, e_ads_mean_eV=-0.8, e_ads_sigma_eV=0.30, pb=(10,)),
        _rec("p4", -1.0, refined=True, e_ads_mean_eV=-0.7, e_ads_sigma_eV=0.40, pb=(11,)),
        _rec(
            "p5",
            -1.0,
            refined=True,
            e_ads_mean_eV=-1.5,
            e_ads_sigma_eV=0.9,
            pb=(12,),
            excluded=True,
            reason="desorbed",
        ),
    ]
    screen = LigandScreen(
        name="L",
        smiles="CN",
        reference_species="neutral molecule",
        reference_form="as_is",
        anchor="amine",
        placements=rows,
    )
    out = pipeline.choose_escalations(screen, top_k=2, sigma_escalate_eV=0.2, extra=1)
    chosen = {p.key: p.escalation_reason for p in out.placements if p.escalated}
    assert chosen == {
        "p1": "top-2 by committee mean",
        "p2": "top-2 by committee mean",
        "p3": "sigma 0.30 eV > 0.2 eV",
    }
    none_extra = pipeline.choose_escalations(screen, top_k=1, sigma_escalate_eV=0.5, extra=1)
    assert [p.key for p in none_extra.placements if p.escalated] == ["p1"]


def test_model_evaluations_are_budgeted(setup, monkeypatch):
    """A relaxation whose line search keeps backtracking ends as a step cap, never hangs."""
    slab, spec, cands = setup
    from dftflow.screening.enumeration import build_candidate

    atoms = build_candidate(slab, spec, cands[0])
    monkeypatch.setattr(committee, "FORCE_CALLS_PER_STEP", 0.2)  # 6 evaluations for 30 steps
    out = committee.relax(atoms, MEMBERS[0], fmax=1e-6, max_steps=30)
    assert out.hit_step_cap and not out.converged and out.stopped_early is None
    assert out.n_steps < 30 and out.n_force_calls == 6 + 2  # budget, the refused call, the final
    calc = committee.load_calculator(MEMBERS[0])
    assert calc.call_budget is None  # released: the next use of the cached model is unaffected
    assert committee.single_point(atoms, MEMBERS[0]) < 0
