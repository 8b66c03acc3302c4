"""Bad screen inputs: one line per ligand that cannot be screened, the others kept; exit 2 only
when none can be; malformed YAML and settings refused in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dftflow.errors import InputError
from dftflow.workflows.screen_spec import ScreenFile, build_screen

pytestmark = pytest.mark.fault
ONLY_CHGNET = {"committee": ["chgnet"]}


def _file(**kw) -> ScreenFile:
    return ScreenFile.model_validate({"slab": {"supercell": [2, 2], "layers": 3}, **kw})


def test_each_bad_ligand_is_one_line_and_the_others_are_kept():
    spec, lines = build_screen(
        _file(settings=ONLY_CHGNET),
        [
            ("ok", "CC(=O)O"),
            ("bad", "C1CC"),
            ("noanchor", "CCCC"),
            ("curium", "[Cm]CC(=O)O"),
        ],
    )
    assert [lig.name for lig in spec.ligands] == ["ok"]
    assert spec.screen is not None and spec.screen.references == {"ok": "neutral"}
    assert len(lines) == 3 and all("\n" not in x for x in lines)
    assert "ligand 'bad': invalid SMILES 'C1CC'" in lines[0]
    assert "ligand 'noanchor'" in lines[1] and "no anchor group" in lines[1]
    assert "ligand 'curium'" in lines[2] and "Cm" in lines[2] and "CHGNet" in lines[2]
    rejected = {r["name"]: r["error"] for r in spec.screen.rejected}
    assert list(rejected) == ["bad", "noanchor", "curium"] and rejected["bad"] == lines[0]


def test_potcar_table_is_checked_for_vasp():
    spec, lines = build_screen(
        _file(settings=ONLY_CHGNET, engine={"name": "vasp"}),
        [("ok", "CN"), ("silane", "C[Si](C)(C)CC(=O)O")],
    )
    assert [lig.name for lig in spec.ligands] == ["ok"]
    assert "ligand 'silane'" in lines[0] and "no POTCAR symbol configured for Si" in lines[0]


def test_too_large_for_the_supercell():
    with pytest.raises(InputError) as err:
        build_screen(
            ScreenFile.model_validate(
                {"slab": {"supercell": [1, 1], "layers": 3}, "settings": ONLY_CHGNET}
            ),
            [("trityl", "OP(=O)(O)C(c1ccccc1)(c1ccccc1)c1ccccc1")],
        )
    msg = str(err.value)
    assert "\n" not in msg and "no ligand could be screened" in msg
    assert "ligand 'trityl'" in msg and "periodic image" in msg


def test_settings_and_names_are_checked():
    with pytest.raises(InputError, match="settings.top_k"):
        build_screen(_file(), [("a", "CN")], settings={"top_k": 0})
    with pytest.raises(InputError, match="ligand named twice: a"):
        build_screen(_file(), [("a", "CN"), ("A", "CS")])
    with pytest.raises(InputError, match="no ligand to screen"):
        build_screen(_file(), [])
    with pytest.raises(ValueError, match="set by dftflow"):
        ScreenFile.model_validate({"settings": {"rejected": []}})


def test_malformed_yaml_and_unknown_key_through_the_console_script(tmp_path):
    exe = shutil.which("dftflow") or str(Path(sys.executable).with_name("dftflow"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("ligands: [\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("ligands: [OA]\nsetings: {top_k: 2}\n")
    for path, words in ((bad, "malformed YAML"), (unknown, "setings: unknown key")):
        proc = subprocess.run(
            [exe, "screen", str(path), "-o", str(tmp_path / "o")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and words in lines[0], proc.stderr
        assert not (tmp_path / "o").exists()


def test_a_study_cannot_be_a_screen_and_a_trap_study():
    from dftflow.workflows.spec import parse_study

    data = {
        "study": "x",
        "ligands": [{"name": "AcO", "model": "m", "molecule_form": "radical"}],
        "screen": {},
        "traps": {"defects": ["V_Br"]},
    }
    with pytest.raises(InputError, match="a screen has no traps section"):
        parse_study(data)
