"""The screen end to end through the installed console script (mock VASP + pair-potential committee).

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
    proc = _dftflow("screen", str(SCREEN_YAML), "-o", "out", "-j", "1", "--json", cwd=work)
    return work / "out", proc


def test_screen_runs_and_writes_the_ranked_table(screened):
    out, proc = screened
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    table = ScreenTable.model_validate_json((out / "ranking.json").read_text())
    assert table.engine == "mock" and table.physical is False
    assert [r.ligand for r in table.rows if r.rank is not None] != []
    assert {r.ligand for r in table.rows} == {"AcOH", "MeNH2"}
    with (out / "ranking.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 2
    # ranks 1, 2 in order of the ranked E_ads (DFT for both here)
    ranked = sorted(table.rows, key=lambda r: r.rank or 99)
    assert [r.rank for r in ranked] == [1, 2]
    assert ranked[0].e_ads_dft_eV <= ranked[1].e_ads_dft_eV
    assert (out / "screen_report.md").is_file()


def test_every_placement_is_recorded_and_counted(screened):
    out, _ = screened
    for key, n_expected_max in (("AcOH", 6), ("MeNH2", 6)):
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
    for key in ("AcOH", "MeNH2"):
        screen = LigandScreen.model_validate_json(
            (out / "screen" / key / "ligand_screen.json").read_text()
        )
        mol = TaskDoc.from_json_file(
            taskdocs / f"test_mock_screen__{key}__molecule_static.json"
        ).energy_eV
        escalated = [p for p in screen.placements if p.escalated]
        assert escalated and escalated[0].escalation_reason.startswith("top-1")
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
    proc = _dftflow("screen", str(SCREEN_YAML), "-o", str(out), "-j", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in records} == before
    assert json.loads((out / "ranking.json").read_text())["rows"]
