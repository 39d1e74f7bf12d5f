"""The stage layer: each step of ActionMesh once, for the pipeline, the batch worker and the ComfyUI nodes.

ActionMesh (CVPR 2026, §3) runs, for a clip of T frames:

==========================  ==================================================================
stage                       function
==========================  ==================================================================
prepare frames              :func:`prepare_clip` (selection, object mask, union-box crop)
encode frames               :func:`encode_frames` (DINOv2 ``last_hidden_state`` per frame)
stage 0, anchor from image  :func:`anchor_from_image` (TripoSG on the anchor frame, meshed)
stage 0, your mesh          :func:`encode_reference_mesh` (TripoSG VAE posterior, §3.4)
stage I                     :func:`temporal_denoise` (masked flow matching, §3.2)
SDF meshing + clean-up      :func:`mesh_latents`
stage II                    :func:`decode_deformation` (temporal 3D autoencoder, §3.3)
attention-chain mode        :func:`attention_chain_animate` (attention-chains §4, no stage II)
export                      :func:`export_files`
==========================  ==================================================================

:class:`~actionmesh_core.pipeline.ActionMeshPipeline` (command line, Python API,
batch) and the nodes call these functions with the same settings, so the
graph, the CLI and the API give the same result for the same inputs. A stage
gets its models through a :class:`Models` object: ``with models.use("vae") as
vae`` hands the model on its device for the block; the pipeline loads lazily
(and frees with ``low_memory``), the nodes go through ComfyUI's memory manager.
Model names are the weights components of :mod:`actionmesh_core.weights`:
``dinov2``, ``triposg_dinov2``, ``transformer``, ``vae``, ``denoiser``, ``autoencoder``.

Progress goes to one ``callback(info)`` with the samplers' info dict
(``{"stage", "step", "total"[, "window", "num_windows"]}``); a callback that
returns False cancels (:class:`~actionmesh_core.sampling.common.SamplingCancelled`).

Shape legend: T frames, H/W pixels, S image tokens per frame (257), Dc feature
width (1024), N latent tokens per frame (2048), C latent channels (64),
V vertices, F faces.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from .errors import OptionError
from .options import DEFAULT_FPS, ExportOptions, FrameOptions, chain_meshing_depths

__all__ = [
    "FrameContext", "SourceLatents", "LatentSequence", "ImageTo3DModel", "Models", "timed",
    "prepare_clip", "encode_frames", "anchor_from_image", "encode_reference_mesh", "temporal_denoise",
    "mesh_latents", "decode_deformation", "attention_chain_animate", "animation_from_positions", "export_files",
]

log = logging.getLogger(__name__)
Callback = Optional[Callable[[dict], Optional[bool]]]


# --------------------------------------------------------------------------- values passed between stages


@dataclass
class FrameContext:
    """Per-frame image features (DINOv2 ``last_hidden_state``, ActionMesh §3.2 conditioning).

    Attributes:
        features: (T, S, Dc) float32 CPU tensor.
        fps: frame rate of the sequence, if known.
        frame_indices: indices of the frames in the source video.
        images: (T, H, W, 3) prepared frames in [0, 1] the features were computed from (stage 0 encodes
            the anchor frame with TripoSG's own image encoder), or None.
    """

    features: torch.Tensor
    fps: Optional[float] = None
    frame_indices: List[int] = field(default_factory=list)
    images: Optional[torch.Tensor] = None

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.features.shape[0])


@dataclass
class SourceLatents:
    """Known (clean) 3D latents and the frames they belong to (paper §3.2, masked generation).

    Attributes:
        latents: {frame index: (N, C) float32 CPU tensor}.
        anchor_frame: the frame whose mesh becomes the reference mesh of stage II.

    Raises:
        ValueError: no latent, latents of different shapes, or no latent at ``anchor_frame``.
    """

    latents: Dict[int, torch.Tensor]
    anchor_frame: int = 0

    def __post_init__(self) -> None:
        if not self.latents:
            raise ValueError("SourceLatents needs at least one latent")
        shapes = {tuple(v.shape) for v in self.latents.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"source latents must all be (N, C) of one shape, got {sorted(shapes)}")
        if self.anchor_frame not in self.latents:
            raise ValueError(f"anchor frame {self.anchor_frame} has no latent (frames: {sorted(self.latents)})")

    @property
    def frames(self) -> List[int]:
        """Sorted frame indices that carry a source latent."""
        return sorted(self.latents)

    def merged(self, other: Optional["SourceLatents"]) -> "SourceLatents":
        """Union with ``other`` (this object's latents and anchor win on conflicts)."""
        if other is None:
            return self
        latents = dict(other.latents)
        latents.update(self.latents)
        return SourceLatents(latents=latents, anchor_frame=self.anchor_frame)


@dataclass
class LatentSequence:
    """One 3D latent per frame: the output of stage I (paper §3.2).

    Attributes:
        latents: (T, N, C) float32 CPU tensor.
        anchor_frame: frame of the reference mesh (for stage II).
        source_frames: frames whose latents were given (not generated).
        fps: frame rate, if known.
        steps, seed: the stage I steps and seed that made them (recorded in the animation's metadata).
    """

    latents: torch.Tensor
    anchor_frame: int = 0
    source_frames: List[int] = field(default_factory=list)
    fps: Optional[float] = None
    steps: Optional[int] = None
    seed: Optional[int] = None

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.latents.shape[0])


@dataclass
class ImageTo3DModel:
    """TripoSG image-to-3D: its transformer and its own DINOv2 image encoder (``image_encoder_dinov2``).

    The release conditions TripoSG on TripoSG's encoder, not on the stage I
    DINOv2 (``actionmesh/external/triposg.py``); ``image_encoder`` None falls
    back to the stage I features (with a warning).
    """

    transformer: Any
    image_encoder: Any = None


class Models:
    """Named models for the stages (``with models.use("vae") as vae: ...``).

    This base class hands the models as they are (already on their device).
    The pipeline loads them lazily (:class:`~actionmesh_core.pipeline.ActionMeshPipeline`),
    the ComfyUI nodes through ComfyUI's memory manager (``nodes/host_device.py``).

    Args:
        **named: component name -> model (None entries are left out).
    """

    def __init__(self, **named):
        self._named = {name: model for name, model in named.items() if model is not None}

    def has(self, name: str) -> bool:
        """Whether a model called ``name`` is available."""
        return name in self._named

    def get(self, name: str):
        """The model called ``name``.

        Raises:
            ValueError: no such model was given.
        """
        if name not in self._named:
            raise ValueError(f"this stage needs the {name} model, which was not given")
        return self._named[name]

    @contextlib.contextmanager
    def use(self, *names: str) -> Iterator[Any]:
        """The models ``names`` for a block: one model, or a tuple for several."""
        models = tuple(self.get(name) for name in names)
        yield models[0] if len(models) == 1 else models


@contextlib.contextmanager
def timed(timings: Optional[Dict[str, float]], key: str) -> Iterator[None]:
    """Add the block's wall seconds to ``timings[key]`` (nothing when ``timings`` is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


def _device(module) -> torch.device:
    params = getattr(module, "parameters", None)
    for param in (params() if callable(params) else ()):
        return param.device
    return torch.device("cpu")


def _check_frame(frame: int, num_frames: int, what: str) -> int:
    if not 0 <= int(frame) < num_frames:
        raise OptionError(f"{what} {frame} is outside the {num_frames} frames used (0..{num_frames - 1})")
    return int(frame)


def _report(callback: Callback, **info) -> None:
    from .sampling.common import report

    report(callback, **info)


# --------------------------------------------------------------------------- frames


def prepare_clip(images, masks=None, options: Optional[FrameOptions] = None, *, indices: Optional[Sequence[int]] = None):
    """Prepare frames given as tensors: select, find the object, crop with the union box (ActionMesh paper supp. C;
    release: actionmesh/preprocessing/image_processor.py, ``ImagePreprocessor.process_images``).

    The command line reads files and prepares them through
    :func:`~actionmesh_core.validation.validate_frames`; both end in
    :func:`~actionmesh_core.validation.prepare_checked` (the release's
    composite on white, union-box crop with a 10 % margin, 8-bit values; no
    resize unless ``options.size``).

    Args:
        images: (B, H, W, 3|4) float in [0, 1] (RGBA alpha = object mask), or one (H, W, 3|4) frame.
        masks: optional (B, H, W) or (1, H, W) or (H, W) object masks in [0, 1], used as the frames'
            alpha (one per frame or one for all); a mask of 1 everywhere carries no outline and is ignored.
        options: :class:`~actionmesh_core.options.FrameOptions` (start, stride, max frames, invert, margin,
            background threshold, minimum crop, size, fps of the input).
        indices: the frames to use (default: from ``options.start/stride/max_frames``).

    Returns:
        (``PreparedFrames`` with ``fps = options.fps (24 when None) / stride``, list of one-line warnings).

    Raises:
        OptionError: a bad frame option. FramesError: masks that do not fit, fewer than 2 frames,
            an empty object mask, a background that is not plain.
    """
    from .errors import FramesError
    from .frames import select_frames
    from .validation import check_frame_options, prepare_checked

    opts = options or FrameOptions()
    check_frame_options(opts)
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images[None]
    total = int(images.shape[0])
    if indices is None:
        try:
            indices = select_frames(total, opts.start, opts.stride, opts.max_frames)
        except ValueError as exc:
            raise FramesError(str(exc)) from None
    indices = list(indices)
    selected = images[indices]
    if masks is not None:
        masks = torch.as_tensor(masks).float()
        if masks.ndim == 2:
            masks = masks[None]
        if masks.shape[0] == total and total != 1:
            masks = masks[indices]
        elif masks.shape[0] == 1:
            masks = masks.expand(len(indices), -1, -1)
        elif masks.shape[0] != len(indices):
            raise FramesError(f"the mask batch has {masks.shape[0]} masks but the image batch has {total} frames; "
                              "give one mask per frame (or one mask for all)")
        if opts.invert_mask:
            masks = 1.0 - masks
        if bool((masks >= 1.0).all()):
            masks = None  # no outline (e.g. frames without alpha): like an opaque alpha, carries no mask
    fps = float(opts.fps if opts.fps is not None else DEFAULT_FPS) / opts.stride
    return prepare_checked(selected, masks, opts, fps=fps, indices=indices)


def encode_frames(models: Models, prepared, *, batch_size: int = 8, callback: Callback = None) -> FrameContext:
    """DINOv2 features of every prepared frame, ``batch_size`` frames per forward pass (ActionMesh §3.2).

    Args:
        models: with ``dinov2`` (:class:`~actionmesh_core.models.dino.DinoV2Encoder`: 224 px bicubic
            preprocessing of ``actionmesh/model/image_encoder.py``).
        prepared: ``PreparedFrames`` (``rgb`` (T, H, W, 3), ``fps``, ``frame_indices``).
        batch_size: frames per pass (>= 1).
        callback: progress (stage ``"dinov2"``, one step per frame).

    Returns:
        :class:`FrameContext` with features (T, S, Dc) float32 on the CPU and the prepared frames.

    Raises:
        OptionError: batch_size < 1. ValueError: the encoder returned an unexpected shape.
    """
    if int(batch_size) < 1:
        raise OptionError(f"batch size must be >= 1, got {batch_size}")
    images = torch.as_tensor(prepared.rgb)
    count = int(images.shape[0])
    chunks = []
    with models.use("dinov2") as encoder:
        for start in range(0, count, int(batch_size)):
            chunks.append(torch.as_tensor(encoder(images[start:start + int(batch_size)])).float().cpu())
            _report(callback, stage="dinov2", step=min(start + int(batch_size), count), total=count)
    features = torch.cat(chunks, dim=0)
    if features.ndim != 3 or features.shape[0] != count:
        raise ValueError(f"the image encoder returned {tuple(features.shape)}, expected ({count}, tokens, width)")
    return FrameContext(features=features, fps=getattr(prepared, "fps", None),
                        frame_indices=list(getattr(prepared, "frame_indices", None) or range(count)), images=images)


# --------------------------------------------------------------------------- stage 0


def _anchor_condition(models: Models, context: FrameContext, frame: int) -> torch.Tensor:
    """(1, S, Dc) image features TripoSG is conditioned on: its own encoder on the anchor frame."""
    if models.has("triposg_dinov2") and context.images is not None:
        with models.use("triposg_dinov2") as encoder:
            return torch.as_tensor(encoder(context.images[frame:frame + 1])).float()
    log.warning("TripoSG's own image encoder (TripoSG/image_encoder_dinov2) was not found: stage 0 is conditioned "
                "on the stage I DINOv2 features instead (the result differs from the release's)")
    return context.features[frame:frame + 1]


def anchor_from_image(models: Models, context: FrameContext, anchor_frame: int, *, steps: int, guidance: float,
                      shift: float, seed: int, num_tokens: int, octree_depth: int, refine_depth: int,
                      target_faces: int, callback: Callback = None,
                      timings: Optional[Dict[str, float]] = None):
    """Stage 0: TripoSG image-to-3D on the anchor frame, meshed and cleaned (release:
    actionmesh/external/triposg.py, ``TripoSGPipelinePlus.__call__``).

    Rectified-flow sampling of one shape latent conditioned on TripoSG's DINOv2
    features of the anchor frame (``actionmesh/external/triposg.py``), then
    :func:`mesh_latents`; the mesh stays in the latent's model space.

    Args:
        models: ``transformer``, ``vae`` and (normally) ``triposg_dinov2``.
        context: :class:`FrameContext` (its ``images`` for TripoSG's encoder).
        anchor_frame: index in the prepared frames.
        steps, guidance, shift, seed, num_tokens: TripoSG sampling (100, 7.5, scheduler shift, 0, 2048).
        octree_depth, refine_depth, target_faces: meshing and decimation (see :func:`mesh_latents`).
        callback: progress (stages ``"stage0"``, ``"meshing"``, ``"clean-up"``).
        timings: adds ``"stage0 sampling"``, ``"meshing"`` and ``"clean-up"`` seconds.

    Returns:
        (:class:`SourceLatents` {anchor_frame: (N, C)}, ``ReferenceMesh`` of the anchor mesh (model space),
        the cleaned ``trimesh.Trimesh``).

    Raises:
        OptionError: frame outside the clip, bad meshing depths, or a latent without surface.
    """
    from .sampling.triposg import sample_image_to_3d
    from .validation import check_meshing_depths

    check_meshing_depths(octree_depth, refine_depth)
    frame = _check_frame(anchor_frame, context.num_frames, "anchor frame")
    with timed(timings, "stage0 sampling"):
        condition = _anchor_condition(models, context, frame)
        with models.use("transformer") as transformer:
            latent = sample_image_to_3d(transformer, condition, steps=steps, shift=shift, guidance_scale=guidance,
                                        seed=seed, num_tokens=num_tokens, callback=callback)
    latent = latent.float().cpu()
    mesh = mesh_latents(models, latent, octree_depth=octree_depth, refine_depth=refine_depth,
                        target_faces=target_faces, callback=callback, timings=timings,
                        empty_hint="try another seed or anchor frame")[0]
    reference = _model_space_reference(mesh, seed)
    return SourceLatents(latents={frame: latent[0]}, anchor_frame=frame), reference, mesh


def _model_space_reference(mesh, seed: int):
    """A mesh already in model space as the stage II reference (no re-normalisation)."""
    from .geometry.reference import prepare_reference_mesh

    return prepare_reference_mesh(mesh, seed=int(seed) % (2 ** 32), normalize=False)


def encode_reference_mesh(models: Models, mesh, frame_index: int, *, num_tokens: int, num_surface_points: int,
                          seed: int, sample_posterior: bool = True):
    """Stage 0 with your mesh: normalise, sample its surface, encode it with the TripoSG VAE (ActionMesh §3.4).

    Args:
        models: ``vae``.
        mesh: path, ``trimesh.Trimesh`` or ``Scene``; its vertex order, UVs and texture are kept.
        frame_index: the frame the mesh matches (its pose and view).
        num_tokens: M latent tokens (FPS query points of the encoder; the denoiser's ``num_tokens_nominal``).
        num_surface_points: P surface samples (16384).
        seed: seeds the surface sampling and the posterior sample.
        sample_posterior: draw ``mean + exp(logvar / 2) * eps`` as the release does; False = the mean.

    Returns:
        (:class:`SourceLatents` {frame_index: (M, C)}, ``ReferenceMesh``).

    Raises:
        ValueError: an empty or degenerate mesh (from ``prepare_reference_mesh``).
    """
    from .geometry.reference import prepare_reference_mesh

    reference = prepare_reference_mesh(mesh, num_surface_points=int(num_surface_points),
                                       num_query_points=int(num_tokens), seed=int(seed) % (2 ** 32))
    with models.use("vae") as vae:
        device = _device(vae)
        with torch.no_grad():
            mean, logvar = vae.encode(reference.surface[None].to(device), reference.query_points[None].to(device))
            mean, logvar = mean.float(), logvar.float()
            latent = (vae.sample_posterior(mean, logvar, torch.Generator().manual_seed(int(seed)))
                      if sample_posterior else mean)
    return SourceLatents(latents={int(frame_index): latent[0].cpu()}, anchor_frame=int(frame_index)), reference


# --------------------------------------------------------------------------- stage I, meshing


def temporal_denoise(models: Models, context: FrameContext, sources: SourceLatents, *, steps: int, guidance: float,
                     shift: float, seed: int, noise_correlation: float, window: int, slide: int,
                     callback: Callback = None) -> LatentSequence:
    """Stage I: one 3D latent per frame by masked flow matching, sources kept clean (ActionMesh §3.2).

    Args:
        models: ``denoiser``.
        context: :class:`FrameContext` (T frames).
        sources: known latents (anchor, optional extra frames), all inside the clip.
        steps, guidance, shift, seed, noise_correlation, window, slide: as
            :func:`~actionmesh_core.sampling.stage1.sample_stage1` (30, 7.5, 3.0, 0, 0.0, 16, 15).
        callback: progress (stage ``"stage1"``, per window).

    Returns:
        :class:`LatentSequence` (T, N, C) on the CPU.

    Raises:
        OptionError: a bad window/slide or source frames outside the clip.
    """
    from .sampling.stage1 import sample_stage1
    from .validation import check_window

    check_window(window, slide)
    num_frames = context.num_frames
    outside = [k for k in sources.frames if not 0 <= k < num_frames]
    if outside:
        raise OptionError(f"source latents at frames {outside} are outside the {num_frames} frames used")
    with models.use("denoiser") as denoiser:
        device = _device(denoiser)
        latents = sample_stage1(denoiser, context.features.to(device), dict(sources.latents), steps=steps,
                                shift=shift, guidance_scale=guidance, seed=seed, noise_correlation=noise_correlation,
                                window=window, slide=slide, callback=callback)
    latents = latents.float().cpu()
    if latents.ndim != 3 or latents.shape[0] != num_frames:
        raise ValueError(f"stage I returned {tuple(latents.shape)}, expected ({num_frames}, N, C)")
    return LatentSequence(latents=latents, anchor_frame=sources.anchor_frame, source_frames=sources.frames,
                          fps=context.fps, steps=int(steps), seed=int(seed))


def mesh_latents(models: Models, latents: torch.Tensor, *, octree_depth: int, refine_depth: int, target_faces: int,
                 callback: Callback = None, timings: Optional[Dict[str, float]] = None,
                 empty_hint: str = "try another seed or more steps") -> list:
    """SDF meshing of latents with the TripoSG VAE field, then the release's clean-up (release:
    actionmesh/preprocessing/mesh_processor.py, ``MeshPostprocessor.process_mesh``).

    Narrow-band marching cubes (dense 2^octree_depth grid refined near the
    surface up to 2^refine_depth cells per axis, on the VAE's device), then
    :func:`~actionmesh_core.geometry.cleanup.clean_mesh` (vertex merge,
    floaters under 2 % removed, decimation to ``target_faces``).

    Args:
        models: ``vae``.
        latents: (K, N, C) or (N, C) latents.
        octree_depth, refine_depth: meshing depths (6 / 9).
        target_faces: decimation budget (40000; 0 = no decimation).
        callback: progress (stages ``"meshing"`` and ``"clean-up"``).
        timings: adds ``"meshing"`` and ``"clean-up"`` seconds.
        empty_hint: what to try when a latent has no surface.

    Returns:
        list of K cleaned ``trimesh.Trimesh`` (model space).

    Raises:
        OptionError: bad depths, or a latent whose field has no zero level set.
    """
    from .geometry.cleanup import clean_mesh
    from .geometry.meshing import sdf_to_meshes
    from .validation import check_meshing_depths

    octree_depth, refine_depth = check_meshing_depths(octree_depth, refine_depth)
    latents = torch.as_tensor(latents)
    if latents.ndim == 2:
        latents = latents[None]
    count = int(latents.shape[0])
    with timed(timings, "meshing"):
        with models.use("vae") as vae:
            device = _device(vae)
            try:
                meshes = sdf_to_meshes(vae.field_fn(latents.to(device, torch.float32)), count,
                                       octree_depth=octree_depth, refine_depth=refine_depth,
                                       inside=getattr(vae, "inside_sign", "negative"), device=device,
                                       callback=lambda done, total: _report(callback, stage="meshing", step=done,
                                                                            total=total))
            except ValueError as exc:
                if "no surface" not in str(exc):
                    raise
                meshes = [None] * count
    empty = [i for i, mesh in enumerate(meshes) if mesh is None or len(mesh.faces) == 0]
    if empty:
        raise OptionError(f"meshing found no surface for latent(s) {empty} (the latent has no zero level set); "
                          f"{empty_hint}")
    cleaned = []
    with timed(timings, "clean-up"):
        for i, mesh in enumerate(meshes):
            cleaned.append(clean_mesh(mesh, target_faces=int(target_faces) or None))
            _report(callback, stage="clean-up", step=i + 1, total=count)
    return cleaned


# --------------------------------------------------------------------------- stage II, attention chain


def animation_from_positions(reference, positions, *, fps: Optional[float], anchor_frame: int, mode: str,
                             source_frames: Sequence[int] = (), steps: Optional[int] = None,
                             seed: Optional[int] = None):
    """The animated reference mesh: per-frame positions in the reference's original vertex order.

    Args:
        reference: ``ReferenceMesh`` (UVs, texture, original order; a user mesh's normalisation is undone).
        positions: (T, V', 3) positions of the merged reference vertices (model space).
        fps: playback rate (frame k at k / fps seconds).
        anchor_frame, mode, source_frames, steps, seed: recorded in ``metadata`` (``steps`` = the stage I
            steps that ran: ``chain_steps`` in attention-chain mode).

    Returns:
        ``AnimatedMesh``.
    """
    if isinstance(positions, torch.Tensor):
        positions = positions.detach().float().cpu().numpy()
    rate = float(fps) if fps else DEFAULT_FPS
    count = int(np.shape(positions)[0])
    animation = reference.to_animated_mesh(positions, times=np.arange(count, dtype=np.float32) / rate)
    animation.metadata.update(anchor_frame=int(anchor_frame), mode=mode, fps=rate,
                              source_frames=[int(f) for f in source_frames])
    if steps is not None:
        animation.metadata["steps"] = int(steps)
    if seed is not None:
        animation.metadata["seed"] = int(seed)
    return animation


def decode_deformation(models: Models, latents: LatentSequence, reference, *, window: int, slide: int,
                       anchor_frame: Optional[int] = None, fps: Optional[float] = None, callback: Callback = None):
    """Stage II: the reference mesh's vertex positions at every frame (ActionMesh §3.3).

    Args:
        models: ``autoencoder``.
        latents: :class:`LatentSequence` from :func:`temporal_denoise`.
        reference: ``ReferenceMesh`` (its stage II queries: vertices + trimesh angle-weighted normals).
        window, slide: decoding windows (16 / 15).
        anchor_frame: the frame the reference matches; None (or < 0) = ``latents.anchor_frame``.
        fps: playback rate; None (or 0) = ``latents.fps``, else 24.
        callback: progress (stage ``"stage2"``, one step per window).

    Returns:
        ``AnimatedMesh`` (T frames, the reference's topology, UVs and texture).

    Raises:
        OptionError: a bad window/slide or an anchor frame outside the clip.
    """
    from .sampling.stage2 import decode_stage2
    from .validation import check_window

    check_window(window, slide)
    anchor = latents.anchor_frame if anchor_frame is None or anchor_frame < 0 else int(anchor_frame)
    _check_frame(anchor, latents.num_frames, "anchor frame")
    query = reference.vertex_queries()
    with models.use("autoencoder") as autoencoder:
        device = _device(autoencoder)
        positions = decode_stage2(autoencoder, latents.latents.to(device), query.to(device),
                                  faces=torch.as_tensor(np.asarray(reference.faces), dtype=torch.long),
                                  anchor_frame=anchor, window=window, slide=slide, callback=callback)
    return animation_from_positions(reference, positions, fps=fps or latents.fps, anchor_frame=anchor,
                                    mode="stage2", source_frames=latents.source_frames, steps=latents.steps,
                                    seed=latents.seed)


def attention_chain_animate(models: Models, context: FrameContext, sources: SourceLatents, reference, *,
                            steps: int, guidance: float, shift: float, seed: int, noise_correlation: float,
                            window: int, slide: int, octree_depth: int, refine_depth: int, reinforce: bool = False,
                            num_landmarks: Optional[int] = None, fps: Optional[float] = None,
                            callback: Callback = None, timings: Optional[dict] = None):
    """Attention-chain mode: few-step stage I while its attention is read, then chains, no stage II.

    *Fast 4D Mesh Generation by Spatio-Temporal Attention Chains* §4: anchor
    landmarks are followed through vertex -> token -> token -> surface
    attention and the reference mesh is animated by geodesic rigid skinning
    (:func:`~actionmesh_core.attention_chain.capture.attention_chain_decode`).
    The candidate surface points are read off a grid two levels coarser than
    the run's meshing (:func:`~actionmesh_core.options.chain_meshing_depths`).

    Args:
        models: ``denoiser`` and ``vae``.
        context: :class:`FrameContext`. sources: the anchor latent (its ``anchor_frame``).
        reference: ``ReferenceMesh`` to animate.
        steps: stage I steps (4, as published). guidance, shift, seed, noise_correlation, window, slide:
            stage I settings. octree_depth, refine_depth: the run's meshing depths (6 / 9).
        reinforce: long-sequence reinforcement (§4.3). num_landmarks: tracked landmarks (None = 1000).
        fps: playback rate (None = ``context.fps``, else 24).
        callback: progress (stages ``"stage1"``, ``"chain"``).
        timings: optional dict, given the chain's seconds per part (``"chain stage1"``, ``"chain candidates"``,
            ``"chain correspondences"``, ``"chain skinning"``; ``"chain reinforcement"`` with ``reinforce``).

    Returns:
        (``AnimatedMesh``, :class:`LatentSequence` of the few-step stage I).

    Raises:
        OptionError: bad window/slide or depths, anchor frame outside the clip.
        ValueError: no landmark could be tracked reliably.
    """
    from .attention_chain.capture import attention_chain_decode
    from .attention_chain.pipeline import AttentionChainConfig
    from .validation import check_meshing_depths, check_window

    check_window(window, slide)
    check_meshing_depths(octree_depth, refine_depth)
    frame = _check_frame(sources.anchor_frame, context.num_frames, "anchor frame")
    coarse, fine = chain_meshing_depths(octree_depth, refine_depth)
    config = AttentionChainConfig() if num_landmarks is None else AttentionChainConfig(num_landmarks=int(num_landmarks))
    with models.use("denoiser", "vae") as (denoiser, vae):
        device = _device(denoiser)
        result = attention_chain_decode(
            denoiser, vae, context.features.to(device), sources.latents[frame].to(device),
            np.asarray(reference.vertices), np.asarray(reference.faces), frame, steps=steps, shift=shift,
            guidance_scale=guidance, seed=seed, noise_correlation=noise_correlation, window=window, slide=slide,
            octree_depth=coarse, refine_depth=fine, reinforce=reinforce, config=config, callback=callback)
    if timings is not None:
        timings.update({f"chain {k}": v for k, v in result.timings.items()})
    animation = animation_from_positions(reference, result.animation.positions, fps=fps or context.fps,
                                         anchor_frame=frame, mode="attention-chain", source_frames=[frame],
                                         steps=steps, seed=seed)
    latents = LatentSequence(latents=result.latents.float().cpu(), anchor_frame=frame, source_frames=[frame],
                             fps=context.fps, steps=int(steps), seed=int(seed))
    return animation, latents


# --------------------------------------------------------------------------- export


def export_files(animation, path, fmt: str = ExportOptions.format, *, fps: Optional[float] = None,
                 interpolation: str = ExportOptions.interpolation, bones: int = ExportOptions.bones,
                 influences: int = ExportOptions.influences, per_frame_dir=None,
                 frame_prefix: Optional[str] = None):
    """Write an animation in ``fmt`` and, optionally, one static GLB per frame into ``per_frame_dir``.

    All files are written as one set (:func:`actionmesh_core.io.atomic.atomic_files`): staged beside
    their targets and moved in together at the end, so an error, Ctrl-C, SIGTERM or SIGHUP leaves no
    temporary file or staging folder and every previous output unchanged.

    Args:
        animation: ``AnimatedMesh``.
        path: the main output file. fmt: a key of ``actionmesh_core.export.FORMATS``.
        fps: playback rate (None: from the animation's times / metadata).
        interpolation, bones, influences: see :class:`~actionmesh_core.options.ExportOptions`.
        per_frame_dir: folder for ``<frame_prefix>_0000.glb`` ... (created), or None.
        frame_prefix: name of the per-frame files (default: the stem of ``path``).

    Returns:
        ``actionmesh_core.export.ExportResult`` of the main export (``path``, ``files``: main file first,
        ``info``: e.g. a skinned rig's fit error); the per-frame GLBs are not listed.

    Raises:
        ValueError: unknown format, or an animation the format cannot hold. MissingDependency: the
            format's optional module is missing (before anything is written). OSError: disk errors.
    """
    from .export import export_animation
    from .export.glb import export_static_glbs
    from .io.atomic import atomic_files

    path = Path(path)
    with atomic_files(path.stem) as files:
        if per_frame_dir is not None:
            export_static_glbs(animation, files.folder(per_frame_dir), frame_prefix or path.stem)
        return export_animation(animation, path, fmt, fps=fps, interpolation=interpolation, bones=bones,
                                influences=influences, files=files)
