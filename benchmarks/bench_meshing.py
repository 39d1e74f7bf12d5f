#!/usr/bin/env python3
"""Benchmark: narrow-band SDF meshing (library) vs the previous dense-then-refine extractor, side by side.

One run prints, per field (sphere + attached thin plate, torus, the default
sphere r = 0.5, the thin-part field: sphere + free-standing plate 2 voxels
thick + three free rods 1.5 voxels across, tiny random-weight TripoSG VAE
field), for the *old* extractor (dense 2^8 grid refined to 2^9, removed from
the tree; ``_baseline_loader.load_baseline()`` reads it from git history at a
pinned commit, so the old rows need a git checkout) and the *new* one
(``actionmesh_core.geometry.meshing.sdf_to_meshes``: 2^6 coarse grid, narrow
band up to 2^9) with sign changes only (``sdf_bound=False``, the band before
issue #23) and at its defaults (with the SDF bound):

- points evaluated (field evaluations);
- wall time and its ratio to one dense 257^3 scikit-image marching-cubes
  pass over the same field, timed in the same run (the reference); best of
  ``--repeat`` runs; beside it the ratio of process CPU times (steadier on a
  shared machine, equal to the wall ratio on a quiet one with 1 thread);
- max distance from the mesh vertices to the analytic surface, in voxels of
  the final grid (analytic fields);
- whether the thin plate is present (mesh vertices on both faces of it, far
  from the sphere), or for the thin-part field how many of its 5 parts the
  mesh holds (``--dense-check``: the band's triangles against a dense 513^3
  pass);
- peak memory of the extraction: the peak resident set size (VmHWM) above
  the process's resident size at the start, measured in a forked child per
  extractor and field (free heap pages handed back with ``malloc_trim``,
  peak reset through ``/proc/self/clear_refs``), so it
  counts torch's and numpy's buffers alike.

``--cli`` also times the 16-frame default CLI run with tiny weights old vs new
end to end: *old* is the whole library before issue #14 (``actionmesh_core``
at ``_baseline_loader.PIPELINE_COMMIT``, extracted with ``git archive`` and run
as it was), *new* this tree; each run in its own process, its peak RSS from
``os.wait4`` on that process; the CLI's own timing line split into stage 0
(and, where the CLI reports them, its sampling, meshing and clean-up), DINOv2,
stage I, stage II, export and the rest (start-up, imports, input checks).

``--half`` compares the bf16 field with the fp32 one, before and after the half-precision band was fixed
(*before*: ``meshing.py`` at ``_baseline_loader.HALF_BAND_COMMIT``, read from git history; *after*: this tree),
side by side in one run: points evaluated, field evaluations in fp32 and in bf16, the half-precision levels,
faces, the largest vertex distance to the fp32 mesh, seconds; fields: a sphere whose bf16 evaluation has a
noise of ~8 final voxels (``test_geometry_meshing.bf16_noisy_sphere``), the tiny random VAE, and the
released-size VAE with random weights (as ``gpu_check.py`` builds it) at 2^4 -> 2^6.

Usage: ``python3 benchmarks/bench_meshing.py [--fields sphere_plate,torus,vae] [--repeat 1] [--cli] [--half]``
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from actionmesh_core.geometry.meshing import sdf_to_meshes  # noqa: E402

BOUNDS = 1.005
PLATE = dict(x0=0.75, x1=0.98, half_thickness=0.004)  # 2 final voxels thick, thinner than a 2^8 cell


def sphere_plate(p):
    """Sphere r=0.6 plus a thin plate |z| < 0.004 at x in [0.55, 0.98] touching it (exact-ish SDF: min of both)."""
    s = p.norm(dim=-1) - 0.6
    qx = torch.maximum(0.55 - p[:, 0], p[:, 0] - PLATE["x1"])
    qy = p[:, 1].abs() - 0.3
    qz = p[:, 2].abs() - PLATE["half_thickness"]
    q = torch.stack([qx, qy, qz], -1)
    box = q.clamp_min(0).norm(dim=-1) + q.max(-1).values.clamp_max(0)
    return torch.minimum(s, box)


VOXEL9 = 2 * BOUNDS / 512  # final voxel at the default depth 9
THIN = dict(plate_y=0.8, plate_half=0.004, rod_radius=0.75 * VOXEL9)  # plate 2 voxels thick, rods 1.5 voxels across
RODS = (((0.65, -0.35, 0.1), (0.65, 0.35, 0.1)),      # along y, beside the sphere
        ((-0.75, -0.5, -0.6), (-0.25, 0.3, -0.7)),    # oblique
        ((0.1, 0.6, -0.55), (0.5, 0.65, 0.3)))        # oblique, under the plate


def _box(p, center, half):
    c, h = (torch.tensor(v, dtype=p.dtype, device=p.device) for v in (center, half))
    q = (p - c).abs() - h
    return q.clamp_min(0).norm(dim=-1) + q.max(-1).values.clamp_max(0)


def _segment(p, a, b, radius):
    a, b = torch.tensor(a, dtype=p.dtype, device=p.device), torch.tensor(b, dtype=p.dtype, device=p.device)
    t = ((p - a) @ (b - a) / ((b - a) @ (b - a))).clamp(0, 1)
    return (p - a - t[:, None] * (b - a)).norm(dim=-1) - radius


def sphere(p):
    """The default sphere of the issue's budget: r = 0.5."""
    return p.norm(dim=-1) - 0.5


