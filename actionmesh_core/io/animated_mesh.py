"""The animated mesh: one fixed topology, per-frame vertex positions.

Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

__all__ = ["AnimatedMesh", "check_animation"]


@dataclass
class AnimatedMesh:
    """A reference mesh animated by per-frame vertex positions (ActionMesh output).

    Attributes:
        faces: (F, 3) int64 triangle indices into the V vertices (fixed topology).
        vertices: (T, V, 3) float32 positions per frame, in the reference mesh's
            coordinate frame (model space is [-1, 1]^3 unless un-normalised).
        times: (T,) float seconds of each frame (default ``arange(T)/fps``).
        uv: optional (V, 2) float32 texture coordinates of the reference mesh.
        vertex_colors: optional (V, 3|4) uint8 or float colors.
        normals: optional (V, 3) float32 reference-mesh normals.
        texture: optional base-color image (PIL.Image or (H, W, 3|4) uint8 array).
        material: optional extra material info (e.g. a trimesh material), carried as is.
        metadata: free-form dict (anchor frame, source files, ...).
    """

    faces: np.ndarray
    vertices: np.ndarray
    times: Optional[np.ndarray] = None
    uv: Optional[np.ndarray] = None
    vertex_colors: Optional[np.ndarray] = None
    normals: Optional[np.ndarray] = None
    texture: Any = None
    material: Any = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.faces = np.asarray(self.faces, dtype=np.int64)
        self.vertices = np.asarray(self.vertices, dtype=np.float32)
        if self.vertices.ndim != 3 or self.vertices.shape[-1] != 3:
            raise ValueError(f"AnimatedMesh.vertices must be (T, V, 3), got {self.vertices.shape}")
        if self.faces.ndim != 2 or self.faces.shape[-1] != 3:
            raise ValueError(f"AnimatedMesh.faces must be (F, 3) triangles, got {self.faces.shape}")
        num_frames, num_verts = self.vertices.shape[:2]
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= num_verts):
            raise ValueError(f"AnimatedMesh.faces index outside [0, {num_verts}) vertices")
        if not np.isfinite(self.vertices).all():
            raise ValueError("AnimatedMesh.vertices contain NaN or infinite values")
        if self.times is None:
            self.times = np.arange(num_frames, dtype=np.float32) / 24.0
        self.times = np.asarray(self.times, dtype=np.float32)
        if self.times.shape != (num_frames,):
            raise ValueError(f"AnimatedMesh.times must be ({num_frames},), got {self.times.shape}")
        for name in ("uv", "vertex_colors", "normals"):
            value = getattr(self, name)
            if value is not None and len(value) != num_verts:
                raise ValueError(f"AnimatedMesh.{name} has {len(value)} rows but the mesh has {num_verts} vertices")

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.vertices.shape[0])

    @property
    def num_vertices(self) -> int:
        """Number of vertices V of the fixed topology."""
        return int(self.vertices.shape[1])

    def texture_image(self):
        """The base-color texture as an RGB/RGBA ``PIL.Image`` (or ``None``).

        Taken from ``texture`` (PIL image or (H, W, 3|4) uint8 array) or, when
        that is empty, from a trimesh ``material`` (``baseColorTexture`` or
        ``image``).

        Returns:
            ``PIL.Image`` (RGB or RGBA) or ``None`` when there is no texture.

        Raises:
            ValueError: ``texture`` is an array that is not (H, W, 3|4).
        """
        from PIL import Image

        tex = self.texture
        if tex is None and self.material is not None:
            tex = getattr(self.material, "baseColorTexture", None)
            if tex is None:
                tex = getattr(self.material, "image", None)
        if tex is None:
            return None
        if isinstance(tex, Image.Image):
            return tex if tex.mode in ("RGB", "RGBA") else tex.convert("RGBA")
        arr = np.asarray(tex)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"AnimatedMesh.texture must be a PIL image or (H, W, 3|4) array, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = np.clip(np.asarray(arr, np.float64) * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr)

    def frame_mesh(self, index: int = 0):
        """Frame ``index`` as a static ``trimesh.Trimesh`` with the reference visuals.

        UVs + texture/material become ``TextureVisuals`` (a ``PBRMaterial``
        whose ``baseColorTexture`` is :meth:`texture_image`); otherwise vertex
        colors become ``ColorVisuals``.  Vertex order and count are kept
        (``process=False``).

        Args:
            index: frame in ``[-T, T)``.

        Returns:
            ``trimesh.Trimesh`` with (V, 3) vertices and (F, 3) faces.

        Raises:
            IndexError: ``index`` outside the T frames.
        """
        import trimesh

        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"frame {index} outside the {self.num_frames} frames")
        mesh = trimesh.Trimesh(self.vertices[index].astype(np.float64), self.faces, process=False)
        image = self.texture_image()
        if self.uv is not None:
            material = None
            if self.material is not None and isinstance(self.material, trimesh.visual.material.Material):
                material = self.material.copy()
                if image is not None and isinstance(material, trimesh.visual.material.PBRMaterial):
                    material.baseColorTexture = image
            if material is None:
                material = trimesh.visual.material.PBRMaterial(
                    baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0
                )
            mesh.visual = trimesh.visual.TextureVisuals(uv=np.asarray(self.uv, np.float64), material=material)
        elif self.vertex_colors is not None:
            mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.asarray(self.vertex_colors))
        return mesh


def check_animation(anim, what: str) -> "AnimatedMesh":
    """The animation itself when it is a non-empty :class:`AnimatedMesh` (checked before a writer starts).

    Args:
        anim: the object to check.
        what: the caller's name, first word of the message.

    Raises:
        TypeError: not an ``AnimatedMesh``.
        ValueError: no faces, or fewer than 3 vertices.
    """
    if not isinstance(anim, AnimatedMesh):
        raise TypeError(f"{what}: expected an AnimatedMesh, got {type(anim).__name__}")
    if anim.faces.shape[0] == 0:
        raise ValueError(f"{what}: the animated mesh has no faces")
    if anim.num_vertices < 3:
        raise ValueError(f"{what}: the animated mesh has fewer than 3 vertices")
    return anim
