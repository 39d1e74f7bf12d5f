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
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..sampling.common import ProgressCallback, report, seeded_noise
from ..sampling.stage1 import masked_flow_sampling
from ..sampling.windows import plan_windows
from .attention import attention_rows
from .pipeline import AttentionChainConfig, AttentionChainResult, animate_landmarks, plan_landmarks, track_landmarks

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


@dataclass
class ChainDecodeResult:
    """Output of :func:`attention_chain_decode`.

    Attributes:
        latents: (T, N, C) stage I latents (few steps).
        animation: the :class:`AttentionChainResult` (``positions`` (T, V, 3)).
        candidates: per-frame (P_f, 3) candidate surface points used.
    """

    latents: torch.Tensor
    animation: AttentionChainResult
    candidates: List[np.ndarray]


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
    octree_depth: int = 7,
    refine_depth: int = 8,
    num_candidates: int = 20000,
    config: Optional[AttentionChainConfig] = None,
    callback: Optional[ProgressCallback] = None,
) -> ChainDecodeResult:
    """Training-free animation of the anchor mesh from attention chains (attention-chains §4.1-4.2).

    Stage I runs with few steps (4) while the denoiser's inflated attention is
    captured at each window's last step; every frame's latent is meshed at a
    reduced depth to get candidate surface points; landmarks are tracked
    through V_a -> Z_a -> Z_f -> V_f and the anchor mesh is animated by
    geodesic rigid skinning. Later windows chain from their source frame, whose
    landmark positions were tracked by an earlier window. No stage II.

    Args:
        denoiser, vae: the frozen models.
        context: (T, S, Dc) DINOv2 features of every frame.
        anchor_latent: (N, C) latent of the anchor mesh.
        anchor_vertices: (V, 3) anchor mesh in model space. anchor_faces: (F, 3).
        anchor_frame: the anchor's frame index.
        steps, shift, guidance_scale, seed, noise_correlation, window, slide: stage I settings.
        layers: inflated layers read for A(Z_a -> Z_f) (default: first three inflated).
        octree_depth, refine_depth: meshing depth for candidate surface points.
        num_candidates: candidate points per frame (random subset of the mesh vertices).
        config: :class:`AttentionChainConfig` (published defaults).
        callback: progress/cancel callback (stage "stage1", then "chain").

    Returns:
        :class:`ChainDecodeResult`.

    Raises:
        ValueError: bad shapes, a frame whose latent has no surface, or no
            landmark surviving outlier rejection.
        SamplingCancelled: cancelled by the callback.
    """
    from ..geometry.meshing import sdf_to_meshes

    cfg = config or AttentionChainConfig()
    verts = np.asarray(anchor_vertices, dtype=np.float64)
    faces = np.asarray(anchor_faces, dtype=np.int64)
    num_frames = context.shape[0]
    n, c = anchor_latent.shape[-2:]
    dev = next(denoiser.parameters()).device
    landmark_index = plan_landmarks(verts, faces, cfg, seed=seed)

    # ---- stage I with capture at each window's last step
    capture = DenoiserTokenAttention(denoiser, layers)
    latents = seeded_noise((num_frames, n, c), seed, noise_correlation).to(dev)
    latents[anchor_frame] = anchor_latent.reshape(n, c).to(dev, torch.float32)
    known = torch.zeros(num_frames, dtype=torch.bool)
    known[anchor_frame] = True
    plan = plan_windows(num_frames, anchor_frame, window, slide)
    maps: Dict[int, torch.Tensor] = {}
    for w_idx, win in enumerate(plan):
        idx = list(win.frames)
        src_local = idx.index(win.nearest_source)

        def hook(info, _cap=capture):
            _cap.active = info["step"] == steps - 1
            report(callback, **info)

        with capture.window(len(idx), n, src_local):
            capture.active = steps == 1
            out = masked_flow_sampling(
                denoiser, latents[idx][None], known[idx].float()[None], context[idx][None],
                torch.tensor(idx, dtype=torch.float32)[None], steps=steps, shift=shift,
                guidance_scale=guidance_scale, callback=hook,
                progress_info={"window": w_idx + 1, "num_windows": len(plan)})[0]
            maps[w_idx] = capture.result().cpu()
        latents[idx] = out
        known[idx] = True

    # ---- candidate surface points of every frame (one batched meshing)
    meshes = sdf_to_meshes(vae.field_fn(latents), num_frames, octree_depth=octree_depth,
                           refine_depth=refine_depth, inside=vae.inside_sign)
    gen = np.random.default_rng(seed)
    candidates: List[np.ndarray] = []
    for f, mesh in enumerate(meshes):
        pts = np.asarray(mesh.vertices, dtype=np.float32)
        if f != anchor_frame and len(pts) == 0:
            raise ValueError(f"frame {f}: its latent has no surface to match the anchor against")
        if len(pts) > num_candidates:
            pts = pts[np.sort(gen.choice(len(pts), num_candidates, replace=False))]
        candidates.append(pts)

    # ---- landmark tracking, window by window, chaining from each window's source frame
    raw = np.full((num_frames, len(landmark_index), 3), np.nan)
    conf = np.ones((num_frames, len(landmark_index)))
    raw[anchor_frame] = verts[landmark_index]
    for w_idx, win in enumerate(plan):
        idx = list(win.frames)
        src = win.nearest_source
        src_local = idx.index(src)
        a_va_za = vae_point_attention(vae, latents[src], torch.as_tensor(raw[src], dtype=torch.float32))
        tracks = track_landmarks(
            a_va_za, maps[w_idx].to(a_va_za.device),
            lambda j: vae_point_attention(vae, latents[idx[j]], torch.as_tensor(candidates[idx[j]])),
            [candidates[f] for f in idx], src_local, raw[src], config=cfg)
        for j, f in enumerate(idx):
            if f in win.targets:
                raw[f] = tracks.positions[j]
                conf[f] = tracks.confidence[j]
        report(callback, stage="chain", step=w_idx + 1, total=len(plan))
    result = animate_landmarks(verts, faces, landmark_index, raw, anchor_frame, confidence=conf, config=cfg)
    return ChainDecodeResult(latents=latents, animation=result, candidates=candidates)
