"""Study workflow units: duplicate detection, data passing, lowest-energy selection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fireworks import Firework, FWAction, Workflow
from fireworks.core.firework import FiretaskBase
from fireworks.utilities.fw_utilities import explicit_serialize

from dftflow.errors import InputError
from dftflow.testing.launchpad import SleepTask
from dftflow.workflows import firetasks as ft
from dftflow.workflows.launchpad import open_launchpad
from dftflow.workflows.rapidfire import _first_ready, run_local
from dftflow.workflows.status import study_status


def _digest_fw(study, label, log, digest):
    spec = {
        "dftflow": {"study_dir": str(study)},
        ft.SPEC_DIGEST: digest,
        "_dupefinder": ft.DigestDupeFinder(),
    }
    return Firework(SleepTask(label=label, log=str(log), seconds=0.0), spec=spec, name=label)


def test_digest_dupefinder_reuses_a_finished_firework(embedded_store, tmp_path):
    study = embedded_store.directory.parent
    log = tmp_path / "ran.log"
    lp = embedded_store.launchpad()
    lp.add_wf(_digest_fw(study, "first", log, "abc"))
    handle = open_launchpad(study)
    assert run_local(handle, study, {}) == 1
    # the same calculation submitted again (another workflow), and a different one
    lp.add_wf(_digest_fw(study, "again", log, "abc"))
    lp.add_wf(_digest_fw(study, "other", log, "xyz"))
    run_local(handle, study, {})
    ran = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert ran == Counter({"first": 1, "other": 1})  # "again" was not recomputed
    status = study_status(handle)
    assert status["counts"] == {"COMPLETED": 3}
    with embedded_store.read_only() as lp_ro:
        again = lp_ro.fireworks.find_one({"name": "again"})
        first = lp_ro.fireworks.find_one({"name": "first"})
        assert again["launches"] == first["launches"]


def test_dupefinder_query_and_verify():
    d = ft.DigestDupeFinder()
    assert d.verify({ft.SPEC_DIGEST: "a"}, {ft.SPEC_DIGEST: "a"})
    assert not d.verify({ft.SPEC_DIGEST: "a"}, {ft.SPEC_DIGEST: "b"})
    assert not d.verify({}, {})
    assert d.query({ft.SPEC_DIGEST: "a"})[f"spec.{ft.SPEC_DIGEST}"] == "a"


@explicit_serialize
class _RecordTask(FiretaskBase):
    """Test task: pass a record on with dftflow's pass_on, as the stage tasks do."""

    required_params = ["role", "value"]

    def run_task(self, fw_spec):
        return ft.pass_on(
            fw_spec,
            self["role"],
            {"value": self["value"], "seen": sorted(fw_spec.get("results", {}))},
        )


def test_records_reach_grandchildren_through_the_spec(embedded_store):
    study = embedded_store.directory.parent
    spec = {"dftflow": {"study_dir": str(study)}}
    a = Firework(_RecordTask(role="bulk/relax", value=1), spec=dict(spec), name="a", fw_id=-1)
    b = Firework(_RecordTask(role="slab/relax", value=2), spec=dict(spec), name="b", fw_id=-2)
    c = Firework(_RecordTask(role="X/analysis", value=3), spec=dict(spec), name="c", fw_id=-3)
    embedded_store.launchpad().add_wf(Workflow([a, b, c], {a: [b], b: [c]}))
    run_local(open_launchpad(study), study, {})
    with embedded_store.read_only() as lp:
        c_doc = lp.fireworks.find_one({"name": "c"})
    assert c_doc["state"] == "COMPLETED"
    results = c_doc["spec"]["results"]
    assert results["bulk/relax"]["value"] == 1 and results["slab/relax"]["value"] == 2


def test_select_lowest_prefers_converged_and_reports_failures():
    records = {
        "a": {"energy_eV": -10.0, "converged": True},
        "b": {"energy_eV": -12.0, "converged": False},
        "c": {"energy_eV": -11.0, "converged": True},
        "d": None,
    }
    assert ft.select_lowest(records) == "c"
    assert ft.select_lowest({"b": records["b"], "d": None}) == "b"
    with pytest.raises(InputError):
        ft.select_lowest({"d": None})


def test_role_keys_are_store_safe():
    assert ft.role_key("2-HA/complex_relax/x.1") == "2-HA/complex_relax/x_1"
    action = ft.pass_on({"results": {"bulk/relax": {"a_A": 5.9}}}, "slab/relax", {"e": 1})
    assert isinstance(action, FWAction)
    keys = sorted(next(iter(m["_set"])) for m in action.mod_spec)
    assert keys == ["results->bulk/relax", "results->slab/relax"]


def test_new_embedded_defaults_change_every_digest(monkeypatch, tmp_path):
    """Engine defaults live in code: changing them must never reuse old results."""
    from dftflow.engines import embedded_settings
    from dftflow.workflows.flows import build_workflow
    from dftflow.workflows.spec import load_study

    spec = load_study(Path(__file__).parents[2] / "workflows" / "test_mock_small.yaml")
    spec = spec.with_engine("embedded")

    def digests():
        wf = build_workflow(spec, tmp_path)
        return {fw.name: fw.spec[ft.SPEC_DIGEST] for fw in wf.fws}

    before = digests()
    assert digests() == before  # deterministic
    new = dict(embedded_settings.DEFAULT_SETTINGS, grid_spacing_A=0.2)
    monkeypatch.setattr(embedded_settings, "DEFAULT_SETTINGS", new)
    after = digests()
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in before)


def test_relaxations_have_priority_in_the_workflow():
    from dftflow.workflows.flows import RELAX_PRIORITY, build_workflow
    from dftflow.workflows.spec import load_study

    wf = build_workflow(
        load_study(Path(__file__).parents[2] / "workflows" / "test_mock_small.yaml"), Path("x")
    )
    prio = {fw.name.split("/", 1)[1]: fw.spec.get("_priority") for fw in wf.fws}
    relax = {k for k in prio if "relax" in k}
    assert {"bulk/relax", "slab/relax", "AcO/molecule_relax"} <= relax
    assert any(k.startswith("AcO/complex_relax/") for k in relax)
    assert all(prio[k] == RELAX_PRIORITY for k in relax)
    assert all(v is None for k, v in prio.items() if k not in relax)  # statics, analysis


def test_local_runner_takes_the_highest_priority_ready_firework_first(embedded_store, tmp_path):
    from dftflow.testing.launchpad import sleep_fireworks

    study = embedded_store.directory.parent
    fws = sleep_fireworks(study, 3, 0.0, tmp_path / "ran.log")
    fws[2].spec["_priority"] = 1
    with embedded_store.session() as lp:
        for fw in fws:
            lp.add_wf(fw)
    handle = open_launchpad(study)
    first = _first_ready(handle, handle.launchpad(), {})
    assert first["name"] == "fw2"  # priority beats the lower fw_id
    assert run_local(handle, study, {}) == 3
    order = [line.split()[0] for line in (tmp_path / "ran.log").read_text().splitlines()]
    assert order == ["fw2", "fw0", "fw1"]
