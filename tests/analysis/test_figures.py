"""The report's figures as a reader of the paper sees them (issue 15, "Figures ...").

Assertions on the matplotlib objects the plotting functions save (titles, labels, legend texts,
marker positions, drawn coordinates), on synthetic runs with known answers
(:mod:`dftflow.testing.synthetic_runs`), and on report.md vs report.html.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from dftflow.analysis import plotting
from dftflow.cli import main
from dftflow.parse.run import load_taskdoc
from dftflow.schemas import LigandResult, StudySummary
from dftflow.testing import synthetic_runs as testdata


@pytest.fixture()
def captured(monkeypatch):
    """``{output name: Figure}`` of every figure saved while the test runs."""
    figures: dict[str, object] = {}
    original = plotting.save_figure

    def save(fig, output, **kw):
        figures[Path(output).name] = fig
        return original(fig, output, **kw)

    monkeypatch.setattr(plotting, "save_figure", save)
    return figures


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Clean slab, OA (a trap on atom 0, 1.1 eV) and AcO (with the three Δρ CHGCARs)."""
    root = tmp_path_factory.mktemp("study")
    c, s, lig = testdata.slab_and_ligand_structures()
    runs, docs = root / "calcs", root / "taskdocs"
    docs.mkdir()
    chg = testdata.write_chgdiff_triple(root / "chg", transfer_e=0.04)

    def doc(name, structure, energy, trap=None, chgcar=None):
        testdata.write_synthetic_run(runs / name, structure, energy_eV=energy, trap_atom=trap)
        d = load_taskdoc(runs / name)
        if chgcar is not None:
            d.volumetric_files["CHGCAR"] = str(chgcar)
        path = docs / f"{name}.json"
        d.to_json_file(path)
        return str(path.relative_to(root))

    ligands = [
        LigandResult(
            ligand="OA",
            model="molecular",
            reference_species="neutral acid",
            e_ads_eV=-0.85,
            engine="vasp",
            taskdocs={"complex_static": doc("oa_complex", c, -45.0, trap=0)},
        ),
        LigandResult(
            ligand="AcO",
            model="radical bidentate",
            reference_species="radical",
            e_ads_eV=-1.70,
            engine="vasp",
            taskdocs={
                "complex_static": doc("aco_complex", c, -46.0, chgcar=chg["paths"]["AB"]),
                "slab_fragment_static": doc("aco_slab", s, -30.0, chgcar=chg["paths"]["A"]),
                "ligand_fragment_static": doc("aco_lig", lig, -14.0, chgcar=chg["paths"]["B"]),
            },
        ),
    ]
    summary = StudySummary(
        study="figures",
        engine="vasp",
        slab={"slab_static": doc("slab_static", s, -30.0)},
        ligands=ligands,
    )
    (root / "summary.json").write_text(summary.model_dump_json(indent=2))
    return root


def _texts(fig, gid: str) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == gid]


def _legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


# ------------------------------------------------------------------------------------------
# DOS panels
# ------------------------------------------------------------------------------------------


def test_dos_panels_carry_system_names_and_the_detector_gap_states(study, captured):
    from dftflow.analysis.dos import GAP_STATE_LABEL
    from dftflow.analysis.midgap import midgap_against
    from dftflow.analysis.report import dos_figure, load_summary, study_systems

    summary = load_summary(study)
    systems, missing = study_systems(study, summary)
    models = {lig.ligand: lig.model for lig in summary.ligands}
    dos_figure(systems, study / "dos.png", missing, models=models)
    fig = captured["dos.png"]
    axes = fig.axes
    # the system's name, never a directory name; the model on the right
    assert [ax.get_title(loc="left") for ax in axes] == [
        "clean CsPbBr₃ (001) slab",
        "OA on CsPbBr₃ (001)",
        "AcO on CsPbBr₃ (001)",
    ]
    assert [ax.get_title(loc="right") for ax in axes] == ["", "molecular", "radical bidentate"]
    # OA's trap: one marker at the detector's energy (against the clean slab) on OA's own axis
    calcs = study / "calcs"
    report, _ = midgap_against(calcs / "oa_complex", calcs / "slab_static")  # as the report does
    (trap,) = report.midgap_states
    marks = {
        i: [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "gap-state"]
        for i, ax in enumerate(axes)
    }
    assert marks[0] == [] and marks[2] == []
    # on an axis whose zero is the host VBM (the clean slab's, aligned): the state's distance
    assert marks[1] == [pytest.approx(trap.distance_to_vbm_eV, abs=1e-5)]
    assert 1.0 < marks[1][0] < 2.3  # inside the synthetic gap (2.3 eV)
    assert GAP_STATE_LABEL in _legend_texts(fig.legends[0])
    assert _texts(fig, "spin-label") == []  # ISPIN 1: no spin halves to label


