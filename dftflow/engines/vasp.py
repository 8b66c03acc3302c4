"""Run VASP under custodian: write the paper's inputs, run with error handlers, parse to a TaskDoc.

The fixed pipeline is ``write inputs -> custodian(VaspJob, handlers, validators) -> parse``; the
physics
(which INCAR tags) lives in :mod:`dftflow.inputs.vasp`. Every correction custodian made is read back
from ``custodian.json`` into ``TaskDoc.corrections``.

Configuration (``get_engine("vasp", **settings)`` or a study YAML's ``engine.settings``):

``vasp_cmd``
    e.g. ``"srun vasp_std"`` (string, split like a shell) or a list.
``gamma_cmd``
    command for Gamma-only runs (molecules), e.g. ``"srun vasp_gam"``; used when found on PATH.
``potcar_spec``
    write ``POTCAR.spec`` instead of a POTCAR (no licence needed; the mock VASP reads it).
``max_errors``
    custodian's total correction budget.
``handlers``
    names from :data:`HANDLERS` (default: all of them).
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ase import Atoms
from pymatgen.core import Structure

from dftflow.engines.base import prepare_run
from dftflow.errors import EngineError
from dftflow.schemas import Stage, TaskDoc

#: Handler names accepted in the ``handlers`` setting (the ones that matter for surfaces/molecules).
HANDLERS = (
    "VaspErrorHandler",
    "UnconvergedErrorHandler",
    "NonConvergingErrorHandler",
    "PotimErrorHandler",
    "PositiveEnergyErrorHandler",
    "FrozenJobErrorHandler",
    "StdErrHandler",
)
#: Files removed before a fresh run so stale outputs are never parsed.
STALE_OUTPUTS = (
    "vasprun.xml",
    "OUTCAR",
    "OSZICAR",
    "CONTCAR",
    "DOSCAR",
    "CHGCAR",
    "CHG",
    "AECCAR0",
    "AECCAR1",
    "AECCAR2",
    "LOCPOT",
    "EIGENVAL",
    "PROCAR",
    "XDATCAR",
    "IBZKPT",
    "PCDAT",
    "REPORT",
    "WAVECAR",
    "vasp.out",
    "std_err.txt",
    "custodian.json",
    ".mock_vasp_attempts",
)
MOCK_COMMAND = "dftflow-mock-vasp"


def _split(cmd: str | Sequence[str] | None) -> list[str] | None:
    if cmd is None:
        return None
    parts = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
    if not parts:
        raise EngineError("empty VASP command; set vasp_cmd, e.g. 'srun vasp_std'")
    return parts


def make_handlers(names: Sequence[str] | None = None, *, frozen_timeout_s: float = 21600.0) -> list:
    """Custodian handler instances by name (default: all of :data:`HANDLERS`)."""
    from custodian.vasp import handlers as h

    factories = {
        "VaspErrorHandler": lambda: h.VaspErrorHandler(),
        "UnconvergedErrorHandler": lambda: h.UnconvergedErrorHandler(),
        "NonConvergingErrorHandler": lambda: h.NonConvergingErrorHandler(),
        "PotimErrorHandler": lambda: h.PotimErrorHandler(),
        "PositiveEnergyErrorHandler": lambda: h.PositiveEnergyErrorHandler(),
        "FrozenJobErrorHandler": lambda: h.FrozenJobErrorHandler(timeout=int(frozen_timeout_s)),
        "StdErrHandler": lambda: h.StdErrHandler(),
    }
    out = []
    for name in names or HANDLERS:
        if name not in factories:
            raise EngineError(
                f"unknown custodian handler {name!r}; choose from {', '.join(HANDLERS)}"
            )
        out.append(factories[name]())
    return out


def _tail(path: Path, n: int = 3) -> str:
    if not path.is_file():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


class VaspEngine:
    """VASP (or the mock VASP) under custodian; implements the Engine protocol.

    Parameters
    ----------
    vasp_cmd
        VASP command (``"vasp_std"``, ``"srun vasp_std"``, or ``"dftflow-mock-vasp"``).
    gamma_cmd
        Command for Gamma-only k-meshes (``"vasp_gam"``); falls back to ``vasp_cmd`` if not on PATH.
    potcar_spec
        Write POTCAR.spec instead of POTCAR.
    max_errors
        custodian's maximum number of corrections.
    handlers
        Handler names (see :data:`HANDLERS`).
    polling_time_step, monitor_freq
        custodian polling (s) and monitor frequency (polls); defaults 10 s / 30 for real VASP and
        fast values for the mock.
    frozen_timeout_s
        FrozenJobErrorHandler timeout (s).
    name
        Engine name stored in TaskDocs (default ``"mock"`` for the mock command, else ``"vasp"``).
    """

    def __init__(
        self,
        vasp_cmd: str | Sequence[str] = "vasp_std",
        gamma_cmd: str | Sequence[str] | None = "vasp_gam",
        potcar_spec: bool = False,
        max_errors: int = 5,
        handlers: Sequence[str] | None = None,
        polling_time_step: float | None = None,
        monitor_freq: int | None = None,
        frozen_timeout_s: float = 21600.0,
        name: str | None = None,
    ) -> None:
        self.vasp_cmd = _locate_mock(_split(vasp_cmd))
        self.gamma_cmd = _locate_mock(_split(gamma_cmd))
        self.potcar_spec = bool(potcar_spec)
        self.max_errors = int(max_errors)
        self.handler_names = list(handlers or HANDLERS)
        make_handlers(self.handler_names)  # validate names now: one-line error at configuration
        self.is_mock = any(MOCK_COMMAND in part for part in self.vasp_cmd)
        gamma_is_mock = self.gamma_cmd is not None and MOCK_COMMAND in " ".join(self.gamma_cmd)
        if self.is_mock and self.gamma_cmd is not None and not gamma_is_mock:
            self.gamma_cmd = None  # never switch a mock run to a real Gamma-only VASP
        self.polling_time_step = (
            polling_time_step if polling_time_step is not None else (0.1 if self.is_mock else 10.0)
        )
        # the mock finishes in seconds: a monitor poll would only see the previous attempt's files
        self.monitor_freq = (
            monitor_freq if monitor_freq is not None else (600 if self.is_mock else 30)
        )
        self.frozen_timeout_s = float(frozen_timeout_s)
        self.name = name or ("mock" if self.is_mock else "vasp")

    def command(self) -> list[str]:
        """The command custodian runs (the mock gets one BLAS thread: faster on small matrices)."""
        if self.is_mock:
            return ["env", "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", *self.vasp_cmd]
        return list(self.vasp_cmd)

    def run(
        self,
        structure: Atoms | Structure,
        stage: Stage | str,
        directory: str | Path,
        *,
        overrides: dict[str, Any] | None = None,
        label: str = "",
    ) -> TaskDoc:
        """Write inputs for ``stage``, run VASP under custodian in ``directory``, parse the result.

        Raises
        ------
        InputError
            Unknown stage or INCAR override.
        EngineError
            POTCARs unavailable, VASP command missing, or custodian gave up (one line).
        """
        from dftflow.inputs.vasp import write_inputs
        from dftflow.parse.vasp import parse_directory

        stage, directory = prepare_run(stage, directory)
        exe = self.vasp_cmd[-1]
        if shutil.which(exe) is None and not Path(exe).is_file():
            raise EngineError(f"VASP command {exe!r} not found on PATH; set vasp_cmd")
        for name in STALE_OUTPUTS:
            (directory / name).unlink(missing_ok=True)
        inputs = write_inputs(
            structure, stage, directory, overrides=overrides, potcar_spec=self.potcar_spec
        )
        t0 = time.time()
        self._run_custodian(directory)
        wall = time.time() - t0
        doc = parse_directory(directory, label=label, stage=stage)
        warnings_ = list(doc.warnings)
        if doc.corrections:
            warnings_.append(
                f"custodian made {len(doc.corrections)} correction(s): "
                + ", ".join(f"{c.handler}({'/'.join(c.errors)})" for c in doc.corrections)
            )
        return doc.model_copy(
            update={
                "engine": self.name,
                "overrides": inputs.overrides,
                "wall_time_s": wall,
                "warnings": warnings_,
                "metadata": {
                    **doc.metadata,
                    "vasp_cmd": " ".join(self.vasp_cmd),
                    "system": inputs.system,
                    "potcar_spec": self.potcar_spec,
                },
            }
        )

    def _run_custodian(self, directory: Path) -> None:
        from custodian import Custodian
        from custodian.custodian import CustodianError
        from custodian.vasp.jobs import VaspJob
        from custodian.vasp.validators import VaspFilesValidator, VasprunXMLValidator

        job = VaspJob(
            self.command(),
            output_file="vasp.out",
            stderr_file="std_err.txt",
            auto_npar=False,
            gamma_vasp_cmd=self.gamma_cmd,
        )
        handlers = make_handlers(self.handler_names, frozen_timeout_s=self.frozen_timeout_s)
        custodian = Custodian(
            handlers,
            [job],
            validators=[VasprunXMLValidator(), VaspFilesValidator()],
            max_errors=self.max_errors,
            polling_time_step=self.polling_time_step,
            monitor_freq=self.monitor_freq,
            directory=str(directory),
        )
        loggers = [logging.getLogger(n) for n in ("custodian", *self.handler_names)]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen's POTCAR/unconverged chatter
                custodian.run()
        except CustodianError as exc:
            detail = _tail(directory / "std_err.txt") or _tail(directory / "vasp.out")
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineError(
                f"VASP in {directory} failed under custodian: {msg}"
                + (f" (last output: {detail})" if detail else "")
            ) from exc
        finally:
            for lg, lvl in zip(loggers, levels, strict=True):
                lg.setLevel(lvl)


def _locate_mock(cmd: list[str] | None) -> list[str] | None:
    """Full path of ``dftflow-mock-vasp`` when the venv's ``bin`` is not on PATH.

    ``.venv/bin/python -m pytest`` (no activated venv, as in CI) or a queue job started by a login
    shell would otherwise not find the console script installed next to the running Python.
    """
    if cmd is None:
        return None
    out = []
    for part in cmd:
        if part == MOCK_COMMAND and shutil.which(part) is None:
            candidate = Path(sys.executable).parent / MOCK_COMMAND
            part = str(candidate) if candidate.exists() else part
        out.append(part)
    return out


class MockVaspEngine(VaspEngine):
    """The VaspEngine running ``dftflow-mock-vasp`` with POTCAR.spec files (tests, mock studies)."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("vasp_cmd", MOCK_COMMAND)
        config.setdefault("gamma_cmd", None)
        config.setdefault("potcar_spec", True)
        super().__init__(**config)
