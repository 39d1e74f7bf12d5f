"""Table of bad inputs, signals and faults: exit code, seconds until the error, message, previous output, leftovers.

Usage: ``python benchmarks/bad_inputs_table.py [--markdown] [--only SUBSTRING] [--no-nodes]``.

Builds tiny weights and frames in a temporary folder and runs, each in a REAL process
(``python -m actionmesh_core``, as a user does):

* every case of ``tests/bad_input_cases.py`` (one thing broken in a valid run);
* signals: SIGINT / SIGTERM / SIGHUP while a stage runs, while Blender writes an FBX, and between two
  per-frame files (the per-frame writer slowed down, as in ``tests/integration/test_signals.py``);
* faults: a disk with clearly too little free space (``shutil.disk_usage`` reports 2 KB free), a full disk
  during the write (``write()`` fails with ENOSPC after 100 bytes), a real file-size limit (``RLIMIT_FSIZE``:
  the kernel's EFBIG), and batch cases (``--fps 0``, a single-point mesh, SIGTERM mid-clip).

Before each case a previous output (arbitrary bytes) is put at ``--out`` (and per-frame files in
``--per-frame-dir``) where that path can hold a file; after it the table says whether those bytes are
unchanged and lists every new entry of the output folders (temporary files, staging folders, outputs).
Seconds: from the process start (imports included, ~2-4 s of torch) to its exit; for signals, from
the signal to the exit. Node rows (in process) follow unless ``--no-nodes``.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import bad_input_cases as cases  # noqa: E402

PREVIOUS = b"previous output of an earlier run"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "ACTIONMESH_PROGRESS_INTERVAL": "0"}

# the library started with one fault injected (faults a test machine cannot produce on demand)
FAULTS = {
    "little free space": """
import collections, shutil
shutil.disk_usage = lambda path: collections.namedtuple("u", "total used free")(10 ** 12, 10 ** 12 - 2048, 2048)
""",
    "full disk during the write": """
import errno, builtins
import actionmesh_core.io.atomic as atomic
real_open = builtins.open
def full_open(path, mode="r", *a, **k):
    handle = real_open(path, mode, *a, **k)
    if "w" in mode and str(path).endswith(".tmp"):
        real_write, budget = handle.write, [100]
        def write(data):
            if len(data) > budget[0]:
                raise OSError(errno.ENOSPC, "No space left on device")
            budget[0] -= len(data)
            return real_write(data)
        handle.write = write
    return handle
atomic.open = full_open
""",
    "file-size limit 4 KB (RLIMIT_FSIZE)": """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel's EFBIG instead of a core dump
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
""",
    "per-frame files slowed": cases.SLOW_PER_FRAME,
}
_RUNNER = "import runpy, sys\n{fault}\nsys.argv = ['actionmesh'] + sys.argv[1:]\nrunpy.run_module('actionmesh_core', run_name='__main__')\n"


def _command(argv, fault=None):
    if fault is None:
        return [sys.executable, "-m", "actionmesh_core", *map(str, argv)]
    return [sys.executable, "-c", _RUNNER.format(fault=textwrap.dedent(FAULTS[fault])), *map(str, argv)]


def _option(argv, name):
    return Path(argv[argv.index(name) + 1]) if name in argv else None


def _prepare_previous(out, per_frame):
    """Put a previous output where one can be; returns (files holding previous bytes, folders to watch)."""
    planted = {}
    watch = []
    if out is not None:
        parent = out.parent
        if parent.is_dir() or not any(p.exists() and not p.is_dir() for p in parent.parents):
            try:
                if out.exists() and out.is_file():
                    planted[out] = out.read_bytes()  # an input: its own bytes are the "previous output"
                elif not out.exists():
                    parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(PREVIOUS)
                    planted[out] = PREVIOUS
            except OSError:
                pass
        if parent.is_dir():
            watch.append(parent)
    if per_frame is not None:
        try:
            per_frame.mkdir(parents=True, exist_ok=True)
            for k in range(2):
                frame = per_frame / f"{out.stem if out else 'a'}_{k:03d}.glb"
                frame.write_bytes(PREVIOUS)
                planted[frame] = PREVIOUS
            watch.append(per_frame)
        except OSError:
            pass
    return planted, watch


def _listing(folders):
    return {str(p) for folder in folders if folder.is_dir() for p in folder.iterdir()}


#: a plain progress line of actionmesh_core.progress (any stage: dinov2, stage1, stage2, ...)
_PROGRESS_LINE = re.compile(r"^[\w-]+( window \d+/\d+)?: (step \d+/\d+ \(|done, \d+ steps in )")


def _message(text, tmp, stdout=""):
    """The line a user reads: the last stderr line that is not progress; for a run that succeeded, its notes
    (``note: ...``) or else the CLI's ``wrote ...`` line."""
    lines = [ln for ln in text.replace("\r", "\n").splitlines()
             if ln.strip() and not ln.startswith(("stage", "export: ", "PER-FRAME ", "batch: ", "["))
             and not _PROGRESS_LINE.match(ln)]
    wrote = [ln for ln in stdout.splitlines() if ln.startswith("wrote ")]
    message = lines[-1] if lines else (wrote[-1] if wrote else "(nothing)")
    if any(ln.startswith("Traceback") for ln in lines):
        message = "TRACEBACK: " + message
    return message.replace(str(tmp), "<tmp>")


