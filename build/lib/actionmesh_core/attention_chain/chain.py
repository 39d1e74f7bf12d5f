"""Attention-chain composition V_a -> Z_a -> Z_f -> V_f (attention-chains paper §4.1).

Each attention row is a probability distribution over latent tokens, so the
product of attention maps transports probability mass from an anchor vertex,
through the anchor latent tokens, to the tokens of frame f (eq. 2); a candidate
surface point of frame f is scored by the inner product of its own token
attention with that transported distribution (eq. 3), and the correspondence
is a sharp softmax blend of the top-scoring, spatially localised candidates
(eq. 4) with confidence ``max_u s(u)``.

Shape legend: L query rows (landmark vertices / query patches), N latent tokens
per frame, P candidate surface points (or image patches) of the target frame,
K kept top candidates, T frames.

Hyper-parameters the paper does not publish (top-k size, temperature, the
"localized subset") are documented where they are defined; the defaults live
in :data:`DEFAULT_TOP_K`, :data:`DEFAULT_TEMPERATURE`, :data:`DEFAULT_LOCALITY`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ._checks import as_tensor

__all__ = [
    "DEFAULT_TOP_K",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_LOCALITY",
    "ChainMatch",
    "compose_chain",
    "chain_scores",
    "top_candidates",
    "blend_candidates",
    "chain_correspondences",
]

#: Size of the top-scoring candidate set N_{v,f} of eq. 4 (not published; our choice).
DEFAULT_TOP_K = 8
#: Temperature tau of eq. 4, *relative* to the best score of the row (not published;
#: our choice): a candidate scoring 95 % of the best gets weight e^-1 of the best's.
DEFAULT_TEMPERATURE = 0.05
#: "Localized" subset of eq. 4: candidates farther than this fraction of the
#: frame's candidate bounding-box diagonal from the best candidate are dropped
#: (not published; our choice).  Prevents blending two symmetric parts into
#: a point in mid-air.
DEFAULT_LOCALITY = 0.05


@dataclass
class ChainMatch:
    """Correspondences of L query rows in one target frame (output of eq. 4).

    Attributes:
        points: (L, 3) blended target positions tilde v_f (units of the candidate points).
        confidence: (L,) c_v^(f) = max_u s_{v,f}(u); in [0, 1] for probability
            inputs (about 1/N when the attention is uniform, 1 when both ends are
            one-hot on the same token).
        best_index: (L,) int64 index of the top-scoring candidate.
        candidate_index: (L, K) int64 indices of the top-K candidates (best first).
        weights: (L, K) blend weights pi_{v,f}; 0 for candidates dropped by the
            locality test; rows sum to 1.
    """

    points: torch.Tensor
    confidence: torch.Tensor
    best_index: torch.Tensor
    candidate_index: torch.Tensor
    weights: torch.Tensor


def _check_rows(name: str, a: torch.Tensor) -> None:
    if (a < 0).any():
        raise ValueError(f"{name} must hold attention probabilities (>= 0); pass softmax outputs, not logits")


def compose_chain(a_va_za: torch.Tensor, a_za_zf: torch.Tensor) -> torch.Tensor:
    """Transport vertex attention to frame-f tokens: ``A(V_a->Z_a) @ A(Z_a->Z_f)`` (eq. 2).

    Args:
        a_va_za: (L, N) rows of the VAE-decoder cross-attention of the query
            vertices against the anchor latent tokens (rows sum to 1).
        a_za_zf: (N, N) anchor-token -> frame-f-token attention, or (T, N, N)
            for several frames at once.

    Returns:
        (L, N) distribution over frame-f tokens (``(T, L, N)`` for a stack),
        float32/64 on the inputs' device.

    Raises:
        TypeError: if the inputs are not tensors/arrays.
        ValueError: on shape mismatch or negative entries.
    """
    a = as_tensor("a_va_za", a_va_za, ndim=2)
    m = as_tensor("a_za_zf", a_za_zf, device=a.device)
    if m.ndim not in (2, 3):
        raise ValueError(f"a_za_zf must be (N, N) or (T, N, N), got {tuple(m.shape)}")
    if m.shape[-2] != a.shape[1]:
        raise ValueError(f"a_va_za has N={a.shape[1]} tokens but a_za_zf rows have {m.shape[-2]}")
    _check_rows("a_va_za", a)
    _check_rows("a_za_zf", m)
    dtype = torch.promote_types(a.dtype, m.dtype)
    return torch.matmul(a.to(dtype), m.to(dtype))


def chain_scores(chained: torch.Tensor, a_vf_zf: torch.Tensor) -> torch.Tensor:
    """Score every candidate against the transported distribution: ``s = chained @ A(V_f->Z_f)^T`` (eq. 3).

    Args:
        chained: (L, N) output of :func:`compose_chain` for one frame.
        a_vf_zf: (P, N) candidate-surface-point -> frame-f-token attention
            (rows sum to 1).

    Returns:
        (L, P) scores s_{v,f}(u) >= 0.  Materialises L*P floats; use
        :func:`top_candidates` for large P.

    Raises:
        ValueError: on shape mismatch or negative entries.
    """
    c = as_tensor("chained", chained, ndim=2)
    b = as_tensor("a_vf_zf", a_vf_zf, ndim=2, device=c.device)
    if b.shape[1] != c.shape[1]:
        raise ValueError(f"a_vf_zf has {b.shape[1]} tokens but the chained rows have {c.shape[1]}")
    _check_rows("a_vf_zf", b)
    dtype = torch.promote_types(c.dtype, b.dtype)
    return c.to(dtype) @ b.to(dtype).T


def top_candidates(chained: torch.Tensor, a_vf_zf: torch.Tensor, top_k: int = DEFAULT_TOP_K,
                   chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-K chain scores per row without materialising the full (L, P) score matrix.

    Candidates are scored in chunks of ``chunk`` rows of ``a_vf_zf`` and merged
    into a running top-K, so memory is O(L * (K + chunk)).

    Args:
        chained: (L, N) transported distributions (eq. 2).
        a_vf_zf: (P, N) candidate -> token attention (eq. 3's A^T_{Z_f->V_f}).
        top_k: K, clipped to P.
        chunk: candidates scored per step.

    Returns:
        (scores (L, K) descending, indices (L, K) int64 into the P candidates).

    Raises:
        ValueError: on shape mismatch, negative entries, top_k < 1 or chunk < 1,
            or an empty candidate set.
    """
    c = as_tensor("chained", chained, ndim=2)
    b = as_tensor("a_vf_zf", a_vf_zf, ndim=2, device=c.device)
    if b.shape[1] != c.shape[1]:
        raise ValueError(f"a_vf_zf has {b.shape[1]} tokens but the chained rows have {c.shape[1]}")
    if b.shape[0] == 0:
        raise ValueError("a_vf_zf has no candidate rows (P = 0): the frame has no surface points")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    _check_rows("a_vf_zf", b)
    dtype = torch.promote_types(c.dtype, b.dtype)
    c = c.to(dtype)
    k = min(top_k, b.shape[0])
    best_s: Optional[torch.Tensor] = None
    best_i: Optional[torch.Tensor] = None
    for start in range(0, b.shape[0], chunk):
        s = c @ b[start:start + chunk].to(dtype).T
        idx = torch.arange(start, start + s.shape[1], device=c.device).expand(s.shape[0], -1)
        if best_s is not None:
            s = torch.cat([best_s, s], dim=1)
            idx = torch.cat([best_i, idx], dim=1)
        kk = min(k, s.shape[1])
        best_s, pos = torch.topk(s, kk, dim=1, largest=True, sorted=True)
        best_i = torch.gather(idx, 1, pos)
    return best_s, best_i


