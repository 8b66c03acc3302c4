"""Run VASP under custodian: write the paper's inputs, run with error handlers, parse to a TaskDoc.

The fixed pipeline is ``write inputs -> custodian(VaspJob, handlers, validators) -> parse``; the
physics (which INCAR tags) lives in :mod:`dftflow.inputs.vasp`. Every correction custodian made is
read back from ``custodian.json`` into ``TaskDoc.corrections``. The TaskDoc is written as
``taskdoc.json`` in the run directory.

Configuration: :class:`VaspSettings` (``get_engine("vasp", **settings)`` or a study YAML's
``engine.settings``).
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

from dftflow.engines.base import prepare_run, validated_settings
from dftflow.errors import EngineError
from dftflow.inputs.vasp import write_inputs
from dftflow.parse.vasp import parse_directory
from dftflow.schemas import TASKDOC_FILE, Stage, TaskDoc
from dftflow.structures.ligand_atoms import ligand_indices_of

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
    ".mock_vasp_attempts",  # the mock VASP's attempt counter (it injects errors per attempt)
)


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


@contextmanager
def quiet_custodian(handler_names: Sequence[str]) -> Iterator[None]:
    """Silence custodian's and its handlers' loggers and pymatgen's warnings inside the block.

    Custodian logs every VASP message it finds at ERROR level; without a logging configuration
    Python prints those on stderr, which would bury dftflow's own one-line messages.
    """
    names = ("custodian", *handler_names, "VasprunXMLValidator", "VaspFilesValidator")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen's POTCAR/unconverged chatter
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def make_validators() -> list:
    """Custodian's output validators run after a VASP attempt without handler errors."""
    from custodian.vasp.validators import VaspFilesValidator, VasprunXMLValidator

    return [VasprunXMLValidator(), VaspFilesValidator()]


def action_text(action: dict[str, Any]) -> str:
    """One custodian action as short text: ``INCAR EDIFF=1e-06`` or ``CONTCAR -> POSCAR``."""
    act = action.get("action", {})
    target = action.get("dict") or action.get("file") or "?"
    if "_set" in act:
        return f"{target} " + " ".join(f"{k}={v}" for k, v in act["_set"].items())
    if "_unset" in act:
        return f"{target} unset " + " ".join(str(k) for k in act["_unset"])
    if "_file_copy" in act:
        return f"{target} -> {act['_file_copy'].get('dest', '?')}"
    return f"{target} {act}"


def custodian_failure_message(
    exc: Exception, run_log: list[dict[str, Any]], max_errors: int
) -> str:
    """One line saying why custodian gave up: which failures, which corrections, which budget.

    Parameters
    ----------
    exc
        The ``CustodianError`` custodian raised.
    run_log
        ``Custodian.run_log`` (one dict per job, each with its ``corrections``).
    max_errors
        The correction budget custodian ran with.
    """
    from custodian.custodian import (
        MaxCorrectionsError,
        MaxCorrectionsPerHandlerError,
        MaxCorrectionsPerJobError,
        NonRecoverableError,
        ValidationError,
    )

    corrections = [c for run in run_log for c in run.get("corrections", []) or []]
    seen: dict[str, int] = {}
    for corr in corrections:
        handler = type(corr.get("handler")).__name__
        for err in corr.get("errors") or [handler]:
            key = f"{err} ({handler})"
            seen[key] = seen.get(key, 0) + 1
    failures = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in seen.items())
    if isinstance(exc, (MaxCorrectionsError, MaxCorrectionsPerJobError)):
        last = corrections[-1] if corrections else {}
        made = "; ".join(action_text(a) for a in last.get("actions") or []) or "none"
        # the budget counts corrections (one attempt may need several), not VASP attempts
        return (
            f"custodian's correction budget is used up (max_errors={max_errors}) and VASP still "
            f"fails: {failures or 'unknown failure'}; the last correction is in the inputs but "
            f"was not run: {made}"
        )
    if isinstance(exc, MaxCorrectionsPerHandlerError):
        return f"a handler's own correction limit was reached: {failures or exc}"
    if isinstance(exc, NonRecoverableError):
        last = corrections[-1] if corrections else {}
        handler = type(last.get("handler", exc.handler)).__name__
        errors = ", ".join(str(e) for e in last.get("errors") or []) or "an error"
        return f"{handler} found {errors} and custodian has no further correction for it"
    if isinstance(exc, ValidationError):
        what = {
            "VasprunXMLValidator": "vasprun.xml is missing or unreadable",
            "VaspFilesValidator": "CONTCAR, OSZICAR or OUTCAR is missing",
        }.get(type(exc.validator).__name__, str(exc))
        return f"output validation failed: {what}" + (f" (after {failures})" if failures else "")
    return (str(exc).splitlines()[0] if str(exc) else type(exc).__name__) + (
        f" (failures: {failures})" if failures else ""
    )


