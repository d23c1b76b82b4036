"""Atomic writes: complete or absent, and readable by colleagues (the umask's mode, not mkstemp's 0600)."""

import os
import stat

import pytest

from kesheng.files.atomic import atomic_path, replace_directory, staging_directory, write_atomic


def test_written_file_gets_the_default_mode(tmp_path):
    old = os.umask(0o022)
    try:
        target = write_atomic(tmp_path / "report.html", "<p>报告</p>")
    finally:
        os.umask(old)
    assert target.read_text(encoding="utf-8") == "<p>报告</p>"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_directory_is_replaced_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.json").write_text("{}")
    staging = staging_directory(target)
    (staging / "new.json").write_text("{}")
    replace_directory(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
