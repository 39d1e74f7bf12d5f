"""Synthetic meshes for the tests and benchmarks: a textured tube bending at a hinge (two rigid parts), a box
with its sides' vertices split as UV-mapped exports have them."""
from __future__ import annotations

import numpy as np
import trimesh
from PIL import Image

from actionmesh_core.io.animated_mesh import AnimatedMesh


def textured_tube(rings: int = 17, sides: int = 16, length: float = 2.0, radius: float = 0.25):
    """Open tube along Y, UV-mapped (u around, v along; seam vertices duplicated).

    Returns:
        (vertices (V, 3) float64, faces (F, 3) int64, uv (V, 2) float32, texture PIL RGB 48x32).
    """
    u = np.linspace(0.0, 1.0, sides + 1)
    v = np.linspace(0.0, 1.0, rings)
    uu, vv = np.meshgrid(u, v)  # (rings, sides + 1)
    angle = 2 * np.pi * uu
    verts = np.stack([radius * np.cos(angle), (vv - 0.5) * length, radius * np.sin(angle)], axis=-1).reshape(-1, 3)
    faces = []
    cols = sides + 1
    for r in range(rings - 1):
        for c in range(sides):
            a, b, d, e = r * cols + c, r * cols + c + 1, (r + 1) * cols + c, (r + 1) * cols + c + 1
            faces += [[a, d, b], [b, d, e]]  # outward normals
    uv = np.stack([uu, vv], axis=-1).reshape(-1, 2).astype(np.float32)
    rng = np.random.default_rng(3)
    texture = Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    return verts, np.asarray(faces, np.int64), uv, texture


def bending_tube(frames: int = 8, fps: float = 12.0, max_angle_deg: float = 70.0, drift=(0.3, 0.0, 0.0)):
    """Two-part articulated motion: the upper half of the tube turns about the hinge at y = 0, the whole drifts.

    Returns:
        ``AnimatedMesh`` (textured, times = arange(T) / fps, frame 0 = rest pose = reference mesh).
    """
    verts, faces, uv, texture = textured_tube()
    out = []
    for k in range(frames):
        angle = np.deg2rad(max_angle_deg) * k / max(frames - 1, 1)
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # about Z through the hinge
        v = verts.copy()
        upper = v[:, 1] > 1e-9
        v[upper] = v[upper] @ rot.T
        out.append(v + np.asarray(drift) * k / max(frames - 1, 1))
    return AnimatedMesh(faces=faces, vertices=np.stack(out).astype(np.float32),
                        times=np.arange(frames, dtype=np.float32) / fps, uv=uv, texture=texture,
                        metadata={"anchor_frame": 0, "fps": fps})


def box(extents, offset=(0.0, 0.0, 0.0), split_seams=True):
    """A box mesh; with ``split_seams`` every side has its own 4 vertices (24, as UV-mapped exports have)."""
    mesh = trimesh.creation.box(extents=extents)
    mesh.apply_translation(offset)
    if not split_seams:
        return mesh
    tri = mesh.vertices[mesh.faces]  # (12, 3, 3)
    normals = np.round(mesh.face_normals, 6)
    verts, faces = [], []
    for side in np.unique(normals, axis=0):
        sel = np.all(normals == side, axis=1)
        pts, inverse = np.unique(tri[sel].reshape(-1, 3), axis=0, return_inverse=True)
        faces.append(inverse.reshape(-1, 3) + sum(len(v) for v in verts))
        verts.append(pts)
    return trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False)
