"""Video frame input: loading, object masks, union-box crop and square padding.

ActionMesh (CVPR 2026) conditions every stage on object-centred RGB frames:
frames are composited on white, all frames are cropped with the *union*
bounding box of the object over the whole sequence, and padded to a square
with a white margin (REFERENCE §4; paper supplementary, "we extend TripoSG
image pre-processing to video by computing the union object bounding box over
the whole sequence ... a consistent crop across frames avoids spurious
scale/translation cues").

Shape legend: T frames, H x W input pixels, S side of the square output,
C channels (3 = RGB, 4 = RGBA).  Colours are float32 in [0, 1].

Three ways to say where the object is, in this order of precedence:

1. an explicit ``masks`` array (T, H, W), foreground where ``mask > 0.5``
   (soft values are kept for compositing);
2. an alpha channel (C = 4), foreground where ``alpha > 0``; an alpha channel
   that is fully opaque in every frame carries no mask and is ignored;
3. RGB on a plain background: the background colour of each frame is the
   median of its border pixels and a pixel is foreground when its colour is
   farther than ``bg_threshold`` from it.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "PreparedFrames",
    "load_frames",
    "prepare_frames",
    "estimate_background_masks",
    "select_frames",
    "video_fps",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")

ArrayLike = Union[np.ndarray, torch.Tensor]


@dataclass
class PreparedFrames:
    """Model-ready frames: object-centred, composited on white, square.

    Attributes:
        rgb: (T, S, S, 3) float32 tensor in [0, 1], composited on white.
        masks: (T, S, S) float32 tensor in [0, 1], the object mask of each
            output pixel (0 outside the input image).
        bbox: (x0, y0, x1, y1) union bounding box of the object in input
            pixels, half-open like a Python slice (``x0 <= x < x1``).
        crop_box: (x0, y0, x1, y1) the square window that was cut from the
            input, in input pixels, half-open; may extend past the image
            borders (that part is white).
        num_frames: T.
        frame_indices: indices of these frames in the caller's sequence
            (after ``select_frames``), default ``range(T)``.
        fps: frames per second of this sequence, if known.
    """

    rgb: torch.Tensor
    masks: torch.Tensor
    bbox: tuple
    crop_box: tuple
    num_frames: int
    frame_indices: list = field(default_factory=list)
    fps: Optional[float] = None

    def __post_init__(self) -> None:
        if not self.frame_indices:
            self.frame_indices = list(range(self.num_frames))

    @property
    def size(self) -> int:
        """Side S of the square frames in pixels."""
        return int(self.rgb.shape[1])


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def select_frames(num_frames: int, start: int = 0, stride: int = 1, max_frames: int = 0) -> list:
    """Indices of a frame sub-sequence: ``start, start+stride, ...``.

    Args:
        num_frames: length of the full sequence (>= 1).
        start: first frame (0-based; negative counts from the end).
        stride: step between kept frames (>= 1).
        max_frames: keep at most this many frames (0 = no limit).

    Returns:
        list of int indices into the full sequence.

    Raises:
        ValueError: stride < 1, max_frames < 0 or start outside the sequence.
    """
    if stride < 1:
        raise ValueError(f"frame stride must be >= 1, got {stride}")
    if max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 (0 = all frames), got {max_frames}")
    if start < 0:
        start += num_frames
    if not 0 <= start < num_frames:
        raise ValueError(f"start frame {start} is outside the {num_frames} frames of the input")
    indices = list(range(start, num_frames, stride))
    if max_frames:
        indices = indices[:max_frames]
    return indices


def _load_image_file(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float32) / 65535.0
            rgba = np.concatenate([np.repeat(arr[..., None], 3, -1), np.ones_like(arr)[..., None]], -1)
            return rgba.astype(np.float32)
        rgba = im.convert("RGBA")
        return np.asarray(rgba, dtype=np.float32) / 255.0


def video_fps(path: Union[str, os.PathLike]) -> Optional[float]:
    """Frame rate a video file declares (OpenCV ``CAP_PROP_FPS``), frames per second.

    Returns:
        the frame rate (> 0), or None when the container declares none (or
        OpenCV cannot open the file).
    """
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if math.isfinite(fps) and fps > 0 else None


def _load_video_file(path: Path, start: int, stride: int, max_frames: int) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"could not open video file {path} with OpenCV; convert it to MP4 (H.264) or to a folder of PNG frames")
    frames = []
    index = 0
    try:
        while True:
            if index < start:  # skip without decoding
                if not cap.grab():
                    break
                index += 1
                continue
            ok, bgr = cap.read()
            if not ok:
                break
            if (index - start) % stride == 0:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
                frames.append(np.concatenate([rgb, np.ones(rgb.shape[:2] + (1,), np.float32)], -1))
                if max_frames and len(frames) >= max_frames:
                    break
            index += 1
    finally:
        cap.release()
    if not frames:
        if start and index <= start:
            raise ValueError(f"start frame {start} is past the end of video file {path} ({index} frames)")
        raise ValueError(f"video file {path} contains no readable frames")
    return np.stack(frames)


def load_frames(path: Union[str, os.PathLike], *, start: int = 0, stride: int = 1,
                max_frames: int = 0) -> torch.Tensor:
    """Load a frame sequence from a folder of images or from a video file.

    A folder is read in natural order (``2.png`` before ``10.png``); every
    file with an image extension (PNG, JPG, WEBP, BMP, TIFF) is one frame.  A
    video file is decoded with OpenCV.  Frames without transparency get a
    fully opaque alpha channel (``prepare_frames`` then estimates the mask
    from the background colour).

    Args:
        path: folder of frames or video file.
        start: first frame to keep (0-based, >= 0); earlier video frames are
            skipped without decoding.
        stride: keep every ``stride``-th frame from ``start`` on (>= 1).
        max_frames: keep at most this many frames (0 = all).

    Returns:
        (T, H, W, 4) float32 tensor in [0, 1], RGBA (alpha = object mask).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no frames found, ``start`` past the last frame, unreadable
            video, unsupported file type or frames of different sizes (the
            message names them).
    """
    path = Path(path)
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 (0 = all), got {max_frames}")
    if not path.exists():
        raise FileNotFoundError(f"frame input {path} does not exist (expected a folder of PNG/JPG frames or a video file)")
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                       key=lambda p: _natural_key(p.name))
        if not files:
            raise ValueError(f"folder {path} contains no image frames ({', '.join(IMAGE_EXTENSIONS)})")
        if start >= len(files):
            raise ValueError(f"start frame {start} is past the last of the {len(files)} frames in {path}")
        files = files[start::stride]
        if max_frames:
            files = files[:max_frames]
        frames = [_load_image_file(p) for p in files]
        sizes = [f.shape[:2] for f in frames]
        if len(set(sizes)) > 1:
            ref = sizes[0]
            odd = [f"{p.name} ({s[1]}x{s[0]})" for p, s in zip(files, sizes) if s != ref]
            raise ValueError(
                f"frames in {path} have mixed sizes: {files[0].name} is {ref[1]}x{ref[0]} but "
                f"{', '.join(odd)}; resize them to one size first")
        array = np.stack(frames)
    elif path.suffix.lower() in VIDEO_EXTENSIONS:
        array = _load_video_file(path, start, stride, max_frames)
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        raise ValueError(f"{path} is a single image; ActionMesh needs a sequence: pass the folder that holds the frames")
    else:
        raise ValueError(f"unsupported frame input {path}: pass a folder of images or a video ({', '.join(VIDEO_EXTENSIONS)})")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _as_float_tensor(value: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.floating) or value.dtype == np.bool_):
            raise TypeError(f"{name} must be float in [0, 1], got dtype {value.dtype}; divide 8-bit images by 255")
        tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    elif isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.dtype == torch.bool):
            raise TypeError(f"{name} must be float in [0, 1], got dtype {value.dtype}; divide 8-bit images by 255")
        tensor = value.detach().to(device="cpu", dtype=torch.float32)
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty")
    lo, hi = (float(v) for v in torch.aminmax(tensor))  # NaN propagates, inf shows up
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"{name} must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; divide 8-bit images by 255")
    return tensor.clamp_(0.0, 1.0)


def _stack_frames(images) -> torch.Tensor:
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("no frames given; ActionMesh needs at least 2 frames")
        frames = [_as_float_tensor(f, f"frame {i}") for i, f in enumerate(images)]
        for i, f in enumerate(frames):
            if f.ndim != 3 or f.shape[-1] not in (3, 4):
                raise ValueError(f"frame {i} must be (H, W, 3|4), got {tuple(f.shape)}")
        shapes = [tuple(f.shape) for f in frames]
        if len(set(s[:2] for s in shapes)) > 1:
            ref = shapes[0][:2]
            odd = [f"{i} ({s[1]}x{s[0]})" for i, s in enumerate(shapes) if s[:2] != ref]
            raise ValueError(f"frames have mixed sizes: frame 0 is {ref[1]}x{ref[0]} but frames {', '.join(odd)}; "
                             "resize them to one size first")
        if len(set(s[2] for s in shapes)) > 1:
            raise ValueError("frames mix RGB and RGBA; give all frames the same channels")
        return torch.stack(frames)
    tensor = _as_float_tensor(images, "images")
    if tensor.ndim != 4 or tensor.shape[-1] not in (3, 4):
        raise ValueError(f"images must be (T, H, W, 3|4), got {tuple(tensor.shape)}")
    return tensor


def estimate_background_masks(rgb: torch.Tensor, threshold: float = 0.1, border: int = 2) -> torch.Tensor:
    """Object masks of RGB frames shot on a plain background.

    The background colour of each frame is the per-channel median of its
    ``border``-pixel-wide image border; a pixel is foreground when its RGB
    distance (Euclidean, in [0, 1] units) to that colour exceeds
    ``threshold``.  Isolated single foreground pixels (noise) are removed
    with a 3 x 3 binary opening.

    Args:
        rgb: (T, H, W, 3) float32 tensor in [0, 1].
        threshold: colour distance above which a pixel is foreground, in (0, sqrt(3)).
        border: width of the border strip used for the estimate, in pixels.

    Returns:
        (T, H, W) float32 tensor of 0/1.

    Raises:
        ValueError: the border is not plain (fewer than half of its pixels
            are within ``threshold`` of the median colour): supply a mask.
    """
    import cv2

    if not 0.0 < threshold < 3 ** 0.5:
        raise ValueError(f"background threshold must be in (0, 1.73), got {threshold}")
    num_frames, height, width, _ = rgb.shape
    b = max(1, min(border, height // 4, width // 4))
    strips = torch.cat([
        rgb[:, :b].reshape(num_frames, -1, 3), rgb[:, -b:].reshape(num_frames, -1, 3),
        rgb[:, :, :b].reshape(num_frames, -1, 3), rgb[:, :, -b:].reshape(num_frames, -1, 3)], dim=1)
    background = strips.median(dim=1).values  # (T, 3)
    plain = (torch.linalg.vector_norm(strips - background[:, None], dim=-1) <= threshold).float().mean(dim=1)
    bad = [i for i, p in enumerate(plain.tolist()) if p < 0.5]
    if bad:
        raise ValueError(
            f"cannot estimate the object mask of frames {bad}: their border is not a plain background colour; "
            "supply masks (or RGBA frames), or raise bg_threshold")
    squared = ((rgb - background[:, None, None]) ** 2).sum(dim=-1)
    masks = (squared > threshold * threshold).numpy().astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    opened = np.stack([cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel) for m in masks])
    return torch.from_numpy(opened.astype(np.float32))


def prepare_frames(
    images,
    masks: Optional[ArrayLike] = None,
    *,
    bg_threshold: float = 0.1,
    margin: float = 0.1,
    size: Optional[int] = None,
    fps: Optional[float] = None,
    frame_indices: Optional[Sequence[int]] = None,
) -> PreparedFrames:
    """Composite on white, crop with the union object box, pad to a square.

    Implements ActionMesh pre-processing (REFERENCE §4): composite each frame
    on white with its mask/alpha, take the bounding box of the object over
    *all* frames (so the crop is the same for every frame and the motion is
    kept), centre a square window on it whose side is the box's longer side
    plus ``margin`` of it on each side, fill everything outside the input
    with white, and optionally resize to ``size``.

    Args:
        images: (T, H, W, 3|4) float array/tensor in [0, 1], or a list of T
            (H, W, 3|4) frames.  RGBA alpha is the object mask.
        masks: optional (T, H, W) float mask in [0, 1] (foreground > 0.5),
            or (H, W) for all frames; takes precedence over alpha.
        bg_threshold: colour distance for the plain-background estimate
            (used only without mask and without a meaningful alpha).
        margin: white margin on each side, as a fraction of the box's longer
            side (0.1 = 10 %), >= 0.
        size: output side S in pixels (None = the crop's own resolution).
        fps: frame rate to record on the result (optional).
        frame_indices: indices of these frames in the caller's sequence.

    Returns:
        PreparedFrames with ``rgb`` (T, S, S, 3) and ``masks`` (T, S, S).

    Raises:
        TypeError: non-float input (e.g. uint8: divide by 255 first).
        ValueError: fewer than 2 frames, wrong shapes, values outside [0, 1],
            mixed frame sizes, a mask of another size, or frames whose mask
            is empty (the message lists their indices).
    """
    frames = _stack_frames(images)
    num_frames, height, width, channels = frames.shape
    if num_frames < 2:
        raise ValueError(f"ActionMesh needs at least 2 frames, got {num_frames}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if size is not None and int(size) < 8:
        raise ValueError(f"output size must be >= 8 pixels (or None to keep the crop size), got {size}")
    rgb = frames[..., :3]

    if masks is not None:
        mask = _as_float_tensor(masks, "masks")
        if mask.ndim == 2:
            mask = mask.expand(num_frames, -1, -1)
        if mask.ndim == 4 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.ndim != 3 or mask.shape[0] not in (1, num_frames):
            raise ValueError(f"masks must be (T, H, W) with T = {num_frames} (or one (H, W) mask), got {tuple(mask.shape)}")
        if tuple(mask.shape[1:]) != (height, width):
            raise ValueError(f"masks are {mask.shape[2]}x{mask.shape[1]} but frames are {width}x{height}; "
                             "give masks of the frame size")
        mask = mask.expand(num_frames, -1, -1)
        alpha = mask
        foreground = mask > 0.5
    elif channels == 4 and bool((frames[..., 3] < 1.0).any()):
        alpha = frames[..., 3]
        foreground = alpha > 0
    else:
        alpha = estimate_background_masks(rgb, threshold=bg_threshold)
        foreground = alpha > 0.5

    empty = torch.nonzero(~foreground.reshape(num_frames, -1).any(dim=1)).flatten().tolist()
    if empty:
        raise ValueError(f"the object mask is empty in frames {empty}; check the masks/alpha (or bg_threshold) "
                         "or drop these frames")

    # Union bounding box over all frames (half-open pixel ranges).
    any_rows = foreground.any(dim=2).any(dim=0)
    any_cols = foreground.any(dim=1).any(dim=0)
    rows = torch.nonzero(any_rows).flatten()
    cols = torch.nonzero(any_cols).flatten()
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1

    longest = max(x1 - x0, y1 - y0)
    pad = int(round(margin * longest))
    side = longest + 2 * pad
    cx2, cy2 = x0 + x1, y0 + y1  # twice the centre, keeps integers exact
    sx0 = (cx2 - side) // 2
    sy0 = (cy2 - side) // 2
    crop_box = (sx0, sy0, sx0 + side, sy0 + side)

    composite = rgb * alpha[..., None] + (1.0 - alpha[..., None])
    out_rgb = torch.ones((num_frames, side, side, 3), dtype=torch.float32)
    out_mask = torch.zeros((num_frames, side, side), dtype=torch.float32)
    ix0, iy0 = max(sx0, 0), max(sy0, 0)
    ix1, iy1 = min(sx0 + side, width), min(sy0 + side, height)
    out_rgb[:, iy0 - sy0:iy1 - sy0, ix0 - sx0:ix1 - sx0] = composite[:, iy0:iy1, ix0:ix1]
    out_mask[:, iy0 - sy0:iy1 - sy0, ix0 - sx0:ix1 - sx0] = alpha[:, iy0:iy1, ix0:ix1]

    if size is not None and int(size) != side:
        size = int(size)
        stacked = torch.cat([out_rgb, out_mask[..., None]], dim=-1).permute(0, 3, 1, 2)
        resized = F.interpolate(stacked, size=(size, size), mode="bilinear", align_corners=False,
                                antialias=size < side)
        resized = resized.clamp_(0.0, 1.0).permute(0, 2, 3, 1).contiguous()
        out_rgb, out_mask = resized[..., :3].contiguous(), resized[..., 3].contiguous()

    return PreparedFrames(
        rgb=out_rgb, masks=out_mask, bbox=(x0, y0, x1, y1), crop_box=crop_box, num_frames=num_frames,
        frame_indices=list(frame_indices) if frame_indices is not None else [], fps=fps)
