"""The outputs of a screen: never half-written, never a mock number without its label (issue 13).

* ``ranking.csv`` and ``ranking.json`` are each written atomically: a table that cannot be
  serialised, or a failed rename, leaves the previous files byte for byte and no temporary file.
* A screen of the mock engine says "mock (not physical)" on every figure (drawn, and in the PNG's
  ``Description``), in its report (banner and the E_ads header) and in report.html.

Synthetic records (no relaxation): these are the output stage's guarantees only.
"""

from __future__ import annotations

import os

import pytest

from dftflow.schemas import NOT_PHYSICAL_LABEL
from dftflow.screening.ranking import rank_ligands, write_report, write_table
from dftflow.screening.records import LigandScreen, PlacementRecord, ScreenTable

pytestmark = pytest.mark.fault


def _ligand(name: str, means: list[float], dft: list[float | None]) -> LigandScreen:
    return LigandScreen(
        name=name,
        smiles="CC(=O)O",
        reference_species="neutral acid",
        reference_form="as_is",
        anchor="carboxylic_acid",
        placements=[
            PlacementRecord(
                key=f"{name}-{i}",
                ligand=name,
                mode_enumerated="monodentate",
                site=0,
                azimuth_deg=0.0,
                form="as_is",
                n_atoms=60,
                binding_mode="monodentate",
                e_ads_mean_eV=m,
                e_ads_sigma_eV=0.05,
                escalated=d is not None,
                e_ads_dft_eV=d,
            )
            for i, (m, d) in enumerate(zip(means, dft, strict=True))
        ],
    )


def _table(physical: bool, ligands: list[LigandScreen]) -> ScreenTable:
    return rank_ligands(
        ligands,
        screen="s",
        engine="mock",
        physical=physical,
        committee=["pair_a", "pair_b"],
        slab={},
        e_slab_eV={},
    )


@pytest.fixture
def ligands():
    return [
        _ligand("A", [-1.0, -0.9, -0.8], [-1.1, -0.95, None]),
        _ligand("B", [-0.5, -0.4, -0.3], [-0.6, -0.45, None]),
    ]


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_table_files_are_never_half_written(ligands, tmp_path, monkeypatch):
    old = _table(True, ligands)
    write_table(old, tmp_path)
    before = _snapshot(tmp_path)
    new = _table(True, ligands[:1])

    # a table that cannot be serialised: neither file is touched (both rendered before writing)
    def broken(self, **kw):
        raise ValueError("cannot serialise")

    monkeypatch.setattr(ScreenTable, "model_dump_json", broken)
    with pytest.raises(ValueError):
        write_table(new, tmp_path)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before

    # the rename fails (a full or vanished disk): the old file stays whole, no temporary is left
    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_table(new, tmp_path)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before
    assert ScreenTable.model_validate_json((tmp_path / "ranking.json").read_text()) == old


def test_mock_screen_outputs_say_so(ligands, tmp_path):
    from PIL import Image

    path = write_report(_table(False, ligands), ligands, tmp_path)
    md = path.read_text()
    assert "MOCK (NOT PHYSICAL)" in md and f"E_ads MLIP (eV), {NOT_PHYSICAL_LABEL}" in md
    assert "MOCK (NOT PHYSICAL)" in path.with_suffix(".html").read_text()
    pngs = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in pngs] == ["parity.png", "ranking.png"]
    for png in pngs:
        with Image.open(png) as im:
            assert im.text.get("Description") == NOT_PHYSICAL_LABEL, png.name
    # a physical screen carries no such label
    phys = tmp_path / "phys"
    path = write_report(_table(True, ligands), ligands, phys)
    assert NOT_PHYSICAL_LABEL not in path.read_text().lower()
    for png in sorted(phys.glob("*.png")):
        with Image.open(png) as im:
            assert "Description" not in im.text, png.name
