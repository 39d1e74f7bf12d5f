"""SIGTERM and SIGHUP are handled like Ctrl-C, in real CLI processes, at every point a run can be stopped.

Each case starts ``python -m actionmesh_core video-to-4d`` (tiny weights, a small user mesh) over a previous
output (the animated GLB and per-frame GLBs of an earlier run), waits for the progress line that says where the
run is, sends the signal, and checks: the exit status (128 + signal), ONE line on stderr besides the progress
lines, the previous files byte-identical, and nothing else left in the output folders (no temporary file, no
staging folder). Progress lines come every step (``ACTIONMESH_PROGRESS_INTERVAL=0``), stderr being a pipe.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trimesh

import bad_input_cases as cases
import data_dirs
from actionmesh_core.io.mesh_io import save_mesh

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = data_dirs.REPO_ROOT
SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143), "SIGHUP": (signal.SIGHUP, 129)}
PROGRESS = ("export: ", "warning: ", "PER-FRAME ")
#: a plain progress line of actionmesh_core.progress (any stage: dinov2, stage1, stage2, ...)
PROGRESS_LINE = re.compile(r"^[\w-]+( window \d+/\d+)?: (step \d+/\d+ \(|done, \d+ steps in )")

# the CLI with its per-frame GLB writes slowed down (a signal then lands between two of them)
SLOW_PER_FRAME = (cases.SLOW_PER_FRAME + "import runpy\nsys.argv = ['actionmesh'] + sys.argv[1:]\n"
                  "runpy.run_module('actionmesh_core', run_name='__main__')\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from actionmesh_core.weights import make_tiny_weights

    tmp = tmp_path_factory.mktemp("signals")
    mesh = tmp / "sphere.glb"
    save_mesh(trimesh.creation.icosphere(1), mesh)
    return cases.World(tmp=tmp, frames=cases.write_frames(tmp / "frames", count=5),
                       weights=make_tiny_weights(tmp / "w"), out=tmp / "unused.glb"), mesh


def _snapshot(*folders):
    """{relative path: bytes} of every entry (hidden ones too) under the folders."""
    out = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            out[str(path.relative_to(folder.parent))] = path.read_bytes() if path.is_file() else b"<dir>"
    return out


def _previous_output(tmp: Path, name: str):
    """An earlier run's output: the GLB and 5 per-frame GLBs (arbitrary bytes: they must come back unchanged)."""
    out_dir = tmp / name
    per_frame = out_dir / "frames"
    per_frame.mkdir(parents=True)
    (out_dir / "a.glb").write_bytes(b"previous animated GLB " + name.encode())
    for k in range(5):
        (per_frame / f"a_{k:03d}.glb").write_bytes(f"previous frame {k}".encode())
    return out_dir, per_frame


def _run_and_signal(cmd, marker: str, signum: int, timeout: float = 600.0):
    """Start ``cmd``, wait for a stderr line starting with ``marker``, send ``signum``; (status, stderr lines)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACTIONMESH_PROGRESS_INTERVAL": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    lines = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith(marker):
                proc.send_signal(signum)
                break
        assert lines and lines[-1].startswith(marker), (marker, lines[-20:], proc.poll())
        rest = proc.communicate(timeout=180)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, lines + rest.splitlines()


POINTS = {
    # a stage: stage I is running (its third step reported)
    "stage": ("stage1: step 3/", ["--steps", "400"], False),
    # an export: Blender (a child process) is writing the FBX from the staged GLB (marker bpy)
    "export": ("export: writing fbx", ["--steps", "2", "--format", "fbx"], False),
    # between per-frame files: the second of five static GLBs was just staged
    "per-frame": ("PER-FRAME a_001.glb", ["--steps", "2"], True),
}


@pytest.mark.parametrize("point", [pytest.param(p, marks=pytest.mark.bpy) if p == "export" else p for p in POINTS])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_stops_the_run_in_one_line_and_changes_nothing(world, tmp_path, name, point):
    (w, mesh) = world
    signum, status = SIGNALS[name]
    marker, extra, slow = POINTS[point]
    out_dir, per_frame = _previous_output(tmp_path, "out")
    out = out_dir / ("a.fbx" if "fbx" in extra else "a.glb")
    if out.suffix == ".fbx":
        out.write_bytes(b"previous FBX")
    before = _snapshot(out_dir)
    argv = w.argv("--mesh", mesh, "--octree-depth", 5, "--refine-depth", 5, "--per-frame-dir", per_frame, *extra,
                  out=out)
    cmd = [sys.executable, "-c", SLOW_PER_FRAME, *argv] if slow else [sys.executable, "-m", "actionmesh_core", *argv]
    code, lines = _run_and_signal(cmd, marker, signum)
    assert code == status, lines[-20:]
    said = [line for line in lines
            if line.strip() and not line.startswith(PROGRESS) and not PROGRESS_LINE.match(line)]
    head = "interrupted" if name == "SIGINT" else f"interrupted by {name}"
    assert said == [f"{head}: stopped before finishing; no output file was written or changed"], lines[-20:]
    assert _snapshot(out_dir) == before  # previous files byte-identical, no temporary file or staging folder


def test_signal_during_the_first_run_leaves_no_folder(world, tmp_path):
    """No previous output: the folders made for the outputs are removed again (the message says nothing was
    written)."""
    (w, mesh) = world
    out = tmp_path / "new" / "deeper" / "a.glb"
    per_frame = tmp_path / "new_frames"
    argv = w.argv("--mesh", mesh, "--steps", 2, "--octree-depth", 5, "--refine-depth", 5, "--per-frame-dir",
                  per_frame, out=out)
    code, lines = _run_and_signal([sys.executable, "-c", SLOW_PER_FRAME, *argv], "PER-FRAME a_002.glb",
                                  signal.SIGTERM)
    assert code == 143, lines[-20:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))


def test_handlers_are_restored_and_a_second_signal_does_not_cut_the_clean_up():
    """In process: handle_signals turns SIGTERM into Interrupted (a KeyboardInterrupt) once, holds later signals
    back while the clean-up runs, holds a signal back through ``deferred`` and restores the old handlers."""
    from actionmesh_core.interrupts import Interrupted, deferred, exit_code, handle_signals

    previous = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with handle_signals():
        with pytest.raises(Interrupted) as info:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1.0)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second one, during the clean-up: held back
                time.sleep(0.1)
                cleaned.append(True)
        assert cleaned == [True] and isinstance(info.value, KeyboardInterrupt) and exit_code(info.value) == 143
    assert signal.getsignal(signal.SIGTERM) is previous
    with handle_signals():
        with pytest.raises(Interrupted) as info:
            with deferred():
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(0.1)
                cleaned.append("finished inside")  # the critical step completes
        assert cleaned[-1] == "finished inside" and info.value.exit_code == 129
