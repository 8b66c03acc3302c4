# ruff: noqa: B008 - typer declares options as argument defaults
"""CLI commands ``dftflow inputs``, ``dftflow calc`` and ``dftflow parse`` (VASP engine).

* ``dftflow inputs STRUCTURE --stage slab_relax -o DIR [--potcar-spec] [--set KEY=VALUE ...]``
  writes INCAR, KPOINTS, POSCAR and POTCAR (or POTCAR.spec) for one stage of the paper's protocol
  (``--locpot``: a static stage also writes LOCPOT, LVHAR = True);
* ``dftflow calc STRUCTURE --stage static [--engine NAME] -d DIR [--vasp-cmd CMD] [--force]
  [--json]`` runs one calculation (embedded by default; VASP and the mock under custodian) and
  stores ``DIR/taskdoc.json``; a DIR holding a finished run is refused unless ``--force``;
* ``dftflow parse DIR [--json]`` prints the TaskDoc of a finished directory.

Structures are read with ASE (POSCAR/CONTCAR with selective dynamics, CIF, extended XYZ, ...).
The ligand atoms a structure carries (extended XYZ column ``ligand`` or the ``<file>.ligand.json``
sidecar written by ``dftflow build``) are kept: ``inputs`` writes ``DIR/POSCAR.ligand.json`` and
``calc`` records them as ``ligand_indices`` in ``DIR/taskdoc.json`` (atom order is kept).
User mistakes (unreadable structure, unknown stage, unknown INCAR tag or a value of the wrong type,
a bulk stage on a slab, missing POTCAR directory or element, truncated/corrupt outputs, an output
directory that cannot be written) print one line and exit with code 2; ``inputs`` writes all its
files or none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dftflow.cli.common import echo_json
from dftflow.engines import DEFAULT_ENGINE, engine_names
from dftflow.errors import InputError

STAGE_HELP = "bulk_relax, slab_relax, molecule_relax, complex_relax or static"


def read_structure(path: str | Path):  # -> ase.Atoms
    """Read a structure file with ASE; one-line InputError when it cannot be read.

    Ligand marks come from the extended XYZ column ``ligand`` or the ``<path>.ligand.json`` sidecar.
    """
    from ase.io import read

    from dftflow.structures.ligand_atoms import with_ligand_sidecar

    path = Path(path)
    if not path.is_file():
        raise InputError(f"structure file {path} does not exist")
    try:
        atoms = read(str(path))
    except Exception as exc:  # ASE raises many types for unreadable files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read a structure from {path}: {msg}") from None
    if isinstance(atoms, list):
        atoms = atoms[-1]
    if len(atoms) == 0:
        raise InputError(f"{path} contains no atoms")
    if not atoms.cell.rank == 3:
        raise InputError(f"{path} has no 3D cell; VASP needs a periodic cell (put it in a box)")
    return with_ligand_sidecar(atoms, path)


def parse_settings(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings to an override dict (values converted as pymatgen's Incar does)."""
    from dftflow.inputs.vasp import parse_override_value, validate_overrides

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        if not key:
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        key = key if key in ("system",) else key.upper()
        out[key] = parse_override_value(key, value)
    return validate_overrides(out)


def _stage(stage: str):
    from dftflow.schemas import Stage

    try:
        return Stage(stage)
    except ValueError:
        raise InputError(f"unknown stage {stage!r}; choose one of {STAGE_HELP}") from None


def _get_engine(name: str, potcar_spec: bool, vasp_cmd: str | None = None):
    from dftflow.engines import engine_entry
    from dftflow.engines.vasp import resolve_vasp_cmd

    entry = engine_entry(name)
    config: dict[str, Any] = {}
    if potcar_spec:
        if "potcar_spec" not in entry.settings_model.model_fields:
            raise InputError(f"--potcar-spec has no meaning for the {entry.name} engine")
        config["potcar_spec"] = True
    if entry.launches_vasp:
        config["vasp_cmd"] = resolve_vasp_cmd(vasp_cmd).command
    elif vasp_cmd is not None:
        raise InputError(
            f"--vasp-cmd has no meaning for the {entry.name} engine (it is for --engine vasp)"
        )
    return entry.create(**config)


