"""Artist-ready exports of an animated mesh: one dispatcher over one format registry.

Every format is one entry of :data:`.formats.FORMATS` (name, suffixes, description,
optional modules, writer, size estimate); the command line's choices and help, the
batch, the ComfyUI export node and the suffix rules all come from it:

==================  ===============  =============================================================
format              suffix           what is written (module)
==================  ===============  =============================================================
``glb``             ``.glb``         morph-target animation, one target per frame (:mod:`.glb`)
``glb-skinned``     ``.glb``         armature + skin weights fitted by Dem Bones (:mod:`.glb_skinned`)
``usdc``/``usda``   ``.usdc``/...    USD point cache: time-sampled points/normals, UVs, texture
``usdz``            ``.usdz``        the same, packaged with its texture (:mod:`.usd`)
``abc``             ``.abc``         Alembic point cache, through Blender (:mod:`.blender`)
``fbx``             ``.fbx``         FBX with shape-key animation, through Blender
``fbx-skinned``     ``.fbx``         FBX with the fitted armature, through Blender
``obj-sequence``    ``.obj``         one OBJ per frame + shared ``.mtl`` / texture (:mod:`.point_cache`)
``ply-sequence``    ``.ply``         one PLY per frame + shared texture
``npy``             ``.npy``         the release's ``<stem>_vertices.npy`` (T, V, 3) + ``<stem>_faces.npy``
==================  ===============  =============================================================

Suffix rules (:func:`resolve_format`): without a format the output's suffix decides,
compared case-insensitively; with a format the output must carry one of its suffixes
(or none: the format's suffix is added) — an output named for another format is refused,
never renamed.

Every export is written as one set (:func:`actionmesh_core.io.atomic.atomic_files`):
staged beside the output and moved onto the final names at the end, so an error,
Ctrl-C, SIGTERM or SIGHUP leaves no temporary file and every previous file unchanged.

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

from ._common import INSTALL, MissingDependency, animation_fps, check_animation
from .formats import FORMATS, SKIN_LIMITS, ExportFormat, ExportOptions, estimate_bytes, format_for_suffix

__all__ = ["FORMATS", "ExportFormat", "ExportOptions", "ExportResult", "MissingDependency", "export_animation",
           "resolve_format", "check_format_available", "check_export_options", "add_format_argument",
           "animation_fps", "estimate_bytes", "format_help"]


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
    """(format name, output path) for a destination and an optional format (suffixes compared case-insensitively).

    Without ``format`` the suffix decides (``.glb`` -> ``glb``, ``.usd`` -> ``usdc`` ...).
    With ``format`` the path must end in one of the format's suffixes; a path without a
    suffix gets the format's own.

    Raises:
        ValueError: unknown format; no format and an unknown suffix; or a suffix that
            belongs to another format (``x.usdz`` with ``glb``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if format is None:
        fmt = format_for_suffix(suffix)
        if fmt is None:
            known = sorted({s for f in FORMATS.values() for s in f.suffixes})
            raise ValueError(f"cannot tell the export format from {path.name!r}: use a suffix of {known} or pass "
                             f"a format from {list(FORMATS)}")
        return fmt, path
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")
    entry = FORMATS[fmt]
    if not suffix:
        return fmt, path.with_name(path.name + entry.suffix)
    if suffix not in entry.suffixes:
        other = format_for_suffix(suffix)
        meant = f" (a {other} name)" if other else ""
        raise ValueError(f"output {path} ends in {path.suffix}{meant} but format {fmt} writes "
                         f"{' or '.join(entry.suffixes)}: name it {path.with_suffix(entry.suffix).name} or pass "
                         f"the format its suffix means")
    return fmt, path


def check_format_available(format: str) -> None:
    """Raise :class:`MissingDependency` (one line, with the install command) when ``format`` cannot be written.

    Cheap (no import of the heavy modules beyond a spec lookup); call it before
    any model runs.
    """
    import importlib.util

    for module in FORMATS[format].needs:
        if module == "bpy":
            from .blender import BPY_INSTALL, has_bpy

            if not has_bpy():
                raise MissingDependency(f"{format} export needs Blender as a Python module: {BPY_INSTALL}")
        elif importlib.util.find_spec(module) is None:
            raise MissingDependency(f"{format} export needs the '{module}' module: {INSTALL[module]}")


def check_export_options(format: str, options: ExportOptions, num_vertices: Optional[int] = None) -> None:
    """Check the options a format uses (before anything runs; again with the vertex count before writing).

    Raises:
        ValueError: bones / influences / iterations outside their range (bones at most the vertex
            count when ``num_vertices`` is given), fps not a finite number > 0, interpolation
            neither STEP nor LINEAR.
    """
    import math
    import numbers

    entry = FORMATS[format]
    for name in ("bones", "influences", "iterations"):
        if name not in entry.uses:
            continue
        low, high = SKIN_LIMITS[name]
        if name == "bones" and num_vertices is not None:
            high = min(high, int(num_vertices))
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
            what = f" (the mesh has {num_vertices} vertices)" if name == "bones" and num_vertices is not None else ""
            raise ValueError(f"{name} must be an integer in [{low}, {high}] for {format}{what}, got {value!r}")
    if "interpolation" in entry.uses and str(options.interpolation).upper() not in ("STEP", "LINEAR"):
        raise ValueError(f"interpolation must be STEP or LINEAR, got {options.interpolation!r}")
    if options.fps is not None and not (isinstance(options.fps, numbers.Real) and math.isfinite(options.fps)
                                        and options.fps > 0):
        raise ValueError(f"export fps must be a finite number > 0, got {options.fps!r}")


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
    files=None,
) -> ExportResult:
    """Write an animated mesh in any registered format (see the module table); the files as one atomic set.

    Args:
        anim: :class:`~actionmesh_core.io.animated_mesh.AnimatedMesh` (faces (F, 3),
            vertices (T, V, 3) model units, times (T,) s, optional uv (V, 2) + texture).
        path: destination; for sequences/npy it names the set (``<stem>_0000.obj``,
            ``<stem>_vertices.npy``). Its folder is created (and removed again on failure).
        format: a key of :data:`FORMATS`; default from the suffix of ``path``.
        fps: frames per second (default from ``anim.times``); the first frame plays at time 0.
        interpolation: ``glb`` only: ``"STEP"`` or ``"LINEAR"`` between frames.
        bones / influences / iterations: skinned formats (see :func:`.glb_skinned.fit_skinning`).
        meters_per_unit: USD stage ``metersPerUnit``.
        release_axes: ``npy`` only: the release's axis change (see :func:`.point_cache.export_npy`).
        files: an :class:`~actionmesh_core.io.atomic.FileSet` to stage into (its owner moves the
            files in, e.g. together with per-frame files); None: this call commits its own set.

    Returns:
        :class:`ExportResult` (final paths of the files, seconds, fit error for skinned formats).

    Raises:
        MissingDependency: the format's optional dependency is missing (one line with the install command).
        TypeError / ValueError: not an AnimatedMesh, unknown format/suffix, bad settings.
        OSError: a file cannot be written (named), or its disk clearly has no room for it.
        RuntimeError: Blender failed (abc / fbx).
    """
    from ..io.atomic import atomic_files

    anim = check_animation(anim, "export_animation")
    fmt, path = resolve_format(path, format)
    check_format_available(fmt)
    options = ExportOptions(fps=fps, interpolation=interpolation, bones=bones, influences=influences,
                            iterations=iterations, meters_per_unit=meters_per_unit, release_axes=release_axes)
    check_export_options(fmt, options, anim.num_vertices)
    start = time.perf_counter()
    if files is None:
        with atomic_files(path.stem) as own:
            result = _stage(anim, fmt, path, options, own)
    else:
        result = _stage(anim, fmt, path, options, files)
    result.seconds = time.perf_counter() - start
    return result