def thin_parts(p):
    """Sphere r=0.5, a free-standing plate 2 voxels thick (|y - 0.8| < 0.004, |x|, |z| < 0.3) and three free rods
    1.5 voxels across (at the default depth 9), none touching another: 5 parts."""
    d = torch.minimum(sphere(p), _box(p, (0.0, THIN["plate_y"], 0.0), (0.3, THIN["plate_half"], 0.3)))
    for a, b in RODS:
        d = torch.minimum(d, _segment(p, a, b, THIN["rod_radius"]))
    return d


def parts_found(mesh) -> int:
    """Connected pieces of the mesh (thin_parts: 5 when every part is there)."""
    import trimesh

    return len(trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(mesh.faces)),
                                                  min_len=1))


def torus(p):
    q = torch.stack([p[:, :2].norm(dim=-1) - 0.6, p[:, 2]], dim=-1)
    return q.norm(dim=-1) - 0.25


def plate_present(mesh) -> bool:
    """Vertices on both faces of the plate beyond the sphere (x > 0.75), and the plate spans to x ~ 0.98."""
    v = np.asarray(mesh.vertices)
    far = v[(v[:, 0] > PLATE["x0"]) & (np.abs(v[:, 1]) < 0.25)]
    if len(far) == 0:
        return False
    return bool((far[:, 2] > 0).any() and (far[:, 2] < 0).any() and far[:, 0].max() > PLATE["x1"] - 0.02)


FIELDS = {"sphere_plate": sphere_plate, "torus": torus, "sphere": sphere, "thin_parts": thin_parts}


def dense_check(names):
    """Faces of the band (defaults) and of the dense 513^3 grid (``octree_depth == refine_depth``) per field: equal
    when the band finds what a dense pass finds (several GB and ~30 s per field on the CPU)."""
    print("\n| field | band faces | dense 513^3 faces | same triangles |\n|---|---|---|---|")
    for name in names:
        fn = FIELDS[name]
        band = sdf_to_meshes(lambda p: fn(p).reshape(1, -1), 1)[0]
        dense = sdf_to_meshes(lambda p: fn(p).reshape(1, -1), 1, octree_depth=9, refine_depth=9)[0]
        key = [np.sort(np.sort(m.vertices[m.faces].reshape(-1, 9), 1), 0) for m in (band, dense)]
        same = key[0].shape == key[1].shape and bool(np.allclose(key[0], key[1], atol=1e-6))
        print(f"| {name} | {len(band.faces):,} | {len(dense.faces):,} | {same} |", flush=True)


