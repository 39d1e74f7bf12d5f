"""ActionBench metrics as the release computes them: CD-3D, CD-4D and CD-M (ActionMesh §4.1 and supplementary).

Definitions, units and sample counts follow the release's ``actionbench/``
(``benchmark.py``, ``chamfer.py``, ``icp.py``, ``sample_mesh.py``,
``sample_point_cloud.py``), which produced its published ActionBench table:

* **Points.** Ground truth: the tracked points of ``surfaces.npy`` (T, N, 6),
  positions only, all N of them. Prediction: 100 000 area-weighted surface
  samples per frame with ``trimesh.sample.sample_surface`` seeded ``seed + k``
  for frame k (CD-3D / CD-4D); for CD-M, 100 000 *tracked* samples (faces and
  barycentric coordinates drawn once on frame 0 and re-used on every frame).
* **ICP.** Gradient-based alignment of the prediction onto the ground truth on
  10 000-point subsets (one permutation from ``np.random.RandomState(seed)``,
  the same indices in every frame): 24 axis-aligned starting rotations, each
  optimising a rotation (6D form), a translation and a per-axis scale with
  Adam (lr 0.01, 200 steps) on the squared-distance Chamfer loss; the
  transform of the best (start, step) is kept. CD-3D aligns every frame on its
  own; CD-4D and CD-M use the frame-0 transform for all frames.
* **Chamfer distance** of one frame: mean *Euclidean* (not squared)
  nearest-neighbour distance from 10 000 ground-truth points to the whole
  prediction plus the same from 10 000 predicted points to the whole ground
  truth (query subsets from ``RandomState(44)`` / ``RandomState(45)``). CD-3D /
  CD-4D average it over the frames.
* **CD-M**: nearest-neighbour maps GT -> prediction and prediction -> GT fixed on
  frame 0 (after the frame-0 ICP), then the mean Euclidean distance between the
  mapped points over all frames and points, both directions summed.

Units are those of the inputs (ActionBench normalises objects to [-1, 1]^3).
The paper's Eq. 2-6 write squared distances and a rigid (no scale) alignment;
the release's code, and so its published numbers, use the definitions above.

Randomness is seeded as in the release (default seed 44): trimesh's sampler
with ``seed + k``; the tracked samples with a CPU ``torch.Generator`` seeded
``seed`` (``multinomial`` over the float32 face areas, then ``rand`` for the
barycentric coordinates, as ``torch.manual_seed`` + pytorch3d in the release);
the ICP subsets with ``RandomState(seed)``; the Chamfer query subsets with
``RandomState(44)`` / ``RandomState(45)`` whatever ``seed`` is (the release
never passes its seed there). The ICP itself is deterministic.

Shape legend: T frames, P predicted points, N ground-truth points, F faces.
No pytorch3d: nearest neighbours with scipy's cKDTree (CPU) or blockwise
``torch.cdist`` (CUDA), rotations with scipy and torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from scipy.spatial import cKDTree

__all__ = [
    "N_PTS_CHAMFER",
    "N_PTS_ICP",
    "N_CHAMFER_QUERIES",
    "ICP_LR",
    "ICP_ITERATIONS",
    "SEED",
    "Alignment",
    "as_mesh_list",
    "sample_surface_points",
    "sample_tracked_points",
    "subsample_points",
    "chamfer_distance",
    "motion_chamfer_distance",
    "canonical_rotations",
    "gradient_icp",
    "evaluate_sequence",
]

N_PTS_CHAMFER = 100_000  # surface samples per predicted frame
N_PTS_ICP = 10_000  # points per frame the ICP aligns
N_CHAMFER_QUERIES = 10_000  # query points per direction of one frame's Chamfer distance
ICP_LR = 0.01
ICP_ITERATIONS = 200
SEED = 44

MeshSequence = Union["AnimatedMesh", Sequence]  # noqa: F821


def as_mesh_list(meshes: MeshSequence) -> list:
    """A predicted sequence as a list of ``trimesh.Trimesh``, one per frame.

    Args:
        meshes: an :class:`~actionmesh_core.io.animated_mesh.AnimatedMesh` or a
            sequence of ``trimesh.Trimesh``.

    Returns:
        list of T meshes.

    Raises:
        TypeError: anything else.
        ValueError: no frame, or a frame with no faces or non-finite vertices.
    """
    import trimesh

    from ..io.animated_mesh import AnimatedMesh

    if isinstance(meshes, AnimatedMesh):
        meshes = [trimesh.Trimesh(np.asarray(v, np.float64), meshes.faces, process=False) for v in meshes.vertices]
    if not isinstance(meshes, (list, tuple)) or not all(isinstance(m, trimesh.Trimesh) for m in meshes):
        raise TypeError("evaluation: a prediction must be an AnimatedMesh or a list of trimesh.Trimesh, "
                        f"got {type(meshes).__name__}")
    if not meshes:
        raise ValueError("evaluation: the prediction has no frame")
    for k, m in enumerate(meshes):
        if len(m.faces) == 0 or not np.isfinite(m.vertices).all():
            raise ValueError(f"evaluation: predicted frame {k} has no faces or non-finite vertices")
    return list(meshes)


def sample_surface_points(meshes: MeshSequence, num_points: int = N_PTS_CHAMFER, seed: int = SEED) -> np.ndarray:
    """Area-weighted surface samples of every frame, drawn independently per frame (release: ``sample_meshes``).

    Args:
        meshes: T frames (see :func:`as_mesh_list`).
        num_points: P samples per frame.
        seed: frame k uses ``trimesh.sample.sample_surface(..., seed=seed + k)``.

    Returns:
        (T, P, 3) float32 points.

    Raises:
        TypeError / ValueError: see :func:`as_mesh_list`; a frame of zero area.
    """
    import trimesh

    out = []
    for k, mesh in enumerate(as_mesh_list(meshes)):
        if not float(mesh.area) > 0:
            raise ValueError(f"evaluation: predicted frame {k} has zero surface area")
        points, _ = trimesh.sample.sample_surface(mesh, int(num_points), seed=int(seed) + k)
        out.append(np.asarray(points, np.float32))
    return np.stack(out)


def sample_tracked_points(meshes: MeshSequence, num_points: int = N_PTS_CHAMFER, seed: int = SEED) -> np.ndarray:
    """Tracked surface samples: faces and barycentric coordinates drawn on frame 0, used on every frame.

    As the release's ``sample_synchronized_points``: float32 face areas of
    frame 0, ``multinomial`` face draws with replacement, then uniform
    barycentric coordinates ``(1 - sqrt(u), sqrt(u)(1 - v), sqrt(u) v)``,
    from a CPU ``torch.Generator`` seeded ``seed``. Sample i is the same
    material point in every frame.

    Args:
        meshes: T frames with the same faces (see :func:`as_mesh_list`).
        num_points: P samples.
        seed: generator seed.

    Returns:
        (T, P, 3) float32 points.

    Raises:
        ValueError: the frames do not share one face array, frame 0 has zero
            area, plus :func:`as_mesh_list`'s errors.
    """
    meshes = as_mesh_list(meshes)
    faces = np.asarray(meshes[0].faces, np.int64)
    for k, m in enumerate(meshes[1:], 1):
        if m.faces.shape != faces.shape or not np.array_equal(m.faces, faces):
            raise ValueError(f"evaluation: CD-M needs one topology, but predicted frame {k} has other faces than "
                             "frame 0 (evaluate a fixed-topology animation, or use --3d-only)")
    face_t = torch.from_numpy(faces)
    verts0 = torch.tensor(np.asarray(meshes[0].vertices), dtype=torch.float32)
    tri = verts0[face_t]
    areas = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1) / 2.0
    if not float(areas.sum()) > 0:
        raise ValueError("evaluation: predicted frame 0 has zero surface area")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    face_idx = areas[None].multinomial(int(num_points), replacement=True, generator=gen)[0]
    u, v = torch.rand(2, 1, int(num_points), dtype=torch.float32, generator=gen)[:, 0]
    w = torch.stack([1.0 - u.sqrt(), u.sqrt() * (1.0 - v), u.sqrt() * v], dim=-1)  # (P, 3)
    corners = face_t[face_idx]  # (P, 3)
    out = []
    for m in meshes:
        verts = torch.tensor(np.asarray(m.vertices), dtype=torch.float32)[corners]  # (P, 3 corners, 3)
        out.append((w[:, 0, None] * verts[:, 0] + w[:, 1, None] * verts[:, 1] + w[:, 2, None] * verts[:, 2]).numpy())
    return np.stack(out)


def subsample_points(points: np.ndarray, num_points: int, seed: int = SEED) -> np.ndarray:
    """The same random subset of points in every frame (release: ``sample_point_cloud``).

    Args:
        points: (T, N, C) points.
        num_points: n; when N <= n all points are returned unchanged.
        seed: ``np.random.RandomState(seed).permutation(N)[:n]``.

    Returns:
        (T, min(N, n), C) points.
    """
    points = np.asarray(points)
    if points.shape[1] <= num_points:
        return points
    idx = np.random.RandomState(seed=int(seed)).permutation(points.shape[1])[:int(num_points)]
    return points[:, idx]


def _check_points(name: str, points) -> np.ndarray:
    a = np.asarray(points)
    if a.ndim != 2 or a.shape[-1] != 3 or len(a) == 0:
        raise ValueError(f"evaluation: {name} must be a non-empty (N, 3) point set, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"evaluation: {name} contains NaN or infinite values")
    return a


def chamfer_distance(pred: np.ndarray, gt: np.ndarray, num_queries: int = N_CHAMFER_QUERIES,
                     seed: int = SEED) -> float:
    """Symmetric Chamfer distance of one frame, in the release's units (``compute_chamfer_score``).

    ``mean_{g in G'} min_p |g - p| + mean_{p in P'} min_g |p - g|`` (Euclidean,
    not squared), where G' / P' are random subsets of at most ``num_queries``
    points (``RandomState(seed + 1)`` / ``RandomState(seed)`` permutations) and
    the nearest neighbours are searched in the whole other set.

    Args:
        pred: (P, 3) predicted points. gt: (N, 3) ground-truth points.
        num_queries: query points per direction (<= 0: all).
        seed: subset seed (the release always uses 44).

    Returns:
        float >= 0, in the units of the points.

    Raises:
        ValueError: an empty, non-(N, 3) or non-finite point set.
    """
    pred = _check_points("pred", pred)
    gt = _check_points("gt", gt)
    rng_pred = np.random.RandomState(seed=int(seed))
    rng_gt = np.random.RandomState(seed=int(seed) + 1)
    ip = rng_pred.permutation(len(pred))[:num_queries] if 0 < num_queries < len(pred) else np.arange(len(pred))
    ig = rng_gt.permutation(len(gt))[:num_queries] if 0 < num_queries < len(gt) else np.arange(len(gt))
    d1, _ = cKDTree(pred).query(gt[ig], workers=-1)
    d2, _ = cKDTree(gt).query(pred[ip], workers=-1)
    return float(np.mean(d1) + np.mean(d2))


def motion_chamfer_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """CD-M of aligned tracked sequences (release: ``compute_motion_chamfer_score``).

    Nearest-neighbour maps sigma (GT point -> predicted point) and tau
    (predicted point -> GT point) are found on frame 0 and kept for all frames:
    ``mean_{k,i} |pred[k, sigma_i] - gt[k, i]| + mean_{k,j} |gt[k, tau_j] - pred[k, j]|``
    (Euclidean, not squared).

    Args:
        pred: (T, P, 3) tracked predicted points (aligned). gt: (T, N, 3) tracked ground truth.

    Returns:
        float >= 0, in the units of the points.

    Raises:
        ValueError: frame counts differ, or bad point sets.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[0] != gt.shape[0]:
        raise ValueError(f"evaluation: CD-M needs (T, P, 3) and (T, N, 3) with one T, got {pred.shape} and {gt.shape}")
    _check_points("pred frame 0", pred[0])
    _check_points("gt frame 0", gt[0])
    _, sigma = cKDTree(pred[0]).query(gt[0], workers=-1)
    _, tau = cKDTree(gt[0]).query(pred[0], workers=-1)
    d1 = np.linalg.norm(pred[:, sigma] - gt, axis=-1).mean()
    d2 = np.linalg.norm(gt[:, tau] - pred, axis=-1).mean()
    return float(d1 + d2)


