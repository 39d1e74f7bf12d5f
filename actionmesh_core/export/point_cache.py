"""Point caches: one mesh file per frame (OBJ / PLY) and the official release's ``.npy`` pair.

* **OBJ sequence** ``<stem>_<k>.obj`` (k zero-padded, 4 digits or more): every
  frame has the same vertex order, UVs and faces; all frames share one material
  library ``<stem>.mtl`` and one texture ``<stem>_texture.png`` (written once,
  named after the export so two exports in one folder never clash). Blender's
  "Mesh Sequence Cache", Houdini's File SOP (``$F4``) and MeshLab read these.
* **PLY sequence** ``<stem>_<k>.ply`` (binary): positions, normals, UVs
  (``s``/``t``) and vertex colours; a ``comment TextureFile <stem>_texture.png``
  header line names the shared texture (MeshLab's convention).
* **npy** (the release's ``save_deformation`` layout): ``<stem>_vertices.npy``
  float32 (T, V, 3) and ``<stem>_faces.npy`` int32 (F, 3). Like the release,
  positions are written in its axis convention ``(x, y, z) -> (-z, x, y)``
  (Z up), unless ``release_axes=False``.

Every file is written atomically. Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..io.atomic import atomic_write, atomic_write_bytes
from ._common import check_animation, texture_name

__all__ = ["export_obj_sequence", "export_ply_sequence", "export_npy", "frame_file_names", "write_obj", "write_ply",
           "write_npy"]


def frame_file_names(path: Union[str, Path], num_frames: int) -> list[Path]:
    """The per-frame file names of a sequence export: ``<stem>_<k:04d><suffix>`` beside ``path``."""
    path = Path(path)
    width = max(4, len(str(num_frames - 1)))
    return [path.with_name(f"{path.stem}_{k:0{width}d}{path.suffix.lower()}") for k in range(num_frames)]


def _write_texture(anim, path: Path) -> Optional[Path]:
    image = anim.texture_image() if anim.uv is not None else None
    if image is None:
        return None
    tex = path.with_name(texture_name(path))
    with atomic_write(tex) as handle:
        image.save(handle, format="PNG")
    return tex


def _sequence_target(anim, path: Union[str, Path], suffix: str, what: str):
    """The checked animation and the sequence's naming path (its suffix checked, its folder made).

    Raises:
        TypeError / ValueError: not an AnimatedMesh, empty, or ``path`` not ending in ``suffix``.
    """
    anim = check_animation(anim, what)
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(f"{what}: the path must end in {suffix}, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return anim, path


def export_obj_sequence(anim, path: Union[str, Path]) -> list[Path]:
    """Write one OBJ per frame sharing one ``.mtl`` and one texture (see module docstring).

    Args:
        anim: :class:`~actionmesh_core.io.animated_mesh.AnimatedMesh` (vertices (T, V, 3)).
        path: ``<folder>/<stem>.obj``: names the sequence; the frames are
            ``<stem>_0000.obj`` ... (this exact file is not written).

    Returns:
        The T frame files, then the ``.mtl`` and texture when written.

    Raises:
        TypeError / ValueError: not an AnimatedMesh, empty, suffix not ``.obj``.
    """
    import trimesh

    anim, path = _sequence_target(anim, path, ".obj", "export_obj_sequence")
    extra_files = []
    tex = _write_texture(anim, path)
    mtl_name = f"{path.stem}.mtl"
    has_material = anim.uv is not None
    if has_material:
        lines = [f"newmtl {path.stem}", "Ka 1.0 1.0 1.0", "Kd 1.0 1.0 1.0", "Ks 0.0 0.0 0.0", "Ns 1.0", "illum 1"]
        if tex is not None:
            lines.append(f"map_Kd {tex.name}")
        mtl = path.with_name(mtl_name)
        with atomic_write(mtl, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        extra_files.append(mtl)
        if tex is not None:
            extra_files.append(tex)
    names = frame_file_names(path, anim.num_frames)
    for k, name in enumerate(names):
        mesh = trimesh.Trimesh(anim.vertices[k].astype(np.float64), anim.faces, process=False)
        if has_material:
            mesh.visual = trimesh.visual.TextureVisuals(uv=np.asarray(anim.uv, np.float64))
        elif anim.vertex_colors is not None:
            mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.asarray(anim.vertex_colors))
        text = trimesh.exchange.obj.export_obj(mesh, include_normals=True, include_color=anim.uv is None,
                                               include_texture=has_material, write_texture=False,
                                               return_texture=False, header=None, mtl_name=mtl_name)
        if has_material:
            # one shared material library for every frame
            body = [ln for ln in text.splitlines() if not ln.startswith(("mtllib", "usemtl"))]
            text = f"mtllib {mtl_name}\nusemtl {path.stem}\n" + "\n".join(body) + "\n"
        with atomic_write(name, "w") as handle:
            handle.write(text)
    return names + extra_files


def export_ply_sequence(anim, path: Union[str, Path]) -> list[Path]:
    """Write one binary PLY per frame (positions, normals, UVs, colours) and one shared texture.

    Args:
        anim: :class:`~actionmesh_core.io.animated_mesh.AnimatedMesh`.
        path: ``<folder>/<stem>.ply`` naming the sequence (frames ``<stem>_0000.ply`` ...).

    Returns:
        The T frame files, then the texture when written.

    Raises:
        TypeError / ValueError: not an AnimatedMesh, empty, suffix not ``.ply``.
    """
    import trimesh

    anim, path = _sequence_target(anim, path, ".ply", "export_ply_sequence")
    tex = _write_texture(anim, path)
    names = frame_file_names(path, anim.num_frames)
    for k, name in enumerate(names):
        mesh = trimesh.Trimesh(anim.vertices[k].astype(np.float64), anim.faces, process=False)
        if anim.vertex_colors is not None:
            mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.asarray(anim.vertex_colors))
        if anim.uv is not None:  # float32 s, t vertex properties
            uv = np.asarray(anim.uv, np.float32)
            mesh.vertex_attributes["s"], mesh.vertex_attributes["t"] = uv[:, 0].copy(), uv[:, 1].copy()
        data = trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=True,
                                               include_attributes=anim.uv is not None)
        if tex is not None:
            head, sep, rest = data.partition(b"\nelement vertex")
            data = head + f"\ncomment TextureFile {tex.name}".encode() + sep + rest
        atomic_write_bytes(name, data)
    return names + ([tex] if tex is not None else [])


def export_npy(anim, path: Union[str, Path], *, release_axes: bool = True) -> list[Path]:
    """Write the release's ``<stem>_vertices.npy`` (T, V, 3) float32 and ``<stem>_faces.npy`` (F, 3) int32.

    Args:
        anim: :class:`~actionmesh_core.io.animated_mesh.AnimatedMesh`.
        path: ``<folder>/<stem>.npy`` (or any path; its stem names the pair).
        release_axes: apply the release's axis change ``(x, y, z) -> (-z, x, y)``
            (``save_deformation`` in the official code); False keeps glTF's Y-up axes.

    Returns:
        [vertices path, faces path].

    Raises:
        TypeError / ValueError: not an AnimatedMesh or empty.
    """
    anim = check_animation(anim, "export_npy")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vertices = np.asarray(anim.vertices, np.float32)
    if release_axes:
        vertices = np.stack([-vertices[..., 2], vertices[..., 0], vertices[..., 1]], axis=-1)
    out = []
    for suffix, array in (("vertices", np.ascontiguousarray(vertices, np.float32)),
                          ("faces", np.asarray(anim.faces, np.int32))):
        target = path.with_name(f"{path.stem}_{suffix}.npy")
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        atomic_write_bytes(target, buf.getvalue())
        out.append(target)
    return out


def write_obj(anim, path: Path, options) -> tuple[list[Path], dict]:
    """Registry writer of ``obj-sequence``."""
    return export_obj_sequence(anim, path), {}


def write_ply(anim, path: Path, options) -> tuple[list[Path], dict]:
    """Registry writer of ``ply-sequence``."""
    return export_ply_sequence(anim, path), {}


def write_npy(anim, path: Path, options) -> tuple[list[Path], dict]:
    """Registry writer of ``npy``."""
    return export_npy(anim, path, release_axes=options.release_axes), {}
