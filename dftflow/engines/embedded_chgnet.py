"""CHGNet relaxations through ASE for the embedded engine -> :class:`ElectronicResult`.

The model is loaded once per process (module cache). Fixed atoms (ASE ``FixAtoms``, i.e. VASP
selective dynamics) stay fixed; the bulk relaxes its cell too (``FrechetCellFilter``). Energies are
CHGNet's (a machine-learned potential fitted to PBE(+U) Materials Project data): they are used for
geometries and pre-screening only, never for the study's E_ads (those come from GPAW statics).
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms

from dftflow.engines.base import ElectronicResult
from dftflow.errors import EngineError

INSTALL_HINT = (
    'install it with `bash scripts/install.sh` or CC=g++ LDSHARED="g++ -shared" '
    'pip install "dftflow[embedded]"'
)

#: Largest atomic number CHGNet 0.3.0 was trained on (Materials Project elements up to Pu).
CHGNET_MAX_Z = 94

_MODEL_CACHE: dict[str, Any] = {}


def load_chgnet(model_name: str = "0.3.0"):  # -> chgnet.model.CHGNet
    """CHGNet model (weights from the wheel, CPU), loaded once per process."""
    if model_name in _MODEL_CACHE:
        return _MODEL_CACHE[model_name]
    try:
        from chgnet.model import CHGNet
    except ImportError as exc:
        raise EngineError(
            f"embedded engine needs CHGNet (and torch), which is not importable: {INSTALL_HINT}"
        ) from exc
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet v0.3.0 initialized with ..."
            model = CHGNet.load(model_name=model_name, use_device="cpu", verbose=False)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise EngineError(f"cannot load CHGNet model {model_name!r}: {exc}") from exc
    _MODEL_CACHE[model_name] = model
    return model


def chgnet_version() -> str:
    """Installed chgnet version, or '' when missing."""
    try:
        import chgnet
    except ImportError:
        return ""
    return str(getattr(chgnet, "__version__", ""))


def check_elements(atoms: Atoms) -> None:
    """Refuse atoms CHGNet was not trained on (one-line EngineError)."""
    bad = sorted({a.symbol for a in atoms if not 1 <= a.number <= CHGNET_MAX_Z})
    if bad:
        raise EngineError(
            f"CHGNet cannot handle element(s) {', '.join(bad)} (trained on Z = 1..{CHGNET_MAX_Z})"
        )


def max_free_force(atoms: Atoms, forces: np.ndarray) -> float:
    """Largest force norm (eV/Angstrom) on atoms not fixed by a FixAtoms constraint."""
    free = np.ones(len(atoms), dtype=bool)
    for c in atoms.constraints:
        idx = getattr(c, "index", None)
        if idx is not None and type(c).__name__ == "FixAtoms":
            free[np.asarray(idx, dtype=int)] = False
    if not free.any():
        return 0.0
    return float(np.linalg.norm(np.asarray(forces)[free], axis=1).max())


#: Optimizers the engine offers (``EmbeddedSettings.optimizer``); measured on the study's CHGNet
#: relaxations in benchmarks/bench_relax_optimizers_RESULTS.md.
OPTIMIZERS = ("FIRE", "BFGS", "LBFGS", "PreconLBFGS")


def make_optimizer(name: str, target: Any):  # -> ase.optimize.optimize.Optimizer
    """The ASE optimizer ``name`` (one of :data:`OPTIMIZERS`, ASE's defaults) on ``target``.

    ``PreconLBFGS`` is ``ase.optimize.precon.PreconLBFGS`` with the ``"Exp"`` preconditioner
    always: ASE's ``"auto"`` turns it off below 100 atoms, which would make it a plain LBFGS with
    a line search on the study's 60-atom complexes and molecules. It keeps FixAtoms constraints
    (the only constraint its preconditioner supports); cell relaxations use
    :func:`cell_optimizer` in its place. Its
    Armijo line search may evaluate forces more than once per step (the recorded ionic steps are
    the optimizer's iterations).
    """
    if name == "PreconLBFGS":
        from ase.optimize.precon import PreconLBFGS

        return PreconLBFGS(target, precon="Exp", logfile=None)
    from ase.optimize import BFGS, FIRE, LBFGS

    classes = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}
    if name not in classes:
        raise EngineError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return classes[name](target, logfile=None)


def cell_optimizer(name: str) -> str:
    """The optimizer a cell relaxation uses when ``name`` is asked for.

    ASE's PreconLBFGS tests convergence on the atoms' forces only when its target is a
    FrechetCellFilter: on cubic CsPbBr3 started at 5.874 A it stopped after one step with 17 kbar
    of stress left (FIRE and LBFGS reach 6.029 / 6.032 A, 0.08 eV lower). Cell relaxations
    therefore use LBFGS in its place (3 steps there); every other optimizer is used as asked.
    """
    return "LBFGS" if name == "PreconLBFGS" else name


@dataclass
class RelaxRun:
    """A finished CHGNet relaxation."""

    result: ElectronicResult
    n_steps: int
    wall_time_s: float
    fmax_eV_per_A: float


def run_chgnet_relax(
    atoms: Atoms, settings: Mapping[str, Any], *, relax_cell: bool = False
) -> RelaxRun:
    """Relax ``atoms`` with CHGNet to ``settings['fmax_eV_per_A']`` (at most ``max_relax_steps``).

    Parameters
    ----------
    atoms
        The starting structure with its constraints (FixAtoms = selective dynamics).
    settings
        Effective engine settings.
    relax_cell
        Relax the cell too (bulk), with ASE's FrechetCellFilter.

    Returns
    -------
    RelaxRun
        Every ionic step (structure, energy, forces) and the final structure.
    """
    from ase.filters import FrechetCellFilter

    check_elements(atoms)
    model = load_chgnet(settings["chgnet_model"])
    from chgnet.model import CHGNetCalculator

    if settings.get("torch_threads"):
        import torch

        torch.set_num_threads(int(settings["torch_threads"]))
    work = atoms.copy()
    with contextlib.redirect_stdout(io.StringIO()):  # its "CHGNet will run on cpu" per calculation
        work.calc = _calculator(CHGNetCalculator)(
            model=model, use_device="cpu", on_isolated_atoms="ignore"
        )
    target = FrechetCellFilter(work) if relax_cell else work
    fmax = float(settings["fmax_eV_per_A"])
    steps: list[dict[str, Any]] = []

    def record() -> None:
        snap = work.copy()
        snap.calc = None
        forces = np.array(work.get_forces())
        energy = float(work.get_potential_energy())
        step = {"structure": snap, "e_0_eV": energy, "free_energy_eV": energy}
        step["forces_eV_per_A"] = forces
        if relax_cell:
            step["stress_kbar"] = _stress_kbar(work)
        steps.append(step)

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = make_optimizer(
            cell_optimizer(str(settings["optimizer"]))
            if relax_cell
            else str(settings["optimizer"]),
            target,
        )
        opt.attach(record, interval=1)
        converged = bool(opt.run(fmax=fmax, steps=int(settings["max_relax_steps"])))
    wall = time.perf_counter() - t0
    if not steps:
        record()
    last = steps[-1]
    final = last["structure"]
    forces = last["forces_eV_per_A"]
    if not relax_cell:
        converged = max_free_force(final, forces) <= fmax
    result = ElectronicResult(
        atoms=final,
        energy_eV=last["e_0_eV"],
        free_energy_eV=last["free_energy_eV"],
        forces_eV_per_A=forces,
        ionic_steps=[{k: v for k, v in s.items() if k != "stress_kbar"} for s in steps],
        electronic_steps_per_ionic=[1] * len(steps),
        converged_electronic=True,
        converged_ionic=converged,
        stress_kbar=last.get("stress_kbar"),
        generator="dftflow-embedded (CHGNet)",
    )
    return RelaxRun(result=result, n_steps=len(steps), wall_time_s=wall, fmax_eV_per_A=fmax)


def _calculator(base: type) -> type:
    """CHGNet's ASE calculator, also answering ``free_energy`` (= its energy: no smearing).

    ASE's cell filters ask for the force-consistent (free) energy, which PreconLBFGS's line search
    and log read on a bulk cell relaxation; CHGNetCalculator does not name it.
    """

    class _CHGNetCalculator(base):  # type: ignore[misc, valid-type]
        implemented_properties = [*base.implemented_properties, "free_energy"]

        def calculate(self, *args: Any, **kwargs: Any) -> None:
            super().calculate(*args, **kwargs)
            if "energy" in self.results:
                self.results.setdefault("free_energy", self.results["energy"])

    return _CHGNetCalculator


def _stress_kbar(atoms: Atoms) -> np.ndarray:
    """3x3 stress in kbar, VASP sign (positive = compressive... as VASP prints it: -sigma)."""
    from ase.units import GPa

    sigma = atoms.get_stress(voigt=False)  # eV/A^3, ASE sign (tensile positive)
    return -np.asarray(sigma) / GPa * 10.0
