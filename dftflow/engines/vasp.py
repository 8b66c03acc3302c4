"""Run VASP under custodian: write the paper's inputs, run with error handlers, parse to a TaskDoc.

The fixed pipeline is ``write inputs -> custodian(VaspJob, handlers, validators) -> parse``; the
physics (which INCAR tags) lives in :mod:`dftflow.inputs.vasp`. Every correction custodian made is
read back from ``custodian.json`` into ``TaskDoc.corrections``. The TaskDoc is written as
``taskdoc.json`` in the run directory.

Configuration: :class:`VaspSettings` (``get_engine("vasp", **settings)`` or a study YAML's
``engine.settings``). How VASP is launched (``srun vasp_std``, ``mpirun -np 32 vasp_std``) is a
property of the machine, not of the study: :func:`resolve_vasp_cmd` applies one precedence for
``calc``, ``run``, ``launch`` and every worker (``--vasp-cmd`` > ``DFTFLOW_VASP_CMD`` > the
FWorker's ``env.vasp_cmd`` > the study's ``engine.settings.vasp_cmd`` > ``vasp_std``).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from dftflow.engines.base import prepare_run, validated_settings
from dftflow.errors import EngineError
from dftflow.processes import stop_processes
from dftflow.schemas import NOT_PHYSICAL_NOTE, TASKDOC_FILE, Stage, TaskDoc
from dftflow.structures.ligand_atoms import ligand_indices_of

# The inputs writer and the parser (pymatgen.io.vasp, ~0.7 s of imports) load when a run starts,
# so that the registry and the CLI start fast (measured: `import dftflow.cli` 1.0 s -> 0.22 s).
if TYPE_CHECKING:
    from ase import Atoms
    from pymatgen.core import Structure

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


#: The environment variable that says how VASP is launched on this machine (e.g. set by a queue
#: script's ``pre_rocket``): ``export DFTFLOW_VASP_CMD="mpirun -np 32 vasp_std"``.
VASP_CMD_ENV = "DFTFLOW_VASP_CMD"
#: The command when nothing says otherwise.
DEFAULT_VASP_CMD = "vasp_std"
#: FWorker ``env`` key of a ``--vasp-cmd`` given on the command line of ``dftflow run``/``launch``
#: (it travels with the worker, above every other source).
FWORKER_OPTION_KEY = "dftflow_vasp_cmd"
#: FWorker ``env`` key of the worker's own VASP command (``launchers/my_fworker.yaml``).
FWORKER_ENV_KEY = "vasp_cmd"


@dataclass(frozen=True)
class VaspCommand:
    """The VASP command a run uses and where it came from (for messages and TaskDocs)."""

    command: str
    source: str


def resolve_vasp_cmd(
    option: str | None = None,
    *,
    fworker: str | None = None,
    study: str | Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> VaspCommand:
    """The VASP launch command by one precedence, highest first.

    1. ``option``: ``--vasp-cmd`` of ``dftflow calc``/``run``/``launch``;
    2. the environment variable :data:`VASP_CMD_ENV` (``DFTFLOW_VASP_CMD``), e.g. exported by the
       ``pre_rocket`` of ``launchers/my_qadapter_pbs.yaml``;
    3. ``fworker``: the FWorker's ``env.vasp_cmd`` (``launchers/my_fworker.yaml``);
    4. ``study``: the study YAML's ``engine.settings.vasp_cmd``;
    5. :data:`DEFAULT_VASP_CMD` (``vasp_std``).

    Empty strings count as not set. ``environ`` defaults to ``os.environ``.

    Raises
    ------
    EngineError
        A command that is only blanks.
    """
    env = os.environ if environ is None else environ
    if study is not None and not isinstance(study, str):
        study = shlex.join(str(c) for c in study)
    for value, source in (
        (option, "--vasp-cmd"),
        (env.get(VASP_CMD_ENV), VASP_CMD_ENV),
        (fworker, "FWorker env vasp_cmd"),
        (study, "study engine.settings.vasp_cmd"),
    ):
        if value is not None and str(value) != "":
            if not str(value).strip():
                raise EngineError(f"empty VASP command from {source}; e.g. 'srun vasp_std'")
            return VaspCommand(str(value).strip(), source)
    return VaspCommand(DEFAULT_VASP_CMD, "default")


def gamma_command(vasp_cmd: Sequence[str]) -> list[str]:
    """The Gamma-only command of a launch command: its ``vasp_std`` replaced by ``vasp_gam``.

    ``mpirun -np 32 vasp_std`` -> ``mpirun -np 32 vasp_gam``, so that Gamma-only runs (molecules)
    start the same way (custodian falls back to ``vasp_cmd`` when ``vasp_gam`` is not on PATH).
    A command whose executable is not called ``vasp_std`` is returned unchanged.
    """
    parts = list(vasp_cmd)
    exe = Path(parts[-1])
    if exe.name == "vasp_std":
        parts[-1] = str(exe.with_name("vasp_gam"))
    return parts


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


def _stop_children(directory: Path, timeout_s: float = 5.0) -> None:
    """Terminate this process's children running in ``directory`` (VASP), then kill what is left."""
    import psutil

    def in_directory(p: psutil.Process) -> bool:
        try:
            return Path(p.cwd()) == directory.resolve()
        except (psutil.Error, OSError):
            return False

    children = [p for p in psutil.Process().children(recursive=True) if in_directory(p)]
    stop_processes(children, timeout_s)


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
        default=None,
        description="command for Gamma-only meshes; None: vasp_cmd with vasp_std -> vasp_gam "
        "(vasp_cmd itself when that is not on PATH)",
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

    #: False for a stand-in executable (the registry's ``mock`` entry sets it): every TaskDoc
    #: then says "mock (not physical)".
    physical: bool = True

    def __init__(self, name: str = "vasp", **settings: Any) -> None:
        cfg = validated_settings(VaspSettings, settings, name)
        self.name = name
        self.settings = cfg
        self.vasp_cmd = _locate(_split(cfg.vasp_cmd))
        gamma = _split(cfg.gamma_cmd) if cfg.gamma_cmd is not None else None
        self.gamma_cmd = _locate(gamma or gamma_command(_split(cfg.vasp_cmd)))
        self.potcar_spec = cfg.potcar_spec
        self.max_errors = cfg.max_errors
        self.handler_names = list(cfg.handlers or HANDLERS)
        make_handlers(self.handler_names)  # validate names now: one-line error at configuration
        self.polling_time_step = cfg.polling_time_step
        self.monitor_freq = cfg.monitor_freq
        self.frozen_timeout_s = cfg.frozen_timeout_s

    def command(self, gamma: bool = False) -> list[str]:
        """The command custodian runs (``env K=V ...`` prefix when ``env`` is set).

        ``gamma``: the command of Gamma-only runs (custodian uses it when its executable is on
        PATH).
        """
        cmd = list(self.gamma_cmd if gamma and self.gamma_cmd else self.vasp_cmd)
        if self.settings.env:
            return ["env", *(f"{k}={v}" for k, v in self.settings.env.items()), *cmd]
        return cmd

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
        from dftflow.inputs.vasp import write_inputs
        from dftflow.parse.vasp import parse_directory

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
        if not self.physical:
            warnings_.insert(0, NOT_PHYSICAL_NOTE)
        doc = doc.model_copy(
            update={
                "engine": self.name,
                "physical": self.physical,
                "physical_note": "" if self.physical else NOT_PHYSICAL_NOTE,
                "charge_e": cell_charge_e(
                    inputs.incar, inputs.poscar.structure, inputs.potcar_symbols
                ),
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
            gamma_vasp_cmd=self.command(gamma=True) if self.gamma_cmd else None,
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
        except BaseException:
            # interrupted (SIGTERM/SIGINT raised in this process): VASP must not go on writing
            # into the run directory that a rerun will use
            _stop_children(directory)
            raise


def cell_charge_e(
    incar: Mapping[str, Any], structure: Structure, potcar_symbols: Sequence[str]
) -> float | None:
    """Net charge (e) of the cell VASP computes: neutral valence count - NELECT.

    The neutral count is the sum of the POTCARs' ZVAL (``inputs.vasp.POTCAR_ZVAL``, the table
    NELECT is computed from); no NELECT in the INCAR means a neutral cell. None when a POTCAR
    symbol has no known ZVAL.
    """
    if incar.get("NELECT") is None:
        return 0.0
    from dftflow.inputs.vasp import POTCAR_ZVAL
    from dftflow.structures.convert import species_blocks

    _, counts = species_blocks(structure)
    try:
        neutral = sum(POTCAR_ZVAL[sym] * n for sym, n in zip(potcar_symbols, counts, strict=True))
    except KeyError:
        return None
    return round(float(neutral) - float(incar["NELECT"]), 6)


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
