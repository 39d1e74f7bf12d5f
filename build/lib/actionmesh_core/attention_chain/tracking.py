"""2D point tracks, the 2D<->3D bridge and surface trajectories (attention-chains §4.4).

* 2D tracking, eq. 6: ``p_f = argmax_p sum_{t,t'} A(P_a->Z_a)[p_a, t] A(Z_a->Z_f)[t, t'] A(P_f->Z_f)[p, t']``
  with image-patch endpoints (the denoiser's patch <-> token cross-attention).
* 2D<->3D bridge, eq. 7: ``p_v = argmax_p sum_t A(P_a->Z_a)[p, t] A(Z_a->V_a)[t, v]``
  and ``v_p = argmax_v ...``; we use the vertex -> token attention rows as
  A(Z_a->V_a)^T (the only vertex<->token attention the VAE decoder computes).
  The resulting (pixel, vertex) pairs feed :func:`~actionmesh_core.attention_chain.camera.estimate_camera_pose`.
* 4D tracks, eq. 9: a surface point (face, barycentric) follows the animated
  mesh and is mapped to the anchor camera with (R, t).

Patch grids are row-major (index = row * gw + col) over an image of size
(W, H) in pixels, pixel centres at integer coordinates (OpenCV convention).

Shape legend: Q query pixels, P patches (gh * gw), N tokens, L vertices, T frames.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ._checks import as_numpy, as_tensor, check_faces, check_frame, check_int
from .chain import compose_chain, top_candidates

__all__ = [
    "patch_centers",
    "pixel_to_patch",
    "track_pixels",
    "bridge_vertices_to_pixels",
    "bridge_pixels_to_vertices",
    "surface_tracks",
]

FrameMatrices = Union[torch.Tensor, Sequence[torch.Tensor], Callable[[int], torch.Tensor]]


def _grid(grid: Sequence[int]) -> tuple[int, int]:
    if not isinstance(grid, (tuple, list)) or len(grid) != 2:
        raise ValueError(f"grid must be (rows, cols) of the patch grid, got {grid!r}")
    return check_int("grid rows", grid[0]), check_int("grid cols", grid[1])


def _size(image_size: Sequence[int]) -> tuple[int, int]:
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
        raise ValueError(f"image_size must be (width, height), got {image_size!r}")
    return check_int("image width", image_size[0]), check_int("image height", image_size[1])


def patch_centers(grid: Sequence[int], image_size: Sequence[int]) -> np.ndarray:
    """Pixel centres of a row-major patch grid (e.g. DINOv2 16 x 16 patches of a 224 px image).

    Args:
        grid: (gh, gw) patches per column / row.
        image_size: (W, H) pixels.

    Returns:
        (gh * gw, 2) float64 (x, y) pixel coordinates.

    Raises:
        ValueError: on bad grid/size.
    """
    gh, gw = _grid(grid)
    w, h = _size(image_size)
    xs = (np.arange(gw) + 0.5) * (w / gw) - 0.5
    ys = (np.arange(gh) + 0.5) * (h / gh) - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1)


def pixel_to_patch(pixels, grid: Sequence[int], image_size: Sequence[int]) -> np.ndarray:
    """Row-major index of the patch containing each pixel.

    Args:
        pixels: (Q, 2) (x, y) pixel coordinates inside the image.
        grid: (gh, gw).
        image_size: (W, H).

    Returns:
        (Q,) int64 patch indices.

    Raises:
        ValueError: on pixels outside ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
    """
    p = as_numpy("pixels", pixels, ndim=2, last=2)
    gh, gw = _grid(grid)
    w, h = _size(image_size)
    if (p[:, 0] < -0.5).any() or (p[:, 0] > w - 0.5).any() or (p[:, 1] < -0.5).any() or (p[:, 1] > h - 0.5).any():
        raise ValueError(f"pixels must lie inside the {w}x{h} image")
    col = np.clip(np.floor((p[:, 0] + 0.5) * gw / w), 0, gw - 1).astype(np.int64)
    row = np.clip(np.floor((p[:, 1] + 0.5) * gh / h), 0, gh - 1).astype(np.int64)
    return row * gw + col


def _frame_item(name: str, source, f: int):
    if callable(source) and not isinstance(source, torch.Tensor):
        return source(f)
    return source[f]


def track_pixels(query_pixels, a_pa_za, a_za_zf: FrameMatrices, a_pf_zf: FrameMatrices,
                 grid: Sequence[int], image_size: Sequence[int], anchor_frame: int,
                 num_frames: Optional[int] = None, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """2D point tracks of query pixels through the patch attention chain (§4.4 eq. 6).

    Each query pixel uses the attention row of the anchor-frame patch that
    contains it; in frame f the best patch by eq. 6 is found and the pixel's
    offset from its own patch centre is added to that patch's centre.

    Args:
        query_pixels: (Q, 2) (x, y) pixels in the anchor frame image.
        a_pa_za: (P, N) anchor-frame patch -> anchor-token attention.
        a_za_zf: (T, N, N) tensor, a length-T sequence of (N, N), or a callable
            ``f -> (N, N)`` (anchor-token -> frame-f-token attention).
        a_pf_zf: (T, P, N), a sequence of (P, N), or a callable ``f -> (P, N)``
            (frame-f patch -> frame-f-token attention).
        grid: (gh, gw) patch grid, P = gh * gw.
        image_size: (W, H) pixels.
        anchor_frame: index of the anchor frame (tracks = queries there).
        num_frames: T; required when both sources are callables.
        chunk: patches scored per step.

    Returns:
        (tracks (T, Q, 2) float64 pixels, scores (T, Q) chain score of the
        matched patch; 1.0 at the anchor frame).

    Raises:
        ValueError: on inconsistent shapes or frame counts.
    """
    q = as_numpy("query_pixels", query_pixels, ndim=2, last=2)
    a = as_tensor("a_pa_za", a_pa_za, ndim=2)
    centers = patch_centers(grid, image_size)
    if a.shape[0] != centers.shape[0]:
        raise ValueError(f"a_pa_za has {a.shape[0]} patch rows but the grid has {centers.shape[0]} patches")
    if num_frames is None:
        for src in (a_za_zf, a_pf_zf):
            if not callable(src) or isinstance(src, torch.Tensor):
                num_frames = len(src)
                break
    if num_frames is None:
        raise ValueError("num_frames is required when a_za_zf and a_pf_zf are both callables")
    anchor_frame = check_frame(anchor_frame, num_frames)
    patch = pixel_to_patch(q, grid, image_size)
    offset = q - centers[patch]
    rows = a[torch.as_tensor(patch, device=a.device)]
    tracks = np.empty((num_frames, q.shape[0], 2))
    scores = np.ones((num_frames, q.shape[0]))
    for f in range(num_frames):
        if f == anchor_frame:
            tracks[f] = q
            continue
        chained = compose_chain(rows, _frame_item("a_za_zf", a_za_zf, f))
        b = as_tensor(f"a_pf_zf[{f}]", _frame_item("a_pf_zf", a_pf_zf, f), ndim=2)
        if b.shape[0] != centers.shape[0]:
            raise ValueError(f"a_pf_zf[{f}] has {b.shape[0]} rows but the grid has {centers.shape[0]} patches")
        s, idx = top_candidates(chained, b.to(chained.device), top_k=1, chunk=chunk)
        best = idx[:, 0].cpu().numpy()
        tracks[f] = centers[best] + offset
        scores[f] = s[:, 0].cpu().numpy()
    return tracks, scores


def bridge_vertices_to_pixels(a_pa_za, a_va_za, grid: Sequence[int], image_size: Sequence[int],
                              chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Pixel of each vertex through the shared anchor tokens (§4.4 eq. 7, right).

    ``p_v = argmax_p sum_t A(P_a->Z_a)[p, t] A(V_a->Z_a)[v, t]``; returns the
    centre of the best patch.  Pair the result with the vertex positions for
    :func:`~actionmesh_core.attention_chain.camera.estimate_camera_pose`.

    Args:
        a_pa_za: (P, N) anchor patch -> token attention.
        a_va_za: (L, N) vertex -> anchor-token attention rows.
        grid: (gh, gw), P = gh * gw.
        image_size: (W, H).
        chunk: patches scored per step.

    Returns:
        (pixels (L, 2) float64, scores (L,) float64 bridge score of the best patch).

    Raises:
        ValueError: on inconsistent shapes.
    """
    p = as_tensor("a_pa_za", a_pa_za, ndim=2)
    v = as_tensor("a_va_za", a_va_za, ndim=2, device=p.device)
    centers = patch_centers(grid, image_size)
    if p.shape[0] != centers.shape[0]:
        raise ValueError(f"a_pa_za has {p.shape[0]} patch rows but the grid has {centers.shape[0]} patches")
    s, idx = top_candidates(v, p, top_k=1, chunk=chunk)
    return centers[idx[:, 0].cpu().numpy()], s[:, 0].cpu().numpy().astype(np.float64)


