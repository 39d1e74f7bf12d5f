"""Animated GLB export/import: round trips, independent readers, Khronos validator, textures, errors."""

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from actionmesh_core.geometry.reference import prepare_reference_mesh
from actionmesh_core.io.animated_mesh import AnimatedMesh
from actionmesh_core.io.glb import export_animated_glb, export_static_glbs, frame_normals, read_animated_glb
from actionmesh_core.io.mesh_io import load_mesh
from gltf_validation import validate_glb

def wobbling_sphere(T=6, colors=False):
    s = trimesh.creation.icosphere(2)
    t = np.linspace(0, 1, T)[:, None, None]
    v = s.vertices[None] * (1 + 0.2 * np.sin(3 * s.vertices[None, :, :1] + 4 * t)) + t * np.array([0.3, 0.0, -0.1])
    rng = np.random.default_rng(0)
    vc = rng.integers(0, 256, (len(s.vertices), 4), dtype=np.uint8) if colors else None
    return AnimatedMesh(faces=s.faces, vertices=v.astype(np.float32), times=np.arange(T) / 8.0, vertex_colors=vc)


def textured_cube():
    """24-vertex box (UV seams split) with a small texture, outward winding."""
    ex = np.array([1.0, 0.6, 0.4])
    verts, uvs, faces = [], [], []
    for side, (axis, sign) in enumerate([(a, s) for a in range(3) for s in (1, -1)]):
        u_ax, v_ax = [a for a in range(3) if a != axis]
        base = len(verts)
        for cu, cv in [(-1, -1), (1, -1), (1, 1), (-1, 1)]:
            p = np.zeros(3)
            p[axis], p[u_ax], p[v_ax] = sign * ex[axis], cu * ex[u_ax], cv * ex[v_ax]
            verts.append(p)
            uvs.append([(side % 3 + (cu + 1) / 2) / 3, (side // 3 + (cv + 1) / 2) / 2])
        ccw = sign * (-1 if axis == 1 else 1) > 0
        quad = [[0, 1, 2], [0, 2, 3]] if ccw else [[0, 2, 1], [0, 3, 2]]
        faces += [[base + a, base + b, base + c] for a, b, c in quad]
    mesh = trimesh.Trimesh(np.asarray(verts), np.asarray(faces), process=False)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    mesh.visual = trimesh.visual.TextureVisuals(
        uv=np.asarray(uvs), material=trimesh.visual.material.PBRMaterial(baseColorTexture=image)
    )
    return mesh, image


def raw_frames(path):
    """Independent decoding with pygltflib only: base POSITION + each target's POSITION delta."""
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()

    def read(i):
        acc = gltf.accessors[i]
        bv = gltf.bufferViews[acc.bufferView]
        assert acc.componentType == pygltflib.FLOAT and acc.type == "VEC3"
        start = (bv.byteOffset or 0) + (acc.byteOffset or 0)
        return np.frombuffer(blob, np.float32, acc.count * 3, start).reshape(-1, 3)

    prim = gltf.meshes[0].primitives[0]
    base = read(prim.attributes.POSITION)
    return gltf, np.stack([base + read(t["POSITION"]) for t in prim.targets])


def test_round_trip_same_vertices_per_frame(tmp_path):
    anim = wobbling_sphere(T=6, colors=True)
    path = export_animated_glb(anim, tmp_path / "anim.glb")
    back = read_animated_glb(path)
    assert back.num_frames == 6
    np.testing.assert_array_equal(back.faces, anim.faces)
    assert np.abs(back.vertices - anim.vertices).max() < 1e-6
    np.testing.assert_allclose(back.times, anim.times, atol=1e-7)
    np.testing.assert_array_equal(back.vertex_colors, anim.vertex_colors)
    n = frame_normals(anim.faces, anim.vertices[0])
    assert np.abs(back.normals - n).max() < 1e-5
    # independent readers: raw pygltflib decoding and trimesh (base mesh = frame 0)
    gltf, frames = raw_frames(path)
    assert np.abs(frames - anim.vertices).max() < 1e-6
    assert len(gltf.meshes[0].primitives[0].targets) == 6
    for t in gltf.meshes[0].primitives[0].targets:
        acc = gltf.accessors[t["POSITION"]]
        assert acc.min is not None and acc.max is not None and len(acc.min) == 3
    smp = gltf.animations[0].samplers[0]
    assert smp.interpolation == "STEP"
    assert gltf.accessors[smp.output].count == 36
    scene = trimesh.load(str(path), process=False)
    geom = list(scene.geometry.values())[0]
    assert np.abs(np.asarray(geom.vertices) - anim.vertices[0]).max() < 1e-6


def test_fps_and_linear_interpolation_options(tmp_path):
    anim = wobbling_sphere(T=4)
    path = export_animated_glb(anim, tmp_path / "lin.glb", fps=12, interpolation="linear", include_normals=False)
    gltf = pygltflib.GLTF2().load(str(path))
    assert gltf.animations[0].samplers[0].interpolation == "LINEAR"
    assert gltf.meshes[0].primitives[0].attributes.NORMAL is None
    back = read_animated_glb(path)
    np.testing.assert_allclose(back.times, np.arange(4) / 12, atol=1e-7)
    assert np.abs(back.vertices - anim.vertices).max() < 1e-6


def test_textured_cube_survives_reference_prep_animation_and_export(tmp_path):
    mesh, image = textured_cube()
    ref = prepare_reference_mesh(mesh, num_surface_points=512, num_query_points=16, subset_points=128)
    T = 5
    angle = np.linspace(0, 0.6, T)
    rot = np.stack([[[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]] for a in angle])
    positions = np.einsum("tij,vj->tvi", rot, ref.vertices)  # rotate the merged (8) vertices
    anim = ref.to_animated_mesh(positions, times=np.arange(T) / 24)
    path = export_animated_glb(anim, tmp_path / "cube.glb")
    back = read_animated_glb(path)
    # UVs and texture of the ORIGINAL 24 vertices survive, per-frame positions too
    np.testing.assert_allclose(back.uv, mesh.visual.uv, atol=1e-6)
    assert np.array_equal(np.asarray(back.texture_image().convert("RGB")), np.asarray(image))
    expected = np.einsum("tij,vj->tvi", rot, ref.vertices[ref.to_original]) / ref.scale + ref.center
    assert np.abs(back.vertices - expected).max() < 1e-5
    np.testing.assert_allclose(back.vertices[0], mesh.vertices, atol=1e-5)
    # trimesh (an independent reader) sees a textured mesh with the same UVs and image
    geom = load_mesh(path)
    np.testing.assert_allclose(geom.visual.uv, mesh.visual.uv, atol=1e-6)
    tex = geom.visual.material.baseColorTexture
    assert np.array_equal(np.asarray(tex.convert("RGB")), np.asarray(image))


def test_per_frame_static_glbs(tmp_path):
    anim = wobbling_sphere(T=3, colors=True)
    export_animated_glb(anim, tmp_path / "a.glb", per_frame_dir=tmp_path / "frames")
    files = sorted((tmp_path / "frames").glob("*.glb"))
    assert [f.name for f in files] == ["a_000.glb", "a_001.glb", "a_002.glb"]
    for k, f in enumerate(files):
        m = load_mesh(f)
        np.testing.assert_allclose(m.vertices, anim.vertices[k], atol=1e-6)
    paths = export_static_glbs(anim, tmp_path / "other", prefix="f")
    assert len(paths) == 3 and all(p.is_file() for p in paths)


@pytest.mark.parametrize("case", ["colors_step", "textured_linear", "single_frame"])
def test_khronos_gltf_validator_reports_no_errors(tmp_path, case):
    if case == "colors_step":
        path = export_animated_glb(wobbling_sphere(T=5, colors=True), tmp_path / "a.glb")
    elif case == "textured_linear":
        mesh, _ = textured_cube()
        ref = prepare_reference_mesh(mesh, num_surface_points=256, num_query_points=8, subset_points=64)
        anim = ref.to_animated_mesh(np.stack([ref.vertices * (1 + 0.1 * k) for k in range(4)]))
        path = export_animated_glb(anim, tmp_path / "a.glb", interpolation="LINEAR", fps=30)
    else:
        path = export_animated_glb(wobbling_sphere(T=1), tmp_path / "a.glb")
    issues = validate_glb(path)
    print(case, {k: issues[k] for k in ("numErrors", "numWarnings", "numInfos", "numHints")})
    assert issues["numErrors"] == 0, issues["messages"]
    assert issues["numWarnings"] == 0, issues["messages"]


def test_bad_input_raises_clear_errors(tmp_path):
    anim = wobbling_sphere(T=3)
    with pytest.raises(TypeError, match="AnimatedMesh"):
        export_animated_glb(trimesh.creation.box(), tmp_path / "x.glb")
    with pytest.raises(ValueError, match=".glb"):
        export_animated_glb(anim, tmp_path / "x.gltf")
    with pytest.raises(ValueError, match="interpolation"):
        export_animated_glb(anim, tmp_path / "x.glb", interpolation="CUBIC")
    bad_times = AnimatedMesh(anim.faces, anim.vertices, times=np.array([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="strictly increasing"):
        export_animated_glb(bad_times, tmp_path / "x.glb")
    export_animated_glb(bad_times, tmp_path / "ok.glb", fps=10)  # fps regenerates valid times
    with pytest.raises(ValueError, match="no faces"):
        export_animated_glb(AnimatedMesh(np.zeros((0, 3)), anim.vertices), tmp_path / "x.glb")
    with pytest.raises(ValueError, match="NaN"):
        AnimatedMesh(anim.faces, np.full_like(anim.vertices, np.nan))
    with pytest.raises(FileNotFoundError):
        read_animated_glb(tmp_path / "missing.glb")
    # a GLB without any mesh
    empty = pygltflib.GLTF2(scene=0, scenes=[pygltflib.Scene(nodes=[0])], nodes=[pygltflib.Node(name="empty")])
    empty.save_binary(str(tmp_path / "empty.glb"))
    with pytest.raises(ValueError, match="no mesh"):
        read_animated_glb(tmp_path / "empty.glb")
    # morph-target count mismatch: the weights animation no longer matches the 3 targets
    good = export_animated_glb(anim, tmp_path / "good.glb")
    gltf = pygltflib.GLTF2().load(str(good))
    gltf.accessors[gltf.animations[0].samplers[0].output].count = 8
    gltf.save_binary(str(tmp_path / "mismatch.glb"))
    with pytest.raises(ValueError, match="morph-target count mismatch"):
        read_animated_glb(tmp_path / "mismatch.glb")
    gltf = pygltflib.GLTF2().load(str(good))
    gltf.meshes[0].weights = [0.0, 0.0]
    gltf.save_binary(str(tmp_path / "mismatch2.glb"))
    with pytest.raises(ValueError, match="morph-target count mismatch"):
        read_animated_glb(tmp_path / "mismatch2.glb")
    (tmp_path / "empty.glb").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.glb is empty \(0 bytes\)"):
        read_animated_glb(tmp_path / "empty.glb")
    with pytest.raises(ValueError, match=r"empty.glb is empty \(0 bytes\)"):
        load_mesh(tmp_path / "empty.glb")
    (tmp_path / "junk.glb").write_bytes(b"glTF junk")
    with pytest.raises(ValueError, match="not a readable"):
        read_animated_glb(tmp_path / "junk.glb")


def test_reads_static_and_transformed_files(tmp_path):
    # a static textured GLB written by trimesh (no targets) reads as one frame; node transforms apply
    mesh, image = textured_cube()
    scene = trimesh.Scene()
    scene.add_geometry(mesh, node_name="cube", transform=trimesh.transformations.translation_matrix([0, 2, 0]))
    path = tmp_path / "static.glb"
    scene.export(str(path))
    back = read_animated_glb(path)
    assert back.num_frames == 1
    np.testing.assert_allclose(back.vertices[0], mesh.vertices + [0, 2, 0], atol=1e-6)
    np.testing.assert_allclose(back.uv, mesh.visual.uv, atol=1e-6)
    assert np.array_equal(np.asarray(back.texture_image().convert("RGB")), np.asarray(image))


# --------------------------------------------------------------------------- files this project did not write


def _interleaved_glb(path):
    """A GLB laid out as other exporters do: POSITION and NORMAL interleaved in one strided view (byteStride 24),
    two morph targets interleaved in another, a third target as a sparse accessor (uint8 indices) on top of a
    non-zero base view, and a weights animation with 3 keys. Returns the expected (3, V, 3) frames."""
    rng = np.random.default_rng(5)
    base = trimesh.creation.icosphere(1)
    v = base.vertices.astype(np.float32)
    n = base.vertex_normals.astype(np.float32)
    V = len(v)
    d0, d1 = rng.normal(0, 0.1, (2, V, 3)).astype(np.float32)
    dense = rng.normal(0, 0.01, (V, 3)).astype(np.float32)  # the sparse target's base view
    idx = np.array([1, 7, 30], np.uint8)
    vals = rng.normal(0, 0.3, (3, 3)).astype(np.float32)
    d2 = dense.copy()
    d2[idx] = vals
    weights = np.array([[0, 0, 0], [1, 0, 0.5], [0, 1, 1]], np.float32)
    blobs = [np.concatenate([v, n], 1).tobytes(), np.concatenate([d0, d1], 1).tobytes(), dense.tobytes(),
             idx.tobytes() + b"\0", vals.tobytes(), base.faces.astype(np.uint16).tobytes(),
             np.array([0, 0.5, 1.0], np.float32).tobytes(), weights.tobytes()]
    offsets = np.cumsum([0] + [len(b) for b in blobs])

    def bounds(a):
        return {"min": a.min(0).tolist(), "max": a.max(0).tolist()}

    F, VEC3, SCALAR = pygltflib.FLOAT, "VEC3", "SCALAR"
    views = [pygltflib.BufferView(buffer=0, byteOffset=int(o), byteLength=len(b)) for o, b in zip(offsets, blobs)]
    views[0].byteStride = views[1].byteStride = 24
    acc = [pygltflib.Accessor(bufferView=0, byteOffset=0, componentType=F, count=V, type=VEC3,
                              min=v.min(0).tolist(), max=v.max(0).tolist()),
           pygltflib.Accessor(bufferView=0, byteOffset=12, componentType=F, count=V, type=VEC3),
           pygltflib.Accessor(bufferView=1, byteOffset=0, componentType=F, count=V, type=VEC3, **bounds(d0)),
           pygltflib.Accessor(bufferView=1, byteOffset=12, componentType=F, count=V, type=VEC3, **bounds(d1)),
           pygltflib.Accessor(bufferView=2, componentType=F, count=V, type=VEC3, **bounds(d2), sparse=pygltflib.Sparse(
               count=3, indices=pygltflib.AccessorSparseIndices(bufferView=3, componentType=pygltflib.UNSIGNED_BYTE),
               values=pygltflib.AccessorSparseValues(bufferView=4))),
           pygltflib.Accessor(bufferView=5, componentType=pygltflib.UNSIGNED_SHORT, count=base.faces.size, type=SCALAR),
           pygltflib.Accessor(bufferView=6, componentType=F, count=3, type=SCALAR, min=[0.0], max=[1.0]),
           pygltflib.Accessor(bufferView=7, componentType=F, count=9, type=SCALAR)]
    prim = pygltflib.Primitive(attributes=pygltflib.Attributes(POSITION=0, NORMAL=1), indices=5,
                               targets=[{"POSITION": 2}, {"POSITION": 3}, {"POSITION": 4}])
    gltf = pygltflib.GLTF2(scene=0, scenes=[pygltflib.Scene(nodes=[0])], nodes=[pygltflib.Node(mesh=0)],
                           meshes=[pygltflib.Mesh(primitives=[prim], weights=[0, 0, 0])], accessors=acc,
                           bufferViews=views, buffers=[pygltflib.Buffer(byteLength=int(offsets[-1]))],
                           animations=[pygltflib.Animation(
                               samplers=[pygltflib.AnimationSampler(input=6, output=7, interpolation="LINEAR")],
                               channels=[pygltflib.AnimationChannel(sampler=0, target=pygltflib.AnimationChannelTarget(
                                   node=0, path="weights"))])])
    gltf.set_binary_blob(b"".join(blobs))
    gltf.save_binary(str(path))
    return v[None] + np.einsum("tj,jvc->tvc", weights, np.stack([d0, d1, d2])), n


def test_reads_interleaved_strided_views_and_sparse_targets(tmp_path):
    want, normals = _interleaved_glb(tmp_path / "foreign.glb")
    assert validate_glb(tmp_path / "foreign.glb")["numErrors"] == 0  # a valid file, only laid out differently
    back = read_animated_glb(tmp_path / "foreign.glb")
    np.testing.assert_allclose(back.vertices, want, atol=1e-6)
    np.testing.assert_allclose(back.normals, normals / np.linalg.norm(normals, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(back.times, [0.0, 0.5, 1.0])


@pytest.mark.bpy
def test_reads_a_shape_key_animation_exported_by_blender(tmp_path):
    """Blender's glTF exporter writes morph targets as sparse accessors without a buffer view: every frame read
    back equals Blender's own evaluated mesh at that frame (in glTF's Y-up axes)."""

    from blender_client import require_blender
    from actionmesh_core.export.blender import run_blender

    require_blender()
    script = r'''
import bmesh
mesh = bpy.data.meshes.new("blob")
bm = bmesh.new()
bmesh.ops.create_icosphere(bm, subdivisions=2, radius=1.0)
bm.to_mesh(mesh)
bm.free()
obj = bpy.data.objects.new("blob", mesh)
bpy.context.scene.collection.objects.link(obj)
obj.shape_key_add(name="Basis")
keys = []
for j in range(3):
    key = obj.shape_key_add(name=f"k{j}")
    for i, v in enumerate(mesh.vertices):
        if i % 3 == j and v.co.z > 0:  # each key moves a third of the upper half: sparse targets
            key.data[i].co = v.co * (1.2 + 0.1 * j)
    keys.append(key)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 0, 4
for f in range(5):
    for j, key in enumerate(keys):
        key.value = 1.0 if f == j + 1 else 0.0
        key.keyframe_insert("value", frame=f)
positions = []
for f in range(5):
    scene.frame_set(f)
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    positions.append([list(v.co) for v in ev.vertices])
bpy.ops.export_scene.gltf(filepath=ARGS["out"], export_format="GLB", export_animations=True, export_morph=True,
                          export_try_sparse_sk=True, export_morph_normal=False, export_force_sampling=True)
report({"positions": positions})
'''
    path = tmp_path / "blender.glb"
    blender = np.asarray(run_blender(script, {"out": str(path)}, timeout=300)["positions"])
    gltf = pygltflib.GLTF2().load(str(path))
    targets = gltf.meshes[0].primitives[0].targets
    assert targets and all(gltf.accessors[t["POSITION"]].sparse is not None for t in targets)  # what it tests
    y_up = np.stack([blender[..., 0], blender[..., 2], -blender[..., 1]], -1)
    back = read_animated_glb(path)
    assert back.num_frames == 5 and back.metadata["num_morph_targets"] == 3
    from scipy.spatial import cKDTree

    for k in range(5):  # Blender splits vertices at seams: compare the point sets both ways
        assert cKDTree(y_up[k]).query(back.vertices[k])[0].max() < 1e-5, k
        assert cKDTree(back.vertices[k]).query(y_up[k])[0].max() < 1e-5, k
    assert np.abs(back.vertices[2] - back.vertices[0]).max() > 0.1  # the keys really move it
