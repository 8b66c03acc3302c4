"""The screen's committee of machine-learned potentials: load, check, relax, single point, spread.

Members (:data:`COMMITTEE`): CHGNet 0.3.0 (``chgnet``, the embedded engine's model, loaded through
:func:`dftflow.engines.embedded_chgnet.load_chgnet`) and SevenNet-0 (``sevennet``, the ``7net-0``
checkpoint of the ``sevenn`` wheel). Both ship their weights inside their wheels and run offline on
the CPU; each process loads each model once (:func:`load_calculator` caches it) and runs torch on
one thread (one worker per core). Their console chatter (CHGNet's "will run on cpu", SevenNet's
missing tensor-product accelerator, torch's user warnings) is kept off the terminal.

Relaxations keep the slab's fixed atoms (ASE ``FixAtoms``) and the cell. The screen relaxes every
placement with the primary model (:data:`LOOSE_FMAX_EV_PER_A`, :data:`LOOSE_MAX_STEPS`) and the
best ones with the other members from that geometry (:data:`FINE_FMAX_EV_PER_A`,
:data:`FINE_MAX_STEPS`); the optimizer and the limits were chosen by measurement (the comment above
:data:`DEFAULT_OPTIMIZER`; ``benchmarks/bench_screen_throughput_RESULTS.md``): a loose force limit
was measured not to rank placements, so both stages go to 0.02 eV/A. Energies are the models'
total energies in eV: only differences between the same model's numbers mean anything.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ase import Atoms

from dftflow.engines.embedded_chgnet import (
    CHGNET_MAX_Z,
    INSTALL_HINT,
    OPTIMIZERS,
    load_chgnet,
    make_optimizer,
    max_free_force,
)
from dftflow.errors import EngineError

#: Default committee members, primary model first (the loose relaxation of every placement).
COMMITTEE = ("chgnet", "sevennet")
#: Every model :func:`load_calculator` knows, with the name reports give it.
MODELS = {"chgnet": "CHGNet 0.3.0", "sevennet": "SevenNet-0 (7net-0)"}
#: CHGNet checkpoint of the committee (the embedded engine's default).
CHGNET_MODEL = "0.3.0"
#: SevenNet checkpoint shipped in the ``sevenn`` 0.13 wheel.
SEVENNET_MODEL = "7net-0"

# Defaults measured in benchmarks/bench_screen_throughput_RESULTS.md (2026-11-30; CHGNet and
# SevenNet-0 on 8 acetic-acid/acetate and 4 OA placements on the relaxed 2x2 slab, 2 workers):
#
# * PreconLBFGS (Exp) needs the fewest steps and CPU s with CHGNet at every force limit: to
#   0.05 eV/A median 49 / 33 steps (AcOH / OA complexes) vs LBFGS 60.5 / 101 (one AcOH placement
#   capped at 300 with 0.33 eV/A left) and FIRE 117.5 / 80.5, and it ends lowest in energy.
# * A loose force limit does not rank placements: the largest force first drops below 0.05 eV/A
#   (0.1) while the energy is still 2-324 meV (8-381) above the 0.02 minimum of the same run for
#   the acid, 410-1499 meV (465-1942) for OA (molecules tilting, chains settling on a flat energy
#   surface); the lowest OA placement at 0.05 is not the lowest at 0.02. Stopping only once the
#   energy also settled (<= 10 meV over 20 steps) costs as much as converging to 0.02. So every
#   placement is relaxed to 0.02 eV/A with the primary model ("loose" = "fine" for it):
#   median 85 / 192.5 steps, max 202 / 386; 3.9 / 46.9 CPU s per placement, i.e. 30.6 / 2.6
#   placements per minute on 2 idle cores (the OA median misses the 150 steps).
#   A restart from a 0.05 geometry needs 22.5 / 158 more steps: two stages save nothing.
# * SevenNet-0 from CHGNet's 0.02 geometry to 0.02: median 21 / 29.5 steps (max 146 / 63),
#   4.9 / 11.0 CPU s.
#: Optimizer of every committee relaxation.
DEFAULT_OPTIMIZER = "PreconLBFGS"
#: First stage (every placement, primary model): force limit (eV/A) and optimizer-step cap
#: (cap above the 386 steps of the slowest OA placement measured).
LOOSE_FMAX_EV_PER_A = 0.02
LOOSE_MAX_STEPS = 500
#: Second stage (the other members, from the primary model's geometry): limit and cap.
FINE_FMAX_EV_PER_A = 0.02
FINE_MAX_STEPS = 300

_CALCULATORS: dict[str, Any] = {}


def _check_model(model: str) -> None:
    if model not in MODELS and not is_factory(model):
        raise EngineError(
            f"unknown committee model {model!r}; choose from {', '.join(MODELS)} or name a "
            "factory as 'package.module:function' (returns an ASE calculator)"
        )


def is_factory(model: str) -> bool:
    """Whether ``model`` names a calculator factory, ``package.module:function``.

    The extension point for other potentials a user has installed (and the test equipment's
    cheap pair potentials); such a member is trusted with every element.
    """
    module, _, func = model.partition(":")
    return bool(module and func and all(p.isidentifier() for p in (*module.split("."), func)))


def _from_factory(model: str):  # -> ase.calculators.Calculator
    """The calculator ``package.module:function()`` returns, counting its evaluations."""
    import importlib

    module, _, func = model.partition(":")
    try:
        factory = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise EngineError(f"cannot load committee member {model!r}: {exc}") from None
    calc = factory()
    calculate = calc.calculate

    def counted(*args: Any, **kwargs: Any) -> None:
        calc.n_calls += 1
        _check_budget(calc)
        calculate(*args, **kwargs)

    calc.n_calls = 0
    calc.calculate = counted
    return calc


#: Loggers that write to the terminal during relaxations: ASE's Armijo line search logs
#: "Passed direction which is not downhill" at ERROR level whenever PreconLBFGS resets its Hessian
#: (a normal event it recovers from; a failure after the reset raises and is handled by relax).
_NOISY_LOGGERS = ("ase.utils.linesearcharmijo",)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No prints, warnings or log lines from the models and optimizers (errors are raised)."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    disabled = [lg.disabled for lg in loggers]
    try:
        for lg in loggers:
            lg.disabled = True
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, was in zip(loggers, disabled, strict=True):
            lg.disabled = was


def _counting(base: type, **fixed_kwargs: Any) -> type:
    """``base`` (an ASE calculator class) counting its model evaluations in ``n_calls``.

    For CHGNet (``fixed_kwargs`` = ``task``) it also answers ``free_energy`` (its energy, as the
    embedded engine's calculator does) and skips the stress and magnetic moments unless asked for:
    the screen's relaxations keep the cell, and the stress costs about a third of a CHGNet call on
    the 60-atom complex (0.065 vs 0.040 CPU s per call, measured with the benchmark's setup).
    """

    class _Counting(base):  # type: ignore[misc, valid-type]
        implemented_properties = list(dict.fromkeys([*base.implemented_properties, "free_energy"]))
        n_calls = 0

        def calculate(self, atoms=None, properties=None, system_changes=None, **kw: Any) -> None:
            self.n_calls += 1
            _check_budget(self)
            if fixed_kwargs and "stress" not in (properties or ["stress"]):
                kw = {**fixed_kwargs, **kw}
            super().calculate(atoms, properties, system_changes, **kw)
            if "energy" in self.results:
                self.results.setdefault("free_energy", self.results["energy"])

    _Counting.__name__ = f"Counting{base.__name__}"
    return _Counting


#: A relaxation may evaluate its model at most this many times per allowed optimizer step.
#: Normal runs need about steps + 3 (benchmarks/bench_screen_throughput_RESULTS.md), but
#: PreconLBFGS's line search on SevenNet-0's float32 energies was seen backtracking for over half
#: an hour on one placement (methanesulfonic acid): the budget ends such a run as a step cap.
FORCE_CALLS_PER_STEP = 2


class _CallBudgetExceeded(Exception):
    """The relaxation used up its model evaluations (see :data:`FORCE_CALLS_PER_STEP`)."""


def _check_budget(calc: Any) -> None:
    budget = getattr(calc, "call_budget", None)
    if budget is not None and calc.n_calls > budget:
        raise _CallBudgetExceeded


@contextlib.contextmanager
def _budget(calc: Any, limit: int) -> Iterator[None]:
    """Allow ``calc`` model evaluations up to its call count ``limit`` inside the block."""
    calc.call_budget = limit
    try:
        yield
    finally:
        calc.call_budget = None


def _set_torch_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def load_calculator(model: str, *, torch_threads: int = 1):  # -> ase.calculators.Calculator
    """The ASE calculator of committee ``model`` (CPU, weights from its wheel), once per process.

    Sets torch to ``torch_threads`` threads (one worker per core).

    Raises
    ------
    EngineError
        One line: unknown model, or its package (``chgnet``, ``sevenn``) or torch is not importable,
        or its weights cannot be loaded.
    """
    _check_model(model)
    if model in _CALCULATORS:
        _set_torch_threads(torch_threads)
        return _CALCULATORS[model]
    if is_factory(model):
        calc = _from_factory(model)
    elif model == "chgnet":
        chgnet = load_chgnet(CHGNET_MODEL)  # EngineError with the install hint when missing
        from chgnet.model import CHGNetCalculator

        _set_torch_threads(torch_threads)
        with _quiet():
            calc = _counting(CHGNetCalculator, task="ef")(
                model=chgnet, use_device="cpu", on_isolated_atoms="ignore"
            )
    else:
        try:
            with _quiet():
                from sevenn.calculator import SevenNetCalculator
        except ImportError as exc:
            raise EngineError(
                f"the screening committee needs SevenNet (sevenn), which is not importable: "
                f"{INSTALL_HINT}"
            ) from exc
        _set_torch_threads(torch_threads)
        try:
            with _quiet():
                calc = _counting(SevenNetCalculator)(SEVENNET_MODEL, device="cpu")
        except (ValueError, FileNotFoundError, OSError, KeyError) as exc:
            raise EngineError(f"cannot load SevenNet model {SEVENNET_MODEL!r}: {exc}") from exc
    _CALCULATORS[model] = calc
    return calc


def supported_numbers(model: str) -> frozenset[int]:
    """Atomic numbers ``model`` was trained on.

    CHGNet: Z = 1..94 (Materials Project). SevenNet-0: the species of its checkpoint's config
    (``type_map`` of the loaded calculator; 89 elements in 7net-0), so the model is loaded.
    """
    _check_model(model)
    if is_factory(model):
        return frozenset(range(1, 119))
    if model == "chgnet":
        return frozenset(range(1, CHGNET_MAX_Z + 1))
    return frozenset(int(z) for z in load_calculator(model).type_map)


def check_elements(atoms: Atoms, model: str) -> None:
    """Refuse atoms ``model`` cannot handle (one-line EngineError naming the elements)."""
    known = supported_numbers(model)
    bad = sorted({a.symbol for a in atoms if a.number not in known})
    if bad:
        what = (
            f"trained on Z = 1..{CHGNET_MAX_Z}"
            if model == "chgnet"
            else f"not among the {len(known)} elements of its training set"
        )
        raise EngineError(f"{MODELS[model]} cannot handle element(s) {', '.join(bad)} ({what})")


@dataclass
class RelaxOutcome:
    """A finished committee relaxation (energies eV, forces eV/A, times s)."""

    atoms: Atoms  # final geometry, constraints and arrays kept, calc=None
    energy_eV: float  # the model's total energy of ``atoms``
    n_steps: int  # optimizer iterations
    converged: bool  # largest free force <= fmax
    fmax_eV_per_A: float  # largest final force on atoms not fixed
    stopped_early: str | None  # the ``stop`` callback's reason, when it ended the run
    hit_step_cap: bool  # max_steps taken without convergence (and not stopped)
    wall_s: float
    cpu_s: float  # process CPU time (all threads) spent in the relaxation
    n_force_calls: int = 0  # model evaluations (PreconLBFGS's line search may add some)
    optimizer: str = ""  # what ran, e.g. "PreconLBFGS" or "PreconLBFGS>FIRE" (see relax)
    model: str = ""


def relax(
    atoms: Atoms,
    model: str,
    *,
    fmax: float,
    max_steps: int,
    optimizer: str = DEFAULT_OPTIMIZER,
    stop: Callable[[Atoms], str | None] | None = None,
    check_every: int = 10,
) -> RelaxOutcome:
    """Relax a copy of ``atoms`` with ``model`` until the largest free force is <= ``fmax``.

    Parameters
    ----------
    atoms
        Starting geometry; its FixAtoms constraints (the slab's fixed planes) are kept, the cell
        is not relaxed. Not modified.
    model
        A key of :data:`MODELS`.
    fmax, max_steps
        Force limit (eV/A, on atoms not fixed) and optimizer-iteration cap.
    optimizer
        One of :data:`dftflow.engines.embedded_chgnet.OPTIMIZERS` (ASE defaults; PreconLBFGS with
        the Exp preconditioner). Should PreconLBFGS's line search fail (it raises when it finds no
        lower energy along its direction, e.g. on a noisy surface), the relaxation continues from
        the last geometry with FIRE for the remaining steps (``optimizer`` says so).
    stop
        Called with the current atoms (do not modify them) every ``check_every`` iterations; a
        string it returns ends the relaxation there (``stopped_early``), e.g. a desorbed ligand.

    Raises
    ------
    EngineError
        Unknown model or optimizer, a model that cannot be loaded, or an element it cannot handle.
    """
    if optimizer not in OPTIMIZERS:
        raise EngineError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    check_elements(atoms, model)
    calc = load_calculator(model)
    work = atoms.copy()  # copies constraints, arrays (the ligand mark) and info
    work.calc = calc
    calls0 = calc.n_calls
    cpu0, t0 = time.process_time(), time.perf_counter()
    out_of_calls = False
    reason: str | None = None
    converged = False
    ran = [optimizer]
    steps_done = 0
    with _quiet(), _budget(calc, calls0 + int(FORCE_CALLS_PER_STEP * max_steps)):
        name = optimizer
        while True:
            opt = make_optimizer(name, work)
            try:
                for converged in opt.irun(fmax=fmax, steps=max_steps - steps_done):
                    n = steps_done + opt.nsteps
                    if converged:
                        break
                    if stop is not None and n > 0 and n % max(1, check_every) == 0:
                        reason = stop(work)
                        if reason:
                            break
                steps_done += opt.nsteps
                break
            except _CallBudgetExceeded:
                steps_done += opt.nsteps
                out_of_calls = True
                break
            except RuntimeError as exc:  # PreconLBFGS's line search found no lower energy
                steps_done += opt.nsteps
                if name == "FIRE" or "line" not in str(exc).lower():
                    raise
                name = "FIRE"
                ran.append(name)
                if steps_done >= max_steps:
                    break
    with _quiet():
        forces = work.get_forces()
        energy = float(work.get_potential_energy())
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    final_fmax = max_free_force(work, forces)
    converged = final_fmax <= fmax
    final = work.copy()
    final.calc = None
    return RelaxOutcome(
        atoms=final,
        energy_eV=energy,
        n_steps=steps_done,
        converged=converged,
        fmax_eV_per_A=final_fmax,
        stopped_early=reason if reason and not converged else None,
        hit_step_cap=not converged and not reason and (steps_done >= max_steps or out_of_calls),
        wall_s=wall,
        cpu_s=cpu,
        n_force_calls=calc.n_calls - calls0,
        optimizer=">".join(ran),
        model=model,
    )


def single_point(atoms: Atoms, model: str) -> float:
    """Energy (eV) of ``atoms`` (not modified) with ``model``."""
    check_elements(atoms, model)
    calc = load_calculator(model)
    work = atoms.copy()
    work.calc = calc
    with _quiet():
        return float(work.get_potential_energy())


def committee_stats(values: Mapping[str, float]) -> tuple[float, float]:
    """Mean and spread sigma (population standard deviation) of the members' numbers.

    For two models sigma is half their difference; for one it is 0.

    Raises
    ------
    ValueError
        If ``values`` is empty or holds a non-finite number.
    """
    vals = [float(v) for v in values.values()]
    if not vals:
        raise ValueError("committee_stats needs at least one model's value")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"non-finite committee value(s): {dict(values)}")
    return statistics.fmean(vals), statistics.pstdev(vals)
