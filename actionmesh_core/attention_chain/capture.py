"""Attention capture inside the frozen models, and the attention-chain decoding driver.

Reads, without changing any model output (attention-chains §4.1, app. C):

- A(V -> Z): cross-attention of query points (anchor landmarks, candidate
  surface points) against a shape latent, in the TripoSG VAE decoder;
- A(Z_a -> Z_f): inflated self-attention of the stage I denoiser between the
  source (anchor) frame's tokens and each frame's tokens, at the last
  denoising step, averaged over heads and the chosen layers.

Probabilities are computed explicitly only for the rows needed, in chunks
(:func:`~actionmesh_core.attention_chain.attention.attention_rows`).

Shape legend: T frames, T_w frames of a window, N latent tokens, C latent
channels, S image tokens, Dc feature width, V vertices, F faces, L landmarks,
P candidate points.
"""
from __future__ import annotations

from contextlib import contextmanager
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..sampling.common import ProgressCallback, report
from ..sampling.stage1 import initial_latents, masked_flow_sampling
from ..sampling.windows import plan_windows
from .attention import attention_rows
from .pipeline import AttentionChainConfig, AttentionChainResult, animate_landmarks, plan_landmarks, track_landmarks
from .reinforcement import confidence_gain, reinforcement_logit_bias, trace_token_pairs

__all__ = ["vae_point_attention", "DenoiserTokenAttention", "attention_chain_decode", "ChainDecodeResult"]


@contextmanager
def _hooked(attn_modules: Sequence[torch.nn.Module], fn) -> Iterator[None]:
    previous = [m.capture for m in attn_modules]
    try:
        for i, m in enumerate(attn_modules):
            m.capture = (lambda q, k, i=i: fn(i, q, k))
        yield
    finally:
        for m, prev in zip(attn_modules, previous):
            m.capture = prev


@torch.no_grad()
def vae_point_attention(vae, latent: torch.Tensor, points: torch.Tensor, chunk_size: int = 8192) -> torch.Tensor:
    """A(V -> Z): VAE-decoder cross-attention of points against a latent's tokens.

    Args:
        vae: :class:`~actionmesh_core.models.TripoSGVAE`.
        latent: (N, C) or (1, N, C) shape latent.
        points: (P, 3) query points in model space.
        chunk_size: points per chunk (memory bound: chunk·H·N floats).

    Returns:
        (P, N) float32 head-averaged probabilities on the latent's device; rows sum to 1.
    """
    if latent.ndim == 2:
        latent = latent[None]
    dev = next(vae.parameters()).device
    tokens = vae.decode_tokens(latent.to(dev, torch.float32))
    rows: List[torch.Tensor] = []
    cross = vae.decoder.blocks[-1].sub("x_attn")
    with _hooked([cross], lambda _i, q, k: rows.append(attention_rows(q, k, chunk=chunk_size)[0])):
        vae.query_field(tokens, torch.as_tensor(points, dtype=torch.float32, device=dev), chunk_size)
    return torch.cat(rows, dim=0)


class DenoiserTokenAttention:
    """Captures A(Z_src -> Z_f) in the denoiser's inflated self-attention.

    Installed around one window's sampling; captures at the window's last
    denoising step (the conditional CFG branch), averaging heads and
    ``layers``. The softmax runs over the whole inflated sequence; the block of
    frame f's N latent tokens (time token excluded) is then renormalised per row.

    Args:
        denoiser: :class:`~actionmesh_core.models.TemporalDenoiser`.
        layers: indices of inflated layers to read (default: the first three inflated layers).
        chunk: anchor-token rows per chunk.

    Raises:
        ValueError: a requested layer is not inflated.
    """

    def __init__(self, denoiser, layers: Optional[Sequence[int]] = None, chunk: int = 512):
        inflated = sorted(denoiser.inflated)
        self.layers = list(inflated[:3] if layers is None else layers)
        bad = [i for i in self.layers if i not in denoiser.inflated]
        if bad:
            raise ValueError(f"attention-chain layers {bad} are not inflated layers of the denoiser "
                             f"(inflated: {inflated})")
        self.modules = [denoiser.blocks[i].sub("s_attn") for i in self.layers]
        self.chunk = chunk
        self.active = False
        self.frames = 0
        self.tokens = 0
        self.source = 0
        self._per_layer: Dict[int, torch.Tensor] = {}

    def _capture(self, _layer: int, q: torch.Tensor, k: torch.Tensor) -> None:
        if not self.active:
            return
        n1 = self.tokens + 1
        if q.shape[2] != self.frames * n1:
            return
        start = self.source * n1 + 1
        probs = attention_rows(q[-1:, :, start:start + self.tokens], k[-1:], chunk=self.chunk)[0]  # (N, T_w·(N+1))
        blocks = probs.reshape(self.tokens, self.frames, n1)[:, :, 1:].permute(1, 0, 2)  # (T_w, N, N)
        blocks = blocks / blocks.sum(-1, keepdim=True).clamp_min(1e-30)
        # with the CFG batch split a step runs two forwards: the latest (conditional) one wins
        self._per_layer[_layer] = blocks

    @contextmanager
    def window(self, num_frames: int, num_tokens: int, source_local: int) -> Iterator[None]:
        """Install the hooks for one window of ``num_frames`` frames; source frame at ``source_local``."""
        self.frames, self.tokens, self.source = num_frames, num_tokens, source_local
        self._per_layer = {}
        self.active = False
        with _hooked(self.modules, self._capture):
            yield

    def result(self) -> torch.Tensor:
        """(T_w, N, N) float32 A(Z_src -> Z_f) of the captured step (rows sum to 1)."""
        if not self._per_layer:
            raise RuntimeError("no attention was captured: run the window's sampling inside window()")
        return torch.stack(list(self._per_layer.values())).mean(0)


