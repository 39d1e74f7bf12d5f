"""One set of small settings for a run of the command line and of the node graph, and the comparison of their GLBs.

``test_graph_equivalence.py`` (nodes called in-process) and ``test_real_host.py`` (the shipped workflows in a
real ComfyUI) both use it: the graph gets, node by node, the values the command line's flags give the library
(``NODE_SETTINGS``), and the two animated GLBs must hold the same animation (``compare_glbs``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FRAMES = 4          # frames of the clip (frame start 0, stride 1)
STEPS = 2           # stage I steps
OCTREE, REFINE = 5, 6
SEED = 0
TOLERANCE = 1e-6    # max abs difference of any vertex position at any frame (model or mesh units)


def num_tokens(weights: Path) -> int:
    """Latent tokens of the weights (the denoiser's ``num_tokens_nominal``, what the command line uses)."""
    return int(json.loads((Path(weights) / "ActionMesh" / "denoiser" / "config.json").read_text())
               ["num_tokens_nominal"])


def cli_args(frames: Path, weights: Path, out: Path, mode: str = "stage2", mesh: Path = None) -> list:
    """``python -m actionmesh_core video-to-4d`` arguments of the small run (``--fast``: 50 TripoSG steps)."""
    args = ["video-to-4d", str(frames), "--weights", str(weights), "--out", str(out), "--device", "cpu",
            "--dtype", "fp32", "--fast", "--steps", str(STEPS), "--max-frames", str(FRAMES), "--seed", str(SEED),
            "--octree-depth", str(OCTREE), "--refine-depth", str(REFINE), "--mode", mode]
    return args + (["--mesh", str(mesh), "--anchor-frame", "0"] if mesh is not None else [])


def node_settings(weights: Path) -> dict:
    """Node type -> input values that make the graph run what :func:`cli_args` runs: every input a stage reads,
    set explicitly from the command line's configuration (a test's other shrinking cannot leak in)."""
    from actionmesh_core.options import FrameOptions, PipelineConfig

    cfg, frames = PipelineConfig(seed=SEED, octree_depth=OCTREE, refine_depth=REFINE).fast(), FrameOptions()
    cfg.steps = STEPS
    tokens = num_tokens(weights)
    stage1 = {"guidance": cfg.guidance_scale, "shift": cfg.shift, "seed": cfg.seed,
              "noise_correlation": cfg.noise_correlation, "window": cfg.window, "slide": cfg.slide}
    meshing = {"octree_depth": cfg.octree_depth, "refine_depth": cfg.refine_depth}
    return {
        "ActionMeshLoadFrames": {"start": 0, "stride": 1, "max_frames": FRAMES},
        "ActionMeshPrepareFrames": {"size": 0, "frame_start": 0, "frame_stride": 1, "max_frames": FRAMES,
                                    "margin": frames.margin, "bg_threshold": frames.bg_threshold,
                                    "invert_mask": False},
        "ActionMeshEncodeFrames": {"batch_size": cfg.encode_batch_size},
        "ActionMeshImageTo3DAnchor": {"anchor_frame": 0, "steps": cfg.stage0_steps, "guidance": cfg.stage0_guidance,
                                      "seed": cfg.seed, "num_tokens": tokens, "target_faces": cfg.target_faces,
                                      **meshing},
        "ActionMeshEncodeReferenceMesh": {"frame_index": 0, "seed": cfg.seed, "num_tokens": tokens,
                                          "sample_posterior": True},
        "ActionMeshTemporalDenoise": {"steps": cfg.steps, **stage1},
        "ActionMeshDecodeDeformation": {"window": cfg.window, "slide": cfg.slide, "anchor_frame": -1, "fps": 0.0},
        "ActionMeshAttentionChainAnimate": {"steps": cfg.chain_steps, "reinforce": cfg.chain_reinforce,
                                            "fps": 0.0, **stage1, **meshing},
        "ActionMeshExportGLB": {"interpolation": "STEP", "per_frame_glbs": False, "format": "glb"},
    }


def compare_glbs(cli_glb: Path, graph_glb: Path) -> dict:
    """Read both animated GLBs back; assert the same frames, topology and positions within :data:`TOLERANCE`.

    Returns:
        ``{"max_abs": float, "vertices": int, "faces": int, "frames": int}``.
    """
    from actionmesh_core.io.glb import read_animated_glb

    cli, graph = read_animated_glb(cli_glb), read_animated_glb(graph_glb)
    assert graph.num_frames == cli.num_frames == FRAMES
    assert graph.num_vertices == cli.num_vertices and len(graph.faces) == len(cli.faces)
    np.testing.assert_array_equal(graph.faces, cli.faces)
    difference = float(np.abs(np.asarray(graph.vertices, np.float64) - np.asarray(cli.vertices, np.float64)).max())
    assert difference <= TOLERANCE, f"graph and CLI differ by {difference:.3g} (> {TOLERANCE})"
    # the animation moves (a comparison of two still meshes would prove little)
    assert float(np.abs(cli.vertices[1:] - cli.vertices[:1]).max()) > 1e-3
    return {"max_abs": difference, "vertices": int(cli.num_vertices), "faces": int(len(cli.faces)),
            "frames": int(cli.num_frames)}
