"""Host core types: ComfyUI's ``MESH`` (or a stand-in with the same attributes) and conversions."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .host_base import _import, has_comfy

# Every core 3D file socket type of ComfyUI 0.27 (``comfy_api.latest._io``: ``FILE_3D`` = any format, then one
# per format).  A legacy input declared as their comma-joined union accepts a link from any of them (the
# frontend and ``comfy_execution.validation.validate_node_input`` split types on commas).
FILE_3D_TYPES = ("FILE_3D", "FILE_3D_GLB", "FILE_3D_GLTF", "FILE_3D_FBX", "FILE_3D_OBJ", "FILE_3D_STL",
                 "FILE_3D_USDZ", "FILE_3D_PLY", "FILE_3D_SPLAT", "FILE_3D_SPZ", "FILE_3D_KSPLAT",
                 "FILE_3D_SPLAT_ANY", "FILE_3D_POINT_CLOUD_ANY")
FILE_3D_ANY = ",".join(FILE_3D_TYPES)



class FallbackMesh:
    """Stand-in for ComfyUI's core ``MESH`` (same attributes) outside ComfyUI.

    Attributes:
        vertices: (B, N, 3) float tensor; faces: (B, M, 3) int64 tensor;
        uvs: optional (B, N, 2); vertex_colors: optional (B, N, 3|4);
        texture: optional (B, H, W, 3); vertex_counts / face_counts: optional
        (B,) int64 real lengths when the batch is zero-padded.
    """

    def __init__(self, vertices, faces, uvs=None, vertex_colors=None, texture=None,
                 vertex_counts=None, face_counts=None):
        self.vertices = vertices
        self.faces = faces
        self.uvs = uvs
        self.vertex_colors = vertex_colors
        self.texture = texture
        self.vertex_counts = vertex_counts
        self.face_counts = face_counts


def mesh_class():
    """ComfyUI's core MESH class for this version, or ``FallbackMesh``."""
    for module_name in ("comfy_api.latest._util", "comfy_extras.nodes_hunyuan3d"):
        module = _import(module_name) if has_comfy() else None
        cls = getattr(module, "MESH", None) if module is not None else None
        if cls is not None:
            return cls
    return FallbackMesh


def make_mesh(vertices: Sequence, faces: Sequence, uvs: Optional[Sequence] = None):
    """Build a core ``MESH`` batch from per-item arrays.

    Items of equal sizes are stacked; otherwise they are zero-padded to the
    largest and ``vertex_counts`` / ``face_counts`` hold the real lengths
    (ComfyUI >= 0.2x convention for variable-size batches, also understood by
    ``SaveGLB``).

    Args:
        vertices: list of B (N_i, 3) float arrays/tensors.
        faces: list of B (M_i, 3) int arrays/tensors.
        uvs: optional list of B (N_i, 2) arrays.

    Returns:
        MESH with ``vertices`` (B, N, 3) float32 and ``faces`` (B, M, 3) int64.

    Raises:
        ValueError: empty batch or mismatched list lengths / shapes.
    """
    if len(vertices) == 0 or len(vertices) != len(faces):
        raise ValueError(f"make_mesh needs the same non-zero number of vertex and face arrays, got {len(vertices)} and {len(faces)}")
    verts = [torch.as_tensor(np.asarray(v, dtype=np.float32)).reshape(-1, 3) for v in vertices]
    tris = [torch.as_tensor(np.asarray(f, dtype=np.int64)).reshape(-1, 3) for f in faces]
    uv_list = None if uvs is None else [torch.as_tensor(np.asarray(u, dtype=np.float32)).reshape(-1, 2) for u in uvs]
    uniform = len({v.shape[0] for v in verts}) == 1 and len({f.shape[0] for f in tris}) == 1
    if uniform:
        packed_v, packed_f = torch.stack(verts), torch.stack(tris)
        packed_uv = torch.stack(uv_list) if uv_list is not None else None
        counts = (None, None)
    else:
        nv, nf = max(v.shape[0] for v in verts), max(f.shape[0] for f in tris)
        packed_v = torch.zeros((len(verts), nv, 3), dtype=torch.float32)
        packed_f = torch.zeros((len(tris), nf, 3), dtype=torch.int64)
        packed_uv = torch.zeros((len(verts), nv, 2), dtype=torch.float32) if uv_list is not None else None
        for i, (v, f) in enumerate(zip(verts, tris)):
            packed_v[i, :v.shape[0]] = v
            packed_f[i, :f.shape[0]] = f
            if packed_uv is not None:
                packed_uv[i, :uv_list[i].shape[0]] = uv_list[i]
        counts = (torch.tensor([v.shape[0] for v in verts]), torch.tensor([f.shape[0] for f in tris]))
    cls = mesh_class()
    try:
        mesh = cls(packed_v, packed_f, uvs=packed_uv, vertex_counts=counts[0], face_counts=counts[1])
    except TypeError:  # ComfyUI 0.3.x: MESH(vertices, faces) only
        mesh = cls(packed_v, packed_f)
        mesh.uvs = packed_uv
        mesh.vertex_counts, mesh.face_counts = counts
    return mesh


