"""Frame input: loading, masks, union-box crop, the release's padding and 8-bit step, clear errors.

The release's frame preprocessing: release: actionmesh/preprocessing/image_processor.py,
``ImagePreprocessor.process_images``, ``apply_padding``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from actionmesh_core.frames import estimate_background_masks, load_frames, prepare_frames, select_frames


@pytest.fixture(scope="module")
def camel(fixtures_dir):
    return load_frames(fixtures_dir / "davis_camel")


@pytest.fixture(scope="module")
def spring(fixtures_dir):
    return load_frames(fixtures_dir / "spring")


def _union_box(foreground: np.ndarray):
    ys, xs = np.nonzero(foreground.any(axis=0))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_load_frames_reads_the_rgba_sequence_in_order(fixtures_dir, camel):
    assert camel.shape == (16, 512, 512, 4) and camel.dtype == torch.float32
    assert float(camel.min()) >= 0.0 and float(camel.max()) <= 1.0
    for index in (0, 9, 15):
        expected = np.asarray(Image.open(fixtures_dir / "davis_camel" / f"{index:02d}.png").convert("RGBA"))
        np.testing.assert_allclose(camel[index].numpy(), expected / 255.0, atol=1e-6)


def test_load_frames_sorts_naturally_and_subsamples(tmp_path):
    for value in (1, 2, 10, 3):  # 10 must come after 3 (natural order), not after 1
        Image.fromarray(np.full((8, 8, 3), value * 20, np.uint8)).save(tmp_path / f"f{value}.png")
    frames = load_frames(tmp_path)
    assert frames.shape == (4, 8, 8, 4)
    np.testing.assert_allclose(frames[:, 0, 0, 0].numpy() * 255, [20, 40, 60, 200], atol=1e-4)
    assert torch.all(frames[..., 3] == 1.0)  # RGB files get an opaque alpha
    sub = load_frames(tmp_path, stride=2, max_frames=1)
    np.testing.assert_allclose(sub[:, 0, 0, 0].numpy() * 255, [20], atol=1e-4)


def test_load_frames_reads_a_video_file(tmp_path):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for t in range(6):  # a black square moving right on white
        frame = np.full((48, 64, 3), 255, np.uint8)
        frame[16:32, 8 + 4 * t:24 + 4 * t] = 0
        writer.write(frame)
    writer.release()
    frames = load_frames(path)
    assert frames.shape == (6, 48, 64, 4)
    prepared = prepare_frames(frames)
    x0, y0, x1, y1 = prepared.bbox
    assert abs(x0 - 8) <= 1 and abs(x1 - 44) <= 1 and abs(y0 - 16) <= 1 and abs(y1 - 32) <= 1
    assert len(load_frames(path, stride=2)) == 3


def test_load_frames_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_frames(tmp_path / "missing")
    with pytest.raises(ValueError, match="no image frames"):
        load_frames(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"mixed sizes.*b\.png \(10x8\)"):
        load_frames(tmp_path)
    with pytest.raises(ValueError, match="single image"):
        load_frames(tmp_path / "a.png")


def test_union_box_crop_and_margin_on_real_frames(camel):
    """The release's crop: union box, floored 10 % margin, shorter side padded by half the difference (floored)."""
    alpha = camel[..., 3].numpy()
    x0, y0, x1, y1 = _union_box(alpha > 0)
    prepared = prepare_frames(camel)
    assert prepared.bbox == (x0, y0, x1, y1)
    w, h = x1 - x0, y1 - y0
    longest = max(w, h)
    pad = int(0.1 * longest)  # floored, not rounded
    pad_x, pad_y = pad + (longest - w) // 2, pad + (longest - h) // 2
    out_h, out_w = h + 2 * pad_y, w + 2 * pad_x
    assert abs(out_h - out_w) <= 1
    assert prepared.rgb.shape == (16, out_h, out_w, 3) and prepared.masks.shape == (16, out_h, out_w)
    assert prepared.crop_box == (x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y)
    # the object's union box sits at the margin on every side
    assert _union_box(prepared.masks.numpy() > 0) == (pad_x, pad_y, pad_x + w, pad_y + h)
    # every frame is cut with the same box: the masks are the alphas, shifted, zero in the padding
    for t in (0, 7, 15):
        window = np.zeros((out_h, out_w), np.float32)
        window[pad_y:pad_y + h, pad_x:pad_x + w] = alpha[t, y0:y1, x0:x1]
        np.testing.assert_array_equal(prepared.masks[t].numpy(), window)


