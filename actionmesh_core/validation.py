"""Every input of a run checked up front, in seconds, before any model loads.

The command line, the Python API (:meth:`ActionMeshPipeline.run`) and the
ComfyUI nodes all call these functions, so a bad input gives the same one-line
error everywhere (see :mod:`actionmesh_core.errors` for the error types):

* :func:`validate_options` — steps >= 1, fps > 0, meshing depths, window/slide,
  guidance, shift, noise correlation, device and dtype;
* :func:`validate_output_path` / :func:`validate_output_folder` — the output can
  be written (checked, never created: nothing is made outside the target);
* :func:`validate_export` — the export format, its suffix and options (bones,
  influences, interpolation) and its optional module;
* :func:`check_outputs_not_inputs` — no output file is one of the input files;
* :func:`validate_frames` — every frame file opened once (a bad file is named
  by its path), masks, frame selection, frame rate, the object found;
* :func:`validate_weights` — every weights folder: config parsed, safetensors
  header read (no tensor loaded), keys and shapes checked against the model the
  config builds on the ``meta`` device, model kind recognised, pickle-only
  folders refused, and the components' widths agreeing with each other; then
  every tensor's dtype and values (:func:`validate_weight_values`, streamed);
* :func:`validate_mesh` — the user's anchor mesh (a file, not empty, readable, with
  a surface: no zero-area or single-point mesh);
* :func:`validate_run` — all of the above, returning a :class:`RunPlan` that
  holds what was read (frames are not read twice).

Shape legend: T frames, H x W pixels.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from .errors import (BackgroundModelError, FramesError, FramesNotFoundError, InputError, MeshInputError,
                     OptionError, OutputPathError, WeightsError)
from .options import DEFAULT_FPS, MAX_DEPTH, MAX_FPS, MIN_FPS, FrameOptions, PipelineConfig

__all__ = [
    "InputError", "OptionError", "FramesError", "FramesNotFoundError", "WeightsError", "BackgroundModelError",
    "MeshInputError", "OutputPathError", "CheckpointError", "WeightsMissingError",
    "FrameOptions", "RunPlan", "validate_run", "validate_options", "validate_output_path",
    "validate_output_folder", "validate_frames", "finish_frames", "prepare_checked", "ValidatedFrames", "validate_weights", "validate_mesh", "validate_background_model",
    "validate_export", "check_frame_options", "check_outputs_not_inputs", "check_frame_times",
    "validate_weight_values", "check_window", "check_meshing_depths", "DEFAULT_FPS", "MIN_FPS", "MAX_FPS",
]

PathLike = Union[str, os.PathLike]


def __getattr__(name: str):  # CheckpointError / WeightsMissingError without importing torch-heavy modules early
    if name == "CheckpointError":
        from .checkpoints import CheckpointError

        return CheckpointError
    if name == "WeightsMissingError":
        from .weights import WeightsMissingError

        return WeightsMissingError
    raise AttributeError(name)


# --------------------------------------------------------------------------- options


def _int_at_least(name: str, value, low: int, high: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise OptionError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise OptionError(f"{name} must be {bound}, got {value}")
    return value


def _finite(name: str, value, low: float, high: float = math.inf, low_open: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
        lo = "(" if low_open else "["
        hi = "]" if math.isfinite(high) else ")"
        raise OptionError(f"{name} must be a finite number in {lo}{low}, {high}{hi}, got {value}")
    return value


def validate_options(config) -> torch.device:
    """Check the settings of a run.

    Args:
        config: :class:`actionmesh_core.options.PipelineConfig`.

    Returns:
        the torch device the run will use.

    Raises:
        OptionError: steps < 1, fps <= 0, octree_depth outside [4, 11],
            refine_depth < octree_depth or > 11, window < 2, slide outside
            [1, window - 1], negative guidance, shift <= 0, noise correlation
            outside [0, 1], unknown mode/dtype, or a device that is not available.
    """
    from .checkpoints import resolve_device, resolve_dtype

    c = config
    _int_at_least("steps (stage I denoising steps)", c.steps, 1, 10000)
    _int_at_least("stage0_steps (TripoSG steps)", c.stage0_steps, 1, 10000)
    _int_at_least("chain_steps", c.chain_steps, 1, 10000)
    _int_at_least("seed", c.seed, 0, 2 ** 63 - 1)
    _int_at_least("anchor frame", c.anchor_frame, 0)
    check_meshing_depths(c.octree_depth, c.refine_depth)
    check_window(c.window, c.slide)
    if c.target_faces != 0:  # 0 = no decimation
        _int_at_least("target faces", c.target_faces, 4)
    _int_at_least("num_surface_points", c.num_surface_points, 64)
    _finite("guidance scale", c.guidance_scale, 0.0)
    _finite("stage0 guidance", c.stage0_guidance, 0.0)
    _finite("shift", c.shift, 0.0, low_open=True)
    _finite("noise correlation", c.noise_correlation, 0.0, 1.0)
    if c.fps is not None:
        _finite("fps", c.fps, MIN_FPS, MAX_FPS)
    if c.mode not in ("stage2", "attention-chain"):
        raise OptionError(f"mode must be 'stage2' or 'attention-chain', got {c.mode!r}")
    if str(c.dtype) != "auto":
        try:
            resolve_dtype(c.dtype)
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    try:
        return resolve_device(c.device)
    except (ValueError, RuntimeError) as exc:
        raise OptionError(str(exc)) from None


def check_meshing_depths(octree_depth, refine_depth) -> Tuple[int, int]:
    """SDF meshing depths: coarse ``octree_depth`` in [4, 11], ``refine_depth`` in [octree_depth, 11].

    Returns:
        (octree_depth, refine_depth) as ints.

    Raises:
        OptionError: a depth outside its range, or refine depth < octree depth.
    """
    octree = _int_at_least("octree depth", octree_depth, 4, MAX_DEPTH)
    refine = _int_at_least("refine depth", refine_depth, 4, MAX_DEPTH)
    if refine < octree:
        raise OptionError(f"refine depth ({refine}) must be >= octree depth ({octree})")
    return octree, refine


def check_window(window, slide) -> Tuple[int, int]:
    """Autoregressive window plan: ``window`` >= 2 frames, ``slide`` in [1, window - 1] (windows share a frame).

    Returns:
        (window, slide) as ints.

    Raises:
        OptionError: either outside its range.
    """
    window = _int_at_least("window (frames per window)", window, 2, 1024)
    slide = _int_at_least("slide", slide, 1, window - 1)
    return window, slide


# --------------------------------------------------------------------------- output


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not os.path.lexists(probe):
        if probe.parent == probe:
            break
        probe = probe.parent
    return probe


def _probe_writable(folder: Path, what: str, target: Path) -> None:
    """Create and remove a temporary file in ``folder`` (the only way to know as root, or on read-only mounts)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".actionmesh-probe-", dir=str(folder))
    except OSError as exc:
        raise OutputPathError(f"cannot write {what} {target}: folder {folder} is not writable "
                              f"({exc.strerror or exc}); choose another location") from None
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass


