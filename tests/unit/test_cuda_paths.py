"""The CUDA code paths: run on the CPU wherever they can (warp's kernels, the bf16 field, bf16 models), and the
checks only a GPU can run (marker ``cuda``; ``python3 -m pytest -m cuda``, run by ``benchmarks/gpu_check.sh``;
they skip without CUDA).  The first GPU run is then not the first run of this code.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from actionmesh_core.geometry.meshing import available_backends, sdf_surface_points, sdf_to_mesh, sdf_to_meshes
from test_geometry_meshing import _tiny_vae_field, mesh_key, thin_parts, torus_sdf, voxel
from tiny_models import tiny_denoiser

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_warp = pytest.mark.skipif("warp" not in available_backends("cpu"),
                                reason="warp-lang >= 1.19 is not installed (pip install warp-lang)")


def _two_fields(p):
    return torch.stack([thin_parts(6)(p), torus_sdf(0.55, 0.2)(p)])


# --------------------------------------------------------------------------- the CUDA paths, on the CPU


@needs_warp
def test_warp_marches_the_band_of_several_fields_with_thin_parts_as_scikit_image():
    """warp-lang's sparse marching cubes (the CUDA backend) on the CPU device: a batched band with a free
    plate and rods 1.5 voxels across gives scikit-image's surface, watertight where it should be."""
    ref = sdf_to_meshes(_two_fields, 2, octree_depth=3, refine_depth=6, backend="skimage")
    got = sdf_to_meshes(_two_fields, 2, octree_depth=3, refine_depth=6, backend="warp")
    for r, g in zip(ref, got):
        assert g.metadata["meshing"]["backend"] == "warp"
        assert len(g.faces) == len(r.faces) > 1000
        assert cKDTree(r.vertices).query(g.vertices)[0].max() < 1e-5
        assert cKDTree(g.vertices).query(r.vertices)[0].max() < 1e-5
    # the thin parts' ambiguous cubes may be split the other way (same vertices, volume within 0.1 %)
    assert got[0].volume == pytest.approx(ref[0].volume, rel=1e-3)
    assert got[1].volume == pytest.approx(ref[1].volume, rel=1e-4) and got[1].is_watertight