def test_crop_is_one_pixel_short_of_square_when_the_side_difference_is_odd():
    """Box 10 x 7 (difference 3): pad 1, pad_y = 1 + 1 -> 12 wide, 11 high, as the release."""
    frames = np.zeros((2, 40, 40, 4), np.float32)
    frames[:, 5:12, 3:13, 3] = 1.0  # opaque black box, rows 5..11, columns 3..12
    prepared = prepare_frames(frames)
    assert prepared.bbox == (3, 5, 13, 12)
    assert prepared.rgb.shape == (2, 11, 12, 3)
    assert prepared.crop_box == (2, 3, 14, 14)
    np.testing.assert_array_equal(prepared.rgb[0, 2:9, 1:11].numpy(), 0.0)
    assert float(prepared.rgb[0, :2].min()) == 1.0 and float(prepared.rgb[0, :, :1].min()) == 1.0
    assert prepare_frames(frames, size=16).rgb.shape == (2, 16, 16, 3)


def test_padding_is_white_even_where_the_window_covers_image_pixels():
    """Only the box is taken from the input (mask values that round to 0 at 8 bits do not leak in)."""
    frames = np.zeros((2, 40, 40, 3), np.float32)
    masks = np.zeros((2, 40, 40), np.float32)
    masks[:, 10:30, 10:30] = 1.0
    masks[:, 5:10, 10:30] = 0.4 / 255  # below half an 8-bit step: background, as in a stored alpha
    prepared = prepare_frames(frames, masks)
    assert prepared.bbox == (10, 10, 30, 30)
    pad = 2
    np.testing.assert_array_equal(prepared.rgb[:, :pad].numpy(), 1.0)
    np.testing.assert_array_equal(prepared.masks[:, :pad].numpy(), 0.0)


