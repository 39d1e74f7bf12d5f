"""Artist exports read back by independent readers: pxr (USD), pygltflib + Khronos validator (skinned GLB),
trimesh (OBJ/PLY), numpy (npy); the dispatcher, the CLI option and the export node."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh

from actionmesh_core.export import (FORMATS, MissingDependency, check_format_available, export_animation,
                                    resolve_format)
from actionmesh_core.export.point_cache import frame_file_names
from export_fixtures import bending_tube
from gltf_validation import validate_glb

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(module, install):
    if importlib.util.find_spec(module) is None:
        if IN_CI:
            pytest.fail(f"CI=true but {module} is not installed ({install})")
        pytest.skip(f"{module} is not installed: {install}")


def diagonal(points):
    return float(np.linalg.norm(np.ptp(points, axis=0)))


def leftovers(folder: Path):
    """Temporary files/folders an interrupted or finished atomic write might have left."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


# --------------------------------------------------------------------------- USD


@pytest.mark.parametrize("suffix", [".usda", ".usdc", ".usdz"])
def test_usd_read_back_with_pxr(tmp_path, suffix):
    need("pxr", "pip install usd-core")
    from pxr import Usd, UsdGeom, UsdShade

    anim = bending_tube(frames=6, fps=12.0)
    result = export_animation(anim, tmp_path / f"walk{suffix}", meters_per_unit=0.01)
    assert result.format == suffix[1:] and result.path == tmp_path / f"walk{suffix}"
    assert leftovers(tmp_path) == []
    stage = Usd.Stage.Open(str(result.path))
    assert stage.GetTimeCodesPerSecond() == 12.0 and stage.GetFramesPerSecond() == 12.0
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert UsdGeom.GetStageMetersPerUnit(stage) == pytest.approx(0.01)
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (0.0, 5.0)
    meshes = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == 1
    mesh = UsdGeom.Mesh(meshes[0])
    points = mesh.GetPointsAttr()
    assert points.GetTimeSamples() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for k in range(6):
        got = np.asarray(points.Get(float(k)), np.float64)
        assert np.abs(got - anim.vertices[k]).max() < 1e-6, k
    assert len(mesh.GetNormalsAttr().GetTimeSamples()) == 6
    indices = np.asarray(mesh.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3)
    np.testing.assert_array_equal(indices, anim.faces)
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
    assert st.GetInterpolation() == UsdGeom.Tokens.vertex
    np.testing.assert_allclose(np.asarray(st.Get()), anim.uv, atol=1e-7)
    material, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    shaders = {UsdShade.Shader(p).GetIdAttr().Get(): UsdShade.Shader(p) for p in material.GetPrim().GetChildren()}
    assert "UsdPreviewSurface" in shaders and "UsdUVTexture" in shaders
    asset = shaders["UsdUVTexture"].GetInput("file").Get()
    resolved = asset.resolvedPath
    assert resolved, f"texture {asset.path} does not resolve"
    if suffix == ".usdz":  # packaged inside the archive, nothing beside it
        assert result.files == [result.path] and ".usdz[" in resolved
    else:
        texture = tmp_path / "walk_texture.png"
        assert result.files == [result.path, texture] and Path(resolved) == texture
        from PIL import Image

        assert np.array_equal(np.asarray(Image.open(texture)), np.asarray(anim.texture))


def test_usd_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    need("pxr", "pip install usd-core")
    import actionmesh_core.export.usd as usd

    anim = bending_tube(frames=3)
    good = export_animation(anim, tmp_path / "a.usdc").path
    before = good.read_bytes()

    def broken(*args, **kwargs):
        Path(args[2]).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(usd, "_build_stage", broken)
    with pytest.raises(OSError, match="disk full"):
        export_animation(bending_tube(frames=4), tmp_path / "a.usdc")
    assert good.read_bytes() == before  # the previous file is intact
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- skinned glTF


