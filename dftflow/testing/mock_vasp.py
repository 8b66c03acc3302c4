"""``dftflow-mock-vasp``: a stand-in for ``vasp_std`` that runs real (cheap) physics in the cwd.

What it does, like VASP, in the current directory:

1. reads INCAR, KPOINTS, POSCAR and POTCAR (real or fake header-only) or POTCAR.spec;
2. **checks the inputs** against the paper's input set for the stage (from ``dftflow_inputs.json``
   written with the inputs, else inferred from INCAR/KPOINTS): every tag in
   :func:`dftflow.inputs.vasp.make_inputs` must have its value, except the tags custodian's handlers
   legitimately change (:data:`CUSTODIAN_MUTABLE`; EDIFF may only get tighter; the k-mesh may switch
   between Monkhorst-Pack and Gamma-centred); a violation prints a message on stderr and exits 1,
   like a crashed VASP;
3. energies and forces from :class:`~dftflow.testing.mock_vasp_physics.PairPotential`; when NSW > 0
a
   real relaxation (ASE BFGS; FrechetCellFilter for ISIF = 3) honouring selective dynamics, up to
   NSW
   steps, to max force <= -EDIFFG;
4. electronic structure from the tight-binding model on the k-points (time-reversal reduced),
   CHGCAR (and AECCAR0/AECCAR2 with LAECHG) on the NGXF grid from Mulliken-weighted atomic
   densities;
5. writes vasprun.xml, OUTCAR, OSZICAR, CONTCAR, DOSCAR (+ CHGCAR) with
   :func:`dftflow.testing.vasp_writer.write_vasp_outputs`, and with LVHAR or LVTOT a LOCPOT (the
   model potential of :func:`dftflow.testing.vasp_writer.write_locpot`: flat in the vacuum at
   E_F + :data:`MOCK_WORK_FUNCTION_EV`).

Failure injection (so custodian's handlers fire and correct): the environment variable
``DFTFLOW_MOCK_VASP_FAILURES`` or a file ``MOCK_VASP_FAILURES`` in the run directory maps attempt
numbers to failure kinds, e.g. ``"1:zbrent,2:subspacematrix"`` (the file may hold one ``N: kind``
per
line). The attempt number is counted in ``.mock_vasp_attempts`` in the run directory. Kinds
(:data:`FAILURES`): zbrent, subspacematrix, brmix, edddav, eddrmm, too_few_bands, nicht_konv,
real_optlay, kpoints_trans (stderr), positive_energy, potim, unconverged_electronic,
unconverged_ionic, nonconverging, frozen.
The crash kinds print VASP's own message text (the strings custodian's VaspErrorHandler and
StdErrHandler look for), leave partial OUTCAR/OSZICAR/CONTCAR and exit 1.

Duration: ``DFTFLOW_MOCK_VASP_SECONDS`` (default 0) makes every run take at least that long (it
sleeps after reading the inputs), so that a test can interrupt or kill a calculation mid-run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dftflow.inputs import params

ENV_FAILURES = "DFTFLOW_MOCK_VASP_FAILURES"
FAILURE_FILE = "MOCK_VASP_FAILURES"
ATTEMPT_FILE = ".mock_vasp_attempts"
ENV_FROZEN_S = "DFTFLOW_MOCK_VASP_FROZEN_S"
ENV_SECONDS = "DFTFLOW_MOCK_VASP_SECONDS"
GENERATOR = "dftflow-mock-vasp"
#: 1 eV/Angstrom^3 in kBar (VASP's stress unit; VASP's sign is opposite to ASE's).
EV_PER_A3_TO_KBAR = 1602.1766208

#: INCAR tags custodian's VASP handlers may set or unset; the mock does not check their values.
CUSTODIAN_MUTABLE = frozenset(
    {
        "ALGO",
        "ISYM",
        "SYMPREC",
        "POTIM",
        "ISEARCH",
        "IBRION",
        "AMIN",
        "NBANDS",
        "LREAL",
        "NCORE",
        "NPAR",
        "KPAR",
        "ICHARG",
        "BMIX",
        "AMIX",
        "IMIX",
        "AMIX_MAG",
        "BMIX_MAG",
        "ISTART",
        "NELMIN",
        "NELMDL",
        "SMASS",
        "IOPT",
        "TIME",
        "LPEAD",
        "KGAMMA",
        "ADDGRID",
        "MAGMOM",
        "SYSTEM",
    }
)
#: Tags checked with a rule instead of equality.
TIGHTER_ONLY = frozenset({"EDIFF"})

#: VASP's messages (the substrings custodian matches are kept verbatim).
FAILURES: dict[str, dict[str, Any]] = {
    "zbrent": {
        "stdout": " ZBRENT: fatal error in bracketing\n     please rerun with smaller EDIFF, or "
        "copy CONTCAR\n     to POSCAR and continue",
    },
    "subspacematrix": {
        "stdout": " WARNING: Sub-Space-Matrix is not hermitian in DAV            4  -0.1232E+00",
    },
    "brmix": {
        "stdout": " BRMIX: very serious problems\n the old and the new charge density differ",
    },
    "edddav": {"stdout": " Error EDDDAV: Call to ZHEGV failed. Returncode =   7 2  16"},
    "eddrmm": {"stdout": " WARNING in EDDRMM: call to ZHEGV failed, returncode =   6 3   31"},
    "too_few_bands": {
        "stdout": " TOO FEW BANDS !!! Please increase NBANDS",
    },
    # real-space projection failures (LREAL = Auto/True): VASP repeats the line per call
    "nicht_konv": {"stdout": "\n".join([" ERROR: SBESSELITER : nicht konvergent"] * 3)},
    "real_optlay": {
        "stdout": "\n".join([" REAL_OPTLAY: internal error (1)     2629200     2629632"] * 3),
    },
    "kpoints_trans": {
        "stderr": "internal error in GENERATE_KPOINTS_TRANS: number of G-vector changed in star",
    },
    "positive_energy": {"oszicar_energy": +1.0e3},
    "potim": {"oszicar_jump": True},
    "unconverged_electronic": {"complete": "electronic"},
    "unconverged_ionic": {"complete": "ionic"},
    "nonconverging": {"complete": "nonconverging"},
    "frozen": {"frozen": True},
}


class MockVaspRefusal(Exception):
    """Inputs that break the expected parameters (printed on stderr; exit code 1)."""


# -------------------------------------------------------------------------------------------------
# reading inputs
# -------------------------------------------------------------------------------------------------
def read_potcar_symbols(directory: Path) -> list[str]:
    """POTCAR symbols from POTCAR.spec (one per line) or a (fake) POTCAR's TITEL/first lines."""
    spec = directory / "POTCAR.spec"
    potcar = directory / "POTCAR"
    if potcar.is_file():
        symbols = []
        lines = potcar.read_text(errors="replace").splitlines()
        for line in lines:
            if "TITEL" in line and "=" in line:
                symbols.append(line.split("=", 1)[1].split()[1])
        if not symbols:
            for i, line in enumerate(lines):
                parts = line.split()
                if (
                    len(parts) >= 2
                    and parts[0].startswith("PAW")
                    and (i == 0 or "End of" in lines[i - 1])
                ):
                    symbols.append(parts[1])
        if symbols:
            return symbols
    if spec.is_file():
        return [s.strip() for s in spec.read_text().splitlines() if s.strip()]
    raise MockVaspRefusal("no POTCAR or POTCAR.spec in the run directory")


