"""Batch conversion, local engine: inputs and manifests, content hashes, failures recorded, resume, Ctrl-C.

Tiny random weights, 4-frame 48 px clips and a 42-vertex anchor mesh keep each clip to a few seconds on CPU.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import data_dirs
from actionmesh_core.batch import BatchSettings, ClipSpec, ManifestError, plan_batch, read_inputs, run_batch
from actionmesh_core.batch.state import record_path, remove_stale_temps
from actionmesh_core.batch.worker import _ResidentPipeline
from actionmesh_core.cli import main
from actionmesh_core.io.glb import read_animated_glb
from actionmesh_core.weights import make_tiny_weights
from batch_helpers import (FAST, SPHERE_VERTICES, fast_config, make_clip, make_corrupt_clip, make_mesh, read_report,
                           temp_files, write_csv)

ROOT = data_dirs.REPO_ROOT


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def sphere(tmp_path_factory):
    return make_mesh(tmp_path_factory.mktemp("mesh") / "sphere.ply")


# --------------------------------------------------------------------------- inputs and manifests


def test_read_inputs_folder_of_clips_manifests_and_options(tmp_path):
    lib = tmp_path / "lib"
    for name in ("clip10", "clip2", "clip1"):
        make_clip(lib / name, frames=2)
    (lib / "notes.txt").write_text("not a clip")
    clips = read_inputs([lib])
    assert [c.name for c in clips] == ["clip1", "clip2", "clip10"]  # natural order, non-clips ignored
    assert all(c.frames.is_absolute() for c in clips)

    sub = tmp_path / "sets"
    sub.mkdir()
    csv = write_csv(sub / "m.csv", [
        {"clip": "../lib/clip1", "name": "first", "mesh": "", "anchor_frame": "1", "seed": "7", "mode": "attention-chain",
         "format": "GLB", "fps": "12.5", "interpolation": "linear", "chain_reinforce": "yes"},
        {"clip": str(lib / "clip2"), "name": "", "mesh": "m.ply", "anchor_frame": "", "seed": "", "mode": "",
         "format": "", "fps": "", "interpolation": "", "chain_reinforce": ""}])
    jsonl = sub / "m.jsonl"
    jsonl.write_text('{"clip": "../lib/clip10", "steps": 3, "seed": -2}\n\n')
    first, second, third = read_inputs([csv, jsonl])
    # relative paths are relative to the manifest's folder; empty cells fall back to the batch settings
    assert first.frames == lib / "clip1"
    assert first.options == {"anchor_frame": 1, "seed": 7, "mode": "attention-chain", "format": "glb", "fps": 12.5,
                             "interpolation": "LINEAR", "chain_reinforce": True}
    assert second.name == "clip2" and second.options == {} and second.mesh == sub / "m.ply"
    assert third.name == "clip10" and third.options == {"steps": 3, "seed": -2}
    assert first.source == "m.csv line 2" and third.source == "m.jsonl line 1"


@pytest.mark.parametrize("content, message", [
    ("clip,anchr_frame\nx,1\n", "m.csv line 2: unknown column 'anchr_frame'"),
    ("clip,anchor_frame\nx,-1\n", "m.csv line 2: column 'anchor_frame' must be >= 0"),
    ("clip,steps\nx,two\n", "m.csv line 2: column 'steps' expected an integer"),
    ("clip,mode\nx,stage3\n", "column 'mode' must be one of stage2, attention-chain"),
    ("clip,format\nx,fbx2\n", "column 'format' must be one of glb, glb-skinned"),
    ("clip,fps\nx,0\n", "column 'fps' must be a finite number > 0"),
    ("clip,name\nx,../up\n", "is not a plain file name"),
    ("clip,seed\n,1\n", "m.csv line 2: the 'clip' column"),
    ("frames,seed\nx,1\n", "has no 'clip' column"),
    ("clip\n", "lists no clips"),
])
def test_manifest_errors_name_file_line_and_column(tmp_path, content, message):
    path = tmp_path / "m.csv"
    path.write_text(content)
    with pytest.raises(ManifestError) as info:
        read_inputs([path])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_duplicate_output_names_and_missing_inputs_are_refused(tmp_path):
    make_clip(tmp_path / "a" / "frames", frames=2)
    make_clip(tmp_path / "b" / "frames", frames=2)
    with pytest.raises(ManifestError, match="two clips have the output name 'frames'.*'name' column"):
        read_inputs([tmp_path / "a" / "frames", tmp_path / "b" / "frames"])
    with pytest.raises(ManifestError, match="does not exist"):
        read_inputs([tmp_path / "nope"])
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"clip": "a"\n')
    with pytest.raises(ManifestError, match="m.jsonl line 1: not valid JSON"):
        read_inputs([bad])


# --------------------------------------------------------------------------- content hash and records


def test_content_hash_follows_inputs_and_result_settings_only(tmp_path, tiny_weights, sphere):
    clip = make_clip(tmp_path / "clip", frames=2)
    settings = BatchSettings(weights=tiny_weights, out_dir=tmp_path / "out", config=fast_config())

    def digest(spec=None, **config):
        s = BatchSettings(weights=settings.weights, out_dir=settings.out_dir,
                          config=fast_config().__class__(**{**fast_config().__dict__, **config}))
        jobs, rows = plan_batch([spec or ClipSpec("clip", clip)], s)
        return jobs[0].hash

    base = digest()
    assert digest() == base
    assert digest(device="auto", low_memory=True) == base  # device/memory options do not change the result
    assert digest(seed=1) != base and digest(octree_depth=6) != base
    assert digest(ClipSpec("clip", clip, options={"format": "glb", "anchor_frame": 1})) != base
    assert digest(ClipSpec("clip", clip, mesh=sphere)) != base
    png = clip / "01.png"
    png.write_bytes(png.read_bytes() + b"\0")  # one byte more in one frame
    assert digest() != base


def test_content_hash_changes_with_every_per_clip_frame_option(tmp_path, tiny_weights):
    """Each frame option a manifest row may set changes the clip's hash (its result differs), one at a time."""
    clip = make_clip(tmp_path / "clip", frames=4)
    masks = make_clip(tmp_path / "masks", frames=4, seed=3)
    settings = BatchSettings(weights=tiny_weights, out_dir=tmp_path / "out", config=fast_config())

    def digest(**options):
        jobs, rows = plan_batch([ClipSpec("clip", clip, options=options)], settings)
        assert not rows, rows
        return jobs[0].hash

    base = digest()
    changed = {"fps": 12.0, "frame_start": 1, "frame_stride": 2, "max_frames": 3, "margin": 0.25,
               "mask_dir": str(masks)}
    hashes = {name: digest(**{name: value}) for name, value in changed.items()}
    assert all(h != base for h in hashes.values()), hashes
    assert len(set(hashes.values())) == len(hashes)  # and each differently
    png = masks / "01.png"  # the mask files' bytes count too
    png.write_bytes(png.read_bytes() + b"\0")
    assert digest(mask_dir=str(masks)) != hashes["mask_dir"]


