"""Plain vs optimised paths (issue #5): same outputs, switches that restore, analytic FLOPs.

Tiny random models only; every test runs in well under a second. The analytic
FLOPs are the library's (``actionmesh_core.perf_model``, which
``benchmarks/bench_pipeline.py`` reports); the benchmark script itself runs in
``tests/integration/test_benchmark_scripts.py``.
"""
from __future__ import annotations

import json
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from actionmesh_core import perf, perf_model
from actionmesh_core.models.attention import active_attention_backend, get_attention_backend, set_attention_backend
from actionmesh_core.models.compile import compile_blocks, uncompile_blocks
from actionmesh_core.models.dino import DinoV2Encoder
from actionmesh_core.sampling.stage1 import masked_flow_sampling
from actionmesh_core.sampling.stage2 import decode_stage2
from actionmesh_core.sampling.triposg import sample_image_to_3d
import data_dirs
from tiny_models import tiny_autoencoder, tiny_denoiser, tiny_dit, tiny_vae

ROOT = data_dirs.REPO_ROOT
N, C, S, DC = 6, 8, 5, 12
FLAG_OFF = [dict(cache_cross_kv=False), dict(fused_qkv=False), dict(batch_targets=False), dict(token_major=False)]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _stage1_inputs(t=4):
    init = torch.randn(1, t, N, C, generator=_gen(1))
    mask = torch.zeros(1, t)
    mask[0, 0] = 1
    ctx = torch.randn(1, t, S, DC, generator=_gen(2))
    return init, mask, ctx, torch.arange(float(t))[None]


def _sphere_query(v=30):
    q = perf_model.sphere_query(v)
    return q


@pytest.fixture(autouse=True)
def _restore_flags():
    before = perf.get_flags().__dict__.copy()
    backend = get_attention_backend()
    yield
    perf.set_flags(**before)
    set_attention_backend(backend)


# --------------------------------------------------------------------------- same outputs


def test_plain_and_optimised_stage1_agree_and_token_major_is_bitwise():
    den = tiny_denoiser()
    args = _stage1_inputs()
    opt = masked_flow_sampling(den, *args, steps=3)
    with perf.plain_mode():
        plain = masked_flow_sampling(den, *args, steps=3)
    torch.testing.assert_close(opt, plain, rtol=1e-5, atol=1e-5)
    with perf.perf_flags(token_major=False):
        other_layout = masked_flow_sampling(den, *args, steps=3)
    assert torch.equal(opt, other_layout), "the token-major QK norm/RoPE layout must not change a single bit"


@pytest.mark.parametrize("off", FLAG_OFF, ids=lambda d: next(iter(d)))
def test_each_switch_keeps_the_denoiser_and_samplers_exact(off):
    den, dit = tiny_denoiser(), tiny_dit()
    args = _stage1_inputs()
    ctx0 = torch.randn(1, S, DC, generator=_gen(3))
    ref1 = masked_flow_sampling(den, *args, steps=2)
    ref0 = sample_image_to_3d(dit, ctx0, steps=2, num_tokens=7)
    with perf.perf_flags(**off):
        out1 = masked_flow_sampling(den, *args, steps=2)
        out0 = sample_image_to_3d(dit, ctx0, steps=2, num_tokens=7)
    torch.testing.assert_close(out1, ref1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out0, ref0, rtol=1e-5, atol=1e-5)


