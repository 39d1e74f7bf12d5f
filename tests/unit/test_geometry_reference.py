"""Reference-mesh preparation: a user mesh as anchor and the TripoSG encoder's query points.

User mesh as anchor: release: actionmesh/pipeline_with_3d.py,
``ActionMeshPipelineWithMeshInput.init_banks_from_anchor``; encoder queries: release:
actionmesh/external/triposg.py, ``TripoSGVAE._sample_features``.
"""
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from actionmesh_core.geometry.reference import merge_by_position, prepare_reference_mesh
from actionmesh_core.io.animated_mesh import AnimatedMesh


def textured_cube(extents=(2.0, 1.0, 0.5), offset=(3.0, -1.0, 0.5)):
    """A box with 24 vertices (4 per side, UV seams split), per-side UV cells and a small texture."""
    ex = np.asarray(extents) / 2
    verts, uvs, faces = [], [], []
    for side, (axis, sign) in enumerate([(a, s) for a in range(3) for s in (1, -1)]):
        u_ax, v_ax = [a for a in range(3) if a != axis]
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        base = len(verts)
        for cu, cv in corners:
            p = np.zeros(3)
            p[axis], p[u_ax], p[v_ax] = sign * ex[axis], cu * ex[u_ax], cv * ex[v_ax]
            verts.append(p + offset)
            uvs.append([(side % 3 + (cu + 1) / 2) / 3, (side // 3 + (cv + 1) / 2) / 2])
        ccw = sign * (-1 if axis == 1 else 1) > 0  # (u, v, axis) cyclic for axes 0 and 2
        quad = [[0, 1, 2], [0, 2, 3]] if ccw else [[0, 2, 1], [0, 3, 2]]
        faces += [[base + a, base + b, base + c] for a, b, c in quad]
    verts, faces = np.asarray(verts), np.asarray(faces)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    mesh.visual = trimesh.visual.TextureVisuals(
        uv=np.asarray(uvs), material=trimesh.visual.material.PBRMaterial(baseColorTexture=image)
    )
    return mesh, image


def test_merge_by_position_keeps_map_to_original_order():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0], [-0.0, 0, 0]], float)
    keep, to_merged = merge_by_position(v)
    np.testing.assert_array_equal(keep, [0, 1, 3])
    np.testing.assert_array_equal(to_merged, [0, 1, 0, 2, 1, 0])
    np.testing.assert_array_equal(v[keep][to_merged], v + 0.0)


def test_textured_cube_is_merged_normalised_and_invertible():
    mesh, image = textured_cube()
    ref = prepare_reference_mesh(mesh, num_surface_points=4000, num_query_points=128, subset_points=1000)
    assert ref.vertices.shape == (8, 3) and ref.vertices.dtype == np.float32
    assert ref.to_original.shape == (24,)
    assert ref.faces.shape == (12, 3) and ref.original_faces.shape == (12, 3)
    # bbox centered, longest side 2
    lo, hi = ref.vertices.min(0), ref.vertices.max(0)
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
    assert (hi - lo).max() == pytest.approx(2.0)
    np.testing.assert_allclose(hi - lo, [2.0, 1.0, 0.5], atol=1e-6)
    # inverse transform + map back = the original vertices in the original order
    np.testing.assert_allclose(ref.denormalize(ref.vertices.astype(np.float64))[ref.to_original], mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(ref.normalize(mesh.vertices), ref.vertices[ref.to_original], atol=1e-6)
    t = torch.from_numpy(ref.vertices)
    assert torch.allclose(ref.normalize(ref.denormalize(t)), t, atol=1e-6)
    # visuals carried over in the original order
    np.testing.assert_allclose(ref.uv, mesh.visual.uv, atol=1e-7)
    assert np.array_equal(np.asarray(ref.texture), np.asarray(image))
    merged = trimesh.Trimesh(ref.vertices, ref.faces, process=False)
    assert merged.is_watertight and merged.volume > 0
    # merged normals are unit vectors pointing away from the center (convex shape)
    n = ref.vertex_normals
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
    assert ((n * ref.vertices).sum(1) > 0).all()
    assert ref.vertex_queries().shape == (8, 6)


def test_surface_samples_lie_on_surface_with_face_normals_and_are_seeded():
    mesh, _ = textured_cube()
    ref = prepare_reference_mesh(mesh, num_surface_points=5000, num_query_points=256, subset_points=2000, seed=3)
    s = ref.surface
    assert s.shape == (5000, 6) and s.dtype == torch.float32
    xyz, nrm = s[:, :3].numpy().astype(np.float64), s[:, 3:].numpy()
    half = np.array([1.0, 0.5, 0.25])
    # on the box surface: inside the box and on (at least) one side plane
    assert (np.abs(xyz) <= half + 1e-5).all()
    assert (np.abs(np.abs(xyz) - half).min(1) < 1e-5).all()
    # normals: unit, axis-aligned, pointing out of the side the point is on
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-5)
    axis = np.abs(nrm).argmax(1)
    assert (np.abs(xyz[np.arange(len(xyz)), axis]) == pytest.approx(half[axis], abs=1e-5))
    assert (np.sign(nrm[np.arange(len(xyz)), axis]) == np.sign(xyz[np.arange(len(xyz)), axis])).all()
    # area weighting: the two 2x1 sides (area 4 of 7) get 4/7 of the samples, the 1x0.5 sides 1/7
    assert (axis == 2).mean() == pytest.approx(4 / 7, abs=0.03)
    assert (axis == 0).mean() == pytest.approx(1 / 7, abs=0.03)
    again = prepare_reference_mesh(mesh, num_surface_points=5000, num_query_points=256, subset_points=2000, seed=3)
    other = prepare_reference_mesh(mesh, num_surface_points=5000, num_query_points=256, subset_points=2000, seed=4)
    assert torch.equal(again.surface, ref.surface) and torch.equal(again.query_points, ref.query_points)
    assert not torch.equal(other.surface, ref.surface)


