"""The export-format registry: ONE table of every format (name, suffixes, description, needs, writer, size).

The command line's ``--format`` choices and help, the batch's formats, the ComfyUI
export node's list, the suffix rules of :func:`actionmesh_core.export.resolve_format`
and the dependency checks all read :data:`FORMATS`. Adding a format means adding one
entry here and its writer module in this package.

A writer is ``write(anim, path, options) -> (files, info)``: it writes the format's
files for ``path`` (its folder exists; the dispatcher stages it, so plain atomic writes
suffice), returns every file written (main file first) and a dict of facts (skinned
formats: the fit's bone count and error).

Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..options import ExportOptions

__all__ = ["ExportFormat", "ExportOptions", "FORMATS", "SKIN_LIMITS", "format_for_suffix", "estimate_bytes",
           "planned_files"]

#: accepted ranges of the skinned formats' options (bones are also capped by the vertex count)
SKIN_LIMITS = {"bones": (1, 1024), "influences": (1, 8), "iterations": (1, 1000)}


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        name: the ``--format`` value.
        suffixes: accepted output suffixes, lower case; the first is the one written.
        description: one line for help texts and the node's tooltip.
        writer: ``"module:function"`` in this package, imported when the format is written.
        needs: optional modules it needs (``"pxr"``, ``"py_dem_bones"``, ``"bpy"``), checked up front.
        uses: the :class:`ExportOptions` fields it reads besides ``fps``.
        bytes_per: ``(per vertex per frame, per vertex, per face, per frame)`` bytes: the size estimate
            (see :func:`estimate_bytes`; a lower bound of the file size, textures left out).
        files: the names it may write, as templates: ``{name}`` the output's name, ``{stem}`` its stem,
            ``{frames}`` one file per frame (``<stem>_0000<suffix>`` ...), see :func:`planned_files`.
    """

    name: str
    suffixes: Tuple[str, ...]
    description: str
    writer: str
    needs: Tuple[str, ...] = ()
    uses: Tuple[str, ...] = ()
    bytes_per: Tuple[float, float, float, float] = (12.0, 0.0, 12.0, 0.0)
    files: Tuple[str, ...] = ("{name}",)

    @property
    def suffix(self) -> str:
        """The suffix written (``.glb``, ``.usdz``, ...)."""
        return self.suffixes[0]

    @property
    def skinned(self) -> bool:
        """Whether bones are fitted to the motion (``--bones``/``--influences`` apply)."""
        return "bones" in self.uses

    def write(self, anim, path: Path, options: ExportOptions) -> Tuple[List[Path], dict]:
        """Import and call the writer (see the module docstring)."""
        module, function = self.writer.split(":")
        return getattr(importlib.import_module(f".{module}", __package__), function)(anim, Path(path), options)


_SKIN = ("bones", "influences", "iterations")
_TEXTURE = "{stem}_texture.png"  # see ._common.texture_name

#: format name -> :class:`ExportFormat`, in the order of the command line's choices (``glb`` first)
FORMATS: Dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("glb", (".glb",), "animated GLB, one morph target per frame (plays in Blender, three.js, ComfyUI)",
                 "glb:write", uses=("interpolation",), bytes_per=(24.0, 32.0, 6.0, 4.0)),
    ExportFormat("glb-skinned", (".glb",), "skinned GLB: bones + weights fitted to the motion (game engines)",
                 "glb_skinned:write", needs=("py_dem_bones",), uses=_SKIN, bytes_per=(0.0, 64.0, 6.0, 0.0)),
    ExportFormat("usdc", (".usdc", ".usd"), "USD point cache (binary), texture beside it", "usd:write",
                 needs=("pxr",), uses=("meters_per_unit",), bytes_per=(24.0, 8.0, 16.0, 0.0),
                 files=("{name}", _TEXTURE)),
    ExportFormat("usda", (".usda",), "USD point cache (text), texture beside it", "usd:write",
                 needs=("pxr",), uses=("meters_per_unit",), bytes_per=(48.0, 16.0, 24.0, 0.0),
                 files=("{name}", _TEXTURE)),
    ExportFormat("usdz", (".usdz",), "USD point cache packaged with its texture", "usd:write",
                 needs=("pxr",), uses=("meters_per_unit",), bytes_per=(24.0, 8.0, 16.0, 0.0)),
    ExportFormat("abc", (".abc",), "Alembic point cache (needs bpy), texture beside it", "blender:write_abc",
                 needs=("bpy",), bytes_per=(12.0, 8.0, 12.0, 0.0), files=("{name}", _TEXTURE)),
    ExportFormat("fbx", (".fbx",), "FBX with shape-key animation (needs bpy), texture embedded",
                 "blender:write_fbx",
                 needs=("bpy",), bytes_per=(12.0, 12.0, 12.0, 0.0)),
    ExportFormat("fbx-skinned", (".fbx",), "FBX with a fitted armature (needs bpy), texture embedded",
                 "blender:write_fbx_skinned", needs=("py_dem_bones", "bpy"), uses=_SKIN,
                 bytes_per=(0.0, 64.0, 12.0, 0.0)),
    ExportFormat("obj-sequence", (".obj",), "one OBJ per frame, one shared .mtl and texture",
                 "point_cache:write_obj", bytes_per=(30.0, 0.0, 24.0, 0.0),
                 files=("{frames}", "{stem}.mtl", _TEXTURE)),
    ExportFormat("ply-sequence", (".ply",), "one PLY per frame, one shared texture", "point_cache:write_ply",
                 bytes_per=(32.0, 0.0, 13.0, 0.0), files=("{frames}", _TEXTURE)),
    ExportFormat("npy", (".npy",), "the release's <stem>_vertices.npy (T, V, 3) + <stem>_faces.npy (F, 3)",
                 "point_cache:write_npy", uses=("release_axes",), bytes_per=(12.0, 0.0, 12.0, 0.0),
                 files=("{stem}_vertices.npy", "{stem}_faces.npy")),
)}


def format_for_suffix(suffix: str) -> Optional[str]:
    """The format an output suffix means without ``--format`` (case-insensitive): the first entry claiming it."""
    suffix = suffix.lower()
    return next((f.name for f in FORMATS.values() if suffix in f.suffixes), None)


def estimate_bytes(format: str, frames: int, vertices: int, faces: int) -> int:
    """A lower bound of the bytes a format writes for an animation of that size (textures not counted).

    Used to refuse early an output that clearly cannot fit on its disk.
    """
    per_vf, per_v, per_f, per_frame = FORMATS[format].bytes_per
    return int(per_vf * frames * vertices + per_v * vertices + per_f * faces + per_frame * frames * frames)


def planned_files(format: str, path: Path, frames: int) -> List[Path]:
    """Every file ``format`` may write for output ``path`` and ``frames`` frames (from its ``files`` templates)."""
    from .point_cache import frame_file_names

    path = Path(path)
    out: List[Path] = []
    for template in FORMATS[format].files:
        if template == "{frames}":
            out += frame_file_names(path, frames)
        else:
            out.append(path.with_name(template.format(name=path.name, stem=path.stem)))
    return out
