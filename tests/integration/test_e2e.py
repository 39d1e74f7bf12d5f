"""End to end on the real fixture frames with tiny random weights (CPU).

- the CLI: video -> animated GLB (TripoSG anchor, stage I, stage II), and {video + textured mesh};
- the ComfyUI node functions called in graph order (no ComfyUI needed);
- the attention-chain mode.
Meshing depths and step counts are reduced so the whole file runs in about a minute on 2 cores.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from actionmesh_core.cli import main
from actionmesh_core.io.glb import read_animated_glb
from actionmesh_core.io.mesh_io import load_mesh, save_mesh
from actionmesh_core.weights import make_tiny_weights
from conftest import combo_options
from gltf_validation import validate_glb

FAST = ["--device", "cpu", "--fast", "--steps", "2", "--octree-depth", "5", "--refine-depth", "6"]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def camel(fixtures_dir):
    return fixtures_dir / "davis_camel"


def _check_valid(path):
    issues = validate_glb(path)
    assert issues["numErrors"] == 0, issues["messages"]


def test_cli_video_to_4d(tmp_path, tiny_weights, camel, capsys):
    out = tmp_path / "camel.glb"
    assert main(["video-to-4d", str(camel), "--weights", str(tiny_weights), "--out", str(out), *FAST]) == 0
    anim = read_animated_glb(out)
    assert anim.num_frames == 16 and len(anim.faces) >= 1
    # model space: the SDF grid spans [-1.005, 1.005]^3, stage II outputs lie in [-1, 1]
    assert np.isfinite(anim.vertices).all() and np.abs(anim.vertices).max() <= 1.005 + 1e-5
    # frames differ (the tiny models still move the vertices) and the reference mesh is frame 0
    assert np.abs(anim.vertices[1:] - anim.vertices[:1]).max() > 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("wrote")][-1]
    # the timing table names the anchor's sampling, meshing and clean-up apart (issue #14), and the export
    for step in ("stage0 sampling", "meshing", "clean-up", "stage1", "stage2", "export", "total"):
        assert re.search(rf"[(,;] {step} \d+\.\ds", line), (step, line)
    _check_valid(out)


def _textured_box():
    box = trimesh.creation.box(extents=(3.0, 1.0, 2.0))
    box.unmerge_vertices()  # a UV seam per face corner: 36 vertices
    uv = np.random.default_rng(0).random((len(box.vertices), 2))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=trimesh.visual.material.PBRMaterial(
        baseColorTexture=image))
    box.apply_translation((5.0, -2.0, 1.0))
    return box, uv, image


def test_cli_video_plus_textured_mesh_keeps_topology_uv_texture(tmp_path, tiny_weights, camel):
    box, uv, image = _textured_box()
    mesh_path = tmp_path / "box.glb"
    save_mesh(box, mesh_path)
    out = tmp_path / "box_anim.glb"
    assert main(["video-to-4d", str(camel), "--weights", str(tiny_weights), "--out", str(out),
                 "--mesh", str(mesh_path), "--anchor-frame", "3", *FAST]) == 0
    anim = read_animated_glb(out)
    assert anim.num_frames == 16 and anim.num_vertices == len(box.vertices)
    np.testing.assert_array_equal(anim.faces, box.faces)
    np.testing.assert_allclose(anim.uv, uv, atol=1e-6)
    assert anim.texture is not None
    np.testing.assert_array_equal(np.asarray(anim.texture_image().convert("RGB")), np.asarray(image))
    # the anchor frame is the user's mesh itself, in its own units (normalisation undone)
    np.testing.assert_allclose(anim.vertices[3], box.vertices, atol=1e-5)
    assert not np.allclose(anim.vertices[0], box.vertices, atol=1e-3)
    _check_valid(out)
    reloaded = load_mesh(out)
    assert len(reloaded.vertices) == len(box.vertices)


def test_cli_attention_chain_mode(tmp_path, tiny_weights, camel):
    out = tmp_path / "chain.glb"
    code = main(["video-to-4d", str(camel), "--weights", str(tiny_weights), "--out", str(out),
                 "--mode", "attention-chain", *FAST])
    assert code == 0
    anim = read_animated_glb(out)
    assert anim.num_frames == 16 and np.isfinite(anim.vertices).all()


def test_cli_missing_weights_says_what_to_download(tmp_path, camel, capsys):
    code = main(["video-to-4d", str(camel), "--weights", str(tmp_path / "none"), "--out", str(tmp_path / "a.glb")])
    err = capsys.readouterr().err
    assert code == 2
    assert "facebook/ActionMesh" in err and "VAST-AI/TripoSG" in err and "dinov2-large" in err
    assert not (tmp_path / "a.glb").exists()


def test_cli_bad_frames(tmp_path, tiny_weights, capsys):
    empty = tmp_path / "frames"
    empty.mkdir()
    code = main(["video-to-4d", str(empty), "--weights", str(tiny_weights), "--out", str(tmp_path / "a.glb"),
                 "--device", "cpu"])
    assert code == 2 and "error:" in capsys.readouterr().err


def _call(node_cls, **inputs):
    """Call a node like ComfyUI does: widget defaults from INPUT_TYPES (a combo's first option), links passed as
    keyword arguments, through its ``FUNCTION`` under ``torch.inference_mode`` (ComfyUI's executor runs every node
    inside it: weights and outputs are inference tensors). Returns the node's outputs."""
    spec = node_cls.INPUT_TYPES()
    kwargs = {}
    for name, (kind, *rest) in spec.get("required", {}).items():
        if name in inputs:
            kwargs[name] = inputs.pop(name)
        elif kind == "COMBO":
            kwargs[name] = rest[0].get("default", rest[0]["options"][0])
        else:
            assert rest and "default" in rest[0], f"{node_cls.__name__}.{name} needs a value"
            kwargs[name] = rest[0]["default"]
    kwargs.update(inputs)
    import torch

    with torch.inference_mode():
        output = getattr(node_cls(), node_cls.FUNCTION)(**kwargs)
    return output


def test_nodes_in_graph_order(pack, host_dirs, tiny_weights, camel):
    for folder in ("actionmesh", "triposg", "dinov2"):
        (host_dirs["models"] / folder).symlink_to(tiny_weights, target_is_directory=True)
    nodes = pack.NODES
    def load(node_type, model_name):  # the value a user picks: the loader must offer it, then load it
        node = nodes[node_type]
        assert model_name in combo_options(node.INPUT_TYPES()["required"]["model_name"]), node_type
        assert node.validate_inputs(model_name) is True
        return _call(node, model_name=model_name)

    denoiser, = load("ActionMeshLoadDenoiser", "ActionMesh/denoiser/model.safetensors")
    autoencoder, = load("ActionMeshLoadAutoencoder", "ActionMesh/autoencoder/model.safetensors")
    vae, = load("ActionMeshLoadTripoSGVAE", "TripoSG/vae/diffusion_pytorch_model.safetensors")
    dit, = load("ActionMeshLoadTripoSGDiT", "TripoSG/transformer/diffusion_pytorch_model.safetensors")
    dino, = load("ActionMeshLoadDINOv2", "dinov2-large/model.safetensors")

    from actionmesh_core.frames import load_frames

    images = load_frames(camel)  # (T, H, W, 4): ComfyUI gives IMAGE (T, H, W, 3) + MASK (T, H, W)
    frames, preview, mask = _call(nodes["ActionMeshPrepareFrames"], images=images[..., :3],
                                  mask=1.0 - images[..., 3], invert_mask=True)
    assert preview.shape[0] == 16 and preview.shape[-1] == 3
    context, = _call(nodes["ActionMeshEncodeFrames"], dinov2=dino, frames=frames)
    anchor, reference, mesh = _call(nodes["ActionMeshImageTo3DAnchor"], dit=dit, vae=vae, context=context, steps=3,
                                    num_tokens=256, octree_depth=5, refine_depth=6)
    assert len(reference.faces) >= 1
    latents, = _call(nodes["ActionMeshTemporalDenoise"], denoiser=denoiser, context=context, anchor=anchor, steps=2)
    assert latents.latents.shape[0] == 16
    meshes, = _call(nodes["ActionMeshSDFMeshing"], vae=vae, latents=latents, octree_depth=5, refine_depth=6,
                    max_frames=2)
    assert host_mesh_batch(meshes) == 2
    animation, = _call(nodes["ActionMeshDecodeDeformation"], autoencoder=autoencoder, latents=latents,
                       reference=reference)
    assert animation.num_frames == 16 and animation.num_vertices == len(reference.vertices)
    np.testing.assert_allclose(animation.vertices[0], reference.vertices, atol=1e-6)
    result = _call(nodes["ActionMeshExportGLB"], animation=animation, filename_prefix="camel/test")
    glb = host_dirs["output"] / result[0]
    assert glb.is_file() and glb.resolve().is_relative_to(host_dirs["output"].resolve())
    assert read_animated_glb(glb).num_frames == 16
    images_out, = _call(nodes["ActionMeshRenderPreview"], animation=animation, size=64)
    assert tuple(images_out.shape) == (16, 64, 64, 3)
    batch, = _call(nodes["ActionMeshAnimationToMesh"], animation=animation, max_frames=3)
    assert host_mesh_batch(batch) == 3
    chain_anim, chain_latents = _call(nodes["ActionMeshAttentionChainAnimate"], denoiser=denoiser, vae=vae,
                                      context=context, anchor=anchor, reference=reference, steps=2,
                                      num_landmarks=50, octree_depth=5, refine_depth=6)
    assert chain_anim.num_frames == 16 and chain_anim.num_vertices == animation.num_vertices


def host_mesh_batch(mesh) -> int:
    return int(torch.as_tensor(mesh.vertices).shape[0])