def _spin_polarised_run(host: Path, out: Path) -> float:
    """The host's bands in two spin channels + a half-filled level in spin down only (at
    VBM + 1.0 eV, pinned at E_F: a gap state of the detector without a reference); its energy."""
    from dftflow.electronic import BandData
    from dftflow.parse.run import load_bands

    structure, bands = load_bands(host)
    vbm = float(bands.eigenvalues_eV[bands.occupations >= 0.5].max())
    eig, occ, proj = (
        np.concatenate([a, a]) for a in (bands.eigenvalues_eV, bands.occupations, bands.projections)
    )
    nk = eig.shape[1]
    level = np.full((2, nk, 1), vbm + 1.0)
    level[0] += 0.2  # spin up: empty, 1.2 eV
    level_occ = np.zeros((2, nk, 1))
    level_occ[1] = 0.5
    level_proj = np.zeros((2, nk, 1, *proj.shape[3:]))
    level_proj[:, :, :, 0, 0] = 1.0
    e = np.concatenate([eig, level], 2)
    order = np.argsort(e, axis=2, kind="stable")
    testdata.write_band_run(
        out,
        structure,
        BandData(
            eigenvalues_eV=np.take_along_axis(e, order, 2),
            occupations=np.take_along_axis(np.concatenate([occ, level_occ], 2), order, 2),
            kweights=bands.kweights,
            efermi_eV=vbm + 1.0,
            kpoints=bands.kpoints,
            projections=np.take_along_axis(
                np.concatenate([proj, level_proj], 2), order[..., None, None], 2
            ),
        ),
    )
    return vbm + 1.0


def test_spin_polarised_dos_labels_both_spins_and_marks_the_state_in_its_half(
    study, tmp_path, captured, capsys
):
    level = _spin_polarised_run(study / "calcs" / "slab_static", tmp_path / "run_0042")
    out = tmp_path / "dos.png"
    assert main(["analyze", "dos", str(tmp_path / "run_0042"), "-o", str(out), "--json"]) == 0
    (system,) = json.loads(capsys.readouterr().out)["systems"]
    (ax,) = captured["dos.png"].axes
    assert ax.get_title(loc="left") == "clean CsPbBr₃ (001) slab"  # not "run_0042"
    assert system["label"] == "clean CsPbBr3 (001) slab"  # plain text in the JSON
    assert sorted(_texts(captured["dos.png"], "spin-label")) == ["spin ↑", "spin ↓"]
    (mark,) = [line for line in ax.lines if line.get_gid() == "gap-state"]
    assert mark.get_xdata()[0] == pytest.approx(level - system["zero_eV"], abs=0.01)
    assert list(mark.get_ydata()) == [0.0, 0.5]  # spin down: the lower (mirrored) half
    assert system["gap_states"] == [
        {
            "energy_eV": pytest.approx(level - system["zero_eV"], abs=0.01),
            "spin": "down",
            "filling": "partly filled",
        }
    ]


# ------------------------------------------------------------------------------------------
# Δρ figures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chgdiff(tmp_path_factory):
    """The synthetic Δρ triple (+0.04 e moved from above to below the plane at z = 12.5 Å)."""
    return testdata.write_chgdiff_triple(tmp_path_factory.mktemp("chg"), transfer_e=0.04)


def test_planar_average_states_the_sign_convention_of_delta_q(chgdiff, tmp_path, captured):
    from dftflow.analysis.chgdiff import chgdiff_plots

    p = chgdiff["paths"]
    res = chgdiff_plots(p["AB"], p["A"], p["B"], tmp_path, prefix="x")
    fig = captured["x_planar.png"]
    (text,) = _texts(fig, "sign-convention")
    flat = " ".join(text.split())
    assert "Δq > 0: electrons accumulated below z" in flat
    assert "> 0 = the slab gained electrons (ligand → slab)" in flat
    assert "slab side (below it)" in flat  # the ligand is above the slab here
    z0 = float(flat.split("z₀ = ")[1].split(" Å")[0])
    assert z0 == pytest.approx(fig.axes[1].get_xlim()[0], abs=0.05)  # the left edge, as stated
    # ... and the stated convention is the computed one: +0.04 e gained below the plane
    assert res.charge_transfer_e == pytest.approx(0.04, abs=1e-4)
    z, q = fig.axes[1].lines[0].get_data()
    assert np.interp(res.plane_z_A, z, q) == pytest.approx(0.04, abs=2e-3)


