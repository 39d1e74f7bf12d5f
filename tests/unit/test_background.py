"""Background removal of RGB frames without alpha (release: RMBG-1.4, Otsu threshold, small-component clean-up).

A tiny ONNX salient-object model is built here with the ``onnx`` helpers and loaded through
the same code as the real RMBG-1.4 export (onnxruntime ``InferenceSession`` from a local file):
it scores a pixel by its darkness, so a dark object on a light, *noisy* background (where the
plain-background estimate refuses) is found.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import bad_input_cases as cases
from actionmesh_core.errors import BackgroundModelError

onnx = pytest.importorskip("onnx", reason="the tiny test model is built with the onnx package")
pytest.importorskip("onnxruntime", reason="background removal runs with onnxruntime")


def make_tiny_rmbg(path, size=64):
    """(1, 3, size, size) input -> (1, 1, size, size) map = -mean over RGB (RMBG-1.4's input/output layout)."""
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size])
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
             helper.make_node("Neg", ["mean"], ["output"])]
    model = helper.make_model(helper.make_graph(nodes, "tiny_rmbg", [inp], [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def noisy_frames(folder, count=4, size=96):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    boxes = []
    for i in range(count):
        img = rng.integers(150, 256, (size, size, 3), dtype=np.uint8)
        x0, y0 = 12 + 4 * i, 20
        img[y0:y0 + 40, x0:x0 + 30] = rng.integers(0, 60, (40, 30, 3), dtype=np.uint8)
        img[2, 90] = 0  # a speck: a small component to be removed
        Image.fromarray(img).save(folder / f"{i:03d}.png")
        boxes.append((x0, y0, x0 + 30, y0 + 40))
    return folder, boxes


def test_masks_match_the_object_and_specks_are_removed(tmp_path):
    from actionmesh_core.background import BackgroundRemover
    from actionmesh_core.frames import load_frames

    model = make_tiny_rmbg(tmp_path / "RMBG" / "onnx" / "model.onnx")
    folder, boxes = noisy_frames(tmp_path / "frames")
    remover = BackgroundRemover(tmp_path / "RMBG")  # the folder layout of huggingface.co/briaai/RMBG-1.4
    assert remover.path == model and remover.input_size == (64, 64)
    masks = remover(load_frames(folder)[..., :3])
    assert masks.shape == (4, 96, 96) and set(torch.unique(masks).tolist()) <= {0.0, 1.0}
    for mask, (x0, y0, x1, y1) in zip(masks.numpy(), boxes):
        truth = np.zeros_like(mask, dtype=bool)
        truth[y0:y1, x0:x1] = True
        iou = (truth & (mask > 0)).sum() / (truth | (mask > 0)).sum()
        assert iou > 0.8, iou
        assert mask[2, 90] == 0


def test_cli_end_to_end_with_a_local_model(tmp_path):
    """RGB frames on a busy background: refused without a model, animated with --remove-background."""
    import trimesh

    from actionmesh_core.cli import main
    from actionmesh_core.io.glb import read_animated_glb
    from actionmesh_core.weights import make_tiny_weights

    model = make_tiny_rmbg(tmp_path / "rmbg.onnx")
    folder, _ = noisy_frames(tmp_path / "frames", count=3)
    weights = make_tiny_weights(tmp_path / "w")
    mesh = tmp_path / "box.glb"
    trimesh.creation.box().export(mesh)
    out = tmp_path / "out.glb"
    base = ["video-to-4d", str(folder), "--weights", str(weights), "--out", str(out), "--mesh", str(mesh),
            "--device", "cpu", "--steps", "2"]
    assert main(base) == 2  # the plain-background estimate refuses the noisy border
    assert main(base + ["--remove-background", str(model)]) == 0
    assert read_animated_glb(out).num_frames == 3


def test_missing_or_wrong_model_is_one_line_naming_the_download(tmp_path):
    from actionmesh_core.background import BackgroundRemover, find_onnx_model

    with pytest.raises(BackgroundModelError, match=r"briaai/RMBG-1.4.*onnx/model.onnx") as info:
        find_onnx_model(tmp_path / "RMBG")
    assert "\n" not in str(info.value) and str(tmp_path / "RMBG") in str(info.value)
    (tmp_path / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(BackgroundModelError, match="must be an .onnx file"):
        find_onnx_model(tmp_path / "weights.safetensors")
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07" + b"\xff" * 64)
    with pytest.raises(BackgroundModelError, match="onnxruntime cannot load"):
        BackgroundRemover(tmp_path / "broken.onnx")


def test_alpha_frames_never_run_the_model(tmp_path):
    """RGBA input keeps its alpha as the mask even with a background model given (as the release)."""
    from actionmesh_core.validation import FrameOptions, validate_frames

    model = make_tiny_rmbg(tmp_path / "m.onnx")
    checked = validate_frames(cases.write_frames(tmp_path / "f"), FrameOptions(remove_background=model))
    assert not checked.needs_background_model and checked.prepared is not None


@pytest.mark.parametrize("object_level, background_level", [(0.2, 0.02), (0.97, 0.7)])
def test_otsu_threshold_splits_a_soft_map_far_from_one_half(object_level, background_level):
    """The soft map's own threshold (Otsu), not 0.5: a faint map (object 0.2 on 0.02) and a bright one (0.97 on
    0.7) both give exactly the object; a fixed 0.5 would give nothing or everything."""
    from actionmesh_core.background import clean_mask

    rng = np.random.default_rng(0)
    prob = np.full((64, 80), background_level, np.float32) + rng.normal(0, 0.01, (64, 80)).astype(np.float32)
    truth = np.zeros((64, 80), bool)
    truth[16:40, 20:52] = True
    prob[truth] = object_level + rng.normal(0, 0.01, truth.sum())
    np.testing.assert_array_equal(clean_mask(prob) > 0.5, truth)
