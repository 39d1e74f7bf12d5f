"""Every bad input is refused up front, in one line, before any model loads (CLI and Python API).

The cases live in ``bad_input_cases.py`` (shared with benchmarks/bad_inputs_table.py).
Loading a model, reading a tensor or starting DINOv2 is patched to fail loudly, so a
check that comes "late" (inside a stage) fails these tests.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import bad_input_cases as cases
import data_dirs
from actionmesh_core import errors
from actionmesh_core.cli import build_parser, frame_options_from_args, main, pipeline_config_from_args
from actionmesh_core.validation import FrameOptions, validate_frames, validate_run
from actionmesh_core.weights import make_tiny_weights


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_inputs")
    weights = make_tiny_weights(tmp / "weights")
    frames = cases.write_frames(tmp / "frames")
    return cases.World(tmp=tmp, frames=frames, weights=weights, out=tmp / "out" / "result.glb")


@pytest.fixture()
def no_model_loads(monkeypatch):
    """Any model load or tensor read fails the test (the checks must come first)."""
    import safetensors.torch

    from actionmesh_core import pipeline
    from actionmesh_core.models.dino import DinoV2Encoder

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(pipeline, "load_model", forbidden)
    monkeypatch.setattr(DinoV2Encoder, "from_pretrained", classmethod(forbidden))
    monkeypatch.setattr(safetensors.torch, "load_file", forbidden)


IDS = [c.name for c in cases.CASES]


@pytest.mark.parametrize("case", cases.CASES, ids=IDS)
def test_cli_refuses_bad_input_in_one_line(case, world, no_model_loads, capfd):
    argv = case.build(world)
    code = main(argv)
    captured = capfd.readouterr()  # file-descriptor level: libraries' own prints (FFmpeg, ...) count too
    err = captured.err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert case.fragment in err, err
    assert not world.out.exists() and not world.out.parent.exists()  # nothing created before refusing


def _validate_like_the_cli(args):
    """validate_export then validate_run, as the command line calls them."""
    from actionmesh_core.export import FORMATS, ExportOptions
    from actionmesh_core.validation import validate_export

    fmt, out = validate_export(args.out, args.format, ExportOptions(interpolation=args.interpolation, bones=args.bones,
                                                                    influences=args.influences))
    return validate_run(args.frames, args.weights, pipeline_config_from_args(args), mesh=args.mesh, out=out,
                        out_suffixes=FORMATS[fmt].suffixes, frame_options=frame_options_from_args(args),
                        per_frame_dir=args.per_frame_dir, export_format=fmt)


@pytest.mark.parametrize("case", cases.CASES, ids=IDS)
def test_api_raises_the_error_type_of_the_problem(case, world, no_model_loads):
    args = build_parser().parse_args(case.build(world))
    with pytest.raises(errors.InputError) as info:
        _validate_like_the_cli(args)
    assert type(info.value).__name__ == case.error, str(info.value)
    assert isinstance(info.value, ValueError)  # existing `except ValueError` callers keep working
    assert "\n" not in str(info.value) and case.fragment in str(info.value)


def test_pipeline_run_checks_everything_before_loading(world, no_model_loads):
    from actionmesh_core.pipeline import ActionMeshPipeline, PipelineConfig

    broken = world.copy_weights("run_trunc")
    cases._truncate(broken / "ActionMesh/autoencoder/model.safetensors")
    with pytest.raises(errors.WeightsError, match="autoencoder"):
        ActionMeshPipeline(broken, PipelineConfig(device="cpu")).run(world.frames)
    with pytest.raises(errors.OptionError, match="steps"):
        ActionMeshPipeline(world.weights, PipelineConfig(device="cpu", steps=0)).run(world.frames)
    with pytest.raises(errors.FramesError, match="mixed RGB and RGBA|mix"):
        ActionMeshPipeline(world.weights, PipelineConfig(device="cpu")).run(
            [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.float32)])


def test_missing_weights_error_is_a_file_not_found_and_input_error(world):
    from actionmesh_core.weights import WeightLayout, WeightsMissingError

    with pytest.raises(WeightsMissingError) as info:
        WeightLayout(world.tmp / "nothing").check("video")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, errors.WeightsError)
    text = str(info.value)
    assert "\n" not in text and "VAST-AI/TripoSG" in text and "facebook/dinov2-large" in text


def test_valid_world_gives_a_plan(world, no_model_loads):
    plan = validate_run(world.frames, world.weights, out=world.out)
    assert plan.frames.images.shape[:3] == (4, cases.GOOD_SIZE, cases.GOOD_SIZE)
    assert plan.fps == 24.0 and plan.warnings == []
    assert set(plan.checkpoints) >= {"denoiser", "autoencoder", "vae", "transformer", "dinov2", "triposg_dinov2"}
    assert not world.out.parent.exists()  # checked, not created


def test_output_check_creates_nothing_and_probes_leave_nothing(tmp_path):
    from actionmesh_core.validation import validate_output_path

    target = tmp_path / "a" / "b" / "c.glb"
    validate_output_path(target)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "x.glb").write_bytes(b"old")
    validate_output_path(tmp_path / "x.glb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.glb"]


# --------------------------------------------------------------------------- frame input parity


def test_frame_start_stride_max_select_the_same_frames_as_the_node(tmp_path):
    folder = cases.write_frames(tmp_path / "f", count=10)
    checked = validate_frames(folder, FrameOptions(start=2, stride=3, max_frames=2))
    assert checked.indices == [2, 5]
    ten = validate_frames(folder).images
    torch.testing.assert_close(checked.images, ten[[2, 5]])
    assert checked.fps == pytest.approx(8.0)  # 24 / stride 3


def test_video_frame_rate_is_the_default_fps(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (64, 64))
    for i in range(6):
        img = np.full((64, 64, 3), 255, np.uint8)
        img[10:40, 10 + i:40 + i] = 30
        writer.write(img)
    writer.release()
    assert validate_frames(path).fps == pytest.approx(12.0)
    halved = validate_frames(path, FrameOptions(stride=2, start=1))
    assert halved.fps == pytest.approx(6.0) and halved.indices == [1, 3, 5]
    assert validate_frames(path, FrameOptions(fps=30.0)).fps == pytest.approx(30.0)


def test_image_mask_pair_folders_use_masks_not_frames(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(3):
        img = np.full((64, 64, 3), 128, np.uint8)  # no plain background: only the masks find the object
        img[::2] = 200
        Image.fromarray(img).save(folder / f"{i}_image.png")
        mask = np.zeros((64, 64), np.uint8)
        mask[10:30, 20 + i:40 + i] = 255
        Image.fromarray(mask).save(folder / f"{i}_mask.png")
    checked = validate_frames(folder)
    assert checked.images.shape[0] == 3 and checked.masks is not None
    assert checked.prepared.bbox == (20, 10, 42, 30)


def test_mask_dir_by_name_and_inverted(tmp_path):
    frames = cases.write_frames(tmp_path / "f", count=3, alpha=False)
    masks = tmp_path / "m"
    masks.mkdir()
    for i in range(3):
        m = np.full((cases.GOOD_SIZE, cases.GOOD_SIZE), 255, np.uint8)  # white background: needs --invert-mask
        m[5:25, 50:70] = 0
        Image.fromarray(m).save(masks / f"{i:04d}_mask.png")
    checked = validate_frames(frames, FrameOptions(mask_dir=masks, invert_mask=True))
    assert checked.prepared.bbox == (50, 5, 70, 25)


def test_tiny_object_warns_and_keeps_a_minimum_crop(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for i in range(3):
        img = np.zeros((200, 300, 4), np.uint8)
        img[100:102, 150 + i:152 + i] = 255
        Image.fromarray(img).save(folder / f"{i}.png")
    checked = validate_frames(folder)
    assert any("only 4x2 px" in w for w in checked.warnings), checked.warnings
    x0, y0, x1, y1 = checked.prepared.crop_box
    assert x1 - x0 >= 63  # not blown up to the object's own 4 px
    big = validate_frames(cases.write_frames(tmp_path / "big"))
    assert big.warnings == []


def test_cli_prints_the_tiny_object_warning_in_one_line(tmp_path, world, monkeypatch, capsys):
    import trimesh

    from actionmesh_core import pipeline
    from actionmesh_core.io.animated_mesh import AnimatedMesh

    folder = tmp_path / "tiny"
    folder.mkdir()
    for i in range(2):
        img = np.zeros((64, 64, 4), np.uint8)
        img[30:33, 30:33] = 255
        Image.fromarray(img).save(folder / f"{i}.png")
    box = trimesh.creation.box()
    anim = AnimatedMesh(faces=np.asarray(box.faces), vertices=np.stack([box.vertices] * 2).astype(np.float32),
                        times=np.array([0, 1 / 24], np.float32))
    monkeypatch.setattr(pipeline.ActionMeshPipeline, "run",
                        lambda self, plan, **k: pipeline.PipelineResult(anim, None, None, {}))
    assert main(world.argv(frames=folder, out=tmp_path / "tiny.glb")) == 0
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("export: ")]
    assert len(err) == 1 and err[0].startswith("warning: the object is only 3x3 px"), err


# --------------------------------------------------------------------------- accepted inputs and up-front rules


def _fake_run(monkeypatch, frames=4):
    import trimesh

    from actionmesh_core import pipeline
    from actionmesh_core.io.animated_mesh import AnimatedMesh

    box = trimesh.creation.box()
    anim = AnimatedMesh(faces=np.asarray(box.faces), vertices=np.stack([box.vertices + 0.1 * k for k in range(frames)])
                        .astype(np.float32), times=np.arange(frames, dtype=np.float32) / 24)
    monkeypatch.setattr(pipeline.ActionMeshPipeline, "run",
                        lambda self, plan, **k: pipeline.PipelineResult(anim, None, None, {}))


def test_output_suffix_is_compared_in_any_case(world, tmp_path, monkeypatch, capsys):
    """`--out x.GLB` is a GLB (no "must end in .GLB" refusal); `--out x.USDZ --format usdz` too."""
    from actionmesh_core.io.glb import read_animated_glb
    from actionmesh_core.validation import validate_output_path

    assert validate_output_path(tmp_path / "x.GLB", (".glb",)) == tmp_path / "x.GLB"
    assert validate_output_path(tmp_path / "x.glb", (".GLB",)) == tmp_path / "x.glb"
    _fake_run(monkeypatch)
    assert main(world.argv(out=tmp_path / "x.GLB")) == 0, capsys.readouterr().err
    assert read_animated_glb(tmp_path / "x.GLB").num_frames == 4
    args = build_parser().parse_args(world.argv("--format", "usdz", out=tmp_path / "y.USDZ"))
    assert _validate_like_the_cli(args).out == tmp_path / "y.USDZ"


def test_os_junk_is_skipped_with_one_note_and_symlinked_frames_are_frames(tmp_path):
    folder = cases.write_frames(tmp_path / "f", count=3)
    plain = validate_frames(folder)
    for name in ("._0000.png", "._0001.png", ".DS_Store", "Thumbs.db"):
        (folder / name).write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    checked = validate_frames(folder)
    torch.testing.assert_close(checked.images, plain.images)
    notes = [w for w in checked.warnings if "operating-system metadata" in w]
    assert len(notes) == 1 and "._0000.png" in notes[0] and "4 operating-system" in notes[0], checked.warnings
    # a folder of symbolic links to the frames (as a dataset tool makes) reads the same frames
    links = tmp_path / "links"
    links.mkdir()
    for k in range(3):
        (links / f"{k:04d}.png").symlink_to(folder / f"{k:04d}.png")
    torch.testing.assert_close(validate_frames(links).images, plain.images)
    # the batch hashes the same files
    from actionmesh_core.batch.state import frames_digest

    assert frames_digest(folder) == frames_digest(cases.write_frames(tmp_path / "clean", count=3))


def test_frames_without_alpha_in_an_rgba_folder_are_fine_with_masks(tmp_path):
    """The RGBA/RGB mix is refused only where alpha is the mask: with a mask folder it does not matter."""
    folder = tmp_path / "mix"
    cases._mixed_alpha(folder)
    with pytest.raises(errors.FramesError, match="0002.png"):
        validate_frames(folder)
    masks = tmp_path / "m"
    masks.mkdir()
    for k in range(4):
        m = np.zeros((cases.GOOD_SIZE, cases.GOOD_SIZE), np.uint8)
        m[20:60, 10 + 3 * k:50 + 3 * k] = 255
        Image.fromarray(m).save(masks / f"{k:04d}.png")
    assert validate_frames(folder, FrameOptions(mask_dir=masks)).prepared is not None


def test_out_through_a_link_to_an_input_is_refused(world, tmp_path, no_model_loads):
    """Any path to an input file (a symbolic or hard link) is that file."""
    import trimesh

    mesh = tmp_path / "m.glb"
    mesh.write_bytes(trimesh.creation.icosphere(1).export(file_type="glb"))
    link = tmp_path / "link.glb"
    link.symlink_to(mesh)
    hard = tmp_path / "hard.glb"
    os.link(mesh, hard)
    for out in (link, hard):
        args = build_parser().parse_args(world.argv("--mesh", mesh, out=out))
        with pytest.raises(errors.OutputPathError, match="is an input of this run"):
            _validate_like_the_cli(args)
    # a per-frame file that would land on an input is refused too
    frames_as_outputs = tmp_path / "pf"
    frames_as_outputs.mkdir()
    shutil_mesh = frames_as_outputs / "a_001.glb"
    os.link(mesh, shutil_mesh)
    args = build_parser().parse_args(world.argv("--mesh", shutil_mesh, "--per-frame-dir", frames_as_outputs,
                                                out=tmp_path / "a.glb"))
    with pytest.raises(errors.OutputPathError, match="a_001.glb"):
        _validate_like_the_cli(args)


def test_output_that_clearly_cannot_fit_is_refused_before_any_model(world, tmp_path, monkeypatch, no_model_loads):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 2000, 2000))
    args = build_parser().parse_args(world.argv(out=tmp_path / "a.glb"))
    with pytest.raises(errors.OutputPathError, match="not enough free space for glb output"):
        _validate_like_the_cli(args)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 12, 0, 10 ** 12))
    _validate_like_the_cli(args)


def test_weight_values_are_streamed_once_then_remembered_until_the_file_changes(world, tmp_path):
    """A file that passed is not read again; any change to it (a re-download over it) is read again, so a
    corrupted copy is still caught."""
    from actionmesh_core.validation import validate_weight_values, validate_weights
    from actionmesh_core.weights import WeightLayout

    root = world.copy_weights("remembered")
    cache = tmp_path / "checked.json"
    found = validate_weights(root, "video+mesh", values=False)
    layout = WeightLayout(root)
    first = validate_weight_values(found, layout, cache)
    assert first > 0 and cache.is_file()
    assert validate_weight_values(found, layout, cache) == 0  # every file remembered
    assert validate_weight_values(found, layout, None) == first  # no memory: everything read again
    cases._poison(root / "ActionMesh/autoencoder/model.safetensors")
    with pytest.raises(errors.WeightsError, match="autoencoder/model.safetensors: tensor .* NaN"):
        validate_weight_values(validate_weights(root, "video+mesh", values=False), layout, cache)


def test_weight_value_check_keeps_memory_flat(tmp_path):
    """The scan reads a 256 MiB file through one 16 MiB buffer: a fresh process grows by far less than the file
    (reading it whole, as loading does, would grow it by the file's size)."""
    import subprocess
    import sys

    from safetensors.torch import save_file

    path = tmp_path / "big.safetensors"
    save_file({f"w{k}": torch.randn(4096, 4096) for k in range(4)}, str(path))
    code = f"""
import resource, torch
from actionmesh_core.checkpoints import check_tensor_values
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert check_tensor_values({str(path)!r}) == 4 * 4096 * 4096 * 4
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    root = str(data_dirs.REPO_ROOT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip()) < 48, proc.stdout
