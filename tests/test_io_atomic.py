"""Atomic writes: the previous file survives any failure and no partial/temporary file remains."""
from __future__ import annotations

import os

import pytest

from actionmesh_core.io.atomic import atomic_path, atomic_write, atomic_write_bytes


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.glb"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _listing(tmp_path) == ["a.glb"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_previous_file(tmp_path, error):
    target = tmp_path / "a.glb"
    atomic_write_bytes(target, b"good old file")
    with pytest.raises(type(error)):
        with atomic_write(target) as handle:
            handle.write(b"glTF partial")
            raise error
    assert target.read_bytes() == b"good old file"
    assert _listing(tmp_path) == ["a.glb"]


def test_failure_before_any_previous_file_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.usdc") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("library failed")
    assert _listing(tmp_path) == []


def test_text_mode_and_permissions_of_replaced_file(tmp_path):
    target = tmp_path / "report.jsonl"
    target.write_text("old")
    os.chmod(target, 0o640)
    with atomic_write(target, "w") as handle:
        handle.write("néw\n")
    assert target.read_text(encoding="utf-8") == "néw\n"
    assert (target.stat().st_mode & 0o777) == 0o640


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "x.glb", b"x")
