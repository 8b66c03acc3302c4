# ruff: noqa: B008 - typer declares options as argument defaults
"""CLI commands: ``dftflow ligands`` and ``dftflow build slab|complex``.

Output formats follow the file name: ``POSCAR*``/``CONTCAR*``/``*.vasp`` (VASP 5, direct
coordinates, selective dynamics from the fixed atoms), ``*.cif``, ``*.extxyz``/``*.xyz`` (extended
XYZ). Files are written atomically (no partial file on error). User mistakes raise
:class:`~dftflow.errors.InputError`: one line, exit code 2.

Ligand atoms (the atoms the builder added, :mod:`dftflow.structures.ligand_atoms`) travel with the
structure: extended XYZ stores them as the per-atom column ``ligand``; POSCAR and CIF cannot, so
they go to a sidecar ``<file>.ligand.json`` (0-based indices, checked against the structure when it
is read back by ``dftflow calc``, ``inputs`` or ``build complex --slab``). ``--json`` prints them
as ``ligand_indices`` too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
from ase import Atoms

from dftflow.cli.common import atomic_output, check_writable, echo_json
from dftflow.errors import InputError
from dftflow.structures.geometry import DEFAULT_SLAB_VACUUM_A

build_app = typer.Typer(
    name="build",
    help="Build CsPbBr3 (001) slabs and slab + ligand complexes.",
    no_args_is_help=True,
)

_VASP_NAMES = ("POSCAR", "CONTCAR")


# ---------------------------------------------------------------------------------------------
# File formats
# ---------------------------------------------------------------------------------------------
def structure_format(path: str | Path) -> str:
    """ASE format name for ``path`` from its name: vasp, cif or extxyz."""
    path = Path(path)
    name, suffix = path.name, path.suffix.lower()
    if suffix == ".vasp" or any(name.upper().startswith(n) for n in _VASP_NAMES):
        return "vasp"
    if suffix == ".cif":
        return "cif"
    if suffix in (".extxyz", ".xyz"):
        return "extxyz"
    raise InputError(
        f"cannot tell the format of {path.name}: use POSCAR/CONTCAR, .vasp, .cif or .extxyz"
    )


def write_structure(atoms: Atoms, path: str | Path) -> Path:
    """Write ``atoms`` to ``path`` in the format given by its name, atomically.

    Marked ligand atoms go into the extended XYZ column ``ligand``, or for POSCAR/CIF into the
    sidecar ``<path>.ligand.json``; a sidecar left from an earlier structure at ``path`` is removed
    when ``atoms`` has no marks (it would label the wrong atoms).
    """
    from ase.io import write

    from dftflow.structures.ligand_atoms import sidecar_path, write_ligand_sidecar

    fmt = structure_format(path)
    out = atoms.copy()
    out.set_constraint([c.copy() for c in atoms.constraints])
    # only plain scalar metadata (extxyz cannot store nested objects)
    out.info = {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool))}
    with atomic_output(path) as tmp:
        if fmt == "vasp":
            write(tmp, out, format="vasp", direct=True, sort=False)
        else:
            write(tmp, out, format=fmt)
    if fmt != "extxyz" and write_ligand_sidecar(atoms, path) is None:
        sidecar_path(path).unlink(missing_ok=True)
    return Path(path)


def read_structure(path: str | Path) -> Atoms:
    """Read a structure file (format from its name); a one-line InputError if it cannot.

    Ligand marks come from the extended XYZ column ``ligand`` or the ``<path>.ligand.json`` sidecar.
    """
    from ase.io import read

    from dftflow.structures.ligand_atoms import with_ligand_sidecar

    path = Path(path)
    if not path.is_file():
        raise InputError(f"structure file not found: {path}")
    fmt = structure_format(path)
    try:
        atoms = read(path, format=fmt)
    except Exception as exc:  # any parser failure is a bad input file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read {path}: {msg}") from None
    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise InputError(f"cannot read {path}: no atoms")
    return with_ligand_sidecar(atoms, path)


def parse_supercell(text: str) -> tuple[int, int]:
    """``"2x2"`` -> (2, 2)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*", text or "")
    if not m:
        raise InputError(f"supercell must look like 2x2, got {text!r}")
    return int(m.group(1)), int(m.group(2))


