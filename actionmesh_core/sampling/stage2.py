"""Stage II: decode per-frame vertex positions of the reference mesh over windows.

Shape legend: T frames, N latent tokens, C latent channels, V vertices, F faces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ..perf import FLAGS as _PERF
from ..perf import stage2_targets_per_pass
from .common import ProgressCallback, report
from ..geometry.reference import query_normals
from .windows import Window, plan_windows, window_alphas

__all__ = ["decode_stage2", "decode_stage2_window", "stage2_schedule", "Stage2Step", "stage2_source_frame",
           "release_written_frames"]


def stage2_source_frame(win: Window) -> int:
    """The frame whose mesh a stage II window deforms: the window's first frame in the release's order.

    The anchor for the anchor window, the smallest frame of a right-going
    window, the largest frame of a left-going one (its frames run downwards)
    (``generate_mesh_animation`` in the release's ``actionmesh/pipeline.py``).

    Args:
        win: a :class:`~actionmesh_core.sampling.windows.Window` of :func:`plan_windows`.

    Returns:
        global frame index.
    """
    return win.order[0]


@dataclass(frozen=True)
class Stage2Step:
    """What one stage II window decodes.

    Attributes:
        window: the :class:`~actionmesh_core.sampling.windows.Window`.
        source: the frame whose mesh it deforms (:func:`stage2_source_frame`).
        release_frames: frames the release writes in this window, ascending:
            the frames ``min+1 .. max`` of the window not written before (its
            smallest frame never; first write wins).
        extra_frames: frames decoded here that the release does not decode
            here, ascending: a frame the release never decodes (frame 0 when
            the anchor is not 0), or a later window's source frame that the
            release has not decoded when that window runs (the release then
            fails). Such a frame is decoded by the first window that holds it,
            where it is the smallest frame (alpha 0), and changes no frame
            the release writes.
        release_fails: the release stops at this window (its source mesh was
            never decoded: ``assert anchor_mesh is not None``).
    """

    window: Window
    source: int
    release_frames: Tuple[int, ...]
    extra_frames: Tuple[int, ...]
    release_fails: bool

    @property
    def frames(self) -> Tuple[int, ...]:
        """Every frame this window decodes, ascending."""
        return tuple(sorted(self.release_frames + self.extra_frames))


def stage2_schedule(num_frames: int, anchor_frame: int = 0, window: int = 16, slide: int = 15) -> List[Stage2Step]:
    """The frames each stage II window decodes: the release's, plus the frames it misses (ActionMesh §3.4).

    The release's windows write the frames ``min+1 .. max`` of the window
    (``interpolate_timesteps(..., drop_first=True)``), the first write of a
    frame wins, and each window deforms the mesh at its first frame. We do the
    same, and also decode the frames the release misses (see
    :class:`Stage2Step`), so that every frame is decoded and no window lacks
    its source mesh.

    Args:
        num_frames, anchor_frame, window, slide: as :func:`plan_windows`.

    Returns:
        one :class:`Stage2Step` per window of :func:`plan_windows`, in run order.

    Raises:
        ValueError: arguments out of range (from :func:`plan_windows`).
    """
    plan = plan_windows(num_frames, anchor_frame, window, slide)
    # the release's rule alone: which window writes which frame (None: never)
    release_at = {anchor_frame: -1}
    release = []
    for k, win in enumerate(plan):
        lo, hi = min(win.order), max(win.order)
        new = tuple(f for f in range(lo + 1, hi + 1) if f not in release_at)
        release_at.update((f, k) for f in new)
        release.append(new)
    fails = [release_at.get(win.order[0], len(plan)) >= k for k, win in enumerate(plan)]
    # frames the release misses, decoded by the first window that holds them
    first_holder = {}
    for k, win in enumerate(plan):
        for f in win.order:
            first_holder.setdefault(f, k)
    missed = {f for f in range(num_frames) if f not in release_at}
    missed |= {win.order[0] for k, win in enumerate(plan) if fails[k]}
    extra = [[] for _ in plan]
    for f in missed:
        extra[first_holder[f]].append(f)
    # a missed source is written by the release (if at all) only at or after the window that needs it, so it
    # moves to an earlier window; frame 0 (anchor not 0) the release never writes
    return [Stage2Step(win, win.order[0], tuple(f for f in release[k] if f not in missed), tuple(sorted(extra[k])),
                       fails[k]) for k, win in enumerate(plan)]


def release_written_frames(num_frames: int, anchor_frame: int = 0, window: int = 16, slide: int = 15) -> List[int]:
    """Frames the official release's rule writes for a clip (for comparisons with it).

    A release window writes the frames ``min+1 .. max`` of the window (its
    smallest frame never), first write wins; the anchor frame holds the
    anchor mesh. So the release lacks frame 0 whenever ``anchor_frame != 0``.
    Where the release stops early (:attr:`Stage2Step.release_fails`) these are
    the frames its rule would write. :func:`decode_stage2` decodes every
    frame (README "Differences from the official release").

    Returns:
        sorted frame indices.
    """
    written = {anchor_frame}
    for win in plan_windows(num_frames, anchor_frame, window, slide):
        written.update(range(min(win.frames) + 1, max(win.frames) + 1))
    return sorted(written)


@torch.no_grad()
def decode_stage2_window(
    autoencoder,
    latents: torch.Tensor,
    win: Window,
    source_query: torch.Tensor,
    frames: Sequence[int],
    *,
    chunk_size: Optional[int] = 16384,
    batch_targets: Optional[bool] = None,
) -> torch.Tensor:
    """Deform the mesh at a window's source frame to some of the window's frames (ActionMesh §3.3).

    One window of :func:`decode_stage2`: the window's latents and frame times
    go to the autoencoder in the release's frame order (:attr:`Window.order`),
    the source alpha is that of ``win.order[0]`` and the target alphas those of
    ``frames``, all normalised over the window (:func:`window_alphas`).

    Args:
        autoencoder: :class:`~actionmesh_core.models.TemporalAutoencoder`.
        latents: (T, N, C) per-frame shape latents of the whole clip.
        win: the window.
        source_query: (V, 6) the source-frame mesh's vertices (model space)
            and unit normals (:func:`~actionmesh_core.geometry.reference.query_normals`).
        frames: K >= 1 frames of the window to decode.
        chunk_size: vertices per query chunk (None = all).
        batch_targets: see :func:`decode_stage2`.

    Returns:
        (K, V, 3) float32 positions, in the order of ``frames``.

    Raises:
        ValueError: a frame not in the window, or shapes that do not fit.
    """
    order = list(win.order)
    outside = [f for f in frames if f not in order]
    if outside or not frames:
        raise ValueError(f"frames {list(frames)} must be a non-empty subset of the window's frames {order}")
    dev = next(autoencoder.parameters()).device
    alphas = window_alphas(order).to(dev)
    local = {f: i for i, f in enumerate(order)}
    q = source_query.to(dev, torch.float32)[None]
    lat = latents[order][None].to(dev)
    step = torch.tensor(order, dtype=torch.float32, device=dev)[None]
    src_alpha = alphas[local[win.order[0]]].reshape(1)
    tgt_alpha = alphas[[local[f] for f in frames]]
    n_t = len(frames)
    if batch_targets is None:
        group = stage2_targets_per_pass(n_t, lat.shape[1] * (lat.shape[2] + 1), dev)
    else:
        group = min(_PERF.target_batch or n_t, n_t) if batch_targets else 1
    return torch.cat([autoencoder(lat, step, src_alpha, tgt_alpha[None, g:g + group], q, chunk_size=chunk_size)[0]
                      for g in range(0, n_t, group)]).float()


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
    normalised to [0, 1] over the window. Each window decodes the frames the
    release writes in it (its frames ``min+1 .. max`` not decoded before:
    first write wins) and, unlike the release, the frames the release misses
    (frame 0 when the anchor is not frame 0; a later window's source frame
    the release has not decoded when that window runs), by the first window
    that holds them: :func:`stage2_schedule`. So every frame is decoded and
    the frames the release writes come from the same window, source and
    alphas as in the release.

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
    schedule = stage2_schedule(num_frames, anchor_frame, window, slide)
    positions = torch.zeros(num_frames, query.shape[0], 3, device=dev)
    positions[anchor_frame] = query[:, :3].to(dev, torch.float32)
    anchor_normals = query[:, 3:].to(dev, torch.float32)
    faces_dev = None if faces is None else faces.to(dev, torch.long)
    for w_idx, step in enumerate(schedule):
        if step.frames:
            src = step.source
            reuse = src == anchor_frame or faces_dev is None
            normals = anchor_normals if reuse else query_normals(positions[src], faces_dev)
            positions[list(step.frames)] = decode_stage2_window(
                autoencoder, latents, step.window, torch.cat([positions[src], normals], dim=-1), step.frames,
                chunk_size=chunk_size, batch_targets=batch_targets)
        report(callback, stage="stage2", step=w_idx + 1, total=len(schedule), window=w_idx + 1,
               num_windows=len(schedule))
    return positions