def test_batch_refuses_fps_0_up_front(tmp_path, tiny_weights, capfd):
    """`batch --fps 0` stops before any clip is read or converted (exit 2, one line), and a manifest row's fps 0
    is a manifest error."""
    clip = make_clip(tmp_path / "clip")
    out = tmp_path / "out"
    code = main(["batch", str(clip), "--out", str(out), "--weights", str(tiny_weights), "--fps", "0", *FAST])
    err = capfd.readouterr().err.strip()
    assert code == 2 and err.startswith("error: fps must be") and "\n" not in err, err
    assert not out.exists()
    with pytest.raises(ManifestError, match="fps"):
        read_inputs([write_csv(tmp_path / "m.csv", [{"clip": str(clip), "fps": "0"}])])


def test_each_fps_check_refuses_on_its_own():
    """The run options' fps (PipelineConfig) and the frame options' fps (FrameOptions) are each checked: either
    check alone refuses 0, a negative, NaN, 1e-300 and 1e6 (so neither relies on the other)."""
    from actionmesh_core.errors import OptionError
    from actionmesh_core.pipeline import PipelineConfig
    from actionmesh_core.validation import FrameOptions, check_frame_options, validate_options

    for bad in (0.0, -5.0, float("nan"), 1e-300, 1e6):
        with pytest.raises(OptionError, match="fps"):
            validate_options(PipelineConfig(device="cpu", fps=bad))
        with pytest.raises(OptionError, match="fps"):
            check_frame_options(FrameOptions(fps=bad))
    validate_options(PipelineConfig(device="cpu", fps=0.5))
    check_frame_options(FrameOptions(fps=0.5))


