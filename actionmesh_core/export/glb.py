"""Animated GLB export (glTF 2.0 morph targets), written with pygltflib; the glTF writing pieces shared with
the skinned GLB (:mod:`.glb_skinned`).

One file holds the whole animation, readable by any glTF viewer (Blender,
three.js, Windows 3D Viewer, ...) without Blender in the loop:

* the base mesh is **frame 0** (so viewers that ignore animations show the
  first frame) with ``TEXCOORD_0`` + base-color texture, ``COLOR_0`` and
  ``NORMAL`` when available;
* **one morph target per frame**: target ``k`` stores the POSITION (and, with
  normals, NORMAL) deltas ``frame_k - frame_0`` (target 0 is all zeros);
* one **animation** whose sampler maps the frame times (seconds, the first
  frame at 0) to one-hot weight vectors on the node's ``weights``; ``STEP``
  shows exact frames, ``LINEAR`` blends consecutive frames linearly.

Accessor ``min``/``max`` are written for every POSITION accessor and the
animation input, as the glTF 2.0 specification requires; files pass the
Khronos glTF validator without errors. Files are read back by
:func:`actionmesh_core.io.glb.read_animated_glb`.

Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..io.animated_mesh import AnimatedMesh, check_animation
from ..io.atomic import atomic_write, atomic_write_bytes
from ._common import animation_fps, frame_codes

__all__ = ["export_animated_glb", "export_static_glbs", "frame_normals", "write"]

_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125


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
            instead of ``anim.times - anim.times[0]`` (the first frame is at 0 s).
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
    # frame k at (times[k] - times[0]) s, or k / fps: the first frame plays at 0 s, as in every format
    times = (frame_codes(anim, fps) / animation_fps(anim, fps)).astype(np.float32)
    if not np.isfinite(times).all() or (T > 1 and not (np.diff(times) > 0).all()):
        raise ValueError("export_animated_glb: frame times must be finite and strictly increasing in float32 "
                         "(pass fps= to regenerate them)")

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


def write(anim, path: Path, options) -> tuple[list[Path], dict]:
    """Registry writer of ``glb`` (:data:`actionmesh_core.export.formats.FORMATS`)."""
    export_animated_glb(anim, path, fps=animation_fps(anim, options.fps), interpolation=options.interpolation)
    return [Path(path)], {}
