"""CD-3D, CD-4D and CD-M with ICP alignment (ActionMesh supplementary, REFERENCE §5).

Protocol: sample P (100k) area-weighted points per frame on ground truth and
prediction; CD = mean squared nearest-neighbour distance both ways (summed,
Eq. 2); CD-3D: ICP per frame (pred -> GT); CD-4D: one ICP on frame 1 applied
to all frames; CD-M: after that sequence ICP, nearest-neighbour maps GT->pred
and pred->GT fixed on frame 1 and the squared distances between the mapped
points measured on every frame (Eq. 6).

Samples are **tracked**: for a fixed-topology sequence (AnimatedMesh, or
trimeshes sharing one face array) the faces and barycentric coordinates are
drawn once, area-weighted on frame 1, and re-used on every frame, so sample
``i`` is the same material point in all frames (needed by CD-M).  Prediction
and GT are sampled with the same seed, so identical inputs give exactly 0.

ICP: classical point-to-point ICP (nearest neighbours with scipy's cKDTree,
closed-form Kabsch/Umeyama rigid update), in place of the paper's
gradient-based variant.

Shape legend: T frames, P samples per frame, V vertices, F faces.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
from scipy.spatial import cKDTree

from ..io.animated_mesh import AnimatedMesh

__all__ = [
    "sample_sequence",
    "icp",
    "chamfer_distance",
    "chamfer_3d",
    "chamfer_4d",
    "chamfer_motion",
    "evaluate_sequence",
]

SequenceLike = Union[AnimatedMesh, np.ndarray, Sequence]


def _tracked_samples(faces: np.ndarray, frames: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """Area-weighted samples on frame 0, carried to every frame by barycentric coordinates."""
    faces = np.asarray(faces, np.int64)
    tri0 = frames[0][faces]
    area = 0.5 * np.linalg.norm(np.cross(tri0[:, 1] - tri0[:, 0], tri0[:, 2] - tri0[:, 0]), axis=1)
    total = float(area.sum())
    if not total > 0:
        raise ValueError("evaluation: the first frame of a sequence has zero surface area; nothing to sample")
    rng = np.random.default_rng(int(seed))
    face_idx = rng.choice(len(faces), size=int(num_samples), p=area / total)
    r1 = np.sqrt(rng.random(int(num_samples)))
    r2 = rng.random(int(num_samples))
    bary = np.stack([1.0 - r1, r1 * (1.0 - r2), r1 * r2], axis=1)  # uniform on the triangle
    corners = faces[face_idx]  # (P, 3)
    return np.einsum("pk,tpkc->tpc", bary, frames[:, corners])


def sample_sequence(seq: SequenceLike, num_samples: int = 100_000, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Sample a mesh sequence into per-frame point sets.

    Args:
        seq: an :class:`AnimatedMesh`; a list of ``trimesh.Trimesh`` (one per
            frame); or a (T, P, 3) array of points already sampled (taken as
            is, assumed tracked).
        num_samples: P points per frame (>= 1).
        seed: sampling seed (same seed + same mesh -> same points).

    Returns:
        ``(points (T, P, 3) float64, tracked)`` where ``tracked`` says whether
        point ``i`` is the same surface point in every frame (fixed topology).

    Raises:
        TypeError: unsupported input type.
        ValueError: empty sequence, NaN values, zero-area first frame,
            ``num_samples < 1``.
    """
    import trimesh

    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if isinstance(seq, AnimatedMesh):
        if seq.faces.shape[0] == 0:
            raise ValueError("evaluation: the AnimatedMesh has no faces")
        return _tracked_samples(seq.faces, np.asarray(seq.vertices, np.float64), num_samples, seed), True
    if isinstance(seq, np.ndarray) or (hasattr(seq, "detach") and hasattr(seq, "shape")):
        arr = seq.detach().cpu().numpy() if hasattr(seq, "detach") else seq
        arr = np.asarray(arr, np.float64)
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"evaluation: point sequences must be (T, P, 3) with T, P >= 1, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("evaluation: point sequence contains NaN or infinite values")
        return arr, True
    if isinstance(seq, (list, tuple)):
        if len(seq) == 0:
            raise ValueError("evaluation: empty mesh sequence")
        if not all(isinstance(m, trimesh.Trimesh) for m in seq):
            raise TypeError("evaluation: a sequence must be an AnimatedMesh, a (T, P, 3) array or a list of trimesh.Trimesh")
        for k, m in enumerate(seq):
            if len(m.faces) == 0 or not np.isfinite(m.vertices).all():
                raise ValueError(f"evaluation: frame {k} is empty or has NaN vertices")
        same = all(m.faces.shape == seq[0].faces.shape and np.array_equal(m.faces, seq[0].faces) for m in seq) and all(
            len(m.vertices) == len(seq[0].vertices) for m in seq
        )
        if same:
            frames = np.stack([np.asarray(m.vertices, np.float64) for m in seq])
            return _tracked_samples(seq[0].faces, frames, num_samples, seed), True
        pts = []
        for k, m in enumerate(seq):
            if not float(m.area) > 0:
                raise ValueError(f"evaluation: frame {k} has zero surface area")
            p, _ = trimesh.sample.sample_surface(m, int(num_samples), seed=int(seed) + k)
            pts.append(np.asarray(p, np.float64))
        return np.stack(pts), False
    raise TypeError(
        f"evaluation: expected an AnimatedMesh, a (T, P, 3) array or a list of trimesh.Trimesh, got {type(seq).__name__}"
    )