def test_slice_has_an_element_legend_and_draws_the_ligand_whole(chgdiff, tmp_path, captured):
    from matplotlib.colors import to_hex

    from dftflow.analysis.chgdiff import chgdiff_plots
    from dftflow.analysis.plotting import ATOM_COLOURS

    p = chgdiff["paths"]
    chgdiff_plots(p["AB"], p["A"], p["B"], tmp_path, prefix="x", ligand_indices=[5, 6, 7, 8, 9])
    fig = captured["x_slice.png"]
    ax = fig.axes[0]
    legend = ax.get_legend()
    texts = _legend_texts(legend)
    assert {"O", "C", "H", "Pb", "Br"} <= set(texts)
    for handle, element in zip(legend.legend_handles, texts, strict=True):
        assert to_hex(handle.get_markerfacecolor()) == ATOM_COLOURS[element]
    # the ligand (its O at x = -1 A wraps to 4.9 A in the cell) is drawn whole: 5 atoms, 4 bonds
    (atoms,) = [c for c in ax.collections if c.get_gid() == "ligand-atoms"]
    xy = atoms.get_offsets()
    assert len(xy) == 5
    (bonds,) = [c for c in ax.collections if c.get_gid() == "ligand-bonds"]
    lengths = [np.linalg.norm(s[1] - s[0]) for s in bonds.get_segments()]
    assert len(lengths) == 4 and max(lengths) < 2.0
    _, _, ligand = chgdiff["structures"]  # every real bond (< 1.6 A) stays short in the slice
    d = ligand.lattice.get_all_distances(ligand.frac_coords, ligand.frac_coords)
    for i, j in zip(*np.nonzero(np.triu((d > 0) & (d < 1.6))), strict=True):
        assert np.linalg.norm(xy[i] - xy[j]) < 2.0
    lo, hi = ax.get_xlim()
    assert lo <= xy[:, 0].min() and xy[:, 0].max() <= hi  # and inside the window


def _iso_inputs(chgdiff):
    from dftflow.analysis.chgdiff import charge_density_difference

    p = chgdiff["paths"]
    return charge_density_difference(p["AB"], p["A"], p["B"], return_grid=True)


def test_isosurface_axes_are_the_cell_coordinates_of_what_is_drawn(chgdiff, tmp_path, captured):
    from dftflow.analysis.chgdiff import plot_isosurface

    res, rho, structure = _iso_inputs(chgdiff)
    plot_isosurface(rho, structure, tmp_path / "iso.png", ligand_indices=res.ligand_indices)
    ax = captured["iso.png"].axes[0]
    assert [ax.get_xlabel(), ax.get_ylabel(), ax.get_zlabel()] == [
        r"x ($\mathrm{\AA}$)",
        r"y ($\mathrm{\AA}$)",
        r"z ($\mathrm{\AA}$)",
    ]
    points = np.column_stack(
        [np.column_stack(c._offsets3d) for c in ax.collections if hasattr(c, "_offsets3d")]
    ).reshape(-1, 3)
    assert len(points) == len(structure)  # every atom is inside the interface window here
    cart = structure.cart_coords
    lat = structure.lattice
    for pt in points:  # each drawn atom sits at an atom's cell position (or a periodic image)
        frac = lat.get_fractional_coords(pt) - structure.frac_coords
        assert (
            np.min(np.linalg.norm(lat.get_cartesian_coords(frac - np.round(frac)), axis=1)) < 1e-6
        )
        assert np.any(np.abs(cart[:, 2] - pt[2]) < 1e-6)  # z itself is the cell's z