def _read(gltf, blob, index):
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}[acc.componentType]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    return np.frombuffer(blob, dtype, acc.count * width, start).reshape(acc.count, width)


def skin_from_file(path):
    """Independent LBS of a skinned GLB with pygltflib only: positions (T, V, 3) at the key times, and the rest."""
    from scipy.spatial.transform import Rotation

    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    prim = gltf.meshes[0].primitives[0]
    rest = _read(gltf, blob, prim.attributes.POSITION).astype(np.float64)
    joints = np.concatenate([_read(gltf, blob, getattr(prim.attributes, f"JOINTS_{s}")) for s in range(2)
                             if getattr(prim.attributes, f"JOINTS_{s}", None) is not None], 1).astype(np.int64)
    weights = np.concatenate([_read(gltf, blob, getattr(prim.attributes, f"WEIGHTS_{s}")) for s in range(2)
                              if getattr(prim.attributes, f"WEIGHTS_{s}", None) is not None], 1).astype(np.float64)
    skin = gltf.skins[0]
    ibm = _read(gltf, blob, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
    anim = gltf.animations[0]
    keys = {}
    times = None
    for ch in anim.channels:
        smp = anim.samplers[ch.sampler]
        times = _read(gltf, blob, smp.input)[:, 0]
        keys[(ch.target.node, ch.target.path)] = _read(gltf, blob, smp.output).astype(np.float64)

    def globals_at(k):
        mats = []
        for node_index in skin.joints:
            node = gltf.nodes[node_index]
            t = keys.get((node_index, "translation"))
            r = keys.get((node_index, "rotation"))
            m = np.eye(4)
            m[:3, 3] = t[k] if (t is not None and k is not None) else node.translation
            if r is not None and k is not None:
                m[:3, :3] = Rotation.from_quat(r[k]).as_matrix()
            mats.append(m)
        return np.stack(mats)  # joints are children of an untransformed root

    def skinned(k):
        skin_m = globals_at(k) @ ibm  # (B, 4, 4)
        per = np.einsum("vkij,vj->vki", skin_m[joints], np.c_[rest, np.ones(len(rest))])[..., :3]
        return np.einsum("vk,vki->vi", weights, per)

    return gltf, rest, weights, times, np.stack([skinned(k) for k in range(len(times))]), skinned(None)


def test_skinned_glb_fits_two_part_motion_and_validates(tmp_path):
    need("py_dem_bones", "pip install py-dem-bones")
    anim = bending_tube(frames=8, fps=12.0, max_angle_deg=70.0)
    diag = diagonal(anim.vertices[0])
    result = export_animation(anim, tmp_path / "rig.glb", "glb-skinned", bones=4, influences=4)
    info = result.info
    assert info["bones"] >= 2 and info["rms_error"] < 0.01 and info["max_error"] < 0.01
    report = validate_glb(result.path)
    assert report["numErrors"] == 0, report["messages"][:5]
    gltf, rest, weights, times, frames, unanimated = skin_from_file(result.path)
    assert len(gltf.skins[0].joints) == info["bones"]
    np.testing.assert_allclose(times, np.arange(8) / 12.0, atol=1e-6)
    # rest pose = the reference mesh, and the skin leaves it untouched
    assert np.abs(rest - anim.vertices[0]).max() < 1e-6
    assert np.abs(unanimated - anim.vertices[0]).max() < 1e-5
    # the weights sum to exactly 1 in float32 (SkinFit's promise), whatever order a reader adds them in
    w32 = weights.astype(np.float32)
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        total = np.zeros(len(w32), np.float32)
        for j in order:
            total = total + w32[:, j]
        assert np.all(total == np.float32(1.0)), (order, np.abs(total - 1).max())
    # every frame, as any glTF viewer computes it, within 1 % of the diagonal
    err = np.linalg.norm(frames - anim.vertices, axis=-1)
    assert err.max() / diag < 0.01
    assert np.sqrt(np.mean(err ** 2)) / diag == pytest.approx(info["rms_error"], rel=0.05, abs=1e-6)
    # UVs and texture kept
    assert gltf.meshes[0].primitives[0].attributes.TEXCOORD_0 is not None and len(gltf.images) == 1
    # the motion is real: a single rigid bone cannot fit it
    one = export_animation(anim, tmp_path / "one.glb", "glb-skinned", bones=1)
    assert one.info["bones"] == 1 and one.info["max_error"] > 0.05


def test_skinned_bone_and_influence_counts_are_configurable(tmp_path):
    need("py_dem_bones", "pip install py-dem-bones")
    anim = bending_tube(frames=5)
    from actionmesh_core.export.glb_skinned import fit_skinning

    for k in (2, 3, 5, 7):  # the fit itself: exact float32 sums for any influence count, summed in any order
        w = fit_skinning(anim, bones=8, influences=k).weights
        assert w.dtype == np.float32 and np.all(w.sum(1, dtype=np.float32) == 1.0)
        assert np.all(np.cumsum(w[:, ::-1], axis=1, dtype=np.float32)[:, -1] == 1.0)
    few = export_animation(anim, tmp_path / "a.glb", "glb-skinned", bones=3, influences=1)
    gltf, _, weights, *_ = skin_from_file(few.path)
    assert len(gltf.skins[0].joints) == few.info["bones"] <= 3
    assert weights.shape[1] == 4 and np.all(weights[:, 0] == 1.0)  # one influence: rigid binding
    many = export_animation(anim, tmp_path / "b.glb", "glb-skinned", bones=8, influences=6)
    gltf, _, weights, *_ = skin_from_file(many.path)
    assert weights.shape[1] == 8 and gltf.meshes[0].primitives[0].attributes.JOINTS_1 is not None
    assert np.count_nonzero(weights, axis=1).max() <= 6
    assert validate_glb(many.path)["numErrors"] == 0
    with pytest.raises(ValueError, match="influences"):
        export_animation(anim, tmp_path / "c.glb", "glb-skinned", influences=9)


def test_usd_layer_metadata_is_in_the_file_itself(tmp_path):
    """timeCodesPerSecond, framesPerSecond, startTimeCode and endTimeCode are authored on the root layer (a reader
    that does not compose a stage, or another app's defaults, sees them), for frames that do not start at 0 too."""
    need("pxr", "pip install usd-core")
    import re

    from pxr import Sdf

    anim = bending_tube(frames=7, fps=12.0)
    anim.times = anim.times + np.float32(2.5)  # a clip cut from a longer one: the first frame at 2.5 s
    text_layer = export_animation(anim, tmp_path / "a.usda").path
    header = text_layer.read_text().split("def ", 1)[0]
    for key, value in (("timeCodesPerSecond", 12), ("framesPerSecond", 12), ("startTimeCode", 0),
                       ("endTimeCode", 6)):
        assert re.search(rf"\b{key} = {value}\b", header), (key, header)
    for suffix in (".usdc", ".usdz"):
        layer = Sdf.Layer.FindOrOpen(str(export_animation(anim, tmp_path / f"b{suffix}").path))
        assert layer.HasTimeCodesPerSecond() and layer.HasFramesPerSecond()
        assert layer.HasStartTimeCode() and layer.HasEndTimeCode()
        assert (layer.timeCodesPerSecond, layer.framesPerSecond) == (12.0, 12.0)
        assert (layer.startTimeCode, layer.endTimeCode) == (0.0, 6.0)


@pytest.mark.parametrize("fmt", ["glb", "glb-skinned", "usda"])
def test_frame_times_not_starting_at_0_play_from_0(tmp_path, fmt):
    """Every format plays the first frame at time 0 and keeps the spacing of the frame times (a clip whose times
    start at 2.5 s, or were read back from another file)."""
    if fmt == "glb-skinned":
        need("py_dem_bones", "pip install py-dem-bones")
    anim = bending_tube(frames=6, fps=12.0)
    anim.times = anim.times + np.float32(2.5)
    path = export_animation(anim, tmp_path / ("a.usda" if fmt == "usda" else "a.glb"), fmt).path
    want = np.arange(6) / 12.0
    if fmt == "usda":
        from pxr import Usd, UsdGeom

        stage = Usd.Stage.Open(str(path))
        mesh = UsdGeom.Mesh(next(p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)))
        codes = np.asarray(mesh.GetPointsAttr().GetTimeSamples())
        np.testing.assert_allclose(codes / stage.GetTimeCodesPerSecond(), want, atol=1e-9)
        np.testing.assert_allclose(np.asarray(mesh.GetPointsAttr().Get(codes[3])), anim.vertices[3], atol=1e-6)
        return
    gltf = pygltflib.GLTF2().load(str(path))
    sampler = gltf.animations[0].samplers[0]
    accessor = gltf.accessors[sampler.input]
    assert accessor.min == [0.0] and accessor.max[0] == pytest.approx(5 / 12.0)
    if fmt == "glb":
        from actionmesh_core.io.glb import read_animated_glb

        back = read_animated_glb(path)
        np.testing.assert_allclose(back.times, want, atol=1e-6)
        np.testing.assert_allclose(back.vertices, anim.vertices, atol=1e-5)
    assert validate_glb(path)["numErrors"] == 0