def failure_plan(directory: Path) -> dict[int, str]:
    """Attempt number -> failure kind, from the environment variable and/or the run-dir file."""
    plan: dict[int, str] = {}
    sources = [os.environ.get(ENV_FAILURES, "")]
    path = directory / FAILURE_FILE
    if path.is_file():
        sources.append(path.read_text())
    for text in sources:
        for item in text.replace("\n", ",").split(","):
            if not item.strip():
                continue
            if ":" not in item:
                raise MockVaspRefusal(f"bad failure spec {item.strip()!r}; use ATTEMPT:KIND")
            n, kind = (s.strip() for s in item.split(":", 1))
            if kind not in FAILURES:
                raise MockVaspRefusal(
                    f"unknown failure kind {kind!r}; one of {', '.join(FAILURES)}"
                )
            plan[int(n)] = kind
    return plan


def next_attempt(directory: Path) -> int:
    """Increment and return the attempt counter of this run directory."""
    path = directory / ATTEMPT_FILE
    n = int(path.read_text().strip() or 0) + 1 if path.is_file() else 1
    path.write_text(str(n))
    return n


def _infer_stage(incar: dict[str, Any], kpoints, structure) -> str:
    if int(incar.get("NSW", 0)) == 0:
        return "static"
    if int(incar.get("ISIF", 2)) == 3:
        return "bulk_relax"
    if list(kpoints.kpts[0]) == [1, 1, 1]:
        return "molecule_relax"
    organic = {"C", "H", "O", "N"} & {el.symbol for el in structure.composition.elements}
    return "complex_relax" if organic else "slab_relax"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a).strip().lower() == str(b).strip().lower()
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        a, b = list(np.ravel(a)), list(np.ravel(b))
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(np.isclose(float(a), float(b), rtol=1e-6, atol=1e-8))