def canonical_rotations() -> torch.Tensor:
    """The 24 starting rotations of the ICP (release: ``canonical_rotation_matrices``).

    Intrinsic XYZ Euler angles (azimuth, elevation, roll) in degrees: azimuth
    0/90/180/270 with roll 0/90/180/270 (16), then elevation +-90 with roll
    0/90 at azimuth 0 and 90 (8).

    Returns:
        (24, 3, 3) float32 rotation matrices.
    """
    from scipy.spatial.transform import Rotation

    azim = [0] * 4 + [90] * 4 + [180] * 4 + [270] * 4 + [0] * 4 + [90] * 4
    elev = [0] * 16 + [90] * 2 + [-90] * 2 + [90] * 2 + [-90] * 2
    roll = [0, 90, 180, 270] * 4 + [0, 90] * 4
    angles = np.stack([azim, elev, roll], axis=-1)
    return torch.from_numpy(Rotation.from_euler("XYZ", angles, degrees=True).as_matrix()).float()


def _rotation_from_6d(d6: torch.Tensor) -> torch.Tensor:
    """(B, 6) -> (B, 3, 3): Gram-Schmidt of the two 3-vectors, rows b1, b2, b1 x b2 (Zhou et al. 2019)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack((b1, b2, torch.linalg.cross(b1, b2, dim=-1)), dim=-2)


def _cdist_nearest(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Index of the nearest point of ``y[b]`` for every point of ``x[b]`` by blockwise ``torch.cdist``: (B, n) long."""
    out = torch.empty(x.shape[:2], dtype=torch.long, device=x.device)
    block = max(1, int(2 ** 27 // max(1, x.shape[0] * y.shape[1])))
    for start in range(0, x.shape[1], block):
        out[:, start:start + block] = torch.cdist(x[:, start:start + block], y).argmin(-1)
    return out


class _Neighbours:
    """Exact nearest neighbours between the fixed ground truth and the B moving copies of the prediction.

    CPU: one cKDTree of the ground truth (built once) and one per moved copy
    and step; CUDA: blockwise ``torch.cdist``.
    """

    def __init__(self, gt: torch.Tensor, batch: int, trees: Optional[bool] = None):
        self.gt = gt  # (m, 3)
        self.batch = batch
        self.cpu = gt.device.type == "cpu" if trees is None else bool(trees)  # trees=False: cdist on any device
        if self.cpu:
            self.gt_np = gt.numpy().astype(np.float64)
            self.gt_tree = cKDTree(self.gt_np)

    def __call__(self, moved: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
        """(B, n, 3) moved points -> (index of each moved point's nearest GT point (B, n),
        index of each GT point's nearest moved point (B, m))."""
        moved = moved.detach()
        if not self.cpu:
            gt = self.gt[None].expand(self.batch, -1, -1)
            return _cdist_nearest(moved, gt), _cdist_nearest(gt, moved)
        pts = moved.numpy().astype(np.float64)
        workers = -1 if pts.shape[0] * pts.shape[1] >= 100_000 else 1  # threads only pay off on large queries
        to_gt = self.gt_tree.query(pts.reshape(-1, 3), workers=workers)[1].reshape(pts.shape[:2])
        to_moved = np.stack([cKDTree(pts[b]).query(self.gt_np, workers=1)[1] for b in range(len(pts))])
        return torch.from_numpy(to_gt), torch.from_numpy(to_moved)


@dataclass(frozen=True)
class Alignment:
    """A scale-rotation-translation transform of row-vector points: ``(p * scale) @ rotation + translation``.

    Attributes:
        scale: (3,) per-axis scale. rotation: (3, 3). translation: (3,).
        loss: the squared-distance Chamfer loss of the ICP subsets at this transform's step.
    """

    scale: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    loss: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (..., 3) points (float32 as the release)."""
        p = np.asarray(points, np.float32)
        return ((p * self.scale.astype(np.float32)) @ self.rotation.astype(np.float32)
                + self.translation.astype(np.float32)).astype(np.float32)


def gradient_icp(pred: np.ndarray, gt: np.ndarray, *, lr: float = ICP_LR, iterations: int = ICP_ITERATIONS,
                 device: Union[str, torch.device] = "cpu", release_pairing: bool = True) -> Alignment:
    """Align ``pred`` onto ``gt`` by gradient descent from 24 starts (release: ``gradient_icp``).

    For each of the :func:`canonical_rotations` R0, Adam (``lr``) optimises a
    6D rotation (starting at the identity), a translation (0) and a per-axis
    scale (1) of ``(s * pred) @ (R0 @ R) + t`` against the squared-distance
    Chamfer loss (mean over points of the squared nearest-neighbour distance,
    both directions summed; gradients flow through the nearest pairs, as
    pytorch3d's ``chamfer_distance``). After each step the start with the
    lowest loss is remembered if it beats the best so far.

    Args:
        pred: (P, 3) points to move. gt: (N, 3) fixed points.
        lr: Adam learning rate. iterations: steps.
        device: where to optimise ("cpu": scipy cKDTree neighbours; CUDA: blockwise cdist).
        release_pairing: keep the release's pairing of the remembered transform:
            the rotation of the best step with the translation and scale *after*
            that step's update (they are read after ``opt.step()``). False pairs
            all three from the best step (README "Differences from the official
            release" gives the measured effect).

    Returns:
        :class:`Alignment`.

    Raises:
        ValueError: an empty, non-(N, 3) or non-finite point set; iterations < 1.
    """
    pred = _check_points("pred", pred)
    gt = _check_points("gt", gt)
    if int(iterations) < 1:
        raise ValueError(f"evaluation: ICP needs at least 1 iteration, got {iterations}")
    dev = torch.device(device)
    r_init = canonical_rotations().to(dev)
    n = len(r_init)
    p = torch.as_tensor(np.asarray(pred, np.float32), device=dev)[None].expand(n, -1, -1)
    g = torch.as_tensor(np.asarray(gt, np.float32), device=dev)[None].expand(n, -1, -1)
    t = torch.nn.Parameter(torch.zeros(n, 3, device=dev))
    r6 = torch.nn.Parameter(torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]], device=dev).repeat(n, 1))
    s = torch.nn.Parameter(torch.ones(n, 3, device=dev))
    opt = torch.optim.Adam([t, r6, s], lr=lr)
    neighbours = _Neighbours(g[0], n)
    best, best_params = float("inf"), None
    with torch.enable_grad():
        for _ in range(int(iterations)):
            opt.zero_grad()
            rot = r_init @ _rotation_from_6d(r6)
            moved = s[:, None] * p @ rot + t[:, None]
            to_gt, to_pred = neighbours(moved)
            loss = ((moved - torch.gather(g, 1, to_gt[..., None].expand(-1, -1, 3))) ** 2).sum(-1).mean(-1) + \
                ((g - torch.gather(moved, 1, to_pred[..., None].expand(-1, -1, 3))) ** 2).sum(-1).mean(-1)
            before = (t.detach().clone(), s.detach().clone())
            loss.mean().backward()
            opt.step()
            min_loss, idx = loss.detach().min(0)
            if min_loss.item() < best:
                best = min_loss.item()
                t_best, s_best = (t.detach(), s.detach()) if release_pairing else before
                best_params = (rot[idx].detach().clone(), t_best[idx].clone(), s_best[idx].clone())
    rot_b, t_b, s_b = (x.cpu().numpy() for x in best_params)
    return Alignment(scale=s_b, rotation=rot_b, translation=t_b, loss=best)


def evaluate_sequence(pred: MeshSequence, gt: np.ndarray, *, num_points: int = N_PTS_CHAMFER,
                      num_icp_points: int = N_PTS_ICP, seed: int = SEED, icp_iterations: int = ICP_ITERATIONS,
                      motion: bool = True, device: Optional[Union[str, torch.device]] = None,
                      release_pairing: bool = True,
                      progress: Optional[Callable[[str], None]] = None) -> dict:
    """CD-3D, CD-4D and CD-M of one predicted clip against its ground truth (release: ``compute_chamfer_3d_4d``).

    Args:
        pred: T predicted frames (:class:`~actionmesh_core.io.animated_mesh.AnimatedMesh`
            or list of ``trimesh.Trimesh``; one topology for CD-M).
        gt: (T, N, 3) or (T, N, 6) tracked ground-truth points (ActionBench's
            ``surfaces.npy``; normals are ignored).
        num_points: P surface samples per predicted frame (100 000).
        num_icp_points: points per frame the ICP aligns (10 000).
        seed: sampling seed (44; see the module docstring).
        icp_iterations: Adam steps of each ICP (200).
        motion: also compute CD-M (needs one topology); False gives ``cd_m = 0.0`` as the release's ``--3d-only``.
        device: where the ICP runs (None: CUDA when available, else CPU).
        release_pairing: see :func:`gradient_icp`.
        progress: optional ``progress(message)`` called before each ICP.

    Returns:
        ``{"cd_3d": float, "cd_4d": float, "cd_m": float}``.

    Raises:
        ValueError: frame counts differ, bad ground truth, plus the errors of
            :func:`sample_surface_points` / :func:`sample_tracked_points`.
    """
    meshes = as_mesh_list(pred)
    gt = np.asarray(gt)
    if gt.ndim != 3 or gt.shape[-1] not in (3, 6) or gt.shape[0] == 0 or gt.shape[1] == 0:
        raise ValueError(f"evaluation: ground truth must be (T, N, 3) or (T, N, 6) points, got shape {gt.shape}")
    gt = gt[..., :3].astype(np.float32)
    if not np.isfinite(gt).all():
        raise ValueError("evaluation: ground truth contains NaN or infinite values")
    if len(meshes) != gt.shape[0]:
        raise ValueError(f"evaluation: the prediction has {len(meshes)} frames but the ground truth has {gt.shape[0]}")
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    num_frames = gt.shape[0]
    pred_pts = sample_surface_points(meshes, num_points, seed)
    pred_icp = subsample_points(pred_pts, num_icp_points, seed)
    gt_icp = subsample_points(gt, num_icp_points, seed)
    per_frame = []
    for k in range(num_frames):
        if progress is not None:
            progress(f"ICP frame {k + 1}/{num_frames}")
        per_frame.append(gradient_icp(pred_icp[k], gt_icp[k], iterations=icp_iterations, device=dev,
                                      release_pairing=release_pairing))
    # the release runs the frame-0 ICP a second time for CD-4D / CD-M; it is deterministic: the same transform
    sequence = per_frame[0]
    cd_3d = float(np.mean([chamfer_distance(per_frame[k].apply(pred_pts[k]), gt[k]) for k in range(num_frames)]))
    cd_4d = float(np.mean([chamfer_distance(sequence.apply(pred_pts[k]), gt[k]) for k in range(num_frames)]))
    cd_m = 0.0
    if motion:
        tracked = sequence.apply(sample_tracked_points(meshes, num_points, seed))
        cd_m = motion_chamfer_distance(tracked, gt)
    return {"cd_3d": cd_3d, "cd_4d": cd_4d, "cd_m": cd_m}
