"""Stage II: decode per-frame vertex positions of the reference mesh over windows.

Shape legend: T frames, N latent tokens, C latent channels, V vertices, F faces.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..perf import FLAGS as _PERF
from ..perf import stage2_targets_per_pass
from .common import ProgressCallback, report
from .windows import plan_windows

__all__ = ["decode_stage2", "vertex_normals"]


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals.

    Args:
        vertices: (V, 3). faces: (F, 3) int64.

    Returns:
        (V, 3) unit normals (zero-area neighbourhoods get (0, 0, 0)).
    """
    v = vertices.float()
    tri = v[faces]
    face_n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    acc = torch.zeros_like(v).index_add_(0, faces.reshape(-1), face_n.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(acc, dim=-1)


def _alphas(frames) -> torch.Tensor:
    f = torch.tensor(frames, dtype=torch.float32)
    span = float(f.max() - f.min())
    return (f - f.min()) / span if span > 0 else torch.zeros_like(f)


@torch.no_grad()
def decode_stage2(
    autoencoder,
    latents: torch.Tensor,
    query: torch.Tensor,
    *,
    faces: Optional[torch.Tensor] = None,
    anchor_frame: int = 0,
    window: int = 16,
    slide: int = 15,
    chunk_size: Optional[int] = 16384,
    batch_targets: Optional[bool] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Predict the reference mesh's vertex positions at every frame (ActionMesh §3.3).

    The first window deforms the anchor-frame mesh (``query``) to the window's
    other frames; each later window deforms the mesh already decoded at its
    overlap frame nearest to its targets (normals recomputed from ``faces``
    when given). Alphas are frame times normalised to [0, 1] over the window.

    Args:
        autoencoder: :class:`~actionmesh_core.models.TemporalAutoencoder`.
        latents: (T, N, C) per-frame shape latents (stage I output).
        query: (V, 6) anchor-frame vertices (model space, [-1, 1]) + unit normals.
        faces: optional (F, 3) faces used to recompute normals of later windows.
        anchor_frame: the frame ``query`` is at.
        window, slide: window plan (16 / 15).
        chunk_size: vertices per query chunk (None = all).
        batch_targets: all target times of a window in one pass (exact: the
            target time only enters through the alpha token, so the targets
            are independent sequences of one batch); False runs one pass per
            target (the plain path). None = automatic:
            :func:`actionmesh_core.perf.stage2_targets_per_pass` (batched
            on CUDA up to a token budget, one per pass on the CPU); True = all
            targets in one pass. The ``perf`` flag ``target_batch`` caps the
            targets per pass either way.
        callback: progress/cancel callback (stage "stage2", one step per window).

    Returns:
        (T, V, 3) float32 positions; frame ``anchor_frame`` equals ``query[:, :3]``.

    Raises:
        ValueError: shapes that do not fit.
        SamplingCancelled: cancelled by the callback.
    """
    if latents.ndim != 3:
        raise ValueError(f"latents must be (T, N, C), got {tuple(latents.shape)}")
    if query.ndim != 2 or query.shape[-1] != 6:
        raise ValueError(f"query must be (V, 6) vertices + unit normals, got {tuple(query.shape)}")
    if latents.shape[-1] != autoencoder.config["latent_channels"]:
        raise ValueError(f"latents have {latents.shape[-1]} channels but the autoencoder expects "
                         f"{autoencoder.config['latent_channels']}")
    dev = next(autoencoder.parameters()).device
    num_frames = latents.shape[0]
    plan = plan_windows(num_frames, anchor_frame, window, slide)
    positions = torch.zeros(num_frames, query.shape[0], 3, device=dev)
    normals = torch.zeros_like(positions)
    positions[anchor_frame] = query[:, :3].to(dev, torch.float32)
    normals[anchor_frame] = query[:, 3:].to(dev, torch.float32)
    faces_dev = None if faces is None else faces.to(dev, torch.long)
    for w_idx, win in enumerate(plan):
        frames = list(win.frames)
        targets = list(win.targets)
        src = win.nearest_source
        if targets:
            alphas = _alphas(frames)
            local = {f: i for i, f in enumerate(frames)}
            q = torch.cat([positions[src], normals[src]], dim=-1)[None]
            lat = latents[frames][None].to(dev)
            step = torch.tensor(frames, dtype=torch.float32, device=dev)[None]
            src_alpha = alphas[local[src]].reshape(1).to(dev)
            tgt_alpha = alphas[[local[f] for f in targets]].to(dev)
            n_t = len(targets)
            if batch_targets is None:
                group = stage2_targets_per_pass(n_t, lat.shape[1] * (lat.shape[2] + 1), dev)
            else:
                group = min(_PERF.target_batch or n_t, n_t) if batch_targets else 1
            out = torch.cat([autoencoder(lat, step, src_alpha, tgt_alpha[None, g:g + group], q,
                                         chunk_size=chunk_size)[0] for g in range(0, n_t, group)])
            positions[targets] = out.float()
            for j, f in enumerate(targets):
                normals[f] = vertex_normals(out[j], faces_dev) if faces_dev is not None else normals[src]
        report(callback, stage="stage2", step=w_idx + 1, total=len(plan), window=w_idx + 1, num_windows=len(plan))
    return positions