def finished_run(directory: Path) -> str | None:
    """What finished run ``directory`` holds (one phrase), or None.

    Finished: a ``taskdoc.json`` (any engine), or a complete ``vasprun.xml`` (a VASP run that
    reached its end, written by dftflow or not). A directory with only inputs, or with the
    truncated outputs of an interrupted run, holds nothing finished.
    """
    from dftflow.schemas import TASKDOC_FILE, TaskDoc

    doc_path = directory / TASKDOC_FILE
    if doc_path.is_file():
        try:
            doc = TaskDoc.from_json_file(doc_path)
        except (ValueError, OSError):
            return f"a {TASKDOC_FILE}"
        stage = doc.stage.value if doc.stage is not None else "run"
        return f"a finished {stage} of {doc.formula} ({doc.engine}, E0 = {doc.energy_eV:.4f} eV)"
    vasprun = directory / "vasprun.xml"
    if vasprun.is_file():
        with open(vasprun, "rb") as fh:
            fh.seek(max(0, vasprun.stat().st_size - 4096))
            if b"</modeling>" in fh.read():
                return "a finished VASP run (complete vasprun.xml)"
    return None


def refuse_finished_run(directory: Path, force: bool) -> None:
    """Refuse (one line) to write into a directory holding a finished run, unless ``force``.

    With ``force`` the replacement is announced on stderr. Resuming is not offered: a finished
    run has nothing left to compute (``dftflow parse DIR`` reads it), and an interrupted VASP run
    restarts from its inputs (its truncated outputs are removed first).
    """
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} exists and is not a directory")
    if not directory.is_dir():
        return
    what = finished_run(directory)
    if what is None:
        return
    if not force:
        raise InputError(
            f"{directory} holds {what}; nothing was changed: read it with `dftflow parse "
            f"{directory}`, choose another -d, or pass --force to replace it"
        )
    typer.echo(f"--force: replacing {what} in {directory}", err=True)


def inputs_cmd(
    structure: Path = typer.Argument(..., help="Structure file (POSCAR, CIF, extxyz, ...)."),
    stage: str = typer.Option(..., "--stage", "-s", help=STAGE_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write the inputs in."),
    potcar_spec: bool = typer.Option(
        False, "--potcar-spec", help="Write POTCAR.spec (symbols) instead of a licensed POTCAR."
    ),
    settings: list[str] = typer.Option(
        None, "--set", help="Override: KEY=VALUE (INCAR tag, KPOINTS='4 4 1'; VALUE none removes)."
    ),
    locpot: bool = typer.Option(
        False,
        "--locpot",
        help="Static stage: also write LOCPOT (LVHAR = True, LVTOT = False) for the work function.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Write into a directory holding a finished run (its inputs change)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the inputs as JSON."),
) -> None:
    """Write the VASP inputs of one stage of the paper's protocol.

    A directory holding a finished run is refused unless ``--force``: new inputs beside old
    outputs would misdescribe them.
    """
    from dftflow.inputs.vasp import with_locpot, write_inputs
    from dftflow.structures.ligand_atoms import sidecar_path, write_ligand_sidecar

    atoms = read_structure(structure)
    st = _stage(stage)
    overrides = parse_settings(settings)
    if locpot:
        overrides = with_locpot(st, overrides)
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} exists and is not a directory")
    refuse_finished_run(output, force)
    inputs = write_inputs(atoms, st, output, overrides=overrides, potcar_spec=potcar_spec)
    if write_ligand_sidecar(atoms, output / "POSCAR") is None:  # same atom order as POSCAR
        sidecar_path(output / "POSCAR").unlink(missing_ok=True)  # a stale one would mislabel
    data = {
        "directory": str(output),
        "stage": st.value,
        "system": inputs.system,
        "incar": inputs.incar,
        "kpoints": inputs.kpoint_divisions,
        "potcar_symbols": inputs.potcar_symbols,
        "overrides": inputs.overrides,
    }
    if as_json:
        echo_json(data)
    else:
        typer.echo(
            f"wrote {st.value} inputs for {inputs.poscar.structure.formula.replace(' ', '')} in "
            f"{output} "
            f"(k-mesh {'x'.join(map(str, inputs.kpoint_divisions))}, "
            f"{'POTCAR.spec' if potcar_spec else 'POTCAR'})"
        )


