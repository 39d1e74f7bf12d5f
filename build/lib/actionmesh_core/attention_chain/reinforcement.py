"""Long-sequence correspondence reinforcement and window stitching (attention-chains §4.3).

In each 16-frame autoregressive window the first denoising steps run
normally and give correspondences with confidence c_v^(f); for the remaining
steps the main token pair (t, t') behind each match is traced back through the
chain and its entry of A(Z_a -> Z_f) is scaled by the (normalised) confidence,
then the row is renormalised (eq. 5).  Eq. 5 as printed,
``c A[t, t'] / sum_k c A[t, k]``, would cancel c when it scales the whole
row; we implement its evident intent: scale only the entries of the
reinforced pairs, then renormalise the row.  Scaling post-softmax
probabilities by g and renormalising is exactly adding log g to the logits
before the softmax, so the denoiser can apply it as an additive attention
bias (:func:`reinforcement_logit_bias`) on the anchor-row / frame-f-column
block of its inflated self-attention.

Shape legend: L landmarks, N anchor tokens, M frame tokens, C pairs, T frames,
V vertices.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ._checks import as_numpy, as_tensor, check_int

__all__ = [
    "trace_token_pairs",
    "confidence_gain",
    "reinforce_attention",
    "reinforcement_logit_bias",
    "stitch_windows",
]


def trace_token_pairs(a_va_za, a_za_zf, a_best_zf) -> torch.Tensor:
    """Main latent token pair (t, t') behind each chain match, traced backwards (§4.3).

    For landmark v matched to candidate u* (its best surface point), the score
    ``s = sum_{t'} (sum_t a[v, t] A[t, t']) b[u*, t']`` is decomposed
    backwards: ``t' = argmax_{t'} chained[v, t'] b[u*, t']`` (the frame token
    carrying most of the score), then ``t = argmax_t a[v, t] A[t, t']`` (the
    anchor token carrying most of that transport).

    Args:
        a_va_za: (L, N) landmark -> anchor-token attention.
        a_za_zf: (N, M) anchor-token -> frame-token attention.
        a_best_zf: (L, M) frame-token attention of each landmark's matched
            candidate (rows of A(V_f->Z_f) at ``ChainMatch.best_index``).

    Returns:
        (L, 2) int64 pairs (t, t').

    Raises:
        ValueError: on inconsistent shapes.
    """
    a = as_tensor("a_va_za", a_va_za, ndim=2)
    m = as_tensor("a_za_zf", a_za_zf, ndim=2, device=a.device)
    b = as_tensor("a_best_zf", a_best_zf, ndim=2, device=a.device)
    if m.shape[0] != a.shape[1] or b.shape != (a.shape[0], m.shape[1]):
        raise ValueError(f"shapes must be a_va_za (L, N), a_za_zf (N, M), a_best_zf (L, M); got "
                         f"{tuple(a.shape)}, {tuple(m.shape)}, {tuple(b.shape)}")
    dtype = torch.promote_types(a.dtype, m.dtype)
    a, m, b = a.to(dtype), m.to(dtype), b.to(dtype)
    chained = a @ m
    t_frame = torch.argmax(chained * b, dim=1)                      # (L,)
    t_anchor = torch.argmax(a * m[:, t_frame].T, dim=1)             # (L,)
    return torch.stack([t_anchor, t_frame], dim=1).long()


def confidence_gain(confidence, mode: str = "mean", max_gain: Optional[float] = None) -> torch.Tensor:
    """Gains g that scale the reinforced attention entries (§4.3 eq. 5).

    * ``"mean"`` (default): ``c / mean(c)`` over the reinforced matches of the
      frame, so reliable matches (above-average confidence) are boosted (g > 1)
      and weak ones damped, whatever the absolute score scale (~1/N).
    * ``"raw"``: ``g = c`` literally (chain scores are <= 1, so this only damps).

    Args:
        confidence: (C,) non-negative chain confidences c_v^(f).
        mode: "mean" or "raw".
        max_gain: optional upper clip of g.

    Returns:
        (C,) float gains > 0 (zeros are raised to a tiny positive value).

    Raises:
        ValueError: on negative confidence or an unknown mode.
    """
    c = as_tensor("confidence", confidence, ndim=1)
    if (c < 0).any():
        raise ValueError("confidence must be non-negative")
    if mode == "mean":
        g = c / c.mean().clamp_min(torch.finfo(c.dtype).tiny) if c.numel() else c
    elif mode == "raw":
        g = c.clone()
    else:
        raise ValueError(f"mode must be 'mean' or 'raw', got {mode!r}")
    if max_gain is not None:
        if not max_gain > 0:
            raise ValueError(f"max_gain must be > 0, got {max_gain}")
        g = g.clamp_max(float(max_gain))
    return g.clamp_min(1e-12)


def _gain_matrix(pairs, gain, shape, device, dtype) -> torch.Tensor:
    p = torch.as_tensor(pairs, device=device).long().reshape(-1, 2)
    g = as_tensor("gain", gain, ndim=1, device=device).to(dtype)
    if g.shape[0] != p.shape[0]:
        raise ValueError(f"gain has {g.shape[0]} entries but there are {p.shape[0]} pairs")
    if (g <= 0).any():
        raise ValueError("gain must be > 0 (use confidence_gain)")
    if p.numel() and (p[:, 0].min() < 0 or p[:, 0].max() >= shape[0] or p[:, 1].min() < 0 or p[:, 1].max() >= shape[1]):
        raise ValueError(f"pairs must index a ({shape[0]}, {shape[1]}) attention block")
    mat = torch.ones(shape, device=device, dtype=dtype)
    flat = mat.view(-1)
    # duplicate pairs (two landmarks through the same tokens) keep the largest gain
    flat.scatter_reduce_(0, p[:, 0] * shape[1] + p[:, 1], g, reduce="amax", include_self=False)
    return mat


def reinforce_attention(attention, pairs, gain, renormalize: bool = True) -> torch.Tensor:
    """Scale the attention entries of the reinforced token pairs and renormalise rows (§4.3 eq. 5).

    ``A'[t, t'] = g A[t, t'] / sum_k A~[t, k]`` for (t, t') in C, where A~ is A
    with the reinforced entries scaled; rows without reinforced pairs are unchanged.

    Args:
        attention: (..., N, M) attention probabilities A(Z_a -> Z_f) (rows sum
            to 1 over the block, or to the block's share of a larger row).
        pairs: (C, 2) int (t, t') from :func:`trace_token_pairs`.
        gain: (C,) positive gains from :func:`confidence_gain`.
        renormalize: keep each row's total mass (True) or return the scaled entries only.

    Returns:
        (..., N, M) tensor like ``attention``.

    Raises:
        ValueError: on out-of-range pairs, mismatched gains or non-positive gains.
    """
    a = as_tensor("attention", attention)
    if a.ndim < 2:
        raise ValueError(f"attention must be (..., N, M), got {tuple(a.shape)}")
    g = _gain_matrix(pairs, gain, a.shape[-2:], a.device, a.dtype)
    scaled = a * g
    if not renormalize:
        return scaled
    before = a.sum(-1, keepdim=True)
    after = scaled.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    return scaled * (before / after)


def reinforcement_logit_bias(pairs, gain, shape: Sequence[int], device=None,
                             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention-logit bias equivalent to :func:`reinforce_attention` (§4.3 eq. 5).

    ``softmax(logits + log G) == renormalise(softmax(logits) * G)``, so adding
    this (N, M) block (``log g`` at the reinforced pairs, 0 elsewhere) to the
    anchor-row / frame-f-column block of the denoiser's attention logits
    reinforces the correspondences inside the fused attention kernel.

    Args:
        pairs: (C, 2) int (t, t').
        gain: (C,) positive gains.
        shape: (N, M) of the block.
        device, dtype: of the returned bias.

    Returns:
        (N, M) tensor of log-gains.

    Raises:
        ValueError: on bad shape, out-of-range pairs or non-positive gains.
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be (N, M), got {shape!r}")
    n, m = check_int("N", int(shape[0])), check_int("M", int(shape[1]))
    return torch.log(_gain_matrix(pairs, gain, (n, m), device, dtype))


def stitch_windows(windows: Sequence, overlap: int = 1, atol: Optional[float] = None) -> np.ndarray:
    """Concatenate per-window animations of an autoregressive rollout (§4.3, app. C).

    Window w + 1 starts with the last ``overlap`` frames of window w (its
    re-encoded anchor, pinned by the smoothing), so those frames are dropped
    from every later window.  With ``atol`` the shared frames must agree.

    Args:
        windows: sequence of (T_w, V, 3) positions (or (T_w, L, 3) landmark tracks).
        overlap: frames shared between consecutive windows (>= 0).
        atol: optional tolerance for the consistency check of shared frames.

    Returns:
        (T, V, 3) float64 with ``T = T_0 + sum_{w>0} (T_w - overlap)``.

    Raises:
        ValueError: on empty input, inconsistent V, windows not longer than the
            overlap, or shared frames that disagree beyond ``atol``.
    """
    if len(windows) == 0:
        raise ValueError("stitch_windows needs at least one window")
    overlap = check_int("overlap", overlap, minimum=0)
    arrs = [as_numpy(f"windows[{i}]", w, ndim=3, last=3) for i, w in enumerate(windows)]
    for i, w in enumerate(arrs[1:], start=1):
        if w.shape[1] != arrs[0].shape[1]:
            raise ValueError(f"windows[{i}] has {w.shape[1]} points, windows[0] has {arrs[0].shape[1]}")
        if w.shape[0] <= overlap or arrs[i - 1].shape[0] < overlap:
            raise ValueError(f"windows[{i}] has {w.shape[0]} frames, not more than overlap={overlap}")
        if atol is not None and overlap and not np.allclose(arrs[i - 1][-overlap:], w[:overlap], atol=atol, rtol=0):
            raise ValueError(f"windows[{i}] does not start with the last {overlap} frame(s) of windows[{i - 1}]")
    parts = [arrs[0]] + [w[overlap:] for w in arrs[1:]]
    return np.concatenate(parts, axis=0)
