"""Pytest fixtures for VASP-engine tests: the mock VASP on the command, and a real-VASP guard.

* ``mock_vasp`` - puts ``dftflow-mock-vasp`` on the VASP command for one test (``DFTFLOW_VASP_CMD``,
  read by the workflows; ``mock_vasp.engine()`` gives the registry's ``mock`` engine) and lets
  the test inject failures: ``mock_vasp.fail({1: "zbrent"})``.
* ``no_real_vasp`` (autouse) - fails any test that would launch a real ``vasp_std``/``vasp_gam``/
  ``vasp_ncl`` (directly, through ``srun``/``mpirun``, or through custodian).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REAL_VASP_NAMES = ("vasp_std", "vasp_gam", "vasp_ncl")


def is_real_vasp_command(args: Any) -> bool:
    """Whether a Popen argument list/string would start a real VASP executable."""
    if isinstance(args, (str, bytes, os.PathLike)):
        parts = shlex.split(os.fsdecode(args)) if not isinstance(args, os.PathLike) else [str(args)]
    elif isinstance(args, Sequence):
        parts = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args]
    else:
        return False
    for part in parts:
        name = Path(part).name
        if name in REAL_VASP_NAMES or name.startswith(("vasp_std", "vasp_gam", "vasp_ncl")):
            return True
    return False


class MockVasp:
    """Handle returned by the ``mock_vasp`` fixture."""

    command = "dftflow-mock-vasp"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._mp = monkeypatch

    def fail(self, plan: Mapping[int, str]) -> None:
        """Inject failures: attempt number -> kind (see ``dftflow.testing.mock_vasp.FAILURES``)."""
        from dftflow.testing.mock_vasp import ENV_FAILURES, FAILURES

        for kind in plan.values():
            if kind not in FAILURES:
                raise ValueError(f"unknown mock VASP failure {kind!r}")
        self._mp.setenv(ENV_FAILURES, ",".join(f"{n}:{k}" for n, k in sorted(plan.items())))

    def engine(self, **config: Any):
        """The registry's ``mock`` engine (VaspEngine + custodian + mock VASP + POTCAR.spec)."""
        from dftflow.engines import get_engine

        return get_engine("mock", **config)


@pytest.fixture
def mock_vasp(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockVasp]:
    """Run the mock VASP wherever a test would run VASP."""
    from dftflow.testing.mock_vasp import ENV_FAILURES

    monkeypatch.setenv("DFTFLOW_VASP_CMD", MockVasp.command)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv(ENV_FAILURES, raising=False)
    yield MockVasp(monkeypatch)


@pytest.fixture(autouse=True)
def no_real_vasp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to launch a real VASP executable."""
    original = subprocess.Popen

    class GuardedPopen(original):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **kw):
            if is_real_vasp_command(args):
                pytest.fail(f"test tried to launch real VASP: {args!r}", pytrace=False)
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", GuardedPopen)
