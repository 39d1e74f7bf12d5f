"""The stage layer's own rules: model lifetime, the anchor's image encoder, chain depths, metadata, frame input."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import trimesh

from actionmesh_core import stages
from actionmesh_core.errors import FramesError, OptionError
from actionmesh_core.options import FrameOptions, PipelineConfig, chain_meshing_depths
from actionmesh_core.pipeline import ActionMeshPipeline
from actionmesh_core.weights import make_tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


def _frames(count=4):
    """A dark square moving right on a transparent background (RGBA)."""
    frames = torch.zeros(count, 48, 64, 4)
    for t in range(count):
        frames[t, 12:36, 8 + 3 * t:32 + 3 * t] = torch.tensor([0.2, 0.3, 0.4, 1.0])
    return frames


def test_low_memory_frees_each_model_after_its_stage(weights):
    pipe = ActionMeshPipeline(weights, PipelineConfig(device="cpu", low_memory=True))
    with pipe.use("vae") as vae:
        assert set(pipe._models) == {"vae"} and vae is pipe._models["vae"]
    assert pipe._models == {}
    resident = ActionMeshPipeline(weights, PipelineConfig(device="cpu"))
    with resident.use("vae", "dinov2") as (vae, dino):
        pass
    assert set(resident._models) == {"vae", "dinov2"}  # kept for the next stage


def test_a_node_model_set_refuses_a_missing_model():
    models = stages.Models(vae=torch.nn.Linear(1, 1), denoiser=None)
    assert models.has("vae") and not models.has("denoiser")
    with pytest.raises(ValueError, match="needs the denoiser model"):
        with models.use("denoiser"):
            pass


def test_chain_candidates_are_read_two_levels_coarser_than_the_run():
    from actionmesh_core.attention_chain.capture import CANDIDATE_COARSE_DEPTH, CANDIDATE_DEPTH

    assert chain_meshing_depths(6, 9) == (CANDIDATE_COARSE_DEPTH, CANDIDATE_DEPTH) == (5, 7)
    assert chain_meshing_depths(5, 8) == (4, 6)
    assert chain_meshing_depths(5, 6) == (4, 5)
    assert chain_meshing_depths(4, 4) == (4, 5)  # bounded below, refine >= coarse
    assert chain_meshing_depths(8, 8) == (6, 6)


def test_prepare_clip_selection_masks_and_errors():
    rgba = _frames(6)
    prepared, _ = stages.prepare_clip(rgba, options=FrameOptions(start=1, stride=2, fps=30.0))
    assert prepared.frame_indices == [1, 3, 5] and prepared.fps == pytest.approx(15.0)
    # a mask of ones carries no outline: the alpha is used, as without a mask
    same, _ = stages.prepare_clip(rgba[..., :3], torch.ones(1, 48, 64), FrameOptions(start=1, stride=2))
    alpha, _ = stages.prepare_clip(rgba[..., :3], rgba[..., 3], FrameOptions(start=1, stride=2))
    assert alpha.bbox == prepared.bbox and same.bbox == prepared.bbox  # the plain-background estimate agrees
    inverted, _ = stages.prepare_clip(rgba[..., :3], 1.0 - rgba[..., 3], FrameOptions(invert_mask=True))
    assert torch.equal(inverted.rgb, stages.prepare_clip(rgba)[0].rgb)
    assert stages.prepare_clip(rgba, options=FrameOptions(size=32))[0].rgb.shape[1:3] == (32, 32)
    with pytest.raises(FramesError, match="one mask per frame"):
        stages.prepare_clip(rgba[..., :3], torch.ones(4, 48, 64))
    with pytest.raises(OptionError, match="frame size"):
        stages.prepare_clip(rgba, options=FrameOptions(size=4))


def test_anchor_falls_back_to_the_stage1_features_without_triposgs_encoder(weights, caplog):
    """Without TripoSG's own image encoder (a DiT loaded from a single file), stage 0 still runs, on the stage I
    features, and says so; with it, the anchor frame's image is encoded by TripoSG's encoder (another latent)."""
    pipe = ActionMeshPipeline(weights, PipelineConfig(device="cpu"))
    prepared, _ = stages.prepare_clip(_frames())
    context = stages.encode_frames(pipe, prepared)
    settings = dict(steps=2, guidance=7.5, shift=1.0, seed=0, num_tokens=pipe.num_tokens(), octree_depth=4,
                    refine_depth=5, target_faces=0)
    own = stages.anchor_from_image(pipe, context, 1, **settings)
    bare = stages.Models(transformer=pipe.get("transformer"), vae=pipe.get("vae"))
    with caplog.at_level(logging.WARNING):
        fallback = stages.anchor_from_image(bare, context, 1, **settings)
    assert "image_encoder_dinov2" in caplog.text
    assert own[0].anchor_frame == fallback[0].anchor_frame == 1
    assert not torch.equal(own[0].latents[1], fallback[0].latents[1])
    with pytest.raises(OptionError, match="anchor frame 9 is outside"):
        stages.anchor_from_image(pipe, context, 9, **settings)


def test_attention_chain_run_records_the_steps_it_ran(weights, tmp_path):
    mesh = tmp_path / "capsule.glb"
    trimesh.creation.capsule(height=1.0, radius=0.35, count=[8, 8]).export(str(mesh))
    config = PipelineConfig(device="cpu", mode="attention-chain", steps=30, chain_steps=2, octree_depth=4,
                            refine_depth=5)
    result = ActionMeshPipeline(weights, config).run(_frames().numpy(), mesh=str(mesh))
    meta = result.animation.metadata
    assert meta["steps"] == 2 and meta["mode"] == "attention-chain" and meta["seed"] == 0
    assert result.animation.num_frames == 4 and np.isfinite(result.animation.vertices).all()
    assert "stage1+chain" in result.timings
