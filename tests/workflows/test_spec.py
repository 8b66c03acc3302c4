"""Study spec validation, name sanitising, parameter overrides and the engine registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftflow import engines
from dftflow.cli import main
from dftflow.errors import EngineError, InputError
from dftflow.inputs import params
from dftflow.workflows.spec import Parameters, StudySpec, digest_of, load_study, safe_name

WORKFLOWS = Path(__file__).parents[2] / "workflows"

MINIMAL = """\
study: t
ligands:
  - name: AcO
    model: bidentate carboxylate
    reference_species: acetate radical
    molecule_form: radical
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + "colour: blue\n", "colour: unknown key"),
        (MINIMAL.replace("study: t", "study: t\nslab: {layers: five}"), "slab.layers"),
        (MINIMAL.replace("study: t", "study: t\nslab: {typo: 1}"), "slab.typo: unknown key"),
        (MINIMAL.replace("study: t", "study: t\nengine: {name: castep}"), "engine.name"),
        (
            MINIMAL
            + "  - name: AcO\n    model: m\n    reference_species: r\n    molecule_form: radical\n",
            "ligand listed twice",
        ),  # fmt: skip
        ("study: t\nligands: [\n", "malformed YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("study: t\nligands: []\n", "ligands"),
        (MINIMAL.replace("molecule_form: radical", "molecule_form: ionised"), "molecule_form"),
        (MINIMAL.replace("study: t", "study: t\nparameters: {encut_eV: -5}"), "encut_eV"),
    ],
)
def test_bad_study_is_one_line(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_study(path)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert main(["run", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_study_file(tmp_path, capsys):
    assert main(["submit", str(tmp_path / "nope.yaml"), "-o", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_engine_option(tmp_path, capsys):
    path = _write(tmp_path, MINIMAL)
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "--engine", "castep"]) == 2
    assert "unknown engine 'castep'" in capsys.readouterr().err


def test_safe_name():
    assert safe_name("2-HA") == "2-HA"
    assert safe_name("my ligand/../x") == "my_ligand_x"
    assert safe_name("a.b$c") == "a_b_c"
    with pytest.raises(InputError):
        safe_name("../")


def test_parameters_default_to_the_paper_and_overrides_are_explicit():
    p = Parameters()
    eff = p.effective()
    assert eff["encut_eV"] == params.ENCUT_EV == 400.0
    assert eff["kpoints_slab"] == [8, 8, 1]
    assert p.overrides() == {}
    q = Parameters(encut_eV=450, fmax_eV_per_A=0.05, kpoints_slab=(2, 2, 1), incar={"ALGO": "All"})
    assert q.overrides("slab") == {
        "ENCUT": 450,
        "EDIFFG": -0.05,
        "KPOINTS": [2, 2, 1],
        "ALGO": "All",
    }
    assert "KPOINTS" not in q.overrides("bulk")
    assert q.effective()["ediff_eV"] == params.EDIFF_EV


def test_shipped_study_specs_parse_without_the_ligand_library():
    import yaml

    for name in ("cspbbr3_ligands.yaml", "test_mock_small.yaml"):
        spec = StudySpec.model_validate(yaml.safe_load((WORKFLOWS / name).read_text()))
        assert spec.ligands
    paper = StudySpec.model_validate(
        yaml.safe_load((WORKFLOWS / "cspbbr3_ligands.yaml").read_text())
    )
    assert [lig.name for lig in paper.ligands] == ["OA", "2-HA", "AcO"]
    assert paper.slab.layers == 5 and paper.slab.supercell == (2, 2)
    assert paper.slab.termination == "PbBr2"
    assert paper.engine.name == "embedded"
    refs = {lig.name: lig.reference_species for lig in paper.ligands}
    assert refs == {"OA": "neutral acid", "2-HA": "neutral acid", "AcO": "acetate radical"}
    assert paper.parameters.overrides() == {}


def test_digest_is_canonical():
    assert digest_of({"a": 1, "b": [1, 2]}) == digest_of({"b": [1, 2], "a": 1})
    assert digest_of({"a": 1}) != digest_of({"a": 2})
    spec = StudySpec.model_validate(__import__("yaml").safe_load(MINIMAL))
    assert spec.digest() == spec.model_copy().digest()
    assert spec.with_engine("mock").digest() != spec.digest()


def test_engine_registry_errors(monkeypatch):
    with pytest.raises(EngineError, match="unknown engine 'castep'"):
        engines.get_engine("castep")
    from dftflow.engines import registry
    from dftflow.engines.vasp import VaspSettings

    ghost = registry.EngineEntry(
        name="ghost",
        module="dftflow.engines.no_such_module",
        class_name="X",
        settings_model=VaspSettings,
        install_hint="pip install ghost",
    )
    monkeypatch.setitem(registry.ENGINES, "ghost", ghost)
    with pytest.raises(EngineError, match="install it with pip install ghost"):
        engines.get_engine("ghost")
    assert engines.engine_names() == sorted(["embedded", "ghost", "mock", "vasp"])
    with pytest.raises(EngineError, match="unknown setting"):
        engines.get_engine("vasp", vasp_comand="srun vasp_std")  # typo caught by the model
    with pytest.raises(EngineError, match="max_errors"):
        engines.get_engine("vasp", max_errors=0)
    assert engines.engine_entry("mock").physical is False
    assert engines.get_engine("mock").name == "mock"  # the entry names the TaskDocs' engine


def test_submit_with_the_embedded_launchpad_file(tmp_path, capsys):
    import json

    lpad = Path(__file__).parents[2] / "launchers" / "my_launchpad.yaml"
    study = tmp_path / "study"
    spec = WORKFLOWS / "test_mock_small.yaml"
    assert main(["submit", str(spec), "-o", str(study), "-l", str(lpad), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["new"] is True and len(first["fw_ids"]) == 12
    assert (study / "launchpad" / "fireworks.json").is_file()
    assert main(["submit", str(spec), "-o", str(study), "--json"]) == 0  # same store, no-op
    assert json.loads(capsys.readouterr().out)["new"] is False
    assert main(["status", "-o", str(study), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    # only the bulk relaxation can start; everything else waits for it
    assert status["counts"] == {"READY": 1, "WAITING": 11}
