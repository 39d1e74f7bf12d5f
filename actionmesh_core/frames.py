"""Video frame input: loading, object masks, union-box crop and square padding.

ActionMesh (CVPR 2026) conditions every stage on object-centred RGB frames:
frames are composited on white, all frames are cropped with the *union*
bounding box of the object over the whole sequence, and padded to a square
with a white margin (release: actionmesh/preprocessing/image_processor.py,
``ImagePreprocessor.process_images``; ActionMesh paper supp. C, "we extend TripoSG
image pre-processing to video by computing the union object bounding box over
the whole sequence ... a consistent crop across frames avoids spurious
scale/translation cues").

Shape legend: T frames, H x W input pixels, S side of the square output,
C channels (3 = RGB, 4 = RGBA).  Colours are float32 in [0, 1].

Three ways to say where the object is, in this order of precedence:

1. an explicit ``masks`` array (T, H, W), used as the frames' alpha channel
   at 8 bits (``round(mask * 255) / 255``), as the release does with its
   ``<name>_mask.png`` files (``putalpha``): foreground where it is > 0, soft
   values kept for compositing;
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

from .errors import FramesError, FramesNotFoundError

__all__ = [
    "FrameSequence",
    "read_frame_sequence",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "PreparedFrames",
    "load_frames",
    "prepare_frames",
    "estimate_background_masks",
    "select_frames",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")

ArrayLike = Union[np.ndarray, torch.Tensor]


@dataclass
class PreparedFrames:
    """Model-ready frames: object-centred, composited on white, (nearly) square.

    Attributes:
        rgb: (T, H', W', 3) float32 tensor of 8-bit values (k / 255),
            composited on white; H' and W' differ by at most one pixel (the
            release's crop), S x S when a ``size`` was asked for.
        masks: (T, H', W') float32 tensor in [0, 1], the object mask of each
            output pixel (0 in the white padding).
        bbox: (x0, y0, x1, y1) union bounding box of the object in input
            pixels, half-open like a Python slice (``x0 <= x < x1``).
        crop_box: (x0, y0, x1, y1) the window of the output in input pixels,
            half-open (output pixel (i, j) is input pixel (y0 + i, x0 + j)
            before any resize); only ``bbox`` is taken from the input, the
            rest of the window is white padding.
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
        """Longer side of the frames in pixels (S for square frames)."""
        return int(max(self.rgb.shape[1], self.rgb.shape[2]))


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


def _read_image(path: Path, what: str = "frame"):
    """((H, W, 4) float32 RGBA in [0, 1], whether the file has an alpha channel) of one image file; opened once.

    Raises:
        FramesNotFoundError: the file (or the target of a broken symbolic link) is gone; names it.
        FramesError: the file cannot be decoded (truncated, corrupt, not an image); names the file.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
                rgba = np.concatenate([np.repeat(arr[..., None], 3, -1), np.ones_like(arr)[..., None]], -1)
                return rgba.astype(np.float32), False
            alpha = "A" in im.getbands() or "transparency" in im.info
            rgba = im.convert("RGBA")
            return np.asarray(rgba, dtype=np.float32) / 255.0, alpha
    except FileNotFoundError:
        if path.is_symlink():
            raise FramesNotFoundError(f"{what} {path} is a broken symbolic link (to {os.readlink(path)}); fix the "
                                      "link or remove it") from None
        raise FramesNotFoundError(f"{what} file {path} disappeared while reading") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise FramesError(f"cannot read {what} {path}: {exc}; re-export or remove this file") from None


def _load_image_file(path: Path, what: str = "frame") -> np.ndarray:
    """(H, W, 4) float32 RGBA in [0, 1] of one image file (see :func:`_read_image`)."""
    return _read_image(path, what)[0]


def _load_mask_file(path: Path) -> np.ndarray:
    """(H, W) float32 mask in [0, 1] of one mask image (grey level; an RGBA mask without grey uses its alpha)."""
    rgba = _load_image_file(path, "mask")
    grey = rgba[..., :3].mean(axis=-1)
    if float(grey.min()) == float(grey.max()) and float(rgba[..., 3].min()) < 1.0:
        return np.ascontiguousarray(rgba[..., 3])
    return np.ascontiguousarray(grey)


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _image_signature(path: Path) -> Optional[str]:
    """The image format whose magic bytes start ``path`` (PNG, JPEG, GIF, BMP, TIFF, WEBP), or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _load_video_file(path: Path, stride: int, max_frames: int, start: int = 0):
    """Decode frames ``start, start+stride, ...`` of a video; returns ((T, H, W, 4) RGBA, fps or None, total read)."""
    # FFmpeg would print its own complaints (e.g. "moov atom not found") beside our one-line error
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    kind = _image_signature(path)
    if kind is not None and path.suffix.lower() != ".gif":
        raise FramesError(f"{path} is a {kind} image, not a video (despite its {path.suffix} name); pass the folder "
                          "that holds the frames, or a real video file")

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FramesError(f"could not open video file {path} with OpenCV; convert it to MP4 (H.264) or to a "
                          "folder of PNG frames")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
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
            if index >= start and (index - start) % stride == 0:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
                frames.append(np.concatenate([rgb, np.ones(rgb.shape[:2] + (1,), np.float32)], -1))
                if max_frames and len(frames) >= max_frames:
                    break
            index += 1
    finally:
        cap.release()
    if not frames:
        if index and start >= index:
            raise FramesError(f"frame start {start} is past the {index} frames of video {path}")
        raise FramesError(f"video file {path} contains no readable frames; re-encode it (MP4, H.264)")
    return np.stack(frames), (fps if math.isfinite(fps) and 0 < fps < 10000 else None), index


@dataclass
class FrameSequence:
    """Decoded input frames, before object-centring (``prepare_frames``).

    Attributes:
        rgba: (T, H, W, 4) float32 tensor in [0, 1]; alpha 1 where the input had none.
        masks: (T, H, W) float32 object masks in [0, 1] from a mask folder or
            ``*_mask.png`` pair files (already inverted when asked), or None.
        fps: frame rate of the KEPT frames (source rate / stride), None when the
            input has no rate (image folders).
        source_fps: the video's own frame rate, None for image folders.
        indices: index of each kept frame in the full input sequence.
        files: the frame files read (empty for a video).
        total: number of frames of the full input (for a video: decoded so far).
        notes: one-line notes (OS metadata files skipped).
        mask_files: the mask files read (empty without masks).
        has_alpha: whether some frame carries a real (not fully opaque) alpha channel.
    """

    rgba: torch.Tensor
    masks: Optional[torch.Tensor]
    fps: Optional[float]
    source_fps: Optional[float]
    indices: list
    files: list
    total: int
    notes: list = field(default_factory=list)
    mask_files: list = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """T, the number of kept frames."""
        return int(self.rgba.shape[0])

    @property
    def has_alpha(self) -> bool:  # noqa: D102
        return bool((self.rgba[..., 3] < 1.0).any())


#: files operating systems leave in folders (macOS resource forks ``._*``, Finder and Explorer caches)
OS_JUNK = (".DS_Store", "Thumbs.db", "desktop.ini")


def _is_os_junk(name: str) -> bool:
    return name.startswith("._") or name in OS_JUNK


def list_frame_files(folder: Union[str, os.PathLike]):
    """The image files of a frame (or mask) folder in natural order, and the OS metadata files skipped.

    Symbolic links count like the files they point to (a broken one is listed: reading it names it);
    ``._*`` (macOS), ``.DS_Store``, ``Thumbs.db`` and ``desktop.ini`` are skipped.

    Returns:
        (image files, names of the skipped OS metadata files).

    Raises:
        FramesError: the folder cannot be listed.
    """
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise FramesError(f"cannot list frame folder {folder}: {exc.strerror or exc}") from None
    junk = sorted(p.name for p in entries if _is_os_junk(p.name))
    files = [p for p in entries if not _is_os_junk(p.name) and p.suffix.lower() in IMAGE_EXTENSIONS
             and (p.is_file() or (p.is_symlink() and not p.exists()))]
    return sorted(files, key=lambda p: _natural_key(p.name)), junk


def _junk_note(folder: Path, junk: list) -> str:
    shown = ", ".join(junk[:4]) + (", ..." if len(junk) > 4 else "")
    return f"skipped {len(junk)} operating-system metadata file(s) in {folder} ({shown})"


def _image_files(folder: Path, notes: Optional[list] = None) -> list:
    files, junk = list_frame_files(folder)
    if junk and notes is not None:
        notes.append(_junk_note(folder, junk))
    return files


def _split_pairs(folder: Path, files: list):
    """Release layout ``<name>_image.png`` + ``<name>_mask.png``: (image files, mask files) or (files, None)."""
    masks = {p.stem[:-len("_mask")]: p for p in files if p.stem.lower().endswith("_mask")}
    if not masks:
        return files, None
    images = {p.stem[:-len("_image")]: p for p in files if p.stem.lower().endswith("_image")}
    others = [p.name for p in files if not p.stem.lower().endswith(("_mask", "_image"))]
    unpaired = sorted(set(images) ^ set(masks))
    if others or unpaired or not images:
        names = others + [(images.get(k) or masks.get(k)).name for k in unpaired]
        raise FramesError(f"folder {folder} mixes *_image/*_mask pairs with unpaired files ({', '.join(names[:6])}"
                          f"{', ...' if len(names) > 6 else ''}); give every <name>_image.png a <name>_mask.png")
    keys = sorted(images, key=_natural_key)
    return [images[k] for k in keys], [masks[k] for k in keys]


def _mask_files_for(mask_dir: Path, frame_files: list, total: int, notes: Optional[list] = None) -> list:
    """Mask file of every input frame: same stem (``0001.png`` <-> ``0001.png`` / ``0001_mask.png``) or same order."""
    if not mask_dir.is_dir():
        raise FramesNotFoundError(f"mask folder {mask_dir} does not exist or is not a folder")
    files = _image_files(mask_dir, notes)
    if not files:
        raise FramesError(f"mask folder {mask_dir} contains no mask images ({', '.join(IMAGE_EXTENSIONS)})")
    if frame_files:
        by_stem = {p.stem: p for p in files}
        by_stem.update({p.stem[:-len("_mask")]: p for p in files if p.stem.endswith("_mask")})
        matched = [by_stem.get(f.stem) or by_stem.get(f.stem[:-len("_image")] if f.stem.endswith("_image") else "")
                   for f in frame_files]
        if all(m is not None for m in matched):
            return matched
    if len(files) != total:
        raise FramesError(f"mask folder {mask_dir} holds {len(files)} masks for {total} frames and their names do not "
                          "match the frames'; give one mask per frame (same name, or same count in the same order)")
    return files


def read_frame_sequence(
    path: Union[str, os.PathLike],
    *,
    start: int = 0,
    stride: int = 1,
    max_frames: int = 0,
    mask_dir: Union[None, str, os.PathLike] = None,
    invert_mask: bool = False,
) -> FrameSequence:
    """Read the kept frames (and masks) of a folder of images or a video file, each file opened once.

    Accepted inputs (the release's and the node's):

    * a folder of frames (PNG/JPG/WEBP/BMP/TIFF, natural order: ``2.png`` before
      ``10.png``); RGBA alpha is the object mask;
    * a folder of ``<name>_image.png`` + ``<name>_mask.png`` pairs (the release's
      layout): the masks are read as object masks, never as frames;
    * a video file (OpenCV); its own frame rate is returned;
    * optionally ``mask_dir``: one mask per frame (same file stem, or the same
      count in the same order), white = object (``invert_mask`` flips it).

    Args:
        path: folder or video file.
        start: first kept frame (0-based index into the full sequence).
        stride: keep every ``stride``-th frame from ``start`` (>= 1).
        max_frames: keep at most this many frames (0 = all).
        mask_dir: optional folder of masks.
        invert_mask: use ``1 - mask`` (for masks that are white on the background).

    Returns:
        :class:`FrameSequence`.

    Raises:
        FramesNotFoundError: ``path`` or ``mask_dir`` does not exist.
        FramesError: no frames, an unreadable file (named), a single image,
            unsupported file type, start past the end, mixed frame sizes, masks
            of another size or count.
        OptionError: start < 0, stride < 1 or max_frames < 0.
    """
    from .errors import OptionError

    path = Path(path)
    if int(stride) < 1:
        raise OptionError(f"frame stride must be >= 1, got {stride}")
    if int(max_frames) < 0:
        raise OptionError(f"max frames must be >= 0 (0 = all), got {max_frames}")
    if int(start) < 0:
        raise OptionError(f"frame start must be >= 0, got {start}")
    start, stride, max_frames = int(start), int(stride), int(max_frames)
    if not path.exists():
        raise FramesNotFoundError(f"frame input {path} does not exist (expected a folder of PNG/JPG frames or a "
                                  "video file)")
    pair_masks = None
    source_fps = None
    notes: list = []
    alpha_files: list = []
    if path.is_dir():
        files = _image_files(path, notes)
        if not files:
            raise FramesError(f"folder {path} contains no image frames ({', '.join(IMAGE_EXTENSIONS)})")
        files, pair_masks = _split_pairs(path, files)
        total = len(files)
        if start >= total:
            raise FramesError(f"frame start {start} is past the {total} frames in {path}")
        indices = select_frames(total, start, stride, max_frames)
        kept = [files[i] for i in indices]
        frames, alpha_files = [], []
        for p in kept:
            rgba, has_alpha = _read_image(p)
            frames.append(rgba)
            alpha_files.append(has_alpha)
        sizes = [f.shape[:2] for f in frames]
        if len(set(sizes)) > 1:
            ref = sizes[0]
            odd = [f"{p.name} ({s[1]}x{s[0]})" for p, s in zip(kept, sizes) if s != ref]
            raise FramesError(
                f"frames in {path} have mixed sizes: {kept[0].name} is {ref[1]}x{ref[0]} but "
                f"{', '.join(odd[:6])}{', ...' if len(odd) > 6 else ''}; resize them to one size first")
        array = np.stack(frames)
    elif path.suffix.lower() in VIDEO_EXTENSIONS:
        files, kept = [], []
        array, source_fps, total = _load_video_file(path, stride, max_frames, start)
        indices = list(range(start, start + stride * len(array), stride))
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        raise FramesError(f"{path} is a single image; ActionMesh needs a sequence: pass the folder that holds "
                          "the frames")
    else:
        raise FramesError(f"unsupported frame input {path}: pass a folder of images or a video "
                          f"({', '.join(VIDEO_EXTENSIONS)})")

    masks = None
    if mask_dir is not None or pair_masks is not None:
        if mask_dir is not None:
            mask_files = _mask_files_for(Path(mask_dir), files, total, notes)
        else:
            mask_files = pair_masks
        if max(indices) >= len(mask_files):
            raise FramesError(f"mask folder {mask_dir} holds {len(mask_files)} masks but frame {max(indices)} is used")
        mask_list = [_load_mask_file(mask_files[i]) for i in indices]
        for i, m in zip(indices, mask_list):
            if m.shape != array.shape[1:3]:
                raise FramesError(f"mask {mask_files[i]} is {m.shape[1]}x{m.shape[0]} but the frames are "
                                  f"{array.shape[2]}x{array.shape[1]}; give masks of the frame size")
        masks = torch.from_numpy(np.stack(mask_list).astype(np.float32))
        if invert_mask:
            masks = 1.0 - masks
    elif alpha_files and not all(alpha_files):
        _check_alpha_mix(path, kept, alpha_files, array)
    fps = source_fps / stride if source_fps else None
    used_masks = [mask_files[i] for i in indices] if masks is not None else []
    return FrameSequence(rgba=torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), masks=masks, fps=fps,
                         source_fps=source_fps, indices=list(indices), files=list(kept), total=int(total),
                         notes=notes, mask_files=used_masks)


