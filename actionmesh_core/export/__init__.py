"""Artist-ready exports of an animated mesh: one dispatcher for every format.

==================  ==========  ====================================================================
format              suffix      what is written
==================  ==========  ====================================================================
``glb``             ``.glb``    morph-target animation, one target per frame (:mod:`..io.glb`)
``glb-skinned``     ``.glb``    armature + skin weights fitted by Dem Bones (:mod:`.skinned`)
``usdc``/``usda``   ``.usdc``   USD point cache: time-sampled points/normals, UVs, texture
``usdz``            ``.usdz``   the same, packaged with its texture (:mod:`.usd`)
``abc``             ``.abc``    Alembic point cache, through Blender (:mod:`.blender`)
``fbx``             ``.fbx``    FBX with shape-key animation, through Blender
``fbx-skinned``     ``.fbx``    FBX with the fitted armature, through Blender
``obj-sequence``    ``.obj``    one OBJ per frame + shared ``.mtl`` / texture (:mod:`.point_cache`)
``ply-sequence``    ``.ply``    one PLY per frame + shared texture
``npy``             ``.npy``    the release's ``<stem>_vertices.npy`` (T, V, 3) + ``<stem>_faces.npy``
==================  ==========  ====================================================================

Optional dependencies (``usd-core``, ``py-dem-bones``, ``bpy``) are imported
only when their format is asked for; a missing one raises
:class:`MissingDependency` whose message is one line naming the install command.

Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional, Union

from ._common import MissingDependency, animation_fps, check_animation

__all__ = ["FORMATS", "ExportResult", "MissingDependency", "export_animation", "resolve_format",
           "check_format_available", "add_format_argument", "export_from_args", "animation_fps"]

#: format name -> (file suffix, one-line description)
FORMATS = {
    "glb": (".glb", "animated GLB, one morph target per frame (plays in Blender, three.js, ComfyUI)"),
    "glb-skinned": (".glb", "skinned GLB: bones + weights fitted to the motion (game engines)"),
    "usdc": (".usdc", "USD point cache (binary), texture beside it"),
    "usda": (".usda", "USD point cache (text), texture beside it"),
    "usdz": (".usdz", "USD point cache packaged with its texture"),
    "abc": (".abc", "Alembic point cache (needs bpy), texture beside it"),
    "fbx": (".fbx", "FBX with shape-key animation (needs bpy), texture embedded"),
    "fbx-skinned": (".fbx", "FBX with a fitted armature (needs bpy), texture embedded"),
    "obj-sequence": (".obj", "one OBJ per frame, one shared .mtl and texture"),
    "ply-sequence": (".ply", "one PLY per frame, one shared texture"),
    "npy": (".npy", "the release's <stem>_vertices.npy (T, V, 3) + <stem>_faces.npy (F, 3)"),
}

_BY_SUFFIX = {".glb": "glb", ".usd": "usdc", ".usdc": "usdc", ".usda": "usda", ".usdz": "usdz", ".abc": "abc",
              ".fbx": "fbx", ".obj": "obj-sequence", ".ply": "ply-sequence", ".npy": "npy"}


@dataclasses.dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        format: the format name (a key of :data:`FORMATS`).
        path: the main file (for sequences / npy: the first file written).
        files: every file written, main file first.
        seconds: wall time of the export.
        info: format-specific facts (skinned formats: ``bones``, ``rms_error``,
            ``max_error`` as fractions of the reference bbox diagonal).
    """

    format: str
    path: Path
    files: list
    seconds: float
    info: dict = dataclasses.field(default_factory=dict)


def resolve_format(path: Union[str, Path], format: Optional[str] = None) -> tuple[str, Path]:
    """(format name, output path) for a destination and an optional format.

    Without ``format`` the suffix decides (``.glb`` -> ``glb``, ``.usd`` -> ``usdc`` ...).
    With ``format`` the path's suffix is replaced by the format's own when it differs.

    Raises:
        ValueError: unknown format, or no format and an unknown suffix.
    """
    path = Path(path)
    if format is None:
        fmt = _BY_SUFFIX.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"cannot tell the export format from {path.name!r}: use a suffix of "
                             f"{sorted(_BY_SUFFIX)} or pass a format from {list(FORMATS)}")
        return fmt, path
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")
    suffix = FORMATS[fmt][0]
    if path.suffix.lower() != suffix and not (fmt == "usdc" and path.suffix.lower() == ".usd"):
        path = path.with_suffix(suffix)
    return fmt, path


def check_format_available(format: str) -> None:
    """Raise :class:`MissingDependency` (one line, with the install command) when ``format`` cannot be written.

    Cheap (no import of the heavy modules beyond a spec lookup); call it before
    any model runs.
    """
    import importlib.util

    from ._common import INSTALL

    needs = {"glb-skinned": ["py_dem_bones"], "fbx-skinned": ["py_dem_bones"],
             "usdc": ["pxr"], "usda": ["pxr"], "usdz": ["pxr"]}.get(format, [])
    for module in needs:
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(f"{format} export needs the '{module}' module: {INSTALL[module]}")
    if format in ("abc", "fbx", "fbx-skinned"):
        from .blender import BPY_INSTALL, has_bpy

        if not has_bpy():
            raise MissingDependency(f"{format} export needs Blender as a Python module: {BPY_INSTALL}")


