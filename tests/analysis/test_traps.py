"""Passivation verdicts and the paper's mid-gap claim from constructed band structures (issue 15).

The runs are hand-made (no engine): a host with a gap, and the same host shifted rigidly with
defect levels placed in its gap on a chosen atom, written as VASP static runs with projections;
the mid-gap detector aligns them on the Pb 5d level and the trap analysis gives its verdicts.
"""

from __future__ import annotations

import numpy as np
import pytest

from dftflow.analysis.midgap import find_midgap_states
from dftflow.analysis.traps import (
    N_TOP_ATOMS,
    TrapSystem,
    paper_claim,
    passivation_verdict,
    system_markdown,
    trap_system,
)
from dftflow.electronic import BandData
from dftflow.structures.bulk import cspbbr3_cubic
from dftflow.testing import synthetic_runs as testdata

#: Rigid shift of the defective runs' eigenvalues against the host (alignment must undo it), eV.
SHIFT_EV = 0.4
#: Atom order of cspbbr3_cubic: Cs, Pb, Br, Br, Br. The "under-coordinated" Pb is atom 1.
PB = 1
#: A host band: spread evenly over every atom.
ALL = -1
N_ATOMS = 5


def _bands(levels: list[tuple[str, float, float, int]], shift: float) -> BandData:
    """Host bands (+ ``shift``) and gap levels (spin, eV above the host VBM, occupation, atom).

    Host: 5 Pb 5d bands at -15 eV (the alignment level), 6 valence bands -2..0 eV and 4
    conduction bands 2..2.6 eV, delocalised; the host VBM is 0 and the gap 2 eV. A gap level
    sits on one atom.
    """
    host = [(-15.0, 1.0, PB)] * 5
    host += [(-2.0 + 0.4 * i, 1.0, ALL) for i in range(6)]  # bands: spread over every atom
    host += [(2.0 + 0.2 * i, 0.0, ALL) for i in range(4)]
    eig = np.zeros((2, 1, len(host) + 2))
    occ = np.zeros_like(eig)
    proj = np.zeros((2, 1, len(host) + 2, N_ATOMS, 9))
    for s, spin in enumerate(("up", "down")):
        rows = list(host)
        mine = [(e, o, a) for sp, e, o, a in levels if sp == spin]
        rows += mine + [(3.5, 0.0, ALL)] * (2 - len(mine))  # pad: empty states above the CBM
        rows.sort(key=lambda r: r[0])
        for b, (e, o, a) in enumerate(rows):
            eig[s, 0, b] = e + shift
            occ[s, 0, b] = o
            orbital = 4 if e < -10 else 1  # d for the semicore level, p otherwise
            if a == ALL:
                proj[s, 0, b, :, orbital] = 1.0 / N_ATOMS
            else:
                proj[s, 0, b, a, orbital] = 1.0
    return BandData(
        eigenvalues_eV=eig,
        occupations=occ,
        kweights=np.ones(1),
        efermi_eV=shift + 0.5,
        kpoints=np.zeros((1, 3)),
        projections=proj,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Host, bare defect (two levels on the Pb) and three 'ligand at defect' outcomes."""
    from pymatgen.io.ase import AseAtomsAdaptor

    root = tmp_path_factory.mktemp("traps")
    structure = AseAtomsAdaptor.get_structure(cspbbr3_cubic())
    cases = {
        "host": ([], 0.0),
        "defect": ([("up", 1.0, 1.0, PB), ("down", 1.6, 0.0, PB)], SHIFT_EV),
        "passivated": ([], SHIFT_EV),
        "partly": ([("down", 1.4, 0.0, PB)], SHIFT_EV),
        "not": ([("up", 0.9, 1.0, PB), ("down", 1.5, 0.0, PB)], SHIFT_EV),
        # a host-like level 0.2 eV under the CBM holding 0.45 e, and one holding 0.03 e
        "edge": ([("up", 1.8, 0.45, ALL), ("down", 1.8, 0.03, ALL)], SHIFT_EV),
    }
    out = {}
    for name, (levels, shift) in cases.items():
        out[name] = testdata.write_band_run(root / name, structure, _bands(levels, shift))
    return out


def _system(runs, name: str, ligand: str | None, surface: str = "V_Br") -> TrapSystem:
    ref = None if name == "host" else runs["host"]
    report = find_midgap_states(runs[name], reference=ref, n_top_atoms=N_TOP_ATOMS)
    return trap_system(
        name,
        surface,
        ligand,
        report,
        "",
        electrons=41.0,
        spin_polarized=True,
        undercoordinated=[PB],
    )


def test_gap_states_of_the_bare_defect_energy_spin_occupation_and_site(runs):
    host = _system(runs, "host", None, "pristine")
    assert host.n_host_traps == 0 and host.states == []
    bare = _system(runs, "defect", None)
    assert bare.n_host_traps == 2 and bare.odd_electrons is True
    up, down = bare.states
    assert (up.spin, down.spin) == ("up", "down")
    assert up.energy_from_vbm_eV == pytest.approx(1.0, abs=1e-3)  # the shift is aligned away
    assert down.energy_from_vbm_eV == pytest.approx(1.6, abs=1e-3)
    assert (up.occupation, down.occupation) == (1.0, 0.0)
    assert up.on_undercoordinated_pb and up.undercoordinated_pb_weight == pytest.approx(1.0)
    table = "\n".join(system_markdown([host, bare]))
    assert "| defect | 41 (odd) | polarised | 2 | +1.00 eV (up, 1.00) [yes, 1.00]; " in table
    assert "| host | 41 (odd) | polarised | 0 | none |" in table


@pytest.mark.parametrize(
    ("after", "verdict", "passivated", "after_eV"),
    [
        ("passivated", "passivated", True, []),
        ("partly", "partly passivated", False, ["+1.40 eV (down, occ 0.00)"]),
        ("not", "not passivated", False, ["+0.90 eV (up, occ 1.00)", "+1.50 eV (down, occ 0.00)"]),
    ],
)
def test_passivation_verdict_on_before_after_pairs(runs, after, verdict, passivated, after_eV):
    before = _system(runs, "defect", None)
    result = passivation_verdict("AcO", "V_Br", before, _system(runs, after, "AcO"))
    assert result.verdict == verdict and result.passivated is passivated
    assert result.before_eV == ["+1.00 eV (up, occ 1.00)", "+1.60 eV (down, occ 0.00)"]
    assert result.after_eV == after_eV
    assert result.text.startswith(f"AcO at V_Br: {verdict}: 2 host trap state(s)")


def test_no_trap_to_passivate_when_the_bare_slab_is_clean(runs):
    clean = _system(runs, "passivated", None)
    result = passivation_verdict("OA", "V_Br", clean, _system(runs, "not", "OA"))
    assert result.verdict == "no trap to passivate" and result.passivated is None
    assert "with OA 2 appear" in result.text
    # a restricted run (even count) has one level for both spins, and says so
    restricted = _system(runs, "not", "OA").model_copy(update={"spin_polarized": False})
    result = passivation_verdict("OA", "V_Br", _system(runs, "defect", None), restricted)
    assert result.after_eV[0] == "+0.90 eV (both spins, occ 1.00)"


def _claim_system(surface: str, ligand: str, n: int) -> TrapSystem:
    return TrapSystem(label=f"{ligand} {surface}", surface=surface, ligand=ligand, n_host_traps=n)


@pytest.mark.parametrize(
    ("counts", "answer", "words"),
    [
        # (pristine OA, AcO, 2-HA), (V_Br OA, AcO, 2-HA)
        (((0, 0, 0), (0, 0, 0)), "does not hold", "no surface model computed shows mid-gap"),
        (((0, 0, 0), (1, 0, 0)), "holds only for V_Br", "other surface models it does not"),
        (((2, 0, 0), (1, 0, 0)), "holds", "on every surface model computed"),
        (((0, 0, 0), (1, 1, 0)), "does not hold", "do OA's gap states vanish"),
    ],
)
def test_paper_claim_from_counts(counts, answer, words):
    systems = []
    for surface, row in zip(("pristine", "V_Br"), counts, strict=True):
        for ligand, n in zip(("OA", "AcO", "2-HA"), row, strict=True):
            systems.append(_claim_system(surface, ligand, n))
    claim = paper_claim(systems, ["pristine", "V_Br"])
    assert claim["answer"] == answer and words in claim["text"]
    if counts[1] == (1, 1, 0):
        assert "AcO (1 remain)" in claim["per_surface"]["V_Br"]["why"]
    # without OA the claim cannot be answered
    no_oa = [s for s in systems if s.ligand != "OA"]
    assert paper_claim(no_oa, ["pristine", "V_Br"])["answer"] == "cannot be answered"


def test_a_partly_filled_level_under_the_cbm_is_a_gap_state_not_a_moved_band(runs):
    """Two delocalised levels just under the CBM: the one holding 0.45 e is an electron in the
    gap (the V_Br slab's excess electron is shared this way), the one with 0.03 e a band tail."""
    report = find_midgap_states(runs["edge"], reference=runs["host"], n_top_atoms=N_TOP_ATOMS)
    assert len(report.midgap_states) == 1 and len(report.moved_band_states) == 1
    assert report.moved_band_states[0].occupation == pytest.approx(0.03)
    system = _system(runs, "edge", None)
    (state,) = system.states
    assert state.spin == "up" and state.occupation == pytest.approx(0.45)
    assert state.energy_from_vbm_eV == pytest.approx(1.8, abs=1e-3)
    assert system.n_host_traps == 1
    assert "+1.80 eV (up, 0.45) [no, 0.20]" in "\n".join(system_markdown([system]))