# ---------------------------------------------------------------------------------------------
# dftflow ligands
# ---------------------------------------------------------------------------------------------
def _ligand_rows() -> list[dict[str, Any]]:
    from dftflow.structures.ligands import load_library

    return [
        {
            "name": s.name,
            "full_name": s.full_name,
            "formula": s.formula,
            "charge": s.charge,
            "anchor": s.anchor,
            "smiles": s.smiles,
            "aliases": list(s.aliases),
            "file": s.source,
        }
        for s in load_library().values()
    ]


def ligands_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the library as JSON."),
) -> None:
    """List the ligand library (package data, dftflow/data/ligands)."""
    rows = _ligand_rows()
    if as_json:
        echo_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Ligand library")
    for col in ("name", "full name", "formula", "charge", "anchor", "SMILES", "aliases"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["full_name"],
            r["formula"],
            f"{r['charge']:+d}" if r["charge"] else "0",
            r["anchor"],
            r["smiles"],
            ", ".join(r["aliases"]),
        )
    Console(width=160).print(table)


# ---------------------------------------------------------------------------------------------
# dftflow build slab
# ---------------------------------------------------------------------------------------------
@build_app.command("slab")
def slab_cmd(
    output: Path = typer.Option(..., "-o", "--output", help="POSCAR/.vasp, .cif or .extxyz."),
    layers: int = typer.Option(5, "--layers", help="Atomic planes, PbBr2 and CsBr together."),
    supercell: str = typer.Option("2x2", "--supercell", help="In-plane supercell, e.g. 2x2."),
    vacuum: float = typer.Option(DEFAULT_SLAB_VACUUM_A, "--vacuum", help="Vacuum gap, Angstrom."),
    termination: str = typer.Option("PbBr2", "--termination", help="PbBr2 or CsBr."),
    fix: str = typer.Option("bottom", "--fix", help="Fixed planes: bottom, center or none."),
    n_fixed_layers: int = typer.Option(None, "--n-fixed-layers", help="Number of fixed planes."),
    a: float = typer.Option(None, "--a", help="Lattice constant, Angstrom (default 5.874)."),
    defect: str = typer.Option(
        "none",
        "--defect",
        help="Vacancy on the top face: none, V_Br, V_PbBr2 or V_CsBr (site chosen by symmetry).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the slab summary as JSON."),
) -> None:
    """Build a CsPbBr3 (001) slab (optionally with a surface vacancy) and write it."""
    from dftflow.structures.defects import check_defect_request
    from dftflow.structures.slab import cspbbr3_001_slab, slab_summary

    structure_format(output)
    check_writable(output)
    check_defect_request(defect, termination, layers, parse_supercell(supercell), a_A=a)
    atoms = cspbbr3_001_slab(
        layers=layers,
        supercell=parse_supercell(supercell),
        vacuum=vacuum,
        termination=termination,
        a=a,
        fix=fix,
        n_fixed_layers=n_fixed_layers,
    )
    defect_summary = None
    if defect != "none":
        atoms, defect_summary = _with_defect(atoms, defect)
    write_structure(atoms, output)
    summary = slab_summary(atoms)
    if as_json:
        echo_json({"output": str(output), "summary": summary, "defect": defect_summary})
        return
    n_a, n_b = summary.supercell
    typer.echo(
        f"{summary.formula}: {summary.n_atoms} atoms, {n_a}x{n_b}, "
        f"{len(summary.layers)} planes, thickness {summary.thickness_A:.2f} A, "
        f"vacuum {summary.vacuum_A:.2f} A, {summary.n_fixed_atoms} fixed atoms -> {output}"
    )
    for layer in reversed(summary.layers):
        comp = " ".join(f"{el}{n}" for el, n in layer.composition.items())
        fixed = f"  ({layer.n_fixed} fixed)" if layer.n_fixed else ""
        typer.echo(f"  plane {layer.index}: z = {layer.z_A:7.3f} A  {layer.kind:6s} {comp}{fixed}")
    if defect_summary is not None:
        _echo_defect(defect_summary, output)


