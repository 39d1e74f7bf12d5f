#!/usr/bin/env python3
"""Benchmark: SDF meshing (refined vs dense grid) and animated GLB sizes.

Prints two tables:

1. ``sdf_to_meshes`` on analytic fields at octree depth 8 -> 9 (the default)
   and other depths: field evaluations of the refined grid vs the dense grid
   at the final resolution (the count ratio is what a neural decoder pays),
   wall time, mesh size; on CPU and, when CUDA is available, on the GPU
   (``diso`` marching cubes when installed).
2. GLB size of a 20k-vertex, 16-frame animation (the clean-up output of a
   depth-9 mesh at the 40k-face budget) for STEP with normals, without
   normals, and textured; plus the per-frame static GLBs.

Usage: ``python3 benchmarks/bench_meshing.py [--depths 8:9,7:9,9:9] [--fields sphere,torus,blobs] [--skip-glb]``
(``9:9`` = dense depth 9: 135M evaluations, several GB of memory; ``--check-dense 9`` compares
dense depth 9 with 8 -> 9 on the torus).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actionmesh_core.geometry.cleanup import clean_mesh  # noqa: E402
from actionmesh_core.geometry.meshing import available_backends, sdf_to_meshes  # noqa: E402
from actionmesh_core.io.animated_mesh import AnimatedMesh  # noqa: E402
from actionmesh_core.io.glb import export_animated_glb, export_static_glbs  # noqa: E402


def sphere(p):
    return p.norm(dim=-1) - 0.8


def torus(p):
    q = torch.stack([p[:, :2].norm(dim=-1) - 0.6, p[:, 2]], dim=-1)
    return q.norm(dim=-1) - 0.25


_CENTERS = torch.tensor([[0.3, 0.2, 0.1], [-0.4, 0.1, -0.2], [0.0, -0.5, 0.3], [0.1, 0.4, -0.5], [-0.3, -0.3, -0.4]])
_RADII = torch.tensor([0.35, 0.3, 0.25, 0.2, 0.22])


def blobs(p):
    """Smooth union of 5 spheres (an organic, non-convex shape)."""
    c = _CENTERS.to(p.device)
    d = (p[:, None, :] - c[None]).norm(dim=-1) - _RADII.to(p.device)[None]
    k = 0.1
    return -k * torch.logsumexp(-d / k, dim=1)


FIELDS = {"sphere": sphere, "torus": torus, "blobs": blobs}


def bench_meshing(depths, fields, devices, repeat=3):
    """Time each configuration ``repeat`` times; report the best and median wall time (shared CPUs are noisy)."""
    rows = []
    for device in devices:
        backend = "diso" if "diso" in available_backends(device) else "skimage"
        for name in fields:
            fn = FIELDS[name]
            for d0, d1 in depths:
                times = []
                for _ in range(repeat):
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    mesh = sdf_to_meshes(lambda p: fn(p)[None], 1, octree_depth=d0, refine_depth=d1,
                                         device=device, backend=backend)[0]
                    if device == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                st = mesh.metadata["meshing"]
                rows.append((device, st["backend"], name, f"{d0}->{d1}", st["points_evaluated"], st["dense_points"],
                             st["ratio"], min(times), float(np.median(times)), len(mesh.vertices), len(mesh.faces)))
                print("  done", rows[-1][:4], " ".join(f"{t:.2f}s" for t in times), flush=True)
    head = ("device", "mc", "field", "depth", "evaluated", "dense(final)", "ratio", "best_s", "median_s", "verts",
            "faces")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:,} | {r[5]:,} | {r[6]:.4f} | {r[7]:.2f} | {r[8]:.2f} "
              f"| {r[9]:,} | {r[10]:,} |")


def check_dense(field_name, depth):
    """Refined (depth-1 -> depth) vs dense grid at ``depth``: same mesh? evaluation counts and times."""
    fn = FIELDS[field_name]
    out = {}
    for label, d0 in (("dense", depth), ("refined", depth - 1)):
        t0 = time.perf_counter()
        m = sdf_to_meshes(lambda p: fn(p)[None], 1, octree_depth=d0, refine_depth=depth)[0]
        out[label] = (m, time.perf_counter() - t0)
    (md, td), (mr, tr) = out["dense"], out["refined"]
    key = lambda m: np.sort(np.sort(m.vertices[m.faces].reshape(-1, 9), axis=1), axis=0)  # noqa: E731
    same = len(md.faces) == len(mr.faces) and np.abs(key(md) - key(mr)).max() < 1e-9
    ed, er = md.metadata["meshing"]["points_evaluated"], mr.metadata["meshing"]["points_evaluated"]
    print()
    print(f"dense vs refined at depth {depth} ({field_name}): identical mesh = {same}; "
          f"evaluations {er:,} / {ed:,} = {er / ed:.4f}; time refined {tr:.2f}s vs dense {td:.2f}s")


def _uv_texture(size=1024):
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([(x * 255 // size), (y * 255 // size), ((x // 64 + y // 64) % 2) * 200], -1).astype(np.uint8)
    return Image.fromarray(img)


def bench_glb(num_frames=16):
    mesh = sdf_to_meshes(lambda p: blobs(p)[None], 1, octree_depth=8, refine_depth=9)[0]
    mesh = clean_mesh(mesh, target_faces=40000)
    v0 = np.asarray(mesh.vertices, np.float32)
    t = np.linspace(0, 1, num_frames, dtype=np.float32)[:, None, None]
    frames = v0[None] + 0.1 * np.sin(4 * v0[None, :, 1:2] + 6 * t) * np.array([1, 0, 0.5], np.float32)
    anim = AnimatedMesh(mesh.faces, frames.astype(np.float32))
    # a textured variant: spherical UVs + a 1024^2 texture
    c = v0 - v0.mean(0)
    uv = np.stack([0.5 + np.arctan2(c[:, 1], c[:, 0]) / (2 * np.pi),
                   0.5 + np.arcsin(np.clip(c[:, 2] / np.linalg.norm(c, axis=1), -1, 1)) / np.pi], 1)
    textured = AnimatedMesh(mesh.faces, anim.vertices, uv=uv.astype(np.float32), texture=_uv_texture())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, a, kw in [
            ("STEP, normals", anim, {}),
            ("STEP, no normals", anim, {"include_normals": False}),
            ("LINEAR, normals", anim, {"interpolation": "LINEAR"}),
            ("STEP, normals, UV + 1024^2 PNG texture", textured, {}),
        ]:
            t0 = time.perf_counter()
            p = export_animated_glb(a, tmp / "a.glb", fps=24, **kw)
            rows.append((label, p.stat().st_size, time.perf_counter() - t0))
        t0 = time.perf_counter()
        paths = export_static_glbs(anim, tmp / "frames", prefix="f")
        rows.append((f"{num_frames} static per-frame GLBs (total)", sum(q.stat().st_size for q in paths),
                     time.perf_counter() - t0))
    print()
    print(f"GLB sizes: {anim.num_vertices:,} vertices, {len(anim.faces):,} faces, {anim.num_frames} frames")
    print("| file | size (MB) | write time (s) |")
    print("|---|---|---|")
    for label, size, dt in rows:
        print(f"| {label} | {size / 1e6:.2f} | {dt:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", default="8:9,7:9", help="comma list of octree:refine depth pairs")
    ap.add_argument("--fields", default="sphere,torus,blobs")
    ap.add_argument("--skip-glb", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per configuration (best and median shown)")
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--check-dense", type=int, default=0, metavar="DEPTH",
                    help="also mesh the sphere on the dense grid at DEPTH and compare with DEPTH-1 -> DEPTH")
    args = ap.parse_args()
    depths = [tuple(int(x) for x in pair.split(":")) for pair in args.depths.split(",")]
    fields = args.fields.split(",")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, devices {devices}")
    bench_meshing(depths, fields, devices, repeat=max(1, args.repeat))
    if args.check_dense:
        check_dense("torus", args.check_dense)
    if not args.skip_glb:
        bench_glb()


if __name__ == "__main__":
    main()
