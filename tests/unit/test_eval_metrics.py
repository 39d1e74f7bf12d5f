"""ActionBench metrics (``actionmesh_core.eval.metrics``) on synthetic clips with known answers.

The definitions are the release's (``actionbench/`` of facebookresearch/actionmesh): Euclidean (not squared)
Chamfer distances, gradient ICP with scale from 24 starts, tracked samples for CD-M. The clip-level tests run
the whole protocol with fewer ICP points and steps than the release's 10 000 / 200 (CPU time): the ICP's
precision then limits how close to the sampling floor an aligned prediction gets, and the tolerances say so.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from actionmesh_core.eval.metrics import (
    Alignment,
    _Neighbours,
    _rotation_from_6d,
    canonical_rotations,
    chamfer_distance,
    evaluate_sequence,
    gradient_icp,
    motion_chamfer_distance,
    sample_surface_points,
    sample_tracked_points,
    subsample_points,
)
from actionmesh_core.io.animated_mesh import AnimatedMesh

N = 20_000  # surface samples per frame, predicted and ground truth (the release: 100 000)
FAST = dict(num_points=N, num_icp_points=300, icp_iterations=100)  # the release: 10 000 points, 200 steps


def asymmetric_shape():
    box = trimesh.creation.box(extents=(1.6, 1.0, 0.6))
    bump = trimesh.creation.icosphere(2, radius=0.3).apply_translation([0.8, 0.5, 0.3])
    return trimesh.util.concatenate([box, bump])


def moving_clip(T=3):
    """An asymmetric object turning 10 degrees per frame about z while moving 0.06 along x."""
    m = asymmetric_shape()
    return [trimesh.Trimesh(m.vertices @ Rotation.from_euler("z", 10 * k, degrees=True).as_matrix().T
                            + [0.06 * k, 0, 0], m.faces, process=False) for k in range(T)]


def floor(meshes, gt):
    """CD-3D of a perfectly aligned prediction: the sampling floor (independent samples of the same surfaces)."""
    return float(np.mean([chamfer_distance(p, g) for p, g in zip(sample_surface_points(meshes, N), gt)]))


# ------------------------------------------------------------------ units


def test_chamfer_distance_is_the_release_mean_euclidean_sum():
    pred = np.zeros((1, 3))
    gt = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 1.0]])
    # gt -> pred: (0.5 + 1) / 2; pred -> gt: 0.5 (Euclidean, not squared)
    assert chamfer_distance(pred, gt) == pytest.approx(0.75 + 0.5)
    # queries: random subsets of 10 000 per direction (RandomState(44) / RandomState(45)), trees on all points
    rng = np.random.default_rng(0)
    a, b = rng.random((30_000, 3)), rng.random((25_000, 3))
    from scipy.spatial import cKDTree

    ia = np.random.RandomState(44).permutation(len(a))[:10_000]
    ib = np.random.RandomState(45).permutation(len(b))[:10_000]
    expected = cKDTree(a).query(b[ib])[0].mean() + cKDTree(b).query(a[ia])[0].mean()
    assert chamfer_distance(a, b) == pytest.approx(expected, rel=1e-12)


def test_motion_chamfer_of_a_constant_offset():
    """Tracked prediction = ground truth + o at every frame: each mapped pair is |o| apart, both ways: 2|o|."""
    grid = np.stack(np.meshgrid(*[np.arange(8.0)] * 3, indexing="ij"), -1).reshape(-1, 3)  # spacing 1
    gt = grid + np.random.default_rng(1).normal(0, 0.05, (4, 1, 3))  # moving: frame k shifted as a whole
    offset = np.array([0.03, -0.04, 0.0])  # much less than the spacing: the frame-0 maps pair i with i
    assert motion_chamfer_distance(gt + offset, gt) == pytest.approx(2 * 0.05, rel=1e-6)
    # maps are fixed on frame 0: a prediction whose points swap places later is penalised even if the sets match
    swapped = gt.copy()
    swapped[1:] = gt[1:, ::-1]
    assert chamfer_distance(swapped[2], gt[2]) == 0.0 and motion_chamfer_distance(swapped, gt) > 0.3


def test_canonical_rotations_are_the_24_axis_aligned_starts():
    rots = canonical_rotations().double()
    assert rots.shape == (24, 3, 3)
    torch.testing.assert_close(rots @ rots.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(24, 3, 3),
                               atol=1e-6, rtol=0)
    assert torch.allclose(torch.linalg.det(rots), torch.ones(24, dtype=torch.float64), atol=1e-6)
    assert torch.equal(rots[0], torch.eye(3, dtype=torch.float64))
    # intrinsic XYZ as pytorch3d's euler_angles_to_matrix: R = Rx(azim) Ry(elev) Rz(roll); start 21: (90, 90, 90)
    c = lambda deg: np.cos(np.radians(deg))  # noqa: E731
    s = lambda deg: np.sin(np.radians(deg))  # noqa: E731
    rx = np.array([[1, 0, 0], [0, c(90), -s(90)], [0, s(90), c(90)]])
    ry = np.array([[c(90), 0, s(90)], [0, 1, 0], [-s(90), 0, c(90)]])
    rz = np.array([[c(90), -s(90), 0], [s(90), c(90), 0], [0, 0, 1]])
    np.testing.assert_allclose(rots[21].numpy(), rx @ ry @ rz, atol=1e-6)
    # a release quirk kept: at elevation +-90 the Euler angles lock, so starts 17/20 and 18/23 coincide and the
    # 24 starts are 22 of the cube's 24 rotations (two are never tried)
    keys = [tuple(np.round(r.numpy()).astype(int).ravel()) for r in rots]
    assert len(set(keys)) == 22 and keys[17] == keys[20] and keys[18] == keys[23]


def test_rotation_6d_is_gram_schmidt_with_rows():
    torch.testing.assert_close(_rotation_from_6d(torch.tensor([[1.0, 0, 0, 0, 1, 0]])), torch.eye(3)[None])
    r = _rotation_from_6d(torch.randn(5, 6, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5, rtol=0)
    d6 = torch.tensor([[2.0, 0, 0, 1, 3, 0]])  # first row: normalised a1; second: a2 minus its a1 part, normalised
    torch.testing.assert_close(_rotation_from_6d(d6)[0, :2], torch.tensor([[1.0, 0, 0], [0, 1, 0]]))


def test_sampling_is_seeded_as_the_release():
    clip = moving_clip()
    pts = sample_surface_points(clip, 1000, seed=44)
    for k, mesh in enumerate(clip):  # frame k: trimesh's sampler with seed + k
        np.testing.assert_array_equal(pts[k], trimesh.sample.sample_surface(mesh, 1000, seed=44 + k)[0]
                                      .astype(np.float32))
    # tracked samples: the release seeds the global CPU generator (torch.manual_seed inside fork_rng) and draws
    # multinomial over the float32 face areas, then rand(2, 1, P) for the barycentric coordinates
    tracked = sample_tracked_points(clip, 1000, seed=44)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(44)
        v0 = torch.tensor(clip[0].vertices, dtype=torch.float32)
        tri = v0[torch.from_numpy(clip[0].faces)]
        areas = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1) / 2
        faces = areas[None].multinomial(1000, replacement=True)[0]
        u, v = torch.rand(2, 1, 1000)[:, 0]
    for k, mesh in enumerate(clip):
        corners = torch.tensor(mesh.vertices, dtype=torch.float32)[torch.from_numpy(mesh.faces)[faces]]
        w = torch.stack([1 - u.sqrt(), u.sqrt() * (1 - v), u.sqrt() * v], -1)
        torch.testing.assert_close(torch.from_numpy(tracked[k]), (w[..., None] * corners).sum(1), atol=1e-6,
                                   rtol=0)
    # same material point in every frame: a rigid motion of the mesh moves the samples rigidly
    r = Rotation.from_euler("z", 10, degrees=True).as_matrix()
    np.testing.assert_allclose(tracked[1], (tracked[0] @ r.T + [0.06, 0, 0]), atol=1e-5)
    # ICP subsets: one RandomState(seed) permutation, the same indices in every frame
    sub = subsample_points(tracked, 100, seed=44)
    idx = np.random.RandomState(44).permutation(1000)[:100]
    np.testing.assert_array_equal(sub, tracked[:, idx])
    assert subsample_points(tracked, 5000).shape == tracked.shape


def test_gradient_icp_recovers_scale_rotation_translation():
    """The ICP's transform has a per-axis scale: a scaled, rotated, shifted copy is put back in place."""
    target = sample_tracked_points([asymmetric_shape()], 400, seed=3)[0]
    rot = Rotation.from_euler("xyz", [8, -6, 12], degrees=True).as_matrix()
    scale = np.array([1.05, 0.95, 1.02])
    shift = np.array([0.04, -0.03, 0.05])
    source = ((target - shift) @ rot) / scale  # target = (source * scale) @ rot.T + shift
    al = gradient_icp(source, target)
    assert isinstance(al, Alignment)
    moved = al.apply(source)
    assert np.abs(moved - target).max() < 0.02, np.abs(moved - target).max()
    np.testing.assert_allclose(al.scale, scale, atol=0.01)
    np.testing.assert_allclose(al.rotation, rot.T, atol=0.01)  # row-vector convention: p @ R
    # the release pairs the best step's rotation with the translation/scale after that step: ~no effect
    same_step = gradient_icp(source, target, release_pairing=False)
    assert np.abs(same_step.apply(source) - moved).max() < 1e-3