def blend_candidates(scores: torch.Tensor, index: torch.Tensor, surface_points: torch.Tensor,
                     temperature: float = DEFAULT_TEMPERATURE,
                     locality: Optional[float] = DEFAULT_LOCALITY,
                     relative_temperature: bool = True) -> ChainMatch:
    """Sharp softmax blend of the top candidates (eq. 4) with the paper's confidence.

    ``pi(u) = softmax(s(u) / tau')`` over the localised subset, where
    ``tau' = temperature * max_u s(u)`` (``relative_temperature``, default; the
    score scale depends on N and on how peaked the attention is, a relative
    temperature makes the blend scale-free) or ``tau' = temperature``.
    The localised subset keeps the candidates within ``locality`` times the
    bounding-box diagonal of ``surface_points`` of the best candidate
    (``None`` keeps all K).

    Args:
        scores: (L, K) descending top scores (from :func:`top_candidates`).
        index: (L, K) int64 candidate indices.
        surface_points: (P, 3) candidate positions x_u^(f) of the frame.
        temperature: tau > 0 (relative or absolute, see above).
        locality: fraction of the candidate bbox diagonal, or None.
        relative_temperature: see above.

    Returns:
        :class:`ChainMatch` with ``points`` (L, 3) and ``confidence`` (L,) = best score.

    Raises:
        ValueError: on inconsistent shapes or non-positive temperature/locality.
    """
    s = as_tensor("scores", scores, ndim=2)
    pts = as_tensor("surface_points", surface_points, ndim=2, device=s.device)
    if pts.shape[1] != 3:
        raise ValueError(f"surface_points must be (P, 3), got {tuple(pts.shape)}")
    if not isinstance(index, torch.Tensor) or index.shape != s.shape:
        raise ValueError(f"index must be an int tensor shaped like scores {tuple(s.shape)}")
    if s.shape[1] == 0:
        raise ValueError("scores has no candidates (K = 0)")
    index = index.to(device=s.device, dtype=torch.long)
    if index.min() < 0 or index.max() >= pts.shape[0]:
        raise ValueError(f"index outside the {pts.shape[0]} surface points")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if locality is not None and not locality > 0:
        raise ValueError(f"locality must be > 0 or None, got {locality}")
    pts = pts.to(s.dtype)
    cand = pts[index]                                       # (L, K, 3)
    best = s[:, 0]
    keep = torch.ones_like(s, dtype=torch.bool)
    if locality is not None:
        diag = (pts.max(0).values - pts.min(0).values).norm()
        radius = locality * diag
        keep = (cand - cand[:, :1]).norm(dim=-1) <= radius
        keep[:, 0] = True
    tau = temperature * best.clamp_min(torch.finfo(s.dtype).tiny)[:, None] if relative_temperature \
        else torch.full_like(s[:, :1], float(temperature))
    logits = (s - best[:, None]) / tau
    logits = logits.masked_fill(~keep, float("-inf"))
    w = torch.softmax(logits, dim=1)
    points = (w[..., None] * cand).sum(1)
    return ChainMatch(points=points, confidence=best, best_index=index[:, 0], candidate_index=index, weights=w)


