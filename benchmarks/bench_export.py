"""Export formats side by side: file size, write time, what Blender shows; skinned-rig error vs bone count.

The animation is a textured stand-in for a generated animal (the repository
ships no textured animated fixture): a quadruped of ellipsoids and capsules,
~18k vertices, a 1024x1024 texture, 16 frames of a walk cycle (legs swing
about the hips, head nods, body bobs and breathes: rigid parts plus a
non-rigid body). Every format is written with ``export_animation``; Blender
(bpy, one subprocess) then opens each file and reports vertices, texture,
shape keys / bones, frame range and the deviation from the animation at the
first and last frame (fraction of the bbox diagonal).

    python3 benchmarks/bench_export.py --markdown          # all formats + 16/32/64 bones
    python3 benchmarks/bench_export.py --bones 16 32 --formats glb usdz
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from actionmesh_core.export import FORMATS, MissingDependency, export_animation  # noqa: E402
from actionmesh_core.io.animated_mesh import AnimatedMesh  # noqa: E402


def quadruped(frames: int = 16, fps: float = 24.0, texture_size: int = 1024, detail: int = 0) -> AnimatedMesh:
    """A textured walking quadruped (see module docstring); frame 0 is the reference mesh.

    ``detail`` shifts every part's icosphere subdivision level (0: ~24k vertices, -1: ~6k).
    """
    parts = []  # (vertices, faces, uv, joint (3,), kind)

    def add(mesh, scale, offset, kind, joint=None, tile=0):
        v = np.asarray(mesh.vertices) * scale + offset
        d = np.asarray(mesh.vertices) / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
        u = 0.5 + np.arctan2(d[:, 2], d[:, 0]) / (2 * np.pi)
        w = 0.5 - np.arcsin(np.clip(d[:, 1], -1, 1)) / np.pi
        uv = np.stack([(tile % 4 + u) / 4, (tile // 4 + w) / 2], axis=1)  # one atlas tile per part
        parts.append((v, np.asarray(mesh.faces), uv, None if joint is None else np.asarray(joint, float), kind))

    add(trimesh.creation.icosphere(5 + detail), (0.9, 0.5, 0.45), (0, 0.0, 0), "body", tile=0)
    add(trimesh.creation.icosphere(4 + detail), (0.32, 0.3, 0.3), (0.95, 0.3, 0), "head", joint=(0.7, 0.2, 0), tile=1)
    for i, (x, z) in enumerate([(0.5, 0.25), (0.5, -0.25), (-0.5, 0.25), (-0.5, -0.25)]):
        leg = trimesh.creation.icosphere(4 + detail)
        add(leg, (0.13, 0.45, 0.13), (x, -0.55, z), f"leg{i}", joint=(x, -0.2, z), tile=2 + i)
    for i, z in enumerate([0.18, -0.18]):
        add(trimesh.creation.icosphere(3 + detail), (0.09, 0.09, 0.05), (1.0, 0.6, z), "head", joint=(0.7, 0.2, 0), tile=6 + i)

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:texture_size, 0:texture_size] / texture_size
    spots = (np.sin(12 * xx) * np.cos(9 * yy) > 0.2).astype(np.float32)
    tex = 235 - 200 * spots[..., None] + rng.normal(0, 6, (texture_size, texture_size, 1))
    texture = Image.fromarray(np.clip(np.repeat(tex, 3, axis=2), 0, 255).astype(np.uint8))

    out = []
    for k in range(frames):
        phase = 2 * np.pi * k / frames
        verts = []
        for v, _, _, joint, kind in parts:
            p = v.copy()
            if kind.startswith("leg"):
                sign = 1 if kind in ("leg0", "leg3") else -1
                a = np.deg2rad(25) * sign * np.sin(phase)
                rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
                p = (p - joint) @ rot.T + joint
            elif kind == "head":
                a = np.deg2rad(10) * np.sin(2 * phase)
                rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
                p = (p - joint) @ rot.T + joint
            else:  # body breathes (non-rigid)
                p = p * np.array([1.0, 1.0 + 0.03 * np.sin(phase), 1.0 + 0.03 * np.sin(phase)])
            p = p + np.array([0.15 * k / frames, 0.03 * np.abs(np.sin(phase)), 0.0])
            verts.append(p)
        out.append(np.concatenate(verts))
    offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    faces = np.concatenate([p[1] + o for p, o in zip(parts, offsets)])
    uv = np.concatenate([p[2] for p in parts]).astype(np.float32)
    return AnimatedMesh(faces=faces, vertices=np.stack(out).astype(np.float32),
                        times=np.arange(frames, dtype=np.float32) / fps, uv=uv, texture=texture,
                        metadata={"anchor_frame": 0, "fps": fps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="*", default=list(FORMATS))
    parser.add_argument("--bones", nargs="*", type=int, default=[16, 32, 64])
    parser.add_argument("--rig-bones", type=int, default=32, help="bones of the skinned formats in the table")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--no-blender", action="store_true", help="skip opening the files in Blender")
    parser.add_argument("--detail", type=int, default=0, help="mesh detail: 0 ~24k vertices, -1 ~6k")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    anim = quadruped(frames=args.frames, detail=args.detail)
    T, V = anim.num_frames, anim.num_vertices
    fps = 24.0
    diag = float(np.linalg.norm(np.ptp(anim.vertices[0], axis=0)))
    print(f"animation: {T} frames, {V} vertices, {len(anim.faces)} faces, texture {anim.texture.size}, "
          f"bbox diagonal {diag:.3f}", flush=True)
    rows, jobs = [], []
    with tempfile.TemporaryDirectory() as folder:
        for fmt in args.formats:
            try:
                result = export_animation(anim, Path(folder) / f"panda_{fmt.replace('-', '_')}", fmt,
                                          bones=args.rig_bones)
            except MissingDependency as exc:
                rows.append((fmt, "-", "-", "-", f"skipped: {exc}"))
                continue
            size = sum(p.stat().st_size for p in result.files)
            extra = ""
            if "rms_error" in result.info:
                extra = (f"{result.info['bones']} bones, error RMS {100 * result.info['rms_error']:.2f}% / "
                         f"max {100 * result.info['max_error']:.2f}%")
            rows.append([fmt, len(result.files), size, result.seconds, extra])
            print(f"  {fmt}: {len(result.files)} files, {size / 1e6:.2f} MB, {result.seconds:.2f} s {extra}", flush=True)
            first = 1 if fmt.startswith("fbx") else 0
            if fmt == "npy":
                continue
            if fmt.endswith("sequence"):
                jobs.append((len(rows) - 1, fmt, [(result.files[0], 0, 1), (result.files[T - 1], T - 1, 1)]))
            else:
                jobs.append((len(rows) - 1, fmt, [(result.path, 0, first), (result.path, T - 1, first + T - 1)]))
        views = {}
        if not args.no_blender:
            from blender_client import hausdorff, has_bpy, open_in_blender, y_up_to_blender

            if has_bpy():
                flat = []
                for row, fmt, items in jobs:
                    if fmt.endswith("sequence"):
                        flat += [(row, fmt, k, (p, fmt, fps, [bf])) for p, k, bf in items]
                    else:
                        flat.append((row, fmt, None, (items[0][0], fmt, fps, [items[0][2], items[1][2]])))
                start = time.perf_counter()
                reports = open_in_blender([job for *_, job in flat])
                print(f"Blender opened {len(flat)} files in {time.perf_counter() - start:.1f} s")
                for (row, fmt, k, job), rep in zip(flat, reports):
                    conv = (lambda p: np.asarray(p, np.float64)) if fmt == "ply-sequence" else y_up_to_blender
                    devs = []
                    for frame, pos in rep["positions"].items():
                        kk = k if k is not None else (0 if frame == job[3][0] else T - 1)
                        devs.append(hausdorff(pos, conv(anim.vertices[kk])) / diag)
                    what = [f"{rep['vertices']} verts"]
                    if rep["images"]:
                        what.append("texture " + "x".join(map(str, rep["images"][0]["size"])))
                    if rep["shape_keys"]:
                        what.append(f"{rep['shape_keys']} shape keys")
                    if rep["armature_bones"]:
                        what.append(f"armature {rep['armature_bones']} bones")
                    act = rep["shape_key_action"] or rep["armature_action"]
                    if act:
                        what.append(f"action frames {act['range'][0]:g}-{act['range'][1]:g}")
                    if "MESH_SEQUENCE_CACHE" in rep["modifiers"]:
                        what.append(f"mesh cache, scene frames {rep['frame_range'][0]}-{rep['frame_range'][1]}")
                    what.append(f"dev {max(devs):.1e}")
                    prev = views.get(row)
                    views[row] = (prev + " / " if prev else "") + (f"frame {k}: " if k is not None else "") + \
                        ", ".join(what)
            else:
                print("bpy not installed: no Blender column")
        for row, view in views.items():
            rows[row][4] = (rows[row][4] + "; " if rows[row][4] else "") + view

    print()
    print("| format | files | size | write time | Blender shows (dev = max deviation / bbox diagonal) |")
    print("|---|---|---|---|---|")
    for fmt, n, size, seconds, note in rows:
        size_s = f"{size / 1e6:.2f} MB" if isinstance(size, int) else size
        time_s = f"{seconds:.2f} s" if isinstance(seconds, float) else seconds
        print(f"| {fmt} | {n} | {size_s} | {time_s} | {note} |")

    print()
    print("| bones | fit + write time | error RMS | error max | (fraction of the bbox diagonal) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for bones in args.bones:
            try:
                result = export_animation(anim, Path(folder) / f"rig{bones}.glb", "glb-skinned", bones=bones)
            except MissingDependency as exc:
                print(f"| {bones} | skipped: {exc} | | | |")
                continue
            info = result.info
            print(f"| {info['bones']} | {result.seconds:.1f} s | {100 * info['rms_error']:.3f} % | "
                  f"{100 * info['max_error']:.3f} % | |", flush=True)


if __name__ == "__main__":
    main()