def test_degenerate_mesh_is_an_input_error_of_its_clip(tmp_path, tiny_weights, sphere):
    """A reference mesh whose vertices all sit at one point: the clip fails with error kind `input` (found by the
    clip's checks, before its models run) and the batch goes on."""
    import trimesh

    point = trimesh.Trimesh([[0.5, 0.5, 0.5]] * 3 + [[0.5, 0.5, 0.5]], [[0, 1, 2], [1, 2, 3]], process=False)
    flat = tmp_path / "point.obj"
    flat.write_text(point.export(file_type="obj"))
    clips = [ClipSpec("flat", make_clip(tmp_path / "a"), mesh=flat), ClipSpec("ok", make_clip(tmp_path / "b"),
                                                                          mesh=sphere)]
    summary = run_batch(clips, BatchSettings(weights=tiny_weights, out_dir=tmp_path / "out", config=fast_config()),
                        progress=False)
    flat_row, ok_row = summary.rows
    assert flat_row["status"] == "failed" and flat_row["error_kind"] == "input", flat_row
    assert "surface area is 0" in flat_row["error"] and "traceback" not in flat_row
    assert ok_row["status"] == "done"


def test_remove_stale_temps_only_touches_this_clips_temporary_files(tmp_path):
    names = [".a.abcd1234.glb.tmp", ".a.b.abcd1234.glb.tmp", ".ab.abcd1234.glb.tmp", "a.glb",
             ".a.abcd1234.actionmesh.json.tmp"]
    for name in names:
        (tmp_path / name).write_text("x")
    folders = [".a.actionmesh-staging-abcd_123", ".ab.actionmesh-staging-abcd_123", ".a.actionmesh-staging-x"]
    for name in folders:
        (tmp_path / name).mkdir()
        (tmp_path / name / "a_0000.obj").write_text("x")
    removed = remove_stale_temps([tmp_path / "a.glb"])
    assert sorted(p.name for p in removed) == [".a.abcd1234.glb.tmp", ".a.actionmesh-staging-abcd_123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        set(names + folders) - {".a.abcd1234.glb.tmp", ".a.actionmesh-staging-abcd_123"})


# --------------------------------------------------------------------------- the local engine end to end


def _library(tmp_path, sphere):
    lib = tmp_path / "lib"
    for k, name in enumerate(("a", "b")):
        make_clip(lib / name, seed=k)
    make_corrupt_clip(lib / "corrupt")
    (lib / "bad_mesh.obj").write_text("this is not a mesh\n")
    rows = [{"clip": "a", "mesh": str(sphere), "seed": "1"}, {"clip": "b", "mesh": str(sphere), "seed": ""},
            {"clip": "corrupt", "mesh": str(sphere), "seed": ""},
            {"clip": "a", "mesh": "bad_mesh.obj", "seed": "", "name": "a_bad_mesh"},
            {"clip": "missing", "mesh": str(sphere), "seed": ""}]
    return write_csv(lib / "clips.csv", [{**r, "name": r.get("name", "")} for r in rows])


def test_local_batch_records_failures_goes_on_and_resumes(tmp_path, tiny_weights, sphere, capsys):
    manifest = _library(tmp_path, sphere)
    out = tmp_path / "out"
    argv = ["batch", str(manifest), "--out", str(out), "--weights", str(tiny_weights), "--no-progress", *FAST]
    assert main(argv) == 3  # some clips failed
    report = read_report(out)
    assert [report[n]["status"] for n in ("a", "b", "corrupt", "a_bad_mesh", "missing")] == \
        ["done", "done", "failed", "failed", "failed"]
    assert report["corrupt"]["error_kind"] == "input" and "corrupt" in report["corrupt"]["error"]
    assert report["a_bad_mesh"]["error_kind"] == "input" and "bad_mesh.obj" in report["a_bad_mesh"]["error"]
    assert report["missing"]["error_kind"] == "input" and "does not exist" in report["missing"]["error"]
    for name in ("a", "b"):
        anim = read_animated_glb(out / f"{name}.glb")
        assert anim.num_frames == 4 and anim.num_vertices == SPHERE_VERTICES
        assert report[name]["outputs"] == [str(out / f"{name}.glb")]
        assert {"checks", "stage0", "dinov2", "stage1", "stage2", "export"} <= set(report[name]["seconds"])
        record = json.loads(record_path(out, name).read_text())
        assert record["hash"] == report[name]["hash"] and record["outputs"][0]["path"] == f"{name}.glb"
    # the per-clip seed reached the pipeline: same frames would otherwise give the same animation
    assert report["a"]["hash"] != report["b"]["hash"]
    assert sorted(p.name for p in out.iterdir()) == ["a.actionmesh.json", "a.glb", "b.actionmesh.json", "b.glb",
                                                   "report.jsonl"]
    table = capsys.readouterr().out
    assert "2 done, 3 failed (5 clips)" in table and "[input]" in table

    # second run: the two done clips are skipped (files untouched), the failures are tried again
    stamps = {n: (out / f"{n}.glb").stat().st_mtime_ns for n in ("a", "b")}
    assert main(argv) == 3
    report = read_report(out)
    assert report["a"]["status"] == report["b"]["status"] == "skipped"
    assert report["a"]["outputs"] == [str(out / "a.glb")]
    assert {n: (out / f"{n}.glb").stat().st_mtime_ns for n in ("a", "b")} == stamps

    # a truncated output is not "done": it is redone; --force redoes everything
    data = (out / "b.glb").read_bytes()
    (out / "b.glb").write_bytes(data[:100])
    clips = read_inputs([manifest])[:2]
    settings = BatchSettings(weights=tiny_weights, out_dir=out, config=fast_config())
    summary = run_batch(clips, settings, progress=False)
    assert [r["status"] for r in summary.rows] == ["skipped", "done"]
    assert (out / "b.glb").read_bytes() == data  # same inputs and settings -> the same file again
    settings.force = True
    summary = run_batch(clips, settings, progress=False)
    assert [r["status"] for r in summary.rows] == ["done", "done"] and summary.counts == {"done": 2}


def test_models_are_loaded_once_for_the_whole_batch(tmp_path, tiny_weights, sphere, monkeypatch):
    loads = []
    original = _ResidentPipeline.model

    def counting(self, component):
        if component not in self._models:
            loads.append(component)
        return original(self, component)

    monkeypatch.setattr(_ResidentPipeline, "model", counting)
    clips = [ClipSpec(f"c{k}", make_clip(tmp_path / f"c{k}", seed=k), mesh=sphere) for k in range(3)]
    summary = run_batch(clips, BatchSettings(weights=tiny_weights, out_dir=tmp_path / "out", config=fast_config()),
                        progress=False)
    assert summary.counts == {"done": 3}
    assert sorted(loads) == sorted(set(loads)) and "denoiser" in loads  # each model loaded once, not per clip


def test_out_of_memory_is_recorded_and_the_batch_goes_on(tmp_path, tiny_weights, sphere, monkeypatch):
    original = _ResidentPipeline.run

    def run(self, frames, mesh=None):
        if self.config.seed == 666:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, frames, mesh=mesh)

    monkeypatch.setattr(_ResidentPipeline, "run", run)
    clips = [ClipSpec("big", make_clip(tmp_path / "big"), mesh=sphere, options={"seed": 666}),
             ClipSpec("small", make_clip(tmp_path / "small"), mesh=sphere)]
    out = tmp_path / "out"
    summary = run_batch(clips, BatchSettings(weights=tiny_weights, out_dir=out, config=fast_config()), progress=False)
    big, small = summary.rows
    assert big["status"] == "failed" and big["error_kind"] == "oom" and "--low-memory" in big["error"]
    assert small["status"] == "done" and (out / "small.glb").is_file() and not (out / "big.glb").exists()


