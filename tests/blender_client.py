"""A real client for the export tests: Blender (``bpy``, in a subprocess) opens a file and reports what an artist sees.

Blender runs through :func:`actionmesh_core.export.blender.run_blender` (its own
Python process: bpy is never imported into the test process). Outside CI the
tests skip with the install command when bpy is missing; with ``CI=true`` they
fail instead (``.ci/run`` installs it).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from actionmesh_core.export.blender import BPY_INSTALL, has_bpy, run_blender

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_blender() -> None:
    """Skip (outside CI) or fail (CI=true) when Blender as a Python module is not installed."""
    if has_bpy():
        return
    if IN_CI:
        pytest.fail(f"CI=true but bpy is not installed: {BPY_INSTALL}")
    pytest.skip(f"Blender as a Python module is not installed: {BPY_INSTALL}")


_INSPECT = r"""
import os
def inspect(ARGS):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    fps = float(ARGS["fps"])
    scene.render.fps = max(1, round(fps))
    scene.render.fps_base = scene.render.fps / fps
    path, kind = ARGS["path"], ARGS["kind"]
    importers = {"gltf": bpy.ops.import_scene.gltf, "usd": bpy.ops.wm.usd_import, "abc": bpy.ops.wm.alembic_import,
                 "fbx": bpy.ops.import_scene.fbx, "obj": bpy.ops.wm.obj_import, "ply": bpy.ops.wm.ply_import}
    importers[kind](filepath=path)
    meshes = [o for o in scene.objects if o.type == "MESH"]
    main = max(meshes, key=lambda o: len(o.data.vertices))
    images = []
    for mat in main.data.materials:
        if mat is not None and mat.node_tree is not None:
            for node in mat.node_tree.nodes:
                if node.type == "TEX_IMAGE" and node.image is not None:
                    img = node.image
                    images.append({"name": img.name, "file": os.path.basename(img.filepath), "size": list(img.size),
                                   "packed": img.packed_file is not None})
    keys = main.data.shape_keys
    armatures = [o for o in scene.objects if o.type == "ARMATURE"]
    arm = armatures[0] if armatures else None
    def action_of(idblock):
        ad = getattr(idblock, "animation_data", None) if idblock is not None else None
        act = ad.action if ad is not None else None
        return None if act is None else {"name": act.name, "range": [float(x) for x in act.frame_range]}
    positions = {}
    for frame in ARGS["frames"]:
        scene.frame_set(int(frame))
        depsgraph = bpy.context.evaluated_depsgraph_get()
        ev = main.evaluated_get(depsgraph)
        me = ev.to_mesh()
        mw = ev.matrix_world
        positions[str(frame)] = [list(mw @ v.co) for v in me.vertices]
        ev.to_mesh_clear()
    return ({
        "objects": [[o.name, o.type] for o in scene.objects],
        "mesh": main.name,
        "vertices": len(main.data.vertices),
        "uv_layers": len(main.data.uv_layers),
        "images": images,
        "shape_keys": 0 if keys is None else len(keys.key_blocks),
        "shape_key_action": action_of(keys),
        "armature_bones": 0 if arm is None else len(arm.data.bones),
        "armature_action": action_of(arm),
        "modifiers": [m.type for m in main.modifiers],
        "frame_range": [scene.frame_start, scene.frame_end],
        "fps": scene.render.fps / scene.render.fps_base,
        "positions": positions,
    })
report([inspect(job) for job in ARGS["jobs"]])
"""

#: importer per exported format
KIND = {"glb": "gltf", "glb-skinned": "gltf", "usdc": "usd", "usda": "usd", "usdz": "usd", "abc": "abc",
        "fbx": "fbx", "fbx-skinned": "fbx", "obj-sequence": "obj", "ply-sequence": "ply"}


def open_in_blender(jobs) -> list:
    """Import each file into an empty Blender scene (one Blender process for all); report what it shows.

    Args:
        jobs: list of ``(path, format, fps, frames)``.

    Returns:
        One dict per job: objects, mesh vertex count, UV layers, images, shape
        keys + their action, armature bones + action, modifiers, scene frame
        range and fps, and ``positions[frame]``: evaluated world-space vertex
        positions (Blender's Z-up frame) of the largest mesh at each frame.
    """
    require_blender()
    args = {"jobs": [{"path": str(p), "kind": KIND[f], "fps": float(r), "frames": [int(k) for k in ks]}
                     for p, f, r, ks in jobs]}
    reports = run_blender(_INSPECT, args, timeout=600)
    for out in reports:
        out["positions"] = {int(k): np.asarray(v, np.float64) for k, v in out["positions"].items()}
    return reports


def y_up_to_blender(points: np.ndarray) -> np.ndarray:
    """glTF/USD/OBJ Y-up (x, y, z) -> Blender Z-up (x, -z, y), as Blender's importers convert."""
    p = np.asarray(points, np.float64)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between two point sets (vertex order free: importers may reorder)."""
    from scipy.spatial import cKDTree

    return float(max(cKDTree(a).query(b)[0].max(), cKDTree(b).query(a)[0].max()))