#: Grid depth of the candidate surface points S_f (attention-chains §4.1): 2^7 = 128 cells per axis, voxel
#: 0.0157 model units.  The VAE decoder's attention cannot place a point more finely than one latent token's
#: footprint (N = 2048 tokens on a surface of area ~3: ~0.04 units across, ~2.5 voxels), and the chain blends
#: the top-K candidates (eq. 4), so candidates one voxel apart resolve everything the attention can tell apart.
#: A sphere of radius 0.5 gives ~19k edge crossings at this depth, the paper's ~20k candidates per frame.
#: A larger surface that already has ``num_candidates / 2`` crossings in every frame of the window at 64^3
#: stops there: the subset drawn at 128^3 would be no denser (a random-weight field's surface, ~5x a sphere's).
CANDIDATE_DEPTH = 7
#: Dense coarse depth of the candidates' narrow band (32^3 cells); the band's SDF bound keeps thin parts.
CANDIDATE_COARSE_DEPTH = 5


def _candidate_points(vae, latents: torch.Tensor, frames: Sequence[int], skip: int, octree_depth: int,
                      refine_depth: int, num_candidates: int, rng: np.random.Generator) -> Dict[int, torch.Tensor]:
    """Candidate surface points (P_f, 3) of each frame's latent, on the VAE's device.

    The zero-level crossings of the ``2**refine_depth`` grid's edges in the
    band's sign-change cells (:func:`~actionmesh_core.geometry.meshing.sdf_surface_points`:
    the points marching cubes would place, without a mesh), one band per
    frame; a coarser level ends a frame's band when it already has
    ``num_candidates / 2`` crossings there (see :data:`CANDIDATE_DEPTH`); a
    random subset of ``num_candidates`` when there are more (drawn from
    ``rng``, kept in grid-edge order).

    One band per frame rather than one band of all the window's fields: a
    batched band evaluates every field at every point of the union of the
    frames' bands, which grows with the motion (the 2026-12-04 H200 run:
    1.16 M union points x 16 fields for 44,870 crossings per frame; the
    chain preset peaked at 54.4 GB); the frames' own bands give the
    same crossings (tested) at a fraction of the field evaluations (tiny
    weights on davis_camel: 2.58 M instead of 3.59 M), and each field call
    is still large (chunks of up to 2^18 points).

    Raises:
        ValueError: a frame other than ``skip`` has no surface.
    """
    from ..geometry.meshing import sdf_surface_points

    dev = next(vae.parameters()).device
    latents = latents.to(dev)
    points = []
    for j in range(len(frames)):
        points += sdf_surface_points(vae.field_fn(latents[j:j + 1]), 1, octree_depth=octree_depth,
                                     refine_depth=refine_depth, inside=vae.inside_sign, device=dev,
                                     min_points=max(1, num_candidates // 2))
    out = {}
    for f, pts in zip(frames, points):
        if f != skip and len(pts) == 0:
            raise ValueError(f"frame {f}: its latent has no surface to match the anchor against")
        if len(pts) > num_candidates:
            keep = np.sort(rng.choice(len(pts), num_candidates, replace=False))
            pts = pts[torch.as_tensor(keep, device=pts.device)]
        out[f] = pts
    return out


def _track_window(vae, latents: torch.Tensor, frames: Sequence[int], src: int, src_positions: np.ndarray,
                  token_maps: torch.Tensor, candidates: Dict[int, np.ndarray], cfg: AttentionChainConfig):
    """Chain the landmarks of frame ``src`` to every frame of a window (§4.1).

    Returns (LandmarkTracks over the window's frames, a_va_za (L, N), a_vf_zf callable)."""
    a_va_za = vae_point_attention(vae, latents[src], torch.as_tensor(src_positions, dtype=torch.float32))

    def a_vf_zf(j):
        return vae_point_attention(vae, latents[frames[j]], torch.as_tensor(candidates[frames[j]]))

    tracks = track_landmarks(a_va_za, token_maps.to(a_va_za.device), a_vf_zf, [candidates[f] for f in frames],
                             list(frames).index(src), src_positions, config=cfg)
    return tracks, a_va_za, a_vf_zf


def _reinforcement_bias(tracks, a_va_za: torch.Tensor, token_maps: torch.Tensor, a_vf_zf, src_local: int,
                        num_tokens: int) -> torch.Tensor:
    """Logit bias (N, T_w·(N+1)) of the source-frame token rows that reinforces each frame's
    main token pairs by their confidence (attention-chains §4.3 eq. 5)."""
    frames = token_maps.shape[0]
    n1 = num_tokens + 1
    bias = torch.zeros(num_tokens, frames, n1, device=a_va_za.device)
    for j in range(frames):
        if j == src_local:
            continue
        best = torch.as_tensor(tracks.best_index[j], device=a_va_za.device)
        a_best = a_vf_zf(j)[best]
        pairs = trace_token_pairs(a_va_za, token_maps[j].to(a_va_za.device), a_best)
        gain = confidence_gain(torch.as_tensor(tracks.confidence[j], dtype=torch.float32))
        bias[:, j, 1:] = reinforcement_logit_bias(pairs, gain, (num_tokens, num_tokens), device=a_va_za.device)
    return bias.reshape(num_tokens, frames * n1)


@dataclass
class ChainDecodeResult:
    """Output of :func:`attention_chain_decode`.

    Attributes:
        latents: (T, N, C) stage I latents (few steps).
        animation: the :class:`AttentionChainResult` (``positions`` (T, V, 3)).
        timings: seconds per part: ``"stage1"`` (sampling with capture),
            ``"candidates"`` (candidate surface points), ``"correspondences"``
            (point attention and chain matches), ``"skinning"`` (outlier
            rejection, smoothing, geodesic skinning) and, with reinforcement,
            ``"reinforcement"`` (the look-ahead's candidates, matches and
            logit bias, §4.3).
    """

    latents: torch.Tensor
    animation: AttentionChainResult
    timings: Dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def attention_chain_decode(
    denoiser,
    vae,
    context: torch.Tensor,
    anchor_latent: torch.Tensor,
    anchor_vertices,
    anchor_faces,
    anchor_frame: int = 0,
    *,
    steps: int = 4,
    shift: float = 3.0,
    guidance_scale: float = 7.5,
    seed: int = 0,
    noise_correlation: float = 0.0,
    window: int = 16,
    slide: int = 15,
    layers: Optional[Sequence[int]] = None,
    octree_depth: int = CANDIDATE_COARSE_DEPTH,
    refine_depth: int = CANDIDATE_DEPTH,
    num_candidates: int = 20000,
    reinforce: bool = False,
    config: Optional[AttentionChainConfig] = None,
    callback: Optional[ProgressCallback] = None,
) -> ChainDecodeResult:
    """Training-free animation of the anchor mesh from attention chains (attention-chains §4.1-4.2).

    Stage I runs with few steps (4) while the denoiser's inflated attention is
    captured at each window's last step; candidate surface points are read off
    every frame's field (grid-edge crossings, no mesh); landmarks are tracked
    through V_a -> Z_a -> Z_f -> V_f and the anchor mesh is animated by
    geodesic rigid skinning. Later windows chain from their source frame, whose
    landmark positions were tracked by an earlier window. No stage II.
    The candidate points of a window's frames come from each frame's field
    right after the window is generated, on the VAE's device.

    Args:
        denoiser, vae: the frozen models.
        context: (T, S, Dc) DINOv2 features of every frame.
        anchor_latent: (N, C) latent of the anchor mesh.
        anchor_vertices: (V, 3) anchor mesh in model space. anchor_faces: (F, 3).
        anchor_frame: the anchor's frame index.
        steps, shift, guidance_scale, seed, noise_correlation, window, slide: stage I settings.
        layers: inflated layers read for A(Z_a -> Z_f) (default: first three inflated).
        octree_depth, refine_depth: coarse and final grid depth of the candidate surface points
            (:data:`CANDIDATE_COARSE_DEPTH`, :data:`CANDIDATE_DEPTH`: 32^3 -> 128^3 cells).
        num_candidates: candidate points per frame (random subset of the edge crossings when more).
        reinforce: long-sequence correspondence reinforcement (§4.3 eq. 5): the
            first ``steps // 2`` steps run normally; then the correspondences of
            a look-ahead clean estimate are traced back to their main token pairs,
            whose attention logits (source-frame rows) get ``log(gain)`` added
            (gain = confidence / mean confidence) for the remaining steps.
        config: :class:`AttentionChainConfig` (published defaults).
        callback: progress/cancel callback (stage "stage1", then "chain").

    Returns:
        :class:`ChainDecodeResult`.

    Raises:
        ValueError: bad shapes, a frame whose latent has no surface, or no
            landmark surviving outlier rejection.
        SamplingCancelled: cancelled by the callback.
    """
    cfg = config or AttentionChainConfig()
    verts = np.asarray(anchor_vertices, dtype=np.float64)
    faces = np.asarray(anchor_faces, dtype=np.int64)
    num_frames = context.shape[0]
    n, c = anchor_latent.shape[-2:]
    dev = next(denoiser.parameters()).device
    landmark_index = plan_landmarks(verts, faces, cfg, seed=seed)

    # ---- stage I with capture at each window's last step (and, optionally, reinforcement)
    capture = DenoiserTokenAttention(denoiser, layers)
    latents, known = initial_latents(num_frames, {anchor_frame: anchor_latent.reshape(n, c)}, seed,
                                     noise_correlation, dev)
    plan = plan_windows(num_frames, anchor_frame, window, slide)
    rng = np.random.default_rng(seed)
    raw = np.full((num_frames, len(landmark_index), 3), np.nan)
    conf = np.ones((num_frames, len(landmark_index)))
    raw[anchor_frame] = verts[landmark_index]
    reinforce_step = steps // 2 if reinforce else 0
    timings = dict.fromkeys(("stage1", "candidates", "correspondences", "skinning"), 0.0)
    if reinforce:
        timings["reinforcement"] = 0.0
    clock = _Clock(dev)
    for w_idx, win in enumerate(plan):
        idx = list(win.frames)
        src = win.nearest_source
        src_local = idx.index(src)
        known_idx = known[idx]

        def hook(info, _cap=capture):
            _cap.active = info["step"] == steps - 1
            report(callback, **info)

        def before(i, t_i, x, velocity, _idx=idx, _src=src, _known=known_idx):
            if i != reinforce_step or i == 0:
                return
            # look ahead: the guided velocity at step i gives the attention maps and a clean estimate
            was_active, capture.active = capture.active, True
            v = velocity(x, t_i)
            capture.active = was_active
            x0 = torch.where(_known.to(x.device)[None, :, None, None], x, x + t_i / 1000.0 * v)[0]
            early = latents.clone()
            early[_idx] = x0
            look = _Clock(dev)
            look.start()
            cands = _candidate_points(vae, x0, _idx, _src, octree_depth, refine_depth, num_candidates, rng)
            maps_i = capture.result()
            tracks, a_va_za, a_vf_zf = _track_window(vae, early, _idx, _src, raw[_src], maps_i, cands, cfg)
            bias = _reinforcement_bias(tracks, a_va_za, maps_i, a_vf_zf, _idx.index(_src), n)
            for module in capture.modules:
                module.row_bias = (_idx.index(_src) * (n + 1) + 1, bias.to(dev))
            timings["reinforcement"] += look.lap()

        clock.start()
        reinforced = timings.get("reinforcement", 0.0)
        try:
            with capture.window(len(idx), n, src_local):
                capture.active = steps == 1
                out = masked_flow_sampling(
                    denoiser, latents[idx][None], known_idx.float()[None], context[idx][None],
                    torch.tensor(idx, dtype=torch.float32)[None], steps=steps, shift=shift,
                    guidance_scale=guidance_scale, callback=hook, before_step=before,
                    progress_info={"window": w_idx + 1, "num_windows": len(plan)})[0]
                token_maps = capture.result().cpu()
        finally:
            for module in capture.modules:
                module.row_bias = None
        latents[idx] = out
        known[idx] = True
        timings["stage1"] += clock.lap() - (timings.get("reinforcement", 0.0) - reinforced)
        # ---- landmark tracking of this window, chained from its source frame
        cands = _candidate_points(vae, out, idx, src, octree_depth, refine_depth, num_candidates, rng)
        timings["candidates"] += clock.lap()
        tracks, _, _ = _track_window(vae, latents, idx, src, raw[src], token_maps, cands, cfg)
        timings["correspondences"] += clock.lap()
        for j, f in enumerate(idx):
            if f in win.targets:
                raw[f] = tracks.positions[j]
                conf[f] = tracks.confidence[j]
        report(callback, stage="chain", step=w_idx + 1, total=len(plan))
    clock.start()
    result = animate_landmarks(verts, faces, landmark_index, raw, anchor_frame, confidence=conf, config=cfg)
    timings["skinning"] = clock.lap()
    return ChainDecodeResult(latents=latents, animation=result, timings=timings)


class _Clock:
    """Wall seconds between calls (CUDA synchronised, so each part is charged its own kernels)."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.t0 = 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.t0 = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the last start/lap; restarts."""
        t0 = self.t0
        self.start()
        return self.t0 - t0
