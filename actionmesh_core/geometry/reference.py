"""Prepare a user mesh as the ActionMesh reference (anchor) mesh (ActionMesh paper §3.4, {3D+video}-to-animation).

A user mesh used as anchor is (1) merged by vertex position while keeping the
map back to the original vertex order, so UVs, normals and textures survive;
(2) normalised (bounding-box center at the origin, longest side 2) with the
inverse transform kept; (3) sampled: ``num_surface_points`` area-weighted
surface points with their face normals (the TripoSG encoder input) and
``num_query_points`` farthest-point samples of a random ``subset_points``
subset of them (the encoder's query tokens; release: actionmesh/external/triposg.py,
``TripoSGVAE._sample_features``). Steps (1)-(3) follow the release (release:
actionmesh/pipeline_with_3d.py, ``ActionMeshPipelineWithMeshInput.init_banks_from_anchor``, and release:
actionmesh/preprocessing/mesh_processor.py, ``merge_and_clean_mesh``, ``normalize_mesh``, ``sample_surface``).

Shape legend: V original vertices (UV seams split), V' merged vertices,
F faces, P surface samples, M query points, T frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import trimesh

from ..io.animated_mesh import AnimatedMesh
from ..io.mesh_io import as_mesh, load_mesh
from .cleanup import validate_mesh
from .sampling import farthest_point_sampling

__all__ = ["ReferenceMesh", "prepare_reference_mesh", "check_reference_mesh", "merge_by_position", "sample_surface",
           "query_normals"]


def merge_by_position(vertices: np.ndarray, digits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices with equal positions (after rounding to ``digits`` decimals).

    Args:
        vertices: (V, 3) float positions.
        digits: decimals kept when comparing positions.

    Returns:
        ``(keep, to_merged)``: ``keep`` (V',) int64 index of the first original
        vertex of each merged vertex, in order of first appearance, so
        ``merged = vertices[keep]``; ``to_merged`` (V,) int64 with
        ``vertices[i] ~= merged[to_merged[i]]``.

    Raises:
        ValueError: ``vertices`` is not (V, 3).
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[-1] != 3:
        raise ValueError(f"merge_by_position expects (V, 3) vertices, got {v.shape}")
    rounded = np.round(v, digits) + 0.0  # + 0.0 folds -0.0 into 0.0
    _, first, inverse = np.unique(rounded, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first, kind="stable")  # merged ids in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order].astype(np.int64), rank[inverse].astype(np.int64)


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted uniform surface samples with their face normals (seeded).

    Args:
        mesh: triangle mesh with positive area.
        count: number of samples P (>= 1).
        seed: random seed (same seed -> same samples).

    Returns:
        ``(points (P, 3) float64, normals (P, 3) float64 unit face normals,
        face_index (P,) int64)``.

    Raises:
        ValueError: ``count < 1`` or the mesh has zero area.
    """
    if int(count) < 1:
        raise ValueError(f"sample_surface: count must be >= 1, got {count}")
    if not float(mesh.area) > 0:
        raise ValueError("sample_surface: the mesh has zero surface area")
    points, face_index = trimesh.sample.sample_surface(mesh, int(count), seed=int(seed))
    normals = np.asarray(mesh.face_normals)[face_index]
    return np.asarray(points, np.float64), np.asarray(normals, np.float64), np.asarray(face_index, np.int64)


