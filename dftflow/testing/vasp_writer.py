"""Write an :class:`~dftflow.engines.base.ElectronicResult` as the files a VASP run leaves behind.

Test equipment: used by the mock VASP executable (which stands in for VASP in tests, so it writes
what VASP writes) and by the synthetic runs of :mod:`dftflow.testing.synthetic_runs`. No production
engine writes VASP files it did not compute with VASP. Files: ``vasprun.xml`` (parameters incl.
NGXF/NGYF/NGZF, k-points and weights, ionic and electronic steps, eigenvalues and occupations,
total and l/m-projected DOS, projected eigenvalues),
``OUTCAR`` (the lines pymatgen's ``Outcar`` and custodian's handlers read), ``OSZICAR``, ``CONTCAR``
(selective dynamics kept), ``DOSCAR`` and, when a density is given, ``CHGCAR``; :func:`write_locpot`
writes a model ``LOCPOT`` (a plausible local potential, flat in the vacuum).

Conventions (VASP's): energies in eV, forces in eV/Angstrom, stress in kBar; for ISPIN = 1 each band
holds two electrons, so DOS and occupations carry a factor 2; ``e_0`` (energy sigma->0) equals
``(free_energy + energy_without_entropy) / 2`` for Gaussian smearing.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.io.vasp import Poscar

#: LORBIT = 11 orbital order (VASP 5.4.4+ names ``x2-y2``; older ``dx2``; pymatgen reads both).
from dftflow.electronic import LM_ORBITALS, broadened_dos
from dftflow.engines.base import ElectronicResult
from dftflow.inputs import params
from dftflow.io.chgcar import format_rows, write_chgcar
from dftflow.structures.convert import species_blocks, to_structure

VASP_VERSION = "6.4.2"
DEFAULT_ELECTRONIC_STEPS = 8


# -------------------------------------------------------------------------------------------------
# XML helpers
# -------------------------------------------------------------------------------------------------
def _xml_param(name: str, value: Any, indent: str = "  ") -> str:
    if isinstance(value, bool):
        return f'{indent}<i type="logical" name="{name}"> {"T" if value else "F"}  </i>\n'
    if isinstance(value, (int, np.integer)):
        return f'{indent}<i type="int" name="{name}">{int(value):8d}</i>\n'
    if isinstance(value, (float, np.floating)):
        return f'{indent}<i name="{name}">{float(value):16.8f}</i>\n'
    if isinstance(value, (list, tuple, np.ndarray)):
        vals = list(value)
        if vals and all(isinstance(v, bool) for v in vals):
            text = " ".join("T" if v else "F" for v in vals)
            return f'{indent}<v type="logical" name="{name}"> {text} </v>\n'
        if vals and all(isinstance(v, (int, np.integer)) for v in vals):
            return (
                f'{indent}<v type="int" name="{name}">'
                + "".join(f"{int(v):8d}" for v in vals)
                + " </v>\n"
            )
        return f'{indent}<v name="{name}">' + "".join(f"{float(v):16.8f}" for v in vals) + " </v>\n"
    return f'{indent}<i type="string" name="{name}">{escape(str(value))}</i>\n'


def _rows(arr: np.ndarray, tag: str, fmt: str, indent: str) -> str:
    """One ``<tag>`` line per row of a 2D array (formatted in one numpy call)."""
    arr = np.atleast_2d(np.asarray(arr, dtype=float))
    row_fmt = f"{indent}<{tag}>" + "".join(f" {fmt}" for _ in range(arr.shape[1])) + f" </{tag}>"
    return format_rows(arr, row_fmt)


def _varray(name: str, arr: np.ndarray, indent: str, fmt: str = "%16.8f") -> str:
    return (
        f'{indent}<varray name="{name}" >\n'
        + _rows(arr, "v", fmt, indent + " ")
        + f"{indent}</varray>\n"
    )


def _structure_xml(structure: Structure, name: str | None, indent: str = " ") -> str:
    attr = f' name="{name}"' if name else ""
    lat = structure.lattice
    s = f"{indent}<structure{attr} >\n{indent} <crystal>\n"
    s += _varray("basis", lat.matrix, indent + "  ")
    s += f'{indent}  <i name="volume">{lat.volume:20.8f} </i>\n'
    s += _varray("rec_basis", lat.reciprocal_lattice_crystallographic.matrix, indent + "  ")
    s += f"{indent} </crystal>\n"
    s += _varray("positions", structure.frac_coords, indent + " ")
    sd = structure.site_properties.get("selective_dynamics")
    if sd is not None:
        s += f'{indent} <varray type="logical" name="selective" >\n'
        for flags in sd:
            s += f"{indent}  <v>" + "".join(f" {'T' if f else 'F'} " for f in flags) + "</v>\n"
        s += f"{indent} </varray>\n"
    s += f"{indent}</structure>\n"
    return s


def _ionic_steps(result: ElectronicResult) -> list[dict[str, Any]]:
    if result.ionic_steps:
        return result.ionic_steps
    return [
        {
            "structure": result.atoms,
            "e_0_eV": result.energy_eV,
            "free_energy_eV": result.free_energy_eV,
            "forces_eV_per_A": np.asarray(result.forces_eV_per_A),
        }
    ]


def _electronic_energies(e_fr_eV: float, e_0_eV: float, n_steps: int, seed_energy: float) -> list:
    """Per-SCF-step (e_fr, e_wo, e_0), converging geometrically to the final values."""
    steps = []
    d0 = abs(seed_energy) * 0.05 + 1.0
    for j in range(n_steps):
        remaining = n_steps - 1 - j
        delta = d0 * (10.0 ** (-1.2 * j)) if remaining else 0.0
        e_fr = e_fr_eV + delta
        e_0 = e_0_eV + delta
        steps.append((e_fr, 2 * e_0 - e_fr, e_0))
    return steps


def _entropy_free(step: dict[str, Any]) -> tuple[float, float, float]:
    e0 = float(step["e_0_eV"])
    efr = float(step.get("free_energy_eV", e0))
    return efr, 2 * e0 - efr, e0


# -------------------------------------------------------------------------------------------------
# the writer
# -------------------------------------------------------------------------------------------------
def write_vasp_outputs(
    directory: str | Path,
    result: ElectronicResult,
    *,
    incar: dict[str, Any],
    kpoints: Sequence[int] | str | None = None,
    potcar_symbols: Sequence[str] | None = None,
    zvals: dict[str, float] | None = None,
    generator: str | None = None,
    fft_grid: Sequence[int] | None = None,
    kpoint_style: str = "Monkhorst-Pack",
    extra_volumetric: dict[str, np.ndarray] | None = None,
    elapsed_s: float | None = None,
) -> dict[str, Path]:
    """Write vasprun.xml, OUTCAR, OSZICAR, CONTCAR, DOSCAR (and CHGCAR) for ``result``.

    Parameters
    ----------
    directory
        Run directory (must exist).
    result
        The raw results; ``result.atoms`` is the final structure (with its constraints).
    incar
        The INCAR the run used (dict of VASP tags; values as in pymatgen ``Incar``).
    kpoints
        The Monkhorst-Pack/Gamma divisions (3 ints) or ``"explicit"``/None for an explicit list.
    potcar_symbols
        POTCAR symbol per species block in POSCAR order (e.g. ``["Cs_sv", "Pb_d", "Br"]``); defaults
        from :data:`dftflow.inputs.params.POTCAR_SYMBOLS`.
    zvals
        Valence electrons per element; defaults from :data:`dftflow.inputs.vasp.POTCAR_ZVAL`.
    generator
        Program name written in the vasprun.xml generator block (e.g. ``"dftflow-mock-vasp"``).
    fft_grid
        NGXF, NGYF, NGZF; defaults to the density's shape or the INCAR's NGXF/NGYF/NGZF.
    kpoint_style
        ``"Monkhorst-Pack"`` or ``"Gamma"``.
    extra_volumetric
        Additional volumetric files ``{name: density e/Angstrom^3}`` (e.g. AECCAR0, AECCAR2).
    elapsed_s
        Wall time written to OUTCAR's timing block.

    Returns
    -------
    dict
        file kind -> written path.
    """
    from dftflow.inputs.params import POTCAR_SYMBOLS
    from dftflow.inputs.vasp import POTCAR_ZVAL

    directory = Path(directory)
    incar = {str(k).upper(): v for k, v in dict(incar).items()}
    final = to_structure(result.atoms)
    symbols, counts = species_blocks(final)
    if potcar_symbols is None:
        potcar_symbols = [POTCAR_SYMBOLS.get(s, s) for s in symbols]
    potcar_symbols = list(potcar_symbols)
    if len(potcar_symbols) != len(symbols):
        raise ValueError(f"{len(potcar_symbols)} POTCAR symbols for {len(symbols)} species blocks")
    zval_table = {**{k: v for k, v in POTCAR_ZVAL.items()}, **(zvals or {})}
    zv = [
        float(zval_table.get(p, zval_table.get(s, 0.0)))
        for p, s in zip(potcar_symbols, symbols, strict=True)
    ]
    nelect = result.nelect
    if nelect is None:
        nelect = float(sum(z * c for z, c in zip(zv, counts, strict=True)))
    ispin = int(incar.get("ISPIN", 1))
    if result.eigenvalues_eV is not None:
        ispin = int(np.shape(result.eigenvalues_eV)[0])
    nelm = int(incar.get("NELM", 60))
    nsw = int(incar.get("NSW", 0))
    ibrion = int(incar.get("IBRION", -1 if nsw in (0, -1) else 0))
    sigma = float(incar.get("SIGMA", 0.2))
    nedos = int(incar.get("NEDOS", 301))
    if fft_grid is None:
        if result.density is not None:
            fft_grid = list(np.shape(result.density))
        elif all(k in incar for k in ("NGXF", "NGYF", "NGZF")):
            fft_grid = [int(incar["NGXF"]), int(incar["NGYF"]), int(incar["NGZF"])]
        else:
            from dftflow.inputs.vasp import fft_grid as _vasp_fft_grid

            enc = float(incar.get("ENCUT", params.ENCUT_EV))
            fft_grid = _vasp_fft_grid(final, enc, str(incar.get("PREC", "Accurate")))[1]
    fft_grid = [int(n) for n in fft_grid]
    coarse = [max(2, n // 2) for n in fft_grid]

    if result.kpoints is not None:
        kpts = np.asarray(result.kpoints, float).reshape(-1, 3)
        kw = np.asarray(
            result.kweights if result.kweights is not None else np.ones(len(kpts)), float
        )
    else:
        kpts = np.zeros((1, 3))
        kw = np.ones(1)
    kw = kw / kw.sum()
    eig = None if result.eigenvalues_eV is None else np.asarray(result.eigenvalues_eV, float)
    occ = None if result.occupations is None else np.asarray(result.occupations, float)
    nbands = int(eig.shape[2]) if eig is not None else int(incar.get("NBANDS", max(8, int(nelect))))
    efermi = result.efermi_eV
    if efermi is None and eig is not None and occ is not None:
        efermi = float(eig[occ > 0.5].max()) if (occ > 0.5).any() else float(eig.min())
    steps = _ionic_steps(result)
    # each step's Structure once, for vasprun.xml and OUTCAR (converting every step twice was a
    # tenth of a 200-step mock relaxation's time)
    step_structures = [to_structure(step["structure"]) for step in steps]
    n_elec = list(result.electronic_steps_per_ionic) or [DEFAULT_ELECTRONIC_STEPS] * len(steps)
    if len(n_elec) < len(steps):
        n_elec += [n_elec[-1]] * (len(steps) - len(n_elec))
    if not result.converged_electronic:
        n_elec[-1] = nelm
    n_elec = [max(1, min(int(n), nelm)) for n in n_elec]

    parameters = {
        "SYSTEM": incar.get("SYSTEM", final.composition.reduced_formula),
        "PREC": str(incar.get("PREC", "accurate")).lower(),
        "ENCUT": float(incar.get("ENCUT", params.ENCUT_EV)),
        "NELECT": float(nelect),
        "NBANDS": nbands,
        "ISPIN": ispin,
        "NELM": nelm,
        "NELMIN": int(incar.get("NELMIN", 2)),
        "EDIFF": float(incar.get("EDIFF", 1e-4)),
        "NSW": nsw,
        "IBRION": ibrion,
        "ISIF": int(incar.get("ISIF", 2)),
        "EDIFFG": float(incar.get("EDIFFG", float(incar.get("EDIFF", 1e-4)) * 10)),
        "POTIM": float(incar.get("POTIM", 0.5)),
        "ISMEAR": int(incar.get("ISMEAR", 1)),
        "SIGMA": sigma,
        "NEDOS": nedos,
        "LORBIT": int(incar.get("LORBIT", 0)),
        "GGA": str(incar.get("GGA", "--")),
        "LASPH": bool(incar.get("LASPH", False)),
        "LREAL": incar.get("LREAL", False),
        "ALGO": str(incar.get("ALGO", "Normal")),
        "LDIPOL": bool(incar.get("LDIPOL", False)),
        "IDIPOL": int(incar.get("IDIPOL", 0)),
        "LCHARG": bool(incar.get("LCHARG", True)),
        "LWAVE": bool(incar.get("LWAVE", True)),
        "LAECHG": bool(incar.get("LAECHG", False)),
        "NGX": coarse[0],
        "NGY": coarse[1],
        "NGZ": coarse[2],
        "NGXF": fft_grid[0],
        "NGYF": fft_grid[1],
        "NGZF": fft_grid[2],
    }
    if "DIPOL" in incar:
        parameters["DIPOL"] = [float(x) for x in incar["DIPOL"]]
    if isinstance(parameters["LREAL"], str):
        parameters["LREAL"] = parameters["LREAL"].upper().startswith(("A", "T", ".T"))
    prog = generator or result.generator or "dftflow"
    dos = None
    if eig is not None:
        dos = _dos_arrays(eig, kw, result.projections, nedos, sigma)
    paths: dict[str, Path] = {}

    # --- vasprun.xml ---------------------------------------------------------------------------
    x = io.StringIO()
    x.write('<?xml version="1.0" encoding="ISO-8859-1"?>\n<modeling>\n <generator>\n')
    x.write(_xml_param("program", prog, "  "))
    x.write(_xml_param("version", VASP_VERSION, "  "))
    x.write(_xml_param("subversion", "dftflow", "  "))
    x.write(_xml_param("platform", "LinuX", "  "))
    x.write(_xml_param("date", time.strftime("%Y %m %d"), "  "))
    x.write(_xml_param("time", time.strftime("%H:%M:%S"), "  "))
    x.write(" </generator>\n <incar>\n")
    for key, val in incar.items():
        x.write(_xml_param(key, val, "  "))
    x.write(" </incar>\n <kpoints>\n")
    if kpoints is not None and not isinstance(kpoints, str):
        style = "Gamma" if kpoint_style.lower().startswith("g") else "Monkhorst-Pack"
        div = [int(k) for k in kpoints]
        x.write(f'  <generation param="{style}">\n')
        x.write(_xml_param("divisions", div, "   "))
        x.write(_xml_param("usershift", [0.0, 0.0, 0.0], "   "))
        for i in range(3):
            vec = np.zeros(3)
            vec[i] = 1.0 / div[i]
            x.write(_xml_param(f"genvec{i + 1}", vec.tolist(), "   "))
        x.write(_xml_param("shift", [0.0, 0.0, 0.0], "   "))
        x.write("  </generation>\n")
    x.write(_varray("kpointlist", kpts, "  "))
    x.write(_varray("weights", kw[:, None], "  "))
    x.write(' </kpoints>\n <parameters>\n  <separator name="general" >\n')
    for key, val in parameters.items():
        x.write(_xml_param(key, val, "   "))
    x.write("  </separator>\n </parameters>\n <atominfo>\n")
    x.write(f"  <atoms>{len(final):8d} </atoms>\n  <types>{len(symbols):8d} </types>\n")
    x.write('  <array name="atoms" >\n   <dimension dim="1">ion</dimension>\n')
    x.write(
        '   <field type="string">element</field>\n   <field type="int">atomtype</field>\n   <set>\n'
    )
    t = 0
    for ti, c in enumerate(counts):
        for _ in range(c):
            x.write(f"    <rc><c>{symbols[ti]:2s}</c><c>{ti + 1:4d}</c></rc>\n")
            t += 1
    x.write("   </set>\n  </array>\n")
    x.write('  <array name="atomtypes" >\n   <dimension dim="1">type</dimension>\n')
    x.write('   <field type="int">atomspertype</field>\n   <field type="string">element</field>\n')
    x.write("   <field>mass</field>\n   <field>valence</field>\n")
    x.write('   <field type="string">pseudopotential</field>\n   <set>\n')
    for sym, c, p, z in zip(symbols, counts, potcar_symbols, zv, strict=True):
        mass = float(Element(sym).atomic_mass)
        x.write(
            f"    <rc><c>{c:4d}</c><c>{sym:2s}</c><c>{mass:16.8f}</c><c>{z:16.8f}</c>"
            f"<c>  PAW_PBE {p}</c></rc>\n"
        )
    x.write("   </set>\n  </array>\n </atominfo>\n")
    x.write(_structure_xml(step_structures[0], "initialpos"))
    for si, step in enumerate(steps):
        st = step_structures[si]
        efr, ewo, e0 = _entropy_free(step)
        x.write(" <calculation>\n")
        for e_fr, e_wo, e_0 in _electronic_energies(efr, e0, n_elec[si], e0):
            x.write("  <scstep>\n   <energy>\n")
            x.write(f'    <i name="e_fr_energy">{e_fr:18.8f} </i>\n')
            x.write(f'    <i name="e_wo_entrp">{e_wo:18.8f} </i>\n')
            x.write(f'    <i name="e_0_energy">{e_0:18.8f} </i>\n')
            x.write("   </energy>\n  </scstep>\n")
        x.write(_structure_xml(st, None, "  "))
        x.write(_varray("forces", np.asarray(step["forces_eV_per_A"], float).reshape(-1, 3), "  "))
        stress = step.get("stress_kbar", result.stress_kbar if si == len(steps) - 1 else None)
        x.write(_varray("stress", np.zeros((3, 3)) if stress is None else np.asarray(stress), "  "))
        x.write("  <energy>\n")
        x.write(f'   <i name="e_fr_energy">{efr:18.8f} </i>\n')
        x.write(f'   <i name="e_wo_entrp">{ewo:18.8f} </i>\n')
        x.write(f'   <i name="e_0_energy">{e0:18.8f} </i>\n')
        x.write("  </energy>\n")
        if si == len(steps) - 1 and eig is not None:
            x.write(_eigen_xml(eig, occ, "  "))
            x.write(_dos_xml(dos, efermi, "  "))
            if result.projections is not None:
                x.write(_projected_xml(eig, occ, result.projections, "  "))
        x.write(" </calculation>\n")
    x.write(_structure_xml(final, "finalpos"))
    x.write("</modeling>\n")
    paths["vasprun"] = _write(directory / "vasprun.xml", x.getvalue())

    # --- OSZICAR ---------------------------------------------------------------------------------
    o = io.StringIO()
    mag = _total_magnetization(occ, kw)
    for si, step in enumerate(steps):
        efr, _ewo, e0 = _entropy_free(step)
        o.write(
            "       N       E                     dE             d eps       ncg     rms  "
            "        rms(c)\n"
        )
        prev = 0.0
        for j, (e_fr, _w, _e0) in enumerate(_electronic_energies(efr, e0, n_elec[si], e0)):
            o.write(
                f"DAV: {j + 1:3d}    {e_fr: .12E}   {e_fr - prev: .5E}   {(e_fr - prev) * 0.1: .5E}"
                f"  {16 * nbands:5d}   {abs(e_fr - prev) ** 0.5 * 0.1 + 1e-4:.3E}\n"
            )
            prev = e_fr
        d_e = efr - _entropy_free(steps[si - 1])[0] if si else efr
        line = f"{si + 1:4d} F= {efr: .8E} E0= {e0: .8E}  d E ={d_e: .6E}"
        if ispin == 2:
            line += f"  mag= {mag:10.4f}"
        o.write(line + "\n")
    paths["oszicar"] = _write(directory / "OSZICAR", o.getvalue())

    # --- OUTCAR ----------------------------------------------------------------------------------
    paths["outcar"] = _write(
        directory / "OUTCAR",
        _outcar_text(
            incar=incar,
            parameters=parameters,
            steps=steps,
            step_structures=step_structures,
            symbols=symbols,
            counts=counts,
            potcar_symbols=potcar_symbols,
            zv=zv,
            nkpts=len(kpts),
            efermi=efermi,
            mag=mag,
            n_elec=n_elec,
            elapsed_s=elapsed_s,
        ),
    )

    # --- CONTCAR ---------------------------------------------------------------------------------
    paths["contcar"] = _write(
        directory / "CONTCAR", Poscar(final, comment=final.composition.reduced_formula).get_str()
    )

    # --- DOSCAR ----------------------------------------------------------------------------------
    if eig is not None:
        paths["doscar"] = _write(
            directory / "DOSCAR",
            _doscar_text(final, dos, efermi),
        )

    # --- volumetric ------------------------------------------------------------------------------
    vol = final.lattice.volume
    if result.density is not None:
        diff = None
        if result.magnetization_density is not None:
            diff = np.asarray(result.magnetization_density) * vol
        paths["chgcar"] = write_chgcar(
            directory / "CHGCAR", final, np.asarray(result.density) * vol, diff=diff
        )
    for name, density in (extra_volumetric or {}).items():
        paths[name.lower()] = write_chgcar(directory / name, final, np.asarray(density) * vol)
    return paths


#: Depth (eV) and width (Angstrom) of the Gaussian well each atom digs in the model potential.
LOCPOT_WELL_DEPTH_EV = 20.0
LOCPOT_WELL_WIDTH_A = 0.7


def model_local_potential(
    structure: Structure, grid: Sequence[int], vacuum_level_eV: float
) -> np.ndarray:
    """A model electrostatic potential (eV) on ``grid``: flat at ``vacuum_level_eV`` in vacuum.

    ``V(r) = V_vac - sum_atoms D exp(-|r - R|^2 / 2 w^2)`` over the atoms and their nearest
    periodic images (``D`` = :data:`LOCPOT_WELL_DEPTH_EV`, ``w`` = :data:`LOCPOT_WELL_WIDTH_A`):
    deep inside the slab, equal to the vacuum level (to < 1e-6 eV) farther than ~4 A from any
    atom. Not a physical potential: the shape a LOCPOT reader must handle (a plateau in the vacuum
    and wells at the nuclei).
    """
    lat = np.asarray(structure.lattice.matrix, dtype=float)
    axes = [np.arange(int(n)) / int(n) for n in grid]
    frac = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    wells = np.zeros(tuple(int(n) for n in grid))
    for site_frac in np.asarray(structure.frac_coords, dtype=float):
        d = frac - site_frac
        d -= np.round(d)  # nearest image (the cells here are near-orthogonal)
        r2 = np.sum((d @ lat) ** 2, axis=-1)
        wells += np.exp(-r2 / (2.0 * LOCPOT_WELL_WIDTH_A**2))
    return float(vacuum_level_eV) - LOCPOT_WELL_DEPTH_EV * wells


def write_locpot(
    path: str | Path, structure: Structure, grid: Sequence[int], vacuum_level_eV: float
) -> Path:
    """Write a LOCPOT (VASP's CHGCAR layout, values in eV, not times the volume).

    The potential is :func:`model_local_potential`; ``path`` is written atomically.
    """
    return write_chgcar(
        path,
        structure,
        model_local_potential(structure, grid, vacuum_level_eV),
        comment=f"{structure.composition.reduced_formula} LOCPOT",
    )


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def _total_magnetization(occ: np.ndarray | None, kweights: np.ndarray) -> float:
    """Total magnetic moment (mu_B) from spin-resolved occupations (0..1 per band and k-point)."""
    if occ is None or occ.shape[0] != 2:
        return 0.0
    per_k = (occ[0] - occ[1]).sum(axis=1)
    return float(np.dot(per_k, kweights))


def _eigen_xml(eig: np.ndarray, occ: np.ndarray | None, ind: str) -> str:
    nspin, nk, nb = eig.shape
    if occ is None:
        occ = np.zeros_like(eig)
    rows = _rows(
        np.stack([eig.reshape(-1), occ.reshape(-1)], axis=1), "r", "%12.4f", ind + "     "
    ).splitlines()
    parts = [
        f"{ind}<eigenvalues>\n{ind} <array>\n",
        f'{ind}  <dimension dim="1">band</dimension>\n{ind}  <dimension'
        f' dim="2">kpoint</dimension>\n',
        f'{ind}  <dimension dim="3">spin</dimension>\n{ind}  <field>eigene</field>\n',
        f"{ind}  <field>occ</field>\n{ind}  <set>\n",
    ]
    r = 0
    for sp in range(nspin):
        parts.append(f'{ind}   <set comment="spin {sp + 1}">\n')
        for k in range(nk):
            parts.append(f'{ind}    <set comment="kpoint {k + 1}">\n')
            parts.append("\n".join(rows[r : r + nb]) + "\n")
            r += nb
            parts.append(f"{ind}    </set>\n")
        parts.append(f"{ind}   </set>\n")
    parts.append(f"{ind}  </set>\n{ind} </array>\n{ind}</eigenvalues>\n")
    return "".join(parts)


def _dos_arrays(eig, kw, projections, nedos, sigma):
    energies, total, partial = broadened_dos(eig, kw, projections, sigma_eV=sigma, nedos=nedos)
    integrated = np.cumsum(total, axis=1) * (energies[1] - energies[0])
    return energies, total, integrated, partial


def _dos_xml(dos, efermi, ind: str) -> str:
    energies, total, integrated, partial = dos
    s = io.StringIO()
    s.write(f'{ind}<dos>\n{ind} <i name="efermi">{float(efermi or 0.0):16.8f} </i>\n')
    s.write(f"{ind} <total>\n{ind}  <array>\n")
    s.write(
        f'{ind}   <dimension dim="1">gridpoints</dimension>\n{ind}   <dimension'
        f' dim="2">spin</dimension>\n'
    )
    s.write(
        f"{ind}   <field>energy</field>\n{ind}   <field>total</field>\n{ind}  "
        f" <field>integrated</field>\n"
    )
    s.write(f"{ind}   <set>\n")
    for sp in range(total.shape[0]):
        s.write(f'{ind}    <set comment="spin {sp + 1}">\n')
        s.write(
            _rows(
                np.column_stack([energies, total[sp], integrated[sp]]), "r", "%12.4f", ind + "     "
            )
        )
        s.write(f"{ind}    </set>\n")
    s.write(f"{ind}   </set>\n{ind}  </array>\n{ind} </total>\n")
    if partial is not None:
        nat, norb = partial.shape[2], partial.shape[3]
        s.write(f"{ind} <partial>\n{ind}  <array>\n")
        s.write(f'{ind}   <dimension dim="1">gridpoints</dimension>\n')
        s.write(
            f'{ind}   <dimension dim="2">spin</dimension>\n{ind}   <dimension'
            f' dim="3">ion</dimension>\n'
        )
        s.write(f"{ind}   <field>energy</field>\n")
        for orb in LM_ORBITALS[:norb]:
            s.write(f"{ind}   <field>{orb:>5s}</field>\n")
        s.write(f"{ind}   <set>\n")
        for a in range(nat):
            s.write(f'{ind}    <set comment="ion {a + 1}">\n')
            for sp in range(partial.shape[0]):
                s.write(f'{ind}     <set comment="spin {sp + 1}">\n')
                s.write(
                    _rows(
                        np.column_stack([energies, partial[sp, :, a, :]]),
                        "r",
                        "%12.4f",
                        ind + "      ",
                    )
                )
                s.write(f"{ind}     </set>\n")
            s.write(f"{ind}    </set>\n")
        s.write(f"{ind}   </set>\n{ind}  </array>\n{ind} </partial>\n")
    s.write(f"{ind}</dos>\n")
    return s.getvalue()


def _projected_xml(eig, occ, projections, ind: str) -> str:
    proj = np.asarray(projections, float)
    nspin, nk, nb, nat, norb = proj.shape
    rows = _rows(proj.reshape(-1, norb), "r", "%7.4f", ind + "      ").splitlines()
    parts = [f"{ind}<projected>\n", _eigen_xml(eig, occ, ind + " "), f"{ind} <array>\n"]
    for i, dim in enumerate(("orbital", "ion", "band", "kpoint", "spin")):
        parts.append(f'{ind}  <dimension dim="{i + 1}">{dim}</dimension>\n')
    for orb in LM_ORBITALS[:norb]:
        parts.append(f"{ind}  <field>{orb:>5s}</field>\n")
    parts.append(f"{ind}  <set>\n")
    r = 0
    for sp in range(nspin):
        parts.append(f'{ind}   <set comment="spin{sp + 1}">\n')
        for k in range(nk):
            parts.append(f'{ind}    <set comment="kpoint {k + 1}">\n')
            for b in range(nb):
                parts.append(f'{ind}     <set comment="band {b + 1}">\n')
                parts.append("\n".join(rows[r : r + nat]) + "\n")
                r += nat
                parts.append(f"{ind}     </set>\n")
            parts.append(f"{ind}    </set>\n")
        parts.append(f"{ind}   </set>\n")
    parts.append(f"{ind}  </set>\n{ind} </array>\n{ind}</projected>\n")
    return "".join(parts)


def _doscar_text(structure, dos, efermi) -> str:
    energies, total, integrated, partial = dos
    nat = len(structure)
    lat = structure.lattice
    s = io.StringIO()
    s.write(f"{nat:4d}{nat:4d}{1 if partial is not None else 0:4d}{0:4d}\n")
    s.write(
        f"  {lat.volume / nat * 1e-30:.7E}  {lat.a * 1e-10:.7E}  {lat.b * 1e-10:.7E} "
        f" {lat.c * 1e-10:.7E}  0.5000000E-15\n"
    )
    s.write("  1.000000000000000E-004\n  CAR\n")
    s.write(f" {structure.composition.reduced_formula}\n")
    ef = float(efermi or 0.0)
    head = f"{energies[-1]:16.8f}{energies[0]:16.8f}{len(energies):8d}{ef:16.8f}{1.0:16.8f}\n"
    s.write(head)
    cols = (
        [energies]
        + [total[sp] for sp in range(total.shape[0])]
        + [integrated[sp] for sp in range(total.shape[0])]
    )
    s.write(format_rows(np.column_stack(cols), "%12.4f" + " %.4E" * (len(cols) - 1)))
    if partial is not None:
        for a in range(nat):
            s.write(head)
            blocks = [energies]
            for o in range(partial.shape[3]):
                for sp in range(partial.shape[0]):
                    blocks.append(partial[sp, :, a, o])
            s.write(format_rows(np.column_stack(blocks), "%12.4f" + " %.4E" * (len(blocks) - 1)))
    return s.getvalue()


def _outcar_text(
    *,
    incar,
    parameters,
    steps,
    step_structures,
    symbols,
    counts,
    potcar_symbols,
    zv,
    nkpts,
    efermi,
    mag,
    n_elec,
    elapsed_s,
) -> str:
    p = parameters
    nions = sum(counts)
    s = io.StringIO()
    s.write(f" vasp.{VASP_VERSION} (dftflow writer) complex\n")
    s.write(" executed on             LinuxIFC date " + time.strftime("%Y.%m.%d  %H:%M:%S") + "\n")
    s.write(" running on    1 total cores\n distrk:  each k-point on    1 cores,    1 groups\n\n")
    s.write(" INCAR:\n")
    for key, val in incar.items():
        s.write(f"   {key} = {val}\n")
    for psym in potcar_symbols:
        s.write(f"   POTCAR:    PAW_PBE {psym}\n")
    s.write("\n")
    for psym, z in zip(potcar_symbols, zv, strict=True):
        s.write(f"   TITEL  = PAW_PBE {psym}\n")
        s.write(f"   POMASS =    1.000; ZVAL   = {z:8.3f}    mass and valenz\n")
    s.write("\n ions per type =  " + "".join(f"{c:6d}" for c in counts) + "\n")
    ngx, ngy, ngz = p["NGX"], p["NGY"], p["NGZ"]
    s.write(f"   dimension x,y,z NGX = {ngx:5d} NGY ={ngy:5d} NGZ ={ngz:5d}\n")
    s.write(f"   dimension x,y,z NGXF= {p['NGXF']:5d} NGYF={p['NGYF']:5d} NGZF={p['NGZF']:5d}\n")
    s.write(
        f"   NKPTS = {nkpts:6d}   k-points in BZ     NKDIM = {nkpts:6d}   number of bands  "
        f"  NBANDS= {p['NBANDS']:6d}\n"
    )
    s.write(
        f"   number of dos      NEDOS = {p['NEDOS']:6d}   number of ions     NIONS = {nions:6d}\n"
    )
    s.write(f"   total plane-waves  NPLWV = {ngx * ngy * ngz:6d}\n\n")
    s.write(f"   PREC   = {p['PREC']}\n   ENCUT  = {p['ENCUT']:8.1f} eV\n")
    s.write(f"   ISPIN  = {p['ISPIN']:6d}    spin polarized calculation?\n")
    s.write(
        f"   NELM   = {p['NELM']:6d};   NELMIN= {p['NELMIN']:3d}; NELMDL=  -5     # of ELM steps\n"
    )
    s.write(f"   EDIFF  = {p['EDIFF']:.1E}   stopping-criterion for ELM\n")
    s.write(f"   EDIFFG = {p['EDIFFG']:.1E}   stopping-criterion for IOM\n")
    s.write(f"   NSW    = {p['NSW']:6d}    number of steps for IOM\n")
    s.write(f"   IBRION = {p['IBRION']:6d}    ionic relax: 0-MD 1-quasi-New 2-CG\n")
    s.write(f"   ISIF   = {p['ISIF']:6d}    stress and relaxation\n")
    s.write(f"   POTIM  = {p['POTIM']:8.4f}    time-step for ionic-motion\n")
    s.write(
        f"   ISMEAR = {p['ISMEAR']:6d};   SIGMA  = {p['SIGMA']:6.2f}  broadening in eV"
        f" -4-tet -1-fermi 0-gaus\n"
    )
    s.write(f"   NELECT = {p['NELECT']:12.4f}    total number of electrons\n")
    s.write(
        f"   LORBIT = {p['LORBIT']:6d}    0 simple, 1 ext, 2 COOP (PROOUT), +10 PAW based"
        f" schemes\n\n"
    )
    for si, step in enumerate(steps):
        st = step_structures[si]
        efr, ewo, e0 = _entropy_free(step)
        s.write(f"\n{'-' * 39} Iteration {si + 1:6d}({n_elec[si]:4d})  {'-' * 39}\n\n")
        s.write(
            f" E-fermi : {float(efermi or 0.0):10.4f}     XC(G=0):  -1.0000     alpha+bet :"
            f" -1.0000\n\n"
        )
        s.write(" POSITION                                       TOTAL-FORCE (eV/Angst)\n")
        s.write(" " + "-" * 83 + "\n")
        forces = np.asarray(step["forces_eV_per_A"], float).reshape(-1, 3)
        for pos, f in zip(st.cart_coords, forces, strict=True):
            s.write(
                f" {pos[0]:12.5f} {pos[1]:12.5f} {pos[2]:12.5f}   {f[0]:14.6f} {f[1]:13.6f}"
                f" {f[2]:13.6f}\n"
            )
        s.write(" " + "-" * 83 + "\n")
        drift = forces.sum(axis=0)
        s.write(
            f"    total drift:                         {drift[0]:14.6f} {drift[1]:13.6f}"
            f" {drift[2]:13.6f}\n\n"
        )
        s.write(
            "\n  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)\n "
            " ---------------------------------------------------\n"
        )
        s.write(f"  free  energy   TOTEN  = {efr:18.8f} eV\n\n")
        s.write(f"  energy  without entropy= {ewo:18.8f}  energy(sigma->0) = {e0:18.8f}\n\n")
    s.write(f"\n number of electron {parameters['NELECT']:15.7f} magnetization {mag:15.7f}\n")
    elapsed = float(elapsed_s if elapsed_s is not None else 1.0)
    s.write("\n\n General timing and accounting informations for this job:\n")
    s.write(" ========================================================\n\n")
    s.write(f"                  Total CPU time used (sec):   {elapsed:12.3f}\n")
    s.write(f"                            User time (sec):   {elapsed:12.3f}\n")
    s.write(f"                          System time (sec):   {0.0:12.3f}\n")
    s.write(f"                         Elapsed time (sec):   {elapsed:12.3f}\n\n")
    s.write(f"                   Maximum memory used (kb):   {100000.0:12.0f}.\n")
    s.write(f"                   Average memory used (kb):   {0.0:12.0f}.\n\n")
    s.write("                          Minor page faults:            0\n")
    s.write("                          Major page faults:            0\n")
    s.write("                 Voluntary context switches:            0\n")
    return s.getvalue()