def test_attention_chain_decode_with_the_cuda_dtypes_on_the_cpu():
    """The CUDA pipeline's dtypes (bf16 denoiser, fp32 VAE): capture, candidates, tracking and skinning run."""
    import trimesh

    from actionmesh_core.attention_chain.capture import attention_chain_decode
    from actionmesh_core.attention_chain.pipeline import AttentionChainConfig
    from test_attention_chain_capture import _blob_vae

    den, vae = tiny_denoiser().to(torch.bfloat16), _blob_vae()
    sphere = trimesh.creation.icosphere(2, radius=0.5)
    ctx = torch.randn(5, 5, 12, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    anchor = torch.randn(10, 8, generator=torch.Generator().manual_seed(4))
    cfg = AttentionChainConfig(num_landmarks=40, k_nn=8, min_valid_fraction=0.01)
    result = attention_chain_decode(den, vae, ctx, anchor.to(torch.bfloat16), sphere.vertices, sphere.faces,
                                    anchor_frame=1, steps=4, window=4, slide=3, octree_depth=4, refine_depth=5,
                                    num_candidates=500, config=cfg, reinforce=True)
    pos = result.animation.positions
    assert pos.shape == (5, len(sphere.vertices), 3) and np.isfinite(pos).all()
    np.testing.assert_allclose(pos[1], sphere.vertices, atol=1e-6)
    assert set(result.timings) == {"stage1", "candidates", "correspondences", "skinning", "reinforcement"}
    assert all(v >= 0 for v in result.timings.values())


# --------------------------------------------------------------------------- GPU only


@pytest.mark.cuda
@needs_cuda
def test_surface_points_on_cuda_match_the_cpu():
    stats = {}
    cpu = sdf_surface_points(_two_fields, 2, octree_depth=3, refine_depth=6, precision="fp32")
    gpu = sdf_surface_points(_two_fields, 2, octree_depth=3, refine_depth=6, device="cuda", precision="fp32",
                             stats=stats)
    for c, g in zip(cpu, gpu):  # the same crossings (a grid value within rounding of 0 may flip: 0.1 % slack)
        assert g.device.type == "cuda" and abs(len(g) - len(c)) <= 0.001 * len(c)
        assert (cKDTree(c.numpy()).query(g.cpu().numpy())[0] < 1e-5).mean() > 0.999
    half = sdf_surface_points(_two_fields, 2, octree_depth=3, refine_depth=6, device="cuda")  # bf16 by default
    for c, g in zip(cpu, half):
        assert abs(len(g) - len(c)) <= 0.001 * len(c)
        assert (cKDTree(c.numpy()).query(g.cpu().numpy())[0] < 0.1 * voxel(6)).mean() > 0.999


@pytest.mark.cuda
@needs_cuda
def test_band_meshing_on_cuda_finds_the_thin_parts_as_the_cpu():
    """The CUDA half-precision path (bf16 field with fp32 near the level, warp marching cubes when installed) on
    the thin-part field: the same faces as the CPU's fp32 scikit-image band, which equals the dense grid (tested
    elsewhere)."""
    f = thin_parts(6)
    cpu = sdf_to_mesh(f, octree_depth=3, refine_depth=6, precision="fp32", backend="skimage")
    gpu = sdf_to_mesh(f, octree_depth=3, refine_depth=6, device="cuda", precision="bf16")
    st = gpu.metadata["meshing"]
    assert st["precision"] == "bfloat16"
    assert st["backend"] == ("warp" if "warp" in available_backends("cuda") else "skimage")
    assert abs(len(gpu.faces) - len(cpu.faces)) <= 0.001 * len(cpu.faces)
    assert (cKDTree(cpu.vertices).query(gpu.vertices)[0] < 0.1 * voxel(6)).mean() > 0.999
    fp32 = sdf_to_mesh(f, octree_depth=3, refine_depth=6, device="cuda", precision="fp32", backend="skimage")
    if len(fp32.faces) == len(cpu.faces):  # (a grid value within rounding of 0 could flip one cube)
        np.testing.assert_allclose(mesh_key(fp32), mesh_key(cpu), atol=1e-5)
    assert abs(len(fp32.faces) - len(cpu.faces)) <= 8


@pytest.mark.cuda
@needs_cuda
def test_tiny_vae_field_in_bf16_on_cuda_keeps_the_fp32_signs():
    field, inside = _tiny_vae_field()
    fp32 = sdf_to_mesh(field, inside=inside, octree_depth=4, refine_depth=6, precision="fp32")
    vae_field = field  # the VAE lives on the CPU here: move it with the points
    gpu = sdf_to_mesh(lambda p: vae_field(p.cpu()).to(p.device), inside=inside, octree_depth=4, refine_depth=6,
                      device="cuda", precision="fp32")
    assert len(gpu.faces) == len(fp32.faces)
    assert gpu.metadata["meshing"]["band_cells"] == fp32.metadata["meshing"]["band_cells"]


@pytest.mark.cuda
@needs_cuda
def test_attention_chain_decode_on_cuda_runs_on_the_models_device():
    import trimesh

    from actionmesh_core.attention_chain.capture import attention_chain_decode
    from actionmesh_core.attention_chain.pipeline import AttentionChainConfig
    from test_attention_chain_capture import _blob_vae

    den, vae = tiny_denoiser().cuda(), _blob_vae().cuda()
    sphere = trimesh.creation.icosphere(2, radius=0.5)
    ctx = torch.randn(5, 5, 12, generator=torch.Generator().manual_seed(3)).cuda()
    anchor = torch.randn(10, 8, generator=torch.Generator().manual_seed(4)).cuda()
    cfg = AttentionChainConfig(num_landmarks=40, k_nn=8, min_valid_fraction=0.01)
    kw = dict(anchor_frame=1, steps=4, window=4, slide=3, octree_depth=4, refine_depth=5, num_candidates=500,
              config=cfg)
    gpu = attention_chain_decode(den, vae, ctx, anchor, sphere.vertices, sphere.faces, reinforce=True, **kw)
    assert gpu.latents.device.type == "cuda" and np.isfinite(gpu.animation.positions).all()
    np.testing.assert_allclose(gpu.animation.positions[1], sphere.vertices, atol=1e-6)
    # without reinforcement the latents do not depend on the tracking: the same sampling as on the CPU
    plain = attention_chain_decode(den, vae, ctx, anchor, sphere.vertices, sphere.faces, **kw)
    cpu = attention_chain_decode(den.cpu(), vae.cpu(), ctx.cpu(), anchor.cpu(), sphere.vertices, sphere.faces, **kw)
    torch.testing.assert_close(plain.latents.cpu(), cpu.latents, atol=2e-3, rtol=2e-3)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("mode", ["stage2", "attention-chain"])
def test_cli_with_tiny_weights_on_cuda(tmp_path, fixtures_dir, mode):
    from actionmesh_core.cli import main
    from actionmesh_core.io.glb import read_animated_glb
    from actionmesh_core.weights import make_tiny_weights

    weights = make_tiny_weights(tmp_path / "w")
    out = tmp_path / "o.glb"
    code = main(["video-to-4d", str(fixtures_dir / "davis_camel"), "--weights", str(weights), "--out", str(out),
                 "--device", "cuda", "--mode", mode, "--fast", "--steps", "2", "--octree-depth", "5",
                 "--refine-depth", "7"])
    assert code == 0
    anim = read_animated_glb(out)
    assert anim.num_frames == 16 and np.isfinite(anim.vertices).all()


@pytest.mark.cuda
@needs_cuda
def test_sdpa_on_cuda_bf16_matches_the_explicit_softmax():
    """The CUDA attention path (SDPA's fused kernels in bf16; the CPU contiguous-query copy does not apply)."""
    from actionmesh_core import perf
    from actionmesh_core.models.attention import get_attention_backend, set_attention_backend
    from actionmesh_core.models.layers import Attention

    torch.manual_seed(0)
    attn = Attention(128, 2, qk_norm=True).eval().cuda().to(torch.bfloat16)
    x = torch.randn(2, 300, 128, device="cuda", dtype=torch.bfloat16)
    prev = get_attention_backend()
    try:
        with torch.no_grad():
            set_attention_backend("sdpa")
            fast = attn(x)
            with perf.perf_flags(contiguous_query=True):  # a CPU-only copy: no effect on CUDA
                assert torch.equal(attn(x), fast)
            set_attention_backend("math")
            ref = attn(x)
    finally:
        set_attention_backend(prev)
    torch.testing.assert_close(fast.float(), ref.float(), atol=5e-2, rtol=5e-2)
