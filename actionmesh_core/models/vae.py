"""TripoSG shape VAE: point-cloud encoder and SDF decoder.

release: third_party/TripoSG/triposg/models/autoencoders/autoencoder_kl_triposg.py, ``TripoSGVAEModel._encode``,
``TripoSGVAEModel._decode``, ``TripoSGDecoder.forward``; the encoder's query points: release:
actionmesh/external/triposg.py, ``TripoSGVAE._sample_features``.

Shape legend: B batch, P surface points, M latent tokens (query points),
C latent channels, Q field query points, W width.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

from ..perf import FLAGS as _PERF
from ..perf import query_chunk_points
from .layers import FP32LayerNorm, TransformerBlock, fourier_point_embedding

__all__ = ["TripoSGVAE"]


class _Encoder(nn.Module):
    def __init__(self, embed_dim: int, width: int, heads: int, num_layers: int):
        super().__init__()
        self.proj_in = nn.Linear(embed_dim, width)
        names = TransformerBlock.TRIPOSG_NAMES
        self.blocks = nn.ModuleList(
            [TransformerBlock(width, heads, names, context_dim=width, self_attention=False, norm_cross=True)]
            + [TransformerBlock(width, heads, names) for _ in range(num_layers)]
        )
        self.norm_out = FP32LayerNorm(width, eps=1e-5)


class _Decoder(nn.Module):
    def __init__(self, embed_dim: int, width: int, heads: int, num_layers: int):
        super().__init__()
        names = TransformerBlock.TRIPOSG_NAMES
        self.blocks = nn.ModuleList(
            [TransformerBlock(width, heads, names) for _ in range(num_layers)]
            + [TransformerBlock(width, heads, names, context_dim=width, self_attention=False, norm_cross=True)]
        )
        self.proj_query = nn.Linear(embed_dim, width)
        self.norm_out = FP32LayerNorm(width, eps=1e-5)
        self.proj_out = nn.Linear(width, 1)


class TripoSGVAE(nn.Module):
    """TripoSG shape VAE (``TripoSG/vae``).

    Args (keys of the released ``config.json``): in_channels (3, xyz),
    latent_channels C (64), num_attention_heads (8), width_encoder (512),
    width_decoder (1024), num_layers_encoder (8), num_layers_decoder (16),
    embedding_type ("frequency" only), embed_frequency F (8),
    embed_include_pi (false).

    The decoder output is a signed field whose zero level set is the surface;
    :attr:`inside_sign` tells which sign is inside (``"positive"``: the decoder
    output is negated, so inside > 0 as in TripoSG's extraction).
    """

    family = "triposg_vae"
    inside_sign = "positive"

    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 64,
        num_attention_heads: int = 8,
        width_encoder: int = 512,
        width_decoder: int = 1024,
        num_layers_encoder: int = 8,
        num_layers_decoder: int = 16,
        embedding_type: str = "frequency",
        embed_frequency: int = 8,
        embed_include_pi: bool = False,
    ):
        super().__init__()
        if embedding_type != "frequency":
            raise ValueError(f"TripoSGVAE: only embedding_type='frequency' is supported, got {embedding_type!r}")
        self.config: Dict[str, Any] = dict(
            in_channels=in_channels, latent_channels=latent_channels, num_attention_heads=num_attention_heads,
            width_encoder=width_encoder, width_decoder=width_decoder, num_layers_encoder=num_layers_encoder,
            num_layers_decoder=num_layers_decoder, embedding_type=embedding_type,
            embed_frequency=embed_frequency, embed_include_pi=embed_include_pi,
        )
        point_dim = in_channels * (2 * embed_frequency + 1)
        self.encoder = _Encoder(point_dim + 3, width_encoder, num_attention_heads, num_layers_encoder)
        self.decoder = _Decoder(point_dim, width_decoder, num_attention_heads, num_layers_decoder)
        self.quant = nn.Linear(width_encoder, 2 * latent_channels)
        self.post_quant = nn.Linear(latent_channels, width_decoder)

    def _embed(self, xyz: torch.Tensor) -> torch.Tensor:
        return fourier_point_embedding(xyz, self.config["embed_frequency"], self.config["embed_include_pi"])

    def encode(self, surface: torch.Tensor, query_points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Posterior of the shape latent.

        Args:
            surface: (B, P, 6) surface samples xyz + unit normal (keys/values).
            query_points: (B, M, 6) chosen surface samples xyz + normal (the
                latent tokens' queries; 2048 FPS points at inference).

        Returns:
            mean, logvar: (B, M, C) each; logvar clamped to [-30, 20].

        Raises:
            ValueError: inputs not (B, *, 6) or batch mismatch.
        """
        for name, t in (("surface", surface), ("query_points", query_points)):
            if t.ndim != 3 or t.shape[-1] != 6:
                raise ValueError(f"{name} must be (B, P, 6) xyz + normal, got {tuple(t.shape)}")
        if surface.shape[0] != query_points.shape[0]:
            raise ValueError("surface and query_points must have the same batch size")
        dtype = self.quant.weight.dtype
        enc = self.encoder

        def tokens(p: torch.Tensor) -> torch.Tensor:
            feats = torch.cat([self._embed(p[..., :3].float()), p[..., 3:].float()], dim=-1)
            return enc.proj_in(feats.to(dtype))

        x = enc.blocks[0](tokens(query_points), context=tokens(surface))
        for blk in enc.blocks[1:]:
            x = blk(x)
        moments = self.quant(enc.norm_out(x))
        mean, logvar = moments.float().chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    def sample_posterior(self, mean: torch.Tensor, logvar: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw ``mean + exp(logvar/2)·eps`` (eps from ``generator``, made on CPU for reproducibility)."""
        eps = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device)
        return mean + torch.exp(0.5 * logvar) * eps

    def decode_tokens(self, latent: torch.Tensor) -> torch.Tensor:
        """``post_quant`` + decoder self-attention: (B, M, C) -> (B, M, W_dec) key/value tokens."""
        x = self.post_quant(latent.to(self.post_quant.weight.dtype))
        for blk in self.decoder.blocks[:-1]:
            x = blk(x)
        return x

    def query_field(self, tokens: torch.Tensor, points: torch.Tensor, chunk_size: Optional[int] = None) -> torch.Tensor:
        """Field values at query points from :meth:`decode_tokens` output.

        Args:
            tokens: (B, M, W_dec). points: (B, Q, 3) in [-1.005, 1.005]^3 or (Q, 3) shared.
            chunk_size: points per chunk (bounds memory: 10^7 points fit); ``None``:
                :func:`~actionmesh_core.perf.query_chunk_points` (on CUDA 2^16 for one latent,
                fewer for a batch: 1 GiB per activation; cache-sized on the CPU). The values do
                not depend on it (float32 rounding aside).

        Returns:
            (B, Q) float32 field (negated decoder output; zero level = surface).

        The tokens' keys/values are projected once for all chunks (``perf``
        flag ``cache_cross_kv``; plain path: per chunk); with ``static_chunks``
        the last chunk is zero-padded to ``chunk_size`` when there are several.
        """
        dec = self.decoder
        cross = dec.blocks[-1]
        kv = cross.sub("x_attn").project_kv(tokens) if _PERF.cache_cross_kv else None
        b = tokens.shape[0]
        if chunk_size is None:
            chunk_size = query_chunk_points(tokens.device, b * cross.sub("ff").net[0].proj.out_features)
        if points.ndim == 2:
            points = points[None].expand(b, -1, -1)
        total = points.shape[1]
        outs = []
        for start in range(0, total, chunk_size):
            p = points[:, start:start + chunk_size].to(tokens.device)
            size = p.shape[1]
            if _PERF.static_chunks and total > chunk_size and size < chunk_size:
                p = torch.cat([p, p.new_zeros(p.shape[0], chunk_size - size, p.shape[2])], dim=1)
            q = dec.proj_query(self._embed(p.float()).to(tokens.dtype))
            chunk_kv = kv if kv is not None else cross.sub("x_attn").project_kv(tokens)
            h = dec.proj_out(dec.norm_out(cross(q, kv=chunk_kv)))
            outs.append(-h[:, :size, 0].float())
        return torch.cat(outs, dim=1)

    def decode(self, latent: torch.Tensor, points: torch.Tensor, chunk_size: Optional[int] = None) -> torch.Tensor:
        """SDF decoder: field values at arbitrary points.

        Args:
            latent: (B, M, C) shape latent. points: (B, Q, 3).

        Returns:
            (B, Q, 1) float32 field values: the negated decoder output (release:
            third_party/TripoSG/triposg/models/autoencoders/autoencoder_kl_triposg.py, ``TripoSGDecoder.forward``).
        """
        if latent.ndim != 3:
            raise ValueError(f"latent must be (B, M, C), got {tuple(latent.shape)}")
        if points.shape[-1] != 3:
            raise ValueError(f"points must be (B, Q, 3), got {tuple(points.shape)}")
        return self.query_field(self.decode_tokens(latent), points, chunk_size)[..., None]

    def field_fn(self, latents: torch.Tensor, chunk_size: Optional[int] = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """A field callable for SDF meshing of several latents at once.

        Args:
            latents: (B, M, C), e.g. one latent per frame.

        Returns:
            ``f(points (Q, 3)) -> (B, Q)`` float32; inside is :attr:`inside_sign`.
        """
        with torch.no_grad():
            tokens = self.decode_tokens(latents)

        def field(points: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self.query_field(tokens, points.to(tokens.device), chunk_size)

        return field
