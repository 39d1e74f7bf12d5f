"""The settings of a run and their defaults, defined once.

Every default here is the official release's (``actionmesh/configs/actionmesh.yaml``
and ``actionmesh/io/video_input.py`` of facebookresearch/actionmesh) unless said
otherwise. The command line (:mod:`actionmesh_core.arguments`), the Python API
(:class:`PipelineConfig`, :class:`FrameOptions`) and the ComfyUI node inputs all
read their defaults from this module; ``tests/unit/test_option_defaults.py`` fails
when a node's default differs from the command line's.

This module imports nothing from the rest of the library, so every other
module (validation, pipeline, stages, CLI) can depend on it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Optional, Tuple, Union

__all__ = ["PipelineConfig", "FrameOptions", "ExportOptions", "DEFAULT_FPS", "MIN_FPS", "MAX_FPS", "MAX_DEPTH", "NUM_TOKENS",
           "STAGE0_SHIFT", "MODES", "INTERPOLATIONS", "CHAIN_DEPTH_OFFSET", "chain_meshing_depths"]

PathLike = Union[str, os.PathLike]

#: frame rate of inputs that declare none (image folders, arrays)
DEFAULT_FPS = 24.0
#: frame-rate bounds (input fps, and the animation's fps / stride): frame times stay finite, distinct float32
#: seconds, and every exporter (Blender's fps_base included) can represent the rate
MIN_FPS, MAX_FPS = 0.001, 10000.0
#: deepest SDF meshing level (2^11 cells per axis)
MAX_DEPTH = 11
#: latent tokens of a shape at inference (the denoiser config's ``num_tokens_nominal`` wins when it has one)
NUM_TOKENS = 2048
#: TripoSG flow time shift (its ``scheduler/scheduler_config.json`` value; the pipeline reads that file)
STAGE0_SHIFT = 1.0
MODES = ("stage2", "attention-chain")
INTERPOLATIONS = ("STEP", "LINEAR")
#: attention-chain mode reads its candidate surface points off a grid this many levels coarser than the anchor's
#: meshing (9 -> 7: 128^3, the candidate resolution of ``attention_chain.capture.CANDIDATE_DEPTH``)
CHAIN_DEPTH_OFFSET = 2


@dataclass
class PipelineConfig:
    """Settings of a run (defaults = the release's; :meth:`fast` = its fast preset).

    Attributes:
        steps: stage I denoising steps (30; fast 15).
        stage0_steps: TripoSG steps (100; fast 50).
        shift: stage I time shift (3.0). guidance_scale: stage I CFG (7.5).
        stage0_guidance: TripoSG CFG (7.5).
        seed: noise seed. anchor_frame: frame the anchor mesh is made from.
        noise_correlation: stage I cross-frame noise correlation [0, 1].
        window, slide: autoregressive windows (16 / 15).
        octree_depth, refine_depth: SDF meshing: dense coarse grid 2^6, narrow band up to 2^9 cells per axis.
        target_faces: anchor mesh decimation budget (40k; 0 = no decimation).
        num_surface_points: samples for encoding a user mesh (16384).
        encode_batch_size: frames per DINOv2 forward pass (8; ours: the release encodes all frames at once,
            same features).
        device: "auto" | "cpu" | "cuda" | "mps". dtype: "auto" (bf16 on CUDA, fp32 otherwise) | fp32 | bf16 | fp16.
        low_memory: keep at most one model on the device (load before, free after each stage).
        fps: frame rate of the INPUT (None = a video's own rate, 24 for image folders and arrays);
            the animation plays at ``fps / frame stride`` (real time).
        mode: "stage2" (temporal autoencoder) or "attention-chain" (training-free fast decoding).
        chain_steps: stage I steps in attention-chain mode (4, as published).
        chain_reinforce: attention-chain long-sequence reinforcement (attention-chains §4.3).
    """

    steps: int = 30
    stage0_steps: int = 100
    shift: float = 3.0
    guidance_scale: float = 7.5
    stage0_guidance: float = 7.5
    seed: int = 0
    anchor_frame: int = 0
    noise_correlation: float = 0.0
    window: int = 16
    slide: int = 15
    octree_depth: int = 6
    refine_depth: int = 9
    target_faces: int = 40000
    num_surface_points: int = 16384
    encode_batch_size: int = 8
    device: str = "auto"
    dtype: str = "auto"
    low_memory: bool = False
    fps: Optional[float] = None
    mode: str = "stage2"
    chain_steps: int = 4
    chain_reinforce: bool = False

    def fast(self) -> "PipelineConfig":
        """The fast preset (``actionmesh_fast.yaml``): 15 stage I steps and 50 TripoSG steps."""
        return replace(self, steps=15, stage0_steps=50)

    @property
    def sampling_steps(self) -> int:
        """The stage I steps this mode runs: ``chain_steps`` in attention-chain mode, else ``steps``."""
        return self.chain_steps if self.mode == "attention-chain" else self.steps


@dataclass
class FrameOptions:
    """How to read and prepare the frame input (the node's and the release's controls).

    Attributes:
        start: first frame used (0-based).
        stride: use every ``stride``-th frame.
        max_frames: use at most this many frames (0 = all, as the release).
        mask_dir: folder of object masks, one per frame (white = object).
        invert_mask: use ``1 - mask``.
        bg_threshold: colour distance for the plain-background estimate (frames
            without alpha, masks or background model), in (0, 1.73).
        fps: frame rate of the INPUT; None = the video's own rate (24 for image
            folders). The animation plays at ``fps / stride`` (real time).
        remove_background: local background-removal model (an RMBG-1.4 style
            ``.onnx`` file or a folder holding ``model.onnx`` / ``onnx/model.onnx``)
            used for frames without alpha or masks.
        margin: white margin around the object box (fraction of its longer side; the release's 0.1).
        min_crop: smallest square crop side in input pixels (tiny objects are
            not blown up to the full frame; a warning is printed).
        size: side of the square output frames in pixels; None = the crop's own size (the release
            does not resize: DINOv2's preprocessing resizes to 224 px itself).
    """

    start: int = 0
    stride: int = 1
    max_frames: int = 0
    mask_dir: Optional[PathLike] = None
    invert_mask: bool = False
    bg_threshold: float = 0.1
    fps: Optional[float] = None
    remove_background: Optional[PathLike] = None
    margin: float = 0.1
    min_crop: int = 64
    size: Optional[int] = None


@dataclass
class ExportOptions:
    """How an animation is written: the export node's and the CLI's controls, and every setting a format's
    writer reads (``actionmesh_core.export.formats``: each format lists the fields it uses).

    Attributes:
        format: export format (a key of ``actionmesh_core.export.FORMATS``); the CLI takes it from
            ``--out``'s suffix when not given.
        interpolation: ``"STEP"`` (each frame as predicted) or ``"LINEAR"`` between frames (GLB).
        bones: skinned formats: bones fitted to the motion. influences: bones per vertex (4 suits every engine).
        iterations: skinned formats: Dem Bones iterations of the fit.
        per_frame: also write one static GLB per frame.
        fps: frames per second (None: from the animation's frame times).
        meters_per_unit: USD stage ``metersPerUnit``.
        release_axes: ``npy``: the release's axis change.
    """

    format: str = "glb"
    interpolation: str = "STEP"
    bones: int = 32
    influences: int = 4
    iterations: int = 10
    per_frame: bool = False
    fps: Optional[float] = None
    meters_per_unit: float = 1.0
    release_axes: bool = True


def chain_meshing_depths(octree_depth: int, refine_depth: int) -> Tuple[int, int]:
    """Grid depths of the attention chain's candidate surface points for a run's meshing depths.

    The candidate points are the grid-edge crossings of each frame's field (no
    mesh): :data:`CHAIN_DEPTH_OFFSET` levels coarser than the anchor's meshing,
    from a dense grid one level coarser than the anchor's, at least a 16^3
    coarse grid and a 32^3 band (defaults 6 / 9 -> 5 / 7, the values of
    ``attention_chain_decode``: ``CANDIDATE_COARSE_DEPTH`` / ``CANDIDATE_DEPTH``).

    Returns:
        (coarse depth, refine depth), refine >= coarse.
    """
    coarse = max(int(octree_depth) - 1, 4)
    fine = max(int(refine_depth) - CHAIN_DEPTH_OFFSET, 5)
    return min(coarse, fine), fine
