"""No output is ever lost: atomic writes under a full disk, SIGKILL and Ctrl-C; CLI exit codes 0/1/2/130."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import trimesh

import bad_input_cases as cases
import data_dirs
from actionmesh_core.cli import main
from actionmesh_core.io import atomic
from actionmesh_core.io.animated_mesh import AnimatedMesh
from actionmesh_core.io.glb import export_animated_glb, export_static_glbs, read_animated_glb
from actionmesh_core.io.mesh_io import save_mesh

ROOT = data_dirs.REPO_ROOT


def _anim(frames=3, seed=0):
    box = trimesh.creation.box()
    rng = np.random.default_rng(seed)
    verts = np.stack([box.vertices + 0.1 * k + rng.normal(0, 0.01, box.vertices.shape) for k in range(frames)])
    return AnimatedMesh(faces=np.asarray(box.faces), vertices=verts.astype(np.float32),
                        times=np.arange(frames, dtype=np.float32) / 24)


class _FullDisk:
    """``open`` for atomic.py whose files accept ``budget`` bytes, then fail with ENOSPC like a full disk."""

    def __init__(self, budget):
        self.budget = budget

    def __call__(self, path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return handle
        disk = self

        class Limited:
            def __getattr__(self, name):
                return getattr(handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()
                return False

            def write(self, data):
                if len(data) > disk.budget:
                    handle.write(data[:disk.budget])
                    disk.budget = 0
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
                disk.budget -= len(data)
                return handle.write(data)

        return Limited()


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("writer", ["animated_glb", "per_frame_glbs", "save_mesh_obj", "save_mesh_glb"])
def test_full_disk_keeps_the_previous_files(tmp_path, monkeypatch, writer):
    old, new = _anim(seed=0), _anim(seed=1)
    target = tmp_path / "a.glb"

    def write(anim):
        if writer == "animated_glb":
            export_animated_glb(anim, target)
        elif writer == "per_frame_glbs":
            export_static_glbs(anim, tmp_path, "a")
        else:
            ext = ".obj" if writer == "save_mesh_obj" else ".glb"
            save_mesh(anim.frame_mesh(1), tmp_path / f"a{ext}")

    write(old)
    before = {name: (tmp_path / name).read_bytes() for name in _listing(tmp_path)}
    monkeypatch.setattr(atomic, "open", _FullDisk(budget=100), raising=False)
    with pytest.raises(OSError) as info:
        write(new)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    after = {name: (tmp_path / name).read_bytes() for name in _listing(tmp_path)}
    assert after == before  # previous good files intact, no partial or temporary file
    if writer == "animated_glb":
        np.testing.assert_allclose(read_animated_glb(target).vertices, old.vertices, atol=1e-6)


def test_sigkill_during_a_glb_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "a.glb"
    export_animated_glb(_anim(seed=0), target)
    good = target.read_bytes()
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(ROOT)!r}, {str(data_dirs.TESTS_DIR)!r}, {str(Path(__file__).resolve().parent)!r}]
        import numpy as np
        from actionmesh_core.io import atomic
        from actionmesh_core.io.glb import export_animated_glb
        from test_robust_outputs import _anim
        real_open = open
        def slow_open(path, mode="r", *a, **k):
            handle = real_open(path, mode, *a, **k)
            if "w" in mode:
                real_write = handle.write
                def write(data):
                    n = real_write(data[: len(data) // 2]); handle.flush()
                    print("WRITING", flush=True); time.sleep(60)
                    return n + real_write(data[len(data) // 2:])
                handle.write = write
            return handle
        atomic.open = slow_open
        export_animated_glb(_anim(seed=1), {str(target)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == good  # the killed write never touched the final name
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "a.glb"]
    assert all(name.startswith(".a.") and name.endswith(".glb.tmp") for name in leftovers), leftovers


# --------------------------------------------------------------------------- CLI exit codes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from actionmesh_core.weights import make_tiny_weights

    tmp = tmp_path_factory.mktemp("cli")
    return cases.World(tmp=tmp, frames=cases.write_frames(tmp / "frames"), weights=make_tiny_weights(tmp / "w"),
                       out=tmp / "out" / "a.glb")


def _fake_result(anim):
    from actionmesh_core.pipeline import PipelineResult

    return PipelineResult(animation=anim, latents=None, anchor_mesh=None, timings={})


def test_exit_1_for_a_bug_with_its_traceback(world, monkeypatch, capsys):
    from actionmesh_core import pipeline

    def bug(self, frames, mesh=None, **kwargs):
        raise RuntimeError("internal shape bug")

    monkeypatch.setattr(pipeline.ActionMeshPipeline, "run", bug)
    assert main(world.argv()) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal shape bug" in err and "bug" in err.splitlines()[-1]


def test_exit_130_on_interrupt_without_partial_output(world, monkeypatch, capsys):
    from actionmesh_core import pipeline
    from actionmesh_core.export import glb

    monkeypatch.setattr(pipeline.ActionMeshPipeline, "run", lambda self, plan, **k: _fake_result(_anim()))
    real = atomic.atomic_write

    def interrupted(path, mode="wb", encoding=None):  # Ctrl-C in the middle of writing the GLB
        class Boom:
            def __enter__(self_inner):
                self_inner.ctx = real(path, mode, encoding)
                handle = self_inner.ctx.__enter__()
                handle.write(b"glTF partial")
                try:
                    raise KeyboardInterrupt
                except KeyboardInterrupt:
                    import sys as _sys
                    self_inner.ctx.__exit__(*_sys.exc_info())
                    raise
            def __exit__(self_inner, *exc):
                return False
        return Boom()

    monkeypatch.setattr(glb, "atomic_write", interrupted)
    frames_dir = world.tmp / "per_frame"
    assert main(world.argv("--per-frame-dir", frames_dir)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("export: writing glb") and err[1:] == ["", "interrupted: stopped before finishing; no "
                                                                       "output file was written or changed"], err
    assert not world.out.exists()
    # the folders made for the outputs are removed again, with the staged per-frame files (moved in at the end only)
    assert not world.out.parent.exists() and not frames_dir.exists()


def test_os_error_is_one_line_naming_the_path_and_keeps_the_old_glb(world, monkeypatch, capsys):
    from actionmesh_core import pipeline

    world.out.parent.mkdir(parents=True, exist_ok=True)
    export_animated_glb(_anim(seed=3), world.out)
    good = world.out.read_bytes()
    monkeypatch.setattr(pipeline.ActionMeshPipeline, "run", lambda self, plan, **k: _fake_result(_anim(seed=4)))
    monkeypatch.setattr(atomic, "open", _FullDisk(budget=50), raising=False)
    assert main(world.argv()) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("export: ")]
    assert err == [f"error: No space left on device: {world.out}"], err
    assert world.out.read_bytes() == good and _listing(world.out.parent) == [world.out.name]


def test_exit_0_writes_glb_and_per_frame_files(world, monkeypatch, capsys):
    from actionmesh_core import pipeline

    out = world.tmp / "ok" / "b.glb"
    monkeypatch.setattr(pipeline.ActionMeshPipeline, "run", lambda self, plan, **k: _fake_result(_anim(frames=4)))
    assert main(world.argv("--per-frame-dir", world.tmp / "ok" / "frames", "--fps", 12, out=out)) == 0
    assert read_animated_glb(out).num_frames == 4
    assert _listing(world.tmp / "ok" / "frames") == [f"b_{k:03d}.glb" for k in range(4)]
    assert "wrote" in capsys.readouterr().out


# Ctrl-C, SIGTERM and SIGHUP in real runs: tests/integration/test_signals.py


def _run_entry(tmp_path, argv, before=""):
    """``actionmesh_core.cli.run`` (the console entry point) in a child process, output piped."""
    import subprocess

    code = f"""
