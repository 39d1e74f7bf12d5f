"""Load Frames node on the real RGBA fixtures and a written video: alpha -> MASK, start/stride/max, fps,
and the hand-over to Prepare Frames (alpha mask used, all-ones mask of a video ignored)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import combo_options


@pytest.fixture()
def node(pack):
    return pack.NODES["ActionMeshLoadFrames"]


@pytest.fixture()
def camel_input(host_dirs, fixtures_dir):
    """The camel frames as ComfyUI's input/frames/camel folder."""
    target = host_dirs["input"] / "frames" / "camel"
    target.parent.mkdir()
    target.symlink_to(fixtures_dir / "davis_camel", target_is_directory=True)
    return target


def _write_video(path, fps, count=12):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for t in range(count):  # a black square moving 2 px right per frame, on white
        frame = np.full((48, 64, 3), 255, np.uint8)
        frame[16:32, 4 + 2 * t:20 + 2 * t] = 0
        writer.write(frame)
    writer.release()


def test_sources_list_frame_folders_and_videos(pack, host_dirs, camel_input):
    (host_dirs["input"] / "clip.mp4").write_bytes(b"")
    (host_dirs["input"] / "video").mkdir()
    (host_dirs["input"] / "video" / "walk.webm").write_bytes(b"")
    (host_dirs["input"] / "single").mkdir()
    (host_dirs["input"] / "single" / "a.png").write_bytes(b"")  # one image is not a sequence
    (host_dirs["input"] / "photo.png").write_bytes(b"")
    sources = combo_options(pack.NODES["ActionMeshLoadFrames"].INPUT_TYPES()["required"]["source"])
    assert sources == ["frames/camel", "clip.mp4", "video/walk.webm"]


def test_rgba_folder_alpha_becomes_the_mask_with_start_stride_max(node, camel_input, fixtures_dir):
    images, mask, fps = node.execute("frames/camel", 2, 3, 4, 30.0)
    assert images.shape == (4, 512, 512, 3) and mask.shape == (4, 512, 512)
    assert images.dtype == torch.float32 and mask.dtype == torch.float32
    for row, index in enumerate([2, 5, 8, 11]):
        rgba = np.asarray(Image.open(fixtures_dir / "davis_camel" / f"{index:02d}.png").convert("RGBA"))
        np.testing.assert_allclose(images[row].numpy() * 255, rgba[..., :3], atol=1e-3)
        np.testing.assert_allclose(mask[row].numpy() * 255, rgba[..., 3], atol=1e-3)
    assert 0.02 < float(mask.mean()) < 0.9  # a real object mask, neither empty nor full
    assert fps == pytest.approx(10.0)  # folder fps / stride
    images_all, _, fps_all = node.execute("frames/camel", 0, 1, 0, 24.0)
    assert images_all.shape[0] == len(os.listdir(fixtures_dir / "davis_camel")) and fps_all == pytest.approx(24.0)


def test_video_fps_start_stride_and_mask(node, host_dirs):
    _write_video(host_dirs["input"] / "clip.avi", fps=10)
    images, mask, fps = node.execute("clip.avi", 3, 2, 3, 99.0)  # frames 3, 5, 7
    assert images.shape == (3, 48, 64, 3)
    assert fps == pytest.approx(5.0)  # the video's own 10 fps / stride 2; the fps input is not used
    for row, t in enumerate([3, 5, 7]):
        dark = np.nonzero(images[row, 24].numpy().mean(-1) < 0.5)[0]
        assert abs(dark[0] - (4 + 2 * t)) <= 1 and abs(dark[-1] - (19 + 2 * t)) <= 1
    assert torch.all(mask == 1.0)  # no alpha in a video
    with pytest.raises(ValueError, match="past the"):
        node.execute("clip.avi", 40, 1, 0, 24.0)


def test_prepare_frames_takes_the_alpha_mask_and_ignores_an_all_ones_mask(pack, node, camel_input, host_dirs):
    prepare = pack.NODES["ActionMeshPrepareFrames"]
    images, mask, fps = node.execute("frames/camel", 0, 2, 4, 24.0)
    from_mask = prepare.execute(images, 128, 0.1, 0.1, 0, 1, 0, fps, False, mask=mask)[0]
    rows, cols = np.nonzero((mask.numpy() > 0).any(0))  # union box of the object (its alpha) over the frames
    assert from_mask.bbox == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    assert from_mask.bbox[3] - from_mask.bbox[1] < 400  # the object's box, not the whole 512 px frame
    assert from_mask.fps == pytest.approx(12.0)

    _write_video(host_dirs["input"] / "clip.avi", fps=10)
    images, mask, fps = node.execute("clip.avi", 0, 1, 0, 24.0)
    prepared = prepare.execute(images, 64, 0.1, 0.1, 0, 1, 0, fps, False, mask=mask)[0]
    x0, y0, x1, y1 = prepared.bbox  # found by the background colour, not the all-ones mask
    assert abs(x0 - 4) <= 1 and abs(x1 - 42) <= 1 and abs(y0 - 16) <= 1 and abs(y1 - 32) <= 1


def test_changed_frames_are_reloaded_and_bad_sources_fail_clearly(node, pack, host_dirs):
    folder = host_dirs["input"] / "seq"
    folder.mkdir()
    for i in range(3):
        Image.new("RGBA", (16, 16), (255, 0, 0, 128)).save(folder / f"{i}.png")
    cls = pack.NODES["ActionMeshLoadFrames"]
    before = cls.fingerprint_inputs(source="seq", start=0)
    Image.new("RGBA", (16, 16), (0, 255, 0, 255)).save(folder / "1.png")
    os.utime(folder / "1.png", ns=(1, 1))
    assert cls.fingerprint_inputs(source="seq", start=0) != before
    with pytest.raises(ValueError, match="past the"):
        node.execute("seq", 3, 1, 0, 24.0)
    with pytest.raises(ValueError, match="input folder"):
        node.execute("../outside", 0, 1, 0, 24.0)
    with pytest.raises(FileNotFoundError):
        node.execute("missing", 0, 1, 0, 24.0)
    with pytest.raises(ValueError, match="no frames found"):
        node.execute("none", 0, 1, 0, 24.0)
