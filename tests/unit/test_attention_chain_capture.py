"""Attention capture inside the frozen models: exact probabilities, outputs unchanged."""
from __future__ import annotations

import numpy as np
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


def test_row_bias_adds_to_the_logits_of_chosen_rows_only():
    from actionmesh_core.models.layers import Attention

    torch.manual_seed(0)
    attn = Attention(16, 2, qk_norm=True).eval()
    x = torch.randn(1, 7, 16)
    plain = attn(x)
    attn.row_bias = (2, torch.zeros(3, 7))
    torch.testing.assert_close(attn(x), plain)
    # -inf on key 0 for rows 2..4: those rows equal attention over keys 1..6 only
    bias = torch.zeros(3, 7)
    bias[:, 0] = float("-inf")
    attn.row_bias = (2, bias)
    out = attn(x)
    torch.testing.assert_close(out[:, :2], plain[:, :2])
    torch.testing.assert_close(out[:, 5:], plain[:, 5:])
    h, d = attn.heads, attn.head_dim
    qkv = torch.cat([attn.to_q(x), attn.to_k(x), attn.to_v(x)], -1).view(1, 7, h, 3 * d)
    q, k, v = (t.transpose(1, 2) for t in qkv.split(d, -1))
    q, k = attn.norm_q(q), attn.norm_k(k)
    probs = torch.softmax(q[:, :, 2:5] @ k[:, :, 1:].transpose(-1, -2) / d ** 0.5, -1)
    expected = attn.to_out[0]((probs @ v[:, :, 1:]).transpose(1, 2).reshape(1, 3, 16))
    torch.testing.assert_close(out[:, 2:5], expected, rtol=1e-5, atol=1e-6)
    attn.row_bias = (2, torch.zeros(3, 9))  # other key length: not applied
    torch.testing.assert_close(attn(x), plain)


def _blob_vae():
    """Tiny VAE whose field crosses zero (so every latent has a surface to mesh)."""
    from actionmesh_core.weights import _calibrate_vae

    vae = tiny_vae()
    _calibrate_vae(vae, 10, 8)
    return vae


@pytest.mark.parametrize("reinforce", [False, True])
def test_attention_chain_decode_on_tiny_models(reinforce):
    import trimesh

    from actionmesh_core.attention_chain.capture import attention_chain_decode
    from actionmesh_core.attention_chain.pipeline import AttentionChainConfig

    den, vae = tiny_denoiser(), _blob_vae()
    sphere = trimesh.creation.icosphere(2, radius=0.5)
    ctx = torch.randn(5, 5, 12, generator=torch.Generator().manual_seed(3))
    anchor = torch.randn(10, 8, generator=torch.Generator().manual_seed(4))
    cfg = AttentionChainConfig(num_landmarks=40, k_nn=8, min_valid_fraction=0.01)
    result = attention_chain_decode(den, vae, ctx, anchor, sphere.vertices, sphere.faces, anchor_frame=1, steps=4,
                                    window=4, slide=3, octree_depth=4, refine_depth=5, num_candidates=500,
                                    reinforce=reinforce, config=cfg)
    pos = result.animation.positions
    assert pos.shape == (5, len(sphere.vertices), 3) and np.isfinite(pos).all()
    np.testing.assert_allclose(pos[1], sphere.vertices, atol=1e-6)
    assert torch.equal(result.latents[1], anchor)
    assert all(m.row_bias is None for m in (den.blocks[0].sub("s_attn"), den.blocks[2].sub("s_attn")))
    if reinforce:
        plain = attention_chain_decode(den, vae, ctx, anchor, sphere.vertices, sphere.faces, anchor_frame=1,
                                       steps=4, window=4, slide=3, octree_depth=4, refine_depth=5,
                                       num_candidates=500, config=cfg)
        assert (plain.latents - result.latents).abs().max() > 1e-6, "reinforcement changes the sampling"