def test_cuda_neighbour_path_equals_the_cpu_trees():
    """The blockwise-cdist nearest neighbours (the CUDA path, run here on the CPU) equal scipy's cKDTree."""
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(700, 3, generator=gen)
    moved = torch.rand(24, 500, 3, generator=gen)
    trees = _Neighbours(gt, 24)(moved)
    cdist = _Neighbours(gt, 24, trees=False)(moved)
    assert trees[0].shape == (24, 500) and trees[1].shape == (24, 700)
    assert torch.equal(trees[0], cdist[0]) and torch.equal(trees[1], cdist[1])


# ------------------------------------------------------------------ synthetic clips with known answers


@pytest.fixture(scope="module")
def rigid_clip():
    """Ground truth: tracked points of a moving clip. Prediction: the same clip moved rigidly as a whole."""
    clip = moving_clip()
    gt = sample_tracked_points(clip, N, seed=1)
    rot = Rotation.from_rotvec(np.radians(10) * np.array([1, 1, 0]) / np.sqrt(2)).as_matrix()
    pred = [trimesh.Trimesh(m.vertices @ rot.T + [0.05, -0.03, 0.04], m.faces, process=False) for m in clip]
    scores = evaluate_sequence(pred, gt, **FAST)
    print(f"SCORES rigidly moved clip: {scores}")
    return clip, gt, pred, scores


