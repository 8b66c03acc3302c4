"""Analysis: E_ads, mid-gap detector, DOS, Δρ, LOCPOT, report, CLI errors.

Real VASP data (custodian runs, MIT; the Mg_Ga defect pair in GaN + its bulk,
pymatgen-analysis-defects, BSD-3-Clause-LBNL) is not committed: ``dftflow.testing.real_vasp``
finds it in $DFTFLOW_REAL_VASP_DIR or ../shared/real_vasp/ beside the clone; those tests fail
(never skip) when it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.io.vasp import Chgcar, Vasprun

from dftflow.analysis.adsorption import adsorption_energy
from dftflow.analysis.chgdiff import charge_density_difference
from dftflow.analysis.midgap import compare_midgap, find_midgap_states
from dftflow.cli import main
from dftflow.io.chgcar import write_chgcar
from dftflow.parse.run import load_taskdoc as taskdoc_from_directory
from dftflow.testing import synthetic_runs as testdata
from dftflow.testing.real_vasp import real_vasp_dir

K4SN4O6 = "v541_ispin2_static_lorbit_quirk"
NACL = "v544_ispin1_static"  # VASP 5.4.4, ISPIN 1, NaCl, complete
TRUNCATED = "v535_truncated_vasprun"  # VASP 5.3.5, stops after <parameters>


def custodian(folder: str) -> Path:
    """A custodian real-VASP folder (kept outside the repo; the test fails when absent)."""
    return real_vasp_dir(f"custodian/{folder}")


@pytest.fixture
def nacl() -> Path:
    return custodian(NACL)


@pytest.fixture
def defect() -> Path:
    """The Mg_Ga defect pair (pymatgen-analysis-defects); fails when absent."""
    return real_vasp_dir("Mg_Ga")


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- energies vs pymatgen


@pytest.mark.parametrize("folder", [NACL, K4SN4O6])
def test_energy_and_fermi_equal_pymatgen(folder):
    run = custodian(folder)
    vr = Vasprun(str(next(run.glob("vasprun.xml*"))), parse_potcar_file=False)
    doc = taskdoc_from_directory(run)
    assert abs(doc.energy_eV - vr.final_energy) < 1e-6
    assert abs(doc.efermi_eV - vr.efermi) < 1e-6
    rep = find_midgap_states(run)
    assert abs(rep.efermi_eV - vr.efermi) < 1e-6


# ---------------------------------------------------------------- adsorption


@pytest.fixture(scope="module")
def triple(tmp_path_factory):
    root = tmp_path_factory.mktemp("triple")
    c, s, lig = testdata.slab_and_ligand_structures()
    testdata.write_synthetic_run(root / "complex", c, energy_eV=-45.75)
    testdata.write_synthetic_run(root / "slab", s, energy_eV=-30.25)
    testdata.write_synthetic_run(root / "ligand", lig, energy_eV=-14.5)
    testdata.write_synthetic_run(root / "ligand_unconv", lig, energy_eV=-14.5, converged=False)
    return root


def test_eads_triple(triple, capsys):
    res = adsorption_energy(
        triple / "complex", triple / "slab", triple / "ligand", reference_species="neutral acid"
    )
    e = {
        k: Vasprun(str(triple / k / "vasprun.xml"), parse_potcar_file=False).final_energy
        for k in ("complex", "slab", "ligand")
    }
    assert res.e_ads_eV == pytest.approx(e["complex"] - e["slab"] - e["ligand"], abs=1e-6)
    assert res.e_ads_eV == pytest.approx(-1.0, abs=1e-6)
    code, out, _ = run_cli(
        [
            "analyze",
            "eads",
            "--complex",
            str(triple / "complex"),
            "--slab",
            str(triple / "slab"),
            "--adsorbate",
            str(triple / "ligand"),
            "--json",
        ],
        capsys,
    )
    assert code == 0 and json.loads(out)["e_ads_eV"] == pytest.approx(-1.0, abs=1e-6)


def test_eads_refusals(triple, capsys):
    base = ["analyze", "eads", "--complex", str(triple / "complex"), "--slab", str(triple / "slab")]
    code, _, err = run_cli(base + ["--adsorbate", str(triple / "ligand_unconv")], capsys)
    assert code == 2 and "unconverged" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run_cli(
        base + ["--adsorbate", str(triple / "ligand_unconv"), "--allow-unconverged", "--json"],
        capsys,
    )
    assert code == 0 and json.loads(out)["warnings"]
    code, _, err = run_cli(base + ["--adsorbate", str(triple / "slab")], capsys)
    assert code == 2 and "composition" in err
    code, _, err = run_cli(
        base + ["--adsorbate", str(triple / "ligand"), "--slab-multiplier", "2"], capsys
    )
    assert code == 2 and "composition" in err


# ---------------------------------------------------------------- mid-gap detector


def test_clean_bulk_reports_no_midgap_states(nacl):
    rep = find_midgap_states(nacl)
    assert not rep.has_midgap_states and rep.midgap_states == []
    assert rep.gap_eV["up"] > 4.0  # NaCl PBE gap ~5 eV
    vr = Vasprun(str(nacl / "vasprun.xml.gz"), parse_potcar_file=False)
    gap, _, _, _ = vr.eigenvalue_band_properties
    assert rep.gap_eV["up"] == pytest.approx(gap, abs=0.05)


def test_synthetic_surface_trap_found_and_removed(triple, tmp_path):
    _, s, _ = testdata.slab_and_ligand_structures()
    testdata.write_synthetic_run(tmp_path / "trap", s, energy_eV=-30.0, trap_atom=0)
    testdata.write_synthetic_run(tmp_path / "clean", s, energy_eV=-30.0)
    # an empty trap is the lowest empty state of its own cell: the clean host tells it apart
    assert not find_midgap_states(tmp_path / "trap").has_midgap_states
    rep = find_midgap_states(tmp_path / "trap", reference=tmp_path / "clean", align="none")
    assert rep.has_midgap_states and len(rep.midgap_states) == 1
    st = rep.midgap_states[0]
    assert st.top_atoms[0].index == 0 and st.top_atoms[0].element == "Pb"
    assert st.top_atoms[0].layer == "surface" and st.occupation == 0.0
    assert st.n_kpoints == 4 and 0 < st.distance_to_vbm_eV < rep.gap_eV["up"]
    clean = find_midgap_states(triple / "complex")
    cmp = compare_midgap(rep, clean, ligand="L", system="trap slab")
    assert cmp.answer is True
    assert compare_midgap(rep, rep).answer is False


def test_real_defect_in_gap_state_and_none_in_bulk(defect):
    bulk = find_midgap_states(defect / "bulk_sc", reference=defect / "bulk_sc")
    assert not bulk.has_midgap_states
    rep = find_midgap_states(defect / "q=0", reference=defect / "bulk_sc")
    assert rep.has_midgap_states
    holes = [s for s in rep.midgap_states if s.occupation < 0.5]
    assert len(holes) == 1 and holes[0].spin == "down"  # the neutral Mg acceptor's hole
    vr = Vasprun(str(defect / "q=0" / "vasprun.xml.gz"), parse_potcar_file=False)
    mg = next(i for i, site in enumerate(vr.final_structure) if site.specie.symbol == "Mg")
    neighbours = {n.index for n in vr.final_structure.get_neighbors(vr.final_structure[mg], 2.3)}
    assert holes[0].top_atoms[0].element == "N" and holes[0].top_atoms[0].index in neighbours


def test_midgap_cli_json(nacl, capsys):
    code, out, _ = run_cli(["analyze", "midgap", str(nacl), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["midgap_states"] == [] and data["has_midgap_states"] is False


# ---------------------------------------------------------------- DOS


def test_dos_panels_and_errors(triple, nacl, tmp_path, capsys):
    png = tmp_path / "dos.png"
    code, out, _ = run_cli(
        [
            "analyze",
            "dos",
            str(triple / "slab"),
            str(triple / "complex"),
            "--groups",
            "ligand=C,H,O",
            "--sigma",
            "0.05",
            "-o",
            str(png),
            "--json",
        ],
        capsys,
    )
    assert code == 0 and png.stat().st_size > 10_000
    systems = json.loads(out)["systems"]
    assert "ligand" not in systems[0]["groups"] and "ligand" in systems[1]["groups"]
    vr = Vasprun(str(triple / "complex" / "vasprun.xml"), parse_potcar_file=False)
    assert systems[1]["efermi_eV"] == pytest.approx(vr.efermi, abs=1e-6)
    code, _, err = run_cli(["analyze", "dos", str(nacl), "--groups", "ligand=C,H,O"], capsys)
    assert code == 2 and "no projected DOS" in err
    code, _, err = run_cli(["analyze", "dos", str(nacl), "--window", "30", "40"], capsys)
    assert code == 2 and "empty energy window" in err


# ---------------------------------------------------------------- Δρ


@pytest.fixture(scope="module")
def chg(tmp_path_factory):
    return testdata.write_chgdiff_triple(tmp_path_factory.mktemp("chg"), transfer_e=0.05)


def test_chgdiff_equals_numpy(chg, tmp_path, capsys):
    p = chg["paths"]
    out = tmp_path / "delta.vasp"
    code, stdout, _ = run_cli(
        [
            "analyze",
            "chgdiff",
            str(p["AB"]),
            str(p["A"]),
            str(p["B"]),
            "-o",
            str(out),
            "--axis",
            "z",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    res = json.loads(stdout)
    ab, a, b = (Chgcar.from_file(str(p[k])) for k in ("AB", "A", "B"))
    vol = ab.structure.volume
    delta = (ab.data["total"] - a.data["total"] - b.data["total"]) / vol
    assert np.allclose(res["planar_average_e_per_A3"], delta.mean(axis=(0, 1)), atol=1e-12)
    assert res["total_charge_e"] == pytest.approx(delta.sum() * vol / delta.size, abs=1e-9)
    written = Chgcar.from_file(str(out))
    assert np.allclose(written.data["total"] / vol, delta, atol=1e-9)
    assert res["charge_transfer_e"] == pytest.approx(chg["transfer_e"], abs=1e-3)
    dz = vol / delta.size * delta.shape[2]
    cum = np.cumsum(delta.sum(axis=(0, 1)) * vol / delta.size)
    assert res["cumulative_charge_e"][-1] == pytest.approx(cum[-1] - cum[0] + cum[0], abs=1e-9)
    assert dz > 0


def test_chgdiff_plots(chg, tmp_path):
    import matplotlib.image as mpimg

    from dftflow.analysis.chgdiff import chgdiff_plots

    p = chg["paths"]
    res = chgdiff_plots(p["AB"], p["A"], p["B"], tmp_path)
    for f in res.files.values():
        img = mpimg.imread(f)
        assert img.shape[0] > 300 and img.shape[1] > 300


def test_chgdiff_bad_inputs(chg, tmp_path, capsys):
    p = chg["paths"]
    c, s, _ = testdata.slab_and_ligand_structures()
    write_chgcar(tmp_path / "coarse", s, np.ones((10, 10, 40)))
    code, _, err = run_cli(
        ["analyze", "chgdiff", str(p["AB"]), str(tmp_path / "coarse"), str(p["B"])], capsys
    )
    assert code == 2 and "20x20x80" in err and "10x10x40" in err
    s2 = s.copy()
    s2.scale_lattice(s.volume * 1.01)
    write_chgcar(tmp_path / "strained", s2, np.ones((20, 20, 80)))
    code, _, err = run_cli(
        ["analyze", "chgdiff", str(p["AB"]), str(tmp_path / "strained"), str(p["B"])], capsys
    )
    assert code == 2 and "lattices differ" in err
    text = Path(p["A"]).read_text().splitlines()
    (tmp_path / "trunc").write_text("\n".join(text[: len(text) // 2]) + "\n")
    code, _, err = run_cli(
        ["analyze", "chgdiff", str(p["AB"]), str(tmp_path / "trunc"), str(p["B"])], capsys
    )
    assert code == 2 and "truncated or corrupt" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        ["analyze", "chgdiff", str(p["AB"]), str(tmp_path / "nope"), str(p["B"])], capsys
    )
    assert code == 2 and "does not exist" in err


def test_locpot_vacuum_level(tmp_path, capsys):
    _, s, _ = testdata.slab_and_ligand_structures()
    grid = (8, 8, 96)
    z = np.arange(grid[2]) / grid[2] * s.lattice.c
    profile = np.where((z > 6.0) & (z < 13.0), -8.0, 4.25)
    write_chgcar(tmp_path / "LOCPOT", s, np.broadcast_to(profile, grid).copy())
    code, out, _ = run_cli(
        ["analyze", "locpot", str(tmp_path / "LOCPOT"), "--efermi", "-1.0", "--json"], capsys
    )
    data = json.loads(out)
    assert code == 0 and data["vacuum_level_eV"] == pytest.approx(4.25)
    assert data["work_function_eV"] == pytest.approx(5.25)
    assert np.allclose(data["planar_average_eV"], profile)


# ---------------------------------------------------------------- bad vasprun inputs


@pytest.mark.parametrize("cmd", [["analyze", "midgap"], ["analyze", "dos"]])
def test_truncated_and_missing_vasprun(cmd, tmp_path, capsys):
    code, _, err = run_cli(cmd + [str(custodian(TRUNCATED))], capsys)
    assert code == 2 and "truncated or corrupt" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(cmd + [str(tmp_path)], capsys)
    assert code == 2 and "no vasprun.xml" in err
    (tmp_path / "vasprun.xml").write_text("garbage")
    code, _, err = run_cli(cmd + [str(tmp_path)], capsys)
    assert code == 2 and "corrupt" in err


# ---------------------------------------------------------------- more physics checks


def test_dos_groups_equal_pymatgen_element_sum():
    k4sn4o6 = custodian(K4SN4O6)
    from pymatgen.electronic_structure.core import Spin

    from dftflow.analysis.dos import dos_curves

    vr = Vasprun(str(k4sn4o6 / "vasprun.xml.gz"), parse_potcar_file=False)
    cdos = vr.complete_dos
    el = {e.symbol: d for e, d in cdos.get_element_dos().items()}
    curves = dos_curves(k4sn4o6, groups={"SnO": ["Sn", "O"]}, window_eV=(-5, 3))
    e = np.asarray(cdos.energies) - cdos.efermi
    mask = (e >= -5) & (e <= 3)
    up = (el["Sn"].densities[Spin.up] + el["O"].densities[Spin.up])[mask]
    down = (el["Sn"].densities[Spin.down] + el["O"].densities[Spin.down])[mask]
    assert np.allclose(curves.groups["SnO"]["up"], up, atol=1e-9)
    assert np.allclose(curves.groups["SnO"]["down"], -down, atol=1e-9)  # mirrored
    assert np.allclose(curves.energies_eV, e[mask], atol=1e-9)


def test_dos_vbm_alignment_equals_pymatgen_vbm(nacl):
    from dftflow.analysis.dos import dos_curves

    vr = Vasprun(str(nacl / "vasprun.xml.gz"), parse_potcar_file=False)
    vbm = vr.eigenvalue_band_properties[2]
    assert dos_curves(nacl, align="vbm").zero_eV == pytest.approx(vbm, abs=1e-6)


def test_eads_cell_mismatch_and_multiplier(triple):
    from dftflow.errors import InputError

    docs = {k: taskdoc_from_directory(triple / k) for k in ("complex", "slab", "ligand")}
    strained = docs["slab"].final_structure()
    strained.lattice = strained.lattice.__class__.tetragonal(6.1, strained.lattice.c)
    bad = docs["slab"].model_copy(update={"structure": strained.as_dict()})
    with pytest.raises(InputError, match="in-plane cells differ"):
        adsorption_energy(docs["complex"], bad, docs["ligand"])
    # the slab computed in a cell half the complex's area: E(complex) - 2 E(slab) - E(L)
    big = docs["slab"].final_structure().copy()
    big.make_supercell([2, 1, 1])
    for site in docs["ligand"].final_structure():
        big.append(site.specie, site.coords, coords_are_cartesian=True)
    cplx = docs["complex"].model_copy(update={"structure": big.as_dict(), "energy_eV": -75.0})
    res = adsorption_energy(cplx, docs["slab"], docs["ligand"], slab_multiplier=2)
    assert res.e_ads_eV == pytest.approx(-75.0 - 2 * (-30.25) - (-14.5), abs=1e-9)
    with pytest.raises(InputError, match="composition"):
        adsorption_energy(cplx, docs["slab"], docs["ligand"], slab_multiplier=1)


def test_chgdiff_gzip_and_spin_polarised(chg, tmp_path):
    import gzip
    import shutil

    p = chg["paths"]
    plain = charge_density_difference(p["AB"], p["A"], p["B"])
    gz = tmp_path / "CHGCAR.gz"
    with open(p["AB"], "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    a = Chgcar.from_file(str(p["A"]))
    write_chgcar(tmp_path / "A_spin", a.structure, a.data["total"], diff=0.1 * a.data["total"])
    res = charge_density_difference(gz, tmp_path / "A_spin", p["B"])
    assert np.allclose(res.planar_average_e_per_A3, plain.planar_average_e_per_A3, atol=1e-12)
    assert res.charge_transfer_e == pytest.approx(plain.charge_transfer_e, abs=1e-9)


def test_midgap_smeared_partially_occupied_trap(tmp_path, capsys):
    _, s, _ = testdata.slab_and_ligand_structures()
    testdata.write_synthetic_run(
        tmp_path / "trap", s, energy_eV=-30.0, trap_atom=1, trap_occupation=0.4
    )
    testdata.write_synthetic_run(tmp_path / "clean", s, energy_eV=-30.0)
    rep = find_midgap_states(tmp_path / "trap")
    clean = find_midgap_states(tmp_path / "clean")
    assert len(rep.midgap_states) == 1
    st = rep.midgap_states[0]
    assert st.occupation == pytest.approx(0.4) and st.electrons == pytest.approx(0.8)
    assert st.top_atoms[0].index == 1 and st.top_atoms[0].element == "Br"
    assert rep.vbm_eV["up"] == pytest.approx(clean.vbm_eV["up"], abs=0.05)
    code, out, _ = run_cli(
        [
            "analyze",
            "midgap",
            str(tmp_path / "trap"),
            "--reference",
            str(tmp_path / "clean"),
            "--align",
            "fermi",
            "--json",
        ],
        capsys,
    )
    data = json.loads(out)
    assert code == 0 and data["reference"]["mode"] == "reference"
    assert [m["band_index"] for m in data["midgap_states"]] == [st.band_index]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "dos", "{slab}", "--groups", "ligand"], "bad group"),
        (["analyze", "dos", "{slab}", "--groups", "ligand=Xx"], "unknown element"),
        (["analyze", "dos", "{slab}", "--align", "homo"], "unknown alignment"),
        (["analyze", "dos", "{slab}", "-o", "{tmp}/missing/dos.png"], "does not exist"),
        (["analyze", "midgap", "{slab}", "--align", "core"], "unknown alignment"),
        (
            [
                "analyze",
                "eads",
                "--complex",
                "{tmp}/nope",
                "--slab",
                "{slab}",
                "--adsorbate",
                "{slab}",
            ],
            "not a directory",
        ),
        (["analyze", "chgdiff", "{tmp}", "{tmp}", "{tmp}"], "no CHGCAR"),
        (["analyze", "chgdiff", "{slab}", "{slab}", "{slab}", "--axis", "w"], "unknown axis"),
        (["analyze", "locpot", "{tmp}"], "no LOCPOT"),
    ],
)
def test_cli_bad_inputs_one_line(args, message, triple, tmp_path, capsys):
    filled = [a.format(slab=triple / "slab", tmp=tmp_path) for a in args]
    code, _, err = run_cli(filled, capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_group_overlap_known_values():
    from dftflow.analysis.dos import DosCurves, group_overlap

    e = np.linspace(-8, 2, 2001)
    g = np.exp(-((e + 4.0) ** 2) / (2 * 0.2**2)) / (0.2 * np.sqrt(2 * np.pi))  # area 1 at -4 eV
    far = np.exp(-((e + 1.0) ** 2) / (2 * 0.2**2)) / (0.2 * np.sqrt(2 * np.pi))
    base = dict(
        directory=".",
        label="x",
        align="fermi",
        zero_eV=0.0,
        efermi_eV=0.0,
        energies_eV=e.tolist(),
        total={"up": (g + far).tolist()},
        sigma_eV=0.0,
        ispin=1,
        has_projections=True,
    )
    same = DosCurves(**base, groups={"ligand": {"up": g.tolist()}, "slab": {"up": g.tolist()}})
    apart = DosCurves(**base, groups={"ligand": {"up": g.tolist()}, "slab": {"up": far.tolist()}})
    assert group_overlap(same) == pytest.approx(1.0, abs=1e-3)
    assert group_overlap(apart) == pytest.approx(0.0, abs=1e-6)
    assert group_overlap(DosCurves(**base)) is None


def test_dos_default_groups_shared_across_panels(triple, nacl, tmp_path, capsys):
    code, out, _ = run_cli(
        ["analyze", "dos", str(triple / "slab"), str(triple / "complex"), str(nacl), "--json"],
        capsys,
    )
    assert code == 0
    systems = json.loads(out)["systems"]
    assert systems[0]["group_elements"]["slab"] == ["Br", "Cs", "Pb"]
    assert set(systems[1]["groups"]) == {"slab", "ligand"}
    assert systems[2]["groups"] == {}  # NaCl: no projections, total DOS only


def test_reference_mode_band_shift_is_not_a_trap(tmp_path):
    _, s, _ = testdata.slab_and_ligand_structures()
    testdata.write_synthetic_run(tmp_path / "ref", s, energy_eV=-30.0, gap_eV=2.3)
    testdata.write_synthetic_run(tmp_path / "shifted", s, energy_eV=-30.0, gap_eV=2.1)
    testdata.write_synthetic_run(tmp_path / "trap", s, energy_eV=-30.0, gap_eV=2.1, trap_atom=2)
    shifted = find_midgap_states(tmp_path / "shifted", reference=tmp_path / "ref", align="fermi")
    assert not shifted.has_midgap_states  # the conduction band moved down 0.2 eV: no trap
    trap = find_midgap_states(tmp_path / "trap", reference=tmp_path / "ref", align="fermi")
    assert [m.top_atoms[0].index for m in trap.midgap_states] == [2]


def test_real_defect_self_consistent_mode(defect):
    # no reference: the edges are the run's own occupation edges, so the empty acceptor level is
    # the spin-down CBM (0.16 eV above the VBM); only the host (--reference) shows it in the gap
    rep = find_midgap_states(defect / "q=0")
    assert rep.midgap_states == []
    assert rep.cbm_eV["down"] == pytest.approx(4.5918, abs=1e-4)
    assert rep.gap_eV["down"] == pytest.approx(0.16, abs=0.01)
    assert rep.gap_eV["up"] == pytest.approx(3.89, abs=0.01)
    assert not find_midgap_states(defect / "bulk_sc").has_midgap_states


def test_isosurface_window_frames_the_interface():
    from dftflow.analysis.chgdiff import _interface_window

    z = np.array([10.0, 12.0, 14.0, 16.0, 18.0, 19.5, 21.0, 30.0])  # slab 10..18, ligand 19.5..30
    is_lig = np.array([False] * 5 + [True] * 3)
    assert _interface_window(z, is_lig) == (12.0, 28.0)  # capped 10 A above the slab
    assert _interface_window(z, is_lig, reach_A=20.0) == (12.0, 32.0)
    assert _interface_window(z[::-1] * -1 + 40, is_lig[::-1]) == (12.0, 28.0)  # ligand below
    assert _interface_window(z[:5], is_lig[:5]) == (7.0, 21.0)  # clean slab: all atoms +- 3 A


def test_isosurface_centres_a_ligand_split_across_the_cell_boundary():
    from dftflow.analysis.chgdiff import _anchor_centring_steps

    # slab atoms at z 10-12; ligand anchor O at x = 0.02 and 0.96 (split), tail at x = 0.3
    frac = np.array([[0.1, 0.2, 0], [0.6, 0.7, 0], [0.02, 0.25, 0], [0.96, 0.25, 0], [0.3, 0.3, 0]])
    z = np.array([10.0, 12.0, 14.0, 14.2, 20.0])
    is_lig = np.array([False, False, True, True, True])
    sx, sy = _anchor_centring_steps(frac, z, is_lig, (100, 100))
    assert (sx, sy) == (51, 25)  # anchor centre x = -0.01 (0.99), y = 0.25 -> both to 0.5
    assert _anchor_centring_steps(frac, z, np.zeros(5, bool), (100, 100)) == (0, 0)