def _kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigid (R, t) minimising sum ||R src + t - dst||^2 (proper rotation, det = +1)."""
    cs, cd = src.mean(0), dst.mean(0)
    h = (src - cs).T @ (dst - cd)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, cd - r @ cs


def icp(
    source_pts: np.ndarray,
    target_pts: np.ndarray,
    *,
    max_iterations: int = 50,
    tolerance: float = 1e-7,
    max_points: Optional[int] = 20000,
    init: Optional[tuple[np.ndarray, np.ndarray]] = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Point-to-point ICP aligning ``source_pts`` onto ``target_pts`` (rigid, no scale).

    Each iteration matches (a random subset of at most ``max_points``)
    source points to their nearest target points (scipy cKDTree) and solves
    the rigid transform in closed form (Kabsch); stops when the mean squared
    distance improves by less than the fraction ``tolerance``.

    Args:
        source_pts: (P, 3) points to move (the prediction).
        target_pts: (Q, 3) fixed points (the ground truth).
        max_iterations: ICP iterations (>= 1).
        tolerance: stop when the error improves by less than this fraction.
        max_points: source points used per iteration (None = all).
        init: optional initial ``(R (3, 3), t (3,))``.
        seed: seeds the source subset.

    Returns:
        ``(R (3, 3), t (3,), error)``: the aligned source is
        ``source_pts @ R.T + t``; ``error`` is the final mean squared
        source-to-target nearest-neighbour distance (over all source points).

    Raises:
        ValueError: inputs not (N, 3), empty, or NaN.
    """
    src = np.asarray(source_pts, np.float64)
    dst = np.asarray(target_pts, np.float64)
    for name, a in (("source_pts", src), ("target_pts", dst)):
        if a.ndim != 2 or a.shape[-1] != 3 or len(a) == 0:
            raise ValueError(f"icp: {name} must be (N, 3) with N >= 1, got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"icp: {name} contains NaN or infinite values")
    tree = cKDTree(dst)
    sub = src
    if max_points is not None and len(src) > int(max_points):
        rng = np.random.default_rng(int(seed))
        sub = src[rng.choice(len(src), int(max_points), replace=False)]
    r = np.eye(3) if init is None else np.asarray(init[0], np.float64)
    t = np.zeros(3) if init is None else np.asarray(init[1], np.float64)
    prev = np.inf
    for _ in range(int(max_iterations)):
        moved = sub @ r.T + t
        dist, nn = tree.query(moved, workers=-1)
        err = float(np.mean(dist**2))
        if err == 0.0 or (np.isfinite(prev) and prev - err <= tolerance * prev):
            break
        prev = err
        r, t = _kabsch(sub, dst[nn])
    dist, _ = tree.query(src @ r.T + t, workers=-1)
    return r, t, float(np.mean(dist**2))


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance (Eq. 2): mean_a min_b |a-b|^2 + mean_b min_a |a-b|^2.

    Args:
        a: (P, 3) points; b: (Q, 3) points (same units; result in units^2).

    Returns:
        float >= 0 (0 iff the sets coincide).

    Raises:
        ValueError: a point set is empty or not (N, 3).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[-1] != 3 or b.shape[-1] != 3 or not len(a) or not len(b):
        raise ValueError(f"chamfer_distance needs two non-empty (N, 3) point sets, got {a.shape} and {b.shape}")
    da, _ = cKDTree(b).query(a, workers=-1)
    db, _ = cKDTree(a).query(b, workers=-1)
    return float(np.mean(da**2) + np.mean(db**2))


def _prepare(pred_seq, gt_seq, num_samples, seed):
    pred, pred_tracked = sample_sequence(pred_seq, num_samples, seed)
    gt, gt_tracked = sample_sequence(gt_seq, num_samples, seed)
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"evaluation: prediction has {pred.shape[0]} frames but ground truth has {gt.shape[0]}")
    return pred, gt, pred_tracked and gt_tracked