def test_rigidly_moved_prediction_scores_the_sampling_floor(rigid_clip):
    clip, gt, pred, scores = rigid_clip
    base = floor(clip, gt)  # ~0.019 for 20 000 points per set
    motion_base = motion_chamfer_distance(sample_tracked_points(clip, N), gt)
    unaligned = floor(pred, gt)
    print(f"floor {base:.4f} (CD-M {motion_base:.4f}), unaligned {unaligned:.4f}")
    assert unaligned > 4 * base, "the rigid motion is large enough to matter without ICP"
    # after ICP (300 points: its precision adds up to ~0.6 x the floor), every metric is at the floor
    for key, ref in (("cd_3d", base), ("cd_4d", base), ("cd_m", motion_base)):
        assert ref <= scores[key] < 1.8 * ref, (key, scores[key], ref)


def test_temporally_shuffled_clip_raises_cd4d_and_cdm_not_cd3d(rigid_clip):
    _, gt, pred, ordered = rigid_clip
    shuffled = evaluate_sequence([pred[i] for i in (2, 0, 1)], gt, **FAST)
    print(f"SCORES temporally shuffled clip: {shuffled}")
    # each frame is still a rigid copy of its ground truth: per-frame ICP finds it
    assert shuffled["cd_3d"] == pytest.approx(ordered["cd_3d"], rel=0.25)
    assert shuffled["cd_4d"] > 3 * ordered["cd_4d"]
    assert shuffled["cd_m"] > 10 * ordered["cd_m"]


def test_known_per_frame_offset_gives_the_analytic_chamfer():
    """A unit sphere translated by o_k at frame k against the static sphere.

    The mean distance from a uniform point of the unit sphere to the unit sphere shifted by d (d <= 1) is
    (1 / 2d) * integral_{1-d}^{1+d} |r - 1| r dr = d / 2, in each direction, so a frame's Chamfer distance is d:
    CD-4D (one alignment, on frame 0 where o_0 = 0) = mean_k |o_k|; CD-M compares tracked points |o_k| apart,
    both ways: 2 mean_k |o_k|; CD-3D aligns every frame on its own: the floor. The tolerance is the sampling
    floor of the perfectly aligned sphere (points are samples, not surfaces).
    """
    sphere = trimesh.creation.icosphere(4)
    offsets = np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [0.0, 0.24, -0.32]])  # |o| = 0, 0.2, 0.4
    gt = sample_tracked_points([sphere] * 3, N, seed=1)
    pred = AnimatedMesh(sphere.faces, np.stack([sphere.vertices + o for o in offsets]))
    scores = evaluate_sequence(pred, gt, **FAST)
    print(f"SCORES per-frame offset (analytic CD-4D 0.2, CD-M 0.4): {scores}")
    base = floor([sphere] * 3, gt)
    d = np.linalg.norm(offsets, axis=1).mean()
    assert abs(scores["cd_4d"] - d) < base, (scores["cd_4d"], d, base)
    assert abs(scores["cd_m"] - 2 * d) < base, (scores["cd_m"], 2 * d, base)
    assert scores["cd_3d"] < 1.8 * base


def test_bad_inputs_raise():
    clip = moving_clip()
    gt = sample_tracked_points(clip, 100, seed=1)
    with pytest.raises(ValueError, match="frames"):
        evaluate_sequence(clip[:2], gt, **FAST)
    with pytest.raises(TypeError):
        evaluate_sequence("mesh", gt, **FAST)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_sequence(clip, np.full((3, 10, 3), np.nan), **FAST)
    with pytest.raises(ValueError, match=r"\(T, N, 3\)"):
        evaluate_sequence(clip, np.zeros((3, 10)), **FAST)
    other = [clip[0], trimesh.creation.icosphere(2), clip[2]]
    with pytest.raises(ValueError, match="one topology"):
        sample_tracked_points(other, 100)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        chamfer_distance(np.zeros((0, 3)), np.zeros((5, 3)))
