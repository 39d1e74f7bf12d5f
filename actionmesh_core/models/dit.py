"""TripoSG image-to-3D diffusion transformer (stage 0).

release: third_party/TripoSG/triposg/models/transformers/triposg_transformer.py, ``TripoSGDiTModel.forward``,
``DiTBlock.forward`` (time token prepended, long skips, fp32 LayerNorms, time token dropped before
``proj_out``); run by release: third_party/TripoSG/triposg/pipelines/pipeline_triposg.py,
``TripoSGPipeline.__call__``.

Shape legend: B batch, N latent tokens, C latent channels, S image tokens,
Dc image feature width, W model width.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .layers import FP32LayerNorm, TimestepProjection, TransformerBlock, sinusoidal_embedding

__all__ = ["TripoSGDiT"]


class TripoSGDiT(nn.Module):
    """TripoSG rectified-flow transformer (``TripoSG/transformer``).

    Args (keys of the released ``config.json``): in_channels C, width W,
    num_layers L, num_attention_heads H, cross_attention_dim Dc.
    ``use_cross_attention_2`` (a second image context) is not supported and
    must be false, as in the release.
    """

    family = "triposg_dit"

    def __init__(
        self,
        in_channels: int = 64,
        width: int = 2048,
        num_layers: int = 21,
        num_attention_heads: int = 16,
        cross_attention_dim: int = 1024,
        qkv_bias: bool = False,
    ):
        super().__init__()
        self.config: Dict[str, Any] = dict(in_channels=in_channels, width=width, num_layers=num_layers,
                                           num_attention_heads=num_attention_heads,
                                           cross_attention_dim=cross_attention_dim, qkv_bias=qkv_bias)
        self.num_layers = num_layers
        self.width = width
        self.time_proj = TimestepProjection(width)
        self.proj_in = nn.Linear(in_channels, width)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, num_attention_heads, TransformerBlock.TRIPOSG_NAMES,
                             context_dim=cross_attention_dim, skip=i > num_layers // 2,
                             qk_norm=True, qkv_bias=qkv_bias)
            for i in range(num_layers)
        )
        self.norm_out = FP32LayerNorm(width, eps=1e-5)
        self.proj_out = nn.Linear(width, in_channels)

    def cross_attention_kv(self, encoder_hidden_states: torch.Tensor) -> List:
        """Per-layer cached cross-attention (k, v) for a (B, S, Dc) image context."""
        ctx = encoder_hidden_states.to(self.proj_in.weight.dtype)
        return [blk.sub("x_attn").project_kv(ctx) for blk in self.blocks]

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor],
        kv_cache: Optional[List] = None,
    ) -> torch.Tensor:
        """Predict the rectified-flow velocity.

        Args:
            hidden_states: (B, N, C) noisy latent tokens.
            timestep: (B,) flow time in [0, 1000].
            encoder_hidden_states: (B, S, Dc) image features (None with ``kv_cache``).
            kv_cache: optional :meth:`cross_attention_kv` result.

        Returns:
            (B, N, C) velocity, in the input dtype.
        """
        if hidden_states.ndim != 3:
            raise ValueError(f"hidden_states must be (B, N, C), got {tuple(hidden_states.shape)}")
        b, n, c = hidden_states.shape
        dtype = self.proj_in.weight.dtype
        temb = self.time_proj(sinusoidal_embedding(timestep.reshape(-1).expand(b), self.width).to(dtype))
        x = torch.cat([temb[:, None], self.proj_in(hidden_states.to(dtype))], dim=1)
        ctx = None if encoder_hidden_states is None else encoder_hidden_states.to(dtype)
        skips: List[torch.Tensor] = []
        half = self.num_layers // 2
        for i, blk in enumerate(self.blocks):
            x = blk(x, context=ctx, skip=skips.pop() if i > half else None,
                    kv=None if kv_cache is None else kv_cache[i])
            if i < half:
                skips.append(x)
        x = self.norm_out(x)[:, -n:]
        return self.proj_out(x).to(hidden_states.dtype)
