"""Stage II temporal 3D autoencoder (ActionMesh paper §3.3; release: actionmesh/model/temporal_autoencoder.py,
``ActionMeshAutoencoder.forward``).

Reads the shape latents of a window of frames and predicts, for each target
time, the position of every query vertex of the reference mesh.

Shape legend: B batch, T frames in the window, N latent tokens per frame,
C latent channels, V query vertices, T_out target times, W model width.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from ..perf import FLAGS as _PERF
from .layers import FP32LayerNorm, TransformerBlock, fourier_point_embedding, rope_cos_sin, sinusoidal_embedding

__all__ = ["TemporalAutoencoder"]


class TemporalAutoencoder(nn.Module):
    """ActionMesh temporal 3D autoencoder (``ActionMesh/autoencoder``).

    Args (keys of the released ``config.json``):
        latent_channels: C (64 released).
        width: W (1024 released).
        num_layers: self-attention layers (16 released); one cross-attention
            layer follows them.
        num_attention_heads: H (8 released).
        in_channels: query xyz channels (3). in_extra_channels: extra query
            channels appended after the Fourier features (3: unit normal).
        out_dim: 3 (xyz).
        embed_frequency: F Fourier frequencies 2^k (8 released).
        embed_include_pi: multiply frequencies by pi (false released).
        prediction_mode: "direct" (the output is the vertex position) or
            "offset" (the output is added to the query xyz).
        temporal_context_size: T the model was trained with (recorded only).
    """

    family = "actionmesh_autoencoder"

    def __init__(
        self,
        latent_channels: int = 64,
        width: int = 1024,
        num_layers: int = 16,
        num_attention_heads: int = 8,
        in_channels: int = 3,
        in_extra_channels: int = 3,
        out_dim: int = 3,
        embed_frequency: int = 8,
        embed_include_pi: bool = False,
        prediction_mode: str = "direct",
        temporal_context_size: int = 16,
        qkv_bias: bool = False,
        verbose: bool = False,
    ):
        super().__init__()
        if prediction_mode not in ("direct", "offset"):
            raise ValueError(f"prediction_mode must be 'direct' or 'offset', got {prediction_mode!r}")
        if width % 4:
            raise ValueError(f"autoencoder width must be divisible by 4, got {width}")
        self.config: Dict[str, Any] = dict(
            latent_channels=latent_channels, width=width, num_layers=num_layers,
            num_attention_heads=num_attention_heads, in_channels=in_channels,
            in_extra_channels=in_extra_channels, out_dim=out_dim, embed_frequency=embed_frequency,
            embed_include_pi=embed_include_pi, prediction_mode=prediction_mode,
            temporal_context_size=temporal_context_size, qkv_bias=qkv_bias,
        )
        self.width = width
        self.num_layers = num_layers
        self.head_dim = width // num_attention_heads
        self.post_quant = nn.Linear(latent_channels, width)
        query_dim = in_channels * (2 * embed_frequency + 1) + in_extra_channels
        self.proj_query = nn.Linear(query_dim, width)
        blocks = [
            TransformerBlock(width, num_attention_heads, TransformerBlock.ACTIONMESH_NAMES, qkv_bias=qkv_bias)
            for _ in range(num_layers)
        ]
        blocks.append(TransformerBlock(width, num_attention_heads, TransformerBlock.ACTIONMESH_NAMES,
                                       context_dim=width, self_attention=False, norm_cross=True,
                                       qkv_bias=qkv_bias))
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = FP32LayerNorm(width, eps=1e-5)
        self.proj_out = nn.Linear(width, out_dim)

    # ------------------------------------------------------------------ pieces

    def alpha_tokens(self, source_alpha: torch.Tensor, target_alpha: torch.Tensor) -> torch.Tensor:
        """Content of the alpha token: ``concat(sinusoid(source), sinusoid(target))``.

        Each half has W/2 channels, cos first (release: actionmesh/model/utils/embeddings.py,
        ``TimestepEmbedder.forward``).

        Args:
            source_alpha, target_alpha: (M,) normalised times in [0, 1].

        Returns:
            (M, W) float32.
        """
        half = self.width // 2
        return torch.cat([sinusoidal_embedding(source_alpha, half, cos_first=True),
                          sinusoidal_embedding(target_alpha, half, cos_first=True)], dim=-1)

    def encode_sequence(
        self,
        latent: torch.Tensor,
        framestep: torch.Tensor,
        source_alpha: torch.Tensor,
        target_alphas: torch.Tensor,
    ) -> torch.Tensor:
        """Self-attention stack over [T·N latent tokens, T alpha tokens], once per target time.

        Args:
            latent: (B, T, N, C). framestep: (B, T). source_alpha: (B,).
            target_alphas: (B, T_out) in [0, 1].

        Returns:
            (B·T_out, T·N + T, W) context for the query cross-attention, in the
            model dtype. All target times run as one batch (exact: the target
            time only enters through the alpha token).
        """
        b, t, n, _ = latent.shape
        t_out = target_alphas.shape[1]
        dtype = self.post_quant.weight.dtype
        dev = latent.device
        tokens = self.post_quant(latent.to(dtype)).reshape(b, t * n, self.width)
        alpha = self.alpha_tokens(source_alpha.to(dev).reshape(b, 1).expand(b, t_out).reshape(-1),
                                  target_alphas.to(dev).reshape(-1)).to(dtype)  # (B·T_out, W)
        seq = torch.cat([tokens.repeat_interleave(t_out, dim=0), alpha[:, None].expand(-1, t, -1)], dim=1)
        pos = (framestep - framestep.min(dim=1, keepdim=True).values).to(dev)
        positions = torch.cat([pos.repeat_interleave(n, dim=1), pos], dim=1).repeat_interleave(t_out, dim=0)
        rope = rope_cos_sin(positions, self.head_dim)
        for blk in self.blocks[:-1]:
            seq = blk(seq, rope=rope)
        return seq

    def query_features(self, query: torch.Tensor) -> torch.Tensor:
        """Fourier features of xyz ++ extra channels (normal): (B, V, 6) -> (B, V, query_dim) float32."""
        cfg = self.config
        xyz, extra = query[..., : cfg["in_channels"]], query[..., cfg["in_channels"]:]
        return torch.cat([fourier_point_embedding(xyz.float(), cfg["embed_frequency"], cfg["embed_include_pi"]),
                          extra.float()], dim=-1)

    def keep_query_path_fp32(self) -> "TemporalAutoencoder":
        """Keep the query path (``proj_query``, cross-attention block, ``norm_out``,
        ``proj_out``) in float32 after the rest was cast to bf16/fp16, as the
        reference runs it in float32 (autocast disabled around it; release:
        actionmesh/model/temporal_autoencoder.py, ``ActionMeshAutoencoder.forward``). Returns ``self``."""
        for module in (self.proj_query, self.blocks[-1], self.norm_out, self.proj_out):
            module.float()
        return self

    def decode_queries(self, context: torch.Tensor, query: torch.Tensor, chunk_size: Optional[int] = None) -> torch.Tensor:
        """Query path: ``proj_query`` -> cross-attention block -> ``norm_out`` -> ``proj_out`` -> positions.

        Runs in float32 like the reference (see :meth:`keep_query_path_fp32`).

        Args:
            context: (B', T·N+T, W) from :meth:`encode_sequence`.
            query: (B', V, 6) xyz + unit normal in [-1, 1].
            chunk_size: vertices per chunk (None = all at once).

        Returns:
            (B', V, 3) float32 positions in [-1, 1] ("direct") or clamped xyz + offset ("offset").

        The context's keys/values are projected once for all chunks (``perf``
        flag ``cache_cross_kv``; the plain path re-projects them per chunk);
        with ``static_chunks`` the last chunk is zero-padded to ``chunk_size``
        when there are several (one shape for compiled/graphed blocks).
        """
        block = self.blocks[-1]
        qdtype = self.proj_query.weight.dtype
        outs = []
        total = query.shape[1]
        step = chunk_size or total
        with torch.autocast(device_type=context.device.type, enabled=False):
            ctx = context.to(qdtype)
            kv = block.sub("x_attn").project_kv(ctx) if _PERF.cache_cross_kv else None
            for start in range(0, total, step):
                q = query[:, start:start + step]
                size = q.shape[1]
                if _PERF.static_chunks and total > step and size < step:
                    q = torch.cat([q, q.new_zeros(q.shape[0], step - size, q.shape[2])], dim=1)
                h = self.proj_query(self.query_features(q).to(qdtype))
                h = block(h, kv=kv if kv is not None else block.sub("x_attn").project_kv(ctx))
                h = self.proj_out(self.norm_out(h)).float()[:, :size]
                q = q[:, :size]
                pos = 2.0 * torch.sigmoid(-h) - 1.0
                if self.config["prediction_mode"] == "offset":
                    pos = q[..., :3].float() + pos
                outs.append(pos.clamp(-1.0, 1.0))
        return torch.cat(outs, dim=1)

    def forward(
        self,
        latent: torch.Tensor,
        framestep: torch.Tensor,
        source_alpha: torch.Tensor,
        target_alphas: torch.Tensor,
        query: torch.Tensor,
        chunk_size: Optional[int] = None,
    ) -> torch.Tensor:
        """Predict query-vertex positions at every target time.

        Args:
            latent: (B, T, N, C) shape latents of the window's frames.
            framestep: (B, T) frame indices.
            source_alpha: (B,) normalised time of the frame the query mesh is at.
            target_alphas: (B, T_out) normalised target times in [0, 1].
            query: (B, V, 6) query vertices xyz (model space) + unit normals.
            chunk_size: vertices per query chunk (memory bound).

        Returns:
            (B, T_out, V, 3) float32 positions clamped to [-1, 1].

        Raises:
            ValueError: mismatched shapes.
        """
        if latent.ndim != 4:
            raise ValueError(f"latent must be (B, T, N, C), got {tuple(latent.shape)}")
        b, t = latent.shape[:2]
        if framestep.shape != (b, t):
            raise ValueError(f"framestep must be (B, T)=({b}, {t}), got {tuple(framestep.shape)}")
        if target_alphas.ndim != 2 or target_alphas.shape[0] != b:
            raise ValueError(f"target_alphas must be (B, T_out), got {tuple(target_alphas.shape)}")
        expected_q = self.config["in_channels"] + self.config["in_extra_channels"]
        if query.ndim != 3 or query.shape[0] != b or query.shape[-1] != expected_q:
            raise ValueError(f"query must be (B, V, {expected_q}) xyz + normal, got {tuple(query.shape)}")
        t_out = target_alphas.shape[1]
        context = self.encode_sequence(latent, framestep, source_alpha, target_alphas)
        out = self.decode_queries(context, query.repeat_interleave(t_out, dim=0), chunk_size)
        return out.reshape(b, t_out, query.shape[1], -1)
