"""CLI commands of studies: ``run``, ``submit``, ``launch``, ``status``, ``rerun``.

``dftflow run STUDY.yaml -o DIR`` is the main job: it submits the study to DIR's embedded
LaunchPad, runs every Firework here, and writes DIR/summary.json and the report; run it again on
the same DIR to resume (nothing finished is recomputed).

Exit codes of ``run`` and ``launch``: 0 when every Firework they were to run COMPLETED; 1 when a
Firework FIZZLED (one line names them; ``dftflow status`` says why); 130 after Ctrl-C (SIGINT) and
143 after SIGTERM, with one "interrupted" line: the running Fireworks are recorded FIZZLED and the
same command (``run``) or ``dftflow rerun`` + ``launch`` resumes.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import click
import typer
import yaml

from dftflow.cli.common import console, echo_json, screen_placements_line
from dftflow.engines import engine_entry
from dftflow.errors import InputError


class StudyIncomplete(click.ClickException):
    """Some calculations failed (not a user mistake): printed as one line, exit code 1."""

    exit_code = 1


_DirOption = Annotated[Path, typer.Option("-o", "--dir", help="Study directory.")]
_LaunchpadOption = Annotated[
    Path | None, typer.Option("-l", "--launchpad", help="LaunchPad YAML (default: embedded).")
]
_VaspCmdOption = Annotated[
    str | None,
    typer.Option(
        "--vasp-cmd",
        help="How VASP is launched, e.g. 'srun vasp_std' (engine vasp). Precedence: this > "
        "$DFTFLOW_VASP_CMD > FWorker env vasp_cmd > study engine.settings.vasp_cmd > vasp_std.",
    ),
]


def _vasp_cmd_option(vasp_cmd: str | None, engine: str | None = None) -> str | None:
    """The ``--vasp-cmd`` value checked: not blank, and only for an engine that launches VASP."""
    if vasp_cmd is None:
        return None
    if not vasp_cmd.strip():
        raise InputError("--vasp-cmd is empty; e.g. --vasp-cmd 'srun vasp_std'")
    if engine is not None and not engine_entry(engine).launches_vasp:
        raise InputError(
            f"--vasp-cmd has no meaning for the {engine} engine (it is for engine vasp)"
        )
    return vasp_cmd.strip()


def _option_env(vasp_cmd: str | None) -> dict:
    """FWorker env carrying ``--vasp-cmd`` to the Firetasks of this process."""
    from dftflow.engines.vasp import FWORKER_OPTION_KEY

    return {FWORKER_OPTION_KEY: vasp_cmd} if vasp_cmd else {}


def _stopped(signum: int, study_dir: Path, again: str) -> typer.Exit:
    """The one "interrupted" line on stderr, and the exit (128 + signal number)."""
    what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    typer.echo(
        f"{what}: finished calculations are kept, the running ones were stopped and recorded "
        f"FIZZLED, nothing new was started; {again} to resume ({study_dir})",
        err=True,
    )
    return typer.Exit(128 + signum)


def _fizzled_line(failed: list[dict]) -> str:
    """One line naming FIZZLED Fireworks (id and name)."""
    names = ", ".join(f"{f['fw_id']} {f['name']}" for f in failed[:10])
    more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
    return f"{len(failed)} Firework(s) FIZZLED: {names}{more}"


def _check_engine(engine: str | None) -> str | None:
    return None if engine is None else engine_entry(engine).name


def _load(study: Path, engine: str | None):
    from dftflow.workflows.spec import load_study

    return load_study(study).with_engine(_check_engine(engine))


def _study_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the study directory {path}: {exc}") from None
    return path.absolute()


def _print_status(status: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{status['total']} Fireworks")
    table.add_column("state")
    table.add_column("count", justify="right")
    for state, n in status["counts"].items():
        table.add_row(state, str(n))
    console.print(table)
    # one line each, never wrapped; names and reasons are not rich markup
    for f in status["failed"]:
        console.print(
            f"[red]FIZZLED[/red] {f['fw_id']} {escape(f['name'])}: {escape(f['reason'])}",
            soft_wrap=True,
        )
    for f in status["lost"]:
        console.print(
            f"[yellow]LOST[/yellow] {f['fw_id']} {escape(f['name'])}: its worker is gone "
            "(killed); `dftflow run` again (or `dftflow rerun`) reruns it",
            soft_wrap=True,
        )


def _print_summary(study_dir: Path, console) -> None:
    from rich.table import Table

    from dftflow.schemas import NOT_PHYSICAL_LABEL, StudySummary

    path = study_dir / "summary.json"
    if not path.is_file():
        return
    summary = StudySummary.model_validate_json(path.read_text())
    physical = summary.physical and all(lig.physical for lig in summary.ligands)
    engine = summary.engine if physical else f"{summary.engine} engine: not physical"
    table = Table(title=f"{summary.study} ({engine}) - {path}")
    e_head = "E_ads (eV)" if physical else f"E_ads (eV), {NOT_PHYSICAL_LABEL}"
    for col in ("ligand", "model", "reference L", e_head, "paper (eV)", "mid-gap"):
        table.add_column(col)
    for lig in summary.ligands:
        e = f"{lig.e_ads_eV:.3f}" if lig.e_ads_eV is not None else "-"
        p = f"{lig.paper_e_ads_eV:.2f}" if lig.paper_e_ads_eV is not None else "-"
        p = p if physical else "not compared"
        mg = "-" if lig.midgap is None else ("yes" if lig.midgap.get("has_midgap_states") else "no")
        table.add_row(lig.ligand, lig.model, lig.reference_species, e, p, mg)
    console.print(table)
    if summary.traps is not None:  # a trap study: passivation verdicts and the paper's claim
        for row in summary.traps.get("passivation", []):
            console.print(f"trap: {row['ligand']} at {row['defect']}: {row['verdict']}")
        claim = summary.traps.get("claim") or {}
        if claim:
            console.print(f"paper's mid-gap claim: {claim['answer']} ({claim['text']})")
    for note in summary.notes:
        console.print(f"note: {note}")


def _run_here(progress, overall, handle, study_dir, query, vasp_cmd=None) -> None:
    """Run every Firework in this process; one progress line per Firework."""
    from dftflow.workflows.rapidfire import RunEvent, run_local

    current: dict[int, int] = {}

    def on_event(ev: RunEvent) -> None:
        if ev.kind == "start":
            current[ev.fw_id] = progress.add_task(ev.name, total=1)
            return
        progress.update(current.pop(ev.fw_id), completed=1, description=f"{ev.name} {ev.state}")
        if ev.state == "COMPLETED":
            progress.advance(overall)

    run_local(handle, study_dir, query, on_event=on_event, env=_option_env(vasp_cmd))


def _run_workers(progress, overall, handle, study_dir, query, n_workers, vasp_cmd=None):
    """Start ``n_workers`` worker processes; one progress line per running Firework."""
    from dftflow.workflows.workers import run_workers

    lines: dict[str, int] = {}

    def on_status(status: dict) -> None:
        progress.update(overall, completed=status["counts"].get("COMPLETED", 0))
        running = set(status["running"])
        for name in running - set(lines):
            lines[name] = progress.add_task(name, total=1)
        for name in set(lines) - running:
            progress.update(lines.pop(name), completed=1, description=f"{name} finished")

    progress.update(overall, description=f"study ({n_workers} workers)")
    return run_workers(handle, study_dir, n_workers, query, on_status=on_status, vasp_cmd=vasp_cmd)


def run_spec(spec, study_dir: Path, workers: int, vasp_cmd: str | None) -> dict:
    """Submit ``spec`` (a study or a screen) to DIR's embedded LaunchPad and run it here.

    Progress bars while it runs; returns the final status (with ``study_dir``); raises
    ``typer.Exit`` 130/143 when stopped by a signal. Used by ``run`` and ``screen``.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from dftflow.workflows.launchpad import open_launchpad
    from dftflow.workflows.status import study_status
    from dftflow.workflows.store import WorkerStopped
    from dftflow.workflows.submission import rerun_failed, submit_study
    from dftflow.workflows.workers import WorkerExit, default_workers

    handle = open_launchpad(study_dir, create=True)
    sub = submit_study(spec, study_dir, handle)
    rerun = rerun_failed(handle, sub.study_query)
    before = study_status(handle, sub.study_query)
    done0 = before["counts"].get("COMPLETED", 0)
    console.print(
        f"{'submitted' if sub.new else 'resuming'} {spec.key}: {before['total']} Fireworks, "
        f"{done0} already completed"
        + (f", {len(rerun)} failed/lost put back to READY" if rerun else "")
    )
    if sub.vacuum_A is not None:
        console.print(_cell_line(spec, *sub.vacuum_A))
    if spec.screen is not None:
        line = screen_placements_line(handle, spec)
        if line:
            console.print(line, soft_wrap=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    n_workers = workers or default_workers(spec.engine.name)
    exits: list[WorkerExit] = []
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            overall = progress.add_task("study", total=before["total"], completed=done0)
            if n_workers > 1:
                exits = _run_workers(
                    progress, overall, handle, study_dir, sub.study_query, n_workers, vasp_cmd
                )
            else:
                _run_here(progress, overall, handle, study_dir, sub.study_query, vasp_cmd)
    except KeyboardInterrupt:
        raise _stopped(signal.SIGINT, study_dir, "run the same command again") from None
    except WorkerStopped as exc:
        raise _stopped(exc.signum, study_dir, "run the same command again") from None
    status = study_status(handle, sub.study_query)
    # exit 1 of a worker: a Firework FIZZLED (named by raise_if_incomplete)
    crashed = [e for e in exits if e.returncode not in (0, 1, None)]
    if crashed:
        console.print(
            "; ".join(f"worker {e.index} exited with {e.returncode} (see {e.log})" for e in crashed)
        )
    return {**status, "study_dir": str(study_dir)}


def raise_if_incomplete(status: dict) -> None:
    """Exit 1 (one line) when a Firework FIZZLED or did not complete."""
    if status["failed"] or status["counts"].get("COMPLETED", 0) != status["total"]:
        failed = f"{_fizzled_line(status['failed'])}; " if status["failed"] else ""
        raise StudyIncomplete(
            f"{failed}{status['total'] - status['counts'].get('COMPLETED', 0)} of "
            f"{status['total']} Fireworks not completed; see `dftflow status -o "
            f"{status['study_dir']}` for why, then run the same command again"
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("run")
    def run_cmd(
        study: Annotated[
            Path, typer.Argument(help="Study YAML (e.g. workflows/cspbbr3_ligands.yaml).")
        ],
        out: Annotated[Path, typer.Option("-o", "--out", help="Study directory (created).")],
        engine: Annotated[
            str | None, typer.Option("--engine", help="Override: embedded, vasp or mock.")
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the status as JSON at the end.")
        ] = False,
        workers: Annotated[
            int,
            typer.Option(
                "-j",
                "--workers",
                min=0,
                help="Worker processes running Fireworks side by side (0: one per core, at most "
                "4, for the embedded engine; 1 for vasp and mock).",
            ),
        ] = 0,
        vasp_cmd: _VaspCmdOption = None,
    ) -> None:
        """Submit the study to DIR's embedded LaunchPad and run every Firework here (resumable)."""
        spec = _load(study, engine)
        vasp_cmd = _vasp_cmd_option(vasp_cmd, spec.engine.name)
        status = run_spec(spec, _study_dir(out), workers, vasp_cmd)
        if json_out:
            echo_json({k: v for k, v in status.items() if k != "study_dir"})
        else:
            _print_status(status, console)
            _print_summary(Path(status["study_dir"]), console)
        raise_if_incomplete(status)

    @app.command("submit")
    def submit_cmd(
        study: Annotated[Path, typer.Argument(help="Study YAML.")],
        out: Annotated[Path, typer.Option("-o", "--dir", help="Study directory (created).")] = Path(
            "."
        ),
        launchpad: _LaunchpadOption = None,
        engine: Annotated[
            str | None, typer.Option("--engine", help="Override: embedded, vasp or mock.")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Add the study's workflow to the LaunchPad (no-op if the same study is already there)."""
        from dftflow.workflows.launchpad import open_launchpad
        from dftflow.workflows.submission import submit_study

        spec = _load(study, engine)
        study_dir = _study_dir(out)
        handle = open_launchpad(study_dir, launchpad, create=True)
        sub = submit_study(spec, study_dir, handle)
        if json_out:
            data = {"study": spec.key, "new": sub.new, "fw_ids": sub.fw_ids}
            if sub.vacuum_A is not None:
                data["vacuum_A"], data["ligand_clearance_A"] = sub.vacuum_A
            echo_json(data)
        else:
            verb = "submitted" if sub.new else "already submitted"
            console.print(
                f"{verb}: {spec.key}, {len(sub.fw_ids)} Fireworks in {handle.kind} LaunchPad"
            )
            if sub.vacuum_A is not None:
                console.print(_cell_line(spec, *sub.vacuum_A))

    @app.command("launch")
    def launch_cmd(
        out: _DirOption = Path("."),
        launchpad: _LaunchpadOption = None,
        queue: Annotated[
            Path | None, typer.Option("--queue", help="Queue adapter YAML: submit worker jobs.")
        ] = None,
        nlaunches: Annotated[
            int,
            typer.Option(
                "--nlaunches",
                min=0,
                help="Queue jobs to submit (default 1) / Fireworks to run (0: all).",
            ),
        ] = 0,
        fworker: Annotated[
            Path | None, typer.Option("-w", "--fworker", help="FWorker YAML (env: vasp_cmd).")
        ] = None,
        vasp_cmd: _VaspCmdOption = None,
    ) -> None:
        """Run the study's READY Fireworks here, or submit worker jobs to a queue (--queue).

        Exit code 1 when a Firework of the study is FIZZLED at the end (one line names them);
        130 (Ctrl-C) or 143 (SIGTERM) when stopped.
        """
        from dftflow.workflows.launchpad import open_launchpad
        from dftflow.workflows.queue import load_qadapter, queue_launch, submit_command
        from dftflow.workflows.rapidfire import run_local
        from dftflow.workflows.status import study_status
        from dftflow.workflows.store import WorkerStopped

        study_dir = out.absolute()
        vasp_cmd = _vasp_cmd_option(vasp_cmd)
        env = {**_fworker_env(fworker), **_option_env(vasp_cmd)}
        if queue is not None:
            qadapter = load_qadapter(queue)
            submit_command(qadapter)
        handle = open_launchpad(study_dir, launchpad)
        query = {"spec.dftflow.study_dir": str(study_dir)} if handle.kind == "mongodb" else {}
        if queue is not None:
            ids = queue_launch(
                handle,
                study_dir,
                qadapter,
                nlaunches or 1,
                query,
                fworker_file=fworker,
                vasp_cmd=vasp_cmd,
            )
            console.print(f"submitted {len(ids)} job(s): {' '.join(ids) or '(nothing ready)'}")
            return
        again = f"`dftflow rerun -o {study_dir}` then launch again"
        try:
            n = run_local(handle, study_dir, query, max_fireworks=nlaunches, env=env)
        except WorkerStopped as exc:
            raise _stopped(exc.signum, study_dir, again) from None
        except KeyboardInterrupt:  # SIGINT before or after the worker loop
            raise _stopped(signal.SIGINT, study_dir, again) from None
        console.print(f"ran {n} Firework(s)")
        failed = study_status(handle, query)["failed"]
        if failed:
            raise StudyIncomplete(
                f"{_fizzled_line(failed)}; see `dftflow status -o {study_dir}` for why, then "
                f"`dftflow rerun -o {study_dir}`"
            )

    @app.command("status")
    def status_cmd(
        out: _DirOption = Path("."),
        launchpad: _LaunchpadOption = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Counts of Fireworks per state, and what failed and why (read-only)."""
        from dftflow.workflows.launchpad import open_launchpad
        from dftflow.workflows.status import study_status

        study_dir = out.absolute()
        handle = open_launchpad(study_dir, launchpad)
        query = {"spec.dftflow.study_dir": str(study_dir)} if handle.kind == "mongodb" else {}
        status = study_status(handle, query)
        if json_out:
            echo_json(status)
        else:
            _print_status(status, console)

    @app.command("rerun")
    def rerun_cmd(
        out: _DirOption = Path("."),
        launchpad: _LaunchpadOption = None,
        silent_hours: Annotated[
            float | None,
            typer.Option(
                "--silent-hours",
                min=0.0,
                help="Also rerun RUNNING Fireworks on other hosts silent for this long.",
            ),
        ] = None,
    ) -> None:
        """Put FIZZLED and lost Fireworks (and their children) back to READY.

        Lost: RUNNING on this host with its worker process gone, or (``--silent-hours``) not
        heard of for that long on any host (FireWorks pings every hour while running).
        """
        from dftflow.workflows.launchpad import open_launchpad
        from dftflow.workflows.submission import rerun_failed

        study_dir = out.absolute()
        handle = open_launchpad(study_dir, launchpad)
        query = {"spec.dftflow.study_dir": str(study_dir)} if handle.kind == "mongodb" else {}
        ids = rerun_failed(handle, query, silent_hours=silent_hours)
        console.print(f"{len(ids)} Firework(s) back to READY: {' '.join(map(str, ids))}")


def _fworker_env(path: Path | None) -> dict:
    if path is None:
        return {}
    if not path.is_file():
        raise InputError(f"FWorker file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    env = data.get("env", {}) if isinstance(data, dict) else None
    if not isinstance(env, dict):
        raise InputError(f"{path}: env must be a mapping")
    return env


def _cell_line(spec, vacuum_A: float, clearance_A: float) -> str:
    """One line on the study's shared cell: the vacuum, raised when the tallest ligand needs it."""
    raised = vacuum_A > spec.slab.vacuum_A + 1e-6
    how = f"raised from {spec.slab.vacuum_A:.1f} A " if raised else ""
    return (
        f"cell: vacuum {how}to {vacuum_A:.1f} A above the slab, so that the tallest ligand's top "
        f"keeps {clearance_A:.1f} A to the next slab image (slab.ligand_clearance_A)"
    )
