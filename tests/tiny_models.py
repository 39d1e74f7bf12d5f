"""Small random-weight models for sampler/loader tests (sizes unrelated to the parity set)."""
from __future__ import annotations

import torch

from actionmesh_core.models import TemporalAutoencoder, TemporalDenoiser, TripoSGDiT, TripoSGVAE


def tiny_denoiser(seed=0, **over):
    torch.manual_seed(seed)
    cfg = dict(in_channels=8, width=32, num_layers=3, num_attention_heads=2, cross_attention_dim=12,
               inflated_layers=[0, 2])
    cfg.update(over)
    return TemporalDenoiser(**cfg).eval()


def tiny_autoencoder(seed=0, **over):
    torch.manual_seed(seed)
    cfg = dict(latent_channels=8, width=32, num_layers=2, num_attention_heads=2, embed_frequency=3)
    cfg.update(over)
    return TemporalAutoencoder(**cfg).eval()


def tiny_vae(seed=0, **over):
    torch.manual_seed(seed)
    cfg = dict(latent_channels=8, num_attention_heads=2, width_encoder=32, width_decoder=32,
               num_layers_encoder=1, num_layers_decoder=1, embed_frequency=3)
    cfg.update(over)
    return TripoSGVAE(**cfg).eval()


def tiny_dit(seed=0, **over):
    torch.manual_seed(seed)
    cfg = dict(in_channels=8, width=32, num_layers=3, num_attention_heads=2, cross_attention_dim=12)
    cfg.update(over)
    return TripoSGDiT(**cfg).eval()