# --------------------------------------------------------------------------- point caches


@pytest.mark.parametrize("fmt", ["obj-sequence", "ply-sequence"])
def test_mesh_sequences_round_trip_with_one_shared_texture(tmp_path, fmt):
    anim = bending_tube(frames=5)
    suffix = FORMATS[fmt].suffix
    first = export_animation(anim, tmp_path / f"walk{suffix}", fmt)
    second = export_animation(bending_tube(frames=2, max_angle_deg=10.0), tmp_path / f"run{suffix}", fmt)
    names = frame_file_names(tmp_path / f"walk{suffix}", 5)
    assert first.files[:5] == names and all(p.is_file() for p in names)
    textures = sorted(p.name for p in tmp_path.glob("*.png"))
    assert textures == ["run_texture.png", "walk_texture.png"]  # one per export, names never shared
    assert leftovers(tmp_path) == []
    for k, name in enumerate(names):
        mesh = trimesh.load(str(name), process=False, force="mesh")
        assert np.abs(np.asarray(mesh.vertices) - anim.vertices[k]).max() < 1e-6
        np.testing.assert_array_equal(mesh.faces, anim.faces)
        np.testing.assert_allclose(mesh.visual.uv, anim.uv, atol=1e-6)
        if fmt == "obj-sequence":  # every frame uses the one material library / texture
            text = name.read_text()
            assert text.startswith("mtllib walk.mtl\nusemtl walk\n")
            assert np.asarray(mesh.visual.material.image).shape[:2] == (32, 48)
        else:
            assert b"comment TextureFile walk_texture.png" in name.read_bytes()[:400]
    if fmt == "obj-sequence":
        assert "map_Kd walk_texture.png" in (tmp_path / "walk.mtl").read_text()
    assert [p.name for p in second.files[2:]] == (["run.mtl", "run_texture.png"] if fmt == "obj-sequence"
                                                 else ["run_texture.png"])  # its own set
    assert (tmp_path / f"run_0001{suffix}").is_file() and not (tmp_path / f"run_0002{suffix}").exists()


