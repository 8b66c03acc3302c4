"""The ranked table of a screen, its files, figures and report section (synthetic records).

Every record is built here with known numbers, so each rank, flag and statistic has one right
answer; nothing is relaxed or computed.
"""

from __future__ import annotations

import csv
import json

import pytest

from dftflow.schemas import NOT_PHYSICAL_LABEL
from dftflow.screening.ranking import (
    FLAG_DFT_FAR,
    FLAG_DFT_REORDERS,
    FLAG_FEW,
    FLAG_RANKED_BY_MLIP,
    FLAG_REFERENCE,
    FLAG_STEP_CAP,
    mlip_dft_agreement,
    plot_parity,
    plot_ranking,
    rank_ligands,
    report_section,
    write_report,
    write_table,
)
from dftflow.screening.records import CSV_COLUMNS, LigandScreen, PlacementRecord, ScreenTable

SIGMA_FLAG = "sigma>0.2 eV"


def placement(
    ligand: str,
    key: str,
    mean: float | None,
    sigma: float = 0.05,
    *,
    dft: float | None = None,
    mode: str = "monodentate",
    **kw,
) -> PlacementRecord:
    """A relaxed placement whose two committee members straddle ``mean`` by ``sigma``."""
    e_ads = {} if mean is None else {"chgnet": mean - sigma, "sevennet": mean + sigma}
    return PlacementRecord(
        key=key,
        ligand=ligand,
        mode_enumerated=mode,
        site=0,
        azimuth_deg=0.0,
        form="as_is",
        n_atoms=60,
        n_steps_loose=120,
        converged=True,
        binding_mode=mode,
        e_ads_eV=e_ads,
        e_ads_mean_eV=mean,
        e_ads_sigma_eV=None if mean is None else sigma,
        escalated=dft is not None,
        escalation_reason="top-k" if dft is not None else None,
        e_ads_dft_eV=dft,
        **kw,
    )


def ligand(name: str, placements: list[PlacementRecord], **kw) -> LigandScreen:
    kw.setdefault("reference_species", "neutral acid")
    kw.setdefault("reference_form", "as_is")
    return LigandScreen(
        name=name,
        smiles=kw.pop("smiles", "CC(=O)O"),
        anchor="carboxylic_acid",
        n_enumerated=len(placements),
        placements=placements,
        **kw,
    )


def three_acids(*, dft: bool) -> list[LigandScreen]:
    """BPA binds best (-1.2), AcOH next (-0.8), OA weakest (-0.3); three kept placements each."""

    def lig(name, means, dfts, **kw):
        ps = [
            placement(name, f"{name}-p{i}", m, dft=(d if dft else None), mode=mode)
            for i, (m, d, mode) in enumerate(
                zip(means, dfts, ("chelating", "monodentate", "bridging"), strict=True)
            )
        ]
        return ligand(name, ps, **kw)

    return [
        lig("OA", [-0.30, -0.20, -0.10], [-0.35, -0.25, None]),
        lig("BPA", [-1.10, -1.20, -0.90], [-1.15, -1.25, None], smiles="CCCCP(=O)(O)O"),
        lig("AcOH", [-0.70, -0.80, -0.60], [-0.75, -0.85, None]),
    ]


def table_of(ligands, **kw) -> ScreenTable:
    kw.setdefault("physical", True)
    return rank_ligands(
        ligands,
        screen="test",
        engine="embedded",
        committee=["chgnet", "sevennet"],
        slab={"termination": "PbBr2", "supercell": [2, 2]},
        e_slab_eV={"chgnet": -100.0, "sevennet": -101.0},
        **kw,
    )


def row(table: ScreenTable, name: str):
    (r,) = [r for r in table.rows if r.ligand == name]
    return r


# ---------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------