def test_plain_and_optimised_stage2_agree():
    ae = tiny_autoencoder()
    lat = torch.randn(7, N, C, generator=_gen(4))
    query = _sphere_query(23)
    opt = decode_stage2(ae, lat, query, chunk_size=10)
    with perf.plain_mode():
        plain = decode_stage2(ae, lat, query, chunk_size=10)
    with perf.perf_flags(target_batch=100):  # all six targets in one pass
        batched = decode_stage2(ae, lat, query, chunk_size=10, batch_targets=True)
    assert opt.shape == (7, 23, 3)
    torch.testing.assert_close(opt, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(opt[0], query[:, :3]), "the anchor frame keeps the query vertices"
    assert (opt[1:] - query[:, :3]).abs().max() > 1e-3, "targets must move (the test would be vacuous)"


def test_target_batch_groups_and_static_chunks_are_exact():
    ae, vae = tiny_autoencoder(), tiny_vae()
    lat = torch.randn(9, N, C, generator=_gen(5))
    query = _sphere_query(23)
    ref = decode_stage2(ae, lat, query, chunk_size=10)
    with perf.perf_flags(target_batch=3, static_chunks=True):
        grouped = decode_stage2(ae, lat, query, chunk_size=10)
    torch.testing.assert_close(grouped, ref, rtol=1e-6, atol=1e-6)
    latent = torch.randn(1, N, C, generator=_gen(6))
    pts = torch.rand(1, 50, 3, generator=_gen(7)) * 2 - 1
    field = vae.decode(latent, pts, chunk_size=16)
    with perf.perf_flags(static_chunks=True):
        padded = vae.decode(latent, pts, chunk_size=16)
    with perf.plain_mode():
        plain = vae.decode(latent, pts, chunk_size=16)
    torch.testing.assert_close(padded, field, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(plain, field, rtol=1e-5, atol=1e-6)


def test_cfg_split_flag_is_the_default_of_both_samplers():
    den, dit = tiny_denoiser(), tiny_dit()
    args = _stage1_inputs()
    ctx0 = torch.randn(1, S, DC, generator=_gen(8))
    a1, a0 = masked_flow_sampling(den, *args, steps=2), sample_image_to_3d(dit, ctx0, steps=2, num_tokens=7)
    with perf.perf_flags(cfg_batch_split=True):
        b1, b0 = masked_flow_sampling(den, *args, steps=2), sample_image_to_3d(dit, ctx0, steps=2, num_tokens=7)
    torch.testing.assert_close(a1, b1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a0, b0, rtol=1e-5, atol=1e-5)
    # unguided sampling differs from guided (so the CFG branches really run)
    c0 = sample_image_to_3d(dit, ctx0, steps=2, num_tokens=7, guidance_scale=1.0)
    assert (c0 - a0).abs().max() > 1e-4


# --------------------------------------------------------------------------- switches


def test_plain_mode_sets_and_restores_every_switch():
    set_attention_backend("math")
    with pytest.raises(RuntimeError):
        with perf.plain_mode() as flags:
            assert (flags.cache_cross_kv, flags.fused_qkv, flags.batch_targets, flags.token_major) == (False,) * 4
            assert active_attention_backend() == "sdpa" and get_attention_backend() == "math"
            raise RuntimeError("boom")
    flags = perf.get_flags()
    assert (flags.cache_cross_kv, flags.fused_qkv, flags.batch_targets, flags.token_major) == (True,) * 4
    assert active_attention_backend() == "math"


def test_contiguous_cpu_query_gives_bitwise_identical_attention(monkeypatch):
    """The ``contiguous_query`` switch copies the fused projection's query contiguous for the CPU SDPA call (off by
    default: it did not pay, benchmarks/RESULTS.md "CPU attention layout"): the same values bit for bit, in
    self- and cross-attention; plain mode keeps it strided."""
    import torch.nn.functional as F

    from actionmesh_core.models import attention as attention_module
    from actionmesh_core.models.layers import Attention

    seen = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: seen.append(q.is_contiguous()) or real(q, k, v, **kw))
    torch.manual_seed(0)
    for attn, args in ((Attention(32, 2, qk_norm=True).eval(), (torch.randn(2, 70, 32),)),
                       (Attention(32, 2, context_dim=24, qk_norm=True, norm_cross=True).eval(),
                        (torch.randn(2, 70, 32), torch.randn(2, 9, 24)))):
        with torch.no_grad():
            strided = attn(*args)
            with perf.perf_flags(contiguous_query=True):
                contiguous = attn(*args)
            with perf.plain_mode():
                plain = attn(*args)
        assert torch.equal(contiguous, strided)
        torch.testing.assert_close(plain, strided)
    assert seen == [False, True, False] * 2
    assert perf.get_flags().contiguous_query is False


def test_bad_flags_are_rejected():
    with pytest.raises(ValueError, match="unknown perf flag"):
        perf.set_flags(fuse_everything=True)
    with pytest.raises(TypeError, match="bool"):
        perf.set_flags(fused_qkv=1)
    with pytest.raises(ValueError, match="attention_backend"):
        perf.set_flags(attention_backend="magic")
    with pytest.raises(ValueError, match="target_batch"):
        perf.set_flags(target_batch=0)
    assert perf.get_flags().fused_qkv is True


def test_offload_moves_in_and_out_even_on_error():
    model = tiny_vae()
    with perf.offload(model, "cpu", home="meta") as m:
        assert m is model and next(model.parameters()).device.type == "cpu"
    assert next(model.parameters()).device.type == "meta"
    other = tiny_vae()
    with pytest.raises(KeyError):
        with perf.offload(other, "cpu", home="meta"):
            raise KeyError("stage failed")
    assert next(other.parameters()).device.type == "meta"
    kept = tiny_vae()
    with perf.offload(kept, "meta", enabled=False):
        assert next(kept.parameters()).device.type == "cpu"
    with pytest.raises(TypeError, match="nn.Module"):
        with perf.offload(object(), "cpu"):
            pass
    assert perf.module_bytes(kept) == sum(p.numel() * 4 for p in kept.parameters())


def test_compile_blocks_refuses_cpu_and_can_be_undone():
    den = tiny_denoiser()
    with pytest.raises(RuntimeError, match="CUDA"):
        compile_blocks(den)
    assert compile_blocks(den, allow_cpu=True) == den.num_layers  # lazy: nothing compiles until a call
    assert uncompile_blocks(den) == den.num_layers
    assert uncompile_blocks(den) == 0
    assert perf.peak_memory("cpu") is None


# --------------------------------------------------------------------------- analytic FLOPs


def _counted(fn):
    # explicit-matmul attention, which FlopCounterMode sees (it skips the CPU SDPA kernel)
    with perf.perf_flags(attention_backend="math"), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("plain", [False, True], ids=["optimised", "plain"])
def test_analytic_flops_match_counted_matmuls(plain):
    sz = perf_model.tiny_sizes()
    models = perf_model.build_models(sz, torch.device("cpu"), torch.float32, torch.float32)
    inputs = perf_model.synthetic_inputs(sz, torch.device("cpu"))
    fns = perf_model.make_stage_fns(models, sz, inputs, "default", torch.device("cpu"))
    for stage in ("stage0", "stage1", "stage2", "meshing"):
        with (perf.plain_mode() if plain else perf.perf_flags()):
            counted = _counted(fns[stage])
        expected = perf_model.stage_flops(sz, stage, "default", plain, meshing_points=inputs.get("meshing_points"))
        assert counted == pytest.approx(expected, rel=1e-9), stage


@pytest.mark.parametrize("flags", [dict(target_batch=3), dict(batch_targets=True, static_chunks=True),
                                   dict(cache_cross_kv=False, static_chunks=True)], ids=str)
def test_analytic_flops_follow_the_switches(flags):
    sz = perf_model.tiny_sizes()
    models = perf_model.build_models(sz, torch.device("cpu"), torch.float32, torch.float32)
    inputs = perf_model.synthetic_inputs(sz, torch.device("cpu"))
    fns = perf_model.make_stage_fns(models, sz, inputs, "default", torch.device("cpu"))
    with perf.perf_flags(**flags):
        for stage in ("stage2", "meshing"):
            counted = _counted(fns[stage])
            expected = perf_model.stage_flops(sz, stage, "default", False, meshing_points=inputs.get("meshing_points"))
            assert counted == pytest.approx(expected, rel=1e-9), stage


def test_stage2_targets_per_pass_policy():
    assert perf.stage2_targets_per_pass(15, 16 * 2049, "cpu") == 1
    assert perf.stage2_targets_per_pass(15, 16 * 2049, "cuda") == perf.STAGE2_CUDA_TOKEN_BUDGET // (16 * 2049) == 3
    assert perf.stage2_targets_per_pass(15, 16 * 129, "cuda") == 15
    assert perf.stage2_targets_per_pass(15, 10 ** 7, "cuda") == 1
    with perf.perf_flags(target_batch=4):
        assert perf.stage2_targets_per_pass(15, 16 * 2049, "cpu") == 4
        assert perf.stage2_targets_per_pass(2, 16 * 2049, "cpu") == 2
    with perf.plain_mode():
        assert perf.stage2_targets_per_pass(15, 16, "cuda") == 1
    with pytest.raises(ValueError):
        perf.stage2_targets_per_pass(0, 16, "cpu")


def test_query_chunk_policy_and_vae_field_independent_of_chunks(monkeypatch):
    """CPU chunks sized to the caches (the tiny VAE: 2^14 points), accelerators keep the default for one latent and
    bound a batch of latents (the attention chain's 16 frames at the released width: 2^12 points, 1 GiB per
    activation instead of 16 GiB); the VAE field's values do not depend on the chunk (each point is independent;
    float32 rounding aside), and ``None`` takes the policy."""
    assert perf.query_chunk_points("cpu", 128) == 2 ** 14  # 2^14 x 128 x 4 B = 8 MiB
    assert perf.query_chunk_points("cpu", 3 * 128) == 2 ** 12
    assert perf.query_chunk_points("cpu", 4096) == 2 ** 10  # released decoder width: the floor
    assert perf.query_chunk_points("cpu", 1) == 2 ** 16  # the cap
    assert perf.query_chunk_points("cuda", 128) == 2 ** 16
    assert perf.query_chunk_points("cuda", 4096) == 2 ** 16  # one latent of the released VAE: the default
    assert perf.query_chunk_points("cuda", 16 * 4096) == 2 ** 12  # 16 frames: 2^12 x 16 x 4096 x 4 B = 1 GiB
    assert perf.query_chunk_points("cuda", 10 ** 9) == 2 ** 10  # the floor
    assert perf.query_chunk_points("meta", 128, default=1000) == 1000
    with pytest.raises(ValueError):
        perf.query_chunk_points("cpu", 0)
    vae = tiny_vae()
    tokens = vae.decode_tokens(torch.randn(2, 16, vae.config["latent_channels"], generator=torch.Generator().manual_seed(0)))
    points = torch.rand(5000, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    seen = []
    real = perf.query_chunk_points
    monkeypatch.setattr("actionmesh_core.models.vae.query_chunk_points", lambda *a, **k: seen.append(a) or 1024)
    with torch.no_grad():
        auto = vae.query_field(tokens, points)
        assert seen and seen[0][1] == 2 * 4 * vae.config["width_decoder"]  # batch x feed-forward width
        for chunk in (5000, 777):
            # same values up to float32 rounding (the GEMM kernels block a 777-row chunk differently)
            torch.testing.assert_close(vae.query_field(tokens, points, chunk), auto, rtol=1e-5, atol=1e-6)
    assert real("cpu", seen[0][1]) >= 1024


def test_tune_cpu_allocator_reuses_freed_buffers(tmp_path):
    """After ``tune_cpu_allocator`` a freed 64 MB buffer is reused: allocating it again costs no page faults
    (without it glibc unmaps and maps it afresh). Run in a child process (process-wide setting)."""
    import os
    import subprocess

    code = """
import resource, sys
import numpy as np
from actionmesh_core.perf import tune_cpu_allocator
if sys.argv[1] == "on":
    assert tune_cpu_allocator()
def faults():
    a = np.ones(1 << 23)  # 64 MB, every page touched
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(1 << 23)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT)
    run = {mode: int(subprocess.run([sys.executable, "-c", code, mode], env=env, capture_output=True, text=True,
                                    check=True).stdout) for mode in ("on", "off")}
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert run["on"] * 10 < run["off"], run  # (~16k faults off with 4 KiB pages, ~500 with transparent huge pages)
    env["MALLOC_ARENA_MAX"] = "2"  # the user's own glibc tuning wins: nothing changed
    out = subprocess.run([sys.executable, "-c", "from actionmesh_core.perf import tune_cpu_allocator as t; print(t())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    with pytest.raises(ValueError):
        perf.tune_cpu_allocator(0)


def test_analytic_dino_flops_match_counted():
    from transformers import Dinov2Config, Dinov2Model

    sz = perf_model.tiny_sizes()
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(**sz.dino, attn_implementation="eager")).eval()
    enc = DinoV2Encoder(model)
    images = torch.rand(3, 64, 64, 3, generator=_gen(9))
    counted = _counted(lambda: enc(images))
    assert counted == pytest.approx(perf_model.dino_flops(sz.dino, 3), rel=1e-9)


@pytest.mark.parametrize("mode", ["plain", "optimised"])
def test_both_paths_match_the_reference_vectors(mode):
    """The parity vectors (reference implementation outputs) hold in the plain and the optimised path."""
    from safetensors.torch import load_file

    from actionmesh_core.checkpoints import load_model

    folder = data_dirs.parity_dir()

    def case(name):
        spec = json.loads((folder / name / "case.json").read_text())
        return spec, load_file(str(folder / name / "io.safetensors")), load_model(folder / name / "checkpoint",
                                                                                  kind=spec["model"])

    with (perf.plain_mode() if mode == "plain" else perf.perf_flags()), torch.no_grad():
        spec, io, den = case("denoiser_forward")
        out = den(io["hidden_states"], io["context"], io["framestep"], io["diffusion_time"], io["mask"])
        torch.testing.assert_close(out, io["expected"], rtol=spec["tolerance"]["rtol"], atol=spec["tolerance"]["atol"])
        spec, io, ae = case("autoencoder_forward")
        tgt = io["target_alphas"]
        out = torch.cat([ae(io["latent"], io["framestep"], io["source_alpha"], tgt[:, i:i + 1], io["query"])
                         for i in range(tgt.shape[1])], dim=1)  # one pass per target, as stage II runs it
        torch.testing.assert_close(out, io["expected"], rtol=spec["tolerance"]["rtol"], atol=spec["tolerance"]["atol"])
        spec, io, dit = case("triposg_dit_forward")
        out = dit(io["hidden_states"], io["timestep"], io["encoder_hidden_states"])
        torch.testing.assert_close(out, io["expected"], rtol=spec["tolerance"]["rtol"], atol=spec["tolerance"]["atol"])
        spec, io, den = case("denoiser_sampling")
        smp = spec["sampler"]
        out = masked_flow_sampling(den, io["init_latent"], io["source_mask"], io["context"], io["framestep"],
                                   steps=smp["steps"], shift=smp["shift"], guidance_scale=smp["guidance_scale"])
        torch.testing.assert_close(out, io["expected"], rtol=spec["tolerance"]["rtol"], atol=spec["tolerance"]["atol"])
        spec, io, vae = case("vae_encode_decode")
        sdf = vae.decode(io["latent"], io["sdf_points"], chunk_size=7)
        torch.testing.assert_close(sdf, io["expected_sdf"], rtol=spec["tolerance"]["rtol"],
                                   atol=spec["tolerance"]["atol"])


def test_fused_projection_with_weights_made_under_inference_mode():
    """ComfyUI runs nodes under ``torch.inference_mode``: weights loaded there are inference tensors, which have
    no version counter. The cached fused QKV weight must still work (it raised "Inference tensors do not track
    version counter" in the real host) and equal the unfused projections; replacing a weight rebuilds it."""
    from actionmesh_core.models.layers import Attention

    torch.manual_seed(0)
    with torch.inference_mode():
        attn = Attention(16, 2, context_dim=12, qkv_bias=True)
        x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
        assert attn.to_k.weight.is_inference()
        fused = attn._fused(ctx, (attn.to_k, attn.to_v))
        plain = torch.cat([attn.to_k(ctx), attn.to_v(ctx)], -1)
        assert torch.equal(fused, plain)
        out = attn(x, context=ctx)
        assert out.shape == (2, 5, 16) and torch.isfinite(out).all()
        attn.to_v.weight = torch.nn.Parameter(torch.randn_like(attn.to_v.weight))  # a patcher swaps a weight
        assert torch.equal(attn._fused(ctx, (attn.to_k, attn.to_v)),
                           torch.cat([attn.to_k(ctx), attn.to_v(ctx)], -1))
    with torch.no_grad():  # the same module used outside inference mode afterwards
        assert torch.equal(attn._fused(ctx, (attn.to_k, attn.to_v)), torch.cat([attn.to_k(ctx), attn.to_v(ctx)], -1))
