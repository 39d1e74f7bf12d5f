"""CD-3D / CD-4D / CD-M with ICP (REFERENCE §5, ActionMesh supplementary Eq. 2-6)."""
import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from actionmesh_core.eval.metrics import (
    chamfer_3d,
    chamfer_4d,
    chamfer_distance,
    chamfer_motion,
    evaluate_sequence,
    icp,
    sample_sequence,
)
from actionmesh_core.io.animated_mesh import AnimatedMesh

N = 20_000  # samples per frame in tests (the default is the paper's 100k)


def asymmetric_shape():
    box = trimesh.creation.box(extents=(1.6, 1.0, 0.6))
    bump = trimesh.creation.icosphere(2, radius=0.3).apply_translation([0.8, 0.5, 0.3])
    return trimesh.util.concatenate([box, bump])


def moving_sequence(T=4):
    m = asymmetric_shape()
    frames = []
    for k in range(T):
        v = m.vertices.copy()
        v[:, 1] += 0.3 * k * np.clip(v[:, 0], 0, None)  # the +x half bends upwards over time
        frames.append(v)
    return AnimatedMesh(m.faces, np.stack(frames), times=np.arange(T) / 8)


def test_identical_sequences_score_zero():
    gt = moving_sequence()
    scores = evaluate_sequence(gt, gt, num_samples=N)
    assert set(scores) == {"cd_3d", "cd_4d", "cd_m"}
    assert all(v < 1e-20 for v in scores.values()), scores
    assert chamfer_3d(gt, gt, num_samples=N) < 1e-20
    assert chamfer_4d(gt, gt, num_samples=N) < 1e-20
    assert chamfer_motion(gt, gt, num_samples=N) < 1e-20


def test_icp_recovers_known_rigid_transform():
    rng = np.random.default_rng(0)
    target, _ = trimesh.sample.sample_surface(asymmetric_shape(), 5000, seed=1)
    rot = Rotation.from_euler("xyz", [12, -20, 25], degrees=True).as_matrix()
    shift = np.array([0.15, -0.08, 0.1])
    source = (target - shift) @ rot  # target = source @ rot.T + shift
    source = source[rng.permutation(len(source))]
    r, t, err = icp(source, target)
    np.testing.assert_allclose(r, rot, atol=1e-6)
    np.testing.assert_allclose(t, shift, atol=1e-6)
    assert err < 1e-12


def test_cd3d_is_zero_after_rigid_motion_of_prediction():
    gt = moving_sequence()
    rot = Rotation.from_euler("xyz", [10, -15, 20], degrees=True).as_matrix()
    pred = AnimatedMesh(gt.faces, gt.vertices @ rot.T + np.array([0.1, -0.05, 0.08]))
    scores = evaluate_sequence(pred, gt, num_samples=N)
    assert scores["cd_3d"] < 1e-8 and scores["cd_4d"] < 1e-8 and scores["cd_m"] < 1e-8, scores
    unaligned = evaluate_sequence(pred, gt, num_samples=N, align=False)
    assert unaligned["cd_3d"] > 1e-3  # without ICP the offset is measured


def test_swapped_correspondences_keep_cd4d_low_but_raise_cdm():
    # GT: a sphere spinning about z (points travel); prediction: the same sphere standing still.
    # Every frame has the same shape (CD-4D ~ 0) but the motion is wrong (CD-M large).
    s = trimesh.creation.icosphere(3)
    T = 4
    angles = np.linspace(0, np.pi / 2, T)
    gt = AnimatedMesh(s.faces, np.stack([s.vertices @ Rotation.from_euler("z", a).as_matrix().T for a in angles]))
    pred = AnimatedMesh(s.faces, np.repeat(s.vertices[None], T, axis=0))
    scores = evaluate_sequence(pred, gt, num_samples=10_000)
    assert scores["cd_4d"] < 1e-3 and scores["cd_3d"] < 1e-3
    assert scores["cd_m"] > 0.3
    assert scores["cd_m"] > 100 * scores["cd_4d"]
    # a true swap: mirror the point correspondences of frames >= 1 (x -> -x on a symmetric shape)
    pts, _ = sample_sequence(gt, 10_000)
    mirrored = pts.copy()
    mirrored[1:, :, 0] *= -1  # the mirror image of a sphere is the same sphere
    swap = evaluate_sequence(mirrored, pts)
    assert swap["cd_4d"] < 1e-3 and swap["cd_m"] > 0.3


def test_chamfer_distance_known_value():
    a = np.zeros((1, 3))
    b = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 1.0]])
    # a->b: 0.25; b->a: (0.25 + 1) / 2
    assert chamfer_distance(a, b) == pytest.approx(0.25 + 0.625)


def test_accepts_trimesh_lists_and_point_arrays():
    gt = moving_sequence(T=3)
    as_list = [trimesh.Trimesh(v, gt.faces, process=False) for v in gt.vertices]
    pts, tracked = sample_sequence(as_list, 1000)
    assert tracked and pts.shape == (3, 1000, 3)
    np.testing.assert_allclose(pts, sample_sequence(gt, 1000)[0])
    # different topology per frame: CD-3D/4D work, CD-M is not defined
    varied = [trimesh.creation.icosphere(2), trimesh.creation.icosphere(3)]
    other = [trimesh.creation.icosphere(3), trimesh.creation.icosphere(2)]
    same_shape = chamfer_4d(varied, other, num_samples=2000)
    bigger = [trimesh.creation.icosphere(3, radius=1.3)] * 2
    assert same_shape < 0.01 < chamfer_4d(varied, bigger, num_samples=2000, align=False)
    with pytest.raises(ValueError, match="tracked"):
        chamfer_motion(varied, other, num_samples=2000)
    assert np.isnan(evaluate_sequence(varied, other, num_samples=2000)["cd_m"])


def test_bad_inputs_raise():
    gt = moving_sequence(T=3)
    with pytest.raises(ValueError, match="frames"):
        evaluate_sequence(moving_sequence(T=2), gt, num_samples=100)
    with pytest.raises(TypeError):
        chamfer_3d("mesh", gt, num_samples=100)
    with pytest.raises(ValueError, match="NaN"):
        chamfer_3d(np.full((3, 10, 3), np.nan), gt, num_samples=100)
    with pytest.raises(ValueError, match="zero surface area"):
        flat = AnimatedMesh(np.array([[0, 1, 2]]), np.array([[[0, 0, 0], [1, 0, 0], [2, 0, 0]]] * 3, float))
        chamfer_3d(flat, gt, num_samples=100)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        icp(np.zeros((0, 3)), np.zeros((5, 3)))
