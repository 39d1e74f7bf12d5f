"""Load and save static meshes (GLB / glTF / OBJ / PLY, plus STL / OFF) through trimesh.

Shape legend: V vertices, F faces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import trimesh

from .atomic import atomic_write_bytes

__all__ = ["load_mesh", "save_mesh", "as_mesh", "MESH_EXTENSIONS"]

#: file extensions accepted by :func:`load_mesh` / :func:`save_mesh`
MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")


def _check_ext(path: Path, what: str) -> str:
    ext = path.suffix.lower()
    if ext not in MESH_EXTENSIONS:
        raise ValueError(f"{what}: unsupported mesh format {ext or '(none)'!r} for {path}; use one of {MESH_EXTENSIONS}")
    return ext


def as_mesh(obj) -> trimesh.Trimesh:
    """Flatten a ``trimesh.Scene`` (or pass a ``trimesh.Trimesh`` through) into one mesh.

    Every mesh instance of the scene is moved by its node's world transform;
    several instances are concatenated (trimesh packs their materials).

    Args:
        obj: ``trimesh.Trimesh`` or ``trimesh.Scene``.

    Returns:
        ``trimesh.Trimesh`` (the input itself when it already is one).

    Raises:
        TypeError: ``obj`` is neither a Trimesh nor a Scene.
        ValueError: the scene holds no triangle mesh (empty, points or lines only).
    """
    if isinstance(obj, trimesh.Trimesh):
        return obj
    if not isinstance(obj, trimesh.Scene):
        raise TypeError(f"expected a trimesh.Trimesh or trimesh.Scene, got {type(obj).__name__}")
    parts = []
    for node in obj.graph.nodes_geometry:
        transform, geom_name = obj.graph[node]
        geom = obj.geometry.get(geom_name)
        if isinstance(geom, trimesh.Trimesh) and len(geom.faces) > 0:
            g = geom.copy()
            if not np.allclose(transform, np.eye(4)):
                g.apply_transform(transform)
            parts.append(g)
    if not parts:
        raise ValueError("contains no triangle mesh (empty scene, points or lines only)")
    return parts[0] if len(parts) == 1 else trimesh.util.concatenate(parts)


def load_mesh(path: Union[str, Path]) -> trimesh.Trimesh:
    """Load a triangle mesh file as one ``trimesh.Trimesh``.

    Scenes (GLB/glTF with several nodes) are flattened: every mesh instance is
    moved by its node's world transform and all are concatenated.  A single
    textured mesh keeps its ``TextureVisuals`` (UVs + material with the
    base-color image); several textured meshes are concatenated by trimesh
    (materials packed when possible).  Vertex order is kept as stored in the
    file (``process=False``: no merging), so UV seams stay split.

    Args:
        path: file path with one of :data:`MESH_EXTENSIONS`.

    Returns:
        ``trimesh.Trimesh`` with (V, 3) float64 vertices and (F, 3) int64 faces.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unsupported extension, an empty (0-byte) or unreadable file, no triangle mesh
            in the file (empty scene, point cloud, lines), or NaN/inf vertices.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_mesh: no such file: {path}")
    ext = _check_ext(path, "load_mesh")
    if path.stat().st_size == 0:
        raise ValueError(f"load_mesh: {path} is empty (0 bytes); export the mesh again")
    try:
        loaded = trimesh.load(str(path), file_type=ext[1:], process=False)
    except Exception as exc:  # trimesh raises many exception types for corrupt files
        raise ValueError(f"load_mesh: could not read {path} as {ext[1:].upper()}: {exc}") from exc
    if not isinstance(loaded, (trimesh.Trimesh, trimesh.Scene)):
        raise ValueError(f"load_mesh: {path} contains no triangle mesh (got {type(loaded).__name__})")
    try:
        mesh = as_mesh(loaded)
    except ValueError as exc:
        raise ValueError(f"load_mesh: {path} {exc}") from None
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise ValueError(f"load_mesh: {path} contains no triangles (a point cloud?)")
    if not np.isfinite(np.asarray(mesh.vertices)).all():
        raise ValueError(f"load_mesh: {path} has NaN or infinite vertex coordinates")
    mesh.metadata["file_path"] = str(path)
    return mesh


def save_mesh(mesh: trimesh.Trimesh, path: Union[str, Path]) -> Path:
    """Write a mesh (with its visuals) to GLB / glTF / OBJ / PLY / STL / OFF.

    glTF files are written as one self-contained ``.gltf`` (buffers and images
    embedded as data URIs); OBJ writes its ``.mtl`` and texture next to it.

    Args:
        mesh: ``trimesh.Trimesh`` to write.
        path: destination; parent folders are created.

    Returns:
        The written ``Path``.

    Raises:
        TypeError: ``mesh`` is not a ``trimesh.Trimesh``.
        ValueError: unsupported extension or an empty mesh.
    """
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"save_mesh: expected a trimesh.Trimesh, got {type(mesh).__name__}")
    if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise ValueError("save_mesh: the mesh is empty (no vertices or faces)")
    path = Path(path)
    ext = _check_ext(path, "save_mesh")
    path.parent.mkdir(parents=True, exist_ok=True)
    # every file is written atomically (temporary file beside it, fsync, rename): a full disk or an
    # interrupt leaves the previous file intact and no partial file
    if ext == ".gltf":
        data = trimesh.exchange.gltf.export_gltf(trimesh.Scene(mesh), embed_buffers=True)
        atomic_write_bytes(path, data["model.gltf"])
    elif ext == ".obj":
        text, extra = trimesh.exchange.obj.export_obj(
            mesh, include_texture=True, return_texture=True, mtl_name=path.stem + ".mtl"
        )
        for name, blob in extra.items():  # material library and texture images first, the OBJ last
            atomic_write_bytes(path.parent / name, blob)
        atomic_write_bytes(path, text.encode("utf-8"))
    else:
        data = mesh.export(file_type=ext[1:])
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    return path