def tiny_vae():
    """The tiny random-weight TripoSG VAE of the CLI's tiny weights and a latent its field crosses zero on."""
    from actionmesh_core.weights import make_tiny_weights
    from actionmesh_core.checkpoints import load_model

    tmp = Path(tempfile.mkdtemp())
    root = make_tiny_weights(tmp / "w", seed=0)
    vae = load_model(Path(root) / "TripoSG" / "vae", "triposg_vae", device="cpu", dtype=torch.float32)
    # a random latent like the ones the tiny weights are calibrated on (8 channels, 64 tokens)
    return vae, torch.randn(1, 64, 8, generator=torch.Generator().manual_seed(0))


def tiny_vae_field():
    """The tiny VAE's field (:func:`tiny_vae`) and its inside sign."""
    vae, latent = tiny_vae()
    return vae.field_fn(latent), vae.inside_sign


class _Seconds(float):
    """Wall seconds, with the process CPU seconds of the same run in ``.cpu``."""

    cpu = float("nan")


_REF_VOLUMES: dict = {}


def reference_mc(fn):
    """One dense 257^3 scikit-image marching-cubes pass over the field (evaluation not timed) -> wall s (.cpu)."""
    from skimage.measure import marching_cubes

    if fn not in _REF_VOLUMES:  # the field on the dense grid, once per field
        ax = torch.linspace(-BOUNDS, BOUNDS, 257)
        with torch.no_grad():
            _REF_VOLUMES[fn] = torch.cat([fn(c) for c in torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1)
                                          .reshape(-1, 3).split(2**18)], -1).reshape(257, 257, 257).numpy()
    vol = _REF_VOLUMES[fn]
    lvl = 0.0 if vol.min() < 0 < vol.max() else float(np.median(vol))
    c0, t0 = time.process_time(), time.perf_counter()
    marching_cubes(vol, level=lvl)
    out = _Seconds(time.perf_counter() - t0)
    out.cpu = time.process_time() - c0
    return out


def run(extractor, fn, inside, **kw):
    """One extraction -> (mesh, wall s, process CPU s)."""
    c0, t0 = time.process_time(), time.perf_counter()
    mesh = extractor(lambda p: fn(p).reshape(1, -1), 1, inside=inside, **kw)[0]
    return mesh, time.perf_counter() - t0, time.process_time() - c0


def _status_mb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(extractor, fn, inside, **kw) -> float:
    """Peak resident memory (MB) of one extraction above the process's resident size before it
    (:func:`peak_rss_of`)."""
    return peak_rss_of(lambda: run(extractor, fn, inside, **kw))


def peak_rss_of(call) -> float:
    """Peak resident memory (MB) of ``call()`` above the process's resident size before it.

    Runs in a forked child (so earlier runs do not hide the peak): the
    child resets its peak (``echo 5 > /proc/self/clear_refs``), runs the
    call and reports VmHWM - VmRSS-at-start.  NaN where that is not
    available (not Linux).
    """
    if not hasattr(os, "fork") or not os.path.exists("/proc/self/clear_refs"):
        return float("nan")
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(rd)
            torch.set_num_threads(1)  # the parent's OpenMP thread pool does not survive fork()
            try:  # hand the heap's free pages back, so that reusing them counts again
                import ctypes

                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except OSError:
                pass
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            base = _status_mb("VmRSS")
            call()
            os.write(wr, f"{_status_mb('VmHWM') - base}".encode())
        finally:
            os._exit(0)
    os.close(wr)
    with os.fdopen(rd) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    return float(text) if text else float("nan")