def mesh_batch_size(mesh) -> int:
    """Number of items B in a core ``MESH`` batch."""
    return int(mesh.vertices.shape[0]) if getattr(mesh, "vertices", None) is not None and mesh.vertices.ndim == 3 else 1


def mesh_item(mesh, index: int = 0):
    """One item of a core ``MESH`` batch as a ``trimesh.Trimesh`` (not re-processed).

    Handles zero-padded variable-size batches (``vertex_counts``/``face_counts``)
    and carries UVs as ``visual.uv`` when present.

    Raises:
        TypeError: ``mesh`` has no ``vertices``/``faces``.
        ValueError: index outside the batch or an empty item.
    """
    import trimesh

    if not hasattr(mesh, "vertices") or not hasattr(mesh, "faces"):
        raise TypeError(f"expected a MESH with vertices and faces, got {type(mesh).__name__}")
    vertices, faces = torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces)
    if vertices.ndim == 2:
        vertices, faces = vertices[None], faces[None]
    batch = vertices.shape[0]
    if not -batch <= index < batch:
        raise ValueError(f"mesh index {index} outside the batch of {batch} meshes")
    index %= batch
    v, f = vertices[index], faces[index]
    uvs = getattr(mesh, "uvs", None)
    uv = uvs[index] if uvs is not None else None
    vc, fc = getattr(mesh, "vertex_counts", None), getattr(mesh, "face_counts", None)
    if vc is not None and fc is not None:
        v, f = v[: int(vc[index])], f[: int(fc[index])]
        uv = uv[: int(vc[index])] if uv is not None else None
    v = v.detach().float().cpu().numpy()
    f = f.detach().cpu().numpy().astype(np.int64)
    if v.shape[0] == 0 or f.shape[0] == 0:
        raise ValueError(f"mesh {index} of the batch is empty (no vertices or faces)")
    visual = None
    if uv is not None:
        visual = trimesh.visual.TextureVisuals(uv=uv.detach().float().cpu().numpy())
    return trimesh.Trimesh(vertices=v, faces=f, visual=visual, process=False)

# --------------------------------------------------------------------------- FILE_3D


class FallbackFile3D:
    """Stand-in for ComfyUI's core ``File3D`` (``comfy_api.latest.Types.File3D``) outside ComfyUI.

    Same surface the core 3D nodes use: ``format`` (suffix without dot),
    ``is_disk_backed``, ``get_source()``, ``get_bytes()``, ``save_to(path)``.
    """

    def __init__(self, source: str, file_format: str = ""):
        self._source = str(source)
        self.format = (file_format or Path(self._source).suffix).lstrip(".").lower()

    @property
    def is_disk_backed(self) -> bool:
        return True

    def get_source(self) -> str:
        return self._source

    def get_bytes(self) -> bytes:
        return Path(self._source).read_bytes()

    def save_to(self, path: str) -> str:
        import shutil

        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if Path(self._source).resolve() != dest.resolve():
            shutil.copy2(self._source, dest)
        return str(dest)


def file_3d(path, file_format: str = ""):
    """A core ``File3D`` for a file on disk (what ``FILE_3D*`` sockets carry; Preview 3D takes it).

    Uses ComfyUI's own class when available (``comfy_api.latest._util.File3D``),
    else :class:`FallbackFile3D`.
    """
    module = _import("comfy_api.latest._util") if has_comfy() else None
    cls = getattr(module, "File3D", None) if module is not None else None
    if cls is None:
        cls = FallbackFile3D
    return cls(str(path), file_format)
