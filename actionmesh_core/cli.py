"""Command line: ``python -m actionmesh_core {video-to-4d, make-tiny-weights}``.

Exit status: 0 success; 2 bad input or an OS error (one line naming the value
or path, no traceback); 130 interrupted (Ctrl-C: one line, no partial output:
every file is written atomically); 1 a bug (with its traceback).

Every input is checked before the first model loads
(:func:`actionmesh_core.validation.validate_run`). The option groups shared
with ``batch`` live in :mod:`actionmesh_core.arguments` (re-exported here).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import List, Optional

from .arguments import (add_frame_options, add_interpolation_option, add_pipeline_options,  # noqa: F401 (re-exported)
                        frame_options_from_args, pipeline_config_from_args)

__all__ = ["main", "run", "build_parser", "add_frame_options", "add_pipeline_options", "add_output_options",
           "frame_options_from_args", "pipeline_config_from_args", "EXIT_OK", "EXIT_BUG", "EXIT_BAD_INPUT",
           "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Where and how the animation is written."""
    parser.add_argument("--out", required=True, help="output path: animated .glb, or any --format's file")
    add_interpolation_option(parser)
    parser.add_argument("--per-frame-dir", help="also write one static GLB per frame into this folder")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m actionmesh_core",
                                     description="ActionMesh: video -> animated 3D mesh (one topology) as a GLB.",
                                     epilog="exit status: 0 ok, 2 bad input (one line), 130 interrupted, 1 bug")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("video-to-4d", help="turn a video (folder of frames or a video file) into an animated GLB")
    v.add_argument("frames", help="folder of frames (RGBA PNGs, or <name>_image.png + <name>_mask.png pairs) or a "
                                  "video file")
    add_pipeline_options(v)
    add_output_options(v)
    add_frame_options(v)
    from .export import add_format_argument  # --format (glb, usdz, glb-skinned, abc, ...), --bones, --influences

    add_format_argument(v)
    t = sub.add_parser("make-tiny-weights",
                       help="write tiny RANDOM weights in the released layout (meaningless shapes; for tests/demos)")
    t.add_argument("dir")
    t.add_argument("--seed", type=int, default=0)
    from .batch.cli import add_batch_parser

    add_batch_parser(sub)
    from .eval.actionbench import add_evaluate_parser  # ActionBench metrics of a folder of predictions

    add_evaluate_parser(sub)
    return parser


def _video_to_4d(args) -> int:
    from .errors import OptionError, OutputPathError
    from .export import check_format_args
    from .perf import tune_cpu_allocator
    from .pipeline import ActionMeshPipeline
    from .stages import export_files, timed
    from .validation import validate_run

    tune_cpu_allocator()  # large temporary buffers reused instead of mapped afresh (this process only)
    start = time.perf_counter()
    try:  # unknown format / suffix / missing optional module: one-line error, before any model
        fmt, out = check_format_args(args)
    except ValueError as exc:
        # no --format: the output's suffix is what is wrong
        raise (OptionError if getattr(args, "format", None) else OutputPathError)(str(exc)) from None
    cfg = pipeline_config_from_args(args)
    plan = validate_run(args.frames, args.weights, cfg, mesh=args.mesh, out=out, out_suffixes=(out.suffix,),
                        frame_options=frame_options_from_args(args), per_frame_dir=args.per_frame_dir)
    for line in plan.warnings:
        print(f"warning: {line}", file=sys.stderr)
    result = ActionMeshPipeline(args.weights, cfg).run(plan)
    with timed(result.timings, "export"):
        path = export_files(result.animation, out, fmt, fps=plan.fps, interpolation=args.interpolation,
                            bones=args.bones, influences=args.influences, per_frame_dir=args.per_frame_dir).path
    anim = result.animation
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    print(f"wrote {path}: {anim.num_frames} frames, {anim.num_vertices} vertices, {len(anim.faces)} faces "
          f"({stages}; total {time.perf_counter() - start:.1f}s)")
    return EXIT_OK


def _os_error_line(exc: OSError) -> str:
    what = exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, getattr(exc, "filename2", None)) if p]
    if paths:
        return f"{what}: {' -> '.join(os.fsdecode(p) for p in paths)}"
    return what


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from .errors import one_line

    print(f"warning: {one_line(str(message))}", file=sys.stderr)


def print_interrupted() -> None:
    """The one line of an interrupted run, on a line of its own (a progress bar may be mid-line on stderr)."""
    print("\ninterrupted: stopped before finishing; no output file was written or changed", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI and return its exit status (see the module docstring).

    Bad input and OS errors print ``error: <one line>`` to stderr and return 2;
    Ctrl-C prints one line and returns 130; any other exception is a bug: its
    traceback is printed and 1 returned.
    """
    from .errors import InputError, one_line

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help (0)
        return int(exc.code or 0)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        if args.command == "make-tiny-weights":
            from .weights import make_tiny_weights

            root = make_tiny_weights(args.dir, seed=args.seed)
            print(f"wrote tiny random weights to {root} (meaningless shapes: for smoke tests and demos only)")
            return EXIT_OK
        if args.command == "batch":
            from .batch.cli import run_batch_command

            return run_batch_command(args)
        if args.command == "evaluate":
            from .eval.actionbench import run_evaluate_command

            return run_evaluate_command(args)
        return _video_to_4d(args)
    except KeyboardInterrupt:
        print_interrupted()
        return EXIT_INTERRUPTED
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # disk full, permission denied, ... at any stage: one line naming the path
        print(f"error: {one_line(_os_error_line(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: out of memory; try --low-memory, fewer frames (--max-frames) or --device cpu", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug: keep the traceback (out of GPU memory is not one)
        if type(exc).__name__ == "OutOfMemoryError":
            print("error: out of GPU memory; try --low-memory, --dtype bf16, fewer frames (--max-frames) or "
                  "--device cpu", file=sys.stderr)
            return EXIT_BAD_INPUT
        import traceback

        traceback.print_exc()
        print("this is a bug in actionmesh_core: please report it with the traceback above", file=sys.stderr)
        return EXIT_BUG
    finally:
        warnings.showwarning = previous


def run() -> None:
    """Console entry point (``actionmesh``, ``python -m actionmesh_core``): ``main()`` then exit.

    The process ends without the interpreter's teardown, which frees every
    module of torch and transformers one by one (~0.9 s measured on a 2-core
    machine after a run, ``benchmarks/bench_meshing.py --cpu-parts``):
    atexit handlers (logging, temporary folders, Ray) run and stdout/stderr
    are flushed as in a normal exit, then ``os._exit`` with ``main()``'s
    status. While a non-daemon thread is still running, a normal
    ``sys.exit`` waits for it instead.
    """
    import atexit
    import threading

    code = main()
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(code)