def _check_parent_chain(target: Path, what: str) -> None:
    folder = target.parent
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputPathError(f"cannot write {what} {target}: {existing} is a file, not a folder")
    if existing != folder:
        # the folders below `existing` would be created at write time: probe that creating one works,
        # by making and removing a temporary folder (nothing is left behind)
        try:
            probe = tempfile.mkdtemp(prefix=".actionmesh-probe-", dir=str(existing))
        except OSError as exc:
            raise OutputPathError(f"cannot write {what} {target}: cannot create folders in {existing} "
                                  f"({exc.strerror or exc}); choose another location") from None
        os.rmdir(probe)
    else:
        _probe_writable(folder, what, target)


def validate_output_path(path: PathLike, suffixes: Sequence[str] = (".glb",), what: str = "output") -> Path:
    """Check that a file can be written at ``path`` without creating anything.

    Args:
        path: the output file.
        suffixes: accepted suffixes (lower case, with the dot); empty = any.
        what: how to name it in messages (e.g. ``"--out"``).

    Returns:
        ``path`` as an absolute-free ``Path`` (as given).

    Raises:
        OutputPathError: wrong suffix, an existing folder at ``path``, an
            existing read-only file, a parent that is a file, or a location
            where nothing can be created (read-only or virtual file system).
    """
    target = Path(path)
    if not str(path).strip():
        raise OutputPathError(f"{what} path is empty")
    suffixes = tuple(sx.lower() for sx in suffixes)
    if suffixes and target.suffix.lower() not in suffixes:
        raise OutputPathError(f"{what} must end in {' or '.join(suffixes)} (any case), got {target}")
    if target.is_dir():
        raise OutputPathError(f"{what} {target} is a folder; give a file name such as {target / ('out' + suffixes[0] if suffixes else 'out')}")
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputPathError(f"cannot overwrite {what} {target}: the file is read-only")
    _check_parent_chain(target, what)
    return target


