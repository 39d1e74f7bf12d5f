"""Alembic and FBX export through Blender as a Python module (``bpy``), run in a subprocess.

Blender is never imported into this process: ``bpy`` is large, pins its own
numpy and may clash with torch. A fresh Python subprocess imports it, imports
our animated GLB with Blender's own glTF importer (one shape key per frame and
a playing action; or the skinned GLB: an armature with its action), and writes
the file with Blender's own exporters:

* ``.abc`` — Alembic point cache (Blender writes Y-up, one sample per frame),
  UVs kept; Alembic holds no images, so the texture is written beside it as
  ``<stem>_texture.png``;
* ``.fbx`` — FBX with shape-key animation (``rig=False``) or an armature with
  a skin and baked bone animation (``rig=True``, from :mod:`.skinned`), the
  texture embedded.

Where ``bpy`` is looked for: the folder ``$ACTIONMESH_BPY_DIR`` (default
``~/.cache/actionmesh/bpy``, filled by ``pip install --target``: keeps Blender's
pinned numpy out of the main environment), else the current environment.
Missing: :class:`~._common.MissingDependency` with the install command.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Union

from ..io.atomic import atomic_write
from ._common import MissingDependency, animation_fps, check_animation, named_atomic_path, texture_name

__all__ = ["BPY_INSTALL", "bpy_dir", "bpy_environment", "has_bpy", "run_blender", "export_via_blender", "write_abc",
           "write_fbx", "write_fbx_skinned"]

BPY_INSTALL = "pip install --target ~/.cache/actionmesh/bpy bpy  (Blender as a Python module; Python 3.11)"
_MARK = "@@ACTIONMESH_JSON@@"


def bpy_dir() -> Path:
    """Folder searched first for ``bpy``: ``$ACTIONMESH_BPY_DIR`` or ``~/.cache/actionmesh/bpy``."""
    return Path(os.environ.get("ACTIONMESH_BPY_DIR") or Path.home() / ".cache" / "actionmesh" / "bpy").expanduser()


def bpy_environment() -> Optional[dict]:
    """Environment for a subprocess that can ``import bpy``, or None when bpy is not installed."""
    env = dict(os.environ)
    folder = bpy_dir()
    if any((folder / "bpy").glob("__init__.*")):  # the wheel's bpy/__init__.so
        env["PYTHONPATH"] = os.pathsep.join([str(folder)] + [p for p in [env.get("PYTHONPATH")] if p])
        return env
    if importlib.util.find_spec("bpy") is not None:
        return env
    return None


def has_bpy() -> bool:
    """True when Blender as a Python module can be run (see :func:`bpy_environment`)."""
    return bpy_environment() is not None


def run_blender(script: str, args: dict, timeout: float = 600.0) -> dict:
    """Run ``script`` in a fresh Python that imports ``bpy``; return the JSON it reports.

    The script gets ``ARGS`` (the ``args`` dict) and reports with
    ``report(dict)``; it starts from Blender's empty factory scene.

    Raises:
        MissingDependency: bpy is not installed (one line with the install command).
        RuntimeError: Blender failed (the last lines of its error output).
    """
    env = bpy_environment()
    if env is None:
        raise MissingDependency(f"Alembic/FBX export needs Blender as a Python module: {BPY_INSTALL}")
    prelude = (
        "import json, sys\n"
        f"ARGS = json.loads(sys.argv[1])\n"
        f"def report(obj):\n    print({_MARK!r} + json.dumps(obj), flush=True)\n"
        "import bpy\n"
        "bpy.ops.wm.read_factory_settings(use_empty=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", prelude + script, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK) and proc.returncode == 0:
            return json.loads(line[len(_MARK):])
    tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
    raise RuntimeError(f"Blender (bpy) failed with exit code {proc.returncode}: {tail}")


_EXPORT_SCRIPT = r"""
scene = bpy.context.scene
fps = float(ARGS["fps"])
scene.render.fps = max(1, round(fps))
scene.render.fps_base = scene.render.fps / fps
bpy.ops.import_scene.gltf(filepath=ARGS["source"])
first, last = ARGS["frame_start"], ARGS["frame_end"]
# the glTF importer draws bones with a helper mesh object; it is not part of the asset
for arm in [o for o in bpy.data.objects if o.type == "ARMATURE"]:
    for pose_bone in arm.pose.bones:
        shape, pose_bone.custom_shape = pose_bone.custom_shape, None
        if shape is not None and shape.name in bpy.data.objects:
            bpy.data.objects.remove(shape, do_unlink=True)
