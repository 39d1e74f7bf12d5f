"""Geodesic rigid skinning (attention-chains §4.2 step 3, app. D.2)."""
import numpy as np
import pytest
import scipy.sparse as sp
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from actionmesh_core.attention_chain import (SkinningWeights, geodesic_skinning_weights, mesh_graph, rigid_skinning,
                                             select_landmarks, weighted_procrustes)


def ellipsoid(sub=3):
    m = trimesh.creation.icosphere(subdivisions=sub)
    v = np.asarray(m.vertices) * np.array([1.5, 0.8, 0.6])
    return v, np.asarray(m.faces)


def two_touching_spheres(sub=3):
    """Two unit spheres touching at the origin: separate components, no shared vertex."""
    m = trimesh.creation.icosphere(subdivisions=sub)
    v0 = np.asarray(m.vertices)
    f0 = np.asarray(m.faces)
    v = np.concatenate([v0 + [-1.0, 0, 0], v0 + [1.0, 0, 0]])
    f = np.concatenate([f0, f0 + len(v0)])
    part = np.repeat([0, 1], len(v0))
    return v, f, part


def rigid(points, rotvec, shift):
    return points @ Rotation.from_rotvec(rotvec).as_matrix().T + np.asarray(shift)


def test_exact_rigid_motion_is_reproduced():
    v, f = ellipsoid()
    lm = select_landmarks(v, f, count=200)
    skin = geodesic_skinning_weights(v, f, lm)
    assert skin.matrix.shape == (len(v), 200)
    np.testing.assert_allclose(np.asarray(skin.matrix.sum(1)).ravel(), 1.0)
    frames = [([0.0, 0.0, 0.0], [0, 0, 0]), ([0.4, -0.2, 1.1], [0.3, 0.1, -0.5]), ([np.pi * 0.9, 0, 0], [2, 2, 2])]
    targets = np.stack([rigid(v[lm], r, s) for r, s in frames])
    out = rigid_skinning(v, v[lm], targets, skin)
    expected = np.stack([rigid(v, r, s) for r, s in frames])
    assert np.abs(out - expected).max() < 1e-4
    assert np.abs(out - expected).max() < 1e-9        # in fact exact to round-off


def test_two_part_articulated_motion_is_reproduced():
    v, f, part = two_touching_spheres()
    lm = select_landmarks(v, f, count=120)
    assert 0 < part[lm].mean() < 1
    skin = geodesic_skinning_weights(v, f, lm)
    motions = [([0.0, 0.7, 0.0], [-0.2, 0.0, 0.3]), ([0.0, -0.5, 0.9], [0.4, 0.1, 0.0])]
    moved = v.copy()
    for p, (r, s) in enumerate(motions):
        moved[part == p] = rigid(v[part == p], r, s)
    out = rigid_skinning(v, v[lm], moved[lm][None], skin)[0]
    assert np.abs(out - moved).max() < 1e-4
    # the same skinning with Euclidean neighbours leaks across the contact point
    d, i = cKDTree(v[lm]).query(v, k=120)
    w = np.exp(-(d ** 2 - d[:, :1] ** 2) / (2 * skin.sigma ** 2))
    w /= w.sum(1, keepdims=True)
    mat = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(len(v)), 120), i.ravel())), shape=(len(v), len(lm)))
    eucl = SkinningWeights(matrix=mat, neighbors=i, distances=d, sigma=skin.sigma, geodesic=np.ones(len(v), bool))
    assert np.abs(rigid_skinning(v, v[lm], moved[lm][None], eucl)[0] - moved).max() > 1e-2


def test_geodesic_neighbours_do_not_leak_across_the_gap():
    v, f, part = two_touching_spheres()
    lm = select_landmarks(v, f, count=120)
    skin = geodesic_skinning_weights(v, f, lm)
    coo = skin.matrix.tocoo()
    assert np.all(part[coo.row] == part[lm][coo.col])
    # vertices right at the contact point (Euclidean-closest to the other part) included
    near = np.flatnonzero(np.linalg.norm(v, axis=1) < 0.3)
    assert near.size > 0 and np.all(part[lm][skin.neighbors[near][skin.neighbors[near] >= 0]] ==
                                    np.repeat(part[near], (skin.neighbors[near] >= 0).sum(1)))
    assert skin.geodesic.all()


def test_component_without_landmarks_falls_back_to_euclidean():
    v, f, part = two_touching_spheres(sub=2)
    lm = np.flatnonzero(part == 0)[::5]
    skin = geodesic_skinning_weights(v, f, lm, k=10)
    assert not skin.geodesic[part == 1].any() and skin.geodesic[part == 0].all()
    out = rigid_skinning(v, v[lm], rigid(v[lm], [0, 0, 0.3], [1, 0, 0])[None], skin)
    np.testing.assert_allclose(out[0], rigid(v, [0, 0, 0.3], [1, 0, 0]), atol=1e-9)


def test_procrustes_is_reflection_safe_and_handles_degenerate_neighbourhoods():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 3))
    a -= a.mean(0)
    r_true = Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix()
    np.testing.assert_allclose(weighted_procrustes(a.T @ (a @ r_true.T)), r_true, atol=1e-12)
    mirrored = a * np.array([1, 1, -1])              # a reflection is not a rotation
    r = weighted_procrustes(a.T @ mirrored)
    assert np.isclose(np.linalg.det(r), 1.0)
    line = np.outer(np.linspace(-1, 1, 5), [1.0, 2.0, 0.5])
    np.testing.assert_allclose(weighted_procrustes(line.T @ line), np.eye(3))
    np.testing.assert_allclose(weighted_procrustes(np.zeros((3, 3))), np.eye(3))


def test_mesh_graph_and_input_errors():
    v, f = ellipsoid(sub=1)
    g = mesh_graph(v, f)
    assert (g != g.T).nnz == 0 and g.nnz == 2 * len(trimesh.Trimesh(v, f, process=False).edges_unique)
    with pytest.raises(ValueError, match="duplicate"):
        geodesic_skinning_weights(v, f, [0, 0, 1])
    with pytest.raises(ValueError, match="empty"):
        geodesic_skinning_weights(v, f, [])
    with pytest.raises(ValueError, match="vertex indices"):
        geodesic_skinning_weights(v, f, [0, len(v)])
    skin = geodesic_skinning_weights(v, f, [0, 5, 9, 20])
    with pytest.raises(ValueError, match="landmark_targets"):
        rigid_skinning(v, v[[0, 5, 9, 20]], np.zeros((2, 3, 3)), skin)
    with pytest.raises(ValueError, match="faces"):
        mesh_graph(v, f + len(v))