def _neutral_electrons(structure, potcar_symbols: list[str]) -> float:
    """Valence electrons of the neutral cell (POTCAR ZVALs of the POTCAR.spec symbols)."""
    from dftflow.inputs.vasp import POTCAR_ZVAL
    from dftflow.structures.convert import species_blocks

    _, counts = species_blocks(structure)
    try:
        return float(sum(POTCAR_ZVAL[s] * n for s, n in zip(potcar_symbols, counts, strict=True)))
    except (KeyError, ValueError) as exc:
        raise MockVaspRefusal(f"no valence for POTCAR {exc}") from None


def check_inputs(directory: Path) -> dict[str, Any]:
    """Read the inputs and compare them with the stage's expected parameters.

    Returns
    -------
    dict
        incar, kpoints, structure, potcar_symbols, stage, system.

    Raises
    ------
    MockVaspRefusal
        Missing files or any parameter that breaks the expected set.
    """
    from pymatgen.io.vasp import Incar, Kpoints, Poscar

    from dftflow.inputs.vasp import INPUTS_RECORD, make_inputs

    for name in ("INCAR", "KPOINTS", "POSCAR"):
        if not (directory / name).is_file():
            raise MockVaspRefusal(f"no {name} in the run directory")
    try:
        incar = dict(Incar.from_file(directory / "INCAR"))
        kpoints = Kpoints.from_file(directory / "KPOINTS")
        poscar = Poscar.from_file(directory / "POSCAR")
    except Exception as exc:
        raise MockVaspRefusal(f"cannot read the inputs: {exc}") from exc
    structure = poscar.structure
    symbols = read_potcar_symbols(directory)
    record_path = directory / INPUTS_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    stage = record.get("stage") or _infer_stage(incar, kpoints, structure)
    overrides = dict(record.get("overrides") or {})
    if "system" in record and "system" not in overrides:
        overrides["system"] = record["system"]
    if incar.get("NELECT") is not None:  # a charged cell: NELECT says its net charge
        structure.properties["charge"] = _neutral_electrons(structure, symbols) - float(
            incar["NELECT"]
        )
    expected = make_inputs(structure, stage, overrides)
    problems = []
    for key, value in expected.incar.items():
        if key in CUSTODIAN_MUTABLE:
            continue
        if key not in incar:
            problems.append(f"INCAR lacks {key} (expected {value})")
        elif key in TIGHTER_ONLY:
            if float(incar[key]) > float(value) * (1 + 1e-9):
                problems.append(f"INCAR {key} = {incar[key]} is looser than {value}")
        elif key == "DIPOL":  # IDIPOL = 3: the z component is the one that matters
            dz = abs(float(np.ravel(incar[key])[2]) - float(value[2])) % 1.0
            if min(dz, 1.0 - dz) > 0.02:
                problems.append(f"INCAR DIPOL = {incar[key]} but the centre of mass is {value}")
        elif not _same(incar[key], value):
            problems.append(f"INCAR {key} = {incar[key]} but the {stage} stage expects {value}")
    for key in incar:
        if key not in expected.incar and key not in CUSTODIAN_MUTABLE:
            problems.append(
                f"INCAR sets {key} = {incar[key]}, which the {stage} stage does not use"
            )
    if list(kpoints.kpts[0]) != expected.kpoint_divisions:
        problems.append(
            f"KPOINTS mesh {list(kpoints.kpts[0])} but the {stage} stage expects "
            f"{expected.kpoint_divisions}"
        )
    if symbols != expected.potcar_symbols:
        problems.append(f"POTCAR {symbols} but expected {expected.potcar_symbols}")
    if problems:
        raise MockVaspRefusal("; ".join(problems))
    return {
        "incar": incar,
        "kpoints": kpoints,
        "structure": structure,
        "potcar_symbols": symbols,
        "stage": stage,
        "system": expected.system,
    }


