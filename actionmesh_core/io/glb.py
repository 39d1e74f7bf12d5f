"""Animated GLB export and import (glTF 2.0 morph targets), written with pygltflib.

One file holds the whole animation, readable by any glTF viewer (Blender,
three.js, Windows 3D Viewer, ...) without Blender in the loop:

* the base mesh is **frame 0** (so viewers that ignore animations show the
  first frame) with ``TEXCOORD_0`` + base-color texture, ``COLOR_0`` and
  ``NORMAL`` when available;
* **one morph target per frame**: target ``k`` stores the POSITION (and, with
  normals, NORMAL) deltas ``frame_k - frame_0`` (target 0 is all zeros);
* one **animation** whose sampler maps the frame times (seconds) to one-hot
  weight vectors on the node's ``weights``; ``STEP`` shows exact frames,
  ``LINEAR`` blends consecutive frames linearly.

Accessor ``min``/``max`` are written for every POSITION accessor and the
animation input, as the glTF 2.0 specification requires; files pass the
Khronos glTF validator without errors.

Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .animated_mesh import AnimatedMesh, check_animation
from .atomic import atomic_write, atomic_write_bytes

__all__ = ["export_animated_glb", "read_animated_glb", "export_static_glbs", "frame_normals"]

_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_NUM = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


# --------------------------------------------------------------------------- helpers


def frame_normals(faces: np.ndarray, vertices: np.ndarray, weld: bool = True) -> np.ndarray:
    """Area-weighted unit vertex normals for every frame.

    Args:
        faces: (F, 3) int triangle indices.
        vertices: (T, V, 3) or (V, 3) positions.
        weld: share normals between vertices at the same frame-0 position
            (UV seams) so shading has no seam.

    Returns:
        (T, V, 3) (or (V, 3)) float32 unit normals; vertices without faces get
        (0, 0, 1).

    Raises:
        ValueError: shapes are not (F, 3) / (T, V, 3) or indices out of range.
    """
    v = np.asarray(vertices, np.float64)
    single = v.ndim == 2
    if single:
        v = v[None]
    faces = np.asarray(faces, np.int64)
    if v.ndim != 3 or v.shape[-1] != 3 or faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"frame_normals: need faces (F, 3) and vertices (T, V, 3), got {faces.shape}, {v.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= v.shape[1]):
        raise ValueError("frame_normals: face indices outside the vertex range")
    if weld:
        _, group = np.unique(np.round(v[0], 9), axis=0, return_inverse=True)
        group = group.reshape(-1)
    else:
        group = np.arange(v.shape[1])
    ng = int(group.max()) + 1 if len(group) else 0
    gf = group[faces]
    out = np.empty_like(v)
    for t in range(v.shape[0]):
        tri = v[t][faces]
        fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
        acc = np.zeros((ng, 3))
        for c in range(3):
            np.add.at(acc, gf[:, c], fn)
        n = acc[group]
        length = np.linalg.norm(n, axis=1, keepdims=True)
        n = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
        out[t] = n
    out = out.astype(np.float32)
    return out[0] if single else out


class _BinWriter:
    """Accumulates 4-byte-aligned buffer views + accessors for one GLB buffer."""

    def __init__(self, gltf):
        self.gltf = gltf
        self.chunks: list[bytes] = []
        self.offset = 0

    def view(self, data: bytes, target: Optional[int] = None) -> int:
        import pygltflib

        pad = (-self.offset) % 4
        if pad:
            self.chunks.append(b"\x00" * pad)
            self.offset += pad
        self.gltf.bufferViews.append(
            pygltflib.BufferView(buffer=0, byteOffset=self.offset, byteLength=len(data), target=target)
        )
        self.chunks.append(data)
        self.offset += len(data)
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, kind: str, *, target: Optional[int] = None, minmax: bool = False,
                 normalized: bool = False) -> int:
        import pygltflib

        arr = np.ascontiguousarray(array)
        comp = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint8): _UBYTE, np.dtype(np.uint16): _USHORT,
                np.dtype(np.uint32): _UINT}[arr.dtype]
        count = int(arr.shape[0])
        bv = self.view(arr.tobytes(), target)
        acc = pygltflib.Accessor(bufferView=bv, byteOffset=0, componentType=comp, count=int(count), type=kind,
                                 normalized=True if normalized else None)
        if minmax:
            flat = arr.reshape(count, -1)
            acc.min = [float(x) for x in flat.min(0)]
            acc.max = [float(x) for x in flat.max(0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def blob(self) -> bytes:
        data = b"".join(self.chunks)
        return data + b"\x00" * ((-len(data)) % 4)


def _png_bytes(image) -> bytes:
    buf = io.BytesIO()
    img = image if image.mode in ("RGB", "RGBA") else image.convert("RGBA")
    img.save(buf, format="PNG")
    return buf.getvalue()


def _glb_target(path, interpolation: str, what: str):
    """``(Path, "STEP" | "LINEAR")`` of an animated GLB writer's arguments.

    Raises:
        ValueError: the path does not end in ``.glb``, or ``interpolation`` is neither STEP nor LINEAR.
    """
    path = Path(path)
    if path.suffix.lower() != ".glb":
        raise ValueError(f"{what} writes binary glTF; the path must end in .glb, got {path.name!r}")
    interpolation = str(interpolation).upper()
    if interpolation not in ("STEP", "LINEAR"):
        raise ValueError(f"{what}: interpolation must be 'STEP' or 'LINEAR', got {interpolation!r}")
    return path, interpolation


def _surface_attributes(writer: "_BinWriter", attrs, anim: AnimatedMesh, what: str):
    """Write ``anim``'s UVs and vertex colours as ``TEXCOORD_0`` / ``COLOR_0`` of ``attrs``; return its texture image.

    UVs (V, 2) get glTF's top-left origin (v -> 1 - v); colours (V, 3|4), uint8
    or floats in [0, 1] (or [0, 255]), become normalized RGBA8. Shared by the
    morph-target and skinned writers.

    Returns:
        The texture image (``anim.texture_image()``) when there are UVs, else None.

    Raises:
        ValueError: vertex colours not (V, 3|4) (``what`` names the writer).
    """
    if anim.uv is not None:
        uv = np.asarray(anim.uv, np.float32).copy()
        uv[:, 1] = 1.0 - uv[:, 1]
        attrs.TEXCOORD_0 = writer.accessor(uv, "VEC2", target=_ARRAY_BUFFER)
    if anim.vertex_colors is not None:
        col = np.asarray(anim.vertex_colors)
        if col.ndim != 2 or col.shape[1] not in (3, 4):
            raise ValueError(f"{what}: vertex_colors must be (V, 3|4), got {col.shape}")
        if col.dtype != np.uint8:
            col = np.clip(np.asarray(col, np.float64) * (255.0 if col.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if col.shape[1] == 3:
            col = np.concatenate([col, np.full((len(col), 1), 255, np.uint8)], axis=1)
        attrs.COLOR_0 = writer.accessor(col, "VEC4", target=_ARRAY_BUFFER, normalized=True)
    return anim.texture_image() if anim.uv is not None else None


def _material_factors(material):
    """(baseColorFactor RGBA in [0,1] | None, metallic, roughness, doubleSided, alphaMode) of a trimesh material."""
    color = None
    metallic, roughness, double, alpha = 0.0, 1.0, False, None
    if material is None:
        return color, metallic, roughness, double, alpha
    bcf = getattr(material, "baseColorFactor", None)
    if bcf is not None:
        c = np.asarray(bcf, np.float64).reshape(-1)
        if c.size in (3, 4):
            if c.max() > 1.0:
                c = c / 255.0
            color = [float(x) for x in (list(c) + [1.0])[:4]]
    if getattr(material, "metallicFactor", None) is not None:
        metallic = float(material.metallicFactor)
    if getattr(material, "roughnessFactor", None) is not None:
        roughness = float(material.roughnessFactor)
    double = bool(getattr(material, "doubleSided", False) or False)
    alpha = getattr(material, "alphaMode", None)
    return color, metallic, roughness, double, alpha


# --------------------------------------------------------------------------- export


def _append_material(gltf, writer: "_BinWriter", material, image, name: str) -> None:
    """Append material 0 (PBR factors of ``material``; ``image`` as base-colour texture 0 when given) to ``gltf``.

    Shared by the animated (morph-target) and the skinned GLB writers.
    """
    import pygltflib

    color, metallic, roughness, double, alpha = _material_factors(material)
    pbr = pygltflib.PbrMetallicRoughness(metallicFactor=metallic, roughnessFactor=roughness)
    if color is not None:
        pbr.baseColorFactor = color
    if image is not None:
        gltf.images.append(pygltflib.Image(bufferView=writer.view(_png_bytes(image)), mimeType="image/png"))
        gltf.samplers.append(pygltflib.Sampler(magFilter=9729, minFilter=9987, wrapS=10497, wrapT=10497))
        gltf.textures.append(pygltflib.Texture(sampler=0, source=0))
        pbr.baseColorTexture = pygltflib.TextureInfo(index=0)
    out = pygltflib.Material(pbrMetallicRoughness=pbr, doubleSided=double, name=f"{name}_material")
    if alpha in ("BLEND", "MASK"):
        out.alphaMode = alpha
    gltf.materials.append(out)


def export_animated_glb(
    anim: AnimatedMesh,
    path: Union[str, Path],
    *,
    fps: Optional[float] = None,
    interpolation: str = "STEP",
    per_frame_dir: Union[str, Path, None] = None,
    include_normals: bool = True,
    name: str = "ActionMesh",
) -> Path:
    """Write an animated mesh as ONE glTF binary file (morph target per frame + weights animation).

    Layout (see module docstring): base mesh = frame 0; target k = deltas
    ``frame_k - frame_0``; animation sampler input = frame times in seconds,
    output = T one-hot weight vectors (T*T floats); channel path ``weights``.
    UVs (``v`` flipped to glTF's top-left origin) and the base-color texture
    (PNG) come from the reference mesh when ``anim.uv`` is set.

    Args:
        anim: the :class:`AnimatedMesh` (faces (F, 3), vertices (T, V, 3),
            times (T,) seconds, optional uv (V, 2), vertex_colors (V, 3|4),
            texture / material).
        path: destination ``.glb`` (parent folders are created).
        fps: frames per second; when given, times are ``arange(T) / fps``
            instead of ``anim.times``.
        interpolation: ``"STEP"`` (exact frames) or ``"LINEAR"`` (blend).
        per_frame_dir: also write one static GLB per frame there
            (:func:`export_static_glbs`, prefix = the file's stem).
        include_normals: write NORMAL (base) and per-frame NORMAL deltas
            (smooth shading that follows the motion; doubles the size).
        name: node / mesh name.

    Returns:
        The written ``Path``.

    Raises:
        TypeError: ``anim`` is not an ``AnimatedMesh``.
        ValueError: no faces, extension not ``.glb``, bad ``interpolation``,
            ``fps <= 0``, or frame times not strictly increasing.
    """
    import pygltflib

    anim = check_animation(anim, "export_animated_glb")
    path, interpolation = _glb_target(path, interpolation, "export_animated_glb")
    T, V = anim.num_frames, anim.num_vertices
    if fps is not None:
        if not float(fps) > 0:
            raise ValueError(f"export_animated_glb: fps must be > 0, got {fps}")
        times = np.arange(T, dtype=np.float32) / np.float32(fps)
    else:
        times = np.asarray(anim.times, np.float32)
    if T > 1 and not (np.diff(times) > 0).all():
        raise ValueError("export_animated_glb: frame times must be strictly increasing (pass fps= to regenerate them)")
    if not np.isfinite(times).all() or times[0] < 0:
        raise ValueError("export_animated_glb: frame times must be finite and >= 0 seconds")

    verts = np.asarray(anim.vertices, np.float32)
    base = verts[0]
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(generator="ActionMesh ComfyUI (pygltflib)", version="2.0"))
    w = _BinWriter(gltf)

    # indices
    faces = np.asarray(anim.faces)
    idx_dtype = np.uint16 if V < 65535 else np.uint32
    attrs = pygltflib.Attributes()
    indices = w.accessor(faces.astype(idx_dtype).reshape(-1), "SCALAR", target=_ELEMENT_ARRAY_BUFFER)
    attrs.POSITION = w.accessor(base, "VEC3", target=_ARRAY_BUFFER, minmax=True)
    normals = frame_normals(faces, verts) if include_normals else None
    if normals is not None:
        attrs.NORMAL = w.accessor(normals[0], "VEC3", target=_ARRAY_BUFFER)
    image = _surface_attributes(w, attrs, anim, "export_animated_glb")

    # morph targets: one per frame, deltas to frame 0
    targets = []
    for k in range(T):
        t = pygltflib.Attributes()
        t.POSITION = w.accessor(verts[k] - base, "VEC3", target=_ARRAY_BUFFER, minmax=True)
        if normals is not None:
            t.NORMAL = w.accessor(normals[k] - normals[0], "VEC3", target=_ARRAY_BUFFER)
        targets.append(t)

    # material
    _append_material(gltf, w, anim.material, image, name)

    prim = pygltflib.Primitive(attributes=attrs, indices=indices, material=0, mode=pygltflib.TRIANGLES, targets=targets)
    width = max(3, len(str(T - 1)))
    gltf.meshes.append(
        pygltflib.Mesh(primitives=[prim], weights=[0.0] * T, name=name,
                       extras={"targetNames": [f"frame_{k:0{width}d}" for k in range(T)]})
    )
    gltf.nodes.append(pygltflib.Node(mesh=0, name=name))
    gltf.scenes.append(pygltflib.Scene(nodes=[0]))
    gltf.scene = 0

    # animation: times -> one-hot weights
    t_acc = w.accessor(times.astype(np.float32), "SCALAR", minmax=True)
    weights = np.eye(T, dtype=np.float32).reshape(-1)
    w_acc = w.accessor(weights, "SCALAR")
    gltf.animations.append(
        pygltflib.Animation(
            name=f"{name}_animation",
            samplers=[pygltflib.AnimationSampler(input=t_acc, output=w_acc, interpolation=interpolation)],
            channels=[pygltflib.AnimationChannel(sampler=0, target=pygltflib.AnimationChannelTarget(node=0, path="weights"))],
        )
    )
    blob = w.blob()
    gltf.buffers.append(pygltflib.Buffer(byteLength=len(blob)))
    gltf.set_binary_blob(blob)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = gltf.save_to_bytes()
    if not chunks:
        raise RuntimeError(f"pygltflib produced no GLB bytes for {path}")
    # atomic: a temporary file beside the target, fsync, rename (a full disk or Ctrl-C leaves the old file)
    with atomic_write(path, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    if per_frame_dir is not None:
        export_static_glbs(anim, per_frame_dir, prefix=path.stem)
    return path


def export_static_glbs(anim: AnimatedMesh, folder: Union[str, Path], prefix: str = "frame") -> list[Path]:
    """Write every frame as its own static GLB (with UVs/texture or vertex colors), via trimesh.

    Args:
        anim: the :class:`AnimatedMesh`.
        folder: output folder (created).
        prefix: file names are ``{prefix}_{k:03d}.glb`` (wider for T > 1000).

    Returns:
        The T written paths, in frame order.

    Raises:
        TypeError: ``anim`` is not an ``AnimatedMesh``.
        ValueError: the mesh has no faces.
    """
    anim = check_animation(anim, "export_static_glbs")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(anim.num_frames - 1)))
    paths = []
    for k in range(anim.num_frames):
        p = folder / f"{prefix}_{k:0{width}d}.glb"
        atomic_write_bytes(p, anim.frame_mesh(k).export(file_type="glb"))
        paths.append(p)
    return paths


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
