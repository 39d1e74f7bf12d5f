"""The pack imports like a ComfyUI custom node (without ComfyUI), declares complete nodes, and its
host adapter and node bodies behave (library modules written elsewhere are replaced by fakes)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import data_dirs
from actionmesh_core.io.animated_mesh import AnimatedMesh
from conftest import combo_options

ROOT = data_dirs.REPO_ROOT

EXPECTED_NODES = {
    "ActionMeshLoadDenoiser", "ActionMeshLoadAutoencoder", "ActionMeshLoadTripoSGVAE", "ActionMeshLoadTripoSGDiT",
    "ActionMeshLoadDINOv2", "ActionMeshLoadFrames", "ActionMeshPrepareFrames", "ActionMeshEncodeFrames", "ActionMeshImageTo3DAnchor",
    "ActionMeshEncodeReferenceMesh", "ActionMeshTemporalDenoise", "ActionMeshSDFMeshing",
    "ActionMeshDecodeDeformation", "ActionMeshExportGLB", "ActionMeshAnimationToMesh", "ActionMeshRenderPreview",
    "ActionMeshAttentionChainAnimate",
}
CUSTOM_TYPES = {"ACTIONMESH_DENOISER", "ACTIONMESH_AUTOENCODER", "TRIPOSG_VAE", "TRIPOSG_DIT", "DINOV2",
                "ACTIONMESH_FRAMES", "ACTIONMESH_CONTEXT", "ACTIONMESH_LATENT", "ACTIONMESH_LATENTS",
                "ACTIONMESH_REFERENCE", "ACTIONMESH_ANIMATION"}
# comfy_api/latest/_io.py of ComfyUI 0.27 (test_real_host checks this list against the source when it is there)
FILE_3D_TYPES = ("FILE_3D", "FILE_3D_GLB", "FILE_3D_GLTF", "FILE_3D_FBX", "FILE_3D_OBJ", "FILE_3D_STL",
                 "FILE_3D_USDZ", "FILE_3D_PLY", "FILE_3D_SPLAT", "FILE_3D_SPZ", "FILE_3D_KSPLAT",
                 "FILE_3D_SPLAT_ANY", "FILE_3D_POINT_CLOUD_ANY")
CORE_TYPES = {"IMAGE", "MASK", "MESH", "FILE_3D", "FILE_3D_GLB", "INT", "FLOAT", "STRING", "BOOLEAN"}


def _run(*parts: str) -> str:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


LOAD = f"""
import importlib.util, sys
root = {str(ROOT)!r}
spec = importlib.util.spec_from_file_location("ActionMesh-pack", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec); sys.modules["ActionMesh-pack"] = pack; spec.loader.exec_module(pack)
"""


def test_pack_imports_like_comfyui_without_touching_the_nodes_module():
    out = _run("""
        import sys, types
        comfy_nodes = types.ModuleType("nodes"); comfy_nodes.MARK = 1; sys.modules["nodes"] = comfy_nodes
        """, LOAD, """
        assert sys.modules["nodes"] is comfy_nodes and not hasattr(comfy_nodes, "NODE_CLASS_MAPPINGS")
        print(len(pack.NODES), sys.path.count(root))
        spec.loader.exec_module(pack)  # a second load does not add the folder again
        print(sys.path.count(root), sorted(m for m in sys.modules if m.split(".")[0] in ("comfy", "folder_paths")))
    """)
    assert out.splitlines() == [f"{len(EXPECTED_NODES)} 1", "1 []"]


def test_core_library_never_imports_comfyui():
    for path in (ROOT / "actionmesh_core").rglob("*.py"):
        text = path.read_text()
        for banned in ("import comfy", "from comfy", "import folder_paths", "from folder_paths", "from nodes",
                       "import nodes"):
            assert banned not in text, f"{path.relative_to(ROOT)} uses ComfyUI ({banned})"
    out = _run(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        import actionmesh_core.frames, actionmesh_core.render
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("comfy", "folder_paths", "nodes")))
    """)
    assert out == "[]"


