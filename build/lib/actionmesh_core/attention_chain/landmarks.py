"""Control landmarks: curvature-boosted farthest-point sampling and outlier rejection.

Attention-chains paper §4.2 step 1 and appendices C, D.1: K = 1000 landmarks
are farthest-point samples of the anchor-mesh vertices with a curvature boost
(alpha = 2.0); their chain trajectories are filtered by rejecting
displacements larger than 5x the median displacement of all landmarks in that
frame (or an absolute threshold), and a landmark is kept only when >= 95 % of
its frames are valid.

Shape legend: V anchor vertices, F faces, L landmarks, T frames.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import torch
import trimesh

from actionmesh_core.geometry.sampling import farthest_point_sampling

from ._checks import as_numpy, check_faces, check_frame, check_int, check_positive

__all__ = [
    "NUM_LANDMARKS",
    "CURVATURE_ALPHA",
    "OUTLIER_FACTOR",
    "MIN_VALID_FRACTION",
    "OUTLIER_FLOOR",
    "vertex_curvature",
    "select_landmarks",
    "reject_outliers",
    "keep_landmarks",
]

#: Published number of FPS landmarks (appendix C).
NUM_LANDMARKS = 1000
#: Published curvature boost alpha (appendix C).
CURVATURE_ALPHA = 2.0
#: Published outlier factor: 5x the median displacement (appendix C / D.1).
OUTLIER_FACTOR = 5.0
#: Published valid-frame requirement (appendix C).
MIN_VALID_FRACTION = 0.95
#: Our addition: the outlier threshold never drops below this fraction of the
#: anchor landmarks' bounding-box diagonal, so a nearly static frame
#: (median ~ 0) does not reject every landmark that moves a little.
OUTLIER_FLOOR = 0.02


def vertex_curvature(vertices, faces) -> np.ndarray:
    """Unsigned discrete mean-curvature density per vertex, normalised to [0, 1].

    For every interior edge e with dihedral angle theta_e (trimesh
    ``face_adjacency_angles``) and length |e|, each end vertex accumulates
    ``theta_e * |e| / 2``; dividing by the vertex's barycentric area (a third of
    its faces' area) gives a curvature density (1/length).  The result is
    divided by its 99th percentile and clipped to [0, 1] so one spiky vertex does
    not flatten the rest.  Flat meshes give all zeros.

    Args:
        vertices: (V, 3) float anchor-mesh vertices.
        faces: (F, 3) int triangle indices.

    Returns:
        (V,) float64 in [0, 1]; 0 = flat, 1 = among the most curved 1 %.

    Raises:
        ValueError: on malformed vertices/faces.
    """
    v = as_numpy("vertices", vertices, ndim=2, last=3)
    f = check_faces(faces, v.shape[0])
    mesh = trimesh.Trimesh(vertices=v, faces=f, process=False, validate=False)
    angles = np.nan_to_num(np.asarray(mesh.face_adjacency_angles, dtype=np.float64))
    edges = np.asarray(mesh.face_adjacency_edges, dtype=np.int64).reshape(-1, 2)
    integrated = np.zeros(v.shape[0])
    if len(edges):
        lengths = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
        contrib = 0.5 * np.abs(angles) * lengths
        np.add.at(integrated, edges[:, 0], contrib)
        np.add.at(integrated, edges[:, 1], contrib)
    area = np.zeros(v.shape[0])
    np.add.at(area, f.reshape(-1), np.repeat(np.nan_to_num(mesh.area_faces) / 3.0, 3))
    positive = area[area > 0]
    floor = (positive.mean() if positive.size else 1.0) * 1e-6
    density = integrated / np.maximum(area, floor)
    scale = np.quantile(density, 0.99) if density.size else 0.0
    if not scale > 0:
        scale = density.max() if density.size and density.max() > 0 else 0.0
    if scale <= 0:
        return np.zeros(v.shape[0])
    return np.clip(density / scale, 0.0, 1.0)


def select_landmarks(vertices, faces, count: int = NUM_LANDMARKS, alpha: float = CURVATURE_ALPHA,
                     seed: int = 0) -> np.ndarray:
    """Curvature-boosted farthest-point sampling of landmark vertices (§4.2 step 1, app. C).

    FPS over the anchor vertices where the squared distance to the chosen set is
    multiplied by ``1 + alpha * curvature`` (:func:`vertex_curvature`), so curved
    regions (limbs, ears, edges) receive denser landmarks.  The first landmark
    is the most curved vertex, which makes the result deterministic (``seed`` is
    only used when the mesh is flat).

    Args:
        vertices: (V, 3) float anchor-mesh vertices.
        faces: (F, 3) int triangles.
        count: number of landmarks L (published: 1000); clipped to V.
        alpha: curvature boost (published: 2.0); 0 gives plain FPS.
        seed: seeds the first sample on a flat mesh.

    Returns:
        (L,) int64 distinct vertex indices, L = min(count, V).

    Raises:
        ValueError: on malformed mesh, count < 1 or alpha < 0.
    """
    v = as_numpy("vertices", vertices, ndim=2, last=3)
    f = check_faces(faces, v.shape[0])
    count = check_int("count", count, minimum=1)
    alpha = check_positive("alpha", alpha, allow_zero=True)
    curv = vertex_curvature(v, f) if alpha > 0 else np.zeros(v.shape[0])
    weights = torch.from_numpy(1.0 + alpha * curv).float()
    start = int(np.argmax(curv)) if curv.max() > 0 else None
    # FPS would return repeated positions once all distinct ones are taken: sample unique positions.
    _, first, inverse = np.unique(np.round(v, 12), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    k = min(count, first.size)
    sub_start = None if start is None else int(inverse[start])
    idx = farthest_point_sampling(torch.from_numpy(v[first]).float(), k, seed=seed, start=sub_start,
                                  score_weights=weights[first])
    return first[idx.cpu().numpy()].astype(np.int64)


def reject_outliers(anchor_positions, trajectories, anchor_frame: int, *,
                    factor: float = OUTLIER_FACTOR, reference: str = "frame",
                    floor: Optional[float] = None, max_displacement: Optional[float] = None) -> np.ndarray:
    """Flag implausible landmark displacements (appendix D.1), c = 0 for outliers, 1 otherwise.

    A displacement ``|traj[f, l] - anchor[l]|`` is an outlier when it exceeds
    ``max(factor * median, floor)`` or ``max_displacement``.  With
    ``reference="frame"`` (appendix D.1, default) the median is over all
    landmarks of that frame; with ``reference="landmark"`` (the wording of
    appendix C) it is over the non-anchor frames of that landmark.  Non-finite
    targets are outliers.  The anchor frame is always valid.

    Args:
        anchor_positions: (L, 3) landmark positions on the anchor mesh.
        trajectories: (T, L, 3) raw chain targets tilde v_l^(f) (NaN allowed = missing).
        anchor_frame: index of the anchor frame in [0, T).
        factor: relative threshold (published: 5).
        reference: "frame" or "landmark" (see above).
        floor: absolute lower bound of the threshold in position units; default
            :data:`OUTLIER_FLOOR` x the bounding-box diagonal of ``anchor_positions``.
        max_displacement: optional absolute upper threshold (position units).

    Returns:
        (T, L) bool, True = valid.

    Raises:
        ValueError: on shape mismatch, bad anchor_frame or bad thresholds.
    """
    a = as_numpy("anchor_positions", anchor_positions, ndim=2, last=3)
    tr = as_numpy("trajectories", trajectories, ndim=3, last=3, finite=False)
    if tr.shape[1] != a.shape[0]:
        raise ValueError(f"trajectories has {tr.shape[1]} landmarks but anchor_positions has {a.shape[0]}")
    anchor_frame = check_frame(anchor_frame, tr.shape[0])
    factor = check_positive("factor", factor)
    if reference not in ("frame", "landmark"):
        raise ValueError(f"reference must be 'frame' or 'landmark', got {reference!r}")
    if floor is None:
        floor = OUTLIER_FLOOR * float(np.linalg.norm(a.max(0) - a.min(0))) if len(a) else 0.0
    floor = check_positive("floor", floor, allow_zero=True)
    finite = np.isfinite(tr).all(-1)
    disp = np.linalg.norm(np.where(finite[..., None], tr, a[None]) - a[None], axis=-1)
    disp_masked = np.where(finite, disp, np.nan)
    others = np.ones(tr.shape[0], bool)
    others[anchor_frame] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN -> 0 below
        if reference == "frame":
            med = np.nanmedian(disp_masked, axis=1)[:, None]             # (T, 1)
        else:
            sub = disp_masked[others] if others.any() else disp_masked
            med = np.nanmedian(sub, axis=0)[None, :]                     # (1, L)
    med = np.nan_to_num(med, nan=0.0)
    thresh = np.maximum(factor * med, floor)
    valid = finite & (disp <= thresh)
    if max_displacement is not None:
        valid &= disp <= check_positive("max_displacement", max_displacement)
    valid[anchor_frame] = True
    return valid


def keep_landmarks(valid, min_fraction: float = MIN_VALID_FRACTION) -> np.ndarray:
    """Landmarks with at least ``min_fraction`` valid frames (appendix C: >= 95 %).

    Note that with 16 frames, 95 % means all 16 (ceil(15.2)); a single outlier
    frame removes the landmark from the skinning set.

    Args:
        valid: (T, L) bool from :func:`reject_outliers`.
        min_fraction: in (0, 1].

    Returns:
        (L,) bool, True = keep.

    Raises:
        ValueError: if ``valid`` is not 2-D or ``min_fraction`` is outside (0, 1].
    """
    m = as_numpy("valid", valid, dtype=bool, ndim=2)
    if not 0 < float(min_fraction) <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    needed = int(np.ceil(float(min_fraction) * m.shape[0] - 1e-9))
    return m.sum(0) >= needed
