"""Submit dftflow workers as queue jobs (SLURM, PBS ...) through FireWorks queue adapters."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import yaml
from fireworks.queue.queue_launcher import launch_rocket_to_queue
from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter
from fireworks.utilities.fw_serializers import load_object

from dftflow.errors import InputError
from dftflow.workflows.launchpad import LaunchpadHandle
from dftflow.workflows.rapidfire import fworker_for
from dftflow.workflows.spec import safe_name
from dftflow.workflows.workers import launch_command


def load_qadapter(path: str | Path) -> Any:
    """Read a FireWorks queue adapter YAML; one-line errors for a missing file or queue command."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"queue adapter file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict) or "_fw_name" not in raw or "_fw_q_type" not in raw:
        raise InputError(f"{path}: not a FireWorks queue adapter (needs _fw_name and _fw_q_type)")
    try:
        if raw["_fw_name"] == "CommonAdapter":
            return CommonAdapter.from_dict(raw)
        return load_object(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{path}: invalid queue adapter: {exc}") from None


def submit_command(qadapter: Any) -> str:
    """The queue's submit command (sbatch, qsub ...), which must be on PATH."""
    cmd = qadapter.q_commands[qadapter.q_type]["submit_cmd"]
    if shutil.which(cmd) is None:
        raise InputError(
            f"queue command {cmd!r} not found on PATH (is {qadapter.q_type} installed?)"
        )
    return cmd


def worker_command(
    study_dir: Path,
    handle: LaunchpadHandle,
    fworker_file: str | Path | None = None,
    vasp_cmd: str | None = None,
) -> str:
    """The shell command a queue job runs: a dftflow worker on the same LaunchPad and study.

    ``vasp_cmd`` (``launch --queue ... --vasp-cmd``) goes on the worker's command line; without
    it the job's ``DFTFLOW_VASP_CMD`` (exported by the adapter's ``pre_rocket``) decides.
    """
    args = launch_command(study_dir, handle, vasp_cmd)
    if fworker_file is not None:
        args += ["-w", str(Path(fworker_file).absolute())]
    return " ".join(shlex.quote(a) for a in args)


def queue_launch(
    handle: LaunchpadHandle,
    study_dir: str | Path,
    qadapter: Any,
    nlaunches: int = 1,
    query: dict[str, Any] | None = None,
    fworker_file: str | Path | None = None,
    vasp_cmd: str | None = None,
) -> list[str]:
    """Submit ``nlaunches`` queue jobs, each running a dftflow worker for the study.

    Returns the queue's job ids.
    """
    study_dir = Path(study_dir).absolute()
    submit_command(qadapter)
    qadapter["rocket_launch"] = worker_command(study_dir, handle, fworker_file, vasp_cmd)
    qadapter.setdefault("job_name", "dftflow-" + safe_name(study_dir.name)[:40])
    launcher_dir = study_dir / "queue"
    launcher_dir.mkdir(parents=True, exist_ok=True)
    fworker = fworker_for(query if query is not None else {})
    ids = []
    lp = handle.launchpad()
    cwd = os.getcwd()
    try:  # FireWorks' queue launcher changes the working directory
        for _ in range(max(1, nlaunches)):
            rid = launch_rocket_to_queue(
                lp, fworker, qadapter, str(launcher_dir), create_launcher_dir=True, strm_lvl="ERROR"
            )
            if rid is None:
                break
            if not rid:
                raise InputError(
                    f"the queue refused the job script (see {launcher_dir}/*/FW_submit.script)"
                )
            ids.append(str(rid))
    finally:
        os.chdir(cwd)
    return ids
