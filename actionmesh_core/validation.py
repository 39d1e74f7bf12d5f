"""Every input of a run checked up front, in seconds, before any model loads.

The command line, the Python API (:meth:`ActionMeshPipeline.run`) and the
ComfyUI nodes all call these functions, so a bad input gives the same one-line
error everywhere (see :mod:`actionmesh_core.errors` for the error types):

* :func:`validate_options` — steps >= 1, fps > 0, meshing depths, window/slide,
  guidance, shift, noise correlation, device and dtype;
* :func:`validate_output_path` / :func:`validate_output_folder` — the output can
  be written (checked, never created: nothing is made outside the target);
* :func:`validate_frames` — every frame file opened once (a bad file is named
  by its path), masks, frame selection, frame rate, the object found;
* :func:`validate_weights` — every weights folder: config parsed, safetensors
  header read (no tensor loaded), keys and shapes checked against the model the
  config builds on the ``meta`` device, model kind recognised, pickle-only
  folders refused, and the components' widths agreeing with each other;
* :func:`validate_mesh` — the user's anchor mesh;
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
from .options import DEFAULT_FPS, MAX_DEPTH, FrameOptions, PipelineConfig

__all__ = [
    "InputError", "OptionError", "FramesError", "FramesNotFoundError", "WeightsError", "BackgroundModelError",
    "MeshInputError", "OutputPathError", "CheckpointError", "WeightsMissingError",
    "FrameOptions", "RunPlan", "validate_run", "validate_options", "validate_output_path",
    "validate_output_folder", "validate_frames", "finish_frames", "prepare_checked", "ValidatedFrames", "validate_weights", "validate_mesh", "validate_background_model",
    "check_window", "check_meshing_depths", "check_frame_options", "DEFAULT_FPS",
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
        _finite("fps", c.fps, 0.0, 10000.0, low_open=True)
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
    if suffixes and target.suffix.lower() not in suffixes:
        raise OutputPathError(f"{what} must end in {' or '.join(suffixes)}, got {target}")
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
        _finite("fps", opts.fps, 0.0, 10000.0, low_open=True)


@dataclass
class ValidatedFrames:
    """Frames read and checked by :func:`validate_frames`.

    Attributes:
        images: (T, H, W, 3|4) float32 in [0, 1].
        masks: (T, H, W) float32 masks in [0, 1] or None.
        indices: index of each frame in the full input.
        fps: the animation's frame rate (input rate / stride).
        prepared: ``PreparedFrames`` (None while the background model has to run first).
        warnings: one-line warnings (tiny object, ...).
        needs_background_model: the frames have no alpha nor masks and a background model was given.
    """

    images: torch.Tensor
    masks: Optional[torch.Tensor]
    indices: list
    fps: float
    prepared: Any = None
    warnings: List[str] = field(default_factory=list)
    needs_background_model: bool = False


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
    if isinstance(frames, (str, os.PathLike)):
        seq = read_frame_sequence(frames, start=opts.start, stride=opts.stride, max_frames=opts.max_frames,
                                  mask_dir=opts.mask_dir, invert_mask=opts.invert_mask)
        images, masks, indices = seq.rgba, seq.masks, seq.indices
        rate = opts.fps if opts.fps is not None else (seq.source_fps or DEFAULT_FPS)
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
        raise FramesError(f"ActionMesh needs at least 2 frames, got {images.shape[0]} after frame start "
                          f"{opts.start}, stride {opts.stride} and max frames {opts.max_frames}")
    has_alpha = images.shape[-1] == 4 and bool((images[..., 3] < 1.0).any())
    result = ValidatedFrames(images=images, masks=masks, indices=list(indices), fps=fps)
    if masks is None and not has_alpha and opts.remove_background is not None:
        result.needs_background_model = True
        return result
    result.prepared, result.warnings = prepare_checked(images, masks, opts, fps=fps, indices=indices)
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


def validate_weights(root: PathLike, mode: str = "video") -> Dict[str, Any]:
    """Check every weights folder a run needs, from configs and headers only.

    Args:
        root: weights root (see :mod:`actionmesh_core.weights`).
        mode: ``"video"`` (TripoSG makes the anchor) or ``"video+mesh"``.

    Returns:
        component -> :class:`~actionmesh_core.checkpoints.CheckpointInfo` (DINOv2:
        its config dict; scheduler: its config dict).

    Raises:
        WeightsMissingError: folders missing (all named, with the download command).
        CheckpointError / WeightsError: invalid JSON config, unreadable or
            truncated safetensors, pickle-only folder, wrong model kind, keys or
            shapes that do not fit the config, or components whose widths disagree.
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
    return found


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
    """Read and check the user's anchor mesh.

    Args:
        mesh: path (GLB/GLTF/OBJ/PLY/STL/OFF) or a ``trimesh.Trimesh``.

    Returns:
        the loaded ``trimesh.Trimesh`` (or the given mesh).

    Raises:
        MeshInputError: missing file, unsupported format, unreadable file, no
            triangles, NaN/inf vertices.
    """
    import trimesh

    if isinstance(mesh, (str, os.PathLike)):
        from .io.mesh_io import load_mesh

        try:
            return load_mesh(mesh)
        except FileNotFoundError:
            raise MeshInputError(f"mesh file {mesh} does not exist") from None
        except (ValueError, OSError) as exc:
            raise MeshInputError(str(exc).replace("load_mesh: ", "")) from None
    if isinstance(mesh, trimesh.Trimesh):
        if len(mesh.faces) == 0:
            raise MeshInputError("the anchor mesh has no triangles")
        return mesh
    raise MeshInputError(f"mesh must be a file path or a trimesh.Trimesh, got {type(mesh).__name__}")


# --------------------------------------------------------------------------- everything


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
) -> RunPlan:
    """Check every input of a run (seconds, no model loaded) and return the plan to run.

    Order: options, output path(s), weights, mesh, frames (the slowest: every
    frame decoded once), then the anchor frame against the number of frames.

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
    return RunPlan(frames=checked, config=config, weights=Path(weights), device=device, checkpoints=checkpoints,
                   mesh=loaded_mesh, out=out, per_frame_dir=per_frame_dir, fps=checked.fps,
                   seconds=time.perf_counter() - start, frame_options=opts)
