"""End-to-end pipelines: video -> 4D, and {video + mesh} -> 4D (ActionMesh §3).

Stage 0 (TripoSG image-to-3D, or the user's mesh encoded by the TripoSG VAE)
gives the anchor latent and reference mesh; stage I generates one latent per
frame; stage II predicts the reference mesh's vertex positions at every frame.

Shape legend: T frames, H/W pixels, N latent tokens, C latent channels,
V vertices, F faces.
"""
from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Union

import torch

from .checkpoints import load_model, resolve_device, resolve_dtype
from .io.animated_mesh import AnimatedMesh
from .options import NUM_TOKENS, PipelineConfig
from .stages import Models
from .weights import WeightLayout

__all__ = ["PipelineConfig", "ActionMeshPipeline", "PipelineResult"]

PathLike = Union[str, os.PathLike]


@dataclass
class PipelineResult:
    """What a run produced.

    Attributes:
        animation: the animated mesh (original vertex order and UVs for a user mesh).
        latents: (T, N, C) stage I latents.
        anchor_mesh: the reference mesh (trimesh) in model space.
        timings: seconds per stage.
    """

    animation: AnimatedMesh
    latents: torch.Tensor
    anchor_mesh: Any
    timings: Dict[str, float] = field(default_factory=dict)


class ActionMeshPipeline(Models):
    """Lazy-loading ActionMesh pipeline over a weights folder in the released layout.

    It is the :class:`~actionmesh_core.stages.Models` of the stage layer: ``use(name)`` loads a
    component on first use (on ``config.device``) and, with ``low_memory``, frees it after the stage.

    Args:
        weights: root folder (see :mod:`actionmesh_core.weights`).
        config: :class:`PipelineConfig`.
        progress: ``progress(info)`` callback; default: tqdm bars per stage on a terminal, plain
            lines when stderr is not one (:class:`~actionmesh_core.progress.LineProgress`).

    Raises:
        WeightsMissingError: (at run time) folders missing, with what to download.
    """

    def __init__(self, weights: PathLike, config: Optional[PipelineConfig] = None,
                 progress: Optional[Callable[[dict], Optional[bool]]] = None):
        from .errors import OptionError

        self.layout = WeightLayout(weights)
        self.config = config or PipelineConfig()
        try:
            self.device = resolve_device(self.config.device)
        except ValueError as exc:
            raise OptionError(str(exc)) from None
        self.dtype = resolve_dtype(("bf16" if self.device.type == "cuda" else "fp32")
                                   if self.config.dtype == "auto" else self.config.dtype)
        self._models: Dict[str, Any] = {}
        self._progress = progress
        self._bars: Dict[str, Any] = {}
        self.timings: Dict[str, float] = {}  # seconds per step of the last run (see run())

    # ------------------------------------------------------------------ model lifetime

    def model(self, component: str):
        """Load (once) and return a component: denoiser, autoencoder, vae, transformer, dinov2, triposg_dinov2."""
        if component in self._models:
            return self._models[component]
        if self.config.low_memory:
            self.free()
        path = self.layout.path(component)
        if component in ("dinov2", "triposg_dinov2"):
            from .models.dino import DinoV2Encoder
            from .progress import quiet_library_bars

            with quiet_library_bars():  # no "Loading weights" bar in a log
                model = DinoV2Encoder.from_pretrained(path, device=self.device, dtype=self.dtype)
        else:
            kinds = {"denoiser": "actionmesh_denoiser", "autoencoder": "actionmesh_autoencoder",
                     "vae": "triposg_vae", "transformer": "triposg_dit"}
            # the VAE decodes SDFs and encodes meshes in float32 (thin, accuracy-sensitive)
            dtype = torch.float32 if component == "vae" else self.dtype
            model = load_model(path, kinds[component], device=self.device, dtype=dtype)
        self._models[component] = model
        return model

    def free(self, component: Optional[str] = None) -> None:
        """Drop one (or every) loaded model and release device memory."""
        names = [component] if component else list(self._models)
        for name in names:
            self._models.pop(name, None)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _stage_done(self, component: str) -> None:
        if self.config.low_memory:
            self.free(component)

    # ------------------------------------------------------------------ progress

    def _callback(self, info: dict) -> Optional[bool]:
        if self._progress is None:
            from .progress import LineProgress, is_terminal

            if not is_terminal():
                self._progress = LineProgress()
        if self._progress is not None:
            return self._progress(info)
        from tqdm.auto import tqdm

        key = f"{info['stage']}-{info.get('window', 1)}"
        bar = self._bars.get(key)
        if bar is None:
            label = info["stage"] + (f" window {info['window']}/{info['num_windows']}"
                                     if info.get("num_windows", 1) > 1 else "")
            bar = self._bars[key] = tqdm(total=info["total"], desc=label, leave=False)
        bar.update(info["step"] - bar.n)
        if info["step"] >= info["total"]:
            bar.close()
            self._bars.pop(key, None)
        return None

    # ------------------------------------------------------------------ models for the stages

    def has(self, name: str) -> bool:
        """Whether the weights layout names component ``name`` (the stage layer's model names)."""
        from .weights import COMPONENTS

        return name in COMPONENTS

    def get(self, name: str):
        """The loaded component ``name`` (loaded now if needed)."""
        return self.model(name)

    @contextlib.contextmanager
    def use(self, *names: str):
        """Load (once) the components ``names`` for a stage; with ``low_memory`` each is freed after it."""
        models = tuple(self.model(name) for name in names)
        try:
            yield models[0] if len(models) == 1 else models
        finally:
            for name in names:
                self._stage_done(name)

    def num_tokens(self) -> int:
        """Latent tokens per shape: the denoiser config's ``num_tokens_nominal`` (the release's 2048 if absent)."""
        import json

        cfg = json.loads((self.layout.path("denoiser") / "config.json").read_text())
        return int(cfg.get("num_tokens_nominal", NUM_TOKENS))

    # ------------------------------------------------------------------ entry points

    def prepare(self, frames, frame_options=None) -> "Any":
        """Load/prepare frames: a folder of frames, a video file, or a (T, H, W, 3|4) array in [0, 1].

        Runs :func:`~actionmesh_core.validation.validate_frames` (each file read once, errors named)
        and, for frames without alpha or masks, the background model of ``frame_options``.

        Returns:
            ``PreparedFrames``.
        """
        from .validation import finish_frames, validate_frames

        checked = validate_frames(frames, frame_options)
        return finish_frames(checked, frame_options)

    def run(self, frames, mesh=None, *, frame_options=None) -> PipelineResult:
        """video -> 4D (``mesh`` None) or {video + mesh} -> 4D, through :mod:`actionmesh_core.stages`.

        Every input is checked first, in seconds and before any model loads
        (:func:`actionmesh_core.validation.validate_run`); pass a
        :class:`~actionmesh_core.validation.RunPlan` from ``validate_run`` as
        ``frames`` to skip re-checking.

        Args:
            frames: folder of frames (RGBA PNGs, or ``*_image``/``*_mask`` pairs), video file,
                (T, H, W, 3|4) array in [0, 1], or a ``RunPlan``.
            mesh: optional user mesh (path or trimesh) used as the anchor at
                ``config.anchor_frame``; its vertex order, UVs and texture are kept
                and the normalisation is undone at the end.
            frame_options: :class:`~actionmesh_core.options.FrameOptions`
                (frame start/stride/max, masks, fps, background model).

        Returns:
            :class:`PipelineResult`; ``timings`` holds the seconds of checks, frames, dinov2,
            stage0 (with its "stage0 sampling", "meshing" and "clean-up" parts), stage1 and stage2
            (attention-chain mode: "stage1+chain").

        Raises:
            InputError subclasses (ValueError, one line): OptionError, FramesError,
            WeightsError (WeightsMissingError, CheckpointError), MeshInputError.
        """
        from . import stages
        from .sampling.triposg import read_scheduler_shift
        from .validation import RunPlan, finish_frames, validate_run

        cfg = self.config
        timings = self.timings = {}
        if isinstance(frames, RunPlan):
            plan = frames
        else:
            plan = validate_run(frames, self.layout.root, cfg, mesh=mesh, frame_options=frame_options)
        timings["checks"] = plan.seconds
        with stages.timed(timings, "frames"):
            prepared = finish_frames(plan.frames, plan.frame_options)
        with stages.timed(timings, "dinov2"):
            context = stages.encode_frames(self, prepared, batch_size=cfg.encode_batch_size, callback=self._callback)
        with stages.timed(timings, "stage0"):
            if plan.mesh is None:
                sources, reference, _ = stages.anchor_from_image(
                    self, context, cfg.anchor_frame, steps=cfg.stage0_steps, guidance=cfg.stage0_guidance,
                    shift=read_scheduler_shift(self.layout.path("scheduler")), seed=cfg.seed,
                    num_tokens=self.num_tokens(), octree_depth=cfg.octree_depth, refine_depth=cfg.refine_depth,
                    target_faces=cfg.target_faces, callback=self._callback, timings=timings)
            else:
                sources, reference = stages.encode_reference_mesh(
                    self, plan.mesh, cfg.anchor_frame, num_tokens=self.num_tokens(),
                    num_surface_points=cfg.num_surface_points, seed=cfg.seed)
        stage_one = dict(guidance=cfg.guidance_scale, shift=cfg.shift, seed=cfg.seed,
                         noise_correlation=cfg.noise_correlation, window=cfg.window, slide=cfg.slide,
                         callback=self._callback)
        if cfg.mode == "attention-chain":
            with stages.timed(timings, "stage1+chain"):
                animation, latents = stages.attention_chain_animate(
                    self, context, sources, reference, steps=cfg.chain_steps, octree_depth=cfg.octree_depth,
                    refine_depth=cfg.refine_depth, reinforce=cfg.chain_reinforce, fps=plan.fps, timings=timings,
                    **stage_one)
        else:
            with stages.timed(timings, "stage1"):
                latents = stages.temporal_denoise(self, context, sources, steps=cfg.steps, **stage_one)
            with stages.timed(timings, "stage2"):
                animation = stages.decode_deformation(self, latents, reference, window=cfg.window, slide=cfg.slide,
                                                      fps=plan.fps, callback=self._callback)
        self.free()
        return PipelineResult(animation=animation, latents=latents.latents, anchor_mesh=reference.to_trimesh(),
                              timings=timings)
