"""PnP camera, 2D tracks and the 2D<->3D bridge (attention-chains §4.4, app. C)."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from actionmesh_core.attention_chain import (CameraEstimationError, bridge_pixels_to_vertices,
                                             bridge_vertices_to_pixels, estimate_camera_pose, intrinsics_from_ndc,
                                             patch_centers, pixel_to_patch, project_points, surface_tracks,
                                             track_pixels)


def test_ndc_focal_gives_the_published_field_of_view():
    k = intrinsics_from_ndc((224, 224))
    fov = 2 * np.degrees(np.arctan((224 / 2) / k[1, 1]))
    assert abs(fov - 49.2) < 0.1
    assert k[0, 0] == k[1, 1] and k[0, 2] == 111.5
    with pytest.raises(ValueError):
        intrinsics_from_ndc((224,))


def _scene(num=300, outlier_fraction=0.3, noise_px=0.5, seed=0):
    rng = np.random.default_rng(seed)
    r = Rotation.from_rotvec([0.4, -2.5, 0.3]).as_matrix()
    t = np.array([0.15, -0.1, 3.2])
    x = rng.uniform(-1, 1, (num, 3))
    size = (512, 384)
    k = intrinsics_from_ndc(size)
    u = project_points(x, r, t, k) + rng.normal(0, noise_px, (num, 2))
    bad = rng.random(num) < outlier_fraction
    u[bad] = rng.uniform([0, 0], size, (bad.sum(), 2))
    return x, u, r, t, size, bad


def test_pnp_recovers_a_synthetic_camera_despite_outliers():
    x, u, r, t, size, bad = _scene()
    pose = estimate_camera_pose(x, u, size)
    angle = np.degrees(Rotation.from_matrix(pose.rotation @ r.T).magnitude())
    assert angle < 0.5
    assert np.linalg.norm(pose.translation - t) < 0.02 * np.linalg.norm(t)
    assert np.isclose(np.linalg.det(pose.rotation), 1.0)
    # outliers far from their projection are rejected, inliers kept
    far = bad & (np.linalg.norm(u - project_points(x, r, t, pose.intrinsics), axis=1) > 20)
    assert not pose.inliers[far].any()
    assert pose.inliers[~bad].mean() > 0.98
    assert pose.rmse_px < 2.0


def test_pnp_input_errors():
    x, u, *_ = _scene(num=10)
    with pytest.raises(ValueError, match="at least 4"):
        estimate_camera_pose(x[:3], u[:3], (512, 384))
    with pytest.raises(ValueError, match="points_2d"):
        estimate_camera_pose(x, u[:5], (512, 384))
    with pytest.raises(ValueError, match="confidence"):
        estimate_camera_pose(x, u, (512, 384), confidence=1.0)
    flat = np.zeros((10, 3))
    with pytest.raises(CameraEstimationError):
        estimate_camera_pose(flat, u, (512, 384))


def test_patch_grid_round_trip():
    c = patch_centers((16, 16), (224, 224))
    assert c.shape == (256, 2)
    np.testing.assert_allclose(c[0], [6.5, 6.5])
    assert np.array_equal(pixel_to_patch(c, (16, 16), (224, 224)), np.arange(256))
    with pytest.raises(ValueError, match="inside"):
        pixel_to_patch([[300.0, 3.0]], (16, 16), (224, 224))


def _onehot(index, n, peak=0.9):
    rows = torch.full((len(index), n), (1 - peak) / (n - 1), dtype=torch.float64)
    rows[torch.arange(len(index)), torch.as_tensor(index)] = peak
    return rows


def test_2d_tracks_follow_a_shifting_object():
    gh = gw = 4
    n = gh * gw
    size = (64, 64)                                     # 16 px patches
    a_pa_za = _onehot(range(n), n)                      # patch p <-> token p in every frame
    shifts = [0, 1, 2, 1]                               # object moves right by whole patches
    col = np.arange(n) % gw
    a_za_zf = [_onehot((np.arange(n) // gw) * gw + (col + s) % gw, n, peak=0.8) for s in shifts]
    a_pf_zf = [_onehot(range(n), n)] * len(shifts)
    queries = np.array([[3.0, 5.0], [20.0, 40.0]])      # columns 0 and 1
    tracks, scores = track_pixels(queries, a_pa_za, a_za_zf, a_pf_zf, (gh, gw), size, anchor_frame=0)
    assert tracks.shape == (4, 2, 2) and scores.shape == (4, 2)
    for f, s in enumerate(shifts):
        np.testing.assert_allclose(tracks[f, :, 0], (queries[:, 0] + 16 * s) % 64)
        np.testing.assert_allclose(tracks[f, :, 1], queries[:, 1])
    with pytest.raises(ValueError, match="num_frames"):
        track_pixels(queries, a_pa_za, lambda f: a_za_zf[f], lambda f: a_pf_zf[f], (gh, gw), size, 0)
    t2, _ = track_pixels(queries, a_pa_za, lambda f: a_za_zf[f], lambda f: a_pf_zf[f], (gh, gw), size, 0,
                         num_frames=4)
    np.testing.assert_allclose(t2, tracks)


def test_bridge_links_pixels_and_vertices_through_shared_tokens():
    n = 9
    vertex_token = np.array([4, 0, 8, 2])                # vertex v is explained by token vertex_token[v]
    a_va_za = _onehot(vertex_token, n)
    a_pa_za = _onehot(range(n), n)                      # 3x3 patch grid, patch p <-> token p
    pix, score = bridge_vertices_to_pixels(a_pa_za, a_va_za, (3, 3), (30, 30))
    np.testing.assert_allclose(pix, patch_centers((3, 3), (30, 30))[vertex_token])
    assert np.all(score > 0.5)
    vid, _ = bridge_pixels_to_vertices(a_pa_za[[8, 2]], a_va_za)
    assert vid.tolist() == [2, 3]


def test_surface_tracks_follow_the_mesh_and_the_camera():
    faces = np.array([[0, 1, 2]])
    v0 = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    positions = np.stack([v0, v0 + [0, 0, 2.0]])
    bary = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0, 0]])
    tr = surface_tracks(positions, faces, [0, 0], bary)
    np.testing.assert_allclose(tr[1, 0], [1 / 3, 1 / 3, 2.0])
    r = Rotation.from_rotvec([0, 0, np.pi / 2]).as_matrix()
    cam = surface_tracks(positions, faces, [0, 0], bary, r, [0, 0, 5.0])
    np.testing.assert_allclose(cam[0, 1], [0, 0, 5.0], atol=1e-12)
    with pytest.raises(ValueError, match="sum to 1"):
        surface_tracks(positions, faces, [0], [[0.5, 0.1, 0.1]])