def test_npy_has_the_release_layout(tmp_path):
    anim = bending_tube(frames=4)
    result = export_animation(anim, tmp_path / "camel.npy")
    assert [p.name for p in result.files] == ["camel_vertices.npy", "camel_faces.npy"]
    vertices, faces = np.load(result.files[0]), np.load(result.files[1])
    assert vertices.dtype == np.float32 and vertices.shape == (4, anim.num_vertices, 3)
    assert faces.dtype == np.int32 and faces.shape == (len(anim.faces), 3)
    np.testing.assert_array_equal(faces, anim.faces)
    # the release's save_deformation axes: (x, y, z) -> (-z, x, y)
    v = anim.vertices
    np.testing.assert_array_equal(vertices, np.stack([-v[..., 2], v[..., 0], v[..., 1]], -1))
    plain = export_animation(anim, tmp_path / "plain.npy", release_axes=False)
    np.testing.assert_array_equal(np.load(plain.files[0]), anim.vertices)


# --------------------------------------------------------------------------- dispatcher, CLI, node


def test_format_from_suffix_and_suffix_from_format(tmp_path):
    """The registry's suffix rules: the suffix decides without a format (any case); with one it must match
    (never renamed) or be absent (added)."""
    assert resolve_format(tmp_path / "a.usdz") == ("usdz", tmp_path / "a.usdz")
    assert resolve_format(tmp_path / "a.usd") == ("usdc", tmp_path / "a.usd")
    assert resolve_format(tmp_path / "a.GLB") == ("glb", tmp_path / "a.GLB")
    assert resolve_format(tmp_path / "a.Usdz", "usdz") == ("usdz", tmp_path / "a.Usdz")
    assert resolve_format(tmp_path / "a.glb", "glb-skinned") == ("glb-skinned", tmp_path / "a.glb")
    assert resolve_format(tmp_path / "a", "fbx-skinned") == ("fbx-skinned", tmp_path / "a.fbx")
    assert resolve_format(tmp_path / "a.usd", "usdc") == ("usdc", tmp_path / "a.usd")
    for path, fmt in (("x.usdz", "glb"), ("a.glb", "fbx-skinned"), ("a.obj", "ply-sequence"), ("a.usda", "usdc")):
        with pytest.raises(ValueError, match=f"ends in .{path.split('.')[1]}.*but format {fmt} writes"):
            resolve_format(tmp_path / path, fmt)
    with pytest.raises(ValueError, match="cannot tell the export format"):
        resolve_format(tmp_path / "a.xyz")
    with pytest.raises(ValueError, match="unknown export format"):
        resolve_format(tmp_path / "a.glb", "gltf-embedded")


