"""Landmarks, outlier rejection and temporal smoothing (attention-chains §4.2, app. C, D.1)."""
import numpy as np
import pytest
import trimesh

from actionmesh_core.attention_chain import (keep_landmarks, reject_outliers, select_landmarks,
                                             smooth_trajectories, vertex_curvature)


def subdivided_box(times=3):
    m = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    for _ in range(times):
        m = m.subdivide()
    m.merge_vertices()
    return np.asarray(m.vertices), np.asarray(m.faces)


def on_box_edge(v):
    return (np.isclose(np.abs(v), 1.0).sum(1) >= 2)


def test_curvature_is_zero_on_flat_faces_and_high_on_edges():
    v, f = subdivided_box()
    c = vertex_curvature(v, f)
    edge = on_box_edge(v)
    assert np.all((c >= 0) & (c <= 1))
    assert np.allclose(c[~edge], 0.0, atol=1e-9)
    assert c[edge].min() > 0.2
    sphere = trimesh.creation.icosphere(3)
    cs = vertex_curvature(sphere.vertices, sphere.faces)
    assert cs.min() > 0.5          # a sphere is curved (about uniformly) everywhere


def test_fps_landmarks_distinct_deterministic_and_clipped():
    s = trimesh.creation.icosphere(3)
    lm = select_landmarks(s.vertices, s.faces, count=100)
    assert lm.shape == (100,) and np.unique(lm).size == 100 and lm.dtype == np.int64
    assert np.array_equal(lm, select_landmarks(s.vertices, s.faces, count=100))
    assert select_landmarks(s.vertices, s.faces, count=5000).size == len(s.vertices)
    # FPS spreads the samples: the covering radius is far below the sphere's diameter
    d = np.linalg.norm(s.vertices[:, None] - s.vertices[lm][None], axis=-1).min(1)
    assert d.max() < 0.35


def test_curvature_boost_puts_more_landmarks_on_edges():
    v, f = subdivided_box()
    plain = on_box_edge(v[select_landmarks(v, f, count=60, alpha=0.0)]).mean()
    boosted = on_box_edge(v[select_landmarks(v, f, count=60, alpha=2.0)]).mean()
    assert boosted > plain + 0.1


def _tracks(num_frames=16, num_landmarks=50, seed=0):
    rng = np.random.default_rng(seed)
    anchor = rng.uniform(-1, 1, (num_landmarks, 3))
    motion = np.linspace(0, 0.3, num_frames)[:, None, None] * np.array([1.0, 0.0, 0.0])
    tr = anchor[None] + motion + rng.normal(0, 0.005, (num_frames, num_landmarks, 3))
    return anchor, tr


def test_outliers_at_five_times_the_frame_median():
    anchor, tr = _tracks()
    tr[5, 7] += np.array([0.0, 3.0, 0.0])          # far beyond 5x the median displacement
    tr[9, 3] = np.nan                              # missing
    valid = reject_outliers(anchor, tr, anchor_frame=0)
    assert not valid[5, 7] and not valid[9, 3]
    assert valid.sum() == valid.size - 2
    keep = keep_landmarks(valid)                   # 16 frames: 95 % means all 16
    assert not keep[7] and not keep[3] and keep.sum() == 48
    # with 40 frames two invalid frames are still >= 95 %
    v40 = np.ones((40, 2), bool)
    v40[[3, 8], 0] = False
    v40[[3, 8, 9], 1] = False
    assert keep_landmarks(v40).tolist() == [True, False]


def test_outlier_floor_keeps_a_nearly_static_frame():
    anchor, tr = _tracks()
    tr[4] = anchor + np.random.default_rng(1).normal(0, 1e-6, anchor.shape)   # static frame, median ~ 1e-6
    tr[4, :3] += 0.01                                                          # tiny real motion
    assert reject_outliers(anchor, tr, 0)[4].all()
    assert not reject_outliers(anchor, tr, 0, floor=0.0)[4, :3].any()
    assert not reject_outliers(anchor, tr, 0, max_displacement=0.01)[15].any()


