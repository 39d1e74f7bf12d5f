"""Atomic writes: the previous file survives any failure and no partial/temporary file remains."""
from __future__ import annotations

import os
import stat

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


def test_the_temporary_file_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    """The data reaches the disk before the new name points at it: fsync of the temporary file's descriptor,
    then os.replace of that same file (a crash between them leaves the old file, never an empty new one)."""
    from actionmesh_core.io import atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino, stat.S_ISREG(st.st_mode)))  # a file (the folder is fsynced too)
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    target = tmp_path / "a.glb"
    atomic_write_bytes(target, b"payload")
    replaced = [e for e in events if e[0] == "replace"]
    assert len(replaced) == 1 and replaced[0][2] == str(target)
    inode = replaced[0][1]
    synced = [i for i, e in enumerate(events) if e[0] == "fsync" and e[1] == inode and e[2]]
    assert synced and synced[0] < events.index(replaced[0]), events
    assert target.read_bytes() == b"payload"


def test_a_write_error_without_a_file_name_names_the_target(tmp_path, monkeypatch):
    """A full disk: write() raises ENOSPC naming no file; the error names the file being written."""
    import errno

    target = tmp_path / "a.glb"
    atomic_write_bytes(target, b"old")
    with pytest.raises(OSError) as info:
        with atomic_write(target) as handle:
            handle.write(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and _listing(tmp_path) == ["a.glb"]


def test_a_file_set_moves_in_together_and_a_failure_leaves_nothing(tmp_path):
    from actionmesh_core.io.atomic import atomic_files

    (tmp_path / "seq_0000.obj").write_text("old 0")
    with pytest.raises(RuntimeError):
        with atomic_files("seq") as files:
            for k in range(3):
                atomic_write_bytes(files.path(tmp_path / f"seq_{k:04d}.obj"), b"new")
            atomic_write_bytes(files.path(tmp_path / "new" / "deep" / "f.glb"), b"x")
            assert (tmp_path / "seq_0000.obj").read_text() == "old 0"  # nothing moved in before the end
            raise RuntimeError("the writer failed after 3 frames")
    assert _listing(tmp_path) == ["seq_0000.obj"] and (tmp_path / "seq_0000.obj").read_text() == "old 0"
    with atomic_files("seq") as files:
        for k in range(3):
            atomic_write_bytes(files.path(tmp_path / f"seq_{k:04d}.obj"), b"new")
        staged = files.path(tmp_path / "sub" / "g.glb")
        atomic_write_bytes(staged, b"g")
        assert files.final(staged) == tmp_path / "sub" / "g.glb"
    assert _listing(tmp_path) == ["seq_0000.obj", "seq_0001.obj", "seq_0002.obj", "sub"]
    assert _listing(tmp_path / "sub") == ["g.glb"] and (tmp_path / "seq_0000.obj").read_bytes() == b"new"


def test_a_signal_during_the_final_move_waits_until_every_file_is_in_place(tmp_path, monkeypatch):
    """SIGTERM while the staged files move onto their names: held back until the last one is in place."""
    import signal

    from actionmesh_core.interrupts import Interrupted, handle_signals
    from actionmesh_core.io import atomic

    real_replace = os.replace
    moved = []

    def replace(src, dst):
        if not moved and "staging" in str(src):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during the first move
        real_replace(src, dst)
        moved.append(os.path.basename(dst))

    with handle_signals():
        with pytest.raises(Interrupted):
            with atomic.atomic_files() as files:
                for k in range(4):
                    atomic_write_bytes(files.path(tmp_path / f"f{k}.ply"), b"p")
                monkeypatch.setattr(atomic.os, "replace", replace)
    assert _listing(tmp_path) == [f"f{k}.ply" for k in range(4)]  # complete: no half-moved set, no staging


def test_free_space_check_refuses_what_clearly_cannot_fit(tmp_path, monkeypatch):
    import collections
    import errno
    import shutil

    from actionmesh_core.io.atomic import check_free_space

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 5000, 5000))
    check_free_space(tmp_path / "not" / "yet", 4000)
    with pytest.raises(OSError) as info:
        check_free_space(tmp_path / "not" / "yet", 6000, "glb output x.glb")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path)
    assert "glb output x.glb" in info.value.strerror and "4.9 KB" in info.value.strerror
