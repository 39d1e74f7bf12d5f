"""Static mesh import/export through trimesh: GLB / glTF / OBJ / PLY, textures, scenes, errors."""
import numpy as np
import pytest
import trimesh
from PIL import Image

from actionmesh_core.io.mesh_io import as_mesh, load_mesh, save_mesh


def textured_box():
    mesh = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    mesh.unmerge_vertices()  # UV seams: 36 vertices
    rng = np.random.default_rng(0)
    uv = rng.random((len(mesh.vertices), 2))
    image = Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    mesh.visual = trimesh.visual.TextureVisuals(
        uv=uv, material=trimesh.visual.material.PBRMaterial(baseColorTexture=image)
    )
    return mesh, uv, image


@pytest.mark.parametrize("ext", [".glb", ".gltf", ".obj", ".ply", ".stl", ".off"])
def test_round_trip_keeps_geometry(tmp_path, ext):
    mesh = trimesh.creation.icosphere(2)
    path = save_mesh(mesh, tmp_path / "sub" / f"sphere{ext}")
    back = load_mesh(path)
    assert isinstance(back, trimesh.Trimesh)
    assert len(back.faces) == len(mesh.faces)
    # same surface: every loaded vertex is a source vertex
    from scipy.spatial import cKDTree

    assert cKDTree(mesh.vertices).query(back.vertices)[0].max() < 1e-6
    assert back.volume == pytest.approx(mesh.volume, rel=1e-6)


@pytest.mark.parametrize("ext", [".glb", ".gltf", ".obj"])
def test_textured_mesh_keeps_uv_and_texture(tmp_path, ext):
    mesh, uv, image = textured_box()
    back = load_mesh(save_mesh(mesh, tmp_path / f"box{ext}"))
    assert isinstance(back.visual, trimesh.visual.TextureVisuals)
    assert len(back.vertices) == len(mesh.vertices)  # seams stay split (no merging on load)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(back.visual.uv, uv, atol=1e-6)
    mat = back.visual.material
    tex = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
    assert tex is not None
    assert np.array_equal(np.asarray(tex.convert("RGB")), np.asarray(image))


def test_scene_is_flattened_with_node_transforms(tmp_path):
    a = trimesh.creation.box()
    b = trimesh.creation.icosphere(1, radius=0.3)
    scene = trimesh.Scene()
    scene.add_geometry(a, node_name="a")
    scene.add_geometry(b, node_name="b", transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    path = tmp_path / "scene.glb"
    scene.export(str(path))
    mesh = load_mesh(path)
    assert len(mesh.faces) == len(a.faces) + len(b.faces)
    assert mesh.vertices[:, 0].max() == pytest.approx(5.3, abs=1e-6)
    assert as_mesh(scene).vertices[:, 0].max() == pytest.approx(5.3, abs=1e-6)


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mesh(tmp_path / "missing.glb")
    txt = tmp_path / "mesh.xyz"
    txt.write_text("0 0 0\n")
    with pytest.raises(ValueError, match="unsupported mesh format"):
        load_mesh(txt)
    cloud = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(str(cloud))
    with pytest.raises(ValueError, match="no triangle"):
        load_mesh(cloud)
    import pygltflib

    empty = tmp_path / "empty.glb"
    gltf = pygltflib.GLTF2(scene=0, scenes=[pygltflib.Scene(nodes=[0])], nodes=[pygltflib.Node(name="camera_only")])
    gltf.save_binary(str(empty))
    with pytest.raises(ValueError, match="no triangle mesh|could not read"):
        load_mesh(empty)
    garbage = tmp_path / "garbage.glb"
    garbage.write_bytes(b"not a glb at all")
    with pytest.raises(ValueError):
        load_mesh(garbage)
    with pytest.raises(TypeError):
        save_mesh("mesh", tmp_path / "x.glb")
    with pytest.raises(ValueError, match="unsupported"):
        save_mesh(trimesh.creation.box(), tmp_path / "x.fbx")