def test_landmark_reference_judges_each_landmark_against_its_own_frames():
    """App. C wording (median over the landmark's frames) vs app. D.1 (median over the frame's landmarks):
    a fast limb is valid against its own motion but an outlier against a frame of slow landmarks; a one-frame
    spike of a slow landmark is an outlier either way."""
    anchor, tr = _tracks()                                          # 50 landmarks, 0.02 per frame along x
    limb = np.arange(16)[:, None] * np.array([0.0, 0.3, 0.0])       # landmark 4: 15x the others' speed
    tr[:, 4] += limb
    tr[9, 11] += np.array([0.0, 0.0, 2.0])                          # landmark 11: one spike
    frame = reject_outliers(anchor, tr, 0, reference="frame")
    own = reject_outliers(anchor, tr, 0, reference="landmark")
    disp = np.linalg.norm(tr - anchor[None], axis=-1)
    frame_median = np.median(disp, axis=1)
    late = disp[:, 4] > 5 * frame_median                            # the frames where the limb outruns 5x
    assert late[1:].sum() >= 10
    assert not frame[late, 4].any() and frame[~late, 4].all()       # frame reference: rejected there
    assert own[:, 4].all()                                          # its own median: every frame valid
    assert not frame[9, 11] and not own[9, 11]
    assert own[np.arange(16) != 9, 11].all()
    # the landmark reference's threshold is 5x that landmark's median over the non-anchor frames
    median_11 = np.median(disp[1:, 11])
    assert disp[9, 11] > 5 * median_11 > disp[1:, 11][np.arange(1, 16) != 9].max()


def test_smoothing_keeps_a_static_landmark_static():
    anchor, tr = _tracks(seed=2)
    tr[:, 4] = anchor[4]                           # static landmark among moving noisy ones
    conf = np.ones(tr.shape[:2])
    conf[6, 4] = 0.0                               # even with a rejected frame
    out = smooth_trajectories(anchor, tr, anchor_frame=3, confidence=conf, sigma=1.5)
    assert np.array_equal(out[:, 4], np.broadcast_to(anchor[4], (16, 3)))
    assert np.array_equal(out[3], anchor)          # anchor frame pinned


def test_smoothing_bridges_rejected_frames_and_keeps_linear_motion():
    anchor = np.zeros((1, 3))
    t = np.arange(16, dtype=float)
    tr = np.stack([t * 0.1, -t * 0.05, 0 * t], 1)[:, None, :]
    clean = tr.copy()
    tr[8, 0] = [50.0, 50.0, 50.0]                  # garbage, flagged
    conf = np.ones((16, 1))
    conf[8] = 0
    out = smooth_trajectories(anchor, tr, anchor_frame=0, confidence=conf, sigma=1.5)
    # the rejected frame is bridged from its neighbours (symmetric support: exact for linear motion)
    np.testing.assert_allclose(out[8], clean[8], atol=1e-6)
    assert np.abs(out - clean).max() < 0.15
    # with every frame valid, interior frames (kernel support inside the clip) keep linear motion exactly
    full = smooth_trajectories(anchor, clean, anchor_frame=0, sigma=1.5)
    np.testing.assert_allclose(full[6:10], clean[6:10], atol=1e-6)
    # noise is reduced
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0, 0.05, clean.shape)
    sm = smooth_trajectories(anchor, noisy, 0, sigma=1.5)
    assert np.abs(sm - clean)[2:14].mean() < 0.6 * np.abs(noisy - clean)[2:14].mean()


def test_smoothing_input_errors():
    anchor, tr = _tracks()
    tr[2, 1] = np.nan
    with pytest.raises(ValueError, match="confidence 0"):
        smooth_trajectories(anchor, tr, 0)
    with pytest.raises(ValueError, match="anchor_frame"):
        smooth_trajectories(anchor, np.nan_to_num(tr), 16)
    with pytest.raises(ValueError, match="sigma"):
        smooth_trajectories(anchor, np.nan_to_num(tr), 0, sigma=0)
    with pytest.raises(ValueError, match="match"):
        smooth_trajectories(anchor[:3], np.nan_to_num(tr), 0)
