"""Building blocks shared by the ActionMesh and TripoSG transformers.

Shape legend: B batch, S sequence length (tokens), L context length, H heads,
D head dim, W model width.

Everything here follows the release (module names, fused head split, QK RMSNorm,
frame RoPE, fp32 LayerNorm, exact-GELU feed-forward): release: actionmesh/model/utils/block.py,
``FlowMatchingBlock``; release: actionmesh/model/utils/attention_processor.py, ``AttentionProcessor.__call__``;
release: actionmesh/model/utils/rotary_embedding.py, ``compute_rotary_embeddings``; and for TripoSG
release: third_party/TripoSG/triposg/models/transformers/triposg_transformer.py, ``DiTBlock``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..perf import FLAGS as _PERF

__all__ = [
    "FP32LayerNorm",
    "HeadRMSNorm",
    "FeedForward",
    "Attention",
    "TransformerBlock",
    "TimestepProjection",
    "sinusoidal_embedding",
    "fourier_point_embedding",
    "rope_cos_sin",
    "apply_rope",
    "set_attention_backend",
    "get_attention_backend",
    "active_attention_backend",
    "flash_attention_available",
    "scaled_dot_product_attention",
]

# the attention kernel dispatch lives in .attention (re-exported here for the models' users)
from .attention import (active_attention_backend, flash_attention_available, get_attention_backend,  # noqa: E402
                        scaled_dot_product_attention, set_attention_backend)


# --------------------------------------------------------------------------- norms, feed-forward


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm evaluated in float32 whatever the input dtype.

    The release's ``FP32LayerNorm`` norms (eps 1e-5, affine): release: actionmesh/model/utils/block.py,
    ``FlowMatchingBlock.__post_init__``.

    Input/output: (..., W); the output has the input's dtype.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class HeadRMSNorm(nn.Module):
    """RMSNorm over one attention head (weight only, eps 1e-6), computed in float32.

    Input/output: (..., D). Implements the QK norm (``qk_norm="rms_norm"``, applied per head after
    the fused head split, before RoPE): release: actionmesh/model/utils/block.py,
    ``FlowMatchingBlock.__post_init__``; release: actionmesh/model/utils/attention_processor.py,
    ``AttentionProcessor.__call__``.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class _GELUProj(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))  # exact (erf) GELU