def _check_alpha_mix(folder: Path, files: list, alpha_files: list, rgba: np.ndarray) -> None:
    """Refuse a folder whose frames mix a real alpha channel (the object mask) with files that have none.

    Without masks, the alpha channel is the object mask; a file without one would get an all-opaque mask
    (the whole frame as the object). Frames whose alpha is fully opaque carry no mask either and are not
    a mix on their own.
    """
    masked = [f.name for f, a, img in zip(files, alpha_files, rgba) if a and bool((img[..., 3] < 1.0).any())]
    plain = [f.name for f, a in zip(files, alpha_files) if not a]
    if masked and plain:
        def listing(names):
            return ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")

        raise FramesError(f"frames in {folder} mix RGBA files whose alpha is the object mask ({listing(masked)}) "
                          f"with RGB files that have no alpha ({listing(plain)}); save every frame with its alpha "
                          "channel (RGBA), or give masks with --mask-dir")


def load_frames(path: Union[str, os.PathLike], *, start: int = 0, stride: int = 1,
                max_frames: int = 0) -> torch.Tensor:
    """Load a frame sequence from a folder of images or from a video file.

    A folder is read in natural order (``2.png`` before ``10.png``); every
    file with an image extension (PNG, JPG, WEBP, BMP, TIFF) is one frame, and
    a folder of ``*_image.png`` + ``*_mask.png`` pairs gives frames whose alpha
    is the mask.  A video file is decoded with OpenCV.  Frames without
    transparency get a fully opaque alpha channel (``prepare_frames`` then
    estimates the mask from the background colour).  See
    :func:`read_frame_sequence` for start frame, mask folders and frame rate.

    Args:
        path: folder of frames or video file.
        start: first frame to keep (0-based, >= 0); earlier video frames are
            skipped without decoding.
        stride: keep every ``stride``-th frame from ``start`` on (>= 1).
        max_frames: keep at most this many frames (0 = all).

    Returns:
        (T, H, W, 4) float32 tensor in [0, 1], RGBA (alpha = object mask).

    Raises:
        FileNotFoundError (FramesNotFoundError): ``path`` does not exist.
        ValueError (FramesError, OptionError): no frames, unreadable file
            (named), unsupported file type or frames of different sizes.
    """
    seq = read_frame_sequence(path, start=start, stride=stride, max_frames=max_frames)
    rgba = seq.rgba
    if seq.masks is not None:
        rgba = torch.cat([rgba[..., :3], seq.masks[..., None]], dim=-1)
    return rgba


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


