"""End-to-end pipelines: video -> 4D, and {video + mesh} -> 4D (ActionMesh §3).

Stage 0 (TripoSG image-to-3D, or the user's mesh encoded by the TripoSG VAE)
gives the anchor latent and reference mesh; stage I generates one latent per
frame; stage II predicts the reference mesh's vertex positions at every frame.

Shape legend: T frames, H/W pixels, N latent tokens, C latent channels,
V vertices, F faces.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch

from .checkpoints import load_model, resolve_device, resolve_dtype
from .io.animated_mesh import AnimatedMesh
from .weights import WeightLayout

__all__ = ["PipelineConfig", "ActionMeshPipeline", "PipelineResult"]

PathLike = Union[str, os.PathLike]


@dataclass
class PipelineConfig:
    """Settings of a run (defaults = the release's; :meth:`fast` = its fast preset).

    Attributes:
        steps: stage I denoising steps (30; fast 15).
        stage0_steps: TripoSG steps (100; fast 50).
        shift: stage I time shift (3.0). guidance_scale: stage I CFG (7.5).
        stage0_guidance: TripoSG CFG (7.5).
        seed: noise seed. anchor_frame: frame the anchor mesh is made from.
        noise_correlation: stage I cross-frame noise correlation [0, 1].
        window, slide: autoregressive windows (16 / 15).
        octree_depth, refine_depth: SDF meshing: dense coarse grid 2^6, narrow band up to 2^9 cells per axis.
        target_faces: anchor mesh decimation budget (40k).
        num_surface_points: samples for encoding a user mesh (16384).
        device: "auto" | "cpu" | "cuda" | "mps". dtype: "auto" (bf16 on CUDA, fp32 otherwise) | fp32 | bf16 | fp16.
        low_memory: keep at most one model on the device (load before, free after each stage).
        fps: frame rate of the INPUT (None = a video's own rate, 24 for image folders and arrays);
            the animation plays at ``fps / frame stride`` (real time).
        mode: "stage2" (temporal autoencoder) or "attention-chain" (training-free fast decoding).
        chain_steps: stage I steps in attention-chain mode (4, as published).
        chain_reinforce: attention-chain long-sequence reinforcement (§4.3).
    """

    steps: int = 30
    stage0_steps: int = 100
    shift: float = 3.0
    guidance_scale: float = 7.5
    stage0_guidance: float = 7.5
    seed: int = 0
    anchor_frame: int = 0
    noise_correlation: float = 0.0
    window: int = 16
    slide: int = 15
    octree_depth: int = 6
    refine_depth: int = 9
    target_faces: int = 40000
    num_surface_points: int = 16384
    device: str = "auto"
    dtype: str = "auto"
    low_memory: bool = False
    fps: Optional[float] = None
    mode: str = "stage2"
    chain_steps: int = 4
    chain_reinforce: bool = False

    def fast(self) -> "PipelineConfig":
        """The fast preset: 15 stage I steps and 50 TripoSG steps."""
        return replace(self, steps=15, stage0_steps=50)


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


class ActionMeshPipeline:
    """Lazy-loading ActionMesh pipeline over a weights folder in the released layout.

    Args:
        weights: root folder (see :mod:`actionmesh_core.weights`).
        config: :class:`PipelineConfig`.
        progress: ``progress(stage, step, total)`` callback; default: tqdm bars per stage.

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

    # ------------------------------------------------------------------ stages

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

    def image_features(self, rgb: torch.Tensor, component: str = "dinov2") -> torch.Tensor:
        """(T, H, W, 3) frames in [0, 1] -> (T, 257, Dc) DINOv2 features."""
        feats = self.model(component)(torch.as_tensor(rgb, dtype=torch.float32))
        self._stage_done(component)
        return feats

    def anchor_from_image(self, rgb: torch.Tensor):
        """Stage 0 with TripoSG: anchor latent (1, N, C) and cleaned anchor mesh (model space)."""
        from .sampling.triposg import read_scheduler_shift, sample_image_to_3d

        import time

        cfg = self.config
        t0 = time.perf_counter()
        ctx = self.image_features(rgb[cfg.anchor_frame:cfg.anchor_frame + 1], "triposg_dinov2")
        num_tokens = int(self._num_tokens())
        latent = sample_image_to_3d(self.model("transformer"), ctx, steps=cfg.stage0_steps,
                                    shift=read_scheduler_shift(self.layout.path("scheduler")),
                                    guidance_scale=cfg.stage0_guidance, seed=cfg.seed, num_tokens=num_tokens,
                                    callback=self._callback)
        self._stage_done("transformer")
        self.timings["stage0 sampling"] = time.perf_counter() - t0
        return latent, self.latent_to_mesh(latent)[0]

    def _num_tokens(self) -> int:
        import json

        cfg = json.loads((self.layout.path("denoiser") / "config.json").read_text())
        return int(cfg.get("num_tokens_nominal", 2048))

    def latent_to_mesh(self, latents: torch.Tensor, clean: bool = True) -> list:
        """SDF meshing of (B, N, C) latents -> list of B trimesh meshes (REFERENCE §4).

        Adds "meshing" (VAE field + narrow-band marching cubes, on the model's
        device) and "clean-up" seconds to :attr:`timings`.
        """
        import time

        from .geometry.cleanup import clean_mesh
        from .geometry.meshing import sdf_to_meshes

        t0 = time.perf_counter()
        vae = self.model("vae")
        meshes = sdf_to_meshes(vae.field_fn(latents.to(self.device, torch.float32)), latents.shape[0],
                               octree_depth=self.config.octree_depth, refine_depth=self.config.refine_depth,
                               inside=vae.inside_sign, device=self.device)
        self._stage_done("vae")
        self.timings["meshing"] = self.timings.get("meshing", 0.0) + time.perf_counter() - t0
        if clean:
            t0 = time.perf_counter()
            meshes = [clean_mesh(m, target_faces=self.config.target_faces) for m in meshes]
            self.timings["clean-up"] = self.timings.get("clean-up", 0.0) + time.perf_counter() - t0
        return meshes

    def encode_mesh(self, reference) -> torch.Tensor:
        """Encode a prepared reference mesh into an anchor latent (1, M, C) by sampling the posterior."""
        vae = self.model("vae")
        surface = torch.as_tensor(reference.surface, dtype=torch.float32)[None].to(self.device)
        query = torch.as_tensor(reference.query_points, dtype=torch.float32)[None].to(self.device)
        with torch.no_grad():
            mean, logvar = vae.encode(surface, query)
            latent = vae.sample_posterior(mean, logvar, torch.Generator().manual_seed(self.config.seed))
        self._stage_done("vae")
        return latent

    # ------------------------------------------------------------------ entry points

    def run(self, frames, mesh=None, *, frame_options=None) -> PipelineResult:
        """video -> 4D (``mesh`` None) or {video + mesh} -> 4D.

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
            frame_options: :class:`~actionmesh_core.validation.FrameOptions`
                (frame start/stride/max, masks, fps, background model).

        Returns:
            :class:`PipelineResult`.

        Raises:
            InputError subclasses (ValueError, one line): OptionError, FramesError,
            WeightsError (WeightsMissingError, CheckpointError), MeshInputError.
        """
        import time

        from .sampling.stage1 import sample_stage1
        from .geometry.reference import query_normals
        from .sampling.stage2 import decode_stage2
        from .errors import OptionError
        from .validation import RunPlan, finish_frames, validate_run

        cfg = self.config
        timings = self.timings = {}
        t0 = time.perf_counter()
        if isinstance(frames, RunPlan):
            plan = frames
        else:
            plan = validate_run(frames, self.layout.root, cfg, mesh=mesh, frame_options=frame_options)
        mesh = plan.mesh
        timings["checks"] = plan.seconds
        t0 = time.perf_counter()
        prepared = finish_frames(plan.frames, plan.frame_options)
        rgb = torch.as_tensor(prepared.rgb, dtype=torch.float32)
        num_frames = rgb.shape[0]
        timings["frames"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        reference = None
        if mesh is None:
            latent, anchor_mesh = self.anchor_from_image(rgb)
            if len(anchor_mesh.faces) == 0:
                raise OptionError("the anchor latent produced an empty mesh; try another --seed or --anchor-frame")
        else:
            from .geometry.reference import prepare_reference_mesh

            reference = prepare_reference_mesh(mesh, num_surface_points=cfg.num_surface_points,
                                               num_query_points=self._num_tokens(), seed=cfg.seed)
            latent = self.encode_mesh(reference)
            import trimesh

            anchor_mesh = trimesh.Trimesh(np.asarray(reference.vertices), np.asarray(reference.faces), process=False)
        # "stage0" = the whole anchor step; with TripoSG it splits into "stage0 sampling" (DINOv2 of the anchor
        # frame + rectified flow), "meshing" and "clean-up" (recorded inside)
        timings["stage0"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        context = self.image_features(rgb, "dinov2")
        timings["dinov2"] = time.perf_counter() - t0

        verts = torch.as_tensor(np.asarray(anchor_mesh.vertices), dtype=torch.float32)
        faces = torch.as_tensor(np.asarray(anchor_mesh.faces), dtype=torch.long)
        t0 = time.perf_counter()
        if cfg.mode == "attention-chain":
            from .attention_chain.capture import attention_chain_decode

            chain = attention_chain_decode(
                self.model("denoiser"), self.model("vae"), context.to(self.device), latent[0], verts.numpy(),
                faces.numpy(), cfg.anchor_frame, steps=cfg.chain_steps, shift=cfg.shift,
                guidance_scale=cfg.guidance_scale, seed=cfg.seed, noise_correlation=cfg.noise_correlation,
                window=cfg.window, slide=cfg.slide, reinforce=cfg.chain_reinforce, callback=self._callback)
            latents, positions = chain.latents, torch.as_tensor(chain.animation.positions)
            timings["stage1+chain"] = time.perf_counter() - t0
            timings.update({f"chain {k}": v for k, v in chain.timings.items()})
        else:
            latents = sample_stage1(self.model("denoiser"), context.to(self.device), {cfg.anchor_frame: latent[0]},
                                    steps=cfg.steps, shift=cfg.shift, guidance_scale=cfg.guidance_scale,
                                    seed=cfg.seed, noise_correlation=cfg.noise_correlation, window=cfg.window,
                                    slide=cfg.slide, callback=self._callback)
            self._stage_done("denoiser")
            timings["stage1"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            query = torch.cat([verts, query_normals(verts, faces)], dim=-1).to(self.device)
            positions = decode_stage2(self.model("autoencoder"), latents, query, faces=faces,
                                      anchor_frame=cfg.anchor_frame, window=cfg.window, slide=cfg.slide,
                                      callback=self._callback)
            self._stage_done("autoencoder")
            timings["stage2"] = time.perf_counter() - t0
        positions = positions.cpu()
        times = np.arange(num_frames, dtype=np.float32) / plan.fps
        if reference is not None:
            animation = reference.to_animated_mesh(positions.numpy(), times=times)
        else:
            animation = AnimatedMesh(faces=faces.numpy(), vertices=positions.numpy(), times=times)
        animation.metadata.update(anchor_frame=cfg.anchor_frame, mode=cfg.mode, seed=cfg.seed,
                                  steps=cfg.steps, fps=plan.fps)
        self.free()
        return PipelineResult(animation=animation, latents=latents.cpu(), anchor_mesh=anchor_mesh, timings=timings)
