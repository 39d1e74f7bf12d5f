"""Mesh clean-up after marching cubes (REFERENCE §4, anchor mesh from a latent).

Order: merge duplicate vertices -> drop degenerate and duplicate faces and
unreferenced vertices -> quadric decimation to a face budget
(``fast-simplification``) -> drop floaters (connected components with fewer
than a fraction of the largest component's faces).

Shape legend: V vertices, F faces.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import trimesh

__all__ = ["clean_mesh", "validate_mesh", "remove_small_components"]


def validate_mesh(mesh, what: str = "mesh", *, require_area: bool = True) -> trimesh.Trimesh:
    """Check that ``mesh`` is a usable triangle mesh and return it.

    Args:
        mesh: a ``trimesh.Trimesh``.
        what: name used in error messages.
        require_area: also reject meshes whose total surface area is 0.

    Returns:
        The same ``trimesh.Trimesh``.

    Raises:
        TypeError: not a ``trimesh.Trimesh`` (e.g. a ``Scene`` or point cloud;
            load files with :func:`actionmesh_core.io.mesh_io.load_mesh`).
        ValueError: no vertices or faces, faces not (F, 3) triangles, face
            indices out of range, NaN/inf vertices, or zero surface area.
    """
    if isinstance(mesh, trimesh.Scene):
        raise TypeError(f"{what}: got a trimesh.Scene; flatten it first (actionmesh_core.io.mesh_io.load_mesh does)")
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"{what}: expected a trimesh.Trimesh, got {type(mesh).__name__}")
    verts = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    if verts.ndim != 2 or verts.shape[-1] != 3 or len(verts) == 0:
        raise ValueError(f"{what}: has no vertices (vertices shape {verts.shape}); nothing to process")
    if faces.ndim != 2 or len(faces) == 0:
        raise ValueError(f"{what}: has no faces; a triangle mesh (not a point cloud) is required")
    if faces.shape[-1] != 3:
        raise ValueError(f"{what}: faces must be triangles (F, 3), got {faces.shape}; triangulate the mesh first")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise ValueError(f"{what}: face indices outside [0, {len(verts)})")
    if not np.isfinite(verts).all():
        bad = int((~np.isfinite(verts)).any(-1).sum())
        raise ValueError(f"{what}: {bad} vertices are NaN or infinite; fix or remove them first")
    if require_area and not float(mesh.area) > 0.0:
        raise ValueError(f"{what}: total surface area is 0 (all faces degenerate); nothing to sample or render")
    return mesh


def remove_small_components(mesh: trimesh.Trimesh, min_fraction: float = 0.02) -> trimesh.Trimesh:
    """Drop connected components with fewer than ``min_fraction`` x the largest component's faces.

    Components are face-connected through shared edges (REFERENCE §4: floaters
    below 2% of the largest component are removed).

    Args:
        mesh: (V, 3) / (F, 3) triangle mesh (vertices should be merged first).
        min_fraction: in [0, 1]; 0 keeps everything.

    Returns:
        A new ``trimesh.Trimesh`` without the small components and their
        unreferenced vertices.

    Raises:
        ValueError: ``min_fraction`` outside [0, 1].
    """
    if not 0.0 <= float(min_fraction) <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    if min_fraction == 0 or len(mesh.faces) == 0:
        return mesh.copy()
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    counts = np.bincount(labels)
    keep = counts[labels] >= float(min_fraction) * counts.max()
    out = mesh.copy()
    out.update_faces(keep)
    out.remove_unreferenced_vertices()
    return out


def clean_mesh(
    mesh: trimesh.Trimesh,
    *,
    target_faces: Optional[int] = 40000,
    min_component_fraction: float = 0.02,
    merge_digits: Optional[int] = None,
    aggressiveness: float = 7.0,
) -> trimesh.Trimesh:
    """Clean a marching-cubes mesh (REFERENCE §4 order).

    1. merge duplicate vertices (positions equal after rounding to
       ``merge_digits`` decimals; default: trimesh's tolerance, 8 digits);
    2. drop degenerate faces (repeated index or zero area), duplicate faces
       (same vertex set in any order) and unreferenced vertices;
    3. quadric decimation to at most ``target_faces`` faces with
       fast-simplification (skipped when already below or ``None``);
    4. drop components with fewer than ``min_component_fraction`` x the
       largest component's faces, then unreferenced vertices.

    Vertex attributes other than positions (UVs, colors) do not survive
    decimation; use this on generated meshes, not on textured user meshes.

    Args:
        mesh: input (V, 3) / (F, 3) triangle mesh in any units.
        target_faces: face budget (>= 4) or ``None`` for no decimation.
        min_component_fraction: floater threshold in [0, 1] (0 disables).
        merge_digits: decimals used to merge vertices (None = trimesh default).
        aggressiveness: fast-simplification ``agg`` (higher = faster, coarser).

    Returns:
        A new ``trimesh.Trimesh`` (V', 3) float64 / (F', 3) int64; the input
        is not modified.

    Raises:
        TypeError: ``mesh`` is not a ``trimesh.Trimesh``.
        ValueError: empty mesh, non-triangle faces, NaN vertices, zero area,
            or bad options.
    """
    validate_mesh(mesh, "clean_mesh")
    if target_faces is not None and int(target_faces) < 4:
        raise ValueError(f"clean_mesh: target_faces must be >= 4 or None, got {target_faces}")
    if not 0.0 <= float(min_component_fraction) <= 1.0:
        raise ValueError(f"clean_mesh: min_component_fraction must be in [0, 1], got {min_component_fraction}")
    out = trimesh.Trimesh(
        np.asarray(mesh.vertices, dtype=np.float64).copy(), np.asarray(mesh.faces, dtype=np.int64).copy(), process=False
    )
    # 1. merge duplicate vertices
    out.merge_vertices(digits_vertex=merge_digits)
    # 2. degenerate / duplicate faces, unreferenced vertices
    out.update_faces(out.nondegenerate_faces())
    out.update_faces(out.unique_faces())
    out.remove_unreferenced_vertices()
    if len(out.faces) == 0:
        raise ValueError("clean_mesh: every face is degenerate; nothing is left to clean")
    # 3. quadric decimation to the face budget
    if target_faces is not None and len(out.faces) > int(target_faces):
        import fast_simplification

        verts, faces = fast_simplification.simplify(
            out.vertices.astype(np.float32), out.faces.astype(np.int32), target_count=int(target_faces), agg=aggressiveness
        )
        out = trimesh.Trimesh(np.asarray(verts, np.float64), np.asarray(faces, np.int64), process=False)
        out.merge_vertices(digits_vertex=merge_digits)
        out.update_faces(out.nondegenerate_faces())
        out.update_faces(out.unique_faces())
        out.remove_unreferenced_vertices()
    # 4. floaters
    out = remove_small_components(out, min_component_fraction)
    out.metadata.update(getattr(mesh, "metadata", {}) or {})
    return out
