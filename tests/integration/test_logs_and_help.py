"""Logs fit for non-terminals (no escape codes, one line per stage) and a help text for every flag."""
from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys

import pytest

import bad_input_cases as cases
import data_dirs
from actionmesh_core.cli import build_parser
from actionmesh_core.progress import LineProgress

ROOT = data_dirs.REPO_ROOT


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_flag_has_help_and_every_subcommand_its_exit_codes():
    parser = build_parser()
    subs = _subparsers(parser)
    assert set(subs) == {"video-to-4d", "make-tiny-weights", "batch", "evaluate"}
    for name, sub in subs.items():
        missing = [a.dest for a in sub._actions if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
        assert missing == [], (name, missing)
        text = sub.format_help()
        for code in ("0", "2", "130", "143", "129"):
            assert re.search(rf"\b{code}\b", text), (name, code)
    assert "3 some clips failed" in subs["batch"].format_help().replace("\n", " ").replace("  ", " ")
    for flag in ("--device", "--dtype", "--seed", "--interpolation"):
        action = next(a for a in subs["video-to-4d"]._actions if flag in a.option_strings)
        assert len(action.help) > 20, flag


def test_line_progress_is_one_line_per_stage_without_escape_codes():
    """Three windows of 30 steps and a 1-step stage: one line each when they end; with an interval, a line at
    most every interval seconds (here every step with 0)."""
    out = io.StringIO()
    progress = LineProgress(out, interval=1e9)
    for window in (1, 2, 3):
        for step in range(31):
            progress({"stage": "stage1", "step": step, "total": 30, "window": window, "num_windows": 3})
    progress({"stage": "stage2", "step": 0, "total": 1})
    progress({"stage": "stage2", "step": 1, "total": 1})
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["stage1: done", "stage2: done"], lines
    assert "90 steps" in lines[0]
    assert not re.search(r"[\r\x1b]", out.getvalue())
    every = io.StringIO()
    chatty = LineProgress(every, interval=0)
    for step in range(1, 4):
        chatty({"stage": "stage1", "step": step, "total": 3})
    assert every.getvalue().splitlines()[:2] == ["stage1: step 1/3 (0.0s)", "stage1: step 2/3 (0.0s)"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from actionmesh_core.weights import make_tiny_weights

    tmp = tmp_path_factory.mktemp("logs")
    return cases.World(tmp=tmp, frames=cases.write_frames(tmp / "frames", count=6), weights=make_tiny_weights(tmp / "w"),
                       out=tmp / "out" / "a.glb")


def test_a_run_logged_to_a_file_is_a_few_plain_lines(world, tmp_path):
    """stderr redirected to a file (ComfyUI's console, CI, a batch log): no carriage return, no cursor codes, no
    library progress bars, one line per stage."""
    import trimesh

    mesh = tmp_path / "m.glb"
    mesh.write_bytes(trimesh.creation.icosphere(1).export(file_type="glb"))
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "ACTIONMESH_PROGRESS_INTERVAL"}
    env["PYTHONPATH"] = str(ROOT)
    with open(log, "w") as handle:
        proc = subprocess.run([sys.executable, "-m", "actionmesh_core", *world.argv("--mesh", mesh, "--octree-depth", 5,
                                                                                 "--refine-depth", 5)],
                              stderr=handle, stdout=subprocess.PIPE, env=env, timeout=600, text=True)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert not re.search(r"[\r\x1b]", text), repr(text[:500])
    lines = text.splitlines()
    # one line per stage: DINOv2 features, stage I (its 30 steps in one line), stage II, the export
    assert [line.split(":")[0] for line in lines] == ["dinov2", "stage1", "stage2", "export"], lines
    assert lines[1].startswith("stage1: done, 30 steps in ") and lines[3].startswith("export: writing glb")
    assert "Loading weights" not in text
