"""The ``dftflow`` command: one typer app.

Sub-commands live in modules of this package, each exposing ``register(app)``:
``build`` (structures), ``vasp`` (inputs, calc, parse), ``analyze`` (analysis and report),
``study`` (run, submit, launch, status, rerun), ``diagnose`` (VASP failures, custodian's
corrections). User mistakes raise
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
    context_settings={"help_option_names": ["-h", "--help"]},
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
    from dftflow.cli import analyze, build, diagnose, screen, study, vasp

    for module in (build, vasp, analyze, study, screen, diagnose):
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
    except OSError as exc:
        # A path the command could not read or write (missing or read-only directory, a file
        # where a directory is needed ...): a user mistake, one line. Other OS errors (no
        # file name) are not the user's and keep their traceback.
        if exc.filename is None:
            raise
        typer.secho(f"error: {os_error_line(exc)}", err=True, fg=typer.colors.RED)
        return 2
    except Exception as exc:
        code = _click_error(exc)
        if code is None:
            raise
        return code
    # With standalone_mode=False click returns the exit code of typer.Exit(code) instead of raising.
    return result if isinstance(result, int) else 0


def os_error_line(exc: OSError) -> str:
    """One line for an OSError on a path: ``cannot access PATH: No such file or directory``."""
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"cannot access {where}: {exc.strerror or type(exc).__name__}"


def _click_exception_modules() -> list:
    """The ``exceptions`` modules of the clicks in use.

    typer's own copy (``typer._click``, typer >= 0.2x) and the click package (older typer;
    FireWorks and :mod:`dftflow.cli.study` raise its exceptions).
    """
    modules = []
    try:
        from typer._click import exceptions as typer_click_exceptions

        modules.append(typer_click_exceptions)
    except ImportError:  # older typer: the click package only
        pass
    try:
        from click import exceptions as click_exceptions

        modules.append(click_exceptions)
    except ImportError:
        pass
    return modules


def _click_error(exc: Exception) -> int | None:
    """Exit code for a click exception (one line on stderr for usage errors), None otherwise.

    ``dftflow`` or a group without a command prints its help (exit 0); a usage error (unknown
    option, missing option, a value of the wrong type) prints ``error: ...`` and the command's
    ``--help`` hint on one line and exits 2, never a traceback; another ``ClickException`` prints
    its one line and exits with its ``exit_code``.
    """
    for exceptions in _click_exception_modules():
        no_args = getattr(exceptions, "NoArgsIsHelpError", None)
        if no_args is not None and isinstance(exc, no_args):
            typer.echo(exc.ctx.get_help())
            return 0
        if isinstance(exc, exceptions.UsageError):
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            message = " ".join(exc.format_message().split())
            typer.secho(f"error: {message}{hint}", err=True, fg=typer.colors.RED)
            return 2
        if isinstance(exc, exceptions.ClickException):
            typer.secho(f"error: {' '.join(exc.format_message().split())}", err=True)
            return _declared_exit_code(exc, exceptions.ClickException)
        exit_type = getattr(exceptions, "Exit", None)
        if exit_type is not None and isinstance(exc, exit_type):
            return exc.exit_code
    return None


def _declared_exit_code(exc: Exception, base: type) -> int:
    """The exit code a ClickException subclass declares, else 2.

    A subclass may declare its own (1: some calculations failed); one that keeps click's default
    is a bad file or value, a user mistake: 2.
    """
    for cls in type(exc).__mro__:
        if cls is base:
            return 2
        if "exit_code" in vars(cls):
            return int(cls.exit_code)
    return 2


def run() -> None:
    """Entry point used by ``python -m dftflow``."""
    sys.exit(main())
