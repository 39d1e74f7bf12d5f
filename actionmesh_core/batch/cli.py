"""``python -m actionmesh_core batch``: the parser of the subcommand and its entry point.

Exit status: 0 every clip done or skipped; 3 the batch ran to its end but some clips failed (see
``report.jsonl``); 2 bad batch input (manifest, weights, options, Ray missing), nothing converted;
130 interrupted by Ctrl-C (finished clips kept, no partial file; run the same command again to go on).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

__all__ = ["add_batch_parser", "run_batch_command", "EXIT_SOME_FAILED"]

EXIT_SOME_FAILED = 3


def add_batch_parser(sub) -> argparse.ArgumentParser:
    """Add the ``batch`` subcommand to the CLI's subparsers; returns its parser."""
    from .formats import supported_formats

    b = sub.add_parser(
        "batch", help="convert many clips (folders, videos, CSV/JSONL manifests) locally or on a Ray cluster",
        description="Convert many clips with models loaded once per worker. Resumable: clips whose outputs "
                    "exist with the same inputs and settings are skipped (--force redoes them). A failing clip "
                    "is recorded in OUT/report.jsonl and the batch goes on. Exit status: 0 all done, 3 some "
                    "clips failed, 2 bad input, 130 interrupted.")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="frame folder, video file, folder of clips, or a .csv/.jsonl manifest (columns: clip, "
                        "name, mesh, anchor_frame, seed, steps, mode, chain_reinforce, fps, interpolation, format)")
    b.add_argument("--out", required=True, help="output folder: <name>.<format>, <name>.actionmesh.json, report.jsonl")
    b.add_argument("--weights", required=True, help="weights root folder (ActionMesh/, TripoSG/, dinov2-large/)")
    b.add_argument("--format", default="glb", choices=supported_formats(), help="output format (default glb)")
    b.add_argument("--force", action="store_true", help="redo clips that are already done")
    b.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process, models loaded once (default); ray: one actor per worker")
    b.add_argument("--address", help="Ray cluster address ('auto', 'ray://head:10001'); default: a local Ray")
    b.add_argument("--workers", type=int, help="Ray actors (default: one per GPU of the cluster, else 1)")
    b.add_argument("--gpus-per-worker", type=float,
                   help="GPUs per Ray actor (default 1 when the cluster has GPUs, else 0; 0.5 = two per GPU)")
    b.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs (and torch threads) per Ray actor")
    b.add_argument("--retries", type=int, default=1, help="retries of a clip whose worker died (default 1)")
    b.add_argument("--no-progress", action="store_true", help="no progress bars (one line per finished clip)")
    b.add_argument("--verbose", action="store_true", help="show the Ray workers' own logs")
    # the single-clip command's run options, as batch-wide defaults (a manifest row overrides them)
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    b.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    b.add_argument("--steps", type=int, help="stage I denoising steps (default 30, --fast 15)")
    b.add_argument("--fast", action="store_true", help="fast preset: 15 stage I steps, 50 TripoSG steps")
    b.add_argument("--anchor-frame", type=int, default=0, help="frame the anchor mesh corresponds to")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--mode", default="stage2", choices=["stage2", "attention-chain"])
    b.add_argument("--chain-reinforce", action="store_true")
    b.add_argument("--octree-depth", type=int, default=8, help="SDF meshing coarse depth (default 8)")
    b.add_argument("--refine-depth", type=int, default=9, help="SDF meshing refined depth (default 9)")
    b.add_argument("--fps", type=float, default=24.0, help="animation frames per second")
    b.add_argument("--interpolation", default="STEP", choices=["STEP", "LINEAR"])
    b.add_argument("--low-memory", action="store_true", help="keep at most one model on the device")
    return b


def _config(args):
    from ..pipeline import PipelineConfig

    cfg = PipelineConfig(seed=args.seed, anchor_frame=args.anchor_frame, device=args.device, dtype=args.dtype,
                         mode=args.mode, octree_depth=args.octree_depth, refine_depth=args.refine_depth,
                         fps=args.fps, low_memory=args.low_memory, chain_reinforce=args.chain_reinforce)
    if args.fast:
        cfg = cfg.fast()
    if args.steps is not None:
        cfg.steps = args.steps
    return cfg


def _check_options(args) -> None:
    from .engine import BatchError

    if args.steps is not None and args.steps < 1:
        raise BatchError(f"--steps must be >= 1, got {args.steps}")
    if not args.fps > 0:
        raise BatchError(f"--fps must be > 0, got {args.fps}")
    if args.anchor_frame < 0:
        raise BatchError(f"--anchor-frame must be >= 0, got {args.anchor_frame}")
    if args.retries < 0:
        raise BatchError(f"--retries must be >= 0, got {args.retries}")
    if args.workers is not None and args.workers < 1:
        raise BatchError(f"--workers must be >= 1, got {args.workers}")
    if args.engine == "local" and (args.address or args.workers or args.gpus_per_worker is not None):
        raise BatchError("--address, --workers and --gpus-per-worker need --engine ray")


def run_batch_command(args, stdout=None) -> int:
    """Run ``batch`` from parsed arguments; prints the summary table; returns the exit status."""
    from ..weights import WeightsMissingError
    from .engine import BatchError, BatchSettings, RayOptions, run_batch
    from .manifest import ManifestError, read_inputs

    stdout = stdout or sys.stdout
    try:
        _check_options(args)
        clips = read_inputs(args.inputs)
        settings = BatchSettings(weights=args.weights, out_dir=args.out, config=_config(args), format=args.format,
                                 interpolation=args.interpolation, force=args.force, retries=args.retries)
        ray_options = RayOptions(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                                 cpus_per_worker=args.cpus_per_worker, verbose=args.verbose)
        summary = run_batch(clips, settings, engine=args.engine, ray_options=ray_options,
                            progress=not args.no_progress)
    except (ManifestError, BatchError, WeightsMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before any clip ran; nothing was written", file=sys.stderr)
        return 130
    print(summary.table(), file=stdout)
    done = summary.counts.get("done", 0)
    rate = f", {60.0 * done / summary.seconds:.2f} clips/min" if done and summary.seconds > 0 else ""
    print(f"report: {summary.report} ({summary.seconds:.1f}s{rate})", file=stdout)
    if summary.interrupted:
        print("interrupted: finished clips are kept; run the same command again to go on", file=sys.stderr)
        return 130
    return EXIT_SOME_FAILED if summary.counts.get("failed", 0) else 0