class FeedForward(nn.Module):
    """``ff.net.0.proj`` (W -> inner) -> exact GELU -> ``ff.net.2`` (inner -> W).

    Input/output: (B, S, W).
    """

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.net = nn.ModuleList([_GELUProj(dim, inner_dim), nn.Identity(), nn.Linear(inner_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for layer in self.net:
            x = layer(x)
        return x


# --------------------------------------------------------------------------- rotary frame positions


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for integer/real frame positions.

    release: actionmesh/model/utils/rotary_embedding.py, ``compute_rotary_embeddings``,
    ``apply_rotary_embedding``.

    Frequencies ``base^(-2i/D)`` for i < D/2, pairs are adjacent channels
    (2i, 2i+1), cos/sin repeated per pair, computed in float32.

    Args:
        positions: (B, S) token positions (``framestep[t] - min(framestep)``).
        head_dim: D, must be even.

    Returns:
        cos, sin: each (B, 1, S, D) float32, broadcastable over heads.

    Raises:
        ValueError: odd head dim.
    """
    if head_dim % 2:
        raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inv_freq  # (B, S, D/2)
    cos = angles.cos().repeat_interleave(2, dim=-1)[:, None]
    sin = angles.sin().repeat_interleave(2, dim=-1)[:, None]
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` (B, H, S, D) by the rotary tables.

    Any layout works as long as ``cos``/``sin`` broadcast against ``x``
    (e.g. ``x`` (B, S, H, D) with the tables transposed to (B, S, 1, D)).
    """
    xf = x.float()
    pairs = xf.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (xf * cos + rotated * sin).to(x.dtype)


# --------------------------------------------------------------------------- attention


class Attention(nn.Module):
    """Multi-head attention with the TripoSG/ActionMesh fused head split.

    Self-attention: the projections are concatenated per token as ``[q|k|v]``
    (width 3·H·D), viewed as (B, S, H, 3D), and each head's q, k, v are the
    three consecutive D-slices of its 3D chunk (release: actionmesh/model/utils/attention_processor.py,
    ``AttentionProcessor.__call__``; release: third_party/TripoSG/triposg/models/attention_processor.py,
    ``TripoSGAttnProcessor2_0.__call__``). Cross-attention
    does the same with ``[k|v]``; the query is split normally. Then optional
    per-head QK RMSNorm, optional RoPE, and SDPA with scale 1/sqrt(D).

    Args:
        dim: W, query width (= H·D).
        heads: H.
        context_dim: width of the cross-attention context; None = self-attention.
        qkv_bias: bias on ``to_q/to_k/to_v``.
        qk_norm: per-head RMSNorm ``norm_q``/``norm_k``.
        norm_cross: LayerNorm ``norm_cross`` on the context (cross-attention).

    ``capture``: optional callable ``capture(q, k)`` receiving the normalised,
    rotated (B, H, S, D) query and (B, H, L, D) key just before the attention
    kernel; used to read attention maps without changing outputs.
    ``row_bias``: optional ``(start, bias)`` with bias (R, L): the query rows
    ``start..start+R`` get ``bias`` added to their logits (applied only when
    the key length is L). None (the default) leaves the attention untouched.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        context_dim: Optional[int] = None,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        norm_cross: bool = False,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.is_cross = context_dim is not None
        kv_dim = context_dim if context_dim is not None else dim
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(kv_dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(kv_dim, dim, bias=qkv_bias)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Identity()])
        if qk_norm:
            self.norm_q = HeadRMSNorm(self.head_dim)
            self.norm_k = HeadRMSNorm(self.head_dim)
        else:
            self.norm_q = self.norm_k = None
        self.norm_cross = FP32LayerNorm(kv_dim, eps=1e-5) if norm_cross else None
        self.capture: Optional[Callable[[torch.Tensor, torch.Tensor], None]] = None
        self.row_bias: Optional[Tuple[int, torch.Tensor]] = None
        self._fused_cache: dict = {}  # number of fused layers -> (key, weight, bias); see _fused_weight

    def _fused(self, x: torch.Tensor, layers) -> torch.Tensor:
        """Concatenated projections ``[layer_0(x) | layer_1(x) | ...]`` (the fused head-split input).

        Optimised path: one GEMM with the concatenated weight, cached (see
        :meth:`_fused_weight`). Plain path (``perf.plain_mode``): one GEMM per
        projection, outputs concatenated.
        """
        if not _PERF.fused_qkv:
            return torch.cat([layer(x) for layer in layers], dim=-1)
        weight, bias = self._fused_weight(layers)
        return F.linear(x, weight, bias)

    def _fused_weight(self, layers) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The concatenated weight/bias of ``layers``, built once and reused while the weights are unchanged.

        The cache key holds each parameter's identity, storage pointer, version
        counter (bumped by in-place writes such as ``load_state_dict`` and
        optimiser steps), dtype and device, so any change of the weights
        rebuilds it; ``.to()``/``.cuda()``/``.half()`` and ``load_state_dict``
        also drop it explicitly (no stale copy kept on the old device). With
        autograd on (``torch.is_grad_enabled()``) the weight is concatenated
        per call (no cache), so gradients flow exactly as before; the samplers
        run under ``no_grad``. Inference tensors (weights loaded under
        ``torch.inference_mode``, as inside ComfyUI) carry no version counter, so
        an in-place write into one is not seen; replacing or moving them is.
        """
        params = [p for layer in layers for p in (layer.weight, layer.bias) if p is not None]
        if torch.is_grad_enabled():
            weight = torch.cat([layer.weight for layer in layers], 0)
            bias = None if layers[0].bias is None else torch.cat([layer.bias for layer in layers], 0)
            return weight, bias
        # inference tensors (weights made under ``torch.inference_mode``, as ComfyUI runs its nodes) have no
        # version counter: their identity, storage, dtype and device still key the cache
        key = tuple((id(p), p.data_ptr(), None if p.is_inference() else p._version, p.dtype, p.device)
                    for p in params)
        cache = self._fused_cache.get(len(layers))
        if cache is None or cache[0] != key:
            with torch.no_grad():
                weight = torch.cat([layer.weight for layer in layers], 0)
                bias = None if layers[0].bias is None else torch.cat([layer.bias for layer in layers], 0)
            cache = (key, weight, bias)
            self._fused_cache[len(layers)] = cache
        return cache[1], cache[2]

    def _apply(self, fn, *args, **kwargs):
        self._fused_cache = {}
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._fused_cache = {}
        return super()._load_from_state_dict(*args, **kwargs)

    def project_kv(self, context: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of a cross-attention context.

        Args:
            context: (B, L, Dc).

        Returns:
            k, v: (B, H, L, D), QK-normalised where configured. Cacheable across
            calls with the same context (used by the samplers).
        """
        if self.norm_cross is not None:
            context = self.norm_cross(context)
        b, length, _ = context.shape
        kv = self._fused(context, (self.to_k, self.to_v)).view(b, length, self.heads, 2 * self.head_dim)
        k, v = kv.split(self.head_dim, dim=-1)
        if _PERF.token_major and self.norm_k is not None:
            k = self.norm_k(k)  # on the (B, L, H, D) view: same values, memory-order friendly
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        if not _PERF.token_major and self.norm_k is not None:
            k = self.norm_k(k)
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        context: Optional[torch.Tensor] = None,
        rope: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """Attend.

        Args:
            x: (B, S, W) queries (and keys/values for self-attention).
            context: (B, L, Dc) cross-attention context (cross only).
            rope: (cos, sin) from :func:`rope_cos_sin` for the S tokens (self only).
            kv: precomputed (k, v) from :meth:`project_kv` (cross only).

        Returns:
            (B, S, W).
        """
        b, s, _ = x.shape
        h, d = self.heads, self.head_dim
        token_major = _PERF.token_major
        if self.is_cross:
            q = self.to_q(x).view(b, s, h, d)
            if token_major and self.norm_q is not None:
                q = self.norm_q(q)
            q = q.transpose(1, 2)
            if not token_major and self.norm_q is not None:
                q = self.norm_q(q)
            if kv is None:
                if context is None:
                    raise ValueError("cross-attention needs a context tensor")
                kv = self.project_kv(context)
            k, v = kv
        elif token_major:
            # QK norm and RoPE on the (B, S, H, D) views of the fused projection: elementwise-identical
            # to working on the (B, H, S, D) transposes, but the loops follow the memory order.
            qkv = self._fused(x, (self.to_q, self.to_k, self.to_v)).view(b, s, h, 3 * d)
            q, k, v = qkv.split(d, dim=-1)
            if self.norm_q is not None:
                q, k = self.norm_q(q), self.norm_k(k)
            if rope is not None:
                cos, sin = rope[0].transpose(1, 2), rope[1].transpose(1, 2)
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        else:
            qkv = self._fused(x, (self.to_q, self.to_k, self.to_v)).view(b, s, h, 3 * d)
            q, k, v = qkv.split(d, dim=-1)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            if self.norm_q is not None:
                q, k = self.norm_q(q), self.norm_k(k)
            if rope is not None:
                q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.capture is not None:
            self.capture(q, k)
        out = scaled_dot_product_attention(q, k, v)
        if self.row_bias is not None and self.row_bias[1].shape[-1] == k.shape[2]:
            # additive logit bias on a block of query rows (attention-chain reinforcement, §4.3 eq. 5)
            start, bias = self.row_bias
            rows = slice(start, start + bias.shape[0])
            out = out.clone()
            out[:, :, rows] = F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=bias.to(q.dtype))
        out = out.transpose(1, 2).reshape(b, s, h * d)
        return self.to_out[0](out)


# --------------------------------------------------------------------------- transformer block


class TransformerBlock(nn.Module):
    """Pre-norm block: [long skip] -> self-attention -> cross-attention -> feed-forward.

    One class serves every family; ``names`` gives the checkpoint's module
    names so ``state_dict`` keys equal the released files':

    - TripoSG (DiT and VAE): ``norm1 attn1 norm2 attn2 norm3 ff skip_linear skip_norm``;
    - ActionMesh: ``norm_s_attn s_attn norm_x_attn x_attn norm_ff ff linear_skip norm_skip``.

    A skip block concatenates ``[skip, x]`` (skip first), applies the skip
    Linear then the skip LayerNorm (release: actionmesh/model/utils/block.py,
    ``FlowMatchingBlock.forward``; TripoSG's ``skip_norm_last=True``: release:
    third_party/TripoSG/triposg/models/transformers/triposg_transformer.py, ``TripoSGDiTModel.__init__``).

    Args:
        dim: W. heads: H. context_dim: cross-attention context width (None: no
        cross-attention). self_attention: include the self-attention sub-layer.
        skip: include the long-skip fusion. qk_norm / qkv_bias / norm_cross:
        see :class:`Attention`. ff_inner: feed-forward inner width.
    """

    TRIPOSG_NAMES = dict(norm_s="norm1", s_attn="attn1", norm_x="norm2", x_attn="attn2", norm_ff="norm3",
                         ff="ff", skip_linear="skip_linear", skip_norm="skip_norm")
    ACTIONMESH_NAMES = dict(norm_s="norm_s_attn", s_attn="s_attn", norm_x="norm_x_attn", x_attn="x_attn",
                            norm_ff="norm_ff", ff="ff", skip_linear="linear_skip", skip_norm="norm_skip")

    def __init__(
        self,
        dim: int,
        heads: int,
        names: dict,
        context_dim: Optional[int] = None,
        self_attention: bool = True,
        skip: bool = False,
        qk_norm: bool = False,
        qkv_bias: bool = False,
        norm_cross: bool = False,
        ff_inner: Optional[int] = None,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.names = dict(names)
        self.has_self = self_attention
        self.has_cross = context_dim is not None
        self.has_skip = skip
        if skip:
            self.add_module(names["skip_linear"], nn.Linear(2 * dim, dim))
            self.add_module(names["skip_norm"], FP32LayerNorm(dim, eps=norm_eps))
        if self_attention:
            self.add_module(names["norm_s"], FP32LayerNorm(dim, eps=norm_eps))
            self.add_module(names["s_attn"], Attention(dim, heads, None, qkv_bias, qk_norm))
        if self.has_cross:
            self.add_module(names["norm_x"], FP32LayerNorm(dim, eps=norm_eps))
            self.add_module(names["x_attn"], Attention(dim, heads, context_dim, qkv_bias, qk_norm, norm_cross))
        self.add_module(names["norm_ff"], FP32LayerNorm(dim, eps=norm_eps))
        self.add_module(names["ff"], FeedForward(dim, ff_inner or 4 * dim))

    def sub(self, role: str) -> nn.Module:
        """The sub-module playing ``role`` (e.g. ``"s_attn"``, ``"x_attn"``)."""
        return getattr(self, self.names[role])

    def forward(
        self,
        x: torch.Tensor,
        context: Optional[torch.Tensor] = None,
        rope: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        skip: Optional[torch.Tensor] = None,
        self_attn_view: Optional[Tuple[int, ...]] = None,
        kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """Run the block.

        Args:
            x: (B, S, W).
            context: (B, L, Dc) cross-attention context.
            rope: rotary tables for the self-attention sequence.
            skip: (B, S, W) long-skip input (skip blocks only).
            self_attn_view: optional shape (B', S') the self-attention runs on
                (e.g. frames flattened into one sequence for inflated layers).
            kv: cached cross-attention (k, v).

        Returns:
            (B, S, W).
        """
        if self.has_skip:
            if skip is None:
                raise ValueError("this block fuses a long skip connection but got no skip input")
            x = self.sub("skip_norm")(self.sub("skip_linear")(torch.cat([skip, x], dim=-1)))
        if self.has_self:
            h = self.sub("norm_s")(x)
            if self_attn_view is not None:
                h = self.sub("s_attn")(h.reshape(*self_attn_view, h.shape[-1]), rope=rope).reshape(x.shape)
            else:
                h = self.sub("s_attn")(h, rope=rope)
            x = x + h
        if self.has_cross:
            x = x + self.sub("x_attn")(self.sub("norm_x")(x), context=context, kv=kv)
        return x + self.sub("ff")(self.sub("norm_ff")(x))


# --------------------------------------------------------------------------- embeddings


def sinusoidal_embedding(values: torch.Tensor, dim: int, cos_first: bool = False, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of scalars (flow time, alpha).

    Frequency i = exp(-ln(max_period)·i/(dim/2)) for i < dim/2; output
    ``[sin | cos]`` (``cos_first=False``, the diffusion-time token; release:
    actionmesh/model/temporal_denoiser.py, ``ActionMeshDenoiser.__post_init__``: diffusers ``Timesteps``
    with ``flip_sin_to_cos=False``) or ``[cos | sin]`` (the stage II alpha token; release:
    actionmesh/model/utils/embeddings.py, ``TimestepEmbedder.forward``).

    Args:
        values: (M,) scalars (flow time in [0, 1000], alpha in [0, 1]).
        dim: output channels (even).

    Returns:
        (M, dim) float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    args = values.float()[:, None] * freqs[None]
    parts = (args.cos(), args.sin()) if cos_first else (args.sin(), args.cos())
    return torch.cat(parts, dim=-1)


class TimestepProjection(nn.Module):
    """``time_proj``: Linear(W, 4W) -> GELU -> Linear(4W, W) on the time sinusoid.

    Input (M, W) -> output (M, W).
    """

    def __init__(self, dim: int, hidden: Optional[int] = None):
        super().__init__()
        self.linear_1 = nn.Linear(dim, hidden or 4 * dim)
        self.linear_2 = nn.Linear(hidden or 4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.linear_2(F.gelu(self.linear_1(x)))


def fourier_point_embedding(xyz: torch.Tensor, num_freqs: int, include_pi: bool = False) -> torch.Tensor:
    """Fourier features of 3D points: ``[x, y, z, sin(u), cos(u)]``.

    release: actionmesh/model/utils/embeddings.py, ``FrequencyPositionalEmbedding.forward`` (stage II);
    release: third_party/TripoSG/triposg/models/embeddings.py, ``FrequencyPositionalEmbedding.forward`` (VAE).

    u lists x·f_0..x·f_{F-1}, y·f_0.., z·f_0.. (axis-major), f_k = 2^k
    (times pi when ``include_pi``).

    Args:
        xyz: (..., 3) coordinates, model space [-1, 1].
        num_freqs: F.

    Returns:
        (..., 3·(2F+1)) in the input's dtype (computed in float32).
    """
    freqs = 2.0 ** torch.arange(num_freqs, dtype=torch.float32, device=xyz.device)
    if include_pi:
        freqs = freqs * math.pi
    u = (xyz.float()[..., None] * freqs).flatten(-2)
    return torch.cat([xyz.float(), u.sin(), u.cos()], dim=-1).to(xyz.dtype)
