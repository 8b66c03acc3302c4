# ruff: noqa: B008 - typer declares options as argument defaults
"""CLI command ``dftflow diagnose DIR [--json]``: VASP failures custodian's handlers detect.

Prints every failure the VASP engine's custodian handlers find in a run directory and the
correction custodian would apply (see :mod:`dftflow.engines.diagnose`); the directory is only
read. Exit code 0 when the diagnosis ran (with or without failures); a missing directory or one
that holds no VASP output prints one line and exits 2.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dftflow.cli.common import echo_json


def _correction_text(correction: list[dict] | None) -> str:
    from dftflow.engines.vasp import action_text

    if not correction:  # custodian treats None and [] alike: unrecoverable
        return "none: custodian would stop the run"
    return "; ".join(action_text(a) for a in correction)


def diagnose_cmd(
    directory: Path = typer.Argument(..., help="A VASP run directory (files plain or .gz)."),
    as_json: bool = typer.Option(False, "--json", help="Print the diagnosis as JSON."),
) -> None:
    """Name the VASP failures custodian's handlers detect in DIR and custodian's corrections.

    DIR is never changed: the handlers run on a temporary copy.
    """
    from rich.console import Console
    from rich.table import Table

    from dftflow.engines.diagnose import diagnose_vasp_run

    diagnosis = diagnose_vasp_run(directory)
    if as_json:
        echo_json(diagnosis.model_dump(mode="json"))
        return
    console = Console(soft_wrap=False)
    if not diagnosis.errors:
        console.print(
            f"no VASP failure found in {directory} by custodian's "
            f"{', '.join(diagnosis.checked) or 'handlers'}"
        )
    else:
        table = Table(title=f"VASP failures in {directory} (custodian's handlers)")
        table.add_column("failure")
        table.add_column("handler")
        table.add_column("found in")
        table.add_column("VASP says / what")
        table.add_column("custodian's correction")
        for err in diagnosis.errors:
            table.add_row(
                err.name,
                err.handler,
                err.file or "",
                err.message or "",
                _correction_text(err.correction),
            )
        console.print(table)
    for item in diagnosis.validation:
        console.print(f"[red]invalid output[/red] ({item['validator']}): {item['meaning']}")
    for handler, reason in diagnosis.not_checked.items():
        console.print(f"[dim]not checked: {handler} ({reason})[/dim]")
    if diagnosis.earlier_corrections:
        console.print(
            f"custodian already corrected this run {len(diagnosis.earlier_corrections)} time(s): "
            + ", ".join(f"{c.handler}({'/'.join(c.errors)})" for c in diagnosis.earlier_corrections)
        )
    if diagnosis.inputs_from_vasprun:
        console.print(
            f"[dim]{', '.join(diagnosis.inputs_from_vasprun)} taken from vasprun.xml "
            "(not in the directory)[/dim]"
        )


def register(app: typer.Typer) -> None:
    """Add ``diagnose`` to the ``dftflow`` app."""
    app.command("diagnose")(diagnose_cmd)