def test_ranking_without_dft_uses_the_lowest_committee_mean():
    table = table_of(three_acids(dft=False))
    assert table.ranked_by == "mlip_mean"
    assert [(r.rank, r.ligand) for r in table.rows] == [(1, "BPA"), (2, "AcOH"), (3, "OA")]
    assert [r.best_placement for r in table.rows] == ["BPA-p1", "AcOH-p1", "OA-p0"]
    assert [r.best_binding_mode for r in table.rows] == ["monodentate", "monodentate", "chelating"]
    assert [r.e_ads_mlip_mean_eV for r in table.rows] == [-1.20, -0.80, -0.30]
    assert [r.ranked_on_eV for r in table.rows] == [-1.20, -0.80, -0.30]
    assert all(r.e_ads_dft_eV is None and r.dft_minus_mlip_eV is None for r in table.rows)
    assert [(r.n_tried, r.n_kept, r.n_escalated) for r in table.rows] == [(3, 3, 0)] * 3
    assert all(r.flags == [] for r in table.rows)
    assert table.committee == ["chgnet", "sevennet"] and table.e_slab_eV["chgnet"] == -100.0


def test_ranking_with_dft_everywhere_ranks_on_dft():
    ligands = three_acids(dft=True)
    # DFT reverses AcOH and BPA: AcOH's best DFT -1.5 beats BPA's -1.25
    ligands[2].placements[0].e_ads_dft_eV = -1.50
    table = table_of(ligands)
    assert table.ranked_by == "dft"
    assert [(r.rank, r.ligand) for r in table.rows] == [(1, "AcOH"), (2, "BPA"), (3, "OA")]
    aco = row(table, "AcOH")
    assert aco.best_placement == "AcOH-p0" and aco.e_ads_dft_eV == -1.50
    assert aco.ranked_on_eV == -1.50
    assert aco.e_ads_mlip_mean_eV == -0.70  # the same placement's committee mean
    assert aco.dft_minus_mlip_eV == pytest.approx(-0.80)
    assert aco.n_escalated == 2
    bpa = row(table, "BPA")
    assert bpa.best_placement == "BPA-p1" and bpa.dft_minus_mlip_eV == pytest.approx(-0.05)
    assert bpa.flags == []
    assert "DFT E_ads" in table.notes[0]


def test_dft_for_some_ligands_ranks_everyone_on_the_committee_mean():
    ligands = three_acids(dft=False)
    # only OA and AcOH have DFT, and DFT says OA binds far more strongly than any committee
    # mean: still every ligand is ranked on the committee mean of its best placement, never a
    # DFT number against MLIP numbers
    ligands[0].placements[1].e_ads_dft_eV = -2.0
    ligands[0].placements[1].escalated = True
    # AcOH: DFT prefers its committee's second placement (-0.70), so AcOH is ranked on -0.70,
    # not on the committee's lowest (-0.80) which DFT showed is not its lowest
    ligands[2].placements[0].e_ads_dft_eV = -0.9
    ligands[2].placements[1].e_ads_dft_eV = -0.6
    table = table_of(ligands)
    assert table.ranked_by == "mlip_mean"
    assert [r.ligand for r in table.rows] == ["BPA", "AcOH", "OA"]
    assert [r.ranked_on_eV for r in table.rows] == [-1.20, -0.70, -0.20]
    assert [r.ranked_on_eV for r in table.rows] == [r.e_ads_mlip_mean_eV for r in table.rows]
    assert all(FLAG_RANKED_BY_MLIP in r.flags for r in table.rows)
    oa = row(table, "OA")
    assert oa.best_placement == "OA-p1" and oa.e_ads_dft_eV == -2.0
    assert FLAG_DFT_REORDERS in oa.flags and FLAG_DFT_FAR in oa.flags
    aco = row(table, "AcOH")
    assert aco.best_placement == "AcOH-p0" and FLAG_DFT_REORDERS in aco.flags
    assert any("exists for OA, AcOH but not for BPA" in n for n in table.notes)
    # without DFT anywhere, or with DFT everywhere, the flag does not fire
    assert all(FLAG_RANKED_BY_MLIP not in r.flags for r in table_of(three_acids(dft=False)).rows)
    assert all(FLAG_RANKED_BY_MLIP not in r.flags for r in table_of(three_acids(dft=True)).rows)