def export_animation(
    anim,
    path: Union[str, Path],
    format: Optional[str] = None,
    *,
    fps: Optional[float] = None,
    interpolation: str = "STEP",
    bones: int = 32,
    influences: int = 4,
    iterations: int = 10,
    meters_per_unit: float = 1.0,
    release_axes: bool = True,
) -> ExportResult:
    """Write an animated mesh in any supported format (see the module table); every file atomically.

    Args:
        anim: :class:`~actionmesh_core.io.animated_mesh.AnimatedMesh` (faces (F, 3),
            vertices (T, V, 3) model units, times (T,) s, optional uv (V, 2) + texture).
        path: destination; for sequences/npy it names the set (``<stem>_0000.obj``,
            ``<stem>_vertices.npy``). Its folder is created.
        format: a key of :data:`FORMATS`; default from the suffix of ``path``.
        fps: frames per second (default from ``anim.times``).
        interpolation: ``glb`` only: ``"STEP"`` or ``"LINEAR"`` between frames.
        bones / influences / iterations: skinned formats (see :func:`.skinned.fit_skinning`).
        meters_per_unit: USD stage ``metersPerUnit``.
        release_axes: ``npy`` only: the release's axis change (see :func:`.point_cache.export_npy`).

    Returns:
        :class:`ExportResult` (files written, seconds, fit error for skinned formats).

    Raises:
        MissingDependency: the format's optional dependency is missing (one line with the install command).
        TypeError / ValueError: not an AnimatedMesh, unknown format/suffix, bad settings.
        RuntimeError: Blender failed (abc / fbx).
    """
    anim = check_animation(anim, "export_animation")
    fmt, path = resolve_format(path, format)
    check_format_available(fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    info: dict = {}
    if fmt == "glb":
        from ..io.glb import export_animated_glb
        from ._common import named_atomic_path

        with named_atomic_path(path) as tmp:
            export_animated_glb(anim, tmp, fps=animation_fps(anim, fps), interpolation=interpolation)
        files = [path]
    elif fmt == "glb-skinned":
        from .skinned import export_skinned_glb

        fit = export_skinned_glb(anim, path, bones=bones, influences=influences, iterations=iterations, fps=fps)
        files = [path]
        info.update(bones=fit.num_bones, influences=int(fit.joints.shape[1]), rms_error=fit.rms_error,
                    max_error=fit.max_error)
    elif fmt in ("usdc", "usda", "usdz"):
        from .usd import export_usd

        files = export_usd(anim, path, fps=fps, meters_per_unit=meters_per_unit)
    elif fmt in ("abc", "fbx", "fbx-skinned"):
        from .blender import export_via_blender

        files, info = export_via_blender(anim, path, fps=fps, rig=fmt == "fbx-skinned", bones=bones,
                                         influences=influences, iterations=iterations)
    elif fmt == "obj-sequence":
        from .point_cache import export_obj_sequence

        files = export_obj_sequence(anim, path)
    elif fmt == "ply-sequence":
        from .point_cache import export_ply_sequence

        files = export_ply_sequence(anim, path)
    else:
        from .point_cache import export_npy

        files = export_npy(anim, path, release_axes=release_axes)
    return ExportResult(format=fmt, path=Path(files[0]), files=[Path(f) for f in files],
                        seconds=time.perf_counter() - start, info=info)


# --------------------------------------------------------------------------- command line


def add_format_argument(parser) -> None:
    """Add ``--format``, ``--bones`` and ``--influences`` to an argparse (sub)parser."""
    parser.add_argument("--format", choices=list(FORMATS), default=None,
                        help="export format (default: from the --out suffix; .glb = morph-target GLB). "
                             + "; ".join(f"{k}: {v[1]}" for k, v in FORMATS.items()))
    from ..options import ExportOptions

    parser.add_argument("--bones", type=int, default=ExportOptions.bones,
                        help=f"skinned formats: number of bones (default {ExportOptions.bones})")
    parser.add_argument("--influences", type=int, default=ExportOptions.influences,
                        help=f"skinned formats: bones per vertex, 1-8 (default {ExportOptions.influences})")


def check_format_args(args) -> tuple[str, Path]:
    """Validate ``--out``/``--format`` (and the format's dependency) before any model loads.

    Returns:
        (format, output path).

    Raises:
        ValueError: unknown format or suffix, or a missing optional dependency (one line).
    """
    try:
        fmt, path = resolve_format(args.out, getattr(args, "format", None))
        check_format_available(fmt)
    except MissingDependency as exc:
        raise ValueError(str(exc)) from None
    return fmt, path


def export_from_args(anim, args) -> ExportResult:
    """Export ``anim`` as the CLI arguments say (``--out``, ``--format``, ``--fps``, ``--interpolation``, ...)."""
    fmt, path = check_format_args(args)
    return export_animation(anim, path, fmt, fps=getattr(args, "fps", None),
                            interpolation=getattr(args, "interpolation", "STEP"),
                            bones=getattr(args, "bones", 32), influences=getattr(args, "influences", 4))
