"""Stage I: masked flow-matching generation of one shape latent per frame (ActionMesh §3.2).

Shape legend: B batch, T frames, N latent tokens per frame, C latent channels,
S image tokens per frame, Dc image feature width.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from ..perf import FLAGS as _PERF
from .common import ProgressCallback, report, seeded_noise
from .schedules import flow_timesteps
from .windows import plan_windows

__all__ = ["masked_flow_sampling", "sample_stage1", "initial_latents"]


@torch.no_grad()
def masked_flow_sampling(
    denoiser,
    init_latent: torch.Tensor,
    source_mask: torch.Tensor,
    context: torch.Tensor,
    framestep: torch.Tensor,
    *,
    steps: int = 30,
    shift: float = 3.0,
    guidance_scale: float = 7.5,
    cfg_batch_split: Optional[bool] = None,
    callback: Optional[ProgressCallback] = None,
    progress_info: Optional[dict] = None,
    before_step: Optional[Callable] = None,
) -> torch.Tensor:
    """Masked flow matching with classifier-free guidance over one window.

    Source frames (mask = 1) stay exactly as given and see diffusion time 0;
    target frames follow ``x <- x + (t_i - t_{i+1})/1000 · v``. Guidance uses a
    batch of two: image context zeroed (source latents kept) and full
    conditioning, ``v = v_u + scale·(v_c - v_u)`` (ActionMesh §3.2; the release's `actionmesh/scheduler`).
    The per-layer cross-attention keys/values of the image context are
    computed once for the whole run (``perf`` flag ``cache_cross_kv``; the
    plain path recomputes them at every step).

    Args:
        denoiser: :class:`~actionmesh_core.models.TemporalDenoiser`.
        init_latent: (B, T, N, C) clean source latents where mask = 1, N(0, 1)
            noise elsewhere.
        source_mask: (B, T) 1 = source (known), 0 = target.
        context: (B, T, S, Dc) per-frame image features.
        framestep: (B, T) frame indices.
        steps, shift: schedule (:func:`flow_timesteps`).
        guidance_scale: CFG scale (7.5 default; 1.0 disables the unconditional pass).
        cfg_batch_split: run the two CFG branches one after another (lower peak
            memory, same result); None = ``perf.get_flags().cfg_batch_split``.
        callback: ``callback(info) -> bool|None`` after each step; False cancels.
        progress_info: extra keys merged into every callback ``info``.
        before_step: optional ``before_step(i, t_i, x, velocity)`` called before
            step ``i`` with the current (B, T, N, C) latents and the guided
            velocity function ``velocity(x, t) -> (B, T, N, C)`` (used by the
            attention-chain reinforcement to look ahead and set attention biases).

    Returns:
        (B, T, N, C) float32 latents.

    Raises:
        SamplingCancelled: the callback returned False.
    """
    dev = next(denoiser.parameters()).device
    dtype = next(denoiser.parameters()).dtype
    times = flow_timesteps(steps, shift)
    mask = source_mask.to(dev, torch.float32)
    keep = mask[..., None, None] > 0.5
    x = init_latent.to(dev, torch.float32).clone()
    source = x.clone()
    use_cfg = guidance_scale != 1.0
    ctx = context.to(dev, dtype)
    split = _PERF.cfg_batch_split if cfg_batch_split is None else bool(cfg_batch_split)
    if use_cfg:
        branches = [torch.zeros_like(ctx), ctx]
        contexts = branches if split else [torch.cat(branches, 0)]
    else:
        contexts = [ctx]
    if _PERF.cache_cross_kv:
        caches = [denoiser.cross_attention_kv(c) for c in contexts]
        contexts = [None] * len(caches)
    else:
        caches = [None] * len(contexts)
    b = x.shape[0]
    fs = framestep.to(dev)

    def velocity(x_in: torch.Tensor, t_value: float) -> torch.Tensor:
        """Guided velocity (B, T, N, C) at flow time ``t_value`` for latents ``x_in``."""
        t_now = torch.full((b,), float(t_value), device=dev)
        if len(caches) == 1:
            reps = 2 if use_cfg else 1
            v_out = denoiser(x_in.repeat(reps, 1, 1, 1), contexts[0], fs.repeat(reps, 1), t_now.repeat(reps),
                             mask.repeat(reps, 1), kv_cache=caches[0]).float()
            v_all = v_out.chunk(reps, 0)
        else:
            v_all = [denoiser(x_in, c, fs, t_now, mask, kv_cache=cache).float() for c, cache in zip(contexts, caches)]
        return v_all[0] + guidance_scale * (v_all[1] - v_all[0]) if use_cfg else v_all[0]

    for i in range(steps):
        if before_step is not None:
            before_step(i, float(times[i]), x, velocity)
        v = velocity(x, float(times[i]))
        x = x + (float(times[i]) - float(times[i + 1])) / 1000.0 * v
        x = torch.where(keep, source, x)
        report(callback, **{"stage": "stage1", "step": i + 1, "total": steps, **(progress_info or {})})
    return x


def initial_latents(num_frames: int, source_latents: Dict[int, torch.Tensor], seed: int,
                    noise_correlation: float, device) -> "tuple[torch.Tensor, torch.Tensor]":
    """Seeded noise for every frame with the known source latents written in (ActionMesh §3.2).

    Args:
        num_frames: T. source_latents: {frame: (N, C)} (at least one).
        seed, noise_correlation: see :func:`~actionmesh_core.sampling.common.seeded_noise`.

    Returns:
        latents (T, N, C) float32 on ``device``, known (T,) bool CPU mask of the source frames.
    """
    n, c = next(iter(source_latents.values())).shape
    latents = seeded_noise((num_frames, n, c), seed, noise_correlation).to(device)
    known = torch.zeros(num_frames, dtype=torch.bool)
    for f, lat in source_latents.items():
        latents[int(f)] = lat.to(device, torch.float32)
        known[int(f)] = True
    return latents, known


@torch.no_grad()
def sample_stage1(
    denoiser,
    context: torch.Tensor,
    source_latents: Dict[int, torch.Tensor],
    *,
    steps: int = 30,
    shift: float = 3.0,
    guidance_scale: float = 7.5,
    seed: int = 0,
    noise_correlation: float = 0.0,
    window: int = 16,
    slide: int = 15,
    anchor_frame: Optional[int] = None,
    cfg_batch_split: Optional[bool] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Generate one shape latent per frame for a clip of any length >= 2.

    Windows follow :func:`~actionmesh_core.sampling.windows.plan_windows`
    (the release's windows, run order and frame order inside each window);
    every given source latent is kept clean, and each later window takes the
    already generated frames it holds as its sources (ActionMesh §3.4;
    ``generate_3d_latents`` in the release's ``actionmesh/pipeline.py``).

    Args:
        denoiser: :class:`~actionmesh_core.models.TemporalDenoiser`.
        context: (T, S, Dc) image features of every frame (DINOv2-L: S=257, Dc=1024).
        source_latents: {frame index: (N, C) latent} known latents (at least
            one: the anchor's).
        steps: denoising steps (30 default, 15 fast). shift: time shift (3.0).
        guidance_scale: CFG scale (7.5). seed: noise seed.
        noise_correlation: cross-frame noise correlation in [0, 1] (0 = i.i.d.;
            1.0 = ShapeGen4D-style noise shared by all frames).
        window, slide: window plan (16 / 15).
        anchor_frame: frame the plan starts from (default: smallest source index).
        cfg_batch_split: see :func:`masked_flow_sampling`.
        callback: progress/cancel callback; ``info`` has stage, step, total,
            window, num_windows.

    Returns:
        (T, N, C) float32 latents on the denoiser's device.

    Raises:
        ValueError: no source latent, a source index outside [0, T), or shapes
            that do not fit the denoiser.
        SamplingCancelled: cancelled by the callback.
    """
    if context.ndim != 3:
        raise ValueError(f"context must be (T, S, Dc), got {tuple(context.shape)}")
    num_frames = context.shape[0]
    if not source_latents:
        raise ValueError("stage I needs at least one source latent (the anchor frame's)")
    bad = [f for f in source_latents if not 0 <= int(f) < num_frames]
    if bad:
        raise ValueError(f"source latent frame indices {bad} are outside [0, {num_frames - 1}]")
    first = next(iter(source_latents.values()))
    if first.ndim != 2:
        raise ValueError(f"source latents must be (N, C), got {tuple(first.shape)}")
    n, c = first.shape
    if c != denoiser.config["in_channels"]:
        raise ValueError(f"source latents have {c} channels but the denoiser expects {denoiser.config['in_channels']}")
    if context.shape[-1] != denoiser.config["cross_attention_dim"]:
        raise ValueError(f"image features have width {context.shape[-1]} but the denoiser expects "
                         f"{denoiser.config['cross_attention_dim']}; use the DINOv2 model the denoiser was trained with")
    anchor = min(source_latents) if anchor_frame is None else int(anchor_frame)
    if anchor not in source_latents:
        raise ValueError(f"anchor_frame {anchor} has no source latent")
    dev = next(denoiser.parameters()).device
    latents, known = initial_latents(num_frames, source_latents, seed, noise_correlation, dev)
    plan = plan_windows(num_frames, anchor, window, slide)
    for w_idx, win in enumerate(plan):
        idx = list(win.order)  # the release's frame order inside the window
        if bool(known[idx].all()):
            continue
        mask = known[idx].float()[None]
        out = masked_flow_sampling(
            denoiser, latents[idx][None], mask, context[idx][None], torch.tensor(idx, dtype=torch.float32)[None],
            steps=steps, shift=shift, guidance_scale=guidance_scale, cfg_batch_split=cfg_batch_split,
            callback=callback, progress_info={"window": w_idx + 1, "num_windows": len(plan)},
        )[0]
        latents[idx] = out
        known[idx] = True
    return latents
