"""SDF meshing: analytic sphere/torus fields, refined vs dense grids, conventions, errors."""
import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from actionmesh_core.geometry.meshing import available_backends, sdf_to_mesh, sdf_to_meshes

BOUNDS = 1.005


def voxel(depth):
    return 2 * BOUNDS / 2**depth


def sphere_sdf(radius, center=(0.0, 0.0, 0.0)):
    c = torch.tensor(center)
    return lambda p: (p - c.to(p)).norm(dim=-1) - radius


def torus_sdf(big=0.6, small=0.25):
    def f(p):
        q = torch.stack([p[:, :2].norm(dim=-1) - big, p[:, 2]], dim=-1)
        return q.norm(dim=-1) - small

    return f


def surface_to_mesh_distance(mesh, true_points, samples=200_000):
    """Upper bound of the distance from points to the mesh (dense surface samples + vertices)."""
    pts, _ = trimesh.sample.sample_surface(mesh, samples, seed=0)
    tree = cKDTree(np.concatenate([pts, mesh.vertices]))
    return tree.query(true_points)[0]


def fibonacci_sphere(n, radius):
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return radius * np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


def test_sphere_hausdorff_below_one_voxel():
    r = 0.63
    mesh = sdf_to_mesh(sphere_sdf(r, (0.05, -0.02, 0.01)), octree_depth=5, refine_depth=6)
    h = voxel(6)
    v = mesh.vertices - np.array([0.05, -0.02, 0.01])
    mesh_to_surface = np.abs(np.linalg.norm(v, axis=1) - r).max()
    surface_to_mesh = surface_to_mesh_distance(mesh, fibonacci_sphere(3000, r) + [0.05, -0.02, 0.01]).max()
    assert mesh_to_surface < h and surface_to_mesh < h, (mesh_to_surface, surface_to_mesh, h)
    assert mesh.is_watertight
    assert mesh.volume > 0  # faces wind outward
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.02)


def test_torus_hausdorff_below_one_voxel_and_genus_one():
    big, small = 0.6, 0.25
    f = torus_sdf(big, small)
    mesh = sdf_to_mesh(f, octree_depth=5, refine_depth=6)
    h = voxel(6)
    mesh_to_surface = np.abs(f(torch.from_numpy(mesh.vertices).float()).numpy()).max()
    u, w = np.meshgrid(np.linspace(0, 2 * np.pi, 80), np.linspace(0, 2 * np.pi, 40))
    true = np.stack(
        [(big + small * np.cos(w)) * np.cos(u), (big + small * np.cos(w)) * np.sin(u), small * np.sin(w)], -1
    ).reshape(-1, 3)
    surface_to_mesh = surface_to_mesh_distance(mesh, true).max()
    assert mesh_to_surface < h and surface_to_mesh < h, (mesh_to_surface, surface_to_mesh, h)
    assert mesh.is_watertight
    assert mesh.euler_number == 0  # genus 1
    assert mesh.volume == pytest.approx(2 * math.pi**2 * big * small**2, rel=0.03)


@pytest.mark.parametrize("coarse", [5, 4])
def test_refined_grid_matches_dense_grid_with_fewer_evaluations(coarse):
    f = torus_sdf(0.55, 0.2)
    dense = sdf_to_mesh(f, octree_depth=6, refine_depth=6)
    refined = sdf_to_mesh(f, octree_depth=coarse, refine_depth=6)
    assert len(refined.faces) == len(dense.faces)
    key = lambda m: np.sort(np.sort(m.vertices[m.faces].reshape(-1, 9), axis=1), axis=0)  # noqa: E731
    np.testing.assert_allclose(key(refined), key(dense), atol=1e-9)
    stats_d, stats_r = dense.metadata["meshing"], refined.metadata["meshing"]
    assert stats_d["points_evaluated"] == 65**3
    ratio = stats_r["points_evaluated"] / stats_d["points_evaluated"]
    print(f"refined {coarse}->6 evaluates {stats_r['points_evaluated']} of {65 ** 3} dense points (ratio {ratio:.3f})")
    assert ratio < 0.5
    assert stats_r["ratio"] == pytest.approx(ratio)