def bench(fields, repeat, depths=None):
    """The per-field table; ``depths`` = (coarse, final) depths of every extractor instead of each one's own."""
    from _baseline_loader import load_baseline

    old = load_baseline()
    if old is None:
        print("the pre-#14 extractor is not in this checkout's git history: its rows are left out", flush=True)

    rows = []
    for name in fields:
        if name == "vae":
            fn, inside = tiny_vae_field()
            analytic = None
        else:
            fn = FIELDS[name]
            inside, analytic = "negative", fn
        ref = min(reference_mc(fn) for _ in range(repeat))
        new_d, old_d = (depths or (6, 9)), (depths or (8, 9))
        at = {} if depths is None else dict(octree_depth=depths[0], refine_depth=depths[1])
        extractors = [(f"new {new_d[0]}->{new_d[1]} band, signs only", sdf_to_meshes, dict(sdf_bound=False, **at)),
                      (f"new {new_d[0]}->{new_d[1]} band + SDF bound", sdf_to_meshes, dict(at))]
        if old is not None and name not in ("sphere", "thin_parts"):
            extractors.insert(0, (f"old {old_d[0]}->{old_d[1]} dense+refine", old.sdf_to_meshes,
                                  dict(octree_depth=old_d[0], refine_depth=old_d[1])))
        for label, extractor, kw in extractors:
            best = best_cpu = None
            for _ in range(repeat):
                mesh, dt, cpu = run(extractor, fn, inside, **kw)
                best = dt if best is None else min(best, dt)
                best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
            peak = peak_rss_mb(extractor, fn, inside, **kw)
            st = mesh.metadata["meshing"]
            dist = "n/a"
            if analytic is not None:
                d = analytic(torch.from_numpy(np.asarray(mesh.vertices)).float()).abs().max().item()
                dist = f"{d / st['voxel_size']:.3f}"
            plate = ("yes" if plate_present(mesh) else "NO") if name == "sphere_plate" else \
                f"{parts_found(mesh)} of 5" if name == "thin_parts" else "-"
            rows.append((name, label, st["points_evaluated"], best, ref, best / ref, best_cpu / ref.cpu, dist, plate,
                         peak, len(mesh.faces), bool(mesh.is_watertight)))
            print("  done", rows[-1], flush=True)
    print()
    print("| field | extractor | points evaluated | time (s) | ref 257^3 MC (s) | time / ref | CPU time / ref CPU "
          "| max dist (voxels) | thin plate / parts | peak RSS of the extraction (MB) | faces | watertight |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:,} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.1f}x | {r[6]:.1f}x | {r[7]} | {r[8]} "
              f"| {r[9]:.0f} | {r[10]:,} | {r[11]} |")


_CLI = "import sys, runpy; sys.argv = ['actionmesh_core'] + {args!r}; runpy.run_module('actionmesh_core', run_name='__main__')"
_CLI_COLUMNS = ("stage0", "stage0 sampling", "meshing", "clean-up", "dinov2", "stage1", "stage2", "export")
_CLI_STAGES = ("stage0", "dinov2", "stage1", "stage2", "export")  # disjoint: what "rest" is wall minus


