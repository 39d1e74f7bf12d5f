"""Animated GLB import (glTF 2.0 morph targets, :func:`read_animated_glb`).

The writers (:func:`~actionmesh_core.export.glb.export_animated_glb`, the per-frame
:func:`~actionmesh_core.export.glb.export_static_glbs`) live in the export package,
next to the skinned GLB writer; they stay importable from here.

Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Union

import numpy as np

from ..export.glb import export_animated_glb, export_static_glbs, frame_normals  # noqa: F401  (the writers)
from .animated_mesh import AnimatedMesh

__all__ = ["export_animated_glb", "read_animated_glb", "export_static_glbs", "frame_normals"]

_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_NUM = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


# --------------------------------------------------------------------------- import


def _buffers(gltf, path: Path) -> list[bytes]:
    out = []
    for i, buf in enumerate(gltf.buffers):
        uri = buf.uri
        if uri is None or uri == "":
            blob = gltf.binary_blob()
            if blob is None:
                raise ValueError(f"read_animated_glb: buffer {i} of {path} has no data")
            out.append(bytes(blob))
        elif uri.startswith("data:"):
            out.append(base64.b64decode(uri.split(",", 1)[1]))
        else:
            file = path.parent / uri
            if not file.is_file():
                raise ValueError(f"read_animated_glb: external buffer {uri!r} of {path} not found")
            out.append(file.read_bytes())
    return out


def _read_accessor(gltf, buffers, index: int) -> np.ndarray:
    """Accessor -> (count, ncomp) array (normalised integers -> float32); supports strides and sparse."""
    acc = gltf.accessors[index]
    dtype = np.dtype(_COMPONENT[acc.componentType])
    n = _NUM[acc.type]
    count = int(acc.count)
    if acc.bufferView is None:
        out = np.zeros((count, n), dtype)
    else:
        bv = gltf.bufferViews[acc.bufferView]
        data = buffers[bv.buffer]
        start = int(bv.byteOffset or 0) + int(acc.byteOffset or 0)
        stride = int(bv.byteStride or dtype.itemsize * n)
        end = start + (count - 1) * stride + dtype.itemsize * n if count else start
        if end > len(data):
            raise ValueError(f"read_animated_glb: accessor {index} reads past the end of its buffer (corrupt file)")
        out = np.ndarray((count, n), dtype, buffer=data, offset=start, strides=(stride, dtype.itemsize)).copy()
    sparse = getattr(acc, "sparse", None)
    if sparse is not None and sparse.count:
        iv = gltf.bufferViews[sparse.indices.bufferView]
        idt = np.dtype(_COMPONENT[sparse.indices.componentType])
        ids = np.frombuffer(buffers[iv.buffer], idt, count=sparse.count,
                            offset=int(iv.byteOffset or 0) + int(sparse.indices.byteOffset or 0)).astype(np.int64)
        vv = gltf.bufferViews[sparse.values.bufferView]
        vals = np.frombuffer(buffers[vv.buffer], dtype, count=sparse.count * n,
                             offset=int(vv.byteOffset or 0) + int(sparse.values.byteOffset or 0)).reshape(-1, n)
        out = out.copy()
        out[ids] = vals
    if acc.normalized and dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.maximum(out.astype(np.float32) / float(info.max), -1.0)
    return out


def _attr(obj, key):
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _node_matrix(node) -> np.ndarray:
    if node.matrix is not None and len(node.matrix) == 16:
        return np.asarray(node.matrix, np.float64).reshape(4, 4).T  # glTF matrices are column-major
    m = np.eye(4)
    if node.scale is not None:
        m = np.diag(list(node.scale) + [1.0]) @ m
    if node.rotation is not None:
        x, y, z, w_ = node.rotation
        r = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w_), 2 * (x * z + y * w_)],
            [2 * (x * y + z * w_), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w_)],
            [2 * (x * z - y * w_), 2 * (y * z + x * w_), 1 - 2 * (x * x + y * y)],
        ])
        rot = np.eye(4)
        rot[:3, :3] = r
        m = rot @ m
    if node.translation is not None:
        tr = np.eye(4)
        tr[:3, 3] = node.translation
        m = tr @ m
    return m


def _read_image(gltf, buffers, path: Path, material_index):
    from PIL import Image

    if material_index is None or material_index >= len(gltf.materials):
        return None, None
    mat = gltf.materials[material_index]
    pbr = mat.pbrMetallicRoughness
    factor = list(pbr.baseColorFactor) if pbr is not None and pbr.baseColorFactor else None
    info = pbr.baseColorTexture if pbr is not None else None
    if info is None or info.index is None or info.index >= len(gltf.textures):
        return None, factor
    src = gltf.textures[info.index].source
    if src is None or src >= len(gltf.images):
        return None, factor
    img = gltf.images[src]
    if img.bufferView is not None:
        bv = gltf.bufferViews[img.bufferView]
        start = int(bv.byteOffset or 0)
        data = buffers[bv.buffer][start : start + int(bv.byteLength)]
    elif img.uri and img.uri.startswith("data:"):
        data = base64.b64decode(img.uri.split(",", 1)[1])
    elif img.uri and (path.parent / img.uri).is_file():
        data = (path.parent / img.uri).read_bytes()
    else:
        return None, factor
    image = Image.open(io.BytesIO(data))
    image.load()
    return image, factor


def read_animated_glb(path: Union[str, Path]) -> AnimatedMesh:
    """Read an animated (morph-target) GLB/glTF back into an :class:`AnimatedMesh`.

    Takes the first scene node that has a mesh (or mesh 0), concatenates its
    triangle primitives, applies the node's world transform, and rebuilds
    frame ``k`` as ``base + sum_j weight[k, j] * target_j`` from the first
    ``weights`` animation channel of that node (CUBICSPLINE: the keyframe
    values).  Without such an animation each morph target becomes one frame
    (target ``j`` at weight 1; frames every 1/24 s); without targets the file
    is a single frame.  UVs (``v`` flipped back), the base-color texture,
    COLOR_0 and NORMAL are read when present.

    Args:
        path: ``.glb`` or ``.gltf`` file.

    Returns:
        ``AnimatedMesh`` (T frames at the animation's key times, seconds).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable file, no mesh in the file, non-triangle
            primitives, primitives with different morph-target counts, or an
            animation whose weight count does not match the morph targets.
    """
    import pygltflib
    from trimesh.visual.material import PBRMaterial

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_animated_glb: no such file: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"read_animated_glb: {path} is empty (0 bytes); export the animation again")
    try:
        gltf = pygltflib.GLTF2().load(str(path))
    except Exception as exc:
        raise ValueError(f"read_animated_glb: {path} is not a readable glTF/GLB file: {exc}") from exc
    if gltf is None or not gltf.meshes:
        raise ValueError(f"read_animated_glb: {path} contains no mesh")
    buffers = _buffers(gltf, path)

    # the node holding the mesh, and its world transform
    parent = {c: i for i, nd in enumerate(gltf.nodes) for c in (nd.children or [])}
    node_index = next((i for i, nd in enumerate(gltf.nodes) if nd.mesh is not None), None)
    world = np.eye(4)
    if node_index is not None:
        mesh_index = gltf.nodes[node_index].mesh
        i = node_index
        while i is not None:
            world = _node_matrix(gltf.nodes[i]) @ world
            i = parent.get(i)
    else:
        mesh_index = 0
    gmesh = gltf.meshes[mesh_index]

    positions, faces, uvs, colors, normals, deltas = [], [], [], [], [], []
    offset = 0
    n_targets = None
    material_index = None
    for p, prim in enumerate(gmesh.primitives):
        if prim.mode not in (None, 4):
            raise ValueError(f"read_animated_glb: primitive {p} of {path} is not made of triangles (mode {prim.mode})")
        pos_idx = _attr(prim.attributes, "POSITION")
        if pos_idx is None:
            raise ValueError(f"read_animated_glb: primitive {p} of {path} has no POSITION")
        pos = _read_accessor(gltf, buffers, pos_idx).astype(np.float64)
        nv = len(pos)
        if prim.indices is not None:
            idx = _read_accessor(gltf, buffers, prim.indices).reshape(-1).astype(np.int64)
        else:
            idx = np.arange(nv, dtype=np.int64)
        if len(idx) % 3:
            raise ValueError(f"read_animated_glb: primitive {p} of {path} has {len(idx)} indices, not triangles")
        targets = prim.targets or []
        if n_targets is None:
            n_targets = len(targets)
        elif len(targets) != n_targets:
            raise ValueError(
                f"read_animated_glb: morph-target count mismatch between primitives of {path} "
                f"({n_targets} vs {len(targets)})"
            )
        d = np.zeros((len(targets), nv, 3))
        for j, tg in enumerate(targets):
            ti = _attr(tg, "POSITION")
            if ti is not None:
                d[j] = _read_accessor(gltf, buffers, ti)
        positions.append(pos)
        faces.append(idx.reshape(-1, 3) + offset)
        deltas.append(d)
        uv_i = _attr(prim.attributes, "TEXCOORD_0")
        uvs.append(None if uv_i is None else _read_accessor(gltf, buffers, uv_i).astype(np.float32))
        c_i = _attr(prim.attributes, "COLOR_0")
        colors.append(None if c_i is None else _read_accessor(gltf, buffers, c_i))
        n_i = _attr(prim.attributes, "NORMAL")
        normals.append(None if n_i is None else _read_accessor(gltf, buffers, n_i).astype(np.float64))
        if material_index is None:
            material_index = prim.material
        offset += nv
    base = np.concatenate(positions)
    faces = np.concatenate(faces)
    deltas = np.concatenate(deltas, axis=1) if n_targets else np.zeros((0, len(base), 3))

    # frames from the weights animation of that node
    times = None
    weights = None
    for anim in gltf.animations or []:
        for ch in anim.channels:
            if ch.target is not None and ch.target.path == "weights" and ch.target.node == node_index:
                smp = anim.samplers[ch.sampler]
                times = _read_accessor(gltf, buffers, smp.input).reshape(-1).astype(np.float32)
                out = _read_accessor(gltf, buffers, smp.output).reshape(-1).astype(np.float64)
                per_key = 3 * n_targets if smp.interpolation == "CUBICSPLINE" else n_targets
                if n_targets == 0 or out.size != len(times) * per_key:
                    raise ValueError(
                        f"read_animated_glb: morph-target count mismatch in {path}: the weights animation has "
                        f"{out.size} values for {len(times)} keys but the mesh has {n_targets} morph targets "
                        f"(expected {len(times) * per_key})"
                    )
                weights = out.reshape(len(times), per_key)
                if smp.interpolation == "CUBICSPLINE":
                    weights = weights[:, n_targets : 2 * n_targets]
                break
        if weights is not None:
            break
    if weights is None:
        if n_targets:
            weights = np.eye(n_targets)
        else:
            weights = np.zeros((1, 0))
        times = np.arange(len(weights), dtype=np.float32) / 24.0
    if gmesh.weights and n_targets and len(gmesh.weights) != n_targets:
        raise ValueError(
            f"read_animated_glb: morph-target count mismatch in {path}: mesh.weights has {len(gmesh.weights)} "
            f"entries for {n_targets} targets"
        )
    frames = base[None] + np.einsum("tj,jvc->tvc", weights, deltas)
    if not np.allclose(world, np.eye(4)):
        frames = frames @ world[:3, :3].T + world[:3, 3]

    # visuals
    uv = None
    if all(u is not None for u in uvs):
        uv = np.concatenate(uvs).astype(np.float32)
        uv[:, 1] = 1.0 - uv[:, 1]
    vcol = None
    if all(c is not None for c in colors):
        cols = []
        for c in colors:
            c = np.asarray(c)
            if c.dtype.kind == "f":
                c = np.clip(np.round(c * 255.0), 0, 255).astype(np.uint8)
            if c.shape[1] == 3:
                c = np.concatenate([c, np.full((len(c), 1), 255, np.uint8)], axis=1)
            cols.append(c.astype(np.uint8))
        vcol = np.concatenate(cols)
    nrm = None
    if all(n is not None for n in normals):
        nrm = np.concatenate(normals) @ np.linalg.inv(world[:3, :3]).T
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-20)
        nrm = nrm.astype(np.float32)
    image, factor = _read_image(gltf, buffers, path, material_index)
    material = None
    if image is not None or factor is not None:
        material = PBRMaterial(baseColorTexture=image, baseColorFactor=factor)
    return AnimatedMesh(
        faces=faces,
        vertices=frames.astype(np.float32),
        times=times,
        uv=uv,
        vertex_colors=vcol,
        normals=nrm,
        texture=image,
        material=material,
        metadata={"source_path": str(path), "num_morph_targets": int(n_targets or 0)},
    )
