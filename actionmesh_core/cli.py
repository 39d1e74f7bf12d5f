"""Command line: ``python -m actionmesh_core {video-to-4d, make-tiny-weights}``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m actionmesh_core",
                                     description="ActionMesh: video -> animated 3D mesh (one topology) as a GLB.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("video-to-4d", help="turn a video (folder of RGBA PNGs or a video file) into an animated GLB")
    v.add_argument("frames", help="folder of RGBA PNG frames (alpha = object mask) or a video file")
    v.add_argument("--weights", required=True, help="weights root folder (ActionMesh/, TripoSG/, dinov2-large/)")
    v.add_argument("--out", required=True, help="output path: animated .glb, or any --format's file")
    v.add_argument("--mesh", help="use this mesh (GLB/GLTF/OBJ/PLY) as the anchor instead of TripoSG")
    v.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    v.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    v.add_argument("--steps", type=int, help="stage I denoising steps (default 30, --fast 15)")
    v.add_argument("--fast", action="store_true", help="fast preset: 15 stage I steps, 50 TripoSG steps")
    v.add_argument("--anchor-frame", type=int, default=0, help="frame the anchor mesh corresponds to")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--mode", default="stage2", choices=["stage2", "attention-chain"],
                   help="decoding: stage II autoencoder (default) or training-free attention chains")
    v.add_argument("--chain-reinforce", action="store_true",
                   help="attention-chain mode: reinforce confident correspondences in the last steps (long clips)")
    v.add_argument("--octree-depth", type=int, default=8, help="SDF meshing coarse depth (default 8)")
    v.add_argument("--refine-depth", type=int, default=9, help="SDF meshing refined depth (default 9)")
    v.add_argument("--fps", type=float, default=24.0, help="animation frames per second")
    v.add_argument("--interpolation", default="STEP", choices=["STEP", "LINEAR"])
    v.add_argument("--low-memory", action="store_true", help="keep at most one model on the device")
    v.add_argument("--per-frame-dir", help="also write one static GLB per frame into this folder")
    from .export import add_format_argument  # --format (glb, usdz, glb-skinned, abc, ...), --bones, --influences

    add_format_argument(v)
    t = sub.add_parser("make-tiny-weights",
                       help="write tiny RANDOM weights in the released layout (meaningless shapes; for tests/demos)")
    t.add_argument("dir")
    t.add_argument("--seed", type=int, default=0)
    return parser


def _video_to_4d(args) -> int:
    from .io.glb import export_static_glbs
    from .pipeline import ActionMeshPipeline, PipelineConfig

    from .export import check_format_args, export_from_args

    out = check_format_args(args)[1]  # unknown format / missing optional module: one-line error, before any model
    cfg = PipelineConfig(seed=args.seed, anchor_frame=args.anchor_frame, device=args.device, dtype=args.dtype,
                         mode=args.mode, octree_depth=args.octree_depth, refine_depth=args.refine_depth,
                         fps=args.fps, low_memory=args.low_memory, chain_reinforce=args.chain_reinforce)
    if args.fast:
        cfg = cfg.fast()
    if args.steps is not None:
        cfg.steps = args.steps
    start = time.perf_counter()
    result = ActionMeshPipeline(args.weights, cfg).run(args.frames, mesh=args.mesh)
    path = export_from_args(result.animation, args).path
    if args.per_frame_dir:
        export_static_glbs(result.animation, args.per_frame_dir, out.stem)
    anim = result.animation
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    print(f"wrote {path}: {anim.num_frames} frames, {anim.num_vertices} vertices, {len(anim.faces)} faces "
          f"({stages}; total {time.perf_counter() - start:.1f}s)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; returns the exit status (errors print one clear line, exit 2)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "make-tiny-weights":
            from .weights import make_tiny_weights

            root = make_tiny_weights(args.dir, seed=args.seed)
            print(f"wrote tiny random weights to {root} (meaningless shapes: for smoke tests and demos only)")
            return 0
        return _video_to_4d(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