def _format_input(pack) -> dict:
    """The export node's ``format`` input as ComfyUI's V3 schema declares it (options, tooltip)."""
    schema = pack.NODES["ActionMeshExportGLB"].define_schema()
    return next(i for i in schema.inputs if i.id == "format").as_dict()


def test_one_registry_feeds_the_cli_the_batch_and_the_node(pack):
    """Every place that lists formats reads the one table: adding an entry adds it everywhere."""
    from actionmesh_core.batch.formats import supported_formats
    from actionmesh_core.cli import build_parser
    from actionmesh_core.export.formats import ExportFormat, format_for_suffix

    video = build_parser()._subparsers._group_actions[0].choices["video-to-4d"]
    fmt_action = next(a for a in video._actions if a.dest == "format")
    assert list(fmt_action.choices) == list(FORMATS) == supported_formats()
    assert all(f.description in fmt_action.help for f in FORMATS.values())
    node = _format_input(pack)
    assert node["options"] == list(FORMATS) and all(f.description in node["tooltip"] for f in FORMATS.values()
                                                    if f.name != "glb")
    extra = ExportFormat("ply-points", (".pts",), "a test format", "point_cache:write_ply")
    FORMATS[extra.name] = extra
    try:
        assert format_for_suffix(".PTS") == "ply-points" and "ply-points" in supported_formats()
        assert extra.name in _format_input(pack)["options"]
        video = build_parser()._subparsers._group_actions[0].choices["video-to-4d"]
        assert "ply-points" in next(a for a in video._actions if a.dest == "format").choices
    finally:
        del FORMATS[extra.name]