import atexit, sys
atexit.register(lambda: open({str(tmp_path / 'atexit-ran')!r}, 'w').write('yes'))
{before}
sys.argv = ['actionmesh'] + {argv!r}
from actionmesh_core.cli import run
run()
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_entry_point_exits_fast_with_status_output_and_atexit(tmp_path):
    """The console entry point skips the interpreter's teardown but keeps what a normal exit does: the exit status,
    piped (block-buffered) stdout and stderr flushed, atexit handlers run."""
    ok = _run_entry(tmp_path, ["make-tiny-weights", str(tmp_path / "w")])
    assert ok.returncode == 0 and "wrote tiny random weights" in ok.stdout, ok.stderr
    assert (tmp_path / "atexit-ran").read_text() == "yes"
    (tmp_path / "atexit-ran").unlink()
    bad = _run_entry(tmp_path, ["video-to-4d", str(tmp_path / "missing"), "--weights", str(tmp_path / "w"),
                                "--out", str(tmp_path / "o.glb")])
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "does not exist" in bad.stderr
    assert (tmp_path / "atexit-ran").exists()


def test_entry_point_waits_for_a_running_thread(tmp_path):
    """A non-daemon thread still running at the end: the normal exit path, which waits for it."""
    marker = tmp_path / "thread-done"
    before = f"""
import threading, time
threading.Thread(target=lambda: (time.sleep(1.0), open({str(marker)!r}, 'w').write('done'))).start()
"""
    proc = _run_entry(tmp_path, ["make-tiny-weights", str(tmp_path / "w")], before)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "done"