def test_output_holds_8bit_values_truncated():
    """floor(x * 255) / 255, not round: 0.5 * 200/255 + 0.5 = 227.5/255 -> 227/255."""
    frames = np.ones((2, 8, 8, 4), np.float32)
    frames[..., :3] = 200 / 255
    frames[..., 3] = 0.0
    frames[:, 2:6, 2:6, 3] = 128 / 255
    prepared = prepare_frames(frames)
    values = prepared.rgb.numpy() * 255
    np.testing.assert_array_equal(values, np.round(values))
    centre = prepared.rgb[0, prepared.rgb.shape[1] // 2, prepared.rgb.shape[2] // 2, 0].item() * 255
    assert round(centre) == int(200 * (128 / 255) + 255 * (1 - 128 / 255))


def test_composite_on_white(camel):
    prepared = prepare_frames(camel)
    rgb, mask = prepared.rgb.numpy(), prepared.masks.numpy()
    assert np.all(rgb[mask == 0] == 1.0)  # background (and the padding) is pure white
    sx0, sy0 = prepared.crop_box[:2]
    t = 3
    ys, xs = np.nonzero(mask[t] == 1.0)
    src = camel[t].numpy()[ys + sy0, xs + sx0, :3]
    np.testing.assert_allclose(rgb[t, ys, xs], src, atol=1e-6)  # opaque pixels keep their colour


def test_resize_keeps_content(spring):
    spring = spring[:8]
    full = prepare_frames(spring)
    small = prepare_frames(spring, size=224)
    assert small.rgb.shape == (8, 224, 224, 3) and small.masks.shape == (8, 224, 224)
    assert small.bbox == full.bbox and small.crop_box == full.crop_box
    assert float(small.rgb.min()) >= 0 and float(small.rgb.max()) <= 1
    np.testing.assert_allclose(small.masks.mean().item(), full.masks.mean().item(), atol=5e-3)
    np.testing.assert_allclose(small.rgb.mean(dim=(1, 2)).numpy(), full.rgb.mean(dim=(1, 2)).numpy(), atol=5e-3)


def test_plain_background_estimate_matches_the_alpha(spring):
    spring = spring[::3]  # 6 frames are enough
    alpha = spring[..., 3:]
    green = torch.tensor([0.2, 0.6, 0.3])
    rgb = spring[..., :3] * alpha + green * (1 - alpha)  # RGB video shot on a green backdrop
    prepared = prepare_frames(rgb, bg_threshold=0.15)
    truth = prepare_frames(spring)
    assert all(abs(a - b) <= 3 for a, b in zip(prepared.bbox, truth.bbox))
    estimated = estimate_background_masks(rgb, threshold=0.15).numpy() > 0.5
    reference = spring[..., 3].numpy() > 0.5
    iou = (estimated & reference).sum() / (estimated | reference).sum()
    assert iou > 0.95
    # An alpha channel that is opaque everywhere carries no mask: the estimate is used too.
    opaque = torch.cat([rgb, torch.ones_like(alpha)], dim=-1)
    assert prepare_frames(opaque, bg_threshold=0.15).bbox == prepared.bbox


def test_explicit_masks_override_alpha(camel):
    masks = torch.zeros(camel.shape[:3])
    masks[:, 100:200, 150:300] = 1.0
    prepared = prepare_frames(camel, masks)
    assert prepared.bbox == (150, 100, 300, 200)
    prepared_np = prepare_frames(camel[..., :3].numpy(), masks.numpy())
    assert prepared_np.bbox == (150, 100, 300, 200)


def test_a_mask_is_the_frames_alpha_as_in_the_release(camel):
    """RGB + its alpha as a mask (what Load Frames gives Prepare Frames) = the RGBA frames (what the CLI reads):
    the release puts a mask file in as the alpha channel, so soft edges (0 < alpha <= 0.5) are inside the box."""
    soft = ((camel[..., 3] > 0) & (camel[..., 3] <= 0.5)).any(dim=0)
    assert bool(soft.any()), "the fixture needs soft alpha edges for this test to mean anything"
    from_alpha = prepare_frames(camel)
    from_mask = prepare_frames(camel[..., :3], camel[..., 3])
    assert from_mask.bbox == from_alpha.bbox
    assert torch.equal(from_mask.rgb, from_alpha.rgb) and torch.equal(from_mask.masks, from_alpha.masks)
    # a float mask is stored at 8 bits first: values under half a step are background
    faint = camel[..., 3].clone()
    faint[faint == 0] = 0.4 / 255
    assert prepare_frames(camel[..., :3], faint).bbox == from_alpha.bbox


def test_list_of_frames_and_metadata():
    frames = [np.ones((20, 30, 3), np.float32) for _ in range(3)]
    for t, f in enumerate(frames):
        f[5:10, 4 + t:12 + t] = 0.0
    prepared = prepare_frames(frames, fps=12.0, frame_indices=[0, 2, 4])
    assert prepared.bbox == (4, 5, 14, 10)
    assert prepared.num_frames == 3 and prepared.frame_indices == [0, 2, 4] and prepared.fps == 12.0


def test_errors_are_specific():
    frame = np.ones((16, 16, 4), np.float32)
    frame[4:8, 4:8, :3] = 0.0
    frame[..., 3] = 0.0
    frame[4:8, 4:8, 3] = 1.0
    with pytest.raises(ValueError, match="at least 2 frames"):
        prepare_frames(frame[None])
    empty = np.stack([frame] * 9)
    empty[[3, 7], ..., 3] = 0.0
    with pytest.raises(ValueError, match=r"empty in frames \[3, 7\]"):
        prepare_frames(empty)
    with pytest.raises(ValueError, match=r"mixed sizes.*frames 1 \(12x16\)"):
        prepare_frames([frame, frame[:, :12]])
    with pytest.raises(TypeError, match="divide 8-bit images by 255"):
        prepare_frames((np.stack([frame] * 2) * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        prepare_frames(np.stack([frame] * 2) * 255.0)
    with pytest.raises(ValueError, match="masks are 8x8 but frames are 16x16"):
        prepare_frames(np.stack([frame] * 2), np.ones((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\|4\)"):
        prepare_frames(np.ones((2, 16, 16), np.float32))
    noise = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="not a plain background"):
        prepare_frames(noise)


def test_select_frames():
    assert select_frames(10, 2, 3) == [2, 5, 8]
    assert select_frames(10, 0, 1, 4) == [0, 1, 2, 3]
    assert select_frames(10, -3) == [7, 8, 9]
    with pytest.raises(ValueError, match="outside"):
        select_frames(10, 10)
    with pytest.raises(ValueError, match="stride"):
        select_frames(10, 0, 0)


def test_load_frames_start_and_video_fps(tmp_path):
    import cv2

    from actionmesh_core.frames import read_frame_sequence

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.5, (32, 32))
    for t in range(7):  # frame t is grey level 30 * t
        writer.write(np.full((32, 32, 3), 30 * t, np.uint8))
    writer.release()
    seq = read_frame_sequence(path, start=2, stride=2)
    assert seq.source_fps == pytest.approx(12.5) and seq.fps == pytest.approx(6.25) and seq.indices == [2, 4, 6]
    frames = load_frames(path, start=2, stride=2)  # frames 2, 4, 6
    np.testing.assert_allclose(frames[:, 16, 16, 0].numpy() * 255, [60, 120, 180], atol=3)
    with pytest.raises(ValueError, match="past the"):
        load_frames(path, start=7)
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (4, 4), (10 * i, 0, 0)).save(folder / f"{i}.png")
    np.testing.assert_allclose(load_frames(folder, start=1, stride=3)[:, 0, 0, 0].numpy() * 255, [10, 40], atol=1e-3)
    with pytest.raises(ValueError, match="past the"):
        load_frames(folder, start=5)
    with pytest.raises(ValueError, match="start"):
        load_frames(folder, start=-1)