# -------------------------------------------------------------------------------------------------
# k-points
# -------------------------------------------------------------------------------------------------
def kpoint_set(divisions, style: str) -> tuple[np.ndarray, np.ndarray]:
    """Reduced k-points and weights of a Monkhorst-Pack/Gamma mesh, time-reversal reduced."""
    n = np.array([int(d) for d in divisions])
    gamma = str(style).lower().startswith("g")
    grid = np.stack(np.meshgrid(*[np.arange(d) for d in n], indexing="ij"), -1).reshape(-1, 3)
    shift = np.zeros(3) if gamma else np.where(n % 2 == 0, 0.5, 0.0)
    k = (grid + shift) / n
    k = np.mod(k + 0.5, 1.0) - 0.5  # into (-0.5, 0.5]
    k[np.isclose(k, -0.5)] = 0.5
    kept: dict[tuple, int] = {}
    out, w = [], []
    for kv in k:
        key = tuple(np.round(kv, 8))
        mkey = tuple(np.round(np.mod(-kv + 0.5, 1.0) - 0.5, 8))
        mkey = tuple(0.5 if np.isclose(x, -0.5) else x for x in mkey)
        if key in kept:
            w[kept[key]] += 1
        elif mkey in kept:
            w[kept[mkey]] += 1
        else:
            kept[key] = len(out)
            out.append(kv)
            w.append(1)
    weights = np.array(w, float)
    return np.array(out), weights / weights.sum()


# -------------------------------------------------------------------------------------------------
# running
# -------------------------------------------------------------------------------------------------
def _atoms_with_constraints(structure):
    from dftflow.structures.convert import to_atoms

    atoms = to_atoms(structure)
    sd = structure.site_properties.get("selective_dynamics")
    if sd is not None:
        from ase.constraints import FixAtoms, FixCartesian

        fully = [i for i, f in enumerate(sd) if not any(f)]
        partial = [(i, f) for i, f in enumerate(sd) if any(f) and not all(f)]
        cons = [FixAtoms(indices=fully)] if fully else []
        cons += [FixCartesian(i, mask=[not x for x in f]) for i, f in partial]
        atoms.set_constraint(cons)
    return atoms