def test_reinforcement_follows_the_matched_candidate_not_the_chain_argmax():
    """§4.3: the pair behind a match is the frame token carrying most of the *score* (chain x matched candidate),
    here token 1, although the chain alone peaks on token 0; the anchor token is the one carrying most of the
    transport to token 1 (token 2), not the landmark's own argmax (token 0).  The window's logit bias puts log(gain)
    exactly at (t, frame j, 1 + t'), and nowhere else."""
    from types import SimpleNamespace

    from actionmesh_core.attention_chain.capture import _reinforcement_bias
    from actionmesh_core.attention_chain.reinforcement import trace_token_pairs

    a_va_za = torch.tensor([[0.5, 0.1, 0.4], [0.1, 0.8, 0.1]])          # 2 landmarks over 3 anchor tokens
    m = torch.tensor([[0.9, 0.05, 0.05],                                # anchor token 0 -> frame token 0
                      [0.1, 0.1, 0.8],                                  # anchor token 1 -> frame token 2
                      [0.1, 0.8, 0.1]])                                 # anchor token 2 -> frame token 1
    chained = a_va_za @ m                                               # landmark 0: [0.50, 0.35, 0.15]
    assert int(chained[0].argmax()) == 0
    candidates = torch.tensor([[0.05, 0.9, 0.05],                       # candidate 0: frame token 1
                               [0.1, 0.1, 0.8]])                        # candidate 1: frame token 2
    pairs = trace_token_pairs(a_va_za, m, candidates)
    assert pairs.tolist() == [[2, 1], [1, 2]]
    # the same through the decoder's bias of a 3-frame window (source frame 0): frames 1 and 2 matched
    maps = torch.stack([torch.eye(3), m, m])
    tracks = SimpleNamespace(best_index=np.array([[-1, -1], [0, 1], [1, 0]]),
                             confidence=np.array([[1.0, 1.0], [0.6, 0.2], [0.3, 0.3]]))
    bias = _reinforcement_bias(tracks, a_va_za, maps, lambda j: candidates, src_local=0, num_tokens=3)
    bias = bias.reshape(3, 3, 4)                                        # (anchor token, frame, 1 + frame token)
    expected = torch.zeros(3, 3, 4)
    expected[2, 1, 1 + 1] = np.log(0.6 / 0.4)                           # frame 1: landmark 0 -> pair (2, 1)
    expected[1, 1, 1 + 2] = np.log(0.2 / 0.4)                           #          landmark 1 -> pair (1, 2)
    pairs2 = trace_token_pairs(a_va_za, m, candidates[[1, 0]])          # frame 2: the candidates swapped
    for (t, tf) in pairs2.tolist():
        expected[t, 2, 1 + tf] = 0.0                                    # equal confidences: gain 1
    torch.testing.assert_close(bias, expected)
    assert pairs2.tolist() != pairs.tolist()


def test_candidates_are_each_frames_edge_crossings(monkeypatch):
    """Candidate surface points: one band extraction per frame of the window, at the chosen resolution (2^7
    cells), on the VAE's device; each candidate on its frame's zero level; subsampled to ``num_candidates``
    deterministically."""
    import inspect

    import actionmesh_core.geometry.meshing as meshing
    from actionmesh_core.attention_chain import capture

    assert capture.CANDIDATE_DEPTH == 7
    params = inspect.signature(capture.attention_chain_decode).parameters
    assert params["refine_depth"].default == capture.CANDIDATE_DEPTH
    assert params["octree_depth"].default == capture.CANDIDATE_COARSE_DEPTH
    vae = _blob_vae()
    latents = torch.randn(3, 10, 8, generator=torch.Generator().manual_seed(5))
    calls = []
    real = meshing.sdf_surface_points
    monkeypatch.setattr(meshing, "sdf_surface_points", lambda *a, **k: calls.append((a[1], k)) or real(*a, **k))
    cands = capture._candidate_points(vae, latents, [4, 5, 6], 5, 4, 6, 400, np.random.default_rng(0))
    assert [c[0] for c in calls] == [1, 1, 1] and all(c[1]["refine_depth"] == 6 for c in calls)
    assert calls[0][1]["min_points"] == 200  # a coarser grid ends a frame's band once it has 200 crossings
    again = capture._candidate_points(vae, latents, [4, 5, 6], 5, 4, 6, 400, np.random.default_rng(0))
    anywhere = torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(6)) * 2 - 1
    for j, f in enumerate([4, 5, 6]):
        pts = cands[f]
        assert isinstance(pts, torch.Tensor) and pts.device == next(vae.parameters()).device
        assert 0 < len(pts) <= 400 and torch.equal(pts, again[f])
        values = vae.decode(latents[j:j + 1], pts[None])[0, :, 0].abs()
        typical = vae.decode(latents[j:j + 1], anywhere)[0, :, 0].abs().median()
        assert values.max() < 0.01 * typical  # on the zero level (linear interpolation along a grid edge)


@pytest.mark.parametrize("num_candidates", [10**9, 4000], ids=["full depth", "stopped at a coarser level"])
def test_per_frame_candidates_equal_the_batched_bands_crossings(num_candidates):
    """One band per frame (cheaper: a batched band evaluates every field on the union of the frames' bands) gives
    the candidates of the batched band of all the window's fields (the candidates before, 2026-12-04), point for
    point (float32 rounding aside: the field's GEMMs block a batch of 1 and of 4 differently): to the finest grid,
    and with the band ended at a coarser level by ``min_points``."""
    from actionmesh_core.attention_chain import capture
    from actionmesh_core.geometry.meshing import sdf_surface_points

    vae = _blob_vae()
    latents = torch.randn(4, 10, 8, generator=torch.Generator().manual_seed(7))  # four different surfaces
    stats = {}
    batched = sdf_surface_points(vae.field_fn(latents), 4, octree_depth=3, refine_depth=6, inside=vae.inside_sign,
                                 min_points=num_candidates // 2, stats=stats)
    assert stats["depth"] == (6 if num_candidates > 10**6 else 5)
    got = capture._candidate_points(vae, latents, [0, 1, 2, 3], 0, 3, 6, num_candidates, np.random.default_rng(0))
    if num_candidates < 10**6:
        assert all(len(p) <= num_candidates for p in got.values())
        batched = [b if len(b) <= num_candidates else None for b in batched]
    for f in range(4):
        if batched[f] is not None:
            assert got[f].shape == batched[f].shape
            torch.testing.assert_close(got[f], batched[f], rtol=0, atol=1e-4)  # voxel: 0.03
