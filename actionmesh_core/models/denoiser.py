"""Stage I temporal 3D denoiser (ActionMesh paper §3.2; release: actionmesh/model/temporal_denoiser.py,
``ActionMeshDenoiser.forward``).

A TripoSG diffusion transformer whose self-attention is *inflated* across the
frames of a clip: in the inflated layers the tokens of all T frames (each frame
= 1 diffusion-time token + N latent tokens) form one sequence; rotary frame
positions (RoPE) tell the frames apart. Source frames (mask = 1, known clean
latents) get diffusion time 0. Cross-attention reads each frame's own image
features (DINOv2).

Shape legend: B batch, T frames, N latent tokens per frame, C latent channels,
S image tokens per frame, Dc image feature width, W model width.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from .layers import FP32LayerNorm, TimestepProjection, TransformerBlock, rope_cos_sin, sinusoidal_embedding

__all__ = ["TemporalDenoiser"]


class TemporalDenoiser(nn.Module):
    """ActionMesh temporal 3D denoiser (``ActionMesh/denoiser``).

    Args (the keys of the released ``config.json``):
        in_channels: C (64 released).
        width: W (2048 released).
        num_layers: L (21 released).
        num_attention_heads: H (16 released).
        cross_attention_dim: Dc (1024 for DINOv2-L).
        mlp_ratio: feed-forward inner width / W.
        inflated_layers: indices of the layers whose self-attention spans all
            frames (all 21 in the release); ``None`` = all layers.
        num_tokens_nominal, temporal_context_size, clear_autocast: recorded
            for reference (N and T the model was trained with), unused by the math.
    """

    family = "actionmesh_denoiser"

    def __init__(
        self,
        in_channels: int = 64,
        width: int = 2048,
        num_layers: int = 21,
        num_attention_heads: int = 16,
        cross_attention_dim: int = 1024,
        mlp_ratio: float = 4.0,
        inflated_layers: Optional[Sequence[int]] = None,
        num_tokens_nominal: int = 2048,
        temporal_context_size: int = 16,
        clear_autocast: bool = False,
        qkv_bias: bool = False,
    ):
        super().__init__()
        if inflated_layers is None:
            inflated_layers = list(range(num_layers))
        bad = [i for i in inflated_layers if not 0 <= int(i) < num_layers]
        if bad:
            raise ValueError(f"inflated_layers {bad} outside [0, {num_layers})")
        self.config: Dict[str, Any] = dict(
            in_channels=in_channels, width=width, num_layers=num_layers,
            num_attention_heads=num_attention_heads, cross_attention_dim=cross_attention_dim,
            mlp_ratio=mlp_ratio, inflated_layers=[int(i) for i in inflated_layers],
            num_tokens_nominal=num_tokens_nominal, temporal_context_size=temporal_context_size,
            clear_autocast=clear_autocast, qkv_bias=qkv_bias,
        )
        self.inflated = set(self.config["inflated_layers"])
        self.num_layers = num_layers
        self.width = width
        self.head_dim = width // num_attention_heads
        self.time_proj = TimestepProjection(width)
        self.proj_in = nn.Linear(in_channels, width)
        inner = int(width * mlp_ratio)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, num_attention_heads, TransformerBlock.ACTIONMESH_NAMES,
                             context_dim=cross_attention_dim, skip=i > num_layers // 2,
                             qk_norm=True, qkv_bias=qkv_bias, ff_inner=inner)
            for i in range(num_layers)
        )
        self.norm_out = FP32LayerNorm(width, eps=1e-5)
        self.proj_out = nn.Linear(width, in_channels)

    def cross_attention_kv(self, context: torch.Tensor) -> List:
        """Per-layer cross-attention keys/values of an image context.

        Args:
            context: (B, T, S, Dc).

        Returns:
            list of L (k, v) pairs, each (B·T, H, S, D); pass as ``kv_cache``
            to :meth:`forward` to skip recomputing them at every denoising step.
        """
        flat = context.reshape(-1, *context.shape[2:]).to(self.proj_in.weight.dtype)
        return [blk.sub("x_attn").project_kv(flat) for blk in self.blocks]

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: Optional[torch.Tensor],
        framestep: torch.Tensor,
        diffusion_time: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        kv_cache: Optional[List] = None,
    ) -> torch.Tensor:
        """Predict the flow velocity of every frame's latent.

        Args:
            hidden_states: (B, T, N, C) noisy target latents / clean source latents.
            context: (B, T, S, Dc) image features per frame (None only with ``kv_cache``).
            framestep: (B, T) frame indices (any offset; only differences matter).
            diffusion_time: (B,) flow time in [0, 1000] (1000 = pure noise).
            mask: (B, T) 1 = clean source latent (gets diffusion time 0), 0 = target.
            kv_cache: optional result of :meth:`cross_attention_kv` for ``context``.

        Returns:
            (B, T, N, C) velocity (pointing towards data), in the input dtype.

        Raises:
            ValueError: mismatched shapes.
        """
        if hidden_states.ndim != 4:
            raise ValueError(f"hidden_states must be (B, T, N, C), got {tuple(hidden_states.shape)}")
        b, t, n, c = hidden_states.shape
        if c != self.config["in_channels"]:
            raise ValueError(f"latent channels {c} != denoiser in_channels {self.config['in_channels']}")
        if framestep.shape != (b, t):
            raise ValueError(f"framestep must be (B, T)=({b}, {t}), got {tuple(framestep.shape)}")
        if context is not None and (context.ndim != 4 or context.shape[:2] != (b, t)):
            raise ValueError(f"context must be (B, T, S, Dc) with B, T = {b}, {t}; got {tuple(context.shape)}")
        dtype = self.proj_in.weight.dtype
        dev = hidden_states.device
        times = diffusion_time.reshape(b, 1).to(dev, torch.float32).expand(b, t)
        if mask is not None:
            times = torch.where(mask.to(dev) > 0.5, torch.zeros_like(times), times)
        temb = self.time_proj(sinusoidal_embedding(times.reshape(-1), self.width).to(dtype))  # (B·T, W)
        x = self.proj_in(hidden_states.to(dtype)).reshape(b * t, n, self.width)
        x = torch.cat([temb[:, None], x], dim=1)  # (B·T, N+1, W)

        pos = (framestep - framestep.min(dim=1, keepdim=True).values).to(dev)
        pos_frame = pos.reshape(b * t, 1).expand(b * t, n + 1)
        rope_frame = rope_cos_sin(pos_frame, self.head_dim)
        rope_inflated = rope_cos_sin(pos_frame.reshape(b, t * (n + 1)), self.head_dim)
        ctx = None if context is None else context.reshape(b * t, *context.shape[2:]).to(dtype)

        skips: List[torch.Tensor] = []
        half = self.num_layers // 2
        for i, blk in enumerate(self.blocks):
            inflated = i in self.inflated
            x = blk(
                x,
                context=ctx,
                rope=rope_inflated if inflated else rope_frame,
                skip=skips.pop() if i > half else None,
                self_attn_view=(b, t * (n + 1)) if inflated else None,
                kv=None if kv_cache is None else kv_cache[i],
            )
            if i < half:
                skips.append(x)
        x = self.norm_out(x)[:, -n:]
        return self.proj_out(x).reshape(b, t, n, c).to(hidden_states.dtype)