def test_isosurface_legend_lists_only_the_surfaces_drawn_and_the_isovalue(
    chgdiff, tmp_path, captured
):
    from dftflow.analysis.chgdiff import default_isovalue, plot_isosurface

    res, rho, structure = _iso_inputs(chgdiff)
    only_gain = np.clip(rho, 0.0, None)  # no depletion anywhere: no cyan surface
    record: dict = {}
    plot_isosurface(
        only_gain,
        structure,
        tmp_path / "iso.png",
        ligand_indices=res.ligand_indices,
        record=record,
    )
    ax = captured["iso.png"].axes[0]
    legend = ax.get_legend()
    surfaces = [t for t in _legend_texts(legend) if "iso" in t]
    assert surfaces == ["accumulation (Δρ = +iso)"]
    assert [c.get_gid() for c in ax.collections if str(c.get_gid()).startswith("iso-")] == [
        "iso-accumulation"
    ]
    assert record["surfaces"] == ["accumulation"]
    assert f"iso = {record['isovalue_e_per_A3']:.1e} e/Å³" in legend.get_title().get_text()
    assert "99th percentile" in legend.get_title().get_text()
    assert record["isovalue_e_per_A3"] >= default_isovalue(only_gain) * 0.999  # the window's


def test_isovalue_documented_is_the_one_the_code_uses(chgdiff, tmp_path, capsys):
    from dftflow.analysis.chgdiff import ISO_PERCENTILE, default_isovalue

    rho = np.abs(np.random.default_rng(1).normal(size=(8, 8, 8)))
    assert default_isovalue(rho) == pytest.approx(np.percentile(rho, ISO_PERCENTILE))
    assert main(["analyze", "chgdiff", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"{ISO_PERCENTILE:g}th percentile of |Δρ|" in help_text and "10%" not in help_text
    p = chgdiff["paths"]
    assert (
        main(
            [
                "analyze",
                "chgdiff",
                *map(str, (p["AB"], p["A"], p["B"])),
                "--plot",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    used = json.loads(capsys.readouterr().out)["isovalue_e_per_A3"]
    assert used > 0
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert f"{ISO_PERCENTILE:g}th percentile of |Δρ|" in readme


# ------------------------------------------------------------------------------------------
# report.md vs report.html
# ------------------------------------------------------------------------------------------


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.src.append(dict(attrs)["src"])


def test_report_html_shows_every_figure_of_report_md_and_every_figure_written(study, capsys):
    from markdown_it import MarkdownIt

    assert main(["report", str(study), "--json"]) == 0
    md_path = Path(json.loads(capsys.readouterr().out)["report"])
    tokens = MarkdownIt("commonmark").enable("table").parse(md_path.read_text())
    md_images = [
        child.attrs["src"]
        for tok in tokens
        if tok.type == "inline"
        for child in tok.children or []
        if child.type == "image"
    ]
    parser = _Images()
    parser.feed((md_path.parent / "report.html").read_text())
    assert parser.src == md_images
    written = sorted(p.name for p in md_path.parent.glob("*.png"))
    assert sorted(md_images) == written  # the Δρ slice included
    assert "chgdiff_AcO_slice.png" in written
    for src in md_images:
        assert (md_path.parent / src).is_file()


def test_slice_keeps_a_chain_longer_than_half_the_cell_whole(tmp_path, captured):
    from pymatgen.core import Lattice, Structure

    from dftflow.analysis.chgdiff import plot_slice

    # a zigzag C chain spanning 4.8 A along x in a 5.9 A cell: the image nearest the anchor
    # (C0) would put C3 and C4 on the other side; along the bonds it stays one chain
    lattice = Lattice.tetragonal(5.9, 24.0)
    chain = [[1.2 * i, 0.0, 13.5 + 0.9 * i] for i in range(5)]
    structure = Structure(
        lattice,
        ["Pb", "Br", "Br"] + ["C"] * 5,
        np.mod([[0, 0, 11.0], [2.95, 0, 11.0], [0, 2.95, 11.0], *chain], [5.9, 5.9, 24.0]),
        coords_are_cartesian=True,
    )
    rho = np.random.default_rng(0).normal(scale=1e-3, size=(20, 20, 80))
    plot_slice(rho, structure, tmp_path / "s.png", normal=1, ligand_indices=[3, 4, 5, 6, 7])
    ax = captured["s.png"].axes[0]
    (atoms,) = [c for c in ax.collections if c.get_gid() == "ligand-atoms"]
    xy = np.asarray(atoms.get_offsets())
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    assert steps == pytest.approx([1.5] * 4, abs=1e-6)  # consecutive atoms stay bonded
    (bonds,) = [c for c in ax.collections if c.get_gid() == "ligand-bonds"]
    assert len(bonds.get_segments()) == 4
    assert max(np.linalg.norm(s[1] - s[0]) for s in bonds.get_segments()) < 2.0