def test_errored_and_empty_ligands_are_unranked_at_the_bottom():
    bad = ligand("XYZ", [], error="invalid SMILES 'C1CC': unclosed ring", smiles="C1CC")
    gone = ligand(
        "GONE",
        [
            placement("GONE", "g0", -2.0, excluded=True, reason="desorbed", anomalies=["desorbed"]),
            placement("GONE", "g1", -1.9, excluded=True, reason="desorbed", anomalies=["desorbed"]),
        ],
    )
    table = table_of([bad, *three_acids(dft=False), gone])
    assert [(r.rank, r.ligand) for r in table.rows] == [
        (1, "BPA"),
        (2, "AcOH"),
        (3, "OA"),
        (None, "XYZ"),
        (None, "GONE"),
    ]
    assert row(table, "XYZ").error == "invalid SMILES 'C1CC': unclosed ring"
    gone_row = row(table, "GONE")
    assert gone_row.error == "no placement kept of 2: desorbed (2)"
    assert gone_row.n_tried == 2 and gone_row.n_kept == 0 and gone_row.best_placement is None
    # all errored: nothing ranked, said so
    alone = table_of([bad])
    assert alone.ranked_by == "none" and alone.rows[0].rank is None


def test_excluded_and_duplicate_placements_are_never_best():
    ps = [
        placement("L", "frag", -3.0, excluded=True, reason="fragmented"),
        placement("L", "dup", -2.5, duplicate_of="ok"),
        placement("L", "ok", -1.0),
        placement("L", "ok2", -0.9),
        placement("L", "ok3", -0.8),
    ]
    r = table_of([ligand("L", ps)]).rows[0]
    assert r.best_placement == "ok" and r.e_ads_mlip_mean_eV == -1.0
    assert (r.n_tried, r.n_kept) == (5, 3)
    # a diverged committee (NaN) is not kept, and a NaN DFT value is not the best
    ps.append(placement("L", "nan", float("nan")))
    ps[3].e_ads_dft_eV, ps[3].escalated = float("nan"), True
    r = table_of([ligand("L", ps)]).rows[0]
    assert r.best_placement == "ok" and r.e_ads_dft_eV is None and (r.n_tried, r.n_kept) == (6, 4)


def test_kept_but_not_refined_placements_count_as_kept_never_as_best():
    """Only the refined placements have a committee mean; the others are kept all the same."""
    refined = [placement("L", "r0", -1.0), placement("L", "r1", -0.9)]
    loose = [placement("L", f"l{i}", None, e_loose_eV=-500.0 - i) for i in range(3)]
    r = table_of([ligand("L", refined + loose)]).rows[0]
    assert r.best_placement == "r0" and (r.n_tried, r.n_kept) == (5, 5)
    assert FLAG_FEW not in r.flags  # five kept, two of them refined
    loose[1].hit_step_cap = True  # the cap on an unrefined placement: its minimum may be lower
    assert FLAG_STEP_CAP in table_of([ligand("L", refined + loose)]).rows[0].flags
    none = table_of([ligand("L", loose)]).rows[0]
    assert none.rank is None and none.n_kept == 3
    assert none.error == "none of its 3 kept placements has a finite committee E_ads"


# ---------------------------------------------------------------------------------------------
# flags: each fires, and does not fire
# ---------------------------------------------------------------------------------------------


def _flags(ps, **kw):
    return table_of([ligand("L", ps, **kw)]).rows[0].flags


def test_flag_sigma():
    fine = [placement("L", f"p{i}", -1.0 + 0.1 * i, sigma=0.2) for i in range(3)]
    assert SIGMA_FLAG not in _flags(fine)  # 0.2 is not above 0.2
    wide = [placement("L", "p0", -1.0, sigma=0.25)] + fine[1:]
    assert SIGMA_FLAG in _flags(wide)
    # only the best placement's σ counts
    other = fine[:1] + [placement("L", "p1", -0.5, sigma=0.9), fine[2]]
    assert SIGMA_FLAG not in _flags(other)
    # the threshold is a parameter, and the flag says it
    ligs = [ligand("L", fine)]
    assert "sigma>0.1 eV" in table_of(ligs, sigma_flag_eV=0.1).rows[0].flags


def test_flag_step_cap():
    ps = [placement("L", f"p{i}", -1.0 + 0.1 * i) for i in range(3)]
    assert FLAG_STEP_CAP not in _flags(ps)
    ps[2].hit_step_cap = True
    assert FLAG_STEP_CAP in _flags(ps)
    # a step-capped placement that was excluded does not flag the ranking (it is listed instead)
    ps[2].excluded, ps[2].reason = True, "fragmented"
    ps.append(placement("L", "p3", -0.2))
    assert FLAG_STEP_CAP not in _flags(ps)


