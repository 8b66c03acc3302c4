"""Add a study's workflow to its LaunchPad once; put failed or lost Fireworks back to READY."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dftflow.errors import InputError
from dftflow.workflows.flows import build_workflow
from dftflow.workflows.launchpad import LaunchpadHandle
from dftflow.workflows.query import study_query
from dftflow.workflows.screen_flows import build_screen_workflow
from dftflow.workflows.spec import StudySpec
from dftflow.workflows.status import lost_fw_ids, lost_workers, stop_orphans


@dataclass
class Submission:
    """Result of :func:`submit_study`."""

    fw_ids: list[int]
    new: bool
    study_query: dict[str, Any]
    #: A new submission's shared cell: (vacuum above the slab, vacuum the tallest ligand keeps to
    #: the next slab image), Angstrom; None when resuming.
    vacuum_A: tuple[float, float] | None = None


def submit_study(spec: StudySpec, study_dir: str | Path, handle: LaunchpadHandle) -> Submission:
    """Add the study's workflow unless the same spec is already in this LaunchPad (then resume)."""
    study_dir = Path(study_dir).absolute()
    query = study_query(spec)
    with handle.read_only() as lp:
        existing = lp.get_fw_ids(query)
    if existing:
        return Submission(sorted(existing), False, query)
    _refuse_conflicting(handle, spec, study_dir)
    # outside the lock: builds structures
    wf = build_screen_workflow(spec, study_dir) if spec.screen else build_workflow(spec, study_dir)
    with handle.session() as lp:
        existing = lp.get_fw_ids(query)
        if existing:  # another process submitted it meanwhile
            return Submission(sorted(existing), False, query)
        mapping = lp.add_wf(wf)
    meta = wf.metadata
    vacuum = (float(meta["dftflow_vacuum_A"]), float(meta["dftflow_ligand_clearance_A"]))
    return Submission(sorted(mapping.values()), True, query, vacuum)


def _refuse_conflicting(handle: LaunchpadHandle, spec: StudySpec, study_dir: Path) -> None:
    """Refuse a changed spec under a study name that this directory already holds.

    Its calculations would share run directories and TaskDoc files with the earlier ones.
    """
    with handle.read_only() as lp:
        other = lp.workflows.find_one(
            {
                "metadata.dftflow_study": spec.key,
                "metadata.dftflow_study_dir": str(study_dir),
                "metadata.dftflow_spec_digest": {"$ne": spec.digest()},
            },
            {"metadata": 1},
        )
    if other is not None:
        raise InputError(
            f"{study_dir} already holds study {spec.key!r} with other settings (engine, "
            "parameters, ligands or slab); use another output directory or study name"
        )


def rerun_failed(
    handle: LaunchpadHandle, query: dict[str, Any], silent_hours: float | None = None
) -> list[int]:
    """Put FIZZLED and lost Fireworks of ``query`` back to READY (their children follow).

    Lost: RUNNING with a dead worker on this host, or silent for ``silent_hours`` on any host.
    Processes a dead worker of this host left running (its VASP, after the worker was killed with
    SIGKILL) are stopped first (:func:`~dftflow.workflows.status.stop_orphans`): they would write
    into the directory where the rerun starts.
    """
    with handle.read_only() as lp:
        dead = lost_workers(lp, query)
    stop_orphans(dead)  # outside the lock: may wait for processes to end
    with handle.session() as lp:
        ids = lp.get_fw_ids({**query, "state": "FIZZLED"}) + lost_fw_ids(lp, query)
        if silent_hours is not None:
            _, silent = lp.detect_lostruns(expiration_secs=silent_hours * 3600, query=query)[:2]
            ids += list(silent)
        for fw_id in sorted(set(ids)):
            lp.rerun_fw(fw_id)
    return sorted(set(ids))