def _run_measured(cmd, env, cwd):
    """Run ``cmd``; return (wall s, peak RSS MB of that process and the children it waited for, rc, stdout, stderr).

    The peak comes from ``os.wait4`` on this child alone (``RUSAGE_CHILDREN``
    would be the maximum over every child this process has waited for, so a
    second, smaller run would read as the first one's peak).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss / 1024, proc.returncode, out.read(), err.read()


def _cli_args(frames: str, weights: Path, tmp: Path) -> list:
    """The benchmarked CLI command: the 16-frame default run on the CPU with the tiny weights."""
    return ["video-to-4d", frames, "--weights", str(weights), "--out", str(tmp / "o.glb"), "--device", "cpu"]


def _cli_run(code: str, env: dict, cwd, label: str):
    """Run ``python -c code`` (a CLI run) -> (wall s, peak RSS MB, the CLI's timings dict, its "wrote" line)."""
    wall, rss, rc, out, err = _run_measured([sys.executable, "-c", code], env, cwd)
    if rc:
        print(out[-2000:], err[-2000:])
        raise SystemExit(f"CLI run failed ({label})")
    line = [ln for ln in out.splitlines() if ln.startswith("wrote")][-1]
    return wall, rss, _cli_timings(line), line


def _cli_timings(line: str) -> dict:
    """{"stage0 sampling": 2.6, ...} from the CLI's "wrote ...: ... (checks 0.1s, ..., stage2 0.6s; total 9.9s)" line."""
    import re

    inner = line[line.rfind("(") + 1:line.rfind(")")]
    return {k.strip(): float(v) for k, v in re.findall(r"([A-Za-z0-9+ -]+?) ([0-9.]+)s", inner.replace(";", ","))}


def bench_cli(frames: str, threads: int):
    """16-frame default CLI run with tiny weights: the library before issue #14 vs now, each in its own process."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _baseline_loader import PIPELINE_COMMIT, baseline_tree

    with tempfile.TemporaryDirectory() as tmp:
        from actionmesh_core.weights import make_tiny_weights

        runs = [("new (band 6 -> 9)", ROOT)]
        old_root = baseline_tree(Path(tmp) / "pre14")
        if old_root is not None:
            runs.insert(0, ("old (dense 8 -> 9)", old_root))
            print(f"old run: actionmesh_core at git {PIPELINE_COMMIT[:12]} (the library before issue #14), "
                  "run as it was", flush=True)
        weights = make_tiny_weights(Path(tmp) / "w", seed=0)
        rows = []
        for label, lib in runs:
            code = _CLI.format(args=_cli_args(frames, weights, Path(tmp)))
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(lib))
            rows.append((label,) + _cli_run(code, env, lib, label))
            print("  done", rows[-1][:3], rows[-1][4], flush=True)
    print()
    print("| CLI run (16 frames, tiny weights, CPU) | wall (s) | peak RSS (MB) | "
          + " | ".join(_CLI_COLUMNS) + " | rest (imports, checks, frames) |")
    print("|---|---|---|" + "---|" * (len(_CLI_COLUMNS) + 1))
    for label, wall, rss, t, _ in rows:
        staged = sum(t.get(k, 0.0) for k in _CLI_STAGES)
        print(f"| {label} | {wall:.1f} | {rss:.0f} | " + " | ".join(f"{t[k]:.1f} s" if k in t else "-" for k in _CLI_COLUMNS)
              + f" | {wall - staged:.1f} s |")
    if len(rows) == 2:
        print(f"\nend-to-end speed-up: {rows[0][1] / rows[1][1]:.2f}x; peak RSS {rows[0][2]:.0f} -> {rows[1][2]:.0f} MB")


def bench_cpu_parts(frames: str, threads: int, repeat: int):
    """The three CPU changes of the anchor run, each measured against its off position in one run.

    1. VAE field chunk size (points per decoder pass) -> us per point, tiny VAE, 2^20 random points;
    2. ``clean_mesh`` of the tiny VAE's anchor mesh with 1, 2, 3 processes (slab decimation helpers);
    3. the 16-frame CLI run as shipped, without ``perf.tune_cpu_allocator`` (``MALLOC_ARENA_MAX`` set to glibc's
       own default for this machine, which makes the tuning step aside) and with the interpreter's normal exit
       instead of ``cli.run``'s: wall, the CLI's own total, system time, page faults, peak RSS.
    """
    import resource

    from actionmesh_core.geometry.cleanup import clean_mesh
    from actionmesh_core.perf import query_chunk_points

    vae, latent = tiny_vae()
    with torch.no_grad():
        tokens = vae.decode_tokens(latent)
    points = torch.rand(2**20, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    chosen = query_chunk_points("cpu", tokens.shape[0] * vae.decoder.blocks[-1].sub("ff").net[0].proj.out_features)
    print(f"\n| VAE field chunk (points) | us per point (best of {repeat}) |\n|---|---|")
    with torch.no_grad():
        for chunk in (2**18, 2**16, 2**15, 2**14, 2**13, 2**12, 2**10):
            best = min(_timed(lambda: vae.query_field(tokens, points, chunk))[0] for _ in range(repeat))
            mark = " (the CPU policy)" if chunk == chosen else " (the previous default)" if chunk == 2**16 else ""
            print(f"| 2^{chunk.bit_length() - 1}{mark} | {best * 1e6 / points.shape[0]:.3f} |", flush=True)
    mesh = sdf_to_meshes(vae.field_fn(latent), 1, inside=vae.inside_sign)[0]
    print(f"\n| clean_mesh of the {len(mesh.faces):,}-face tiny-VAE anchor mesh | s (best of {repeat}) | faces |"
          "\n|---|---|---|")
    ref = None
    for processes in (1, 2, 3):
        best, out = min((_timed(lambda: clean_mesh(mesh, processes=processes)) for _ in range(repeat)),
                        key=lambda run: run[0])
        same = ref is None or (np.array_equal(out.faces, ref.faces) and np.array_equal(out.vertices, ref.vertices))
        ref = ref if ref is not None else out
        print(f"| {processes} process{'es' if processes > 1 else ''} | {best:.2f} | {len(out.faces):,}"
              f"{'' if same else ' (DIFFERENT mesh)'} |", flush=True)
    print(f"\n| CLI run (16 frames, tiny weights; best of {repeat}) | wall (s) | CLI's own total (s) | "
          "wall - total: start-up + exit (s) | system time (s) | page faults | peak RSS (MB) |"
          "\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        from actionmesh_core.weights import make_tiny_weights

        weights = make_tiny_weights(Path(tmp) / "w", seed=0)
        args = _cli_args(frames, weights, Path(tmp))
        base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        base.update(OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
        arenas = str(8 * (os.cpu_count() or 1))  # glibc's default arena limit on 64-bit
        normal_exit = f"import sys; sys.argv = ['actionmesh'] + {args!r}; from actionmesh_core.cli import main; sys.exit(main())"
        modes = (("as shipped (allocator tuned, fast exit)", _CLI.format(args=args), base),
                 ("allocator not tuned", _CLI.format(args=args), dict(base, MALLOC_ARENA_MAX=arenas)),
                 ("normal interpreter exit", normal_exit, base))
        best: dict = {}
        for _ in range(repeat):  # the modes alternate; each keeps its fastest run
            for label, code, env in modes:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, rss, timings, _ = _cli_run(code, env, ROOT, label)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                row = (wall, timings["total"], after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt, rss)
                if label not in best or wall < best[label][0]:
                    best[label] = row
        for label, (wall, total, stime, faults, rss) in best.items():
            print(f"| {label} | {wall:.1f} | {total:.1f} | {wall - total:.1f} | {stime:.1f} | {faults:,} | {rss:.0f} |",
                  flush=True)


def bench_half(threads: int):
    """bf16 vs fp32 field, before / after the half-precision band fix (see the module docstring)."""
    from scipy.spatial import cKDTree

    from _baseline_loader import HALF_BAND_COMMIT, load_meshing_at

    old = load_meshing_at()
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    sys.path.insert(0, str(ROOT / "tests"))
    from test_geometry_meshing import bf16_noisy_sphere

    def released_vae():
        from actionmesh_core.models import TripoSGVAE
        from gpu_check import _centre_vae, _sizes, _smooth_vae

        sz = _sizes(False)
        torch.manual_seed(0)
        vae = TripoSGVAE(**sz.vae).eval().requires_grad_(False)
        _smooth_vae(vae)
        lat = torch.randn(1, sz.tokens, sz.vae["latent_channels"], generator=torch.Generator().manual_seed(0))
        _centre_vae(vae, lat)
        return vae.field_fn(lat), vae.inside_sign

    cases = [("sphere, bf16 noise ~8 voxels (c = 8)", lambda: (bf16_noisy_sphere(8.0), "negative"), (4, 7)),
             ("sphere, bf16 noise ~0.4 voxel (c = 0.25)", lambda: (bf16_noisy_sphere(0.25), "negative"), (4, 7)),
             ("tiny random VAE", tiny_vae_field, (4, 7)), ("tiny random VAE", tiny_vae_field, (5, 8)),
             ("released-size VAE (random weights)", released_vae, (4, 6))]
    print(f"\nbf16 vs fp32 field, before (meshing.py at {HALF_BAND_COMMIT[:12]}) / after (this tree); "
          f"{threads} thread(s)\n")
    print("| field | depths | run | points evaluated | fp32 evaluations | bf16 evaluations | bf16 levels | faces | "
          "max vertex distance to fp32 (voxels) | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, make, (d0, d1) in cases:
        fn, inside = make()
        voxel = 2 * BOUNDS / 2**d1
        runs = [("fp32", sdf_to_meshes, "fp32")]
        if old is not None:
            runs.append(("bf16 before", old.sdf_to_meshes, "bf16"))
        runs.append(("bf16 after", sdf_to_meshes, "bf16"))
        ref = None
        for label, extractor, precision in runs:
            mesh, secs, _ = run(extractor, fn, inside, octree_depth=d0, refine_depth=d1, precision=precision)
            st = mesh.metadata["meshing"]
            if ref is None:
                ref = mesh
            if label == "bf16 before":  # then: the coarse grid once in fp32 and once in bf16 (the calibration, not
                # counted), every other point in bf16; points_fp32 = the fp32 re-evaluations only
                fp32_evals = st["points_fp32"] + (2**d0 + 1) ** 3
                half_evals = st["points_evaluated"]
            else:
                fp32_evals, half_evals = st["points_fp32"], st.get("points_half", 0)
            far = float(cKDTree(ref.vertices).query(mesh.vertices)[0].max()) / voxel if len(mesh.vertices) else 0.0
            print(f"| {name} | {d0} -> {d1} | {label} | {st['points_evaluated']:,} | {fp32_evals:,} | "
                  f"{half_evals:,} | {st.get('half_levels', '-') if precision == 'bf16' else '-'} | "
                  f"{len(mesh.faces):,} | {far:.3f} | {secs:.2f} |", flush=True)
        del fn


def _timed(fn):
    """(wall seconds, result) of ``fn()``."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields", default="sphere_plate,torus,sphere,thin_parts,vae",
                    help=f"comma list from {','.join(FIELDS)},vae")
    ap.add_argument("--dense-check", action="store_true", help="also compare the band's faces with a dense 513^3 pass "
                    "(analytic fields of --fields)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per configuration (best shown)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: shared machines)")
    ap.add_argument("--cli", action="store_true", help="also time the 16-frame default CLI run old vs new")
    ap.add_argument("--skip-fields", action="store_true")
    ap.add_argument("--depths", default=None, metavar="COARSE,FINAL",
                    help="coarse and final depth of every extractor instead of each one's own (e.g. 4,6: seconds, "
                         "the tests' check that the rows still run)")
    ap.add_argument("--half", action="store_true",
                    help="bf16 vs fp32 field, before / after the half-precision band fix (see above)")
    ap.add_argument("--cpu-parts", action="store_true",
                    help="also measure the CPU changes one by one: VAE field chunk size, clean-up helper processes, "
                         "allocator tuning of the CLI")
    fixtures = os.environ.get("ACTIONMESH_FIXTURES_DIR") or next(
        (str(p / "shared" / "fixtures") for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
        str(ROOT.parent / "shared" / "fixtures"))
    ap.add_argument("--frames", default=str(Path(fixtures) / "davis_camel"),
                    help="RGBA frame folder for --cli (16 frames used as given)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if not args.skip_fields:
        bench(args.fields.split(","), max(1, args.repeat),
              tuple(int(d) for d in args.depths.split(",")) if args.depths else None)
    if args.dense_check:
        dense_check([f for f in args.fields.split(",") if f in FIELDS])
    if args.cli:
        bench_cli(args.frames, args.threads)
    if args.cpu_parts:
        bench_cpu_parts(args.frames, args.threads, max(1, args.repeat))
    if args.half:
        bench_half(args.threads)


if __name__ == "__main__":
    main()