def validate_output_folder(path: PathLike, what: str = "output folder") -> Path:
    """Check that files can be written into folder ``path`` (created at write time), creating nothing.

    Raises:
        OutputPathError: ``path`` is a file, or nothing can be created there.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{what} {folder} is a file, not a folder")
    _check_parent_chain(folder / ".probe", what)
    return folder


# --------------------------------------------------------------------------- frames


def check_frame_options(opts: FrameOptions) -> None:
    """Check the frame options' values (start, stride, max frames, threshold, margin, crop, size, fps).

    Raises:
        OptionError: a value outside its range.
    """
    _int_at_least("frame start", opts.start, 0)
    _int_at_least("frame stride", opts.stride, 1)
    _int_at_least("max frames", opts.max_frames, 0)
    _finite("background threshold", opts.bg_threshold, 0.0, 1.73, low_open=True)
    _finite("margin", opts.margin, 0.0, 10.0)
    _int_at_least("minimum crop", opts.min_crop, 0)
    if opts.size is not None:
        _int_at_least("frame size", opts.size, 8)
    if opts.fps is not None:
        _finite("fps", opts.fps, MIN_FPS, MAX_FPS)


def check_frame_times(num_frames: int, fps: float, what: str = "the animation") -> None:
    """The frame times ``k / fps`` (k < ``num_frames``) must be finite, strictly increasing float32 seconds.

    Raises:
        OptionError: the rate is outside [MIN_FPS, MAX_FPS] (after the frame stride), or the times collapse.
    """
    import numpy as np

    if not (math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise OptionError(f"{what} would play at {fps:g} frames per second (fps / frame stride); it must be in "
                          f"[{MIN_FPS:g}, {MAX_FPS:g}]: raise --fps or lower --frame-stride")
    times = np.arange(int(num_frames), dtype=np.float64) / float(fps)
    t32 = times.astype(np.float32)
    if not np.isfinite(t32).all() or (len(t32) > 1 and not (np.diff(t32) > 0).all()):
        raise OptionError(f"{num_frames} frames at {fps:g} fps do not give distinct float32 frame times; use fewer "
                          "frames or another --fps")


@dataclass
class ValidatedFrames:
    """Frames read and checked by :func:`validate_frames`.

    Attributes:
        images: (T, H, W, 3|4) float32 in [0, 1].
        masks: (T, H, W) float32 masks in [0, 1] or None.
        indices: index of each frame in the full input.
        fps: the animation's frame rate (input rate / stride).
        prepared: ``PreparedFrames`` (None while the background model has to run first).
        warnings: one-line warnings (tiny object, OS metadata files skipped, ...).
        needs_background_model: the frames have no alpha nor masks and a background model was given.
        files: the input files read (frame files or the video, mask files): no output may be one of them.
    """

    images: torch.Tensor
    masks: Optional[torch.Tensor]
    indices: list
    fps: float
    prepared: Any = None
    warnings: List[str] = field(default_factory=list)
    needs_background_model: bool = False
    files: List[Path] = field(default_factory=list)


def finish_frames(checked: ValidatedFrames, options: Optional[FrameOptions] = None):
    """The prepared frames of validated input, running the background model first when one is needed.

    Returns:
        ``PreparedFrames``.

    Raises:
        BackgroundModelError: the model cannot be loaded.
        FramesError: the model found no object in some frames.
    """
    if checked.prepared is not None:
        return checked.prepared
    from .background import BackgroundRemover

    opts = options or FrameOptions()
    masks = BackgroundRemover(opts.remove_background)(checked.images[..., :3])
    checked.prepared, more = prepare_checked(checked.images, masks, opts, fps=checked.fps, indices=checked.indices)
    checked.warnings.extend(more)
    return checked.prepared


def validate_frames(frames, options: Optional[FrameOptions] = None) -> ValidatedFrames:
    """Read the frame input once and check it (and, without a background model, prepare it).

    Args:
        frames: folder of images (or ``*_image``/``*_mask`` pairs), video file,
            or a (T, H, W, 3|4) array/tensor in [0, 1] (or a list of frames).
        options: :class:`FrameOptions`.

    Returns:
        :class:`ValidatedFrames`.

    Raises:
        OptionError: bad frame option.
        FramesNotFoundError: the input or the mask folder does not exist.
        FramesError: unreadable file (named), no frames, fewer than 2 frames,
            mixed sizes, masks that do not fit, an empty object mask, a
            background that is not plain (with what to do).
        BackgroundModelError: the background model is missing.
    """
    from .frames import _stack_frames, read_frame_sequence

    opts = options or FrameOptions()
    check_frame_options(opts)
    if opts.remove_background is not None:
        validate_background_model(opts.remove_background)
    notes: List[str] = []
    files: List[Path] = []
    source = ""
    if isinstance(frames, (str, os.PathLike)):
        seq = read_frame_sequence(frames, start=opts.start, stride=opts.stride, max_frames=opts.max_frames,
                                  mask_dir=opts.mask_dir, invert_mask=opts.invert_mask)
        images, masks, indices = seq.rgba, seq.masks, seq.indices
        rate = opts.fps if opts.fps is not None else (seq.source_fps or DEFAULT_FPS)
        notes, source = list(seq.notes), f" from {frames}"
        files = [Path(f) for f in seq.files] + [Path(f) for f in seq.mask_files]
        if Path(frames).is_file():
            files.append(Path(frames))
    else:
        if opts.mask_dir is not None:
            raise OptionError("mask_dir applies to a frame folder or video path, not to an array of frames; pass "
                              "masks to prepare_frames instead")
        try:
            stacked = _stack_frames(frames)
        except TypeError as exc:
            raise FramesError(str(exc)) from None
        except ValueError as exc:
            raise FramesError(str(exc)) from None
        from .frames import select_frames

        if opts.start >= stacked.shape[0]:
            raise FramesError(f"frame start {opts.start} is past the {stacked.shape[0]} frames given")
        indices = select_frames(int(stacked.shape[0]), opts.start, opts.stride, opts.max_frames)
        images, masks = stacked[indices], None
        rate = opts.fps if opts.fps is not None else DEFAULT_FPS
    fps = float(rate) / opts.stride
    if images.shape[0] < 2:
        raise FramesError(f"ActionMesh needs at least 2 frames, got {images.shape[0]}{source} after frame start "
                          f"{opts.start}, stride {opts.stride} and max frames {opts.max_frames}")
    check_frame_times(int(images.shape[0]), fps)
    has_alpha = images.shape[-1] == 4 and bool((images[..., 3] < 1.0).any())
    result = ValidatedFrames(images=images, masks=masks, indices=list(indices), fps=fps, warnings=notes, files=files)
    if masks is None and not has_alpha and opts.remove_background is not None:
        result.needs_background_model = True
        return result
    result.prepared, more = prepare_checked(images, masks, opts, fps=fps, indices=indices)
    result.warnings.extend(more)
    return result


def prepare_checked(images, masks, opts: FrameOptions, *, fps: Optional[float] = None,
                    indices: Optional[Sequence[int]] = None):
    """``prepare_frames`` with the minimum crop, its errors as :class:`FramesError` saying what to do.

    The margin, background threshold, minimum crop and output size (None: no resize) come from ``opts``.

    Returns:
        (PreparedFrames, list of one-line warnings).
    """
    import warnings

    from .frames import prepare_frames_min_crop

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            prepared = prepare_frames_min_crop(images, masks, bg_threshold=opts.bg_threshold, margin=opts.margin,
                                               size=opts.size, fps=fps, frame_indices=indices, min_crop=opts.min_crop)
        except TypeError as exc:
            raise FramesError(str(exc)) from None
        except ValueError as exc:
            text = str(exc)
            if "plain background" in text:
                text += ("; or remove the background with a local model: --remove-background "
                         "PATH/TO/RMBG-1.4/model.onnx (huggingface.co/briaai/RMBG-1.4, file onnx/model.onnx)")
            raise FramesError(text) from None
    return prepared, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def validate_background_model(path: PathLike) -> Path:
    """The ``.onnx`` file of a local background-removal model (checked, not loaded).

    Accepts the file itself or a folder holding ``model.onnx`` or ``onnx/model.onnx``
    (the layout of huggingface.co/briaai/RMBG-1.4).

    Raises:
        BackgroundModelError: nothing there (says what to download and where), or not an ONNX file.
    """
    from .background import find_onnx_model

    return find_onnx_model(path)


# --------------------------------------------------------------------------- weights


def validate_weights(root: PathLike, mode: str = "video", values: bool = True) -> Dict[str, Any]:
    """Check every weights folder a run needs: configs and headers, then every tensor's dtype and values.

    Args:
        root: weights root (see :mod:`actionmesh_core.weights`).
        mode: ``"video"`` (TripoSG makes the anchor) or ``"video+mesh"``.
        values: also stream every weights file (:func:`validate_weight_values`: NaN/inf values,
            unsupported dtypes); False: configs and headers only.

    Returns:
        component -> :class:`~actionmesh_core.checkpoints.CheckpointInfo` (DINOv2:
        its config dict; scheduler: its config dict).

    Raises:
        WeightsMissingError: folders missing (all named, with the download command).
        CheckpointError / WeightsError: invalid JSON config, unreadable or
            truncated safetensors, pickle-only folder, wrong model kind, keys or
            shapes that do not fit the config, components whose widths disagree,
            or (``values``) a tensor with NaN/inf values or an unsupported dtype.
    """
    import json

    from .checkpoints import inspect_checkpoint
    from .models.dino import check_dinov2_folder
    from .weights import COMPONENTS, NEEDS, WeightLayout

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise WeightsError(f"weights path {root} is a file; give the folder that holds ActionMesh/, TripoSG/ "
                           "and dinov2-large/")
    layout = WeightLayout(root)
    needed = NEEDS[mode] + (("scheduler",) if "transformer" in NEEDS[mode] else ())
    layout.check_components(needed)
    kinds = {"denoiser": "actionmesh_denoiser", "autoencoder": "actionmesh_autoencoder", "vae": "triposg_vae",
             "transformer": "triposg_dit"}
    found: Dict[str, Any] = {}
    for comp in needed:
        path = layout.path(comp)
        if comp in kinds:
            found[comp] = inspect_checkpoint(path, kinds[comp])
        elif comp in ("dinov2", "triposg_dinov2"):
            found[comp] = check_dinov2_folder(path, COMPONENTS[comp][1])
        elif comp == "scheduler":
            cfg_path = path / "scheduler_config.json"
            try:
                found[comp] = json.loads(cfg_path.read_text(encoding="utf-8"))
                shift = float(found[comp].get("shift", 1.0))
            except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as exc:
                raise WeightsError(f"{cfg_path} is not a valid scheduler config ({exc}); re-download it from "
                                   "VAST-AI/TripoSG") from None
            if not (math.isfinite(shift) and shift > 0):
                raise WeightsError(f"{cfg_path}: shift must be > 0, got {shift}")
    _check_widths(found, layout)
    if values:
        validate_weight_values(found, layout)
    return found


def validate_weight_values(found: Dict[str, Any], layout, cache: Optional[PathLike] = "default") -> int:
    """Stream every weights file of ``found`` (from :func:`validate_weights`): float dtypes, finite values.

    Each file is read once in 16 MiB pieces (memory stays flat). The cost is reading the files: on a
    released-size layout (7.9 GB of bf16 tensors) about 47 s cold and 25 s from the page cache on a loaded
    2-core VM, ~1.5 GB/s unloaded (``benchmarks/bench_weight_check.py``). A file that passed is remembered
    (path, size, inode, modification and change times) in ``~/.cache/actionmesh/weights-checked.json``
    (``$ACTIONMESH_CACHE_DIR``), so later runs skip it until it changes.

    Args:
        found: what :func:`validate_weights` found. layout: the weights layout.
        cache: the remembered-files JSON (``"default"``: the one above; None: scan everything, remember nothing).

    Returns:
        the tensor bytes scanned (0 when every file was remembered).

    Raises:
        CheckpointError: one line naming the file and the tensor (NaN/inf, or a dtype such as int64).
    """
    from .checkpoints import check_tensor_values

    memory = _CheckedFiles(_default_cache() if cache == "default" else cache)
    scanned = 0
    for comp, item in found.items():
        if hasattr(item, "weight_file"):  # a CheckpointInfo: its model gives the expected dtypes
            files = [(Path(item.weight_file), {k: v.dtype for k, v in item.model.state_dict().items()})]
        elif comp in ("dinov2", "triposg_dinov2"):
            files = [(f, None) for f in _safetensors_files(layout.path(comp))]
        else:
            continue
        for file, expected in files:
            if memory.known(file):
                continue
            scanned += check_tensor_values(file, expected)
            memory.add(file)
    memory.save()
    return scanned


def _default_cache() -> Path:
    folder = os.environ.get("ACTIONMESH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "actionmesh")
    return Path(folder) / "weights-checked.json"


class _CheckedFiles:
    """Weights files whose values passed, keyed by path and identified by size, inode, mtime and ctime.

    Any change to a file (a re-download, an edit, a copy over it) changes its change time (which no tool
    can set back), so a changed file is scanned again. At most 256 entries are kept; a cache that cannot
    be read or written is ignored (the files are scanned).
    """

    LIMIT = 256

    def __init__(self, path: Optional[PathLike]):
        import json

        self.path = Path(path) if path is not None else None
        self.entries: Dict[str, list] = {}
        self.dirty = False
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = {k: v for k, v in data.items() if isinstance(v, list)}
            except (OSError, ValueError, AttributeError):
                self.entries = {}

    @staticmethod
    def _identity(file: Path) -> Optional[list]:
        try:
            st = os.stat(file)
        except OSError:
            return None
        return [st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns]

    def known(self, file: Path) -> bool:
        if self.path is None:
            return False
        identity = self._identity(file)
        return identity is not None and self.entries.get(str(Path(file).resolve())) == identity

    def add(self, file: Path) -> None:
        identity = self._identity(file)
        if self.path is not None and identity is not None:
            key = str(Path(file).resolve())
            self.entries.pop(key, None)
            self.entries[key] = identity
            self.dirty = True

    def save(self) -> None:
        import json

        if self.path is None or not self.dirty:
            return
        entries = dict(list(self.entries.items())[-self.LIMIT:])
        try:
            from .io.atomic import atomic_write

            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.path, "w") as handle:
                json.dump(entries, handle)
        except OSError:
            pass


def _safetensors_files(folder: Path) -> List[Path]:
    """``model.safetensors`` of a transformers folder, or the shards its index lists."""
    import json

    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / shard for shard in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                                                       .values()))]
    return []


def _check_widths(found: Dict[str, Any], layout) -> None:
    """The components must agree: latent channels, and image-feature width vs the DINOv2 hidden size."""
    def cfg(comp):
        item = found.get(comp)
        return None if item is None else getattr(item.model, "config", {})

    latent = [(comp, (cfg(comp) or {}).get(key)) for comp, key in
              (("vae", "latent_channels"), ("denoiser", "in_channels"), ("autoencoder", "latent_channels"),
               ("transformer", "in_channels")) if comp in found]
    values = {v for _, v in latent if v is not None}
    if len(values) > 1:
        listing = ", ".join(f"{layout.path(c)} {v}" for c, v in latent)
        raise WeightsError(f"the weights disagree on the latent channels ({listing}); they come from different "
                           "model versions: download matching releases")
    for model_comp, dino_comp in (("denoiser", "dinov2"), ("transformer", "triposg_dinov2")):
        if model_comp in found and dino_comp in found:
            want = (cfg(model_comp) or {}).get("cross_attention_dim")
            have = found[dino_comp].get("hidden_size")
            if want is not None and have is not None and int(want) != int(have):
                raise WeightsError(f"{layout.path(dino_comp)} gives {have}-wide image features but "
                                   f"{layout.path(model_comp)} expects {want} (cross_attention_dim); put the DINOv2 "
                                   "model that goes with it there")


# --------------------------------------------------------------------------- mesh


def validate_mesh(mesh) -> Any:
    """Read and check the user's anchor mesh, with the geometric checks of its preparation (cheap).

    Args:
        mesh: path (GLB/GLTF/OBJ/PLY/STL/OFF) or a ``trimesh.Trimesh``.

    Returns:
        the loaded ``trimesh.Trimesh`` (or the given mesh).

    Raises:
        MeshInputError: missing file, a folder, an empty (0-byte) file, unsupported format,
            unreadable file, no triangles, NaN/inf vertices, zero surface area (every
            vertex at one point, every face degenerate), zero extent.
    """
    import trimesh

    from .geometry.reference import check_reference_mesh

    if isinstance(mesh, (str, os.PathLike)):
        from .io.mesh_io import load_mesh

        path = Path(mesh)
        if path.is_dir():
            raise MeshInputError(f"mesh {path} is a folder; give a mesh file (GLB/GLTF/OBJ/PLY/STL/OFF)")
        if not path.exists():
            broken = " (a broken symbolic link)" if path.is_symlink() else ""
            raise MeshInputError(f"mesh file {path} does not exist{broken}")
        if path.stat().st_size == 0:
            raise MeshInputError(f"mesh file {path} is empty (0 bytes); export the mesh again")
        try:
            loaded = load_mesh(path)
        except FileNotFoundError:
            raise MeshInputError(f"mesh file {mesh} does not exist") from None
        except (ValueError, OSError) as exc:
            raise MeshInputError(str(exc).replace("load_mesh: ", "")) from None
        what = f"mesh {path}"
    elif isinstance(mesh, trimesh.Trimesh):
        if len(mesh.faces) == 0:
            raise MeshInputError("the anchor mesh has no triangles")
        loaded, what = mesh, "the anchor mesh"
    else:
        raise MeshInputError(f"mesh must be a file path or a trimesh.Trimesh, got {type(mesh).__name__}")
    try:
        check_reference_mesh(loaded)
    except (TypeError, ValueError) as exc:
        text = str(exc).split(": ", 1)[-1]
        raise MeshInputError(f"{what}: {text}; give a mesh with a surface (not a single point or flat "
                             "degenerate triangles)") from None
    return loaded


# --------------------------------------------------------------------------- export and outputs


def validate_export(out: PathLike, format: Optional[str] = None, options=None) -> Tuple[str, Path]:
    """The export format and output path of a run, checked before anything runs.

    Args:
        out: the output path (suffixes compared case-insensitively).
        format: a format of :data:`actionmesh_core.export.FORMATS`, or None (the suffix decides).
        options: :class:`actionmesh_core.export.ExportOptions` (bones, influences, interpolation, fps);
            None: the defaults.

    Returns:
        (format name, output path: ``out``, or ``out`` + the format's suffix when it had none).

    Raises:
        OutputPathError: no format and an unknown suffix, or a suffix of another format
            (``x.usdz`` with ``--format glb``: refused, never renamed).
        OptionError: unknown format, its optional module missing (with the install command),
            bones / influences / interpolation out of range.
    """
    from .export import ExportOptions, MissingDependency, check_export_options, check_format_available, resolve_format

    try:
        fmt, path = resolve_format(out, format)
    except ValueError as exc:
        known = format is None or str(format).lower() in _format_names()
        raise (OutputPathError if known else OptionError)(str(exc)) from None
    try:
        check_format_available(fmt)
    except MissingDependency as exc:
        raise OptionError(str(exc)) from None
    try:
        check_export_options(fmt, options if options is not None else ExportOptions())
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    return fmt, path


def _format_names():
    from .export import FORMATS

    return set(FORMATS)


def planned_outputs(out: Path, format: str, num_frames: int, per_frame_dir: Optional[PathLike] = None) -> List[Path]:
    """Every file a run writes: the export's files and the per-frame GLBs (names only; nothing is created)."""
    from .export.formats import planned_files

    files = planned_files(format, Path(out), num_frames)
    if per_frame_dir is not None:
        width = max(3, len(str(num_frames - 1)))
        files += [Path(per_frame_dir) / f"{Path(out).stem}_{k:0{width}d}.glb" for k in range(num_frames)]
    return files


def check_outputs_not_inputs(outputs: Sequence[PathLike], inputs: Sequence[PathLike]) -> None:
    """Refuse a run that would write over one of its own input files (the same file, through any path or link).

    Raises:
        OutputPathError: an output is an input file (named both ways).
    """
    ids = {}
    for item in inputs:
        try:
            st = os.stat(item)
        except OSError:
            continue
        ids[(st.st_dev, st.st_ino)] = Path(item)
    for item in outputs:
        try:
            st = os.stat(item)
        except OSError:
            continue  # not there yet: it cannot be an input
        clash = ids.get((st.st_dev, st.st_ino))
        if clash is not None:
            same = "" if Path(item) == clash else f" ({clash})"
            raise OutputPathError(f"the output {item} is an input of this run{same}: it would be overwritten; "
                                  "choose another --out")


# --------------------------------------------------------------------------- everything


def _check_run_outputs(out: Path, export_format: Optional[str], num_frames: int, per_frame_dir, checked,
                       mesh, loaded_mesh, opts: FrameOptions, config) -> None:
    """No output file is an input file, and the outputs clearly fit on their disks."""
    from .export.formats import estimate_bytes, format_for_suffix
    from .io.atomic import check_free_space

    fmt = export_format or format_for_suffix(out.suffix)
    outputs = planned_outputs(out, fmt, num_frames, per_frame_dir) if fmt else [out]
    inputs = list(checked.files) + [Path(p) for p in (mesh, opts.remove_background)
                                    if isinstance(p, (str, os.PathLike))]
    check_outputs_not_inputs(outputs, inputs)
    if fmt is None:
        return
    # the anchor's vertex count: the user's mesh, or TripoSG's mesh decimated to target_faces (V ~ F / 2)
    vertices = len(loaded_mesh.vertices) if loaded_mesh is not None else int(config.target_faces) // 2
    faces = len(loaded_mesh.faces) if loaded_mesh is not None else int(config.target_faces)
    try:
        check_free_space(out.parent, estimate_bytes(fmt, num_frames, vertices, faces), f"{fmt} output {out}")
        if per_frame_dir is not None:
            check_free_space(Path(per_frame_dir), estimate_bytes("glb", 1, vertices, faces) * num_frames,
                             f"the per-frame GLBs in {per_frame_dir}")
    except OSError as exc:
        raise OutputPathError(f"{exc.strerror}: {exc.filename}") from None


@dataclass
class RunPlan:
    """A run whose every input was checked (by :func:`validate_run`); pass it to ``ActionMeshPipeline.run``.

    Attributes:
        frames: :class:`ValidatedFrames` (the frames already read).
        config: the checked ``PipelineConfig``.
        weights: the weights root.
        device: the torch device of the run.
        checkpoints: component -> what :func:`validate_weights` found.
        mesh: the user's anchor mesh (loaded) or None.
        out: checked output file or None.
        per_frame_dir: checked folder for per-frame files or None.
        fps: animation frame rate (frames per second).
        seconds: time the checks took.
        frame_options: the frame options used.
    """

    frames: ValidatedFrames
    config: Any
    weights: Path
    device: torch.device
    checkpoints: Dict[str, Any]
    mesh: Any = None
    out: Optional[Path] = None
    per_frame_dir: Optional[Path] = None
    fps: float = DEFAULT_FPS
    seconds: float = 0.0
    frame_options: FrameOptions = field(default_factory=FrameOptions)

    @property
    def warnings(self) -> List[str]:
        """One-line warnings found on the way (tiny object, ...)."""
        return list(self.frames.warnings)


def validate_run(
    frames,
    weights: PathLike,
    config=None,
    mesh=None,
    out: Optional[PathLike] = None,
    *,
    frame_options: Optional[FrameOptions] = None,
    per_frame_dir: Optional[PathLike] = None,
    out_suffixes: Sequence[str] = (".glb",),
    checked_weights: Optional[Dict[str, Any]] = None,
    export_format: Optional[str] = None,
) -> RunPlan:
    """Check every input of a run (seconds, no model loaded) and return the plan to run.

    Order: options, output path(s), weights (configs, headers, then every tensor
    streamed), mesh, frames (every frame decoded once), then what needs the
    number of frames: the anchor frame, no output file being an input file, and
    the free space for the outputs.

    Args:
        frames: folder, video file or (T, H, W, 3|4) array in [0, 1].
        weights: weights root folder.
        config: ``PipelineConfig`` (default: the release's settings).
        mesh: optional user anchor mesh (path or trimesh).
        out: optional output file to check (never created here).
        frame_options: :class:`FrameOptions` (frame selection, masks, fps, background model).
        per_frame_dir: optional folder for per-frame files (never created here).
        out_suffixes: accepted suffixes of ``out``.
        checked_weights: the result of an earlier :func:`validate_weights` of ``weights`` for this
            mode (a batch checks its weights once, not per clip); None checks them here.
        export_format: the format ``out`` is written in (names the files it writes); None: from its suffix.

    Returns:
        :class:`RunPlan`.

    Raises:
        OptionError, OutputPathError, WeightsError (WeightsMissingError,
        CheckpointError, BackgroundModelError), MeshInputError, FramesError —
        all :class:`InputError` (a ``ValueError``) with a one-line message.
    """
    start = time.perf_counter()
    config = config if config is not None else PipelineConfig()
    opts = frame_options or FrameOptions()
    device = validate_options(config)
    check_frame_options(opts)
    if out is not None:
        out = validate_output_path(out, out_suffixes, "output")
    if per_frame_dir is not None:
        per_frame_dir = validate_output_folder(per_frame_dir, "per-frame folder")
    checkpoints = (checked_weights if checked_weights is not None
                   else validate_weights(weights, "video+mesh" if mesh is not None else "video"))
    if opts.remove_background is not None:
        validate_background_model(opts.remove_background)
    loaded_mesh = validate_mesh(mesh) if mesh is not None else None
    if opts.fps is None and config.fps is not None:
        opts = FrameOptions(**{**opts.__dict__, "fps": config.fps})
    checked = validate_frames(frames, opts)
    num = int(checked.images.shape[0])
    if not 0 <= config.anchor_frame < num:
        raise OptionError(f"anchor frame {config.anchor_frame} is outside the {num} frames used (0..{num - 1})")
    if out is not None:
        _check_run_outputs(out, export_format, num, per_frame_dir, checked, mesh, loaded_mesh, opts, config)
    return RunPlan(frames=checked, config=config, weights=Path(weights), device=device, checkpoints=checkpoints,
                   mesh=loaded_mesh, out=out, per_frame_dir=per_frame_dir, fps=checked.fps,
                   seconds=time.perf_counter() - start, frame_options=opts)
