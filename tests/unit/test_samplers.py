"""Samplers on tiny random models: masking, determinism, windows, guidance, cancellation."""
from __future__ import annotations

import pytest
import torch

from actionmesh_core.models.layers import get_attention_backend, set_attention_backend
from actionmesh_core.sampling import SamplingCancelled, triposg_sigmas
from actionmesh_core.sampling.common import seeded_noise
from actionmesh_core.sampling.stage1 import masked_flow_sampling, sample_stage1
from actionmesh_core.geometry.reference import query_normals
from actionmesh_core.sampling.stage2 import decode_stage2
from actionmesh_core.sampling.triposg import sample_image_to_3d
from tiny_models import tiny_autoencoder, tiny_denoiser, tiny_dit

N, C, S, DC = 6, 8, 5, 12


def _context(t, seed=1):
    return torch.randn(t, S, DC, generator=torch.Generator().manual_seed(seed))


def test_stage1_long_clip_keeps_sources_and_is_deterministic():
    den = tiny_denoiser()
    ctx = _context(20)
    anchor = torch.randn(N, C)
    extra = torch.randn(N, C)
    out = sample_stage1(den, ctx, {3: anchor, 12: extra}, steps=3, window=8, slide=7, seed=5)
    assert out.shape == (20, N, C) and torch.isfinite(out).all()
    assert torch.equal(out[3], anchor) and torch.equal(out[12], extra)
    again = sample_stage1(den, ctx, {3: anchor, 12: extra}, steps=3, window=8, slide=7, seed=5)
    assert torch.equal(out, again)
    other = sample_stage1(den, ctx, {3: anchor, 12: extra}, steps=3, window=8, slide=7, seed=6)
    assert (other - out).abs().max() > 1e-3


def test_stage1_single_window_equals_masked_sampling():
    den = tiny_denoiser()
    ctx = _context(5)
    anchor = torch.randn(N, C)
    out = sample_stage1(den, ctx, {0: anchor}, steps=4, seed=2)
    init = seeded_noise((5, N, C), 2)
    init[0] = anchor
    mask = torch.tensor([[1.0, 0, 0, 0, 0]])
    ref = masked_flow_sampling(den, init[None], mask, ctx[None], torch.arange(5.0)[None], steps=4)
    torch.testing.assert_close(out, ref[0])


def test_cfg_batch_split_and_guidance_one():
    den = tiny_denoiser()
    ctx = _context(4)[None]
    init = torch.randn(1, 4, N, C)
    mask = torch.tensor([[1.0, 0, 0, 0]])
    fs = torch.arange(4.0)[None]
    a = masked_flow_sampling(den, init, mask, ctx, fs, steps=3)
    b = masked_flow_sampling(den, init, mask, ctx, fs, steps=3, cfg_batch_split=True)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    c = masked_flow_sampling(den, init, mask, ctx, fs, steps=3, guidance_scale=1.0)
    assert (a - c).abs().max() > 1e-4, "guidance must change the result"


def test_noise_correlation():
    full = seeded_noise((4, 50, 3), 0, correlation=1.0)
    assert torch.allclose(full[0], full[3])
    partial = seeded_noise((4, 2000, 3), 0, correlation=0.5)
    corr = torch.corrcoef(torch.stack([partial[0].flatten(), partial[1].flatten()]))[0, 1]
    assert 0.4 < corr < 0.6
    assert partial.std().item() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        seeded_noise((2, 3), 0, correlation=1.5)


def test_callback_progress_and_cancel():
    den = tiny_denoiser()
    seen = []
    sample_stage1(den, _context(3), {0: torch.randn(N, C)}, steps=2, callback=lambda info: seen.append(info))
    assert [i["step"] for i in seen] == [1, 2] and seen[0]["stage"] == "stage1" and seen[0]["num_windows"] == 1
    with pytest.raises(SamplingCancelled):
        sample_stage1(den, _context(3), {0: torch.randn(N, C)}, steps=5, callback=lambda info: info["step"] < 2)


def test_stage1_bad_inputs():
    den = tiny_denoiser()
    with pytest.raises(ValueError, match="at least one source"):
        sample_stage1(den, _context(3), {})
    with pytest.raises(ValueError, match="outside"):
        sample_stage1(den, _context(3), {5: torch.randn(N, C)})
    with pytest.raises(ValueError, match="width"):
        sample_stage1(den, torch.randn(3, S, 7), {0: torch.randn(N, C)})


def _mesh():
    verts = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return verts, faces


def test_query_normals_point_outward():
    verts, faces = _mesh()
    n = query_normals(verts, faces)
    centroid = verts.mean(0)
    assert ((n * (verts - centroid)).sum(-1) > 0).all()
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(4))


def test_stage2_windows_batched_equals_plain():
    ae = tiny_autoencoder()
    verts, faces = _mesh()
    query = torch.cat([verts, query_normals(verts, faces)], -1)
    lat = torch.randn(11, N, C)
    a = decode_stage2(ae, lat, query, faces=faces, anchor_frame=4, window=6, slide=5)
    b = decode_stage2(ae, lat, query, faces=faces, anchor_frame=4, window=6, slide=5, batch_targets=False,
                      chunk_size=2)
    assert a.shape == (11, 4, 3)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(a[4], verts), "the anchor frame keeps the reference vertices"
    assert (a.abs() <= 1).all()


def test_triposg_sampler():
    dit = tiny_dit()
    ctx = torch.randn(1, S, DC)
    a = sample_image_to_3d(dit, ctx, steps=3, num_tokens=10, seed=1)
    b = sample_image_to_3d(dit, ctx, steps=3, num_tokens=10, seed=1)
    assert a.shape == (1, 10, C) and torch.equal(a, b)
    sig = triposg_sigmas(4, 3.0)
    assert sig[0] == 1.0 and sig[-1] == 0.0 and (sig[:-1] > sig[1:]).all()
    with pytest.raises(ValueError, match="width"):
        sample_image_to_3d(dit, torch.randn(1, S, 5), steps=1)


def test_attention_backends_agree():
    den = tiny_denoiser()
    args = (torch.randn(1, 3, N, C), _context(3)[None], torch.arange(3.0)[None], torch.tensor([500.0]),
            torch.tensor([[1.0, 0, 0]]))
    prev = get_attention_backend()
    try:
        set_attention_backend("sdpa")
        a = den(*args)
        set_attention_backend("math")
        b = den(*args)
    finally:
        set_attention_backend(prev)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        set_attention_backend("cudnn-magic")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available (flash-attn/bf16 path needs a GPU)")
def test_flash_attention_matches_sdpa_on_cuda():
    from actionmesh_core.models.layers import flash_attention_available

    if not flash_attention_available():
        pytest.skip("flash-attn is not installed")
    den = tiny_denoiser(width=128, num_attention_heads=2).cuda().to(torch.bfloat16)
    args = (torch.randn(1, 3, N, C).cuda(), _context(3)[None].cuda(), torch.arange(3.0)[None].cuda(),
            torch.tensor([500.0]).cuda(), torch.tensor([[1.0, 0, 0]]).cuda())
    prev = get_attention_backend()
    try:
        set_attention_backend("flash")
        a = den(*args).float()
        set_attention_backend("sdpa")
        b = den(*args).float()
    finally:
        set_attention_backend(prev)
    torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)
