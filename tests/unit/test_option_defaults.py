"""Every node input that has a command-line counterpart defaults to what the command line uses.

The CLI's values are read the way a run reads them: ``video-to-4d`` parsed with only its required arguments,
then ``pipeline_config_from_args`` / ``frame_options_from_args`` (and, for what the CLI takes from the weights,
the released config defaults). Every widget input of every node is either mapped here or listed in
``NODE_ONLY`` with the reason, so a new input cannot slip past the comparison.
"""
from __future__ import annotations

import inspect

import pytest

from actionmesh_core.arguments import frame_options_from_args, pipeline_config_from_args
from actionmesh_core.attention_chain.pipeline import AttentionChainConfig
from actionmesh_core.cli import build_parser
from actionmesh_core.export import resolve_format
from actionmesh_core.models.denoiser import TemporalDenoiser
from actionmesh_core.options import DEFAULT_FPS

BASE = ["--weights", "w", "--out", "out.glb"]
# inputs without a command-line counterpart (what they are instead)
NODE_ONLY = {
    "ActionMeshLoadFrames": {"source": "the input file list"},
    "ActionMeshEncodeReferenceMesh": {"mesh_file": "the input file list", "mesh_index": "an item of a MESH batch"},
    "ActionMeshSDFMeshing": {"frame_start": "which latents to mesh", "frame_stride": "which latents to mesh",
                             "max_frames": "which latents to mesh"},
    "ActionMeshDecodeDeformation": {"anchor_frame": "-1: the latents' anchor frame (the CLI's --anchor-frame)",
                                    "fps": "0: the frames' rate (the CLI's --fps)"},
    "ActionMeshAttentionChainAnimate": {"fps": "0: the frames' rate (the CLI's --fps)"},
    "ActionMeshExportGLB": {"filename_prefix": "the output folder's naming (the CLI's --out)"},
    "ActionMeshAnimationToMesh": {"frame_start": "frames to output", "frame_stride": "frames to output",
                                  "max_frames": "frames to output"},
    "ActionMeshRenderPreview": {name: "a preview image, no CLI" for name in
                                ("size", "mode", "azimuth", "elevation", "background", "margin")},
}
LOADERS = ("ActionMeshLoadDenoiser", "ActionMeshLoadAutoencoder", "ActionMeshLoadTripoSGVAE",
           "ActionMeshLoadTripoSGDiT", "ActionMeshLoadDINOv2")


def _cli_values(tmp_path) -> dict:
    """Node type -> input name -> the value a default command line uses."""
    from actionmesh_core.sampling.triposg import read_scheduler_shift
    from actionmesh_core.weights import make_tiny_weights

    parser = build_parser()
    args = parser.parse_args(["video-to-4d", "frames"] + BASE)
    cfg, frames = pipeline_config_from_args(args), frame_options_from_args(args)
    chain = pipeline_config_from_args(parser.parse_args(["video-to-4d", "frames", "--mode", "attention-chain"] + BASE))
    fps = frames.fps if frames.fps is not None else DEFAULT_FPS  # a frame folder declares no rate
    # what the CLI reads from the released files: the denoiser's token count, TripoSG's scheduler shift
    tokens = inspect.signature(TemporalDenoiser).parameters["num_tokens_nominal"].default
    weights = make_tiny_weights(tmp_path / "weights")  # the released layout (scheduler config as released)
    stage0_shift = read_scheduler_shift(weights / "TripoSG" / "scheduler")
    selection = {"frame_start": frames.start, "frame_stride": frames.stride, "max_frames": frames.max_frames}
    stage1 = {"guidance": cfg.guidance_scale, "shift": cfg.shift, "seed": cfg.seed,
              "noise_correlation": cfg.noise_correlation, "window": cfg.window, "slide": cfg.slide}
    meshing = {"octree_depth": cfg.octree_depth, "refine_depth": cfg.refine_depth, "target_faces": cfg.target_faces}
    return {
        "ActionMeshLoadFrames": {"start": frames.start, "stride": frames.stride, "max_frames": frames.max_frames,
                                 "fps": fps},
        "ActionMeshPrepareFrames": {"size": frames.size or 0, "margin": frames.margin, "bg_threshold": frames.bg_threshold,
                                    "fps": fps, "invert_mask": args.invert_mask, **selection},
        "ActionMeshEncodeFrames": {"batch_size": cfg.encode_batch_size},
        "ActionMeshImageTo3DAnchor": {"anchor_frame": cfg.anchor_frame, "steps": cfg.stage0_steps,
                                      "guidance": cfg.stage0_guidance, "shift": stage0_shift, "seed": cfg.seed,
                                      "num_tokens": tokens, **meshing},
        "ActionMeshEncodeReferenceMesh": {"frame_index": cfg.anchor_frame, "seed": cfg.seed, "num_tokens": tokens,
                                          "sample_posterior": True},  # the CLI always samples, as the release
        "ActionMeshTemporalDenoise": {"steps": cfg.steps, **stage1},
        "ActionMeshSDFMeshing": dict(meshing),
        "ActionMeshDecodeDeformation": {"window": cfg.window, "slide": cfg.slide},
        "ActionMeshAttentionChainAnimate": {"steps": chain.chain_steps, "reinforce": chain.chain_reinforce,
                                            "num_landmarks": AttentionChainConfig().num_landmarks,
                                            "octree_depth": chain.octree_depth, "refine_depth": chain.refine_depth,
                                            **stage1},
        "ActionMeshExportGLB": {"interpolation": args.interpolation, "format": resolve_format(args.out, None)[0],
                                "bones": args.bones, "influences": args.influences,
                                "per_frame_glbs": args.per_frame_dir is not None},
        "ActionMeshAnimationToMesh": {},
        "ActionMeshRenderPreview": {},
        **{loader: {"dtype": args.dtype} for loader in LOADERS},
    }


def test_every_node_default_is_the_command_lines(pack, tmp_path):
    cli = _cli_values(tmp_path)
    assert set(cli) == set(pack.NODES)
    compared = 0
    for node_type, cls in pack.NODES.items():
        declared = cls.INPUT_TYPES()
        widgets = {name: spec[1] for section in ("required", "optional")
                   for name, spec in declared.get(section, {}).items()
                   if spec[0] in ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO") and name != "model_name"}
        unknown = set(widgets) - set(cli[node_type]) - set(NODE_ONLY.get(node_type, {}))
        assert not unknown, f"{node_type}: inputs {sorted(unknown)} are neither compared with the CLI nor NODE_ONLY"
        for name, expected in cli[node_type].items():
            assert name in widgets, f"{node_type} has no input {name!r}"
            default = widgets[name].get("default", (widgets[name].get("options") or [None])[0])
            assert default == pytest.approx(expected) if isinstance(expected, float) else default == expected, \
                f"{node_type}.{name} defaults to {default!r}, the command line uses {expected!r}"
            compared += 1
    assert compared >= 50


def test_batch_and_video_to_4d_read_the_same_option_groups():
    """``batch`` takes its run and frame defaults from the same groups as ``video-to-4d``."""
    parser = build_parser()
    single = parser.parse_args(["video-to-4d", "frames"] + BASE)
    batch = parser.parse_args(["batch", "clips.csv", "--weights", "w", "--out", "converted"])
    assert pipeline_config_from_args(batch) == pipeline_config_from_args(single)
    assert frame_options_from_args(batch) == frame_options_from_args(single)
    assert (batch.interpolation, batch.bones, batch.influences) == (single.interpolation, single.bones,
                                                                     single.influences)
