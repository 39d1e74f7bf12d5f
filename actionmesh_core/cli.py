"""Command line: ``python -m actionmesh_core {video-to-4d, make-tiny-weights}``.

Exit status: 0 success; 2 bad input or an OS error (one line naming the value
or path, no traceback); 130 / 143 / 129 stopped by Ctrl-C / SIGTERM / SIGHUP
(one line, no partial output: every file is written atomically, see
:mod:`actionmesh_core.interrupts`); 1 a bug (with its traceback).

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
           "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_HANGUP", "EXIT_STATUS"]

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_HANGUP = 0, 1, 2, 130, 143, 129
#: the exit statuses, for the help texts
EXIT_STATUS = ("exit status: 0 done; 2 bad input or an OS error such as a full disk (one line naming the value or "
               "path, found before any model loads where it can be); 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (one line; "
               "no partial or temporary file left, previous outputs unchanged); 1 a bug (with its traceback)")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Where and how the animation is written."""
    parser.add_argument("--out", required=True,
                        help="output path: animated .glb, or a file of --format's suffix (any case); never one of "
                             "the input files")
    add_interpolation_option(parser)
    parser.add_argument("--per-frame-dir", help="also write one static GLB per frame into this folder")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m actionmesh_core",
                                     description="ActionMesh: video -> animated 3D mesh (one topology) as a GLB.",
                                     epilog=EXIT_STATUS + ". batch: 3 when some clips failed.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("video-to-4d", help="turn a video (folder of frames or a video file) into an animated GLB",
                       description="Turn a video (folder of frames or a video file) into an animated mesh with one "
                                   "topology, written as an animated GLB or any --format. Every input is checked "
                                   "before any model loads.", epilog=EXIT_STATUS)
    v.add_argument("frames", help="folder of frames (RGBA PNGs, or <name>_image.png + <name>_mask.png pairs; "
                                  "symbolic links count, ._* / .DS_Store / Thumbs.db are skipped) or a video file")
    add_pipeline_options(v)
    add_output_options(v)
    add_frame_options(v)
    from .export import add_format_argument  # --format (glb, usdz, glb-skinned, abc, ...), --bones, --influences

    add_format_argument(v)
    t = sub.add_parser("make-tiny-weights",
                       help="write tiny RANDOM weights in the released layout (meaningless shapes; for tests/demos)",
                       description="Write tiny random-weight checkpoints in the released folder layout (ActionMesh/, "
                                   "TripoSG/, dinov2-large/): the meshes they make are meaningless; for smoke tests, "
                                   "demos and CI.", epilog=EXIT_STATUS)
    t.add_argument("dir", help="folder to write the weights into (created; give it to --weights)")
    t.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    from .batch.cli import add_batch_parser

    add_batch_parser(sub)
    from .eval.actionbench import add_evaluate_parser  # ActionBench metrics of a folder of predictions

    add_evaluate_parser(sub)
    return parser


def _video_to_4d(args) -> int:
    from .export import FORMATS, ExportOptions
    from .perf import tune_cpu_allocator
    from .pipeline import ActionMeshPipeline
    from .progress import is_terminal
    from .stages import export_files, timed
    from .validation import validate_export, validate_run

    tune_cpu_allocator()  # large temporary buffers reused instead of mapped afresh (this process only)
    start = time.perf_counter()
    # format, suffix (any case; a suffix of another format is refused), bones/influences, optional module
    fmt, out = validate_export(args.out, getattr(args, "format", None),
                               ExportOptions(interpolation=args.interpolation, bones=args.bones,
                                             influences=args.influences))
    cfg = pipeline_config_from_args(args)
    plan = validate_run(args.frames, args.weights, cfg, mesh=args.mesh, out=out, out_suffixes=FORMATS[fmt].suffixes,
                        frame_options=frame_options_from_args(args), per_frame_dir=args.per_frame_dir,
                        export_format=fmt)
    for line in plan.warnings:
        print(f"warning: {line}", file=sys.stderr)
    result = ActionMeshPipeline(args.weights, cfg).run(plan)
    if not is_terminal():  # a log: one line per stage
        print(f"export: writing {fmt} to {out}", file=sys.stderr, flush=True)
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


def print_interrupted(exc: Optional[BaseException] = None) -> None:
    """The one line of an interrupted run, on a line of its own (a progress bar may be mid-line on stderr)."""
    from .interrupts import message

    print(f"\n{message(exc)}", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI and return its exit status (see the module docstring).

    Bad input and OS errors print ``error: <one line>`` to stderr and return 2;
    Ctrl-C, SIGTERM and SIGHUP (handled alike while it runs) print one line and
    return 130, 143 and 129; any other exception is a bug: its traceback is
    printed and 1 returned.
    """
    from .interrupts import handle_signals

    with handle_signals():
        return _main(argv)


def _main(argv: Optional[List[str]]) -> int:
    from .errors import InputError, one_line
    from .interrupts import exit_code

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
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP (actionmesh_core.interrupts)
        print_interrupted(exc)
        return exit_code(exc)
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

