"""Memory-bounded explicit attention probabilities for the rows a chain needs.

The models run fused scaled-dot-product attention, which never materialises
the probability matrix.  The attention chain (Samuel et al. 2026, §3 eq. 1 and
§4.1) needs a few rows of it: the landmark vertices against the anchor latent,
the anchor-frame tokens against one frame's tokens, candidate surface points
against a frame latent.  :func:`attention_rows` recomputes exactly those rows
from the per-head queries and keys, in chunks of rows, so the memory stays
bounded by ``chunk * H * S`` floats whatever R is.

Shape legend: B batch, H heads, R query rows, S keys, D head dim, C kept columns.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["attention_rows"]


def attention_rows(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: Optional[float] = None,
    chunk: int = 1024,
    *,
    per_head: bool = False,
    key_index: Optional[torch.Tensor] = None,
    renormalize: bool = False,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Softmax attention probabilities ``softmax(q k^T * scale)`` for chosen rows, chunked.

    Implements A_{X->Y} of the attention-chains paper (eq. 1) for the query rows
    passed in ``q`` (pick the rows before calling: landmark vertices, anchor
    tokens, ...).  The softmax always runs over **all** S keys, as in the model;
    ``key_index`` then keeps only some columns (e.g. the N tokens of frame f
    inside an inflated T*(N+1) sequence) and ``renormalize`` optionally rescales
    the kept columns to sum to 1 per row.  Computation is float32 (or float64 if
    the inputs are float64) on the inputs' device; heads are averaged unless
    ``per_head``.

    Args:
        q: (B, H, R, D) queries after every per-head transform the model applies
            (head split, QK-norm, RoPE).
        k: (B, H, S, D) keys, same conventions.
        scale: logit scale; default ``1/sqrt(D)`` (scaled dot-product attention).
        chunk: number of query rows processed at once (peak extra memory is
            about ``B * H * chunk * S`` floats).
        per_head: return every head instead of the head mean.
        key_index: optional (C,) int64 indices of the key columns to return.
        renormalize: with ``key_index``, divide the kept probabilities by their
            row sum (distribution over the kept keys only).
        out_dtype: dtype of the returned tensor.

    Returns:
        (B, R, C) head-averaged probabilities, or (B, H, R, C) if ``per_head``;
        C = S without ``key_index``.  Rows sum to 1 over all S keys (over the C
        kept keys with ``renormalize``).

    Raises:
        TypeError: if q or k are not tensors.
        ValueError: on mismatched shapes, a non-positive chunk or an
            out-of-range ``key_index``.
    """
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError("attention_rows expects torch tensors q (B,H,R,D) and k (B,H,S,D)")
    if q.ndim != 4 or k.ndim != 4:
        raise ValueError(f"attention_rows expects q (B,H,R,D) and k (B,H,S,D), got {tuple(q.shape)} and {tuple(k.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[1] != k.shape[1] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree on batch, heads and head dim")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    if renormalize and key_index is None:
        raise ValueError("renormalize=True needs key_index (the columns to renormalise over)")
    bsz, heads, rows, dim = q.shape
    num_keys = k.shape[2]
    if num_keys == 0:
        raise ValueError("attention_rows: k has no keys (S = 0)")
    if scale is None:
        scale = dim ** -0.5
    compute = torch.float64 if (q.dtype == torch.float64 or k.dtype == torch.float64) else torch.float32
    if key_index is not None:
        if not isinstance(key_index, torch.Tensor):
            key_index = torch.as_tensor(key_index)
        key_index = key_index.to(device=k.device, dtype=torch.long).reshape(-1)
        if key_index.numel() == 0 or key_index.min() < 0 or key_index.max() >= num_keys:
            raise ValueError(f"key_index must be non-empty indices in [0, {num_keys})")
        cols = key_index.numel()
    else:
        cols = num_keys
    kt = k.to(compute).transpose(-1, -2)
    shape = (bsz, heads, rows, cols) if per_head else (bsz, rows, cols)
    out = torch.empty(shape, dtype=out_dtype, device=q.device)
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        logits = torch.matmul(q[:, :, start:stop].to(compute), kt) * scale
        probs = torch.softmax(logits, dim=-1)
        del logits
        if key_index is not None:
            probs = probs.index_select(-1, key_index)
            if renormalize:
                probs = probs / probs.sum(-1, keepdim=True).clamp_min(torch.finfo(compute).tiny)
        if per_head:
            out[:, :, start:stop] = probs.to(out_dtype)
        else:
            out[:, start:stop] = probs.mean(1).to(out_dtype)
    return out
