"""Embedded engine settings: grids, merging of overrides, validation (no calculation run)."""

from __future__ import annotations

import pytest

from dftflow.engines.embedded_settings import (
    DEFAULT_SETTINGS,
    fft_friendly,
    grid_points,
    merge_settings,
    validate_settings,
)
from dftflow.errors import EngineError
from dftflow.inputs import params


def _prime_factors_ok(n: int) -> bool:
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


@pytest.mark.parametrize("n", [1, 7, 47, 97, 188, 189, 250])
def test_fft_friendly_is_smallest_valid(n):
    m = fft_friendly(n)
    assert m >= n and m % 4 == 0 and _prime_factors_ok(m)
    assert not any(k % 4 == 0 and _prime_factors_ok(k) for k in range(max(n, 4), m))


def test_grid_points_allow_factor_seven():
    # a relaxed lattice a bit above 6 A: 12.01 / 0.25 = 48.04 -> 56 (= 8 * 7), not 60
    assert grid_points([12.01, 12.01, 46.96], 0.25) == (56, 56, 192)


def test_grid_points_study_cell():
    # study cell 11.748 x 11.748 x 46.96 A, h = 0.25 A: 47 -> 48, 187.8 -> 192 (not 188 = 4*47)
    assert grid_points([11.748, 11.748, 46.96], 0.25) == (48, 48, 192)
    # spacing never exceeds h, and the same cell always gives the same grid
    for h in (0.2, 0.25, 0.3):
        g = grid_points([11.748, 11.748, 46.96], h)
        assert all(L / n <= h + 1e-12 for L, n in zip([11.748, 11.748, 46.96], g, strict=True))
        assert g == grid_points([11.748, 11.748, 46.96], h)


def test_defaults_take_the_papers_force_limit_and_smearing():
    assert DEFAULT_SETTINGS["fmax_eV_per_A"] == params.FMAX_EV_PER_A
    assert DEFAULT_SETTINGS["smearing_width_eV"] == params.SIGMA_EV


def test_merge_translates_vasp_tags_and_reports_ignored():
    s, warnings = merge_settings(
        DEFAULT_SETTINGS,
        {
            "EDIFFG": -0.05,
            "SIGMA": 0.1,
            "KPOINTS": [3, 3, 1],
            "NGXF": 160,
            "ENCUT": 450,
            "basis": "dzp",
        },
    )
    assert s["fmax_eV_per_A"] == pytest.approx(0.05)
    assert s["smearing_width_eV"] == pytest.approx(0.1)
    assert s["kpts_slab"] == (3, 3, 1)
    assert s["basis"] == "dzp"
    assert len(warnings) == 2
    assert any("NGXF" in w for w in warnings) and any("ENCUT" in w for w in warnings)
    # the base is not modified
    assert DEFAULT_SETTINGS["basis"] != "dzp"


def test_ediff_becomes_absolute_energy_criterion():
    s, _ = merge_settings(DEFAULT_SETTINGS, {"EDIFF": 1e-5})
    assert s["scf_energy_eV"] == pytest.approx(1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        {"basis_set": "dzp"},
        {"kpts_slab": [2, 2]},
        {"kpts_slab": [0, 1, 1]},
        {"grid_spacing_A": -0.2},
        {"smearing": "gaussian-ish"},
        {"scf_maxiter": 0},
    ],
)
def test_bad_settings_raise_one_line(bad):
    with pytest.raises(EngineError) as exc:
        validate_settings(bad)
    assert "\n" not in str(exc.value)


def test_get_engine_rejects_unknown_setting():
    from dftflow.engines import get_engine

    with pytest.raises(EngineError, match="unknown setting"):
        get_engine("embedded", no_such_setting=1)


def test_loewdin_weights_sum_to_one_from_lower_triangle():
    import numpy as np
    from scipy.linalg import eigh

    from dftflow.engines.embedded_gpaw import loewdin_weights

    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6)) + 1j * rng.normal(size=(6, 6))
    s = a @ a.conj().T + 6 * np.eye(6)  # Hermitian positive definite overlap
    h = rng.normal(size=(6, 6))
    _, vecs = eigh(h + h.T, s)  # S-orthonormal columns
    c = vecs.T  # rows: bands, as GPAW's C_nM
    full = loewdin_weights(c, s)
    lower_only = loewdin_weights(c, np.tril(s))
    assert np.allclose(full, lower_only)
    assert np.all(full >= 0)
    # psi_n = sum_M C_nM phi_M with <psi_n|psi_n> = 1: Loewdin populations of a band sum to 1
    assert np.allclose(full.sum(axis=1), 1.0)


def test_slab_like_detection_and_spin_seed():
    import numpy as np
    from ase import Atoms

    from dftflow.engines.embedded_gpaw import initial_magmoms, is_slab_like

    bulk = Atoms("Cs", positions=[[0, 0, 0]], cell=[4, 4, 4], pbc=True)
    slab = Atoms("Cs", positions=[[0, 0, 1]], cell=[4, 4, 20], pbc=True)
    assert not is_slab_like(bulk) and is_slab_like(slab)
    mags = initial_magmoms(["Pb", "Br", "C", "O", "O"])
    assert np.isclose(mags.sum(), 1.0) and mags[0] == 0 and mags[1] == 0


@pytest.mark.parametrize("name", ["FIRE", "BFGS", "LBFGS", "PreconLBFGS"])
def test_optimizer_names_accepted(name):
    # the optimizers measured in benchmarks/bench_relax_optimizers_RESULTS.md
    assert validate_settings({"optimizer": name}) == {"optimizer": name}
    s, warnings = merge_settings(DEFAULT_SETTINGS, {"optimizer": name})
    assert s["optimizer"] == name and not warnings


@pytest.mark.parametrize("name", ["GPMin", "precon_lbfgs", "fire", ""])
def test_unknown_optimizer_refused_naming_the_choices(name):
    with pytest.raises(EngineError) as exc:
        validate_settings({"optimizer": name})
    msg = str(exc.value)
    assert "\n" not in msg and "optimizer" in msg
    assert all(n in msg for n in ("FIRE", "BFGS", "LBFGS", "PreconLBFGS"))