def test_missing_optional_dependency_is_one_line_with_the_install_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("pxr", "bpy") else real(name, *a))
    monkeypatch.setenv("ACTIONMESH_BPY_DIR", str(tmp_path / "no-bpy"))
    with pytest.raises(MissingDependency) as exc:
        export_animation(bending_tube(frames=2), tmp_path / "a.usdz")
    assert "pip install usd-core" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(MissingDependency, match="pip install --target ~/.cache/actionmesh/bpy bpy"):
        check_format_available("abc")
    assert list(tmp_path.iterdir()) == []  # nothing written before the check


def test_cli_has_format_option_checked_before_any_model(tmp_path, capsys):
    from actionmesh_core.cli import build_parser, main
    from actionmesh_core.validation import validate_export

    args = build_parser().parse_args(["video-to-4d", "frames", "--weights", "w", "--out", str(tmp_path / "a"),
                                      "--format", "npy", "--bones", "16"])
    assert validate_export(args.out, args.format) == ("npy", tmp_path / "a.npy") and args.bones == 16
    code = main(["video-to-4d", str(tmp_path), "--weights", str(tmp_path / "none"), "--out", str(tmp_path / "a.xyz")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot tell the export format") and err.count("\n") == 1


def test_export_node_writes_the_chosen_format_beside_the_glb(pack, host_dirs):
    node_cls = pack.NODES["ActionMeshExportGLB"]
    assert pack.DISPLAY_NAMES["ActionMeshExportGLB"] == "ActionMesh Export Animation"
    assert list(node_cls.RETURN_TYPES) == ["STRING", "FILE_3D_GLB", "STRING"]
    assert set(node_cls.INPUT_TYPES()["required"]["format"][1]["options"]) == set(FORMATS)
    anim = bending_tube(frames=3)
    result = node_cls.execute(anim, "runs/walk", "STEP", False, "npy", 8, 4)
    out = host_dirs["output"]
    glb_rel, file3d, files = result.result
    assert glb_rel == "runs/walk_00001_.glb" and (out / glb_rel).is_file()
    assert result.ui["3d"] == [{"filename": "walk_00001_.glb", "subfolder": "runs", "type": "output"}]
    assert file3d.format == "glb" and Path(file3d.get_source()) == out / glb_rel
    assert files.split("\n") == [glb_rel, "runs/walk_00001_vertices.npy", "runs/walk_00001_faces.npy"]
    assert np.load(out / "runs/walk_00001_vertices.npy").shape == (3, anim.num_vertices, 3)


def test_an_export_that_clearly_cannot_fit_writes_nothing(tmp_path, monkeypatch):
    """The free space is checked against the format's size estimate before the writer runs: a full disk is one
    OSError naming the output, and neither a file nor a staging folder is left."""
    import collections
    import errno
    import shutil

    from actionmesh_core.export.formats import estimate_bytes

    anim = bending_tube(frames=6)
    need = estimate_bytes("obj-sequence", anim.num_frames, anim.num_vertices, len(anim.faces))
    assert need > 6 * anim.num_vertices * 12  # at least the positions of every frame
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 0, need - 1))
    with pytest.raises(OSError) as info:
        export_animation(anim, tmp_path / "out" / "a.obj")
    assert info.value.errno == errno.ENOSPC and "obj-sequence output" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 0, 10 * need))
    assert len(export_animation(anim, tmp_path / "out" / "a.obj").files) >= 6


def test_skin_options_are_checked_against_the_mesh_before_fitting(tmp_path):
    anim = bending_tube(frames=3)
    for kwargs, match in (({"bones": 0}, r"bones must be an integer in \[1, "),
                          ({"bones": anim.num_vertices + 1}, f"the mesh has {anim.num_vertices} vertices"),
                          ({"influences": 9}, r"influences must be an integer in \[1, 8\]")):
        with pytest.raises(ValueError, match=match):
            export_animation(anim, tmp_path / "r.glb", "glb-skinned", **kwargs)
    assert list(tmp_path.iterdir()) == []
