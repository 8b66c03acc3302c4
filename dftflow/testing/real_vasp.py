"""Locate real VASP output data that is kept out of the repository.

Real VASP runs copied from repository snapshots (custodian's ``tests/files``,
pymatgen-analysis-defects' ``Mg_Ga``) may not be committed: they live beside the clone in
``<repo>/../shared/real_vasp/<name>/`` or in ``$DFTFLOW_REAL_VASP_DIR/<name>/``. Tests ask for a
data set with :func:`real_vasp_dir`; when it is absent the test **fails** (it never skips: CI must
run every real-VASP check) with a message that says what to put where.

Known data sets (see the README.md inside each folder for source, commit and licence):

* ``custodian`` - folders ``v533_ispin2_relax``, ``v535_truncated_vasprun``,
  ``v541_ispin2_static_lorbit_quirk``, ``v544_ispin1_static``, ``v641_unconverged``, ``v642_relax``
  from https://github.com/materialsproject/custodian ``tests/files/`` (MIT).
* ``Mg_Ga`` - ``bulk_sc/`` and ``q=0/`` from
  https://github.com/materialsproject/pymatgen-analysis-defects ``tests/test_files/Mg_Ga/``
  (BSD-3-Clause-LBNL).

Small public files (custodian's ``vasp.<error>`` outputs, pymatgen-core's bcc-Li CHGCAR/LOCPOT) are
committed test data in ``tests/data/public/`` (source, commit and licence in its README.md);
:func:`public_data` finds them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV_VAR = "DFTFLOW_REAL_VASP_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared" / "real_vasp"
PUBLIC_DATA_DIR = REPO_ROOT / "tests" / "data" / "public"


def candidate_roots() -> list[Path]:
    """Folders searched for real VASP data sets, in order.

    Returns
    -------
    list of Path
        ``$DFTFLOW_REAL_VASP_DIR`` (when set; it then is the only place looked at), else
        ``<repo>/../shared/real_vasp``.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return [Path(env)]
    return [SHARED_DIR]


def find_real_vasp_dir(name: str) -> Path | None:
    """Return the folder of data set ``name`` if present, else ``None``.

    Parameters
    ----------
    name : str
        Data-set folder name, e.g. ``"custodian"`` or ``"Mg_Ga"``; may contain ``/`` for a
        sub-folder (``"custodian/v544_ispin1_static"``).

    Returns
    -------
    Path or None
        The first existing, non-empty ``<root>/<name>`` folder of :func:`candidate_roots`.
    """
    for root in candidate_roots():
        folder = root / name
        if folder.is_dir() and any(folder.iterdir()):
            return folder
    return None


def real_vasp_dir(name: str) -> Path:
    """Return the folder of real VASP data set ``name`` or fail the calling test.

    Parameters
    ----------
    name : str
        Data-set folder name (see the module docstring), optionally with a sub-folder.

    Returns
    -------
    Path
        The data folder.

    Raises
    ------
    pytest.fail.Exception
        When the data set is absent (a test failure, not a skip); the message names the folder to
        create and where.
    """
    folder = find_real_vasp_dir(name)
    if folder is None:
        where = " or ".join(str(root / name) for root in candidate_roots())
        pytest.fail(
            f"real VASP data '{name}' not found in {where}: put the data set in "
            f"${ENV_VAR}/{name} or, without that variable, in <repo>/../shared/real_vasp/{name} "
            "(beside the clone); source and licence are in dftflow/testing/real_vasp.py",
            pytrace=False,
        )
    return folder


def public_data(name: str) -> Path:
    """Return the folder ``tests/data/public/<name>`` of the clone, or fail the calling test.

    Parameters
    ----------
    name : str
        ``"custodian_vasp_errors"`` or ``"pymatgen_core"``.

    Returns
    -------
    Path
        The data folder (committed with the tests; absent only in an installed copy without them).
    """
    folder = PUBLIC_DATA_DIR / name
    if not folder.is_dir():
        pytest.fail(f"test data {folder} missing: run the tests from a clone", pytrace=False)
    return folder