scene.frame_start, scene.frame_end = first, last
if ARGS["format"] == "abc":
    bpy.ops.wm.alembic_export(filepath=ARGS["out"], start=first, end=last, uvs=True, normals=True,
                              face_sets=True, selected=False, evaluation_mode="RENDER")
else:
    bpy.ops.export_scene.fbx(filepath=ARGS["out"], path_mode="COPY", embed_textures=True, bake_anim=True,
                             bake_anim_use_all_bones=True, bake_anim_use_nla_strips=False,
                             bake_anim_use_all_actions=False, bake_anim_simplify_factor=0.0,
                             add_leaf_bones=False, use_mesh_modifiers=False, mesh_smooth_type="FACE")
report({"objects": [(o.name, o.type) for o in bpy.data.objects], "frames": [first, last]})
"""


def export_via_blender(
    anim,
    path: Union[str, Path],
    *,
    fps: Optional[float] = None,
    rig: bool = False,
    bones: int = 32,
    influences: int = 4,
    iterations: int = 10,
    timeout: float = 600.0,
) -> tuple[list[Path], dict]:
    """Write ``.abc`` (Alembic) or ``.fbx`` through Blender (see module docstring).

    Args:
        anim: :class:`~actionmesh_core.io.animated_mesh.AnimatedMesh` (vertices (T, V, 3)).
        path: ``.abc`` or ``.fbx`` destination (folder created); written atomically.
        fps: frames per second (default from ``anim.times``); frame k of the
            animation is Blender frame k (frame range 0 .. T-1).
        rig: FBX only — a skinned armature (fitted, :mod:`.skinned`) instead of shape keys.
        bones / influences / iterations: skinning fit settings when ``rig``.
        timeout: seconds before Blender is stopped.

    Returns:
        (written files: the file, then the texture beside an ``.abc``; info dict
        with the skin fit error when ``rig``).

    Raises:
        MissingDependency: bpy is not installed (one line with the install command).
        ValueError: suffix not ``.abc``/``.fbx``, or ``rig`` with ``.abc``.
        RuntimeError: Blender failed.
    """
    from .glb import export_animated_glb
    from .glb_skinned import export_skinned_glb

    anim = check_animation(anim, "export_via_blender")
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("abc", "fbx"):
        raise ValueError(f"export_via_blender writes .abc or .fbx, got {path.name!r}")
    if rig and fmt != "fbx":
        raise ValueError("a skinned rig is written as FBX (or skinned GLB), not Alembic")
    if not has_bpy():
        raise MissingDependency(f"{fmt.upper()} export needs Blender as a Python module: {BPY_INSTALL}")
    rate = animation_fps(anim, fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    info: dict = {}
    written = [path]
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}.", dir=str(path.parent)) as staging:
        source = Path(staging) / f"{path.stem}.glb"
        if rig:
            fit = export_skinned_glb(anim, source, bones=bones, influences=influences, iterations=iterations,
                                     fps=rate)
            info.update(bones=fit.num_bones, rms_error=fit.rms_error, max_error=fit.max_error)
        else:
            export_animated_glb(anim, source, fps=rate, interpolation="STEP")
        with named_atomic_path(path) as tmp:
            info.update(run_blender(_EXPORT_SCRIPT, {"source": str(source), "out": str(tmp), "format": fmt,
                                                     "fps": rate, "frame_start": 0,
                                                     "frame_end": anim.num_frames - 1}, timeout=timeout))
    image = anim.texture_image() if anim.uv is not None else None
    if fmt == "abc" and image is not None:
        tex = path.with_name(texture_name(path))
        with atomic_write(tex) as handle:
            image.save(handle, format="PNG")
        written.append(tex)
    return written, info


def write_abc(anim, path: Path, options) -> tuple[list[Path], dict]:
    """Registry writer of ``abc``."""
    return export_via_blender(anim, path, fps=options.fps)


def write_fbx(anim, path: Path, options) -> tuple[list[Path], dict]:
    """Registry writer of ``fbx`` (shape keys)."""
    return export_via_blender(anim, path, fps=options.fps)


def write_fbx_skinned(anim, path: Path, options) -> tuple[list[Path], dict]:
    """Registry writer of ``fbx-skinned`` (a fitted armature)."""
    return export_via_blender(anim, path, fps=options.fps, rig=True, bones=options.bones,
                              influences=options.influences, iterations=options.iterations)