def chain_correspondences(
    a_va_za: torch.Tensor,
    a_za_zf: torch.Tensor,
    a_vf_zf: torch.Tensor,
    surface_points: torch.Tensor,
    *,
    top_k: int = DEFAULT_TOP_K,
    temperature: float = DEFAULT_TEMPERATURE,
    locality: Optional[float] = DEFAULT_LOCALITY,
    relative_temperature: bool = True,
    chunk: int = 8192,
) -> ChainMatch:
    """Correspondences of L anchor vertices in one frame through the attention chain (eqs. 2-4).

    ``a_va_za`` rows are transported to frame-f tokens (eq. 2), every candidate
    surface point is scored by its token attention (eq. 3, chunked top-K), and
    the result is the localised sharp softmax blend with confidence = best score (eq. 4).

    Args:
        a_va_za: (L, N) vertex -> anchor-token attention rows (VAE decoder).
        a_za_zf: (N, N) anchor-token -> frame-f-token attention (denoiser).
        a_vf_zf: (P, N) candidate surface point -> frame-f-token attention (VAE decoder).
        surface_points: (P, 3) candidate surface points S_f of frame f.
        top_k, temperature, locality, relative_temperature: see :func:`blend_candidates`
            and :data:`DEFAULT_TOP_K`.
        chunk: candidates scored per step (memory O(L * (top_k + chunk))).

    Returns:
        :class:`ChainMatch` (points (L, 3), confidence (L,), ...) on ``a_va_za``'s device.

    Raises:
        ValueError: on inconsistent shapes (N, P), negative attention or bad
            hyper-parameters.
    """
    pts = as_tensor("surface_points", surface_points, ndim=2)
    b = as_tensor("a_vf_zf", a_vf_zf, ndim=2)
    if b.shape[0] != pts.shape[0]:
        raise ValueError(f"a_vf_zf has {b.shape[0]} rows but there are {pts.shape[0]} surface points")
    chained = compose_chain(a_va_za, a_za_zf)
    if chained.ndim != 2:
        raise ValueError("chain_correspondences handles one frame: pass a_za_zf as (N, N)")
    s, idx = top_candidates(chained, b.to(chained.device), top_k=top_k, chunk=chunk)
    return blend_candidates(s, idx, pts.to(chained.device), temperature=temperature,
                            locality=locality, relative_temperature=relative_temperature)