def query_normals(vertices, faces):
    """Unit vertex normals of the stage II queries, as the release computes them.

    release: actionmesh/preprocessing/mesh_processor.py, ``get_mesh_features``.

    trimesh's ``Trimesh.vertex_normals`` of ``(vertices, faces)`` (angle-weighted
    face normals, computed in float64 from the float32 vertices), then
    L2-normalised in float32. This is the one implementation used for every
    stage II query: the anchor mesh (user mesh or TripoSG anchor) and the
    source mesh that each later window deforms. Area-weighted normals differ
    by tens of degrees on irregular meshes and move stage II positions.

    Args:
        vertices: (V, 3) positions (numpy array or torch tensor, model units);
            rounded to float32 first, as the decoded positions are.
        faces: (F, 3) integer vertex indices (numpy or torch).

    Returns:
        (V, 3) float32 unit normals, same type (and device for torch) as
        ``vertices``; a vertex in no face (or only in zero-area faces) gets
        (0, 0, 0).

    Raises:
        ValueError: ``vertices`` not (V, 3), ``faces`` not (F, 3), or a face
            index outside [0, V).
    """
    is_torch = isinstance(vertices, torch.Tensor)
    v = vertices.detach().to("cpu", torch.float32).numpy() if is_torch else np.asarray(vertices, np.float32)
    f = faces.detach().to("cpu", torch.int64).numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces, np.int64)
    if v.ndim != 2 or v.shape[-1] != 3:
        raise ValueError(f"query_normals: vertices must be (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[-1] != 3:
        raise ValueError(f"query_normals: faces must be (F, 3) triangles, got {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"query_normals: face indices must be in [0, {len(v) - 1}], got [{f.min()}, {f.max()}]")
    mesh = trimesh.Trimesh(v.astype(np.float64), f, process=False, validate=False)
    normals = torch.nn.functional.normalize(torch.from_numpy(np.asarray(mesh.vertex_normals, np.float32)), dim=-1)
    if is_torch:
        return normals.to(vertices.device)
    return normals.numpy()


@dataclass
class ReferenceMesh:
    """A user mesh prepared as ActionMesh anchor (release: actionmesh/pipeline_with_3d.py,
    ``ActionMeshPipelineWithMeshInput.init_banks_from_anchor``).

    Attributes:
        vertices: (V', 3) float32 merged vertices in model space: bounding box
            centered at 0, longest side 2 (so inside [-1, 1]^3).
        faces: (F', 3) int64 faces on the merged vertices (faces collapsed by
            the merge and duplicates dropped).
        vertex_normals: (V', 3) float32 unit normals of the merged mesh (:func:`query_normals`:
            trimesh angle-weighted, the stage II query normals).
        to_original: (V,) int64; original vertex ``i`` is merged vertex
            ``to_original[i]``, so ``merged_positions[:, to_original]`` expands
            an animation of merged vertices back to the original order (UV seams).
        original_faces: (F, 3) int64 faces of the original mesh.
        uv: (V, 2) float32 texture coordinates of the original vertices, or None.
        texture: base-color image (``PIL.Image``) of the source material, or None.
        material: the source trimesh material (carried as is), or None.
        center: (3,) float64 bounding-box center of the source mesh (source units).
        scale: float, model = (source - center) * scale; ``2 / longest side``.
        surface: (P, 6) float32 tensor of area-weighted samples: xyz (model
            space) + unit face normal (TripoSG encoder input).
        query_points: (M, 6) float32 tensor: FPS of a random ``subset_points``
            subset of ``surface`` (encoder queries; release:
            actionmesh/external/triposg.py, ``TripoSGVAE._sample_features``).
        vertex_colors: (V, 4) uint8 colors of the original vertices, or None.
        metadata: source path, seed, sample counts.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_normals: np.ndarray
    to_original: np.ndarray
    original_faces: np.ndarray
    uv: Optional[np.ndarray]
    texture: Any
    material: Any
    center: np.ndarray
    scale: float
    surface: torch.Tensor
    query_points: torch.Tensor
    vertex_colors: Optional[np.ndarray] = None
    metadata: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        """Number of merged vertices V' (what the stage II decoder animates)."""
        return int(self.vertices.shape[0])

    @property
    def num_original_vertices(self) -> int:
        """Number of original vertices V (UV seams split)."""
        return int(self.to_original.shape[0])

    def normalize(self, points):
        """Map source-space points to model space: ``(p - center) * scale``.

        Args:
            points: (..., 3) numpy array or torch tensor in source units.

        Returns:
            Same type and shape, in model units.
        """
        if isinstance(points, torch.Tensor):
            c = torch.as_tensor(self.center, dtype=points.dtype, device=points.device)
            return (points - c) * self.scale
        return (np.asarray(points) - self.center) * self.scale

    def denormalize(self, points):
        """Inverse of :meth:`normalize`: ``p / scale + center`` (model -> source units).

        Args:
            points: (..., 3) numpy array or torch tensor in model units.

        Returns:
            Same type and shape, in the source mesh's units and position.
        """
        if isinstance(points, torch.Tensor):
            c = torch.as_tensor(self.center, dtype=points.dtype, device=points.device)
            return points / self.scale + c
        return np.asarray(points) / self.scale + self.center

    def vertex_queries(self, device=None) -> torch.Tensor:
        """(V', 6) float32 tensor xyz + unit normal of the merged vertices (stage II queries).

        release: actionmesh/preprocessing/mesh_processor.py, ``get_mesh_features``.
        """
        q = np.concatenate([self.vertices, self.vertex_normals], axis=1).astype(np.float32)
        return torch.from_numpy(q).to(device) if device is not None else torch.from_numpy(q)

    def to_trimesh(self) -> trimesh.Trimesh:
        """The merged, normalised mesh (V', F') as a ``trimesh.Trimesh`` (no visuals)."""
        return trimesh.Trimesh(self.vertices.astype(np.float64), self.faces, process=False)

    def to_animated_mesh(self, positions, times=None, denormalize: bool = True) -> AnimatedMesh:
        """Expand per-frame merged-vertex positions to an animated mesh in the ORIGINAL vertex order.

        Args:
            positions: (T, V', 3) or (V', 3) positions of the merged vertices in
                model space (numpy or torch, e.g. the stage II decoder output).
            times: optional (T,) frame times in seconds (default ``arange(T)/24``).
            denormalize: map back to the source mesh's units/position.

        Returns:
            ``AnimatedMesh`` with faces = ``original_faces``, vertices (T, V, 3),
            UVs, texture, material, vertex colors and rest-pose normals of the
            original vertices.

        Raises:
            ValueError: wrong shape (V' must match), NaN/inf positions, or
                ``times`` of the wrong length.
        """
        if isinstance(positions, torch.Tensor):
            positions = positions.detach().to("cpu", torch.float64).numpy()
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim == 2:
            pos = pos[None]
        if pos.ndim != 3 or pos.shape[1:] != (self.num_vertices, 3):
            raise ValueError(
                f"to_animated_mesh: positions must be (T, {self.num_vertices}, 3) for the {self.num_vertices} "
                f"merged vertices, got {tuple(np.shape(positions))}"
            )
        if not np.isfinite(pos).all():
            raise ValueError("to_animated_mesh: positions contain NaN or infinite values")
        if denormalize:
            pos = self.denormalize(pos)
        verts = pos[:, self.to_original].astype(np.float32)
        normals = self.vertex_normals[self.to_original].astype(np.float32)
        meta = dict(self.metadata)
        meta.update(center=self.center.tolist(), scale=float(self.scale), denormalized=bool(denormalize))
        return AnimatedMesh(
            faces=self.original_faces.copy(),
            vertices=verts,
            times=None if times is None else np.asarray(times, np.float32),
            uv=None if self.uv is None else self.uv.copy(),
            vertex_colors=None if self.vertex_colors is None else self.vertex_colors.copy(),
            normals=normals,
            texture=self.texture,
            material=self.material,
            metadata=meta,
        )


def _visual_attributes(mesh: trimesh.Trimesh):
    """(uv (V,2)|None, texture image|None, material|None, vertex colors (V,4)|None) of a trimesh."""
    uv = texture = material = colors = None
    visual = mesh.visual
    nv = len(mesh.vertices)
    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = visual.material
        if visual.uv is not None and len(visual.uv) == nv:
            uv = np.asarray(visual.uv, np.float32)
        if material is not None:
            texture = getattr(material, "baseColorTexture", None)
            if texture is None:
                texture = getattr(material, "image", None)
    elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors, np.uint8)
    return uv, texture, material, colors


def _merge_and_measure(vertices: np.ndarray, faces: np.ndarray, merge_digits: int):
    """Step 1 of :func:`prepare_reference_mesh`: merge by position, drop collapsed and repeated faces, measure.

    Returns:
        (keep (V',) indices of the kept vertices, to_merged (V,) map to them, (F', 3) faces on the merged
        vertices, bbox centre (3,) and longest bbox side of the referenced vertices).

    Raises:
        ValueError: every face collapses when coincident vertices merge, or the mesh has zero extent.
    """
    keep, to_merged = merge_by_position(vertices, merge_digits)
    merged = vertices[keep]
    faces = to_merged[faces]
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[ok]
    if len(faces):
        _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
        faces = faces[np.sort(first)]
    if len(faces) == 0:
        raise ValueError("prepare_reference_mesh: every face collapses when merging coincident vertices")
    used = np.unique(faces)
    lo, hi = merged[used].min(0), merged[used].max(0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise ValueError("prepare_reference_mesh: the mesh has zero extent")
    return keep, to_merged, faces, (lo + hi) / 2.0, extent


def check_reference_mesh(mesh, merge_digits: int = 8) -> None:
    """The geometric checks of :func:`prepare_reference_mesh`, without its sampling (cheap; run up front).

    Args:
        mesh: ``trimesh.Trimesh``. merge_digits: as :func:`prepare_reference_mesh`.

    Raises:
        TypeError / ValueError: not a triangle mesh, NaN vertices, zero surface area, every face
            collapsing when coincident vertices merge, or zero extent.
    """
    validate_mesh(mesh, "prepare_reference_mesh")
    _merge_and_measure(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64), merge_digits)


def prepare_reference_mesh(
    mesh_or_path: Union[trimesh.Trimesh, trimesh.Scene, str, Path],
    *,
    num_surface_points: int = 16384,
    num_query_points: int = 2048,
    subset_points: int = 8192,
    seed: int = 0,
    merge_digits: int = 8,
    device=None,
    normalize: bool = True,
) -> ReferenceMesh:
    """Prepare a user mesh for encoding as the ActionMesh anchor (ActionMesh paper §3.4).

    Follows the release (release: actionmesh/pipeline_with_3d.py,
    ``ActionMeshPipelineWithMeshInput.init_banks_from_anchor``; encoder queries: release:
    actionmesh/external/triposg.py, ``TripoSGVAE._sample_features``).

    Args:
        mesh_or_path: a ``trimesh.Trimesh``/``Scene`` or a GLB/glTF/OBJ/PLY path.
        num_surface_points: P area-weighted surface samples (default 16384).
        num_query_points: M farthest-point query points (default 2048).
        subset_points: size of the random subset FPS picks from (default 8192;
            clamped to P).
        seed: seeds the surface sampling, the subset and the FPS start
            (same seed -> same points).
        merge_digits: decimals used to decide that two vertices coincide.
        device: device of the ``surface``/``query_points`` tensors and the FPS
            (default CPU; FPS runs on GPU when given a CUDA device).
        normalize: center the bounding box and scale the longest side to 2
            (default). False keeps the coordinates (identity transform): use it
            for a mesh already in model space, e.g. the TripoSG anchor mesh made
            from its own latent.

    Returns:
        :class:`ReferenceMesh`.

    Raises:
        FileNotFoundError: path does not exist.
        TypeError: unsupported input type.
        ValueError: empty / non-triangle mesh, NaN vertices, zero area, or
            inconsistent sample counts (M > subset, subset < 1, P < 1).
    """
    if isinstance(mesh_or_path, (str, Path)):
        source = load_mesh(mesh_or_path)
        source_path = str(mesh_or_path)
    elif isinstance(mesh_or_path, (trimesh.Trimesh, trimesh.Scene)):
        source = as_mesh(mesh_or_path)
        source_path = source.metadata.get("file_path")
    else:
        raise TypeError(
            "prepare_reference_mesh: expected a trimesh.Trimesh/Scene or a mesh file path, "
            f"got {type(mesh_or_path).__name__}"
        )
    validate_mesh(source, "prepare_reference_mesh")
    if int(num_surface_points) < 1:
        raise ValueError(f"prepare_reference_mesh: num_surface_points must be >= 1, got {num_surface_points}")
    subset = min(int(subset_points), int(num_surface_points))
    if subset < 1:
        raise ValueError(f"prepare_reference_mesh: subset_points must be >= 1, got {subset_points}")
    if not 1 <= int(num_query_points) <= subset:
        raise ValueError(
            f"prepare_reference_mesh: num_query_points must be in [1, {subset}] (the FPS subset), got {num_query_points}"
        )

    orig_vertices = np.asarray(source.vertices, np.float64)
    orig_faces = np.asarray(source.faces, np.int64)
    uv, texture, material, colors = _visual_attributes(source)

    # 1. merge by position (keeping the map back to the original order), drop collapsed faces, measure
    keep, to_merged, faces, center, extent = _merge_and_measure(orig_vertices, orig_faces, merge_digits)
    merged = orig_vertices[keep]

    # 2. normalise: bbox center -> 0, longest side -> 2 (referenced vertices only)
    scale = 2.0 / extent
    if not normalize:
        center, scale = np.zeros(3), 1.0
    model = (merged - center) * scale
    norm_mesh = trimesh.Trimesh(model, faces, process=False)
    validate_mesh(norm_mesh, "prepare_reference_mesh (merged)")
    vnormals = query_normals(model.astype(np.float32), faces)

    # 3. surface samples + FPS query points
    points, normals, _ = sample_surface(norm_mesh, int(num_surface_points), seed=seed)
    surface = torch.from_numpy(np.concatenate([points, normals], axis=1).astype(np.float32))
    if device is not None:
        surface = surface.to(device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    subset_idx = torch.randperm(surface.shape[0], generator=gen)[:subset].to(surface.device)
    chosen = farthest_point_sampling(surface[subset_idx, :3], int(num_query_points), seed=seed)
    query = surface[subset_idx[chosen]]

    return ReferenceMesh(
        vertices=model.astype(np.float32),
        faces=faces.astype(np.int64),
        vertex_normals=vnormals,
        to_original=to_merged,
        original_faces=orig_faces.copy(),
        uv=uv,
        texture=texture,
        material=material,
        center=center,
        scale=scale,
        surface=surface,
        query_points=query,
        vertex_colors=colors,
        metadata={
            "source_path": source_path,
            "seed": int(seed),
            "num_surface_points": int(num_surface_points),
            "num_query_points": int(num_query_points),
            "subset_points": int(subset),
        },
    )
