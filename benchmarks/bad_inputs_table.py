"""Table of bad inputs: exit code, one-line message and seconds until the error (CLI, Python API, nodes).

Usage: ``python benchmarks/bad_inputs_table.py [--markdown]``. Builds tiny weights and frames in a
temporary folder, runs every case of ``tests/bad_input_cases.py`` through the CLI's ``main`` (in
process, imports already warm) and ``validate_run``, plus node cases, and prints one row per case.
Seconds are wall-clock from the call to the error.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import bad_input_cases as cases  # noqa: E402


def _row(rows, via, case, code, message, seconds):
    message = message.strip().replace("|", "\\|")
    rows.append((via, case, str(code), message[:160] + ("..." if len(message) > 160 else ""), f"{seconds:.2f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from actionmesh_core.cli import build_parser, frame_options_from_args, main as cli_main, pipeline_config_from_args
    from actionmesh_core.errors import InputError
    from actionmesh_core.validation import validate_run
    from actionmesh_core.weights import make_tiny_weights

    tmp = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    rows = []
    try:
        world = cases.World(tmp=tmp, frames=cases.write_frames(tmp / "frames"),
                            weights=make_tiny_weights(tmp / "weights"), out=tmp / "out" / "a.glb")
        for case in cases.CASES:
            argv = case.build(world)
            err = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stderr(err):
                code = cli_main(argv)
            _row(rows, "CLI", case.name, code, err.getvalue(), time.perf_counter() - start)
        for case in cases.CASES[::3]:
            a = build_parser().parse_args(case.build(world))
            start = time.perf_counter()
            try:
                validate_run(a.frames, a.weights, pipeline_config_from_args(a), mesh=a.mesh, out=a.out,
                             frame_options=frame_options_from_args(a), per_frame_dir=a.per_frame_dir)
                message, kind = "(accepted)", "-"
            except InputError as exc:
                message, kind = str(exc), type(exc).__name__
            _row(rows, "API", case.name, kind, message, time.perf_counter() - start)
        _node_rows(rows, tmp, world)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    header = ("via", "case", "exit / error", "message", "seconds")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in rows:
            print("\t".join(row))


def _node_rows(rows, tmp, world):
    import importlib.util
    import warnings

    import torch

    os.environ["ACTIONMESH_MODELS_DIR"] = str(tmp / "models")
    os.environ["ACTIONMESH_OUTPUT_DIR"] = str(tmp / "output")
    (tmp / "output").mkdir()
    spec = importlib.util.spec_from_file_location("actionmesh_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["actionmesh_pack"] = pack
    spec.loader.exec_module(pack)
    host = sys.modules["actionmesh_pack.nodes.host"]
    nodes = pack.NODES
    (tmp / "outside").mkdir()
    (tmp / "output" / "link").symlink_to(tmp / "outside", target_is_directory=True)
    den = tmp / "models" / "actionmesh" / "denoiser"
    shutil.copytree(world.weights / "ActionMesh" / "denoiser", den)
    cases._truncate(den / "model.safetensors")
    dino = tmp / "models" / "dinov2" / "dinov2-large"
    shutil.copytree(world.weights / "dinov2-large", dino)
    (dino / "model.safetensors").rename(dino / "pytorch_model.bin")
    images = torch.zeros(3, 64, 64, 4)
    images[:, 20:40, 20:40] = 1.0
    tiny = torch.zeros(3, 200, 300, 4)
    tiny[:, 100:102, 150:152] = 1.0
    node_cases = [
        ("prefix '../escape'", lambda: host.next_output_path("../escape", "glb")),
        ("prefix '/tmp/abs'", lambda: host.next_output_path("/tmp/abs", "glb")),
        ("prefix with a control character", lambda: host.next_output_path("run\x1b[31m", "glb")),
        ("prefix through a symlink outside", lambda: host.next_output_path("link/deep/x", "glb")),
        ("prefix in Cyrillic (accepted)", lambda: host.next_output_path("верблюд/run", "glb")),
        ("truncated denoiser in the loader", lambda: nodes["ActionMeshLoadDenoiser"].execute("denoiser", "fp32")),
        ("DINOv2 .bin only in the loader", lambda: nodes["ActionMeshLoadDINOv2"].execute("dinov2-large", "fp32")),
        ("Prepare Frames: start past the batch", lambda: nodes["ActionMeshPrepareFrames"].execute(
            images, 256, 0.1, 0.1, 5, 1, 0, 24.0, False)),
        ("Prepare Frames: one frame", lambda: nodes["ActionMeshPrepareFrames"].execute(
            images, 256, 0.1, 0.1, 0, 1, 1, 24.0, False)),
        ("Prepare Frames: mask batch of 2 for 3", lambda: nodes["ActionMeshPrepareFrames"].execute(
            images, 256, 0.1, 0.1, 0, 1, 0, 24.0, False, mask=torch.ones(2, 64, 64))),
        ("Prepare Frames: 2x2 px object (warning)", lambda: nodes["ActionMeshPrepareFrames"].execute(
            tiny, 256, 0.1, 0.1, 0, 1, 0, 24.0, False)),
    ]
    for name, call in node_cases:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                call()
                message, kind = "; ".join(str(w.message) for w in caught) or "(accepted)", "ok"
            except (ValueError, OSError) as exc:
                message, kind = str(exc), type(exc).__name__
        _row(rows, "node", name, kind, message, time.perf_counter() - start)
    leaked = list((tmp / "outside").iterdir())
    _row(rows, "node", "folders created outside through the symlink", "check", str(leaked or "none"), 0.0)


if __name__ == "__main__":
    main()
