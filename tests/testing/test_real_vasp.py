"""Real VASP data lives outside the repository; a missing data set fails the test (no skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftflow.testing import real_vasp
from dftflow.testing.real_vasp import ENV_VAR, real_vasp_dir


def test_missing_data_set_fails_with_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as exc:
        real_vasp_dir("custodian/v544_ispin1_static")
    msg = str(exc.value)
    assert str(tmp_path / "custodian" / "v544_ispin1_static") in msg
    assert f"${ENV_VAR}" in msg and "../shared/real_vasp" in msg


def test_shared_folder_beside_the_clone_without_the_variable(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert real_vasp.candidate_roots() == [repo.parent / "shared" / "real_vasp"]
