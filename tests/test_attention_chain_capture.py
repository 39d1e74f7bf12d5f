"""Attention capture inside the frozen models: exact probabilities, outputs unchanged."""
from __future__ import annotations

import pytest
import torch

from actionmesh_core.attention_chain.capture import DenoiserTokenAttention, vae_point_attention
from actionmesh_core.models.layers import fourier_point_embedding
from actionmesh_core.sampling.stage1 import masked_flow_sampling
from tiny_models import tiny_denoiser, tiny_vae


def test_vae_point_attention_matches_explicit_softmax():
    vae = tiny_vae()
    latent = torch.randn(1, 10, 8)
    points = torch.rand(37, 3) * 2 - 1
    probs = vae_point_attention(vae, latent, points, chunk_size=16)
    assert probs.shape == (37, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(37))
    # independent recomputation from the module weights (no fused split for the query)
    dec = vae.decoder
    cross = dec.blocks[-1]
    attn = cross.sub("x_attn")
    tokens = vae.decode_tokens(latent)
    ctx = attn.norm_cross(tokens)
    kv = ctx @ torch.cat([attn.to_k.weight, attn.to_v.weight]).T
    h, d = attn.heads, attn.head_dim
    k = kv.view(1, 10, h, 2 * d)[..., :d].transpose(1, 2)
    emb = fourier_point_embedding(points, vae.config["embed_frequency"])
    q = attn.to_q(cross.sub("norm_x")(dec.proj_query(emb)))[None].view(1, 37, h, d).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1).mean(1)[0]
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)


def test_denoiser_capture_leaves_sampling_unchanged_and_rows_normalised():
    den = tiny_denoiser()
    t, n = 4, 6
    init = torch.randn(1, t, n, 8)
    mask = torch.tensor([[0.0, 1, 0, 0]])
    ctx = torch.randn(1, t, 5, 12)
    fs = torch.arange(t, dtype=torch.float32)[None]
    plain = masked_flow_sampling(den, init, mask, ctx, fs, steps=3)
    cap = DenoiserTokenAttention(den)
    assert cap.layers == [0, 2]
    with cap.window(t, n, source_local=1):
        cap.active = True
        hooked = masked_flow_sampling(den, init, mask, ctx, fs, steps=3)
    assert torch.equal(plain, hooked)
    maps = cap.result()
    assert maps.shape == (t, n, n)
    torch.testing.assert_close(maps.sum(-1), torch.ones(t, n))
    assert all(m.capture is None for m in cap.modules), "hooks are removed after the window"


def test_capture_rejects_non_inflated_layer():
    with pytest.raises(ValueError, match="not inflated"):
        DenoiserTokenAttention(tiny_denoiser(), layers=[1])