# inputs an expert sets: hidden by default (V3 ``advanced``), on every node that has them
EXPERT_INPUTS = {"window", "slide", "octree_depth", "refine_depth", "noise_correlation", "shift", "batch_size",
                 "num_tokens"}


def test_node_declarations_are_complete(pack):
    mapping = pack.NODES
    assert set(mapping) == EXPECTED_NODES
    assert set(pack.DISPLAY_NAMES) == EXPECTED_NODES
    for name, cls in mapping.items():
        schema = cls.GET_SCHEMA()
        assert schema.node_id == name and schema.display_name == pack.DISPLAY_NAMES[name], name
        assert schema.search_aliases, f"{name} has no search aliases"
        assert cls.CATEGORY.split("/")[0] == "ActionMesh", name
        assert cls.FUNCTION == "EXECUTE_NORMALIZED" and callable(getattr(cls, cls.FUNCTION)), name
        assert list(cls.RETURN_TYPES), name
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS), name
        assert all(tip and tip.strip() for tip in cls.OUTPUT_TOOLTIPS), name
        assert set(cls.RETURN_TYPES) <= CUSTOM_TYPES | CORE_TYPES, name
        assert cls.DESCRIPTION and pack.DISPLAY_NAMES[name], name
        declared = cls.INPUT_TYPES()
        assert set(declared) <= {"required", "optional", "hidden"}, name
        for section in ("required", "optional"):
            for input_name, spec in declared.get(section, {}).items():
                where = f"{name}.{input_name}"
                type_, opts = spec[0], spec[1]
                assert opts.get("tooltip", "").strip(), f"{where} has no tooltip"
                assert opts.get("advanced", False) == (input_name in EXPERT_INPUTS), f"{where}: advanced flag"
                if type_ == "COMBO":
                    assert opts.get("default", opts["options"][0] if opts["options"] else None) in (
                        opts["options"] or [None]), where
                elif type_ in ("INT", "FLOAT"):
                    assert opts["min"] <= opts["default"] <= opts["max"], where
                else:  # a comma-joined union of socket types accepts each of them
                    unknown = set(type_.split(",")) - (CUSTOM_TYPES | CORE_TYPES | set(FILE_3D_TYPES))
                    assert not unknown, f"{where}: unknown type {unknown}"
    assert mapping["ActionMeshExportGLB"].OUTPUT_NODE is True


