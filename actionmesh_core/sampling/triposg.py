"""Stage 0: TripoSG image-to-3D rectified-flow sampling of the anchor latent.

release: third_party/TripoSG/triposg/pipelines/pipeline_triposg.py, ``TripoSGPipeline.__call__``; the sigmas
and the update: release: third_party/TripoSG/triposg/schedulers/scheduling_rectified_flow.py,
``RectifiedFlowScheduler.set_timesteps``, ``RectifiedFlowScheduler.step``; the final latent is the anchor
latent (release: actionmesh/external/triposg.py, ``TripoSGPipelinePlus.__call__``); guidance 7.5 and 100
steps (fast 50): release: actionmesh/configs/actionmesh.yaml, ``model.image_to_3D_denoiser.guidance_scale``,
``stage_0_steps``.

Shape legend: N latent tokens (2048), C latent channels, S image tokens, Dc feature width.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from ..perf import FLAGS as _PERF
from .common import ProgressCallback, report, seeded_noise
from .schedules import triposg_sigmas

__all__ = ["sample_image_to_3d", "read_scheduler_shift"]


def read_scheduler_shift(folder, default: float = 1.0) -> float:
    """Read ``shift`` from a TripoSG ``scheduler/scheduler_config.json`` (default 1.0 when absent)."""
    path = Path(folder)
    if path.is_dir():
        path = path / "scheduler_config.json"
    if not path.exists():
        return default
    return float(json.loads(path.read_text()).get("shift", default))


@torch.no_grad()
def sample_image_to_3d(
    dit,
    context: torch.Tensor,
    *,
    steps: int = 100,
    shift: float = 1.0,
    guidance_scale: float = 7.5,
    seed: int = 0,
    num_tokens: int = 2048,
    cfg_batch_split: Optional[bool] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Sample a TripoSG shape latent from one image's features.

    ``sigma_i = shift(1 - i/steps)``, final 0; ``x <- x + (sigma_i - sigma_{i+1})·v``
    with CFG over (zeroed image context, image context).

    Args:
        dit: :class:`~actionmesh_core.models.TripoSGDiT`.
        context: (1, S, Dc) image features (TripoSG's DINOv2), or (S, Dc).
        steps: 100 default (50 fast). shift: from the scheduler config.
        guidance_scale: 7.5. seed: noise seed. num_tokens: N (2048).
        cfg_batch_split: run the two CFG branches one after another (lower
            peak memory, same result); None = ``perf.get_flags().cfg_batch_split``.
        callback: progress/cancel callback (stage "stage0").

    Returns:
        (1, N, C) float32 latent (the anchor latent).

    Raises:
        ValueError: wrong context shape/width. SamplingCancelled: cancelled.
    """
    if context.ndim == 2:
        context = context[None]
    if context.ndim != 3 or context.shape[0] != 1:
        raise ValueError(f"context must be (1, S, Dc) for one image, got {tuple(context.shape)}")
    if context.shape[-1] != dit.config["cross_attention_dim"]:
        raise ValueError(f"image features have width {context.shape[-1]} but the TripoSG transformer expects "
                         f"{dit.config['cross_attention_dim']}")
    dev = next(dit.parameters()).device
    dtype = next(dit.parameters()).dtype
    sigmas = triposg_sigmas(steps, shift)
    x = seeded_noise((1, num_tokens, dit.config["in_channels"]), seed).to(dev)
    ctx = context.to(dev, dtype)
    use_cfg = guidance_scale != 1.0
    split = _PERF.cfg_batch_split if cfg_batch_split is None else bool(cfg_batch_split)
    if use_cfg:
        contexts = [torch.zeros_like(ctx), ctx] if split else [torch.cat([torch.zeros_like(ctx), ctx])]
    else:
        contexts = [ctx]
    if _PERF.cache_cross_kv:  # image K/V once per run (plain path: at every step)
        caches = [dit.cross_attention_kv(c) for c in contexts]
        contexts = [None] * len(caches)
    else:
        caches = [None] * len(contexts)
    for i in range(steps):
        if len(contexts) == 1:
            reps = 2 if use_cfg else 1
            t = torch.full((reps,), float(sigmas[i]) * 1000.0, device=dev)
            v_all = dit(x.repeat(reps, 1, 1), t, contexts[0], kv_cache=caches[0]).float().chunk(reps)
        else:
            t = torch.full((1,), float(sigmas[i]) * 1000.0, device=dev)
            v_all = [dit(x, t, c, kv_cache=cache).float() for c, cache in zip(contexts, caches)]
        if use_cfg:
            v_u, v_c = v_all
            v = v_u + guidance_scale * (v_c - v_u)
        else:
            v = v_all[0]
        x = x + (float(sigmas[i]) - float(sigmas[i + 1])) * v
        report(callback, stage="stage0", step=i + 1, total=steps)
    return x
