"""Attention-chain animation: attention maps -> animated anchor mesh (attention-chains §4.1-4.2).

Contract for the caller that captures attention inside the models:

1. Pick the landmarks **before** capture:
   ``landmark_index = select_landmarks(anchor_vertices, anchor_faces)`` (1000
   curvature-boosted FPS vertices).
2. Capture, with probabilities (softmax rows, e.g. via
   :func:`~actionmesh_core.attention_chain.attention.attention_rows`):

   * ``a_va_za`` (L, N): VAE-decoder cross-attention of the landmark vertex
     positions (queries) against the anchor latent (N tokens).
   * ``a_za_zf`` per frame f: (N, N) denoiser inflated self-attention of the
     anchor-frame tokens (rows) against frame f's tokens (columns), from the
     last denoising step (averaged over heads and the chosen layers).
   * ``frame_surfaces`` per frame f: (P_f, 3) candidate surface points of
     frame f's SDF mesh (e.g. its marching-cubes vertices).
   * ``a_vf_zf`` per frame f: (P_f, N) VAE-decoder cross-attention of those
     points against frame f's latent.

   Per-frame inputs may be a (T, ...) tensor, a length-T sequence or a callable
   ``f -> tensor`` (to capture lazily and keep memory bounded); the anchor
   frame's entries are never read (may be None).
3. ``animate_from_attention(...)`` returns the animated vertices (T, V, 3).

Shape legend: V anchor vertices, F faces, L landmarks, N tokens, P_f candidate
points of frame f, T frames.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ._checks import as_numpy, as_tensor, check_faces, check_frame
from .chain import DEFAULT_LOCALITY, DEFAULT_TEMPERATURE, DEFAULT_TOP_K, chain_correspondences
from .landmarks import (CURVATURE_ALPHA, MIN_VALID_FRACTION, NUM_LANDMARKS, OUTLIER_FACTOR,
                        keep_landmarks, reject_outliers, select_landmarks)
from .skinning import K_NN, SIGMA_GEO_SCALE, SkinningWeights, geodesic_skinning_weights, rigid_skinning
from .smoothing import SIGMA_FINAL, SIGMA_LANDMARK, smooth_trajectories

__all__ = [
    "AttentionChainConfig",
    "LandmarkTracks",
    "AttentionChainResult",
    "plan_landmarks",
    "track_landmarks",
    "animate_landmarks",
    "animate_from_attention",
]

PerFrame = Union[torch.Tensor, np.ndarray, Sequence, Callable[[int], object]]


@dataclass(frozen=True)
class AttentionChainConfig:
    """Hyper-parameters of the attention-chain animation (published values from appendix C).

    Attributes:
        num_landmarks: FPS landmarks K (published 1000).
        curvature_alpha: FPS curvature boost (published 2.0).
        top_k, temperature, locality, relative_temperature: eq. 4 blend (not
            published; see :mod:`~actionmesh_core.attention_chain.chain`).
        score_chunk: candidate points scored per step (memory bound).
        outlier_factor: reject displacements > factor x median (published 5).
        outlier_reference: "frame" (app. D.1, median over landmarks of the frame)
            or "landmark" (app. C wording, median over frames of the landmark).
        outlier_floor: absolute lower bound of the outlier threshold (units);
            None = 2 % of the landmarks' bbox diagonal (our addition).
        max_displacement: optional absolute outlier threshold (units; value unpublished).
        min_valid_fraction: keep landmarks valid in >= this fraction of frames (published 0.95).
        sigma_landmark: temporal sigma (frames) of landmark smoothing (published 1.5; None = off).
        sigma_final: temporal sigma of the final vertex displacement smoothing
            (published 1.0; None = off).
        confidence_weighted_smoothing: weight the smoothing by valid x chain
            confidence instead of the binary valid mask of app. D.1.
        k_nn: geodesic neighbour landmarks per vertex (published 120).
        sigma_geo: skinning sigma (units); None = auto (sigma_geo_scale x landmark spacing).
        sigma_geo_scale: factor of the auto sigma (unpublished; 1.0).
    """

    num_landmarks: int = NUM_LANDMARKS
    curvature_alpha: float = CURVATURE_ALPHA
    top_k: int = DEFAULT_TOP_K
    temperature: float = DEFAULT_TEMPERATURE
    locality: Optional[float] = DEFAULT_LOCALITY
    relative_temperature: bool = True
    score_chunk: int = 8192
    outlier_factor: float = OUTLIER_FACTOR
    outlier_reference: str = "frame"
    outlier_floor: Optional[float] = None
    max_displacement: Optional[float] = None
    min_valid_fraction: float = MIN_VALID_FRACTION
    sigma_landmark: Optional[float] = SIGMA_LANDMARK
    sigma_final: Optional[float] = SIGMA_FINAL
    confidence_weighted_smoothing: bool = False
    k_nn: int = K_NN
    sigma_geo: Optional[float] = None
    sigma_geo_scale: float = SIGMA_GEO_SCALE


@dataclass
class LandmarkTracks:
    """Raw chain trajectories of the landmarks (eq. 4 per frame).

    Attributes:
        positions: (T, L, 3) float64 tilde v_l^(f); the anchor frame holds the anchor positions.
        confidence: (T, L) float64 c_l^(f) = best chain score; 1.0 at the anchor frame.
        best_index: (T, L) int64 index of the best candidate in frame f's
            surface points (-1 at the anchor frame); rows of ``a_vf_zf`` to
            feed :func:`~actionmesh_core.attention_chain.reinforcement.trace_token_pairs`.
    """

    positions: np.ndarray
    confidence: np.ndarray
    best_index: np.ndarray


@dataclass
class AttentionChainResult:
    """Output of :func:`animate_from_attention` / :func:`animate_landmarks`.

    Attributes:
        positions: (T, V, 3) float32 animated vertices (anchor topology; the anchor
            frame equals the anchor mesh).
        confidence: (T, L) float32 chain confidence per landmark (1 at the anchor frame).
        landmark_index: (L,) int64 landmark vertex indices.
        valid: (T, L) bool outlier mask (app. D.1).
        kept: (L,) bool landmarks used for skinning (>= min_valid_fraction valid frames).
        raw_landmarks: (T, L, 3) float64 chain targets.
        smoothed_landmarks: (T, L, 3) float64 after temporal smoothing (kept ones;
            dropped ones are copied from ``raw_landmarks``).
        skinning: the geodesic skinning weights over the kept landmarks.
    """

    positions: np.ndarray
    confidence: np.ndarray
    landmark_index: np.ndarray
    valid: np.ndarray
    kept: np.ndarray
    raw_landmarks: np.ndarray
    smoothed_landmarks: np.ndarray
    skinning: Optional[SkinningWeights] = field(default=None, repr=False)


def _cfg(config: Optional[AttentionChainConfig]) -> AttentionChainConfig:
    if config is None:
        return AttentionChainConfig()
    if not isinstance(config, AttentionChainConfig):
        raise TypeError(f"config must be an AttentionChainConfig, got {type(config).__name__}")
    return config


def plan_landmarks(anchor_vertices, anchor_faces, config: Optional[AttentionChainConfig] = None,
                   seed: int = 0) -> np.ndarray:
    """Landmark vertex indices to capture attention for (step 1 of the contract; §4.2).

    Args:
        anchor_vertices: (V, 3) anchor mesh vertices.
        anchor_faces: (F, 3) triangles.
        config: uses ``num_landmarks`` and ``curvature_alpha``.
        seed: only used on a flat mesh.

    Returns:
        (L,) int64 vertex indices, L = min(num_landmarks, distinct vertices).

    Raises:
        ValueError: on a malformed mesh.
    """
    c = _cfg(config)
    return select_landmarks(anchor_vertices, anchor_faces, count=c.num_landmarks, alpha=c.curvature_alpha, seed=seed)


def _item(name: str, source: PerFrame, f: int):
    if callable(source) and not isinstance(source, (torch.Tensor, np.ndarray)):
        value = source(f)
    else:
        value = source[f]
    if value is None:
        raise ValueError(f"{name} for frame {f} is None; only the anchor frame's entry may be None")
    return value


def _num_frames(sources: Sequence[PerFrame], num_frames: Optional[int]) -> int:
    lengths = {len(s) for s in sources if not (callable(s) and not isinstance(s, (torch.Tensor, np.ndarray)))}
    if num_frames is not None:
        lengths.add(int(num_frames))
    if not lengths:
        raise ValueError("num_frames is required when every per-frame input is a callable")
    if len(lengths) != 1:
        raise ValueError(f"per-frame inputs disagree on the number of frames: {sorted(lengths)}")
    t = lengths.pop()
    if t < 1:
        raise ValueError("need at least one frame")
    return t


def track_landmarks(a_va_za, a_za_zf: PerFrame, a_vf_zf: PerFrame, frame_surfaces: PerFrame,
                    anchor_frame: int, anchor_positions, *, config: Optional[AttentionChainConfig] = None,
                    num_frames: Optional[int] = None) -> LandmarkTracks:
    """Landmark trajectories through the attention chain, frame by frame (§4.1 eqs. 2-4).

    Args:
        a_va_za: (L, N) landmark vertex -> anchor-token attention.
        a_za_zf: per frame (N, N) anchor-token -> frame-token attention
            ((T, N, N) tensor, sequence, or callable ``f -> (N, N)``).
        a_vf_zf: per frame (P_f, N) candidate -> frame-token attention.
        frame_surfaces: per frame (P_f, 3) candidate surface points.
        anchor_frame: index of the anchor frame (not queried).
        anchor_positions: (L, 3) landmark positions on the anchor mesh.
        config: eq. 4 settings (top_k, temperature, locality, score_chunk).
        num_frames: T when every per-frame input is a callable.

    Returns:
        :class:`LandmarkTracks`.

    Raises:
        ValueError: on inconsistent shapes/frame counts (the message names the frame).
    """
    c = _cfg(config)
    a = as_tensor("a_va_za", a_va_za, ndim=2)
    anchor = as_numpy("anchor_positions", anchor_positions, ndim=2, last=3)
    if anchor.shape[0] != a.shape[0]:
        raise ValueError(f"a_va_za has {a.shape[0]} rows but there are {anchor.shape[0]} landmarks")
    t_count = _num_frames([a_za_zf, a_vf_zf, frame_surfaces], num_frames)
    anchor_frame = check_frame(anchor_frame, t_count)
    pos = np.empty((t_count,) + anchor.shape)
    conf = np.ones((t_count, anchor.shape[0]))
    best = np.full((t_count, anchor.shape[0]), -1, dtype=np.int64)
    for f in range(t_count):
        if f == anchor_frame:
            pos[f] = anchor
            continue
        pts = as_tensor(f"frame_surfaces[{f}]", _item("frame_surfaces", frame_surfaces, f), ndim=2, device=a.device)
        att = as_tensor(f"a_vf_zf[{f}]", _item("a_vf_zf", a_vf_zf, f), ndim=2, device=a.device)
        m = as_tensor(f"a_za_zf[{f}]", _item("a_za_zf", a_za_zf, f), ndim=2, device=a.device)
        try:
            match = chain_correspondences(a, m, att, pts, top_k=c.top_k, temperature=c.temperature,
                                          locality=c.locality, relative_temperature=c.relative_temperature,
                                          chunk=c.score_chunk)
        except ValueError as err:
            raise ValueError(f"frame {f}: {err}") from None
        pos[f] = match.points.detach().cpu().double().numpy()
        conf[f] = match.confidence.detach().cpu().double().numpy()
        best[f] = match.best_index.cpu().numpy()
    return LandmarkTracks(positions=pos, confidence=conf, best_index=best)


def animate_landmarks(anchor_vertices, anchor_faces, landmark_index, trajectories, anchor_frame: int, *,
                      confidence=None, config: Optional[AttentionChainConfig] = None) -> AttentionChainResult:
    """Topology-preserving animation from landmark trajectories (§4.2, app. D).

    Outlier rejection (app. D.1) -> landmarks with >= 95 % valid frames ->
    confidence-weighted temporal smoothing of their displacements (sigma 1.5,
    anchor pinned) -> geodesic rigid skinning of every vertex (k = 120, auto
    sigma, weighted Procrustes) -> temporal smoothing of the vertex
    displacements (sigma 1.0, anchor pinned).

    Args:
        anchor_vertices: (V, 3) anchor mesh vertices.
        anchor_faces: (F, 3) triangles.
        landmark_index: (L,) int vertex indices of the landmarks.
        trajectories: (T, L, 3) raw landmark targets (NaN = missing).
        anchor_frame: index of the anchor frame.
        confidence: optional (T, L) chain confidences (reported; used for
            smoothing with ``config.confidence_weighted_smoothing``).
        config: hyper-parameters.

    Returns:
        :class:`AttentionChainResult`.

    Raises:
        ValueError: on malformed input, or when no landmark survives the
            outlier rejection (the attention is too diffuse to animate).
    """
    c = _cfg(config)
    v = as_numpy("anchor_vertices", anchor_vertices, ndim=2, last=3)
    f = check_faces(anchor_faces, v.shape[0], name="anchor_faces")
    idx = as_numpy("landmark_index", landmark_index, ndim=1)
    if idx.size == 0 or not np.all(idx == np.round(idx)) or idx.min() < 0 or idx.max() >= v.shape[0]:
        raise ValueError(f"landmark_index must be non-empty integer vertex indices in [0, {v.shape[0]})")
    idx = idx.astype(np.int64)
    tr = as_numpy("trajectories", trajectories, ndim=3, last=3, finite=False)
    if tr.shape[1] != idx.size:
        raise ValueError(f"trajectories has {tr.shape[1]} landmarks but landmark_index has {idx.size}")
    t_count = tr.shape[0]
    anchor_frame = check_frame(anchor_frame, t_count)
    if confidence is None:
        conf = np.ones(tr.shape[:2])
    else:
        conf = as_numpy("confidence", confidence, ndim=2)
        if conf.shape != tr.shape[:2]:
            raise ValueError(f"confidence must be (T, L) = {tr.shape[:2]}, got {conf.shape}")
    conf = conf.copy()
    conf[anchor_frame] = 1.0
    anchor_lm = v[idx]
    valid = reject_outliers(anchor_lm, tr, anchor_frame, factor=c.outlier_factor, reference=c.outlier_reference,
                            floor=c.outlier_floor, max_displacement=c.max_displacement)
    kept = keep_landmarks(valid, c.min_valid_fraction)
    if not kept.any():
        raise ValueError("no landmark has enough valid frames after outlier rejection; the attention chain is "
                         "too unreliable for this clip (try more denoising steps, or relax min_valid_fraction)")
    if kept.sum() < 3:
        warnings.warn(f"only {int(kept.sum())} landmark(s) survived outlier rejection: motion is translation-only",
                      RuntimeWarning, stacklevel=2)
    smoothed = np.where(np.isfinite(tr), tr, anchor_lm[None])
    k_tr = tr[:, kept]
    weights = valid[:, kept].astype(np.float64)
    if c.confidence_weighted_smoothing:
        weights = weights * conf[:, kept]
    if c.sigma_landmark is not None:
        smoothed[:, kept] = smooth_trajectories(anchor_lm[kept], np.where(weights[..., None] > 0, k_tr, np.nan),
                                                anchor_frame, weights, sigma=c.sigma_landmark)
    else:
        # no smoothing: invalid entries of kept landmarks take the anchor position (zero displacement)
        smoothed[:, kept] = np.where(valid[:, kept, None], np.nan_to_num(k_tr), anchor_lm[kept][None])
        smoothed[anchor_frame] = anchor_lm
    skin = geodesic_skinning_weights(v, f, idx[kept], k=c.k_nn, sigma=c.sigma_geo, sigma_scale=c.sigma_geo_scale)
    positions = rigid_skinning(v, anchor_lm[kept], smoothed[:, kept], skin)
    if c.sigma_final is not None:
        positions = smooth_trajectories(v, positions, anchor_frame, None, sigma=c.sigma_final)
    positions[anchor_frame] = v
    return AttentionChainResult(positions=positions.astype(np.float32), confidence=conf.astype(np.float32),
                                landmark_index=idx, valid=valid, kept=kept, raw_landmarks=tr,
                                smoothed_landmarks=smoothed, skinning=skin)


def animate_from_attention(anchor_vertices, anchor_faces, frame_surfaces: PerFrame, a_va_za,
                           a_za_zf: PerFrame, a_vf_zf: PerFrame, anchor_frame: int, *,
                           landmark_index, config: Optional[AttentionChainConfig] = None,
                           num_frames: Optional[int] = None) -> AttentionChainResult:
    """Animate the anchor mesh from captured attention maps (attention-chains §4.1-4.2, app. C-D).

    :func:`track_landmarks` (chain correspondences of the landmarks in every
    frame) followed by :func:`animate_landmarks` (outlier rejection, temporal
    smoothing, geodesic rigid skinning, final smoothing).  See the module
    docstring for the capture contract.

    Args:
        anchor_vertices: (V, 3) anchor mesh vertices (model space).
        anchor_faces: (F, 3) int triangles (the output topology).
        frame_surfaces: per frame (P_f, 3) candidate surface points (length T,
            or a callable with ``num_frames``); anchor entry unused.
        a_va_za: (L, N) landmark vertex -> anchor-token attention (rows = ``landmark_index``).
        a_za_zf: per frame (N, N) anchor-token -> frame-token attention.
        a_vf_zf: per frame (P_f, N) candidate -> frame-token attention.
        anchor_frame: index of the anchor frame in [0, T).
        landmark_index: (L,) vertex indices of the rows of ``a_va_za`` (from :func:`plan_landmarks`).
        config: hyper-parameters (published defaults).
        num_frames: T when every per-frame input is a callable.

    Returns:
        :class:`AttentionChainResult`; ``positions`` (T, V, 3) float32 and
        ``confidence`` (T, L) float32 are the main outputs.

    Raises:
        ValueError: on inconsistent inputs (naming the frame) or when no landmark survives.
        TypeError: on a wrong config type or non-array inputs.
    """
    c = _cfg(config)
    v = as_numpy("anchor_vertices", anchor_vertices, ndim=2, last=3)
    idx = as_numpy("landmark_index", landmark_index, ndim=1)
    if idx.size == 0 or not np.all(idx == np.round(idx)) or idx.min() < 0 or idx.max() >= v.shape[0]:
        raise ValueError(f"landmark_index must be non-empty integer vertex indices in [0, {v.shape[0]})")
    idx = idx.astype(np.int64)
    tracks = track_landmarks(a_va_za, a_za_zf, a_vf_zf, frame_surfaces, anchor_frame, v[idx], config=c,
                             num_frames=num_frames)
    return animate_landmarks(v, anchor_faces, idx, tracks.positions, anchor_frame,
                             confidence=tracks.confidence, config=c)