def _verdict(planted, before, watch, tmp, code):
    """(previous output intact?, files left behind): after a success the outputs replace it, as asked."""
    new = sorted(Path(n).name for n in _listing(watch) - before)
    junk = [n for n in new if n.startswith(".") or n.endswith(".tmp")]
    if code == 0:
        return "replaced (run succeeded)", ", ".join(junk) or f"none (outputs: {', '.join(new) or 'in place'})"
    intact = "n/a" if not planted else ("yes" if all(p.exists() and p.read_bytes() == data
                                                    for p, data in planted.items()) else "NO")
    return intact, ", ".join(new) or "none"


def _spawn(argv, tmp, fault=None, marker=None, signum=None, delay=0.0):
    """Run the CLI; with ``marker``, send ``signum`` ``delay`` s after a stderr line starts with it.

    Returns (status, seconds, stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(_command(argv, fault), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=str(tmp))
    seen = []
    if marker is not None:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(marker):
                time.sleep(delay)
                start = time.perf_counter()
                proc.send_signal(signum)
                break
    stdout, stderr = proc.communicate(timeout=900)
    return proc.returncode, time.perf_counter() - start, "".join(seen) + stderr, stdout


def _run_case(rows, name, argv, tmp, fault=None, marker=None, signum=None, out=None, per_frame=None):
    out = out if out is not None else _option(argv, "--out")
    per_frame = per_frame if per_frame is not None else _option(argv, "--per-frame-dir")
    planted, watch = _prepare_previous(out, per_frame)
    before = _listing(watch)
    code, seconds, stderr, stdout = _spawn(argv, tmp, fault, marker, signum)
    intact, left = _verdict(planted, before, watch, tmp, code)
    rows.append((name, str(code), f"{seconds:.1f}", _message(stderr, tmp, stdout), intact, left))
    for path in planted:  # the next case starts from a clean folder
        if path.exists() and path.read_bytes() == PREVIOUS:
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--no-nodes", action="store_true", help="leave out the node rows")
    args = parser.parse_args()

    from actionmesh_core.io.mesh_io import save_mesh
    from actionmesh_core.weights import make_tiny_weights
    import trimesh

    tmp = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    rows = []
    try:
        world = cases.World(tmp=tmp, frames=cases.write_frames(tmp / "frames"),
                            weights=make_tiny_weights(tmp / "weights"), out=tmp / "out" / "a.glb")
        mesh = tmp / "sphere.glb"
        save_mesh(trimesh.creation.icosphere(1), mesh)
        quick = ["--mesh", mesh, "--octree-depth", 5, "--refine-depth", 5]

        def wanted(name):
            return args.only is None or args.only.lower() in name.lower()

        for case in cases.CASES:
            if wanted(case.name):
                _run_case(rows, case.name, case.build(world), tmp)
        # accepted inputs that used to fail (exit 0: the previous output is replaced, as asked)
        accepted = [("out x.GLB (upper-case suffix): accepted", world.argv(*quick, "--steps", 2, out=tmp / "o" / "x.GLB")),
                    ("macOS ._* and .DS_Store in the frames: skipped with a note",
                     world.argv(*quick, "--steps", 2, frames=_junk_frames(tmp), out=tmp / "o" / "j.glb"))]
        for name, argv in accepted:
            if wanted(name):
                _run_case(rows, name, argv, tmp)
        for point, marker, extra, fault in (
                ("while stage I runs", "stage1: step 3/", ["--steps", 400], None),
                ("while Blender writes the FBX", "export: writing fbx", ["--steps", 2, "--format", "fbx"], None),
                ("between two per-frame files", "PER-FRAME ", ["--steps", 2], "per-frame files slowed")):
            for sig in ("SIGINT", "SIGTERM", "SIGHUP"):
                name = f"{sig} {point}"
                if not wanted(name):
                    continue
                out = tmp / "sig" / ("a.fbx" if "fbx" in extra else "a.glb")
                argv = world.argv(*quick, "--per-frame-dir", tmp / "sig" / "frames", *extra, out=out)
                _run_case(rows, name, argv, tmp, fault=fault, marker=marker, signum=getattr(signal, sig))
        for fault in ("little free space", "full disk during the write", "file-size limit 4 KB (RLIMIT_FSIZE)"):
            name = f"fault: {fault}"
            if wanted(name):
                _run_case(rows, name, world.argv(*quick, "--steps", 2, "--per-frame-dir", tmp / "fault" / "frames",
                                                 out=tmp / "fault" / "a.glb"), tmp, fault=fault)
        _batch_rows(rows, tmp, world, mesh, wanted)
        if not args.no_nodes and args.only is None:
            _node_rows(rows, tmp, world)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    header = ("case", "exit code", "seconds until the error", "message", "previous output intact", "files left behind")
    if args.markdown:
        print("| # | " + " | ".join(header) + " |")
        print("|---|" + "---|" * len(header))
        for k, row in enumerate(rows, 1):
            cells = [c.replace("|", "\\|")[:170] + ("..." if len(c) > 170 else "") for c in row]
            print(f"| {k} | " + " | ".join(cells) + " |")
    else:
        for row in rows:
            print("\t".join(row))


def _junk_frames(tmp):
    folder = cases.write_frames(tmp / "junk_frames", count=4)
    for name in ("._0000.png", "._0001.png", ".DS_Store"):
        (folder / name).write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    return folder


def _batch_rows(rows, tmp, world, mesh, wanted):
    """Batch: --fps 0 up front; a single-point mesh (its clip fails as `input`, the batch goes on); SIGTERM."""
    clips = [cases.write_frames(tmp / "clips" / f"c{k}", count=4) for k in range(2)]
    point = tmp / "point.obj"
    point.write_bytes(b"v 0.5 0.5 0.5\nv 0.5 0.5 0.5\nv 0.5 0.5 0.5\nv 0.5 0.5 0.5\nf 1 2 3\nf 2 3 4\n")
    manifest = tmp / "clips.csv"
    manifest.write_text(f"clip,mesh\n{clips[0]},{point}\n{clips[1]},{mesh}\n")
    def base(steps):
        return ["--weights", world.weights, "--device", "cpu", "--steps", steps, "--octree-depth", 5,
                "--refine-depth", 5, "--no-progress"]

    for name, argv, marker, sig, out in (
            ("batch --fps 0", ["batch", *clips, "--out", tmp / "b1", *base(2), "--fps", 0], None, None, tmp / "b1"),
            ("batch: a clip whose mesh is a single point (error kind input)",
             ["batch", manifest, "--out", tmp / "b2", *base(2)], None, None, tmp / "b2"),
            ("batch: SIGTERM while the second clip runs",
             ["batch", *clips, "--mesh", mesh, "--out", tmp / "b3", *base(100)[:-1]], "[1/2]", signal.SIGTERM,
             tmp / "b3")):
        if not wanted(name):
            continue
        code, seconds, stderr, _ = _spawn([str(a) for a in argv], tmp, None, marker, sig, delay=0.5)
        report = out / "report.jsonl"
        detail = _message(stderr, tmp)
        if report.is_file():
            import json

            kinds = [f"{r['clip']}: {r['status']}"
                     + (f" [{r['error_kind']}]" if r.get("error_kind") else "")
                     + (f" {r.get('error')}" if r.get("error_kind") or r["status"] == "interrupted" else "")
                     for r in map(json.loads, report.read_text().splitlines())]
            detail = "; ".join(kinds).replace(str(tmp), "<tmp>")
        left = sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp") \
            if out.is_dir() else []
        rows.append((name, str(code), f"{seconds:.1f}", detail, "n/a", ", ".join(left) or "none"))


def _node_rows(rows, tmp, world):
    import importlib.util
    import warnings

    import torch

    os.environ["ACTIONMESH_MODELS_DIR"] = str(tmp / "models")
    os.environ["ACTIONMESH_OUTPUT_DIR"] = str(tmp / "output")
    (tmp / "output").mkdir()
    spec = importlib.util.spec_from_file_location("actionmesh_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["actionmesh_pack"] = pack
    spec.loader.exec_module(pack)
    host = sys.modules["actionmesh_pack.nodes.host"]
    nodes = pack.NODES
    (tmp / "outside").mkdir()
    (tmp / "output" / "link").symlink_to(tmp / "outside", target_is_directory=True)
    den = tmp / "models" / "actionmesh" / "denoiser"
    shutil.copytree(world.weights / "ActionMesh" / "denoiser", den)
    cases._truncate(den / "model.safetensors")
    dino = tmp / "models" / "dinov2" / "dinov2-large"
    shutil.copytree(world.weights / "dinov2-large", dino)
    (dino / "model.safetensors").rename(dino / "pytorch_model.bin")
    images = torch.zeros(3, 64, 64, 4)
    images[:, 20:40, 20:40] = 1.0
    tiny = torch.zeros(3, 200, 300, 4)
    tiny[:, 100:102, 150:152] = 1.0
    node_cases = [
        ("prefix '../escape'", lambda: host.next_output_path("../escape", "glb")),
        ("prefix '/tmp/abs'", lambda: host.next_output_path("/tmp/abs", "glb")),
        ("prefix with a control character", lambda: host.next_output_path("run\x1b[31m", "glb")),
        ("prefix through a symlink outside", lambda: host.next_output_path("link/deep/x", "glb")),
        ("prefix in Cyrillic (accepted)", lambda: host.next_output_path("верблюд/run", "glb")),
        ("truncated denoiser in the loader", lambda: nodes["ActionMeshLoadDenoiser"].execute("denoiser", "fp32")),
        ("DINOv2 .bin only in the loader", lambda: nodes["ActionMeshLoadDINOv2"].execute("dinov2-large", "fp32")),
        ("Prepare Frames: start past the batch", lambda: nodes["ActionMeshPrepareFrames"].execute(
            images, 256, 0.1, 0.1, 5, 1, 0, 24.0, False)),
        ("Prepare Frames: one frame", lambda: nodes["ActionMeshPrepareFrames"].execute(
            images, 256, 0.1, 0.1, 0, 1, 1, 24.0, False)),
        ("Prepare Frames: mask batch of 2 for 3", lambda: nodes["ActionMeshPrepareFrames"].execute(
            images, 256, 0.1, 0.1, 0, 1, 0, 24.0, False, mask=torch.ones(2, 64, 64))),
        ("Prepare Frames: 2x2 px object (warning)", lambda: nodes["ActionMeshPrepareFrames"].execute(
            tiny, 256, 0.1, 0.1, 0, 1, 0, 24.0, False)),
    ]
    for name, call in node_cases:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                call()
                message, kind = "; ".join(str(w.message) for w in caught) or "(accepted)", "ok"
            except (ValueError, OSError) as exc:
                message, kind = str(exc), type(exc).__name__
        rows.append((f"node: {name}", kind, f"{time.perf_counter() - start:.2f}",
                     message.strip().replace(str(tmp), "<tmp>"), "n/a", "n/a"))
    leaked = list((tmp / "outside").iterdir())
    rows.append(("node: folders created outside through the symlink", "check", "0", str(leaked or "none"), "n/a",
                 "n/a"))


if __name__ == "__main__":
    main()