def calc_cmd(
    structure: Path = typer.Argument(..., help="Structure file."),
    stage: str = typer.Option(..., "--stage", "-s", help=STAGE_HELP),
    engine: str = typer.Option(
        DEFAULT_ENGINE, "--engine", "-e", help=f"One of {', '.join(engine_names())}."
    ),
    directory: Path = typer.Option(..., "--dir", "-d", help="Run directory."),
    settings: list[str] = typer.Option(None, "--set", help="Override: KEY=VALUE."),
    potcar_spec: bool = typer.Option(False, "--potcar-spec", help="POTCAR.spec for --engine vasp."),
    locpot: bool = typer.Option(
        False,
        "--locpot",
        help="Static stage: also write LOCPOT (LVHAR = True, LVTOT = False) for the work function.",
    ),
    vasp_cmd: str = typer.Option(
        None,
        "--vasp-cmd",
        help="How VASP is launched, e.g. 'mpirun -np 32 vasp_std' (--engine vasp; default: "
        "$DFTFLOW_VASP_CMD, else vasp_std).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace a finished run in DIR (refused without it)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the TaskDoc as JSON."),
) -> None:
    """Run one calculation (embedded by default; VASP/mock under custodian): DIR/taskdoc.json.

    The TaskDoc's ``ligand_indices`` are those the structure carries (every engine keeps the atom
    order); ``None`` when it carries none. A DIR holding a finished run (``taskdoc.json`` or a
    complete ``vasprun.xml``) is refused, nothing changed, unless ``--force`` (said on stderr).
    """
    from dftflow.inputs.vasp import check_stage_fits, with_locpot
    from dftflow.structures.ligand_atoms import ligand_indices_of

    atoms = read_structure(structure)
    st = _stage(stage)
    check_stage_fits(atoms, st)  # every engine: no bulk relaxation of a slab
    overrides = parse_settings(settings)
    if locpot:
        overrides = with_locpot(st, overrides)
    eng = _get_engine(engine, potcar_spec, vasp_cmd)
    refuse_finished_run(directory, force)
    directory.mkdir(parents=True, exist_ok=True)
    doc = eng.run(atoms, st, directory, overrides=overrides or None, label=structure.stem)
    doc = doc.with_ligand_indices(ligand_indices_of(atoms))
    doc.to_json_file(directory / "taskdoc.json")
    _print_doc(doc, as_json)


def parse_cmd(
    directory: Path = typer.Argument(..., help="A finished run directory (any engine)."),
    as_json: bool = typer.Option(False, "--json", help="Print the TaskDoc as JSON."),
) -> None:
    """Print the TaskDoc of a finished run (its taskdoc.json, or VASP files parsed on the fly)."""
    from dftflow.parse.run import load_taskdoc

    doc = load_taskdoc(directory)
    _print_doc(doc, as_json)


def _print_doc(doc, as_json: bool) -> None:
    from dftflow.parse.vasp import summary_dict

    if as_json:
        echo_json(summary_dict(doc))
        return
    status = "converged" if doc.converged_electronic and doc.converged_ionic else "NOT converged"
    force = "n/a" if doc.max_force_eV_per_A is None else f"{doc.max_force_eV_per_A:.4f}"
    efermi = "n/a" if doc.efermi_eV is None else f"{doc.efermi_eV:.4f}"
    from dftflow.schemas import NOT_PHYSICAL_LABEL

    typer.echo(
        ("" if doc.physical else f"{NOT_PHYSICAL_LABEL}: ")
        + f"{doc.formula} ({doc.charge_state}): E0 = {doc.energy_eV:.6f} eV, "
        f"{doc.n_ionic_steps} ionic step(s), "
        f"max force {force} eV/A, E_F {efermi} eV, {status}"
        + (f", {len(doc.corrections)} custodian correction(s)" if doc.corrections else "")
    )


def register(app: typer.Typer) -> None:
    """Add ``inputs``, ``calc`` and ``parse`` to the ``dftflow`` app."""
    app.command("inputs")(inputs_cmd)
    app.command("calc")(calc_cmd)
    app.command("parse")(parse_cmd)
