"""The one atomic-write helper: all or nothing at the target path."""

from __future__ import annotations

import pytest

from dftflow.fileio import atomic_path, atomic_write_text


def test_atomic_write_text_replaces_whole_file(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    assert atomic_write_text(target, "new", durable=True) == target
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left


def test_atomic_path_failure_keeps_old_content(tmp_path):
    target = tmp_path / "figure.png"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]