def _stage(anim, fmt: str, path: Path, options: ExportOptions, files) -> ExportResult:
    """Write ``fmt`` into the staging folder of ``path``'s folder; the result names the final paths."""
    from ..io.atomic import check_free_space

    staged = files.path(path)
    check_free_space(staged.parent, estimate_bytes(fmt, anim.num_frames, anim.num_vertices, len(anim.faces)),
                     f"{fmt} output {path}")
    written, info = FORMATS[fmt].write(anim, staged, options)
    final = [files.final(f) for f in written]
    return ExportResult(format=fmt, path=final[0], files=final, seconds=0.0, info=info)


# --------------------------------------------------------------------------- command line


def format_help() -> str:
    """``name: description`` of every format, for help texts."""
    return "; ".join(f"{f.name} ({'/'.join(f.suffixes)}): {f.description}" for f in FORMATS.values())


def add_format_argument(parser) -> None:
    """Add ``--format``, ``--bones`` and ``--influences`` to an argparse (sub)parser (choices from the registry)."""
    parser.add_argument("--format", choices=list(FORMATS), default=None,
                        help="export format (default: from the --out suffix, case-insensitive; .glb = morph-target "
                             "GLB; --out must carry the format's suffix or none). " + format_help())
    low, high = SKIN_LIMITS["bones"]
    parser.add_argument("--bones", type=int, default=ExportOptions.bones,
                        help=f"skinned formats: number of bones, {low}-{high} and at most the vertex count "
                             f"(default {ExportOptions.bones})")
    low, high = SKIN_LIMITS["influences"]
    parser.add_argument("--influences", type=int, default=ExportOptions.influences,
                        help=f"skinned formats: bones per vertex, {low}-{high} (default {ExportOptions.influences})")
