"""Preview rendering of animated meshes: orthographic z-buffer rasterisation.

A small CPU renderer (numpy, vectorised over triangle bounding boxes) so a
user sees the motion of an ActionMesh result without leaving the graph or
opening a 3D viewer, and so a user's mesh can be rendered as the first frame
of an image-to-video model (paper §4, "{3D+text}-to-animation": render the
mesh from a frontal viewpoint on a white background).  It is a preview, not a
production renderer: flat (per-face) Lambert shading of a grey or of the
mesh's own colours (UV texture, vertex colours or material colour), normal
shading or depth shading, one orthographic camera fixed for the whole
sequence so that motion and translation stay visible.

Conventions: model space is y-up (glTF).  The camera looks at the object
from the direction given by ``view = (azimuth, elevation)`` in degrees:
(0, 0) looks from +z towards -z (image right = +x, image up = +y); a positive
azimuth moves the camera towards +x around the y axis, a positive elevation
raises it.  Camera coordinates: x right, y up, z towards the camera (larger
z = nearer).

Shape legend: T frames, V vertices, F faces, H x W image pixels.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["RENDER_MODES", "camera_basis", "to_camera", "rasterize", "surface_colors", "render_animation"]

RENDER_MODES = ("shaded", "textured", "unlit", "normal", "depth")

_LIGHT = np.array([-0.35, 0.45, 1.0], dtype=np.float64)
_LIGHT /= np.linalg.norm(_LIGHT)
_AMBIENT = 0.3
_DIFFUSE = 0.7
_BASE_COLOR = (0.8, 0.8, 0.8)


def camera_basis(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Rows (right, up, towards-camera) of the orthographic camera.

    Args:
        azimuth_deg: rotation of the camera around the model's y axis, degrees
            (0 = camera on +z, 90 = camera on +x).
        elevation_deg: camera height angle, degrees in [-90, 90]
            (positive = looking down at the object).

    Returns:
        (3, 3) float64 orthonormal matrix; ``basis @ p`` maps a model-space
        point to camera coordinates (x right, y up, z towards the camera).

    Raises:
        ValueError: elevation outside [-90, 90] or non-finite angles.
    """
    if not (math.isfinite(azimuth_deg) and math.isfinite(elevation_deg)):
        raise ValueError(f"view angles must be finite, got ({azimuth_deg}, {elevation_deg})")
    if not -90.0 <= elevation_deg <= 90.0:
        raise ValueError(f"elevation must be in [-90, 90] degrees, got {elevation_deg}")
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    toward = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    right = np.array([math.cos(az), 0.0, -math.sin(az)])  # cross(y, toward) normalised, stable at the poles
    up = np.cross(toward, right)
    return np.stack([right, up, toward])


def to_camera(points: np.ndarray, view: Sequence[float]) -> np.ndarray:
    """Model-space points to camera coordinates for ``view = (azimuth, elevation)``.

    Args:
        points: (..., 3) float array, model units.
        view: (azimuth_deg, elevation_deg), see ``camera_basis``.

    Returns:
        (..., 3) float64 array (x right, y up, z towards the camera).
    """
    basis = camera_basis(float(view[0]), float(view[1]))
    return np.asarray(points, dtype=np.float64) @ basis.T