def _with_defect(atoms: Atoms, name: str):  # -> (Atoms, DefectSummary)
    """``atoms`` with defect ``name``, electrons counted with the POTCAR ZVALs the inputs use.

    From ``inputs.params`` (no pymatgen import: ``inputs.vasp`` would add ~1.2 s to the command).
    """
    from dftflow.inputs import params
    from dftflow.structures.defects import defect_slab

    POTCAR_ZVAL = params.POTCAR_ZVAL  # noqa: N806 - the table's name

    valence = {el: POTCAR_ZVAL[params.POTCAR_SYMBOLS[el]] for el in ("Cs", "Pb", "Br")}
    return defect_slab(atoms, name, valence=valence)


def _echo_defect(d: Any, output: Path) -> None:
    """The human-readable defect summary of ``build slab --defect``."""
    removed = ", ".join(
        f"{r.element}{r.pristine_index} (plane {r.plane}, "
        f"{' '.join(f'{x:.3f}' for x in r.position_A)} A)"
        for r in d.removed
    )
    cls = d.site_classes[d.chosen_class]
    others = len(d.site_classes) - 1
    typer.echo(f"defect {d.name}: {d.description}")
    typer.echo(f"  removed {d.removed_formula}: {removed} (indices of the pristine slab)")
    typer.echo(
        f"  site: first of {cls.size} symmetry-equivalent choices"
        + (f" ({others} other inequivalent class(es), recorded in --json)" if others else "")
        + f"; {d.symmetry_method}"
    )
    balance = "charge-balanced" if d.charge_balanced else f"{d.excess_electrons:+d} excess e"
    typer.echo(
        f"  {d.formula_pristine} -> {d.formula_defective}; formal charge removed "
        f"{d.formal_charge_removed:+d} e ({balance}); cell neutral"
    )
    spin = "odd: spin-polarised (ISPIN = 2) needed" if d.spin_polarized else "even"
    typer.echo(
        f"  valence electrons {d.valence_electrons_pristine:g} -> "
        f"{d.valence_electrons_defective:g} ({-d.valence_electrons_removed:+g}; "
        f"{d.valence_source}); change {spin}"
    )
    under = ", ".join(
        f"Pb{u.index} ({u.br_before} -> {u.br_after} Br)" for u in d.undercoordinated_pb
    )
    typer.echo(f"  under-coordinated Pb (indices of the written slab): {under or 'none'}")
    typer.echo(
        f"  defect-image distance {d.defect_image_distance_A:.2f} A "
        f"(minimum {d.min_defect_image_distance_A:.2f} A); record in {_defect_record(output)}"
    )


def _defect_record(output: Path) -> str:
    """Where the defect record of a written structure is stored."""
    return _record_location(
        output, "name and per-atom column 'undercoordinated'; whole record with --json"
    )


def _record_location(output: Path, extxyz_note: str) -> str:
    """Where per-atom records of a written structure go: its extxyz columns or the sidecar."""
    from dftflow.structures.ligand_atoms import sidecar_path

    if structure_format(output) == "extxyz":
        return f"{output} ({extxyz_note})"
    return str(sidecar_path(output))


# ---------------------------------------------------------------------------------------------
# dftflow build complex
# ---------------------------------------------------------------------------------------------
def _spec(ligand: str | None, smiles: str | None, name: str | None):
    from dftflow.structures.ligands import get_ligand, ligand_from_smiles

    if (ligand is None) == (smiles is None):
        raise InputError("give exactly one of --ligand NAME or --smiles SMILES")
    if ligand is not None:
        return get_ligand(ligand)
    return ligand_from_smiles(smiles, name=name)


