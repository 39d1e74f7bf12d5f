"""The node graph gives the command line's result: same frames, seed and settings -> the same animated GLB.

The nodes are called in graph order in this process (ComfyUI's stand-in schema, ``nodes/host_io.py``), from
Load Frames on the real camel frames to Export Animation, and compared with ``python -m actionmesh_core
video-to-4d`` on the same folder (tiny random weights): same vertex and face counts, positions within 1e-6, for
video -> 4D, {video + mesh} -> 4D and attention-chain mode. ``test_real_host.py`` runs the same comparison on the
shipped workflows inside a real ComfyUI.
"""
from __future__ import annotations

import pytest
import torch
import trimesh

import equivalence as eq
from actionmesh_core.cli import main
from actionmesh_core.weights import make_tiny_weights


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


def _run(cls, settings: dict, **inputs):
    """A node called as ComfyUI calls it: every widget at its default, ``settings`` for its type, links."""
    values = {}
    for section in ("required", "optional"):
        for name, (kind, *rest) in cls.INPUT_TYPES().get(section, {}).items():
            options = rest[0] if rest else {}
            if name in inputs:
                values[name] = inputs[name]
            elif name in settings:
                values[name] = settings[name]
            elif "default" in options:
                values[name] = options["default"]
            elif kind == "COMBO":
                values[name] = options["options"][0]
    with torch.inference_mode():
        return getattr(cls, cls.FUNCTION)(**values)


def _graph(pack, weights, mode: str, mesh_file=None) -> "object":
    """The shipped video_to_4d / video_mesh_to_4d graph (attention-chain node instead of stage I + II for
    ``mode == "attention-chain"``), run node by node; returns the exported GLB's path relative to the output."""
    nodes, settings = pack.NODES, eq.node_settings(weights)

    def run(node_type, **inputs):
        return _run(nodes[node_type], settings.get(node_type, {}), **inputs)

    denoiser, = run("ActionMeshLoadDenoiser", model_name="ActionMesh/denoiser/model.safetensors")
    vae, = run("ActionMeshLoadTripoSGVAE", model_name="TripoSG/vae/diffusion_pytorch_model.safetensors")
    dino, = run("ActionMeshLoadDINOv2", model_name="dinov2-large/model.safetensors")
    images, mask, fps = run("ActionMeshLoadFrames", source="frames/camel")
    frames, _, _ = run("ActionMeshPrepareFrames", images=images, mask=mask, fps=fps)
    context, = run("ActionMeshEncodeFrames", dinov2=dino, frames=frames)
    if mesh_file is None:
        dit, = run("ActionMeshLoadTripoSGDiT", model_name="TripoSG/transformer/diffusion_pytorch_model.safetensors")
        assert dit.image_encoder is not None  # TripoSG's own encoder, found beside the transformer
        anchor, reference, _ = run("ActionMeshImageTo3DAnchor", dit=dit, vae=vae, context=context)
    else:
        anchor, reference = run("ActionMeshEncodeReferenceMesh", vae=vae, mesh_file=mesh_file)
    if mode == "attention-chain":
        animation, _ = run("ActionMeshAttentionChainAnimate", denoiser=denoiser, vae=vae, context=context,
                           anchor=anchor, reference=reference)
    else:
        autoencoder, = run("ActionMeshLoadAutoencoder", model_name="ActionMesh/autoencoder/model.safetensors")
        latents, = run("ActionMeshTemporalDenoise", denoiser=denoiser, context=context, anchor=anchor)
        animation, = run("ActionMeshDecodeDeformation", autoencoder=autoencoder, latents=latents,
                         reference=reference)
    return run("ActionMeshExportGLB", animation=animation, filename_prefix="equivalence/run")[0]


@pytest.mark.parametrize("mode, with_mesh", [("stage2", False), ("stage2", True), ("attention-chain", False)],
                         ids=["video_to_4d", "video_mesh_to_4d", "attention_chain"])
def test_node_graph_gives_the_cli_result(mode, with_mesh, pack, host_dirs, tiny_weights, fixtures_dir, tmp_path):
    for folder in ("actionmesh", "triposg", "dinov2"):
        (host_dirs["models"] / folder).symlink_to(tiny_weights, target_is_directory=True)
    frames = host_dirs["input"] / "frames" / "camel"
    frames.parent.mkdir()
    frames.symlink_to(fixtures_dir / "davis_camel", target_is_directory=True)
    mesh = None
    if with_mesh:
        mesh = host_dirs["input"] / "3d" / "capsule.glb"
        mesh.parent.mkdir()
        trimesh.creation.capsule(height=1.0, radius=0.35, count=[12, 12]).export(str(mesh))
    out = tmp_path / "cli.glb"
    assert main(eq.cli_args(frames, tiny_weights, out, mode=mode, mesh=mesh)) == 0
    relative = _graph(pack, tiny_weights, mode, mesh_file="3d/capsule.glb" if with_mesh else None)
    result = eq.compare_glbs(out, host_dirs["output"] / relative)
    print(f"{mode}{' + mesh' if with_mesh else ''}: {result}")