def test_query_points_are_fps_of_surface_samples():
    mesh, _ = textured_cube()
    ref = prepare_reference_mesh(mesh, num_surface_points=4000, num_query_points=200, subset_points=1000)
    q = ref.query_points
    assert q.shape == (200, 6)
    # every query row is one of the surface samples (xyz + normal)
    d, _ = cKDTree(ref.surface.numpy()).query(q.numpy())
    assert d.max() == 0
    assert len(np.unique(q.numpy(), axis=0)) == 200
    # FPS spreads points: its minimum spacing beats that of random picks of the same size
    def min_spacing(p):
        return cKDTree(p).query(p, k=2)[0][:, 1].min()

    rng = np.random.default_rng(0)
    rand = ref.surface.numpy()[rng.choice(4000, 200, replace=False), :3]
    assert min_spacing(q[:, :3].numpy()) > 3 * min_spacing(rand)


def test_to_animated_mesh_restores_original_order_units_and_visuals():
    mesh, image = textured_cube()
    ref = prepare_reference_mesh(mesh, num_surface_points=1000, num_query_points=16, subset_points=100)
    T = 4
    shift = np.array([0.1, 0.0, -0.05])
    pos = torch.stack([torch.from_numpy(ref.vertices) + torch.tensor(shift * k, dtype=torch.float32) for k in range(T)])
    anim = ref.to_animated_mesh(pos, times=np.arange(T) / 10.0)
    assert isinstance(anim, AnimatedMesh)
    assert anim.vertices.shape == (T, 24, 3)
    np.testing.assert_array_equal(anim.faces, mesh.faces)
    for k in range(T):
        np.testing.assert_allclose(anim.vertices[k], mesh.vertices + shift * k / ref.scale, atol=1e-5)
    np.testing.assert_allclose(anim.uv, mesh.visual.uv, atol=1e-7)
    assert np.array_equal(np.asarray(anim.texture_image()), np.asarray(image))
    np.testing.assert_allclose(anim.times, np.arange(T) / 10.0, atol=1e-7)
    model = ref.to_animated_mesh(pos[0].numpy(), denormalize=False)
    np.testing.assert_allclose(model.vertices[0], ref.vertices[ref.to_original], atol=1e-6)
    with pytest.raises(ValueError, match="merged vertices"):
        ref.to_animated_mesh(np.zeros((2, 7, 3)))
    with pytest.raises(ValueError, match="NaN"):
        ref.to_animated_mesh(np.full((1, 8, 3), np.nan))


def test_loads_from_file_path(tmp_path):
    mesh, image = textured_cube()
    path = tmp_path / "cube.glb"
    mesh.export(str(path))
    ref = prepare_reference_mesh(path, num_surface_points=500, num_query_points=8, subset_points=100)
    assert ref.vertices.shape == (8, 3) and ref.uv is not None and ref.uv.shape == (24, 2)
    assert np.array_equal(np.asarray(ref.texture.convert("RGB")), np.asarray(image))
    assert ref.metadata["source_path"] == str(path)


def test_bad_reference_meshes_raise():
    with pytest.raises(FileNotFoundError):
        prepare_reference_mesh("/nonexistent/mesh.glb")
    with pytest.raises(TypeError, match="trimesh"):
        prepare_reference_mesh(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="no vertices"):
        prepare_reference_mesh(trimesh.Trimesh())
    nan = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], [[0, 1, 2]], process=False)
    with pytest.raises(ValueError, match="NaN"):
        prepare_reference_mesh(nan)
    flat = trimesh.Trimesh([[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[0, 1, 2]], process=False)
    with pytest.raises(ValueError, match="area"):
        prepare_reference_mesh(flat)
    box = trimesh.creation.box()
    with pytest.raises(ValueError, match="num_query_points"):
        prepare_reference_mesh(box, num_surface_points=100, num_query_points=200)
