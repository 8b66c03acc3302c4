"""The wheel, installed into a clean venv outside the repository, runs the CLI on its package data.

The wheel is built from a copy of the sources (``pyproject.toml``, ``README.md``, ``dftflow/``), so
nothing it needs may live elsewhere in the repository. The venv has no pip and no system site
packages; the dependencies are made visible by one ``.pth`` line naming this environment's
site-packages. Lines of a ``.pth`` file only extend ``sys.path``: the ``.pth`` files inside that
directory (among them the editable install's finder) are not run, so the only ``dftflow`` the venv
can import is the one from the wheel (checked).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _build_wheel(work: Path) -> Path:
    """A wheel built from a copy of the package sources (no isolation: setuptools of this venv)."""
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "dftflow", src / "dftflow", ignore=ignore)
    dist = work / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), "."],
        src,
    )
    (wheel,) = dist.glob("dftflow-*.whl")
    return wheel


def _clean_venv(work: Path, wheel: Path) -> Path:
    """A venv holding only the wheel, with this environment's dependencies on its path."""
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    _run([*pip, "install", "--no-deps", "--no-index", "--no-compile", str(wheel)], work)
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work
    )
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.strip()) / "_dftflow_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return venv


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DFTFLOW_"))}
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(venv, a work directory outside the repository, the environment to run commands in)."""
    work = tmp_path_factory.mktemp("wheel")
    assert ROOT not in work.parents
    venv = _clean_venv(work, _build_wheel(work))
    run_dir = work / "run"
    run_dir.mkdir()
    return venv, run_dir, _env(venv)


def _dftflow(installed, *args: str) -> str:
    venv, run_dir, env = installed
    return _run([str(venv / "bin" / "dftflow"), *args], run_dir, env)


def test_the_venv_imports_dftflow_from_the_wheel_only(installed):
    venv, run_dir, env = installed
    code = (
        "import json, sys, dftflow, importlib.metadata as m;"
        "print(json.dumps([dftflow.__file__, m.version('dftflow'),"
        " [type(f).__name__ for f in sys.meta_path]]))"
    )
    out = _run([str(venv / "bin" / "python"), "-c", code], run_dir, env)
    path, version, finders = json.loads(out)
    assert Path(path).is_relative_to(venv)
    assert version == "0.1.0"
    assert not any("editable" in f.lower() for f in finders), finders
    data = Path(path).parent / "data"
    assert (data / "bulk" / "CsPbBr3_Pm-3m.cif").is_file()
    assert {p.name for p in (data / "ligands").glob("*.yaml")} >= {"OA.yaml", "AcO.yaml"}


def test_ligands_listed_from_package_data(installed):
    ligands = json.loads(_dftflow(installed, "ligands", "--json"))
    assert {"OA", "2-HA", "AcO"} <= {lig["name"] for lig in ligands}


def test_slab_complex_and_mock_calculation(installed):
    _, run_dir, _ = installed
    slab = json.loads(_dftflow(installed, "build", "slab", "-o", "slab.vasp", "--json"))
    assert slab["summary"]["formula"] == "Cs8Pb12Br32"
    assert slab["summary"]["n_atoms"] == 52
    assert (run_dir / "slab.vasp").is_file()

    _dftflow(installed, "build", "slab", "-o", "slab_v32.vasp", "--vacuum", "32")
    args = ["--slab", "slab_v32.vasp", "--ligand", "OA", "-o", "complex.vasp", "--json"]
    complex_ = json.loads(_dftflow(installed, "build", "complex", *args))
    assert complex_["summary"]["formula"] == "Cs8Pb12Br32C18H34O2"
    assert complex_["summary"]["n_atoms"] == 52 + 54
    assert (run_dir / "complex.vasp").is_file()

    # the mock VASP on a small slab keeps the test fast (the 2x2 slab takes ~15 s)
    _dftflow(installed, "build", "slab", "-o", "small.vasp", "--supercell", "1x1", "--layers", "3")
    out = _dftflow(
        installed, "calc", "small.vasp", "-s", "static", "-e", "mock", "-d", "calc", "--json"
    )
    doc = json.loads(out)
    assert doc["engine"] == "mock"
    assert doc["formula"] == "Cs1Pb2Br5"
    assert math.isfinite(doc["energy_eV"])
    assert (run_dir / "calc" / "taskdoc.json").is_file()