def test_flags_dft_reorders_and_dft_far():
    agree = [
        placement("L", "p0", -1.0, dft=-1.1),
        placement("L", "p1", -0.9, dft=-0.95),
        placement("L", "p2", -0.8),
    ]
    flags = _flags(agree)
    assert FLAG_DFT_REORDERS not in flags and FLAG_DFT_FAR not in flags
    reorder = [
        placement("L", "p0", -1.0, dft=-1.1),
        placement("L", "p1", -0.95, dft=-1.12),  # DFT's best is the MLIP's second
        placement("L", "p2", -0.8),
    ]
    flags = _flags(reorder)
    assert FLAG_DFT_REORDERS in flags and FLAG_DFT_FAR not in flags  # |-1.12 - -0.95| = 0.17
    far = [
        placement("L", "p0", -1.0, dft=-1.25),  # 0.25 eV below the committee
        placement("L", "p1", -0.9, dft=-0.8),
        placement("L", "p2", -0.8),
    ]
    flags = _flags(far)
    assert FLAG_DFT_FAR in flags and FLAG_DFT_REORDERS not in flags
    close = [placement("L", "p0", -1.0, dft=-1.19)] + far[1:]
    assert FLAG_DFT_FAR not in _flags(close)


def test_flag_dft_reorders_measures_the_best_placement():
    ps = [
        placement("L", "p0", -1.0, dft=-1.05),
        placement("L", "p1", -0.9, dft=-1.08),
        placement("L", "p2", -0.8),
    ]
    r = table_of([ligand("L", ps)]).rows[0]
    assert r.best_placement == "p1" and r.dft_minus_mlip_eV == pytest.approx(-0.18)
    assert FLAG_DFT_REORDERS in r.flags and FLAG_DFT_FAR not in r.flags


def test_flag_few_placements():
    two = [placement("L", f"p{i}", -1.0 + 0.1 * i) for i in range(2)]
    assert FLAG_FEW in _flags(two)
    assert FLAG_FEW not in _flags(two + [placement("L", "p2", -0.5)])
    # excluded ones do not count as kept
    assert FLAG_FEW in _flags(two + [placement("L", "p2", -0.5, excluded=True, reason="desorbed")])


def test_flag_reference_differs():
    ligs = three_acids(dft=False)
    assert all(FLAG_REFERENCE not in r.flags for r in table_of(ligs).rows)
    # the same kind under different words is comparable
    ligs[1].reference_species = "neutral molecule"
    assert all(FLAG_REFERENCE not in r.flags for r in table_of(ligs).rows)
    ligs[1].reference_species, ligs[1].reference_form = "BPA radical", "radical"
    table = table_of(ligs)
    assert all(FLAG_REFERENCE in r.flags for r in table.rows)
    assert any("BPA: radical" in n and "OA: neutral" in n for n in table.notes)
    # an unranked (errored) ligand's reference does not make the others incomparable
    ligs[1].error = "no anchor group"
    table = table_of(ligs)
    assert all(FLAG_REFERENCE not in r.flags for r in table.rows)
    # anion vs neutral
    ligs[1].error = None
    ligs[1].reference_species, ligs[1].reference_form = "acetate anion (charge -1 e)", "as_is"
    assert all(FLAG_REFERENCE in r.flags for r in table_of(ligs).rows)


def test_earlier_stage_flags_are_kept_first():
    ps = [placement("L", f"p{i}", -1.0 + 0.1 * i) for i in range(2)]
    assert _flags(ps, flags=["too_large_for_cell"]) == ["too_large_for_cell", FLAG_FEW]


# ---------------------------------------------------------------------------------------------
# MAE and Spearman
# ---------------------------------------------------------------------------------------------