def _release_crop_box(bbox: tuple, margin: float) -> tuple:
    """The release's crop window around the union box ``(x0, y0, x1, y1)`` (half-open, input pixels).

    ``pad = int(margin * max(w, h))`` (floored), then ``pad + (max - w) // 2``
    columns left and right and ``pad + (max - h) // 2`` rows above and below,
    so the window is one pixel short of square when ``max - w`` (or
    ``max - h``) is odd, as in the release.
    """
    x0, y0, x1, y1 = bbox
    w, h = x1 - x0, y1 - y0
    longest = max(w, h)
    pad = int(margin * longest)
    pad_x, pad_y = pad + (longest - w) // 2, pad + (longest - h) // 2
    return (x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y)


def _crop_and_pad(composite: torch.Tensor, alpha: torch.Tensor, bbox: tuple, crop_box: tuple):
    """Cut the union box out of (T, H, W, 3) ``composite`` / (T, H, W) ``alpha`` and pad it with white.

    Only the box's own pixels are kept (the padding is white with mask 0, even
    where the window covers image pixels), as the release pads the crop.
    Returns rgb (T, H', W', 3) and mask (T, H', W') float32.
    """
    x0, y0, x1, y1 = bbox
    sx0, sy0, sx1, sy1 = crop_box
    num_frames = composite.shape[0]
    out_rgb = torch.ones((num_frames, sy1 - sy0, sx1 - sx0, 3), dtype=torch.float32)
    out_mask = torch.zeros((num_frames, sy1 - sy0, sx1 - sx0), dtype=torch.float32)
    out_rgb[:, y0 - sy0:y1 - sy0, x0 - sx0:x1 - sx0] = composite[:, y0:y1, x0:x1]
    out_mask[:, y0 - sy0:y1 - sy0, x0 - sx0:x1 - sx0] = alpha[:, y0:y1, x0:x1]
    return out_rgb, out_mask


