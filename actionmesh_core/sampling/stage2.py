"""Stage II: decode per-frame vertex positions of the reference mesh over windows.

Shape legend: T frames, N latent tokens, C latent channels, V vertices, F faces.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from ..perf import FLAGS as _PERF
from ..perf import stage2_targets_per_pass
from .common import ProgressCallback, report
from ..geometry.reference import query_normals
from .windows import Window, plan_windows

__all__ = ["decode_stage2", "stage2_source_frame", "release_written_frames"]


def stage2_source_frame(win: Window) -> int:
    """The frame whose mesh a stage II window deforms (the release's choice).

    The release runs each window in its own frame order and deforms the mesh
    at the window's FIRST frame: the anchor for the anchor window, the
    smallest frame of a right-going window (its overlap frame farthest from
    the new frames), the largest frame of a left-going one (whose frames run
    downwards). That frame is always already decoded when the window runs.

    Args:
        win: a :class:`~actionmesh_core.sampling.windows.Window` of :func:`plan_windows`.

    Returns:
        global frame index.
    """
    if win.direction == "anchor":
        return win.sources[0]
    return win.frames[0] if win.direction == "right" else win.frames[-1]


def release_written_frames(num_frames: int, anchor_frame: int = 0, window: int = 16, slide: int = 15) -> List[int]:
    """Frames the official release outputs for a clip (for comparisons with it).

    A release window writes the frames ``min+1 .. max`` of the window (its
    smallest frame never), first write wins; the anchor frame holds the
    anchor mesh. So the release lacks frame 0 whenever ``anchor_frame != 0``.
    :func:`decode_stage2` decodes every frame (README "Differences from the
    official release").

    Returns:
        sorted frame indices.
    """
    written = {anchor_frame}
    for win in plan_windows(num_frames, anchor_frame, window, slide):
        written.update(range(min(win.frames) + 1, max(win.frames) + 1))
    return sorted(written)


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
    other frames; each later window deforms the mesh already decoded at the
    release's source frame (:func:`stage2_source_frame`: the window's first
    frame in the release's order), with query normals recomputed from
    ``faces`` by :func:`~actionmesh_core.geometry.reference.query_normals`
    (trimesh angle-weighted, as the release). Alphas are frame times
    normalised to [0, 1] over the window. A frame is decoded once, by the
    first window that holds it (as the release: first write wins); unlike
    the release, every frame is decoded, frame 0 included when the anchor is
    not frame 0 (:func:`release_written_frames` lists the frames the release
    outputs).

    Args:
        autoencoder: :class:`~actionmesh_core.models.TemporalAutoencoder`.
        latents: (T, N, C) per-frame shape latents (stage I output).
        query: (V, 6) anchor-frame vertices (model space, [-1, 1]) + unit
            normals (``query_normals(vertices, faces)``).
        faces: (F, 3) faces of the reference mesh, used to recompute the
            normals of each later window's source mesh (None: later windows
            reuse the anchor normals; only for meshes without faces).
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
    positions[anchor_frame] = query[:, :3].to(dev, torch.float32)
    anchor_normals = query[:, 3:].to(dev, torch.float32)
    faces_dev = None if faces is None else faces.to(dev, torch.long)
    for w_idx, win in enumerate(plan):
        frames = list(win.frames)
        targets = list(win.targets)
        src = stage2_source_frame(win)
        if targets:
            alphas = _alphas(frames)
            local = {f: i for i, f in enumerate(frames)}
            reuse = src == anchor_frame or faces_dev is None
            normals = anchor_normals if reuse else query_normals(positions[src], faces_dev)
            q = torch.cat([positions[src], normals], dim=-1)[None]
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
        report(callback, stage="stage2", step=w_idx + 1, total=len(plan), window=w_idx + 1, num_windows=len(plan))
    return positions