def test_the_entry_point_lists_every_node(pack):
    """ComfyUI registers V3 nodes through ``comfy_entrypoint`` (a ComfyExtension), and only when the package has no
    ``NODE_CLASS_MAPPINGS`` (with one it takes the legacy path)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    def run(coroutine):  # in a thread of its own: the real-host tests' browser may hold this thread's event loop
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    extension = run(pack.comfy_entrypoint())
    listed = run(extension.get_node_list())
    assert {cls.GET_SCHEMA().node_id for cls in listed} == EXPECTED_NODES == set(pack.NODES)


# --------------------------------------------------------------------------- host adapter


def test_sanitize_prefix(host):
    assert host.sanitize_prefix("actionmesh/camel run") == ("actionmesh", "camel run")
    assert host.sanitize_prefix("a//b/./c") == ("a/b", "c")
    assert host.sanitize_prefix("we<ird>|na:me*?") == ("", "we_ird_na_me_")
    assert host.sanitize_prefix(".hidden/.x") == ("hidden", "x")
    assert host.sanitize_prefix("") == ("", "ActionMesh")
    for hostile in ("../x", "a/../../b", "/etc/passwd", "C:\\Windows\\x", "~/.ssh/id", "..\\..\\x"):
        with pytest.raises(ValueError):
            host.sanitize_prefix(hostile)


def test_output_paths_stay_inside_the_output_folder(host, host_dirs, tmp_path):
    out = host_dirs["output"]
    path, filename, subfolder = host.next_output_path("actionmesh/camel", "glb")
    assert path == out / "actionmesh" / "camel_00001_.glb" and filename == "camel_00001_.glb"
    assert subfolder == "actionmesh"
    path.write_bytes(b"x")
    assert host.next_output_path("actionmesh/camel", "glb")[1] == "camel_00002_.glb"
    for hostile in ("../escape", "/tmp/escape", "a/../../escape"):
        with pytest.raises(ValueError):
            host.next_output_path(hostile, "glb")
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the output folder"):
        host.next_output_path("link/x", "glb")
    assert not any(outside.iterdir())


def test_model_listing_and_resolution(host, host_dirs):
    root = host_dirs["models"] / "actionmesh"
    for folder in ("ActionMesh/denoiser", "ActionMesh/autoencoder", "other/denoiser_v2"):
        (root / folder).mkdir(parents=True)
        (root / folder / "config.json").write_text("{}")
        (root / folder / "model.safetensors").write_bytes(b"")
    (root / "single.safetensors").write_bytes(b"")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("")
    (root / "pickled").mkdir()  # no file a loader reads: listed as the folder (the loader says what is wrong)
    (root / "pickled" / "config.json").write_text("{}")
    (root / "pickled" / "pytorch_model.bin").write_bytes(b"")
    listing = host.list_models("actionmesh", ("denoiser",))
    # model folders are listed by their weights file, as core loaders list files: the frontend's missing-models
    # check compares a workflow's value with this list
    assert listing == ["ActionMesh/denoiser/model.safetensors", "other/denoiser_v2/model.safetensors",
                       "ActionMesh/autoencoder/model.safetensors", "pickled", "single.safetensors"]
    # a folder's weights file resolves to the folder (what the loaders read); the folder name of workflows saved
    # before files were listed resolves to the same folder; a lone file to itself
    assert host.resolve_model("actionmesh", "ActionMesh/denoiser/model.safetensors") == root / "ActionMesh" / "denoiser"
    assert host.resolve_model("actionmesh", "ActionMesh/denoiser") == root / "ActionMesh" / "denoiser"
    assert host.resolve_model("actionmesh", "single.safetensors") == root / "single.safetensors"
    with pytest.raises(ValueError):
        host.resolve_model("actionmesh", "../../etc")
    with pytest.raises(FileNotFoundError, match="README"):
        host.resolve_model("actionmesh", "ActionMesh/missing")
    assert host.list_models("dinov2") == []


def test_symlinked_model_and_input_folders_resolve(host, host_dirs, tmp_path):
    # users keep weights on another drive and symlink them into models/ (found running in ComfyUI 0.27)
    elsewhere = tmp_path / "big_drive" / "TripoSG"
    for folder in ("vae", "transformer"):
        (elsewhere / folder).mkdir(parents=True)
        (elsewhere / folder / "config.json").write_text("{}")
        (elsewhere / folder / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    root = host_dirs["models"] / "triposg"
    root.mkdir()
    (root / "TripoSG").symlink_to(elsewhere, target_is_directory=True)
    listing = host.list_models("triposg", ("vae",))
    assert listing == ["TripoSG/vae/diffusion_pytorch_model.safetensors",
                       "TripoSG/transformer/diffusion_pytorch_model.safetensors"]
    for name in listing:  # every listed entry must load
        resolved = host.resolve_model("triposg", name)
        assert resolved == (root / name).parent and (resolved / "config.json").is_file()
    with pytest.raises(ValueError):
        host.resolve_model("triposg", "TripoSG/../../big_drive/TripoSG/vae")
    meshes = tmp_path / "mesh_drive"
    meshes.mkdir()
    (meshes / "cow.glb").write_bytes(b"glb")
    (host_dirs["input"] / "3d").symlink_to(meshes, target_is_directory=True)
    assert host.list_input_meshes() == ["3d/cow.glb"]
    assert host.resolve_input_file("3d/cow.glb").read_bytes() == b"glb"
    with pytest.raises(ValueError):
        host.resolve_input_file("3d/../../mesh_drive/cow.glb")


def test_mesh_batches_round_trip(host):
    import trimesh

    box, ball = trimesh.creation.box(), trimesh.creation.icosphere(subdivisions=1)
    mesh = host.make_mesh([box.vertices, ball.vertices], [box.faces, ball.faces])
    assert mesh.vertices.shape == (2, len(ball.vertices), 3) and mesh.faces.dtype == torch.int64
    assert mesh.vertex_counts.tolist() == [8, len(ball.vertices)]
    item = host.mesh_item(mesh, 0)
    np.testing.assert_allclose(item.vertices, box.vertices, atol=1e-6)
    np.testing.assert_array_equal(item.faces, box.faces)
    assert len(host.mesh_item(mesh, 1).faces) == len(ball.faces)
    same = host.make_mesh([box.vertices] * 3, [box.faces] * 3)
    assert same.vertex_counts is None and same.vertices.shape == (3, 8, 3)
    with pytest.raises(ValueError, match="outside the batch"):
        host.mesh_item(mesh, 5)


def test_mesh_batches_with_the_old_two_argument_mesh_class(host, monkeypatch):
    import trimesh

    class OldMesh:  # comfy_extras.nodes_hunyuan3d.MESH of ComfyUI 0.3.x
        def __init__(self, vertices, faces):
            self.vertices, self.faces = vertices, faces

    monkeypatch.setattr(sys.modules[host.__name__ + "_types"], "mesh_class", lambda: OldMesh)
    box, ball = trimesh.creation.box(), trimesh.creation.icosphere(subdivisions=1)
    mesh = host.make_mesh([box.vertices, ball.vertices], [box.faces, ball.faces])
    assert isinstance(mesh, OldMesh) and mesh.face_counts.tolist() == [12, len(ball.faces)]
    np.testing.assert_array_equal(host.mesh_item(mesh, 0).faces, box.faces)


def test_progress_reports_and_interrupts(host):
    progress = host.Progress(10)
    # the samplers report 1-based steps and windows: step 4 of window 2 = 14 of 20
    progress.callback({"stage": "I", "step": 4, "total": 10, "window": 2, "num_windows": 2})
    assert (progress.current, progress.total) == (14, 20)
    progress.callback(3, 4)
    assert (progress.current, progress.total) == (3, 4)
    host.request_interrupt()
    with pytest.raises(host.Interrupted):
        progress.step()
    progress.step()  # the request is consumed


# --------------------------------------------------------------------------- node bodies


def _anim(frames=3):
    import trimesh

    box = trimesh.creation.box()
    vertices = np.stack([box.vertices + [0.1 * t, 0, 0] for t in range(frames)])
    return AnimatedMesh(faces=box.faces, vertices=vertices, uv=np.zeros((8, 2)),
                        times=np.arange(frames, dtype=np.float32) / 12.0)


def test_prepare_frames_node_on_real_frames(pack, fixtures_dir):
    from actionmesh_core.frames import load_frames

    node = pack.NODES["ActionMeshPrepareFrames"]
    rgba = load_frames(fixtures_dir / "davis_camel")
    images, alpha = rgba[..., :3], rgba[..., 3]
    comfy_mask = 1.0 - alpha  # what Load Image gives: 1 where transparent
    frames, preview, masks = node.execute(images, 256, 0.1, 0.1, 2, 3, 4, 30.0, True, mask=comfy_mask)
    assert frames.frame_indices == [2, 5, 8, 11] and frames.fps == pytest.approx(10.0)
    assert preview.shape == (4, 256, 256, 3) and masks.shape == (4, 256, 256)
    direct = node.execute(images, 256, 0.1, 0.1, 2, 3, 4, 30.0, False, mask=alpha)[0]
    assert frames.bbox == direct.bbox  # inverted Load Image mask == object mask
    torch.testing.assert_close(frames.rgb, direct.rgb)
    with pytest.raises(ValueError, match="one mask per frame"):
        node.execute(images, 256, 0.1, 0.1, 0, 1, 0, 30.0, False, mask=alpha[:5])


def test_render_and_mesh_output_nodes(pack, host):
    anim = _anim(3)
    (images,) = pack.NODES["ActionMeshRenderPreview"].execute(64, "shaded", 30.0, 15.0, 1.0, animation=anim)
    assert isinstance(images, torch.Tensor) and images.shape == (3, 64, 64, 3)
    assert not torch.equal(images[0], images[2])  # the box moves
    (mesh,) = pack.NODES["ActionMeshAnimationToMesh"].execute(anim, 1, 1, 0)
    assert mesh.vertices.shape == (2, 8, 3) and mesh.faces.shape == (2, 12, 3) and mesh.uvs.shape == (2, 8, 2)
    np.testing.assert_allclose(mesh.vertices[1].numpy(), anim.vertices[2], atol=1e-6)
    host.request_interrupt()
    with pytest.raises(host.Interrupted):
        pack.NODES["ActionMeshRenderPreview"].execute(64, "shaded", 30.0, 15.0, 1.0, animation=anim)


def test_render_preview_renders_a_textured_reference_mesh_framed_for_prepare_frames(pack, tmp_path):
    import trimesh
    from PIL import Image

    from actionmesh_core.geometry.reference import prepare_reference_mesh

    texture = np.zeros((8, 8, 3), np.uint8)
    texture[:4] = (255, 0, 0)  # top half red, bottom half blue
    texture[4:] = (0, 0, 255)
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    uv = np.stack([np.zeros(len(box.vertices)), (box.vertices[:, 1] > 0).astype(float)], axis=1)  # top -> v = 1
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(texture))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    box.export(tmp_path / "box.glb")
    reference = prepare_reference_mesh(tmp_path / "box.glb", num_surface_points=256, num_query_points=16,
                                       subset_points=64)
    node = pack.NODES["ActionMeshRenderPreview"]
    (image,) = node.execute(120, "unlit", 0.0, 0.0, 1.0, 0.1, reference=reference)
    assert image.shape == (1, 120, 120, 3)
    covered = (image[0] - 1.0).abs().amax(-1) > 1e-6
    rows, cols = torch.nonzero(covered, as_tuple=True)
    assert (int(cols.min()), int(cols.max())) == (10, 109)  # width 2 -> 100 px, centred, 10 % margin
    assert (int(rows.min()), int(rows.max())) == (35, 84)
    np.testing.assert_allclose(image[0, 40, 60].numpy(), [1, 0, 0], atol=0.02)  # upper face colour: red
    np.testing.assert_allclose(image[0, 80, 60].numpy(), [0, 0, 1], atol=0.02)
    with pytest.raises(ValueError, match="exactly one"):
        node.execute(64, "shaded", 0.0, 0.0, 1.0, 0.1)


def _fake_module(monkeypatch, name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_export_node_writes_inside_the_output_folder(pack, host_dirs, monkeypatch):
    calls = {}

    def export_animated_glb(anim, path, fps=24.0, interpolation="STEP"):
        calls["animated"] = (Path(path), fps, interpolation)
        Path(path).write_bytes(b"glTF")
        return Path(path)

    def export_static_glbs(anim, folder, prefix):
        calls["static"] = (Path(folder), prefix)
        return []

    import actionmesh_core.export.glb as glb_writer

    monkeypatch.setattr(glb_writer, "export_animated_glb", export_animated_glb)
    monkeypatch.setattr(glb_writer, "export_static_glbs", export_static_glbs)
    node = pack.NODES["ActionMeshExportGLB"]
    result = node.execute(_anim(), "runs/camel?", "LINEAR", True)
    out = host_dirs["output"]
    assert result.ui == {"3d": [{"filename": "camel__00001_.glb", "subfolder": "runs", "type": "output"}]}
    assert result[0] == "runs/camel__00001_.glb" and result[2] == "runs/camel__00001_.glb"
    assert result[1].format == "glb" and Path(result[1].get_source()) == out / "runs" / "camel__00001_.glb"
    path, fps, interpolation = calls["animated"]  # staged beside the target, then moved onto it (atomic)
    assert path.name == "camel__00001_.glb" and (out / "runs" / "camel__00001_.glb").read_bytes() == b"glTF"
    assert fps == pytest.approx(12.0) and interpolation == "LINEAR"
    # the per-frame GLBs are staged in a folder inside runs/camel__00001_frames, then moved in with the GLB
    assert calls["static"][0].parent == out / "runs" / "camel__00001_frames" and calls["static"][1] == "camel__00001"
    with pytest.raises(ValueError):
        node.execute(_anim(), "../../outside", "STEP", False)


class _FakeVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def encode(self, surface, query):
        mean = torch.ones(query.shape[0], query.shape[1], 4)
        return mean, torch.full_like(mean, -2.0)

    from actionmesh_core.models.vae import TripoSGVAE

    sample_posterior = TripoSGVAE.sample_posterior  # the real posterior sample


def test_temporal_denoise_and_decode_nodes_follow_the_contract(pack, monkeypatch):
    datatypes = sys.modules["actionmesh_pack.nodes.datatypes"]
    seen = {}

    def sample_stage1(denoiser, context, source_latents, **kwargs):
        seen.update(kwargs, sources=sorted(source_latents), context=tuple(context.shape))
        for step in range(kwargs["steps"]):
            kwargs["callback"]({"stage": "I", "step": step, "total": kwargs["steps"], "window": 0, "num_windows": 1})
        return torch.zeros(context.shape[0], 6, 4)

    _fake_module(monkeypatch, "actionmesh_core.sampling.stage1", sample_stage1=sample_stage1)
    context = datatypes.FrameContext(features=torch.zeros(5, 3, 8), fps=10.0)
    anchor = datatypes.SourceLatents({2: torch.ones(6, 4)}, anchor_frame=2)
    extra = datatypes.SourceLatents({4: torch.ones(6, 4)}, anchor_frame=4)
    node = pack.NODES["ActionMeshTemporalDenoise"]
    (latents,) = node.execute(torch.nn.Linear(1, 1), context, anchor, 3, 7.5, 3.0, 11, 0.2, 16, 15,
                              extra_sources=extra)
    assert seen["sources"] == [2, 4] and seen["context"] == (5, 3, 8)
    assert (seen["steps"], seen["guidance_scale"], seen["shift"], seen["seed"]) == (3, 7.5, 3.0, 11)
    assert (seen["noise_correlation"], seen["window"], seen["slide"]) == (0.2, 16, 15)
    assert latents.latents.shape == (5, 6, 4) and latents.anchor_frame == 2 and latents.fps == 10.0
    with pytest.raises(ValueError, match="slide"):
        node.execute(torch.nn.Linear(1, 1), context, anchor, 3, 7.5, 3.0, 0, 0.0, 16, 16)
    with pytest.raises(ValueError, match="outside"):
        node.execute(torch.nn.Linear(1, 1), context, datatypes.SourceLatents({7: torch.ones(6, 4)}, 7),
                     3, 7.5, 3.0, 0, 0.0, 16, 15)

    class Reference:
        vertices = np.zeros((8, 3), np.float32)
        vertex_normals = np.ones((8, 3), np.float32)
        faces = np.array([[0, 1, 2]])

        def vertex_queries(self):
            return torch.from_numpy(np.concatenate([self.vertices, self.vertex_normals], axis=1))

        def to_animated_mesh(self, positions, times=None):
            return AnimatedMesh(faces=np.array([[0, 1, 2]]), vertices=positions, times=times)

    def decode_stage2(autoencoder, latents_, query, **kwargs):
        seen["decode"] = (tuple(latents_.shape), tuple(query.shape), kwargs["anchor_frame"])
        return torch.zeros(latents_.shape[0], query.shape[0], 3)

    _fake_module(monkeypatch, "actionmesh_core.sampling.stage2", decode_stage2=decode_stage2)
    (anim,) = pack.NODES["ActionMeshDecodeDeformation"].execute(
        torch.nn.Linear(1, 1), latents, Reference(), 16, 15, -1, 0.0)
    assert seen["decode"] == ((5, 6, 4), (8, 6), 2)
    np.testing.assert_allclose(anim.times, np.arange(5) / 10.0)


def test_encode_reference_mesh_node(pack, host, monkeypatch):
    import trimesh

    class Reference:
        surface = torch.zeros((32, 6))
        query_points = torch.zeros((16, 6))

    received = {}

    def prepare_reference_mesh(mesh, seed=0, num_query_points=2048, num_surface_points=16384):
        received["faces"], received["tokens"] = len(mesh.faces), num_query_points
        received["points"], received["seed"] = num_surface_points, seed
        return Reference()

    _fake_module(monkeypatch, "actionmesh_core.geometry.reference", prepare_reference_mesh=prepare_reference_mesh)
    _fake_module(monkeypatch, "actionmesh_core.io.mesh_io", load_mesh=lambda path: trimesh.load(path))
    box = trimesh.creation.box()
    mesh = host.make_mesh([box.vertices], [box.faces])
    node = pack.NODES["ActionMeshEncodeReferenceMesh"]
    anchor, reference = node.execute(_FakeVAE(), 3, "none", 0, False, 0, mesh=mesh)
    assert received["faces"] == 12 and received["tokens"] == 2048 and isinstance(reference, Reference)
    assert received["points"] == 16384 and received["seed"] == 0  # the pipeline's surface samples
    node.execute(_FakeVAE(), 3, "none", 0, False, 0, num_tokens=512, mesh=mesh)
    assert received["tokens"] == 512
    assert anchor.anchor_frame == 3 and torch.equal(anchor.latents[3], torch.ones(16, 4))
    sampled, _ = node.execute(_FakeVAE(), 3, "none", 0, True, 5, mesh=mesh)
    again, _ = node.execute(_FakeVAE(), 3, "none", 0, True, 5, mesh=mesh)
    noise = (sampled.latents[3] - 1.0) / np.exp(-1.0)  # std = exp(0.5 * logvar)
    assert torch.equal(sampled.latents[3], again.latents[3]) and 0.5 < float(noise.std()) < 1.5
    with pytest.raises(ValueError, match="several meshes"):
        node.execute(_FakeVAE(), 0, "3d/x.glb", 0, True, 0, mesh=mesh)
    with pytest.raises(ValueError, match="no mesh given"):
        node.execute(_FakeVAE(), 0, "none", 0, True, 0)


def test_checkpoint_loaders_hide_transformers_folders(pack, host_dirs):
    """TripoSG ships its DINOv2 (a transformers folder) next to vae/ and transformer/: not offered to the VAE loader."""
    import json

    root = host_dirs["models"] / "triposg" / "TripoSG"
    for name, cfg, weights in (("vae", {"_class_name": "TripoSGVAEModel"}, "diffusion_pytorch_model.safetensors"),
                               ("image_encoder_dinov2", {"model_type": "dinov2"}, "model.safetensors")):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text(json.dumps(cfg))
        (root / name / weights).write_bytes(b"")
    choices = combo_options(pack.NODES["ActionMeshLoadTripoSGVAE"].INPUT_TYPES()["required"]["model_name"])
    assert choices == ["TripoSG/vae/diffusion_pytorch_model.safetensors"]


def test_reference_mesh_takes_every_core_3d_file_type_and_num_tokens_last(pack, host):
    cls = pack.NODES["ActionMeshEncodeReferenceMesh"]
    declared = cls.INPUT_TYPES()
    assert set(declared["optional"]["model_3d"][0].split(",")) == set(FILE_3D_TYPES) == set(host.FILE_3D_TYPES)
    # appended after the seed: widgets_values saved before num_tokens existed keep their positions
    assert list(declared["required"])[-2:] == ["seed", "num_tokens"]