def relax(atoms, *, nsw: int, fmax: float, isif: int) -> list[dict[str, Any]]:
    """Relax with BFGS (cell too for ISIF = 3); one dict per ionic step."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    from dftflow.testing.mock_vasp_physics import PairPotential

    atoms.calc = PairPotential()
    steps: list[dict[str, Any]] = []

    def record() -> None:
        e = float(atoms.get_potential_energy())
        steps.append(
            {
                "structure": atoms.copy(),
                "e_0_eV": e,
                "free_energy_eV": e,
                "forces_eV_per_A": atoms.get_forces(),
                "stress_kbar": -atoms.get_stress(voigt=False) * EV_PER_A3_TO_KBAR,
            }
        )

    target = FrechetCellFilter(atoms) if isif == 3 else atoms
    opt = BFGS(target, logfile=None, maxstep=0.1)
    record()
    if nsw <= 1:
        return steps
    for _converged in opt.irun(fmax=fmax, steps=nsw - 1):
        if opt.nsteps > 0:  # irun yields once before the first step
            record()
    return steps[:nsw]


def _max_free_force(step, atoms) -> float:
    from dftflow.structures.convert import selective_dynamics

    f = np.asarray(step["forces_eV_per_A"])
    sd = selective_dynamics(atoms)
    if sd is not None:
        f = f * np.asarray(sd)
    return float(np.linalg.norm(f, axis=1).max()) if len(f) else 0.0


def run_mock(directory: Path, attempt: int, failure: str | None) -> int:
    """Do one mock VASP run in ``directory``; returns the process exit code."""
    from dftflow.engines.base import ElectronicResult
    from dftflow.inputs.vasp import POTCAR_ZVAL
    from dftflow.testing.mock_vasp_physics import atomic_density, tight_binding
    from dftflow.testing.vasp_writer import write_vasp_outputs

    t0 = time.time()
    inp = check_inputs(directory)
    incar = inp["incar"]
    structure = inp["structure"]
    out = sys.stdout
    out.write(f" running on    1 total cores\n vasp.6.4.2 mock ({GENERATOR}) attempt {attempt}\n")
    out.write(f" POSCAR found :  {len(structure)} atoms, stage {inp['stage']}\n")
    out.flush()
    time.sleep(float(os.environ.get(ENV_SECONDS) or 0))  # a long calculation, for tests
    spec = FAILURES.get(failure or "", {})
    atoms = _atoms_with_constraints(structure)
    zval = {**POTCAR_ZVAL}
    from dftflow.structures.convert import species_blocks

    _, counts = species_blocks(structure)
    nelect = float(
        incar.get("NELECT")
        or sum(zval[s] * c for s, c in zip(inp["potcar_symbols"], counts, strict=True))
    )
    if spec.get("frozen"):
        (directory / "CONTCAR").write_text((directory / "POSCAR").read_text())
        out.write(" entering main loop\n")
        out.flush()
        time.sleep(float(os.environ.get(ENV_FROZEN_S, "600")))
        return 0
    if "stdout" in spec or "stderr" in spec or "oszicar_energy" in spec or "oszicar_jump" in spec:
        _write_crash(directory, structure, incar, nelect, spec)
        if "stdout" in spec:
            out.write(spec["stdout"] + "\n")
        if "stderr" in spec:
            sys.stderr.write(spec["stderr"] + "\n")
        out.flush()
        return 1

    nsw = int(incar.get("NSW", 0))
    ibrion = int(incar.get("IBRION", -1 if nsw == 0 else 0))
    nelm = int(incar.get("NELM", 60))
    fmax = abs(float(incar.get("EDIFFG", -params.FMAX_EV_PER_A)))
    isif = int(incar.get("ISIF", 2))
    if spec.get("complete") == "ionic":  # run all NSW steps without reaching the force criterion
        steps = relax(atoms, nsw=nsw, fmax=0.0, isif=isif)
    elif spec.get("complete") == "nonconverging":  # >10 ionic steps, each hitting NELM
        steps = relax(atoms, nsw=min(nsw, 12), fmax=0.0, isif=isif)
    elif nsw > 0 and ibrion >= 0:
        steps = relax(atoms, nsw=nsw, fmax=fmax, isif=isif)
    else:
        steps = relax(atoms, nsw=1, fmax=fmax, isif=2)
    final_atoms = steps[-1]["structure"]
    final_atoms.set_constraint(atoms.constraints)
    for s in steps:
        s["structure"].set_constraint(atoms.constraints)
    n_elec = [12] + [6] * (len(steps) - 1)
    converged_electronic = True
    if spec.get("complete") == "electronic":
        n_elec[-1] = nelm
        converged_electronic = False
    if spec.get("complete") == "nonconverging":
        n_elec = [nelm] * len(steps)
        converged_electronic = False
    for i, n in enumerate(n_elec):
        out.write(f"DAV:  {n:3d} ionic step {i + 1}   F= {steps[i]['free_energy_eV']: .8E}\n")
    kdiv = list(inp["kpoints"].kpts[0])
    style = str(inp["kpoints"].style)
    kpts, kw = kpoint_set(kdiv, style)
    ispin = int(incar.get("ISPIN", 1))
    sigma = float(incar.get("SIGMA", params.SIGMA_EV))
    tb = tight_binding(final_atoms, kpts, kw, nelect, ispin=ispin, sigma_eV=sigma)
    density = None
    extra = {}
    aeccar2 = False
    grid = None
    if all(k in incar for k in ("NGXF", "NGYF", "NGZF")):
        grid = (int(incar["NGXF"]), int(incar["NGYF"]), int(incar["NGZF"]))
    if bool(incar.get("LCHARG", True)):
        if grid is None:
            from dftflow.inputs.vasp import fft_grid

            grid = tuple(fft_grid(structure, float(incar.get("ENCUT", params.ENCUT_EV)))[1])
        density = atomic_density(final_atoms, tb.populations, grid)
        if bool(incar.get("LAECHG", False)):
            aeccar2 = True  # the mock's valence density is the CHGCAR density: copied below
            extra["AECCAR0"] = _core_density(final_atoms, grid, inp["potcar_symbols"], counts)
    last = steps[-1]
    result = ElectronicResult(
        atoms=final_atoms,
        energy_eV=float(last["e_0_eV"]),
        free_energy_eV=float(last["free_energy_eV"]),
        forces_eV_per_A=np.asarray(last["forces_eV_per_A"]),
        efermi_eV=tb.efermi_eV,
        eigenvalues_eV=tb.eigenvalues_eV,
        occupations=tb.occupations,
        kpoints=kpts,
        kweights=kw,
        projections=tb.projections if int(incar.get("LORBIT", 0)) >= 10 else None,
        density=density,
        nelect=nelect,
        ionic_steps=steps,
        electronic_steps_per_ionic=n_elec,
        converged_electronic=converged_electronic,
        stress_kbar=last.get("stress_kbar"),
        generator=GENERATOR,
    )
    write_vasp_outputs(
        directory,
        result,
        incar=incar,
        kpoints=kdiv,
        potcar_symbols=inp["potcar_symbols"],
        generator=GENERATOR,
        fft_grid=grid,
        kpoint_style="Gamma" if style.lower().startswith("g") else "Monkhorst-Pack",
        extra_volumetric=extra,
        elapsed_s=time.time() - t0,
    )
    if aeccar2:
        import shutil

        shutil.copyfile(directory / "CHGCAR", directory / "AECCAR2")
    if bool(incar.get("LVHAR", False)) or bool(incar.get("LVTOT", False)):
        _write_mock_locpot(directory, final_atoms, incar, grid, tb.efermi_eV)
    if nsw > 0 and _max_free_force(last, final_atoms) <= fmax:
        out.write(" reached required accuracy - stopping structural energy minimisation\n")
    out.write(f" writing wavefunctions\n General timing: {time.time() - t0:.2f} s\n")
    return 0


#: Work function (eV) of the mock's LOCPOT: its vacuum plateau sits this far above E_F (a typical
#: value for a halide perovskite surface; not computed).
MOCK_WORK_FUNCTION_EV = 4.5


def _write_mock_locpot(directory: Path, atoms, incar, grid, efermi_eV: float) -> None:
    """Write LOCPOT (LVHAR/LVTOT) on the NGXF grid.

    The model potential of :func:`dftflow.testing.vasp_writer.write_locpot`, flat in the vacuum at
    E_F + :data:`MOCK_WORK_FUNCTION_EV`.
    """
    from dftflow.structures.convert import to_structure
    from dftflow.testing.vasp_writer import write_locpot

    structure = to_structure(atoms)
    if grid is None:
        from dftflow.inputs.vasp import fft_grid

        grid = tuple(fft_grid(structure, float(incar.get("ENCUT", params.ENCUT_EV)))[1])
    write_locpot(directory / "LOCPOT", structure, grid, float(efermi_eV) + MOCK_WORK_FUNCTION_EV)


def _core_density(atoms, grid, potcar_symbols, counts) -> np.ndarray:
    from dftflow.inputs.vasp import POTCAR_ZVAL
    from dftflow.testing.mock_vasp_physics import atomic_density

    core = []
    for sym, n in zip(potcar_symbols, counts, strict=True):
        z = atoms.numbers[len(core)]
        core += [max(float(z) - POTCAR_ZVAL.get(sym, 0.0), 0.0)] * n
    widths = {s: 0.35 for s in set(atoms.get_chemical_symbols())}
    return atomic_density(atoms, np.array(core), grid, widths)


def _write_crash(directory: Path, structure, incar, nelect: float, spec: dict[str, Any]) -> None:
    """Partial outputs of a crashed run: OUTCAR header, OSZICAR steps, CONTCAR = POSCAR."""
    nbands = int(incar.get("NBANDS", int(nelect / 2 + len(structure) / 2 + 1)))
    (directory / "OUTCAR").write_text(
        " vasp.6.4.2 mock (dftflow-mock-vasp)\n running on    1 total cores\n"
        f"   NKPTS =      1   k-points in BZ     NKDIM =      1   number of bands   "
        f" NBANDS= {nbands:6d}\n"
        f"   total plane-waves  NPLWV =  10000\n   NELECT = {nelect:12.4f}    total number"
        f" of electrons\n"
        f" number of electron {nelect:15.7f} magnetization       0.0000000\n"
    )
    (directory / "CONTCAR").write_text((directory / "POSCAR").read_text())
    energy = float(spec.get("oszicar_energy", -100.0))
    lines = [
        "       N       E                     dE             d eps       ncg     rms      "
        "    rms(c)"
    ]
    lines.append(f"DAV:   1     {energy: .12E}    {energy: .5E}   -0.10000E+01   100   0.100E+01")
    lines.append(f"   1 F= {energy: .8E} E0= {energy: .8E}  d E ={energy: .6E}")
    if spec.get("oszicar_jump"):
        jump = energy + 5.0 * len(structure)
        lines.append(lines[0])
        lines.append(f"DAV:   1     {jump: .12E}    {jump: .5E}   -0.10000E+01   100   0.100E+01")
        lines.append(f"   2 F= {jump: .8E} E0= {jump: .8E}  d E ={jump - energy: .6E}")
    (directory / "OSZICAR").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``dftflow-mock-vasp``); runs in the current directory."""
    if os.environ.get("OPENBLAS_NUM_THREADS") is None:
        # one BLAS thread: 10x faster eigensolvers for these small matrices on a shared machine
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        os.execve(sys.executable, [sys.executable, "-m", "dftflow.testing.mock_vasp"], env)
    directory = Path.cwd()
    try:
        plan = failure_plan(directory)
        attempt = next_attempt(directory)
        for name in ("OSZICAR", "OUTCAR", "vasprun.xml"):  # VASP truncates these at start-up
            (directory / name).unlink(missing_ok=True)
        code = run_mock(directory, attempt, plan.get(attempt))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group, like it reaches VASP
        sys.stderr.write("dftflow-mock-vasp: interrupted\n")
        return 130
    except MockVaspRefusal as exc:
        sys.stderr.write(f"dftflow-mock-vasp: refusing input: {exc}\n")
        sys.stdout.write(f" ERROR: dftflow-mock-vasp refused the input: {exc}\n")
        return 1
    except Exception as exc:  # a crash, like VASP's: message on stderr, non-zero exit
        sys.stderr.write(f"dftflow-mock-vasp: internal error: {type(exc).__name__}: {exc}\n")
        return 3
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