def _tail(path: Path, n: int = 3) -> str:
    if not path.is_file():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


class VaspSettings(BaseModel):
    """Typed settings of the VASP engine (a study YAML's ``engine.settings``)."""

    model_config = ConfigDict(extra="forbid")

    vasp_cmd: str | list[str] = Field(
        default="vasp_std",
        description="VASP command: 'srun vasp_std', 'mpirun -np 32 vasp_std'",
    )
    gamma_cmd: str | list[str] | None = Field(
        default="vasp_gam", description="command for Gamma-only meshes; vasp_cmd when not on PATH"
    )
    potcar_spec: bool = Field(default=False, description="write POTCAR.spec instead of POTCAR")
    max_errors: int = Field(default=5, ge=1, description="custodian's correction budget")
    handlers: list[str] | None = Field(default=None, description=f"subset of {HANDLERS}")
    polling_time_step: float = Field(default=10.0, gt=0, description="custodian poll period, s")
    monitor_freq: int = Field(default=30, ge=1, description="polls between handler checks")
    frozen_timeout_s: float = Field(default=21600.0, gt=0, description="FrozenJob timeout, s")
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables set for the VASP process"
    )


class VaspEngine:
    """VASP under custodian; implements the Engine protocol.

    The executable is configuration: the mock VASP of the tests is this same engine running
    ``dftflow-mock-vasp`` (see the ``mock`` entry of :mod:`dftflow.engines.registry`).

    Parameters
    ----------
    name
        Engine name stored in TaskDocs (the registry sets its entry's name).
    **settings
        :class:`VaspSettings` fields.
    """

    def __init__(self, name: str = "vasp", **settings: Any) -> None:
        cfg = validated_settings(VaspSettings, settings, name)
        self.name = name
        self.settings = cfg
        self.vasp_cmd = _locate(_split(cfg.vasp_cmd))
        self.gamma_cmd = _locate(_split(cfg.gamma_cmd))
        self.potcar_spec = cfg.potcar_spec
        self.max_errors = cfg.max_errors
        self.handler_names = list(cfg.handlers or HANDLERS)
        make_handlers(self.handler_names)  # validate names now: one-line error at configuration
        self.polling_time_step = cfg.polling_time_step
        self.monitor_freq = cfg.monitor_freq
        self.frozen_timeout_s = cfg.frozen_timeout_s

    def command(self) -> list[str]:
        """The command custodian runs (``env K=V ...`` prefix when ``env`` is set)."""
        if self.settings.env:
            return ["env", *(f"{k}={v}" for k, v in self.settings.env.items()), *self.vasp_cmd]
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
        stage, directory = prepare_run(stage, directory)
        exe = self.vasp_cmd[-1]
        if shutil.which(exe) is None and not Path(exe).is_file():
            raise EngineError(f"VASP command {exe!r} not found on PATH; set vasp_cmd")
        for name in (*STALE_OUTPUTS, TASKDOC_FILE):
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
        doc = doc.model_copy(
            update={
                "engine": self.name,
                "ligand_indices": ligand_indices_of(structure),  # VASP keeps the atom order
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
        doc.to_json_file(directory / TASKDOC_FILE)
        return doc

    def _run_custodian(self, directory: Path) -> None:
        from custodian import Custodian
        from custodian.custodian import CustodianError
        from custodian.vasp.jobs import VaspJob

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
            validators=make_validators(),
            max_errors=self.max_errors,
            polling_time_step=self.polling_time_step,
            monitor_freq=self.monitor_freq,
            directory=str(directory),
        )
        try:
            with quiet_custodian(self.handler_names):
                custodian.run()
        except CustodianError as exc:
            msg = custodian_failure_message(exc, custodian.run_log, self.max_errors)
            detail = ""
            if not any(run.get("corrections") for run in custodian.run_log):
                detail = _tail(directory / "std_err.txt") or _tail(directory / "vasp.out")
            raise EngineError(
                f"VASP in {directory} failed under custodian: {msg}"
                + (f" (last output: {detail})" if detail else "")
            ) from exc


def _locate(cmd: list[str] | None) -> list[str] | None:
    """The command with its executable found next to the running Python when not on PATH.

    ``.venv/bin/python -m pytest`` (no activated venv, as in CI) or a queue job started by a login
    shell would otherwise not find console scripts (``dftflow-mock-vasp``) installed in the venv.
    """
    if cmd is None:
        return None
    out = []
    for part in cmd:
        if "/" not in part and shutil.which(part) is None:
            candidate = Path(sys.executable).parent / part
            part = str(candidate) if candidate.exists() else part
        out.append(part)
    return out
