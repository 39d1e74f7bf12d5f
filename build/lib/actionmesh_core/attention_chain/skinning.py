"""Geodesic rigid skinning: dense mesh motion from sparse landmarks (attention-chains §4.2, app. D.2).

Every vertex takes its k = 120 geodesically nearest landmarks (Dijkstra on the
edge graph of the anchor mesh, so motion never leaks between parts that touch
in space but are not connected), Gaussian weights
``w = exp(-d^2 / (2 sigma_geo^2))`` normalised to sum 1 with sigma_geo
proportional to the landmark spacing, and per frame the weighted Procrustes
rotation R_v (SVD, reflection-safe) between the anchor and target
neighbourhoods: ``v_f = R_v (v_a - mu_a) + mu_f``.  An exact rigid motion of
the landmarks is reproduced exactly, per connected part.

Shape legend: V vertices, F faces, L landmarks, K neighbours per vertex, T frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from ._checks import as_numpy, check_faces, check_int, check_positive

__all__ = [
    "K_NN",
    "SIGMA_GEO_SCALE",
    "SkinningWeights",
    "mesh_graph",
    "landmark_spacing",
    "geodesic_skinning_weights",
    "weighted_procrustes",
    "rigid_skinning",
]

#: Published number of geodesic neighbour landmarks per vertex (appendix C).
K_NN = 120
#: sigma_geo = SIGMA_GEO_SCALE x mean landmark spacing ("auto sigma"; the paper
#: says "proportional to the mean spacing" without the factor; our choice).
SIGMA_GEO_SCALE = 1.0
#: Dijkstra searches stop at this many sigma_geo: a landmark beyond it weighs
#: less than exp(-32) relative to one at distance 0 (numerically nothing).
CUTOFF_SIGMAS = 8.0


@dataclass
class SkinningWeights:
    """Per-vertex landmark neighbourhoods and weights (appendix D.2), reusable across frames.

    Attributes:
        matrix: (V, L) scipy CSR matrix of normalised weights w_{v,l} (rows sum to 1,
            at most K non-zeros per row).
        neighbors: (V, K) int64 landmark indices (into the L landmarks), nearest
            first; padded with -1 where fewer than K landmarks are in reach.
        distances: (V, K) float64 geodesic distances (inf for padding).
        sigma: sigma_geo used (position units).
        geodesic: (V,) bool, False for vertices whose connected component holds
            no landmark (they fall back to Euclidean neighbours).
    """

    matrix: sp.csr_matrix
    neighbors: np.ndarray
    distances: np.ndarray
    sigma: float
    geodesic: np.ndarray


def mesh_graph(vertices, faces) -> sp.csr_matrix:
    """Symmetric (V, V) sparse edge graph of a triangle mesh weighted by Euclidean edge length.

    Zero-length edges (coincident vertices) get a tiny positive weight so they
    stay connected (scipy treats explicit zeros as missing edges).

    Args:
        vertices: (V, 3) float positions.
        faces: (F, 3) int triangles.

    Returns:
        (V, V) float64 CSR matrix for :func:`scipy.sparse.csgraph.dijkstra`.

    Raises:
        ValueError: on malformed vertices/faces.
    """
    v = as_numpy("vertices", vertices, ndim=2, last=3)
    f = check_faces(faces, v.shape[0])
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = e[e[:, 0] != e[:, 1]]
    e = np.unique(np.sort(e, axis=1), axis=0)
    w = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    scale = float(np.abs(v).max()) if v.size else 1.0
    w = np.maximum(w, 1e-12 * max(scale, 1e-12))
    n = v.shape[0]
    g = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([e[:, 0], e[:, 1]]),
                                                 np.concatenate([e[:, 1], e[:, 0]]))), shape=(n, n))
    return g.tocsr()


def landmark_spacing(landmark_positions) -> float:
    """Mean Euclidean distance from each landmark to its nearest other landmark.

    Args:
        landmark_positions: (L, 3), L >= 2.

    Returns:
        spacing in position units (> 0).

    Raises:
        ValueError: with fewer than 2 distinct landmarks.
    """
    p = as_numpy("landmark_positions", landmark_positions, ndim=2, last=3)
    if p.shape[0] < 2:
        raise ValueError("landmark_spacing needs at least 2 landmarks")
    d, _ = cKDTree(p).query(p, k=2)
    spacing = float(d[:, 1].mean())
    if not spacing > 0:
        raise ValueError("landmarks all coincide; cannot derive a spacing (pass sigma explicitly)")
    return spacing


def _merge_smallest(best_d: np.ndarray, best_i: np.ndarray, d: np.ndarray, i: np.ndarray, k: int):
    """Keep the k smallest of two (rows, *) candidate sets along axis 0 (columns = vertices)."""
    cd = np.concatenate([best_d, d], axis=0)
    ci = np.concatenate([best_i, i], axis=0)
    if cd.shape[0] > k:
        part = np.argpartition(cd, k - 1, axis=0)[:k]
        cd = np.take_along_axis(cd, part, axis=0)
        ci = np.take_along_axis(ci, part, axis=0)
    return cd, ci


def geodesic_skinning_weights(vertices, faces, landmark_vertices, *, k: int = K_NN,
                              sigma: Optional[float] = None, sigma_scale: float = SIGMA_GEO_SCALE,
                              source_chunk: int = 64) -> SkinningWeights:
    """k geodesically nearest landmarks per vertex and their Gaussian weights (app. D.2).

    Geodesic distance = shortest path along mesh edges (Dijkstra, scipy
    csgraph) from every landmark vertex, searched up to 8 sigma_geo (farther
    landmarks have weight < e^-32 of the nearest).  Vertices that reach no
    landmark within that radius are searched again without limit; vertices
    whose connected component holds no landmark at all fall back to their k
    Euclidean-nearest landmarks (``geodesic`` is False for them).  Weights
    ``exp(-(d^2 - d_min^2) / (2 sigma^2))`` (shifting by the nearest distance
    only avoids underflow; normalisation removes it) are normalised per vertex.

    Args:
        vertices: (V, 3) anchor-mesh vertices.
        faces: (F, 3) int triangles.
        landmark_vertices: (L,) int vertex indices of the landmarks (L >= 1).
        k: neighbours per vertex (published: 120); clipped to L.
        sigma: sigma_geo in position units; default ``sigma_scale`` x
            :func:`landmark_spacing` ("auto sigma").
        sigma_scale: factor of the auto sigma.
        source_chunk: Dijkstra sources per batch (memory ~ source_chunk * V floats).

    Returns:
        :class:`SkinningWeights`.

    Raises:
        ValueError: on malformed mesh, out-of-range or duplicate landmark
            indices, k < 1, or non-positive sigma.
    """
    v = as_numpy("vertices", vertices, ndim=2, last=3)
    f = check_faces(faces, v.shape[0])
    lm = as_numpy("landmark_vertices", landmark_vertices, dtype=np.float64, ndim=1)
    if lm.size == 0:
        raise ValueError("landmark_vertices is empty: no landmark survived; check the attention/outlier settings")
    if not np.all(lm == np.round(lm)) or lm.min() < 0 or lm.max() >= v.shape[0]:
        raise ValueError(f"landmark_vertices must be integer vertex indices in [0, {v.shape[0]})")
    lm = lm.astype(np.int64)
    if np.unique(lm).size != lm.size:
        raise ValueError("landmark_vertices contains duplicate indices")
    k = min(check_int("k", k, minimum=1), lm.size)
    source_chunk = check_int("source_chunk", source_chunk, minimum=1)
    if sigma is None:
        sigma = check_positive("sigma_scale", sigma_scale) * landmark_spacing(v[lm]) if lm.size > 1 else \
            float(np.linalg.norm(v.max(0) - v.min(0))) or 1.0
    sigma = check_positive("sigma", sigma)
    graph = mesh_graph(v, f)
    num_v = v.shape[0]
    limit = CUTOFF_SIGMAS * sigma
    best_d = np.full((0, num_v), np.inf)
    best_i = np.zeros((0, num_v), dtype=np.int64)
    for start in range(0, lm.size, source_chunk):
        src = lm[start:start + source_chunk]
        d = dijkstra(graph, directed=False, indices=src, limit=limit)
        ids = np.broadcast_to(np.arange(start, start + src.size)[:, None], d.shape)
        best_d, best_i = _merge_smallest(best_d, best_i, d, ids, k)
    order = np.argsort(best_d, axis=0)
    dist = np.take_along_axis(best_d, order, axis=0).T.copy()          # (V, K)
    nbr = np.take_along_axis(best_i, order, axis=0).T.copy()
    geodesic = np.ones(num_v, dtype=bool)
    missing = np.flatnonzero(~np.isfinite(dist[:, 0]))
    if missing.size:
        # no landmark within the cutoff: exact geodesic search from those vertices, no limit
        d = dijkstra(graph, directed=False, indices=missing)[:, lm]      # (M, L)
        part = np.argsort(d, axis=1)[:, :k]
        dist[missing] = np.take_along_axis(d, part, axis=1)
        nbr[missing] = part
        unreachable = missing[~np.isfinite(dist[missing, 0])]
        if unreachable.size:
            geodesic[unreachable] = False
            de, ie = cKDTree(v[lm]).query(v[unreachable], k=k)
            dist[unreachable] = np.asarray(de).reshape(unreachable.size, k)
            nbr[unreachable] = np.asarray(ie).reshape(unreachable.size, k)
    valid = np.isfinite(dist)
    nbr = np.where(valid, nbr, -1)
    shifted = np.where(valid, dist ** 2 - dist[:, :1] ** 2, np.inf)
    w = np.exp(-shifted / (2.0 * sigma ** 2))
    w /= w.sum(1, keepdims=True)
    rows = np.repeat(np.arange(num_v), k)[valid.reshape(-1)]
    matrix = sp.csr_matrix((w[valid], (rows, nbr[valid])), shape=(num_v, lm.size))
    return SkinningWeights(matrix=matrix, neighbors=nbr, distances=dist, sigma=float(sigma), geodesic=geodesic)


def weighted_procrustes(cross_cov: np.ndarray, rank_tol: float = 1e-9) -> np.ndarray:
    """Rotations maximising ``tr(R H)`` for a batch of weighted cross-covariances (Kabsch, app. D.2).

    With ``H = sum_l w_l (a_l - mu_a)(b_l - mu_b)^T = U S V^T`` the rotation is
    ``R = V diag(1, 1, det(V U^T)) U^T`` (reflection-safe: det R = +1).  When
    H has rank < 2 (all neighbours on a line or coincident) the rotation is
    undetermined and the identity is returned (translation-only motion).

    Args:
        cross_cov: (..., 3, 3) float matrices H.
        rank_tol: relative singular-value threshold of the rank test.

    Returns:
        (..., 3, 3) float64 rotation matrices.

    Raises:
        ValueError: if the last two dimensions are not 3 x 3.
    """
    h = as_numpy("cross_cov", cross_cov)
    if h.ndim < 2 or h.shape[-2:] != (3, 3):
        raise ValueError(f"cross_cov must be (..., 3, 3), got {h.shape}")
    u, s, vt = np.linalg.svd(h)
    vmat = np.swapaxes(vt, -1, -2)
    ut = np.swapaxes(u, -1, -2)
    det = np.linalg.det(vmat @ ut)
    d = np.ones(h.shape[:-2] + (3,))
    d[..., 2] = np.where(det < 0, -1.0, 1.0)
    r = (vmat * d[..., None, :]) @ ut
    degenerate = s[..., 1] <= rank_tol * np.maximum(s[..., 0], np.finfo(np.float64).tiny)
    if np.any(degenerate):
        r[degenerate] = np.eye(3)
    return r


def rigid_skinning(anchor_vertices, landmark_anchor, landmark_targets, skinning: SkinningWeights) -> np.ndarray:
    """Animate every vertex by its local weighted-Procrustes rigid motion (app. D.2).

    Per frame f and vertex v: ``mu_a = sum w a_l``, ``mu_f = sum w b_l``,
    ``H = sum w (a_l - mu_a)(b_l - mu_f)^T``, ``R = procrustes(H)`` and
    ``v_f = R (v_a - mu_a) + mu_f``.  Sums use the sparse weight matrix, so the
    cost is O(T (nnz + V)) plus V 3x3 SVDs per frame.

    Args:
        anchor_vertices: (V, 3) anchor positions v_a.
        landmark_anchor: (L, 3) landmark positions on the anchor mesh (the rows
            of ``skinning.matrix`` columns).
        landmark_targets: (T, L, 3) smoothed landmark positions per frame (or (L, 3)).
        skinning: weights from :func:`geodesic_skinning_weights`.

    Returns:
        (T, V, 3) float64 animated vertex positions ((V, 3) for (L, 3) targets).

    Raises:
        ValueError: on shape mismatch with the skinning weights.
    """
    va = as_numpy("anchor_vertices", anchor_vertices, ndim=2, last=3)
    la = as_numpy("landmark_anchor", landmark_anchor, ndim=2, last=3)
    lt = as_numpy("landmark_targets", landmark_targets, last=3)
    if not isinstance(skinning, SkinningWeights):
        raise TypeError("skinning must be a SkinningWeights from geodesic_skinning_weights()")
    single = lt.ndim == 2
    if single:
        lt = lt[None]
    if lt.ndim != 3 or lt.shape[1:] != la.shape:
        raise ValueError(f"landmark_targets must be (T, {la.shape[0]}, 3), got {lt.shape}")
    w = skinning.matrix
    if w.shape != (va.shape[0], la.shape[0]):
        raise ValueError(f"skinning weights are {w.shape} but there are {va.shape[0]} vertices and {la.shape[0]} landmarks")
    # centre coordinates for numerical accuracy of the second-moment formula
    centre = la.mean(0)
    a = la - centre
    mu_a = w @ a                                                    # (V, 3)
    out = np.empty((lt.shape[0],) + va.shape)
    for t in range(lt.shape[0]):
        b = lt[t] - centre
        mu_b = w @ b
        m = (w @ (a[:, :, None] * b[:, None, :]).reshape(-1, 9)).reshape(-1, 3, 3)
        h = m - mu_a[:, :, None] * mu_b[:, None, :]
        r = weighted_procrustes(h)
        out[t] = np.einsum("vij,vj->vi", r, va - centre - mu_a) + mu_b + centre
    return out[0] if single else out
