"""The ``dftflow`` command: one typer app.

Sub-commands live in modules of this package, each exposing ``register(app)``:
``build`` (structures), ``vasp`` (inputs, calc, parse), ``analyze`` (analysis and report),
``study`` (run, submit, launch, status, rerun). User mistakes raise
:class:`dftflow.errors.DftflowError`; :func:`main` prints them as one line and exits with code 2.

A command imports the dftflow layers it uses (structures, workflows, analysis ...) when it runs, not
when this package is imported: every command is registered at start-up, and importing all layers
would make ``dftflow --help`` or ``dftflow status`` take ~1.6 s instead of ~0.1 s (RDKit, pymatgen,
custodian, matplotlib).
"""

from __future__ import annotations

import sys

import typer

from dftflow import __version__
from dftflow.errors import DftflowError

app = typer.Typer(
    name="dftflow",
    help="DFT studies of ligands on CsPbBr3 (001) surfaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dftflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """DFT studies of ligands on CsPbBr3 (001) surfaces."""


def _register_all() -> None:
    from dftflow.cli import analyze, build, study, vasp

    for module in (build, vasp, analyze, study):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user mistakes into one line and exit code 2."""
    try:
        result = app(args=argv, standalone_mode=False)
    except DftflowError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        raise
    # With standalone_mode=False click returns the exit code of typer.Exit(code) instead of raising.
    return result if isinstance(result, int) else 0


def run() -> None:
    """Entry point used by ``python -m dftflow``."""
    sys.exit(main())