def test_interrupt_mid_clip_keeps_finished_clips_leaves_no_partial_file_and_resumes(tmp_path, tiny_weights, sphere):
    clips = [ClipSpec(f"c{k}", make_clip(tmp_path / f"c{k}", seed=k), mesh=sphere) for k in range(3)]
    out = tmp_path / "out"
    settings = BatchSettings(weights=tiny_weights, out_dir=out, config=fast_config())

    def ctrl_c_in_second_clip(event):
        # Ctrl-C arrives while c1 is inside stage I (KeyboardInterrupt raised in the main thread, as SIGINT does)
        if event["event"] == "status" and event.get("clip") == "c1" and event.get("stage") == "stage1":
            raise KeyboardInterrupt

    summary = run_batch(clips, settings, progress=False, on_event=ctrl_c_in_second_clip)
    assert summary.interrupted
    assert [r["status"] for r in summary.rows] == ["done", "interrupted", "pending"]
    assert sorted(p.name for p in out.iterdir()) == ["c0.actionmesh.json", "c0.glb", "report.jsonl"]
    assert [r["status"] for r in read_report(out).values()] == ["done", "interrupted", "pending"]

    # the next run picks up where it stopped
    summary = run_batch(clips, settings, progress=False)
    assert [r["status"] for r in summary.rows] == ["skipped", "done", "done"] and not summary.interrupted
    assert temp_files(out) == []


