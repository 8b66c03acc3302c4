"""The screen's MLIP committee (dftflow.screening.committee) with the real models, on a molecule.

CHGNet 0.3.0 and SevenNet-0 are loaded once for the module (about 5 + 5 s); every calculation is on
the 8-atom acetic acid molecule, so each takes well under a second.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.constraints import FixAtoms

from dftflow.errors import EngineError

pytestmark = [pytest.mark.embedded, pytest.mark.slow(seconds=25)]


@pytest.fixture(scope="module")
def committee():
    """The module, both models loaded here from scratch with the terminal watched."""
    pytest.importorskip("chgnet")
    pytest.importorskip("sevenn")
    from dftflow.screening import committee as mod

    mod._CALCULATORS.clear()
    out, err = io.StringIO(), io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        warnings.simplefilter("always")
        for model in mod.COMMITTEE:
            mod.load_calculator(model)
        mod.relax(_acid(), "chgnet", fmax=0.05, max_steps=20)  # PreconLBFGS's line search too
    mod.loading_output = (out.getvalue(), err.getvalue(), [str(w.message) for w in caught])
    return mod


def _acid(rattle: float = 0.05, seed: int = 3) -> Atoms:
    acid = molecule("CH3COOH")
    acid.set_cell([12.0, 12.0, 14.0])
    acid.center()
    acid.rattle(rattle, seed=seed)
    return acid


def test_models_load_quietly_once_with_one_torch_thread(committee):
    import torch

    out, err, caught = committee.loading_output
    assert out == "" and err == "" and caught == []
    assert torch.get_num_threads() == 1
    for model in committee.COMMITTEE:
        assert committee.load_calculator(model) is committee.load_calculator(model)


def test_committee_mean_and_sigma_on_acetic_acid(committee):
    acid = _acid(rattle=0.0)
    energies = {m: committee.single_point(acid, m) for m in committee.COMMITTEE}
    a, b = energies["chgnet"], energies["sevennet"]
    # both fitted to PBE energies: ~ -46 eV for CH3COOH (8 atoms), a few tenths of an eV apart
    assert all(np.isfinite(e) and -60.0 < e < -35.0 for e in (a, b))
    assert 1e-3 < abs(a - b) < 3.0
    mean, sigma = committee.committee_stats(energies)
    assert mean == pytest.approx((a + b) / 2)
    assert sigma == pytest.approx(abs(a - b) / 2)
    assert committee.committee_stats({"chgnet": a}) == (pytest.approx(a), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        committee.committee_stats({"chgnet": a, "sevennet": float("nan")})


@pytest.mark.parametrize("model", ["chgnet", "sevennet"])
def test_relax_converges_and_keeps_fixed_atoms(committee, model):
    start = _acid()
    start.set_constraint(FixAtoms(indices=[0]))
    e_start = committee.single_point(start, model)
    out = committee.relax(start, model, fmax=0.03, max_steps=200)
    assert out.converged and not out.hit_step_cap and out.stopped_early is None
    assert out.fmax_eV_per_A <= 0.03
    forces = np.linalg.norm(_forces(committee, out.atoms, model)[1:], axis=1)
    assert forces.max() == pytest.approx(out.fmax_eV_per_A, abs=1e-4)
    assert out.energy_eV < e_start - 0.05  # the 0.05 A rattle costs energy
    assert 0 < out.n_steps < 200 and out.n_force_calls >= out.n_steps
    assert np.allclose(out.atoms.positions[0], start.positions[0])  # FixAtoms kept
    assert out.atoms.calc is None and out.atoms.constraints
    assert out.cpu_s > 0 and out.wall_s > 0 and out.model == model
    c = out.atoms  # chemistry kept: C=O ~1.21, C-OH ~1.36 A (g2 order C, O, O, H, C, H, H, H)
    co = sorted(c.get_distance(0, i) for i in (1, 2))
    assert 1.17 < co[0] < 1.26 and 1.30 < co[1] < 1.42


def _forces(committee, atoms: Atoms, model: str) -> np.ndarray:
    work = atoms.copy()
    work.calc = committee.load_calculator(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return work.get_forces()


def test_stop_callback_ends_relaxation_with_its_reason(committee):
    seen: list[int] = []

    def stop(atoms: Atoms) -> str | None:
        seen.append(len(atoms))
        return "desorbed" if len(seen) == 2 else None

    out = committee.relax(_acid(0.1), "chgnet", fmax=0.001, max_steps=200, stop=stop, check_every=3)
    assert out.stopped_early == "desorbed"
    assert out.n_steps == 6 and seen == [8, 8]
    assert not out.converged and not out.hit_step_cap


def test_step_cap_is_reported(committee):
    out = committee.relax(_acid(0.1), "sevennet", fmax=0.001, max_steps=3)
    assert out.n_steps == 3 and out.hit_step_cap
    assert not out.converged and out.stopped_early is None and out.fmax_eV_per_A > 0.001


def test_line_search_failure_continues_with_fire(committee, monkeypatch):
    """PreconLBFGS raising "Armijo linesearch failed" mid-run: FIRE takes over, steps shared."""
    real = committee.make_optimizer

    def failing(name, target):
        opt = real(name, target)
        if name == "PreconLBFGS":
            step = opt.step

            def step_then_fail(*a, **kw):
                if opt.nsteps >= 2:
                    raise RuntimeError("Armijo linesearch failed after reset of Hessian, aborting")
                return step(*a, **kw)

            opt.step = step_then_fail
        return opt

    monkeypatch.setattr(committee, "make_optimizer", failing)
    out = committee.relax(_acid(), "chgnet", fmax=0.05, max_steps=300)
    assert out.optimizer == "PreconLBFGS>FIRE"
    assert out.converged and out.fmax_eV_per_A <= 0.05 and out.n_steps > 2


def test_elements_a_model_cannot_handle_are_named(committee):
    po = Atoms("PoH", positions=[[0, 0, 0], [0, 0, 1.7]], cell=[10, 10, 10])
    committee.check_elements(po, "chgnet")  # Z 84 <= 94
    with pytest.raises(EngineError, match=r"SevenNet-0 .*cannot handle element\(s\) Po\b"):
        committee.check_elements(po, "sevennet")
    am = Atoms("AmH", positions=[[0, 0, 0], [0, 0, 1.7]], cell=[10, 10, 10])
    with pytest.raises(EngineError, match=r"CHGNet .*cannot handle element\(s\) Am .*1\.\.94"):
        committee.relax(am, "chgnet", fmax=0.05, max_steps=10)
    assert {"Cs", "Pb", "Br", "C", "H", "O", "N", "P", "S"} <= {
        Atoms(numbers=[z]).get_chemical_symbols()[0]
        for z in committee.supported_numbers("sevennet")
    }
    with pytest.raises(EngineError, match="unknown committee model 'mace'"):
        committee.single_point(po, "mace")


def test_missing_package_is_one_line(committee, monkeypatch):
    monkeypatch.setattr(committee, "_CALCULATORS", {})
    monkeypatch.setitem(sys.modules, "sevenn.calculator", None)
    with pytest.raises(EngineError, match=r"needs SevenNet \(sevenn\).*install") as exc:
        committee.load_calculator("sevennet")
    assert "\n" not in str(exc.value)
