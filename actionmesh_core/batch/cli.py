"""``python -m actionmesh_core batch``: the parser of the subcommand and its entry point.

Exit status: 0 every clip done or skipped; 3 the batch ran to its end but some clips failed (see
``report.jsonl``); 2 bad batch input (manifest, weights, options, Ray missing), nothing converted;
130 / 143 / 129 stopped by Ctrl-C / SIGTERM / SIGHUP (finished clips kept, the clip being converted
recorded as interrupted, no partial or temporary file; run the same command again to go on).
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_batch_parser", "run_batch_command", "EXIT_SOME_FAILED"]

EXIT_SOME_FAILED = 3


def add_batch_parser(sub) -> argparse.ArgumentParser:
    """Add the ``batch`` subcommand to the CLI's subparsers; returns its parser."""
    from ..arguments import add_frame_options, add_interpolation_option, add_pipeline_options
    from ..export.formats import SKIN_LIMITS
    from ..options import ExportOptions
    from .formats import supported_formats

    b = sub.add_parser(
        "batch", help="convert many clips (folders, videos, CSV/JSONL manifests) locally or on a Ray cluster",
        description="Convert many clips with models loaded once per worker. Resumable: clips whose outputs "
                    "exist with the same inputs and settings are skipped (--force redoes them). A failing clip "
                    "is recorded in OUT/report.jsonl and the batch goes on.",
        epilog="exit status: 0 every clip done or skipped; 3 some clips failed (see OUT/report.jsonl); 2 bad batch "
               "input (manifest, weights, options, Ray missing: one line, nothing converted); 130 Ctrl-C, 143 "
               "SIGTERM, 129 SIGHUP (finished clips kept, the current clip recorded as interrupted, no partial "
               "file: run the same command again to go on); 1 a bug (with its traceback)")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="frame folder, video file, folder of clips, or a .csv/.jsonl manifest (columns: clip, "
                        "name, mesh, anchor_frame, seed, steps, mode, chain_reinforce, fps, interpolation, format, "
                        "mask_dir, frame_start, frame_stride, max_frames, margin)")
    b.add_argument("--out", required=True, help="output folder: NAME.<format suffix>, NAME.actionmesh.json, "
                                                "report.jsonl")
    b.add_argument("--format", default=ExportOptions.format, choices=supported_formats(),
                   help=f"output format of every clip (a manifest 'format' column overrides it; default "
                        f"{ExportOptions.format})")
    b.add_argument("--bones", type=int, default=ExportOptions.bones,
                   help=f"skinned formats: number of bones, {SKIN_LIMITS['bones'][0]}-{SKIN_LIMITS['bones'][1]} and at "
                        f"most the vertex count (default {ExportOptions.bones})")
    b.add_argument("--influences", type=int, default=ExportOptions.influences,
                   help=f"skinned formats: bones per vertex, 1-8 (default {ExportOptions.influences})")
    add_interpolation_option(b)
    b.add_argument("--force", action="store_true", help="redo clips that are already done")
    b.add_argument("--no-progress", action="store_true", help="no progress bars (one line per finished clip)")
    r = b.add_argument_group("engine")
    r.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process, models loaded once (default); ray: one actor per worker")
    r.add_argument("--address", help="Ray cluster address ('auto', 'ray://head:10001'); default: a local Ray")
    r.add_argument("--workers", type=int, help="Ray actors (default: one per GPU of the cluster, else 1)")
    r.add_argument("--gpus-per-worker", type=float,
                   help="GPUs per Ray actor (default 1 when the cluster has GPUs, else 0; 0.5 = two per GPU)")
    r.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs (and torch threads) per Ray actor")
    r.add_argument("--retries", type=int, default=1, help="retries of a clip whose worker died (default 1)")
    r.add_argument("--verbose", action="store_true", help="show the Ray workers' own logs")
    # the single-clip command's options, as batch-wide defaults (a manifest row overrides some per clip);
    # --mesh: one anchor mesh for every clip without its own
    add_pipeline_options(b)
    add_frame_options(b)
    return b


def _check_options(args) -> None:
    from .events import BatchError

    if args.mask_dir:
        raise BatchError("--mask-dir names one clip's masks: give each clip its masks in a manifest 'mask_dir' column")
    if args.workers is not None and args.workers < 1:
        raise BatchError(f"--workers must be >= 1, got {args.workers}")
    if args.engine == "local" and (args.address or args.workers or args.gpus_per_worker is not None):
        raise BatchError("--address, --workers and --gpus-per-worker need --engine ray")


def run_batch_command(args, stdout=None) -> int:
    """Run ``batch`` from parsed arguments; prints the summary table; returns the exit status."""
    from pathlib import Path

    from ..arguments import frame_options_from_args, pipeline_config_from_args
    from ..errors import InputError
    from ..interrupts import describe, exit_code, message
    from .engine import BatchSettings, RayOptions, run_batch
    from .manifest import read_inputs

    stdout = stdout or sys.stdout
    try:
        _check_options(args)
        clips = read_inputs(args.inputs)
        if args.mesh:
            mesh = Path(args.mesh).resolve()
            for clip in clips:
                clip.mesh = clip.mesh or mesh
        settings = BatchSettings(weights=args.weights, out_dir=args.out, config=pipeline_config_from_args(args),
                                 frame_options=frame_options_from_args(args), format=args.format,
                                 interpolation=args.interpolation, force=args.force, retries=args.retries,
                                 export_options={"bones": args.bones, "influences": args.influences})
        ray_options = RayOptions(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                                 cpus_per_worker=args.cpus_per_worker, verbose=args.verbose)
        from ..perf import tune_cpu_allocator

        tune_cpu_allocator()  # this process's large temporary buffers reused (see perf.tune_cpu_allocator)
        summary = run_batch(clips, settings, engine=args.engine, ray_options=ray_options,
                            progress=not args.no_progress)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\n{message(exc)} (before any clip ran)", file=sys.stderr)
        return exit_code(exc)
    print(summary.table(), file=stdout)
    done = summary.counts.get("done", 0)
    rate = f", {60.0 * done / summary.seconds:.2f} clips/min" if done and summary.seconds > 0 else ""
    print(f"report: {summary.report} ({summary.seconds:.1f}s{rate})", file=stdout)
    if summary.interrupted:
        what = describe()
        print(f"{'interrupted' if what == 'Ctrl-C' else 'interrupted by ' + what}: finished clips are kept, the "
              "clip being converted is recorded as interrupted; run the same command again to go on", file=sys.stderr)
        return exit_code()
    return EXIT_SOME_FAILED if summary.counts.get("failed", 0) else 0