@pytest.mark.parametrize("name, status", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_cli_signal_records_the_clip_as_interrupted_without_partial_files(tmp_path, tiny_weights, sphere, name,
                                                                          status):
    """A real SIGINT / SIGTERM / SIGHUP to `python -m actionmesh_core batch` while it converts the second of 3
    clips: exit 128 + signal, the clip recorded as interrupted (naming the signal), no partial file; the same
    command then resumes."""
    clips = [make_clip(tmp_path / "lib" / f"c{k}", seed=k) for k in range(3)]
    # c1 and c2 denoise for 1000 steps (seconds on the tiny weights), so the signal lands inside c1
    manifest = write_csv(tmp_path / "m.csv", [{"clip": str(c), "mesh": str(sphere), "steps": 2 if k == 0 else 1000}
                                              for k, c in enumerate(clips)])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "actionmesh_core", "batch", str(manifest), "--out", str(out), "--weights",
           str(tiny_weights), "--no-progress", *FAST]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not record_path(out, "c0").exists():  # wait until the first clip is done: c1 starts at once
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "first clip not done in time"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(getattr(signal, name))
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, stderr
    assert "run the same command again" in stderr and "Traceback" not in stderr
    assert (out / "c0.glb").is_file() and temp_files(out) == []
    report = read_report(out)
    assert report["c0"]["status"] == "done" and report["c2"]["status"] in ("pending", "interrupted")
    assert report["c1"]["status"] == "interrupted", report["c1"]
    assert ("Ctrl-C" if name == "SIGINT" else name) in report["c1"]["error"]
    # every output present has its record (no output without the hash that makes it skippable)
    for glb in out.glob("*.glb"):
        assert record_path(out, glb.stem).is_file()
    if name == "SIGTERM":  # resumable: the same command converts what is left
        again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        assert [r["status"] for r in read_report(out).values()] == ["skipped", "done", "done"]