def test_mlip_dft_agreement_exact():
    # ranks of y: 1, 3, 2, 4 -> d^2 = 0 + 1 + 1 + 0 -> rho = 1 - 6*2/(4*15) = 0.8
    a = mlip_dft_agreement([-1.0, -0.5, 0.0, 0.5], [-1.1, -0.2, -0.3, 0.6])
    assert a is not None and a.n == 4
    assert a.mae_eV == pytest.approx((0.1 + 0.3 + 0.3 + 0.1) / 4)
    assert a.spearman_rho == pytest.approx(0.8)
    assert mlip_dft_agreement([1.0, 2.0], [1.0, 2.0]) is None
    assert mlip_dft_agreement([], []) is None
    same = mlip_dft_agreement([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert same is not None and same.spearman_rho is None and same.mae_eV == pytest.approx(2.0)
    with pytest.raises(ValueError):
        mlip_dft_agreement([1.0, 2.0, 3.0], [1.0])


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def test_csv_and_json(tmp_path):
    ligs = three_acids(dft=True)
    ligs[0].placements[2].hit_step_cap = True
    bad = ligand("XYZ", [], error="no anchor group, in SMILES 'CCCC'", smiles="CCCC")
    table = table_of([*ligs, bad])
    paths = write_table(table, tmp_path)
    assert paths == {"csv": tmp_path / "ranking.csv", "json": tmp_path / "ranking.json"}
    with open(paths["csv"], newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        lines = list(reader)
    assert [line["ligand"] for line in lines] == ["BPA", "AcOH", "OA", "XYZ"]
    bpa, _, oa, xyz = lines
    assert bpa["rank"] == "1" and bpa["best_placement"] == "BPA-p1"
    assert bpa["smiles"] == "CCCCP(=O)(O)O" and bpa["reference_species"] == "neutral acid"
    assert float(bpa["e_ads_dft_eV"]) == -1.25 and float(bpa["ranked_on_eV"]) == -1.25
    assert float(bpa["e_ads_mlip_mean_eV"]) == -1.2 and float(bpa["e_ads_mlip_sigma_eV"]) == 0.05
    assert float(bpa["dft_minus_mlip_eV"]) == pytest.approx(-0.05)
    assert (bpa["n_tried"], bpa["n_kept"], bpa["n_escalated"]) == ("3", "3", "2")
    assert bpa["flags"] == "" and bpa["error"] == ""
    assert oa["flags"] == FLAG_STEP_CAP
    assert xyz["rank"] == "" and xyz["e_ads_dft_eV"] == "" and xyz["n_kept"] == "0"
    assert xyz["error"] == "no anchor group, in SMILES 'CCCC'"  # the comma survives quoting
    # several flags, joined by ';'
    two = table_of([ligand("L", [placement("L", "p0", -1.0, sigma=0.3)])])
    write_table(two, tmp_path)
    with open(paths["csv"], newline="") as fh:
        (line,) = list(csv.DictReader(fh))
    assert line["flags"] == f"{SIGMA_FLAG};{FLAG_FEW}"
    # JSON: the table, every digit
    assert ScreenTable.model_validate_json(paths["json"].read_text()) == two
    assert json.loads(paths["json"].read_text())["rows"][0]["e_ads_mlip_sigma_eV"] == 0.3
    write_table(table, tmp_path)
    assert ScreenTable.model_validate_json(paths["json"].read_text()) == table
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


# ---------------------------------------------------------------------------------------------
# figures and report
# ---------------------------------------------------------------------------------------------


def _png_text(path):
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return dict(im.text), im.size


def screen_ligands() -> list[LigandScreen]:
    """Five ligands: four ranked (DFT on all), one radical reference, one not screened."""
    ligs = three_acids(dft=True)
    ligs[0].placements[2].hit_step_cap = True
    ligs[0].placements += [placement("OA", f"OA-x{i}", -0.05 * i, sigma=0.1) for i in range(6)]
    ligs[1].placements[1].e_ads_sigma_eV = 0.3  # the best placement: σ flag
    # BPA: four more kept placements, relaxed loosely by the first member only (not refined):
    # loose E_ads = e_loose - E(slab, chgnet) - E(L, chgnet) = e_loose + 100 + 50
    ligs[1].e_reference_eV = {"chgnet": -50.0, "sevennet": -51.0}
    ligs[1].placements += [
        placement("BPA", f"BPA-l{i}", None, e_loose_eV=e) for i, e in enumerate((-150.5, -151.05))
    ]
    ligs.append(
        ligand(
            "AcO·",
            [
                placement("AcO·", "r0", -2.2, dft=-1.9, mode="bridging"),
                placement("AcO·", "r1", -2.0, dft=-2.05, mode="chelating"),
                placement("AcO·", "r2", -1.5, excluded=True, reason="surface atoms moved > 1 Å"),
            ],
            reference_species="acetate radical",
            reference_form="radical",
        )
    )
    ligs.append(
        ligand("C9-thiol", [], error="too large for the 2x2 supercell (needs 3x3)", smiles="CCS")
    )
    return ligs


@pytest.fixture(scope="module")
def screen():
    return screen_ligands()


def test_figures_are_written_and_labelled(screen, tmp_path):
    table = table_of(screen)
    png = plot_ranking(table, screen, tmp_path / "ranking.png")
    text, size = _png_text(png)
    assert "Description" not in text and png.stat().st_size > 20_000
    assert size[0] > 800 and size[1] > 400
    parity = plot_parity(screen, tmp_path / "parity.png")
    text, size = _png_text(parity)
    assert "Description" not in text and parity.stat().st_size > 20_000
    # no DFT anywhere: no parity figure, no file
    assert plot_parity(three_acids(dft=False), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    # mock: the label on every figure
    mock = table_of(screen, physical=False)
    text, _ = _png_text(plot_ranking(mock, screen, tmp_path / "m.png"))
    assert text["Description"] == NOT_PHYSICAL_LABEL
    p = plot_parity(screen, tmp_path / "mp.png", physical=False)
    assert _png_text(p)[0]["Description"] == NOT_PHYSICAL_LABEL


def test_report_section(screen, tmp_path):
    table = table_of(screen)
    md = report_section(table, screen, {"ranking": tmp_path / "ranking.png"}, base=tmp_path)
    assert md.startswith("## Ligand screen")
    assert "![Ranking](ranking.png)" in md and "parity" not in md.split("###")[0].lower()
    assert NOT_PHYSICAL_LABEL not in md
    lines = md.splitlines()
    (aco_line,) = [ln for ln in lines if ln.startswith("| 1 |")]
    assert "AcO·" in aco_line and "acetate radical" in aco_line and FLAG_REFERENCE in aco_line
    assert "-2.050" in aco_line and "-2.000 ± 0.050" in aco_line and "3 / 2 / 2" in aco_line
    (bad,) = [ln for ln in lines if "C9-thiol" in ln and ln.startswith("|")]
    assert bad.startswith("| — |") and "not ranked: too large for the 2x2 supercell" in bad
    # excluded placements with their reasons, step-capped ones labelled
    assert "`r2`" in md and "surface atoms moved > 1 Å" in md
    assert "Kept but step-capped: `OA-p2`" in md and "stopped at the step cap" in md
    assert "reference species L: acetate radical (radical, form radical)" in md
    assert "- SMILES `CCS`: **not screened: too large for the 2x2 supercell (needs 3x3)**" in md
    assert "9 relaxed, 9 kept (not excluded, not duplicates), 9 of them refined" in md  # OA
    assert "5 relaxed, 5 kept (not excluded, not duplicates), 3 of them refined" in md  # BPA
    assert "Kept, not refined: 2, E_ads (chgnet only) -1.050 to -0.500 eV." in md
    # MLIP vs DFT over the 8 escalated placements (2 per ranked ligand)
    from dftflow.screening.ranking import ligands_agreement

    a = ligands_agreement(screen)
    assert a is not None and a.n == 8
    assert f"MAE = {a.mae_eV:.3f} eV" in md and f"Spearman ρ = {a.spearman_rho:.2f}" in md
    assert "1 of 8 placements have |DFT − MLIP| > 0.2 eV" in md  # AcO· r0: +0.3
    mock_md = report_section(table_of(screen, physical=False), screen, {})
    assert "MOCK (NOT PHYSICAL)" in mock_md and f"(eV), {NOT_PHYSICAL_LABEL}" in mock_md


def test_write_report_mock(screen, tmp_path):
    table = table_of(screen, physical=False)
    path = write_report(table, screen, tmp_path / "rep")
    assert path == tmp_path / "rep" / "screen_report.md"
    md = path.read_text()
    assert md.startswith("# Screen report: test") and "MOCK (NOT PHYSICAL)" in md
    assert "![Ranking](ranking.png)" in md and "![MLIP vs DFT parity](parity.png)" in md
    for name in ("ranking.png", "parity.png"):
        assert _png_text(tmp_path / "rep" / name)[0]["Description"] == NOT_PHYSICAL_LABEL
    html = (tmp_path / "rep" / "screen_report.html").read_text()
    assert "MOCK (NOT PHYSICAL)" in html and 'src="parity.png"' in html
