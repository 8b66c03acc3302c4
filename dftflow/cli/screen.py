"""``dftflow screen``: rank new ligands by adsorption energy (issue 13).

``dftflow screen LIGANDS.yaml -o DIR`` or ``dftflow screen --smiles S --name N [...] -o DIR``
enumerates every sensible placement of each ligand, relaxes them with a committee of MLIPs,
labels them, sends the best few per ligand to DFT (the study's engine) and writes the ranked table
(``DIR/ranking.csv``, ``DIR/ranking.json``), its figures and ``DIR/screen_report.md``. It is a
FireWorks workflow like a study: ``--submit-only`` + ``dftflow launch --queue ...`` runs it on a
cluster and ``dftflow status`` follows it; running the same command again resumes.

Exit codes: 0 when every ligand that could be screened was; 2 when none could be (one line per
ligand says why) or on any other user mistake; 1 when a Firework failed; 130/143 when stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dftflow.cli.common import console, echo_json, screen_placements_line
from dftflow.errors import InputError


def _pairs(smiles: list[str], names: list[str]) -> list[tuple[str, str]]:
    if names and len(names) != len(smiles):
        raise InputError(
            f"--name given {len(names)} time(s) for {len(smiles)} --smiles: give one --name per "
            "--smiles, or none (then L1, L2 ...)"
        )
    names = names or [f"L{i + 1}" for i in range(len(smiles))]
    return list(zip(names, smiles, strict=True))


def _check_out_dir(out: Path) -> None:
    """Refuse an output directory that cannot be created, before any ligand is checked."""
    import os

    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out} exists and is not a directory")
        parent = out
    else:
        parent = out.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise InputError(
                f"cannot create the screen directory {out}: {parent} is not a directory"
            )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create the screen directory {out}: {parent} is not writable")


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "… (see screen_report.md)"


def print_ranking(table: dict[str, Any]) -> None:
    """The ranked table on the terminal (from ``ranking.json``)."""
    from rich.markup import escape
    from rich.table import Table

    title = f"{table['screen']} ({table['engine']} engine"
    title += ")" if table["physical"] else ": mock, not physical)"
    t = Table(title=title)
    for col in ("rank", "ligand", "mode", "E_ads MLIP (eV)", "E_ads DFT (eV)", "tried/kept/DFT"):
        t.add_column(col)
    t.add_column("flags / error")
    for r in table["rows"]:
        mlip = (
            f"{r['e_ads_mlip_mean_eV']:.3f} ± {r['e_ads_mlip_sigma_eV']:.3f}"
            if r["e_ads_mlip_mean_eV"] is not None and r["e_ads_mlip_sigma_eV"] is not None
            else "-"
        )
        dft = f"{r['e_ads_dft_eV']:.3f}" if r["e_ads_dft_eV"] is not None else "-"
        t.add_row(
            str(r["rank"] or "-"),
            escape(r["ligand"]),
            escape(r["best_binding_mode"] or "-"),
            mlip,
            dft,
            f"{r['n_tried']}/{r['n_kept']}/{r['n_escalated']}",
            escape(_short(r["error"]) if r["error"] else ", ".join(r["flags"])),
        )
    console.print(t)
    console.print(f"ranked by: {table.get('ranked_by', '-')}")
    for note in table.get("notes") or []:
        console.print(f"note: {escape(note)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``screen`` to ``app``."""

    @app.command("screen")
    def screen_cmd(
        ligands: Annotated[
            Path | None,
            typer.Argument(
                help="Screen YAML listing the candidate ligands (optional with --smiles)."
            ),
        ] = None,
        out: Annotated[
            Path, typer.Option("-o", "--out", help="Screen directory (created).")
        ] = Path("screen_out"),
        smiles: Annotated[
            list[str] | None, typer.Option("--smiles", help="A candidate's SMILES (repeat).")
        ] = None,
        name: Annotated[
            list[str] | None, typer.Option("--name", help="Its name (one per --smiles).")
        ] = None,
        top_k: Annotated[
            int | None, typer.Option("--top-k", min=1, max=10, help="DFT per ligand (default 2).")
        ] = None,
        engine: Annotated[
            str | None, typer.Option("--engine", help="DFT engine: embedded, vasp or mock.")
        ] = None,
        mlip_only: Annotated[
            bool, typer.Option("--mlip-only", help="Stop at the committee ranking (no DFT).")
        ] = False,
        workers: Annotated[
            int,
            typer.Option(
                "-j", "--workers", min=0, help="Worker processes (0: one per core, at most 4)."
            ),
        ] = 0,
        submit_only: Annotated[
            bool,
            typer.Option(
                "--submit-only",
                help="Only add the screen to the LaunchPad (then `dftflow launch --queue ...`).",
            ),
        ] = False,
        launchpad: Annotated[
            Path | None,
            typer.Option(
                "-l", "--launchpad", help="LaunchPad YAML (--submit-only; default embedded)."
            ),
        ] = None,
        vasp_cmd: Annotated[
            str | None, typer.Option("--vasp-cmd", help="How VASP is launched (engine vasp).")
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the ranked table as JSON at the end.")
        ] = False,
    ) -> None:
        """Screen ligands: placements -> MLIP committee -> DFT on the best -> ranked table."""
        from dftflow.cli.study import (
            _cell_line,
            _study_dir,
            _vasp_cmd_option,
            raise_if_incomplete,
            run_spec,
        )
        from dftflow.workflows.screen_spec import build_screen, read_screen_file

        if launchpad is not None and not submit_only:
            raise InputError("--launchpad is for --submit-only (a local screen uses DIR's own)")
        _check_out_dir(out)
        if engine is not None:
            from dftflow.engines import engine_entry

            engine = engine_entry(engine).name  # one line for an unknown engine
        file = read_screen_file(ligands) if ligands is not None else None
        settings: dict[str, Any] = {}
        if top_k is not None:
            settings["top_k"] = top_k
        if mlip_only:
            settings["mlip_only"] = True
        spec, rejected = build_screen(
            file,
            _pairs(list(smiles or []), list(name or [])),
            engine=engine,
            settings=settings,
            source=str(ligands) if ligands is not None else "screen",
        )
        from rich.markup import escape

        for line in rejected:  # SMILES hold brackets ([nH], [O-]): never read as markup
            console.print(f"[red]cannot screen[/red] {escape(line)}", soft_wrap=True)
        vasp_cmd = _vasp_cmd_option(vasp_cmd, spec.engine.name)
        study_dir = _study_dir(out)
        if submit_only:
            from dftflow.workflows.launchpad import open_launchpad
            from dftflow.workflows.submission import submit_study

            handle = open_launchpad(study_dir, launchpad, create=True)
            sub = submit_study(spec, study_dir, handle)
            verb = "submitted" if sub.new else "already submitted"
            msg = f"{verb}: {spec.key}, {len(sub.fw_ids)} Fireworks in {handle.kind} LaunchPad"
            if json_out:
                echo_json({"screen": spec.key, "new": sub.new, "fw_ids": sub.fw_ids})
            else:
                console.print(msg)
                if sub.vacuum_A is not None:
                    console.print(_cell_line(spec, *sub.vacuum_A))
                line = screen_placements_line(handle, spec)
                if line:
                    console.print(line, soft_wrap=True)
            return
        status = run_spec(spec, study_dir, workers, vasp_cmd)
        table_path = study_dir / "ranking.json"
        import json

        table = json.loads(table_path.read_text()) if table_path.is_file() else None
        if json_out:
            echo_json({"status": status, "table": table})
        elif table is not None:
            print_ranking(table)
            console.print(
                f"table: {study_dir / 'ranking.csv'}; report: {study_dir / 'screen_report.md'}"
            )
        raise_if_incomplete(status)