def bridge_pixels_to_vertices(a_query_za, a_va_za, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Vertex of each query patch through the shared anchor tokens (§4.4 eq. 7, left).

    ``v_p = argmax_v sum_t A(P_a->Z_a)[p_a, t] A(V_a->Z_a)[v, t]``.

    Args:
        a_query_za: (Q, N) attention rows of the query patches.
        a_va_za: (L, N) vertex -> anchor-token rows of the candidate vertices.
        chunk: vertices scored per step.

    Returns:
        (vertex (Q,) int64 index into the L rows, scores (Q,) float64).

    Raises:
        ValueError: on inconsistent shapes.
    """
    q = as_tensor("a_query_za", a_query_za, ndim=2)
    v = as_tensor("a_va_za", a_va_za, ndim=2, device=q.device)
    s, idx = top_candidates(q, v, top_k=1, chunk=chunk)
    return idx[:, 0].cpu().numpy().astype(np.int64), s[:, 0].cpu().numpy().astype(np.float64)


def surface_tracks(positions, faces, face_index, barycentric, rotation=None, translation=None) -> np.ndarray:
    """3D trajectories of surface points on the animated mesh, optionally in camera space (§4.4 eq. 9).

    ``X_f = R sum_i w_i V_f[F[phi, i]] + t`` for each point (face phi, barycentric w).

    Args:
        positions: (T, V, 3) animated vertex positions (same topology as ``faces``).
        faces: (F, 3) int triangles.
        face_index: (Q,) int face of each point.
        barycentric: (Q, 3) barycentric weights (rows sum to 1).
        rotation: optional (3, 3) R of the anchor camera (object -> camera).
        translation: optional (3,) t (needs ``rotation``).

    Returns:
        (T, Q, 3) float64 positions (object space, or camera space with R, t).

    Raises:
        ValueError: on bad shapes/indices or barycentrics that do not sum to 1.
    """
    pos = as_numpy("positions", positions, ndim=3, last=3)
    f = check_faces(faces, pos.shape[1])
    fi = as_numpy("face_index", face_index, ndim=1)
    if fi.size and (not np.all(fi == np.round(fi)) or fi.min() < 0 or fi.max() >= f.shape[0]):
        raise ValueError(f"face_index must be integers in [0, {f.shape[0]})")
    fi = fi.astype(np.int64)
    w = as_numpy("barycentric", barycentric, ndim=2, last=3)
    if w.shape[0] != fi.shape[0]:
        raise ValueError(f"barycentric has {w.shape[0]} rows but face_index has {fi.shape[0]}")
    if not np.allclose(w.sum(1), 1.0, atol=1e-5):
        raise ValueError("barycentric rows must sum to 1")
    corners = pos[:, f[fi]]                                    # (T, Q, 3, 3)
    out = np.einsum("tqij,qi->tqj", corners, w)
    if rotation is not None:
        r = as_numpy("rotation", rotation)
        t = np.zeros(3) if translation is None else as_numpy("translation", translation).reshape(-1)
        if r.shape != (3, 3) or t.shape != (3,):
            raise ValueError("rotation must be (3, 3) and translation (3,)")
        out = out @ r.T + t
    elif translation is not None:
        raise ValueError("translation given without rotation")
    return out