def _apply(points: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    return points @ r.T + t


def chamfer_3d(pred_seq: SequenceLike, gt_seq: SequenceLike, num_samples: int = 100_000, seed: int = 0,
               *, align: bool = True, icp_kwargs: Optional[dict] = None) -> float:
    """CD-3D: per-frame ICP (pred -> GT), then the mean over frames of the symmetric CD (Eq. 3).

    Args:
        pred_seq, gt_seq: sequences accepted by :func:`sample_sequence` (same T).
        num_samples: P samples per frame (paper: 100k).
        seed: sampling seed (both sequences use it).
        align: run ICP (False = metric without ICP).
        icp_kwargs: extra options for :func:`icp`.

    Returns:
        float (units^2 of the inputs; the benchmark normalises to [-1, 1]^3).

    Raises:
        ValueError/TypeError: see :func:`sample_sequence`; frame counts differ.
    """
    pred, gt, _ = _prepare(pred_seq, gt_seq, num_samples, seed)
    return _cd_3d(pred, gt, align, icp_kwargs)


def _cd_3d(pred: np.ndarray, gt: np.ndarray, align: bool, icp_kwargs) -> float:
    """Mean per-frame Chamfer distance, each frame ICP-aligned on its own when ``align``."""
    vals = []
    for k in range(gt.shape[0]):
        p = pred[k]
        if align:
            r, t, _ = icp(p, gt[k], **(icp_kwargs or {}))
            p = _apply(p, r, t)
        vals.append(chamfer_distance(gt[k], p))
    return float(np.mean(vals))


def _cd_4d_and_m(pred, gt, tracked, align, icp_kwargs, want_m):
    if align:
        r, t, _ = icp(pred[0], gt[0], **(icp_kwargs or {}))
        pred = _apply(pred, r, t)
    cd4 = float(np.mean([chamfer_distance(gt[k], pred[k]) for k in range(gt.shape[0])]))
    if not want_m:
        return cd4, None
    if not tracked:
        raise ValueError(
            "chamfer_motion needs tracked samples: pass AnimatedMesh (fixed topology) or same-face trimesh lists, "
            "or pre-sampled (T, P, 3) points"
        )
    _, sigma = cKDTree(pred[0]).query(gt[0], workers=-1)  # GT point i -> pred sigma_i
    _, tau = cKDTree(gt[0]).query(pred[0], workers=-1)  # pred point i -> GT tau_i
    d1 = np.sum((gt - pred[:, sigma]) ** 2, axis=-1).mean(axis=1)
    d2 = np.sum((gt[:, tau] - pred) ** 2, axis=-1).mean(axis=1)
    return cd4, float(np.mean(d1 + d2))


def chamfer_4d(pred_seq: SequenceLike, gt_seq: SequenceLike, num_samples: int = 100_000, seed: int = 0,
               *, align: bool = True, icp_kwargs: Optional[dict] = None) -> float:
    """CD-4D: one ICP on frame 1 applied to all frames, then the mean per-frame symmetric CD.

    Args/Returns/Raises: as :func:`chamfer_3d`.
    """
    pred, gt, tracked = _prepare(pred_seq, gt_seq, num_samples, seed)
    return _cd_4d_and_m(pred, gt, tracked, align, icp_kwargs, want_m=False)[0]


def chamfer_motion(pred_seq: SequenceLike, gt_seq: SequenceLike, num_samples: int = 100_000, seed: int = 0,
                   *, align: bool = True, icp_kwargs: Optional[dict] = None) -> float:
    """CD-M (Eq. 4-6): sequence ICP on frame 1, NN maps GT->pred and pred->GT fixed on frame 1,
    mean squared distance of the mapped (tracked) points over all frames.

    Args/Returns: as :func:`chamfer_3d`.

    Raises:
        ValueError: samples are not tracked (meshes with changing topology),
            plus the errors of :func:`chamfer_3d`.
    """
    pred, gt, tracked = _prepare(pred_seq, gt_seq, num_samples, seed)
    return _cd_4d_and_m(pred, gt, tracked, align, icp_kwargs, want_m=True)[1]


def evaluate_sequence(pred: SequenceLike, gt: SequenceLike, num_samples: int = 100_000, seed: int = 0,
                      *, align: bool = True, icp_kwargs: Optional[dict] = None) -> dict:
    """All three ActionBench metrics with one sampling (REFERENCE §5).

    Args:
        pred: predicted sequence (e.g. an :class:`AnimatedMesh`).
        gt: ground-truth sequence with the same number of frames.
        num_samples: P samples per frame (default 100k as in the paper).
        seed: sampling seed.
        align: use ICP (False = "without ICP" variants).
        icp_kwargs: options for :func:`icp`.

    Returns:
        ``{"cd_3d": float, "cd_4d": float, "cd_m": float}`` (``cd_m`` is
        ``nan`` when the samples cannot be tracked).

    Raises:
        ValueError/TypeError: see :func:`sample_sequence`; frame counts differ.
    """
    p, g, tracked = _prepare(pred, gt, num_samples, seed)
    cd3 = _cd_3d(p, g, align, icp_kwargs)
    if tracked:
        cd4, cdm = _cd_4d_and_m(p, g, tracked, align, icp_kwargs, want_m=True)
    else:
        cd4, _ = _cd_4d_and_m(p, g, tracked, align, icp_kwargs, want_m=False)
        cdm = float("nan")
    return {"cd_3d": cd3, "cd_4d": cd4, "cd_m": cdm}