def test_occupancy_convention_gives_same_outward_mesh():
    f = sphere_sdf(0.5)
    sdf_mesh = sdf_to_mesh(f, octree_depth=4, refine_depth=5, inside="negative")
    occ_mesh = sdf_to_mesh(lambda p: -3.0 * f(p), octree_depth=4, refine_depth=5, inside="positive")
    assert occ_mesh.volume > 0 and sdf_mesh.volume > 0
    np.testing.assert_allclose(np.sort(occ_mesh.vertices, 0), np.sort(sdf_mesh.vertices, 0), atol=1e-6)
    # the wrong convention flips the winding: a clear sign the caller must set `inside`
    flipped = sdf_to_mesh(f, octree_depth=4, refine_depth=5, inside="positive")
    assert flipped.volume < 0


def test_batched_fields_one_mesh_per_frame_and_level():
    radii = torch.tensor([0.3, 0.5, 0.7])
    calls = []

    def field(p):
        calls.append(tuple(p.shape))
        assert p.dtype == torch.float32
        return p.norm(dim=-1)[None, :] - radii[:, None]

    meshes = sdf_to_meshes(field, 3, octree_depth=4, refine_depth=5, chunk_size=5000)
    assert len(meshes) == 3
    assert all(shape[1] == 3 and shape[0] <= 5000 for shape in calls)
    for m, r in zip(meshes, radii.tolist()):
        assert np.abs(np.linalg.norm(m.vertices, axis=1) - r).max() < voxel(5)
    shifted = sdf_to_mesh(sphere_sdf(0.4), octree_depth=4, refine_depth=5, level=0.1)
    assert np.linalg.norm(shifted.vertices, axis=1).mean() == pytest.approx(0.5, abs=voxel(5))


def test_progress_callback_is_monotone_and_complete():
    seen = []
    sdf_to_meshes(lambda p: p.norm(dim=-1)[None] - 0.5, 1, octree_depth=4, refine_depth=6, chunk_size=4096,
                  callback=lambda done, total: seen.append((done, total)))
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and len(dones) > 3
    assert seen[-1][0] == seen[-1][1]
    assert all(d <= t for d, t in seen)


def test_bad_inputs_raise_clear_errors():
    f = sphere_sdf(0.5)
    with pytest.raises(ValueError, match="num_fields"):
        sdf_to_meshes(lambda p: torch.zeros(2, p.shape[0]), 3, octree_depth=3, refine_depth=3)
    with pytest.raises(ValueError, match="NaN"):
        sdf_to_mesh(lambda p: f(p) * float("nan"), octree_depth=3, refine_depth=3)
    with pytest.raises(ValueError, match="no surface"):
        sdf_to_mesh(lambda p: f(p) + 10.0, octree_depth=3, refine_depth=4)
    with pytest.raises(ValueError, match="inside"):
        sdf_to_mesh(f, octree_depth=3, refine_depth=3, inside="outside")
    with pytest.raises(ValueError, match="refine_depth"):
        sdf_to_mesh(f, octree_depth=5, refine_depth=4)
    with pytest.raises(TypeError, match="callable"):
        sdf_to_meshes("not a function")
    with pytest.raises(TypeError, match="torch.Tensor"):
        sdf_to_mesh(lambda p: [0.0] * p.shape[0], octree_depth=3, refine_depth=3)
    empty = sdf_to_mesh(lambda p: f(p) + 10.0, octree_depth=3, refine_depth=4, allow_empty=True)
    assert len(empty.faces) == 0


def test_diso_backend_errors_without_cuda():
    if "diso" in available_backends("cuda"):
        pytest.skip("diso is usable here; the GPU test below covers it")
    with pytest.raises(RuntimeError, match="diso"):
        sdf_to_mesh(sphere_sdf(0.5), octree_depth=3, refine_depth=3, backend="diso")
    mesh = sdf_to_mesh(sphere_sdf(0.5), octree_depth=3, refine_depth=4, backend="auto")
    assert mesh.metadata["meshing"]["backend"] == "skimage"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU marching cubes needs a CUDA device")
def test_gpu_backend_matches_cpu():
    if "diso" not in available_backends("cuda"):
        pytest.skip("diso is not installed (pip install diso) - GPU marching cubes unavailable")
    f = torus_sdf()
    cpu = sdf_to_mesh(f, octree_depth=5, refine_depth=6, backend="skimage")
    gpu = sdf_to_mesh(f, octree_depth=5, refine_depth=6, backend="diso", device="cuda")
    assert gpu.metadata["meshing"]["backend"] == "diso"
    assert gpu.volume > 0
    d = cKDTree(cpu.vertices).query(gpu.vertices)[0]
    assert d.max() < voxel(6)
