"""The command-line option groups shared by ``video-to-4d`` and ``batch``, and how they are read back.

Defaults come from :mod:`actionmesh_core.options` (the release's values,
defined once). :mod:`actionmesh_core.cli` and :mod:`actionmesh_core.batch.cli`
both build their parsers from these groups; this module imports neither.
"""
from __future__ import annotations

import argparse

from .options import DEFAULT_FPS, INTERPOLATIONS, MAX_FPS, MIN_FPS, MODES, ExportOptions, FrameOptions, PipelineConfig

__all__ = ["add_frame_options", "add_pipeline_options", "add_interpolation_option", "frame_options_from_args",
           "pipeline_config_from_args"]

_RUN = PipelineConfig()
_FRAMES = FrameOptions()


def add_frame_options(parser: argparse.ArgumentParser) -> None:
    """The frame-input options (the Prepare Frames node's controls and the release's input layouts)."""
    g = parser.add_argument_group("frame input")
    g.add_argument("--frame-start", type=int, default=_FRAMES.start,
                   help=f"first frame used (0-based, default {_FRAMES.start})")
    g.add_argument("--frame-stride", type=int, default=_FRAMES.stride,
                   help=f"use every n-th frame (default {_FRAMES.stride})")
    g.add_argument("--max-frames", type=int, default=_FRAMES.max_frames,
                   help=f"use at most this many frames (default {_FRAMES.max_frames} = all)")
    g.add_argument("--mask-dir", help="folder of object masks, one per frame (same name or same order; white = "
                                      "object). Folders of <name>_image.png + <name>_mask.png pairs need no option")
    g.add_argument("--invert-mask", action="store_true", help="invert the masks (for masks white on the background)")
    g.add_argument("--bg-threshold", type=float, default=_FRAMES.bg_threshold,
                   help="frames without alpha or masks: colour distance from the border colour above which a "
                        f"pixel is object (default {_FRAMES.bg_threshold})")
    g.add_argument("--remove-background", metavar="MODEL",
                   help="frames without alpha or masks: segment the object with this LOCAL ONNX model "
                        "(RMBG-1.4: onnx/model.onnx of huggingface.co/briaai/RMBG-1.4), as the release does")
    g.add_argument("--fps", type=float, help=f"frame rate of the input, {MIN_FPS:g}-{MAX_FPS:g} (default: the video's "
                                             f"own rate, {DEFAULT_FPS:g} for image folders); the animation plays "
                                             "at fps / frame stride")
    g.add_argument("--min-crop", type=int, default=_FRAMES.min_crop,
                   help=f"smallest square crop side in input pixels; tiny objects are not blown up "
                        f"(default {_FRAMES.min_crop})")


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """The weights and model options of a run."""
    parser.add_argument("--weights", required=True, help="weights root folder (ActionMesh/, TripoSG/, dinov2-large/)")
    parser.add_argument("--mesh", help="use this mesh (GLB/GLTF/OBJ/PLY) as the anchor instead of TripoSG")
    parser.add_argument("--device", default=_RUN.device, choices=["auto", "cpu", "cuda", "mps"],
                        help=f"where the models run (default {_RUN.device}: CUDA, else Apple MPS, else CPU)")
    parser.add_argument("--dtype", default=_RUN.dtype, choices=["auto", "fp32", "bf16", "fp16"],
                        help=f"model precision (default {_RUN.dtype}: bf16 on CUDA, fp32 elsewhere; the VAE stays "
                             "fp32)")
    fast = _RUN.fast()
    parser.add_argument("--steps", type=int,
                        help=f"stage I denoising steps (default {_RUN.steps}, --fast {fast.steps}; attention-chain "
                             f"mode runs {_RUN.chain_steps})")
    parser.add_argument("--fast", action="store_true",
                        help=f"fast preset: {fast.steps} stage I steps, {fast.stage0_steps} TripoSG steps")
    parser.add_argument("--anchor-frame", type=int, default=_RUN.anchor_frame,
                        help="frame (among those used) the anchor mesh corresponds to")
    parser.add_argument("--seed", type=int, default=_RUN.seed,
                        help=f"noise seed of stage 0 and stage I (default {_RUN.seed}; the same seed gives the same "
                             "result)")
    parser.add_argument("--mode", default=_RUN.mode, choices=list(MODES),
                        help="decoding: stage II autoencoder (default) or training-free attention chains")
    parser.add_argument("--chain-reinforce", action="store_true",
                        help="attention-chain mode: reinforce confident correspondences in the last steps (long clips)")
    parser.add_argument("--octree-depth", type=int, default=_RUN.octree_depth,
                        help=f"SDF meshing dense coarse depth (default {_RUN.octree_depth}; = --refine-depth: "
                             "dense grid)")
    parser.add_argument("--refine-depth", type=int, default=_RUN.refine_depth,
                        help=f"SDF meshing refined depth (default {_RUN.refine_depth})")
    parser.add_argument("--low-memory", action="store_true", help="keep at most one model on the device")


def add_interpolation_option(parser: argparse.ArgumentParser) -> None:
    """``--interpolation`` of the animated GLB (STEP or LINEAR between frames)."""
    parser.add_argument("--interpolation", default=ExportOptions.interpolation, choices=list(INTERPOLATIONS),
                        help=f"glb: STEP shows each frame as predicted, LINEAR blends between frames (default "
                             f"{ExportOptions.interpolation})")


def frame_options_from_args(args) -> FrameOptions:
    """:class:`~actionmesh_core.options.FrameOptions` from parsed :func:`add_frame_options` arguments."""
    return FrameOptions(start=args.frame_start, stride=args.frame_stride, max_frames=args.max_frames,
                        mask_dir=args.mask_dir, invert_mask=args.invert_mask, bg_threshold=args.bg_threshold,
                        fps=args.fps, remove_background=args.remove_background, min_crop=args.min_crop)


def pipeline_config_from_args(args) -> PipelineConfig:
    """:class:`~actionmesh_core.options.PipelineConfig` from parsed :func:`add_pipeline_options` arguments."""
    cfg = PipelineConfig(seed=args.seed, anchor_frame=args.anchor_frame, device=args.device, dtype=args.dtype,
                         mode=args.mode, octree_depth=args.octree_depth, refine_depth=args.refine_depth,
                         fps=getattr(args, "fps", None), low_memory=args.low_memory,
                         chain_reinforce=args.chain_reinforce)
    if args.fast:
        cfg = cfg.fast()
    if args.steps is not None:
        cfg.steps = args.steps
    return cfg