@build_app.command("complex")
def complex_cmd(
    slab_path: Path = typer.Option(..., "--slab", help="Slab file (POSCAR/.vasp, .cif, .extxyz)."),
    output: Path = typer.Option(None, "-o", "--output", help="Complex file to write."),
    ligand: str = typer.Option(None, "--ligand", help="Library ligand name or alias."),
    smiles: str = typer.Option(None, "--smiles", help="A ligand not in the library."),
    name: str = typer.Option(None, "--name", help="Name of a --smiles ligand."),
    mode: str = typer.Option(
        None,
        "--mode",
        help="monodentate, bidentate_chelating, bidentate_bridging (replaces a Br), "
        "bidentate_bridging_over_br (keeps it), a_site; at a defect of a "
        "slab built with --defect: vacancy_site (anchor on the vacant Br site), exposed_pb.",
    ),
    form: str = typer.Option(
        "as_is", "--form", help="Ligand form: as_is, protonated, deprotonated, radical."
    ),
    dissociate: bool = typer.Option(
        False, "--dissociate", help="Move the acidic H onto a neighbouring surface Br."
    ),
    azimuth: float = typer.Option(None, "--azimuth", help="Only this azimuth, degrees."),
    index: int = typer.Option(0, "--placement", help="Index of the placement to build."),
    list_placements: bool = typer.Option(
        False, "--list-placements", help="Print the candidate placements and exit."
    ),
    min_distance: float = typer.Option(
        2.0, "--min-distance", help="Minimum ligand-slab and ligand-image distance, Angstrom."
    ),
    coverage: int = typer.Option(
        1, "--coverage", help="Number of ligands (same placement on far-apart Pb sites)."
    ),
    vacuum: float = typer.Option(
        None,
        "--vacuum",
        help="Vacuum to keep between the ligand's top and the next slab image, Angstrom "
        "(default: the slab's own vacuum); c is raised when the ligand leaves less.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Place a ligand on the slab's PbBr2 top face and write the complex.

    The ligand's top keeps the slab's vacuum (or ``--vacuum``) to the next slab image: when it
    would not, the cell's c is raised and the summary says by how much (build the bare slab and
    the molecule in the complex's cell for a charge-density difference).
    """
    from dftflow.structures.geometry import vacuum_width_A
    from dftflow.structures.ligand_atoms import ligand_indices_of
    from dftflow.structures.placement import (
        coverage_placements,
        enumerate_placements,
        place_ligand,
        place_ligands,
        raise_cell_for_vacuum,
        vacuum_above_ligand_A,
    )
    from dftflow.structures.slab import slab_summary

    if not list_placements:
        if output is None:
            raise InputError("missing -o/--output (or use --list-placements)")
        structure_format(output)
        check_writable(output)
    if vacuum is not None and not vacuum > 0:
        raise InputError(f"--vacuum must be positive (Angstrom), got {vacuum}")
    spec = _spec(ligand, smiles, name)
    slab = read_structure(slab_path)
    cands = enumerate_placements(
        slab,
        spec,
        modes=[mode] if mode else None,
        azimuths_deg=[azimuth] if azimuth is not None else None,
        form=form,
        dissociate=dissociate,
        min_slab_distance_A=min_distance,
        min_image_distance_A=min_distance,
    )
    if list_placements:
        if as_json:
            echo_json([c.model_dump(mode="json") for c in cands])
            return
        typer.echo(f"{len(cands)} symmetry-distinct placements of {spec.name}:")
        for c in cands:
            typer.echo(
                f"  [{c.index}] {c.label:40s} slab >= {c.min_slab_distance_A:.2f} A, "
                f"image >= {c.min_image_distance_A:.2f} A, x{c.n_equivalent}  {c.model}"
            )
        return
    if not 0 <= index < len(cands):
        raise InputError(f"--placement {index} out of range: {len(cands)} placements (0..)")
    chosen = cands[index]
    if coverage == 1:
        complex_ = place_ligand(slab, spec, chosen)
    else:
        sites = coverage_placements(slab, chosen, coverage)
        complex_ = place_ligands(slab, [(spec, p) for p in sites], min_distance_A=min_distance)
    keep_A = float(vacuum) if vacuum is not None else round(vacuum_width_A(slab, 2), 3)
    c_before = float(complex_.cell[2, 2])
    complex_, raised_A = raise_cell_for_vacuum(complex_, keep_A)
    vacuum_info = {
        "vacuum_above_ligand_A": round(vacuum_above_ligand_A(complex_), 3),
        "vacuum_kept_A": keep_A,
        "c_raised_A": raised_A,
        "c_A": round(float(complex_.cell[2, 2]), 4),
    }
    write_structure(complex_, output)
    summary = slab_summary(complex_)
    ligand_indices = ligand_indices_of(complex_)
    where = _ligand_record(output)
    if as_json:
        echo_json(
            {
                "output": str(output),
                "ligand": spec.name,
                "charge": chosen.charge,
                "placement": chosen.model_dump(mode="json"),
                "n_placements": len(cands),
                "coverage": coverage,
                "ligand_indices": ligand_indices,
                "ligand_indices_in": where,
                "vacuum": vacuum_info,
                "summary": summary,
            }
        )
        return
    typer.echo(
        f"{summary.formula}: {spec.name} {chosen.label} ({chosen.model}); slab "
        f"{summary.n_slab_atoms} + ligand {summary.n_adsorbate_atoms} atoms -> {output}"
    )
    typer.echo(f"  ligand atoms (0-based): {_ranges(ligand_indices)} -> {where}")
    if raised_A:
        whose = " (the slab's vacuum)" if vacuum is None else ""
        typer.echo(
            f"  cell c raised from {c_before:.2f} to {vacuum_info['c_A']:.2f} A so that the "
            f"ligand's top is {keep_A:.1f} A{whose} below the next slab image; "
            "compute the bare slab and the molecule in this cell (Δρ needs one cell)"
        )
    else:
        typer.echo(
            f"  vacuum between the ligand's top and the next slab image: "
            f"{vacuum_info['vacuum_above_ligand_A']:.1f} A (>= {keep_A:.1f} A)"
        )
    if complex_.info.get("charge"):
        from dftflow.schemas import CHARGED_CELL_NOTE

        q = float(complex_.info["charge"])
        typer.echo(
            f"  net charge {q:+g} e, recorded in {where.split(' ')[0]}: `dftflow inputs`/`calc` "
            f"set NELECT = neutral count {-q:+g}; {CHARGED_CELL_NOTE}"
        )


def _ligand_record(output: Path) -> str:
    """Where the ligand indices of a written structure are stored (column or sidecar)."""
    return _record_location(output, "per-atom column 'ligand'")


def _ranges(indices: list[int] | None) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    if not indices:
        return "none"
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


@build_app.command("molecule")
def molecule_cmd(
    output: Path = typer.Option(..., "-o", "--output", help="Molecule file to write."),
    ligand: str = typer.Option(None, "--ligand", help="Library ligand name or alias."),
    smiles: str = typer.Option(None, "--smiles", help="A ligand not in the library."),
    name: str = typer.Option(None, "--name", help="Name of a --smiles ligand."),
    form: str = typer.Option("as_is", "--form", help="as_is, protonated, deprotonated or radical."),
    cell_from: Path = typer.Option(
        None, "--cell-from", help="Put the molecule in this structure's cell (e.g. the slab)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Build the isolated ligand (RDKit, deterministic), standing along z, in a slab's cell."""
    import numpy as np

    from dftflow.structures.ligands import ligand_molecule
    from dftflow.structures.placement import molecule_in_cell

    structure_format(output)
    check_writable(output)
    spec = _spec(ligand, smiles, name)
    mol = ligand_molecule(spec, form)
    if cell_from is not None:
        cell = read_structure(cell_from).cell
    else:  # a cubic box with 10 Angstrom between periodic images
        cell = np.eye(3) * (float(np.ptp(mol.positions, axis=0).max()) + 10.0)
    atoms = molecule_in_cell(mol, cell)
    write_structure(atoms, output)
    info = {
        "output": str(output),
        "ligand": spec.name,
        "formula": atoms.get_chemical_formula("hill"),
        "form": form,
        "charge": atoms.info["charge"],
        "model": atoms.info["model"],
        "cell_A": [round(float(x), 4) for x in atoms.cell.lengths()],
    }
    if as_json:
        echo_json(info)
        return
    typer.echo(
        f"{info['formula']} ({spec.name}, {form}, charge {info['charge']:+d} e, {info['model']}) "
        f"in a {' x '.join(f'{x:.2f}' for x in info['cell_A'])} A cell -> {output}"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to app: ``ligands`` and ``build slab|complex``."""
    app.command("ligands")(ligands_cmd)
    app.add_typer(build_app, name="build")
