"""The screen end to end through the installed console script (mock VASP, pair-potential committee).

`dftflow screen workflows/test_mock_screen.yaml` runs the whole FireWorks workflow: enumeration,
loose relaxations in chunks, refinement by both members, DFT (mock VASP) relaxation + static of the
escalated placements, the ranked table. The committee members are the test equipment's pair
potentials (cheap; the second has 20 % shallower ligand-surface wells, so sigma is known to be > 0).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dftflow.schemas import TaskDoc
from dftflow.screening.records import CSV_COLUMNS, LigandScreen, ScreenTable

REPO = Path(__file__).resolve().parents[2]
SCREEN_YAML = REPO / "workflows" / "test_mock_screen.yaml"

pytestmark = pytest.mark.slow(seconds=60)


def _dftflow(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    exe = shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def screened(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    work = tmp_path_factory.mktemp("screen")
    # two more ligands from the command line that cannot be screened: listed, the others screened
    proc = _dftflow(*SCREEN_ARGS, "-o", "out", "-j", "2", "--json", cwd=work)
    return work / "out", proc


SCREEN_ARGS = (
    "screen",
    str(SCREEN_YAML),
    "--smiles",
    "C1CC",
    "--name",
    "broken",
    "--smiles",
    "c1cc[nH]c1",
    "--name",
    "pyrrole",
)


def test_screen_runs_and_writes_the_ranked_table(screened):
    out, proc = screened
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # one line per ligand that cannot be screened, before anything runs
    err = " ".join(proc.stderr.split())  # rich may wrap lines
    assert "cannot screen ligand 'broken': invalid SMILES 'C1CC'" in err
    # the SMILES's brackets are printed as they are (not taken for rich markup)
    assert "cannot screen ligand 'pyrrole': SMILES 'c1cc[nH]c1' has no anchor group" in err
    data = json.loads(proc.stdout)  # --json: stdout is the JSON only
    assert data["status"]["failed"] == [] and data["table"]["rows"]
    table = ScreenTable.model_validate_json((out / "ranking.json").read_text())
    assert table.engine == "mock" and table.physical is False
    assert table.committee == screen_committee()
    assert [(r.rank, r.ligand) for r in table.rows] == [
        (1, "MeNH2"),
        (None, "broken"),
        (None, "pyrrole"),
    ]
    best, broken, pyrrole = table.rows
    assert "invalid SMILES" in broken.error and "anchor" in pyrrole.error
    assert best.e_ads_dft_eV is not None and best.ranked_on_eV == best.e_ads_dft_eV
    assert best.dft_minus_mlip_eV == pytest.approx(best.e_ads_dft_eV - best.e_ads_mlip_mean_eV)
    assert best.n_tried == 2 and best.n_escalated == 2
    with (out / "ranking.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert [r["ligand"] for r in rows] == ["MeNH2", "broken", "pyrrole"]
    assert float(rows[0]["e_ads_dft_eV"]) == pytest.approx(best.e_ads_dft_eV, abs=1e-4)
    report = (out / "screen_report.md").read_text()
    assert "mock (not physical)" in report.lower() and "MeNH2" in report


def test_every_placement_is_recorded_and_counted(screened):
    out, _ = screened
    for key, n_expected_max in (("MeNH2", 6),):
        screen = LigandScreen.model_validate_json(
            (out / "screen" / key / "ligand_screen.json").read_text()
        )
        assert 1 <= screen.n_enumerated <= n_expected_max
        assert len(screen.placements) == screen.n_enumerated
        assert sum(screen.n_by_mode.values()) == screen.n_enumerated
        for p in screen.placements:
            assert p.n_steps_loose is not None and p.binding_mode is not None
            assert (out / "screen" / key / "placements" / str(p.structure_file)).is_file()
            if p.excluded:
                assert p.reason  # never dropped unseen
        refined = [p for p in screen.placements if p.refined]
        assert refined, "the lowest placements are refined by both members"
        for p in refined:
            a, b = (p.e_ads_eV[m] for m in screen_committee())
            assert p.e_ads_mean_eV == pytest.approx((a + b) / 2)
            assert p.e_ads_sigma_eV == pytest.approx(abs(a - b) / 2)


def screen_committee() -> list[str]:
    return ["dftflow.testing.mlip:pair_a", "dftflow.testing.mlip:pair_b"]


def test_dft_e_ads_is_computed_from_the_statics(screened):
    out, _ = screened
    taskdocs = out / "taskdocs"
    slab = TaskDoc.from_json_file(taskdocs / "test_mock_screen__slab__static.json").energy_eV
    for key in ("MeNH2",):
        screen = LigandScreen.model_validate_json(
            (out / "screen" / key / "ligand_screen.json").read_text()
        )
        mol = TaskDoc.from_json_file(
            taskdocs / f"test_mock_screen__{key}__molecule_static.json"
        ).energy_eV
        escalated = sorted(
            (p for p in screen.placements if p.escalated), key=lambda p: p.e_ads_mean_eV
        )
        # slot 0: the committee's best; slot 1: the other, because the members disagree on it
        assert [p.escalation_reason.split(" ")[0] for p in escalated] == ["top-1", "sigma"]
        assert escalated[1].e_ads_sigma_eV > 0.2
        cx = TaskDoc.from_json_file(taskdocs / f"test_mock_screen__{key}__dft__0__static.json")
        assert cx.engine == "mock"
        top = next(p for p in escalated if p.e_ads_dft_eV is not None)
        assert top.e_ads_dft_eV == pytest.approx(cx.energy_eV - slab - mol, abs=1e-9)
        # the DFT relaxation started from the committee's geometry, not from a raw placement
        relax = TaskDoc.from_json_file(taskdocs / f"test_mock_screen__{key}__dft__0__relax.json")
        assert relax.ligand_indices == cx.ligand_indices and relax.ligand_indices


def test_second_call_resumes_without_recomputing(screened, tmp_path):
    out, _ = screened
    records = sorted((out / "screen").glob("*/placements/*.json"))
    before = {p: p.stat().st_mtime_ns for p in records}
    proc = _dftflow(*SCREEN_ARGS, "-o", str(out), "-j", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming test_mock_screen: 12 Fireworks, 12 already completed" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in records} == before
    assert json.loads((out / "ranking.json").read_text())["rows"]


def test_nothing_screenable_is_exit_2_with_one_line(tmp_path):
    proc = _dftflow("screen", "--smiles", "CCCC", "--name", "butane", "-o", "o", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "no ligand could be screened" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_submit_only_adds_the_workflow_for_a_queue(tmp_path):
    """`--submit-only` adds every Firework (counts known at submission); `status` follows it."""
    proc = _dftflow("screen", str(SCREEN_YAML), "--submit-only", "-o", "q", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sub = json.loads(proc.stdout)
    # bulk, slab relax + static, mlip/slab, 2 chunks, select, molecule relax + static,
    # 2 DFT slots (top_k 1 + extra_dft 1), ranking
    assert sub["new"] is True and len(sub["fw_ids"]) == 12
    status = json.loads(_dftflow("status", "-o", "q", "--json", cwd=tmp_path).stdout)
    assert status["total"] == 12 and status["counts"] == {"READY": 1, "WAITING": 11}
    again = json.loads(
        _dftflow(
            "screen", str(SCREEN_YAML), "--submit-only", "-o", "q", "--json", cwd=tmp_path
        ).stdout
    )
    assert again["new"] is False and again["fw_ids"] == sub["fw_ids"]