def rasterize(
    xy: np.ndarray,
    depth: np.ndarray,
    faces: np.ndarray,
    height: int,
    width: int,
    *,
    max_fragments: int = 2_000_000,
) -> Tuple[np.ndarray, np.ndarray]:
    """Z-buffer rasterisation of triangles already in pixel coordinates.

    A pixel (row r, column c) is covered by a triangle when its centre
    (c + 0.5, r + 0.5) lies inside or on the triangle; of all covering
    triangles the one with the largest interpolated depth (nearest to the
    camera) wins.  Work is vectorised over each triangle's pixel bounding
    box, in chunks of at most ``max_fragments`` candidate pixels.

    Args:
        xy: (V, 2) float vertex positions in pixels, x = column, y = row
            (y grows downwards).
        depth: (V,) float depth per vertex, larger = nearer.
        faces: (F, 3) int vertex indices.
        height, width: image size in pixels (>= 1).
        max_fragments: chunk size bound (memory), >= 1.

    Returns:
        face_id: (H, W) int64, index of the visible face, -1 where empty.
        zbuffer: (H, W) float64, interpolated depth, -inf where empty.

    Raises:
        ValueError: mismatched shapes, out-of-range face indices or sizes < 1.
    """
    xy = np.asarray(xy, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if xy.ndim != 2 or xy.shape[1] != 2 or depth.shape != (xy.shape[0],):
        raise ValueError(f"rasterize needs xy (V, 2) and depth (V,), got {xy.shape} and {depth.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {faces.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"image size must be >= 1, got {width}x{height}")
    if faces.size and (faces.min() < 0 or faces.max() >= xy.shape[0]):
        raise ValueError(f"faces index outside [0, {xy.shape[0]}) vertices")
    face_id = np.full(height * width, -1, dtype=np.int64)
    zbuffer = np.full(height * width, -np.inf, dtype=np.float64)
    if faces.shape[0] == 0:
        return face_id.reshape(height, width), zbuffer.reshape(height, width)

    tri = xy[faces]  # (F, 3, 2)
    x0, y0 = tri[:, 0, 0], tri[:, 0, 1]
    x1, y1 = tri[:, 1, 0], tri[:, 1, 1]
    x2, y2 = tri[:, 2, 0], tri[:, 2, 1]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    # Pixel index range whose centres fall in the triangle's bounding box.
    c_lo = np.clip(np.ceil(tri[..., 0].min(1) - 0.5), 0, width).astype(np.int64)
    c_hi = np.clip(np.floor(tri[..., 0].max(1) - 0.5), -1, width - 1).astype(np.int64)
    r_lo = np.clip(np.ceil(tri[..., 1].min(1) - 0.5), 0, height).astype(np.int64)
    r_hi = np.clip(np.floor(tri[..., 1].max(1) - 0.5), -1, height - 1).astype(np.int64)
    box_w = c_hi - c_lo + 1
    box_h = r_hi - r_lo + 1
    valid = (np.abs(area) > 1e-12) & (box_w > 0) & (box_h > 0) & np.isfinite(area)
    ids = np.nonzero(valid)[0]
    if ids.size == 0:
        return face_id.reshape(height, width), zbuffer.reshape(height, width)
    counts = box_w[ids] * box_h[ids]
    zf = depth[faces]  # (F, 3)
    eps = 1e-9

    start = 0
    cumulative = np.cumsum(counts)
    while start < ids.size:
        base = cumulative[start - 1] if start else 0
        stop = int(np.searchsorted(cumulative, base + max(int(max_fragments), 1), side="right"))
        stop = max(stop, start + 1)
        chunk = ids[start:stop]
        chunk_counts = counts[start:stop]
        total = int(chunk_counts.sum())
        owner = np.repeat(np.arange(chunk.size), chunk_counts)
        first = np.repeat(np.cumsum(chunk_counts) - chunk_counts, chunk_counts)
        local = np.arange(total, dtype=np.int64) - first
        f = chunk[owner]
        bw = box_w[f]
        col = c_lo[f] + local % bw
        row = r_lo[f] + local // bw
        px = col + 0.5
        py = row + 0.5
        a = area[f]
        w0 = ((x1[f] - px) * (y2[f] - py) - (x2[f] - px) * (y1[f] - py)) / a
        w1 = ((x2[f] - px) * (y0[f] - py) - (x0[f] - px) * (y2[f] - py)) / a
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
        if inside.any():
            f, w0, w1, w2 = f[inside], w0[inside], w1[inside], w2[inside]
            pixel = (row * width + col)[inside]
            z = w0 * zf[f, 0] + w1 * zf[f, 1] + w2 * zf[f, 2]
            order = np.lexsort((-z, pixel))  # by pixel, nearest first
            pixel, z, f = pixel[order], z[order], f[order]
            keep = np.ones(pixel.size, dtype=bool)
            keep[1:] = pixel[1:] != pixel[:-1]
            pixel, z, f = pixel[keep], z[keep], f[keep]
            better = z > zbuffer[pixel]
            zbuffer[pixel[better]] = z[better]
            face_id[pixel[better]] = f[better]
        start = stop
    return face_id.reshape(height, width), zbuffer.reshape(height, width)


def _background_rgb(background: Union[float, Sequence[float]]) -> np.ndarray:
    bg = np.asarray(background, dtype=np.float32).reshape(-1)
    if bg.size == 1:
        bg = np.repeat(bg, 3)
    if bg.size != 3 or not np.isfinite(bg).all() or bg.min() < 0 or bg.max() > 1:
        raise ValueError(f"background must be a grey level or an RGB triple in [0, 1], got {background}")
    return bg


def _barycentrics(xy: np.ndarray, faces: np.ndarray, face_id: np.ndarray) -> np.ndarray:
    """(K, 3) barycentric weights of the centres of the covered pixels (``face_id >= 0``) in their faces."""
    rows, cols = np.nonzero(face_id >= 0)
    tri = xy[faces[face_id[rows, cols]]]  # (K, 3, 2)
    px, py = cols + 0.5, rows + 0.5
    (x0, y0), (x1, y1), (x2, y2) = tri[:, 0].T, tri[:, 1].T, tri[:, 2].T
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area
    w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area
    weights = np.clip(np.stack([w0, w1, 1.0 - w0 - w1], axis=1), 0.0, 1.0)
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


def _material_color(material, names: Sequence[str] = ("baseColorFactor", "diffuse")) -> Optional[np.ndarray]:
    """RGB colour of a trimesh material in [0, 1] (first of ``names`` that is set), or None."""
    for name in names:
        value = getattr(material, name, None) if material is not None else None
        if value is not None:
            rgb = np.asarray(value, dtype=np.float64).reshape(-1)[:3]
            if rgb.size == 3 and np.isfinite(rgb).all():
                return rgb / 255.0 if rgb.max() > 1.0 or np.asarray(value).dtype == np.uint8 else rgb
    return None


def _sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of (H, W, 3) ``texture`` at (K, 2) UVs (v up, repeat wrap) -> (K, 3)."""
    height, width = texture.shape[:2]
    x = np.mod(uv[:, 0], 1.0) * width - 0.5
    y = (1.0 - np.mod(uv[:, 1], 1.0)) * height - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, x1 = np.mod(x0, width), np.mod(x0 + 1, width)
    y0, y1 = np.mod(y0, height), np.mod(y0 + 1, height)
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def surface_colors(anim, default: Sequence[float] = _BASE_COLOR) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The mesh's own surface colour as a function of (face ids, barycentric weights).

    Precedence: UV texture (``anim.uv`` + ``anim.texture_image()``, times the
    material's glTF ``baseColorFactor`` when set), then vertex colours, then
    the material's colour, then ``default``.  Texture lookups are bilinear
    with repeat wrapping; UVs follow trimesh's convention (v = 0 at the
    bottom row of the texture image).

    Args:
        anim: an ``AnimatedMesh`` (uv (V, 2), vertex_colors (V, 3|4) uint8 or
            float, texture, material; all optional).
        default: RGB in [0, 1] used when the mesh carries no colour.

    Returns:
        ``colors(face_ids (K,), weights (K, 3)) -> (K, 3)`` float64 RGB in [0, 1].
    """
    faces = np.asarray(anim.faces, dtype=np.int64)
    material = getattr(anim, "material", None)
    factor = _material_color(material, ("baseColorFactor",))  # glTF: colour = factor * texture
    uv = getattr(anim, "uv", None)
    image = anim.texture_image() if uv is not None and hasattr(anim, "texture_image") else None
    if uv is not None and image is not None:
        texture = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
        uv = np.asarray(uv, dtype=np.float64)
        scale = factor if factor is not None else np.ones(3)

        def from_texture(face_ids, weights):
            coords = np.einsum("kj,kjc->kc", weights, uv[faces[face_ids]])
            return _sample_texture(texture, coords) * scale
        return from_texture
    colors = getattr(anim, "vertex_colors", None)
    if colors is not None:
        raw = np.asarray(colors)
        rgb = raw[:, :3].astype(np.float64)
        if raw.dtype == np.uint8 or rgb.max() > 1.0:
            rgb = rgb / 255.0

        def from_vertices(face_ids, weights):
            return np.einsum("kj,kjc->kc", weights, rgb[faces[face_ids]])
        return from_vertices
    flat = _material_color(material)
    flat = flat if flat is not None else np.asarray(default, dtype=np.float64)
    return lambda face_ids, weights: np.broadcast_to(flat, (len(face_ids), 3))


def render_animation(
    anim,
    *,
    size: int = 256,
    mode: str = "shaded",
    view: Sequence[float] = (30.0, 15.0),
    background: Union[float, Sequence[float]] = 1.0,
    center: Optional[Sequence[float]] = None,
    extent: Optional[float] = None,
    margin: float = 0.025,
    color: Sequence[float] = _BASE_COLOR,
    callback: Optional[Callable[[int, int], object]] = None,
) -> np.ndarray:
    """Render every frame of an animated mesh with one fixed orthographic camera.

    Modes: ``"shaded"`` = flat Lambert shading (ambient 0.3 + diffuse 0.7
    from a light above-left of the camera, two-sided) times ``color``;
    ``"textured"`` = the same shading times the mesh's own colour (UV
    texture, else vertex colours, else material colour, else ``color``; see
    ``surface_colors``); ``"unlit"`` = that colour without shading;
    ``"normal"`` = camera-space face normal mapped to RGB as ``n * 0.5 + 0.5``
    (a face looking at the camera is (0.5, 0.5, 1)); ``"depth"`` = grey level
    ``0.15 + 0.85 * (z - z_min) / (z_max - z_min)`` with the depth range of
    the whole sequence (nearer = brighter).

    Framing: the view window is a square of half-side ``extent`` (model
    units) centred on ``center`` (camera-plane x, y); by default it is
    centred on the projected bounding box of all frames and its side is the
    box's longer side plus ``margin`` of it on each side, so the framing is
    the same for every frame and motion stays visible.  ``margin=0.1`` frames
    the object as Prepare Frames crops it (box centred, 10 % white margin;
    release: actionmesh/preprocessing/image_processor.py, ``apply_padding``), e.g. for the first
    frame of an image-to-video model.

    Args:
        anim: an ``AnimatedMesh`` (or any object with ``vertices`` (T, V, 3)
            and ``faces`` (F, 3)).
        size: image side in pixels, 8..4096.
        mode: one of ``RENDER_MODES``.
        view: (azimuth_deg, elevation_deg), see ``camera_basis``.
        background: grey level or RGB triple in [0, 1].
        center: optional (x, y) centre of the view in camera-plane units.
        extent: optional half-side of the view window in model units (> 0).
        margin: automatic framing margin per side, as a fraction of the
            projected box's longer side (>= 0; ignored with ``extent``).
        color: RGB base colour in [0, 1] for ``"shaded"`` (and the fallback
            colour of ``"textured"``/``"unlit"``).
        callback: optional ``callback(frames_done, total)`` after each frame
            (progress / interruption hook; exceptions it raises propagate).

    Returns:
        (T, size, size, 3) float32 array in [0, 1].

    Raises:
        ValueError: unknown mode, bad size/extent/margin/background/colour or
            a mesh whose vertices are not (T, V, 3) / faces not (F, 3).
    """
    if mode not in RENDER_MODES:
        raise ValueError(f"unknown render mode {mode!r}; choose one of {RENDER_MODES}")
    size = int(size)
    if not 8 <= size <= 4096:
        raise ValueError(f"render size must be in [8, 4096] pixels, got {size}")
    vertices = np.asarray(getattr(anim, "vertices", None), dtype=np.float64)
    faces = np.asarray(getattr(anim, "faces", None), dtype=np.int64)
    if vertices.ndim == 2:
        vertices = vertices[None]
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"animation vertices must be (T, V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"animation faces must be (F, 3), got {faces.shape}")
    if not np.isfinite(vertices).all():
        raise ValueError("animation vertices contain NaN or infinite values")
    bg = _background_rgb(background)
    base = np.asarray(color, dtype=np.float64).reshape(-1)
    if base.size != 3 or base.min() < 0 or base.max() > 1:
        raise ValueError(f"color must be an RGB triple in [0, 1], got {color}")

    cam = to_camera(vertices, view)  # (T, V, 3)
    num_frames = cam.shape[0]
    if cam.shape[1] == 0:
        lo = hi = np.zeros(3)
    else:
        lo, hi = cam.reshape(-1, 3).min(0), cam.reshape(-1, 3).max(0)
    if center is None:
        cx, cy = 0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1])
    else:
        cx, cy = float(center[0]), float(center[1])
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be >= 0 (a fraction of the object's longer side), got {margin}")
    if extent is None:
        half = max(hi[0] - cx, cx - lo[0], hi[1] - cy, cy - lo[1])
        extent = (1.0 + 2.0 * margin) * half if half > 0 else 1.0
    elif not (math.isfinite(extent) and extent > 0):
        raise ValueError(f"extent must be a positive number of model units, got {extent}")
    scale = 0.5 * size / float(extent)
    z_lo, z_hi = float(lo[2]), float(hi[2])
    albedo = surface_colors(anim, base) if mode in ("textured", "unlit") else None

    images = np.empty((num_frames, size, size, 3), dtype=np.float32)
    for t in range(num_frames):
        pts = cam[t]
        xy = np.stack([(pts[:, 0] - cx) * scale + 0.5 * size, 0.5 * size - (pts[:, 1] - cy) * scale], axis=1)
        face_id, zbuf = rasterize(xy, pts[:, 2], faces, size, size)
        covered = face_id >= 0
        image = np.empty((size, size, 3), dtype=np.float64)
        image[:] = bg
        if covered.any():
            visible = face_id[covered]
            if mode == "depth":
                span = z_hi - z_lo
                value = 0.15 + 0.85 * ((zbuf[covered] - z_lo) / span if span > 1e-12 else np.ones(visible.size))
                image[covered] = np.clip(value, 0.0, 1.0)[:, None]
            else:
                tri = pts[faces[visible]]
                normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
                normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-30)
                normal *= np.where(normal[:, 2:3] < 0, -1.0, 1.0)  # two-sided: face the camera
                if mode == "normal":
                    image[covered] = normal * 0.5 + 0.5
                else:
                    if albedo is not None:
                        colour = albedo(visible, _barycentrics(xy, faces, face_id))
                    else:
                        colour = base[None]
                    if mode == "unlit":
                        image[covered] = colour
                    else:
                        lambert = np.clip(normal @ _LIGHT, 0.0, None)
                        image[covered] = colour * (_AMBIENT + _DIFFUSE * lambert)[:, None]
        images[t] = np.clip(image, 0.0, 1.0)
        if callback is not None:
            callback(t + 1, num_frames)
    return images