def _release_unit_scale(values: torch.Tensor) -> torch.Tensor:
    """8-bit values ``k / 255`` re-expressed as the release computes them: ``k * float32(1 / 255)``.

    The release converts its 8-bit images with a multiplication by 1/255,
    which differs from a division by 255 in the last float32 bit for some k;
    after compositing and 8-bit truncation that is one 8-bit step on a few
    pixels. Inputs that are not 8-bit (16-bit PNGs, soft masks) are returned
    unchanged.
    """
    scaled = values * 255.0
    levels = scaled.round()
    if values.numel() and float((scaled - levels).abs().max()) > 1e-3:
        return values
    return levels * (1.0 / 255.0)


def _to_8bit(rgb: torch.Tensor) -> torch.Tensor:
    """The release's 8-bit step: ``floor(x * 255) / 255`` in float32 (truncation, not rounding)."""
    return (rgb * 255.0).to(torch.uint8).to(torch.float32) / 255.0


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
    """Composite on white, crop with the union object box, pad with white (the release's frame preprocessing).

    Implements ActionMesh pre-processing exactly as the release does it (release:
    actionmesh/preprocessing/image_processor.py, ``ImagePreprocessor.process_images``, ``load_image``,
    ``aggregate_bboxes``, ``apply_padding``): composite each frame on white with its mask/alpha, take
    the bounding box of the object over *all* frames (so the crop is the same
    for every frame and the motion is kept), cut that box and pad it with
    white: ``pad = int(margin * longer side)`` (floored) on each side plus
    half the difference of the sides (floored) on the shorter axis, so the
    result is square or one pixel short of square; then truncate to 8 bits
    (``floor(x * 255) / 255``). No resize unless ``size`` is given.

    Args:
        images: (T, H, W, 3|4) float array/tensor in [0, 1], or a list of T
            (H, W, 3|4) frames.  RGBA alpha is the object mask.
        masks: optional (T, H, W) float mask in [0, 1], or (H, W) for all frames; takes precedence
            over alpha and is used as the alpha channel at 8 bits (foreground where
            ``round(mask * 255) > 0``, as the release's mask files).
        bg_threshold: colour distance for the plain-background estimate
            (used only without mask and without a meaningful alpha).
        margin: white margin on each side, as a fraction of the box's longer
            side (0.1 = 10 %), >= 0.
        size: output side S in pixels (None = the crop's own resolution, as
            the release; a one-pixel non-square crop is first padded white at
            its right/bottom edge to a square).
        fps: frame rate to record on the result (optional).
        frame_indices: indices of these frames in the caller's sequence.

    Returns:
        PreparedFrames with ``rgb`` (T, H', W', 3) (8-bit values as float32;
        H' and W' differ by at most one pixel; S x S with ``size``) and
        ``masks`` (T, H', W').

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
        alpha = torch.round(mask.expand(num_frames, -1, -1) * 255.0) / 255.0  # a stored 8-bit alpha
        foreground = alpha > 0
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

    crop_box = _release_crop_box((x0, y0, x1, y1), margin)
    weight = _release_unit_scale(alpha)[..., None]
    composite = _release_unit_scale(rgb) * weight + (1.0 - weight)
    out_rgb, out_mask = _crop_and_pad(composite, alpha, (x0, y0, x1, y1), crop_box)

    if size is not None:
        size = int(size)
        side = max(out_rgb.shape[1], out_rgb.shape[2])
        stacked = torch.cat([out_rgb, out_mask[..., None]], dim=-1)
        if stacked.shape[1] != stacked.shape[2]:  # the release's 1-px non-square crop: pad white at the far edge
            square = torch.cat([torch.ones(num_frames, side, side, 3), torch.zeros(num_frames, side, side, 1)], -1)
            square[:, :stacked.shape[1], :stacked.shape[2]] = stacked
            stacked = square
        if size != side:
            resized = F.interpolate(stacked.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                    align_corners=False, antialias=size < side)
            stacked = resized.clamp_(0.0, 1.0).permute(0, 2, 3, 1)
        out_rgb, out_mask = stacked[..., :3].contiguous(), stacked[..., 3].contiguous()
    out_rgb = _to_8bit(out_rgb)

    return PreparedFrames(
        rgb=out_rgb, masks=out_mask, bbox=(x0, y0, x1, y1), crop_box=crop_box, num_frames=num_frames,
        frame_indices=list(frame_indices) if frame_indices is not None else [], fps=fps)


MIN_OBJECT_PX = 32


class TinyObjectWarning(UserWarning):
    """The object covers very few input pixels; its crop is kept at the minimum size instead of blown up."""


def prepare_frames_min_crop(images, masks: Optional[ArrayLike] = None, *, min_crop: int = 64,
                            **kwargs) -> PreparedFrames:
    """:func:`prepare_frames` that never crops a square smaller than ``min_crop`` input pixels.

    A tiny object (a 2 x 2 px speck, a mask with a few stray pixels) would
    otherwise be cut out with a crop of its own size and blown up to the full
    output frame. When the union box's longer side is below
    ``MIN_OBJECT_PX`` (32 px) a :class:`TinyObjectWarning` is issued; when the
    square crop would be smaller than ``min_crop`` px (capped at the image's
    longer side) the margin is widened so the crop is ``min_crop`` px, centred
    on the object as before.

    Args:
        images, masks: as :func:`prepare_frames`.
        min_crop: smallest crop side in input pixels (0 = no minimum).
        **kwargs: the other arguments of :func:`prepare_frames` (``margin``, ``size``, ...).

    Returns:
        PreparedFrames.

    Raises:
        the errors of :func:`prepare_frames`.
    """
    import warnings

    prepared = prepare_frames(images, masks, **kwargs)
    x0, y0, x1, y1 = prepared.bbox
    longest = max(x1 - x0, y1 - y0)
    side = prepared.crop_box[2] - prepared.crop_box[0]
    height, width = (images[0].shape[:2] if isinstance(images, (list, tuple)) else tuple(images.shape[1:3]))
    floor = min(int(min_crop), max(int(height), int(width)))
    if longest < MIN_OBJECT_PX:
        warnings.warn(f"the object is only {x1 - x0}x{y1 - y0} px in {width}x{height} frames: results will be poor; "
                      f"film it closer or at a higher resolution (the crop is kept at least {floor} px instead of "
                      "blowing the object up to the full frame)", TinyObjectWarning, stacklevel=2)
    if side < floor:
        margin = (floor - longest) / (2.0 * longest)
        prepared = prepare_frames(images, masks, **{**kwargs, "margin": margin})
    return prepared
