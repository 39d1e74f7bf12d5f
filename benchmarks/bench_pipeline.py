#!/usr/bin/env python3
"""Plain vs optimised ActionMesh pipeline, side by side in one run (issue #5).

Builds every model of the pipeline with random weights (speed does not depend
on weight values) and runs, stage by stage, first the *plain* path
(``actionmesh_core.perf.plain_mode``: no K/V caching, unfused QKV, one stage II
pass per target time, PyTorch SDPA) and then the *optimised* default path on
the same inputs:

- stage 0: TripoSG DiT rectified flow with CFG (100 steps; fast 50);
- DINOv2-L features of the 16 frames (a control row: no switch affects it);
- stage I: masked flow matching with CFG over a 16-frame window (30; fast 15);
- stage II: 15 target times decoded on ~20k query vertices;
- SDF meshing of the anchor latent: the library's narrow-band extractor (VAE field + marching cubes).

Per stage it prints wall time, the analytically counted FLOPs (matmuls of the
linear and attention layers; elementwise work is not counted) and achieved
TFLOP/s, peak GPU memory (``torch.cuda.max_memory_allocated``; n/a on CPU),
the plain/optimised time ratio and the max abs difference of the outputs.
Each stage gets identical inputs in both paths (the plain path's output of the
previous stage), so the difference is that stage's own.

Sizes: ``--full`` = the released sizes (needs a big GPU); the default is a
reduced CPU-sized set (ratios only); ``--tiny`` takes seconds (tests).
``--low-vram`` adds an optimised run in which each model lives on the GPU only
for its stage (:func:`actionmesh_core.perf.offload`) and reports its memory.

Examples::

    python3 benchmarks/bench_pipeline.py                       # reduced, CPU
    python3 benchmarks/bench_pipeline.py --device cuda --full  # released sizes, bf16
    python3 benchmarks/bench_pipeline.py --device cuda --full --compile --low-vram --preset fast
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actionmesh_core import perf  # noqa: E402
from actionmesh_core.models import TemporalAutoencoder, TemporalDenoiser, TripoSGDiT, TripoSGVAE  # noqa: E402
from actionmesh_core.models.dino import DinoV2Encoder  # noqa: E402
from actionmesh_core.models.attention import get_attention_backend, set_attention_backend  # noqa: E402
from actionmesh_core.models.compile import compile_blocks as compile_model_blocks, uncompile_blocks  # noqa: E402
from actionmesh_core.sampling.stage1 import sample_stage1  # noqa: E402
from actionmesh_core.sampling.stage2 import decode_stage2  # noqa: E402
from actionmesh_core.sampling.triposg import sample_image_to_3d  # noqa: E402

STAGES = ("dinov2", "stage0", "stage1", "stage2", "meshing")  # execution order (stage 0 needs DINOv2 features)

# --------------------------------------------------------------------------- sizes


@dataclass
class Sizes:
    """Model and problem sizes of one benchmark configuration.

    ``dit``/``denoiser``/``autoencoder``/``vae`` are constructor kwargs of the
    model classes; ``dino`` are ``transformers.Dinov2Config`` kwargs.
    """

    name: str
    dit: dict
    denoiser: dict
    autoencoder: dict
    vae: dict
    dino: dict
    tokens: int            # N latent tokens per frame
    frames: int            # T frames (one 16-frame window)
    vertices: int          # V stage II query vertices
    grid: int              # SDF final grid points per axis (2^depth + 1); narrow band from 2^(depth-3)
    steps0: Dict[str, int]  # TripoSG steps per preset
    steps1: Dict[str, int]  # stage I steps per preset
    image: int = 256       # input frame size (pixels)
    stage2_chunk: int = 16384
    field_chunk: int = 2 ** 16


def released_sizes() -> Sizes:
    """The released sizes: ~20k query vertices, meshing up to depth 9 (513^3 points).

    ActionMesh models, steps and the 40k-face anchor (hence ~20k vertices): release:
    actionmesh/configs/actionmesh.yaml, ``model.temporal_3D_denoiser``, ``model.temporal_3D_vae``,
    ``stage_0_steps``, ``stage_1_steps``, ``face_decimation`` (fast steps: release:
    actionmesh/configs/actionmesh_fast.yaml); TripoSG VAE and DiT at their constructor defaults (release:
    third_party/TripoSG/triposg/models/autoencoders/autoencoder_kl_triposg.py, ``TripoSGVAEModel.__init__``;
    release: third_party/TripoSG/triposg/models/transformers/triposg_transformer.py, ``TripoSGDiTModel.__init__``);
    meshing depth 9: release: actionmesh/external/triposg.py, ``TripoSGPipelinePlus.__call__``; DINOv2-L/14
    (``facebook/dinov2-large``).
    """
    den = dict(in_channels=64, width=2048, num_layers=21, num_attention_heads=16, cross_attention_dim=1024,
               mlp_ratio=4.0, inflated_layers=list(range(21)))
    return Sizes(
        name="full",
        dit=dict(in_channels=64, width=2048, num_layers=21, num_attention_heads=16, cross_attention_dim=1024),
        denoiser=den,
        autoencoder=dict(latent_channels=64, width=1024, num_layers=16, num_attention_heads=8, embed_frequency=8),
        vae=dict(latent_channels=64, num_attention_heads=8, width_encoder=512, width_decoder=1024,
                 num_layers_encoder=8, num_layers_decoder=16, embed_frequency=8),
        dino=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4,
                  patch_size=14, image_size=518),
        tokens=2048, frames=16, vertices=20000, grid=513,
        steps0={"default": 100, "fast": 50}, steps1={"default": 30, "fast": 15},
    )


def reduced_sizes() -> Sizes:
    """CPU-sized set (ratios only): widths /4-/8, fewer layers/tokens/steps, same frame count and targets."""
    return Sizes(
        name="reduced",
        dit=dict(in_channels=64, width=256, num_layers=5, num_attention_heads=4, cross_attention_dim=256),
        denoiser=dict(in_channels=64, width=256, num_layers=5, num_attention_heads=4, cross_attention_dim=256,
                      inflated_layers=list(range(5))),
        autoencoder=dict(latent_channels=64, width=256, num_layers=4, num_attention_heads=4, embed_frequency=8),
        vae=dict(latent_channels=64, num_attention_heads=4, width_encoder=128, width_decoder=256,
                 num_layers_encoder=1, num_layers_decoder=4, embed_frequency=8),
        dino=dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, mlp_ratio=4,
                  patch_size=14, image_size=224),
        tokens=128, frames=16, vertices=2500, grid=49,
        steps0={"default": 10, "fast": 5}, steps1={"default": 3, "fast": 2},
        stage2_chunk=2048, field_chunk=2 ** 14,
    )


def tiny_sizes() -> Sizes:
    """Seconds-long set for tests."""
    return Sizes(
        name="tiny",
        dit=dict(in_channels=8, width=32, num_layers=3, num_attention_heads=2, cross_attention_dim=32),
        denoiser=dict(in_channels=8, width=32, num_layers=3, num_attention_heads=2, cross_attention_dim=32,
                      inflated_layers=[0, 2]),
        autoencoder=dict(latent_channels=8, width=32, num_layers=2, num_attention_heads=2, embed_frequency=3),
        vae=dict(latent_channels=8, num_attention_heads=2, width_encoder=32, width_decoder=32,
                 num_layers_encoder=1, num_layers_decoder=1, embed_frequency=3),
        dino=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=4,
                  patch_size=56, image_size=224),
        tokens=16, frames=5, vertices=40, grid=9,
        steps0={"default": 2, "fast": 1}, steps1={"default": 2, "fast": 1},
        image=64, stage2_chunk=16, field_chunk=300,
    )


# --------------------------------------------------------------------------- analytic FLOPs
# Matmul FLOPs only (2 per multiply-add): linear layers 2·M·in·out, attention
# 4·B·S·L·W (QK^T and AV over all heads). Norms, RoPE, softmax, GELU are not counted.


def _lin(m: float, i: float, o: float) -> float:
    return 2.0 * m * i * o


def _attn(b: float, s: float, length: float, w: float) -> float:
    return 4.0 * b * s * length * w


def _kv_flops(tokens: float, ctx_dim: float, w: float) -> float:
    return _lin(tokens, ctx_dim, 2 * w)


def dit_forward_flops(cfg: dict, batch: int, tokens: int, ctx_len: int, cached_kv: bool) -> float:
    """One :class:`TripoSGDiT` forward: (batch, tokens) latents, (batch, ctx_len) image tokens."""
    w, layers, c, dc = cfg["width"], cfg["num_layers"], cfg["in_channels"], cfg["cross_attention_dim"]
    seq = tokens + 1
    m = batch * seq
    f = _lin(batch, w, 4 * w) + _lin(batch, 4 * w, w) + _lin(batch * tokens, c, w) + _lin(batch * tokens, w, c)
    for i in range(layers):
        if i > layers // 2:
            f += _lin(m, 2 * w, w)
        f += _lin(m, w, 3 * w) + _attn(batch, seq, seq, w) + _lin(m, w, w)
        f += _lin(m, w, w) + _attn(batch, seq, ctx_len, w) + _lin(m, w, w)
        f += 0.0 if cached_kv else _kv_flops(batch * ctx_len, dc, w)
        f += _lin(m, w, 4 * w) + _lin(m, 4 * w, w)
    return f


def denoiser_forward_flops(cfg: dict, batch: int, frames: int, tokens: int, ctx_len: int, cached_kv: bool) -> float:
    """One :class:`TemporalDenoiser` forward on (batch, frames, tokens) latents."""
    w, layers, c, dc = cfg["width"], cfg["num_layers"], cfg["in_channels"], cfg["cross_attention_dim"]
    inner = int(w * cfg.get("mlp_ratio", 4.0))
    inflated = set(cfg.get("inflated_layers", range(layers)))
    bt, seq = batch * frames, tokens + 1
    m = bt * seq
    f = _lin(bt, w, 4 * w) + _lin(bt, 4 * w, w) + _lin(bt * tokens, c, w) + _lin(bt * tokens, w, c)
    for i in range(layers):
        if i > layers // 2:
            f += _lin(m, 2 * w, w)
        f += _lin(m, w, 3 * w) + _lin(m, w, w)
        f += _attn(batch, frames * seq, frames * seq, w) if i in inflated else _attn(bt, seq, seq, w)
        f += _lin(m, w, w) + _attn(bt, seq, ctx_len, w) + _lin(m, w, w)
        f += 0.0 if cached_kv else _kv_flops(bt * ctx_len, dc, w)
        f += _lin(m, w, inner) + _lin(m, inner, w)
    return f


def stage0_flops(sz: Sizes, steps: int, plain: bool, ctx_len: int) -> float:
    """TripoSG sampling with CFG (batch of two) over ``steps`` steps."""
    cfg = sz.dit
    f = steps * dit_forward_flops(cfg, 2, sz.tokens, ctx_len, cached_kv=not plain)
    if not plain:
        f += cfg["num_layers"] * _kv_flops(2 * ctx_len, cfg["cross_attention_dim"], cfg["width"])
    return f


def stage1_flops(sz: Sizes, steps: int, plain: bool, ctx_len: int) -> float:
    """Stage I masked flow sampling with CFG over one window of ``sz.frames`` frames."""
    cfg = sz.denoiser
    f = steps * denoiser_forward_flops(cfg, 2, sz.frames, sz.tokens, ctx_len, cached_kv=not plain)
    if not plain:
        f += cfg["num_layers"] * _kv_flops(2 * sz.frames * ctx_len, cfg["cross_attention_dim"], cfg["width"])
    return f


def autoencoder_flops(cfg: dict, frames: int, tokens: int, targets: int, vertices: int, chunk: Optional[int],
                      per_pass: int, cache_kv: bool, static_chunks: bool = False) -> float:
    """Stage II: ``targets`` target times decoded on ``vertices`` query vertices.

    ``per_pass`` target times share one autoencoder pass (``post_quant`` once per pass).
    """
    w, layers, c = cfg["width"], cfg["num_layers"], cfg["latent_channels"]
    nf = cfg.get("embed_frequency", 8)
    qdim = cfg.get("in_channels", 3) * (2 * nf + 1) + cfg.get("in_extra_channels", 3)
    seq = frames * tokens + frames
    step = chunk or vertices
    nchunks = math.ceil(vertices / step)
    v_eff = nchunks * step if (static_chunks and nchunks > 1) else vertices
    f = math.ceil(targets / per_pass) * _lin(frames * tokens, c, w)
    per_layer = (_lin(seq, w, 3 * w) + _attn(1, seq, seq, w) + _lin(seq, w, w)
                 + _lin(seq, w, 4 * w) + _lin(seq, 4 * w, w))
    f += targets * layers * per_layer
    kv = _kv_flops(seq, w, w) * (1 if cache_kv else nchunks)
    query = (_lin(v_eff, qdim, w) + _lin(v_eff, w, w) + _attn(1, v_eff, seq, w) + _lin(v_eff, w, w)
             + _lin(v_eff, w, 4 * w) + _lin(v_eff, 4 * w, w) + _lin(v_eff, w, cfg.get("out_dim", 3)))
    return f + targets * (kv + query)


def stage2_flops(sz: Sizes, plain: bool, device="cpu") -> float:
    """Stage II over one window (all frames but the anchor are targets), with the current perf flags."""
    seq = sz.frames * (sz.tokens + 1)
    with (perf.plain_mode() if plain else contextlib.nullcontext()):
        per_pass = perf.stage2_targets_per_pass(sz.frames - 1, seq, device)
        flags = perf.get_flags()
        return autoencoder_flops(sz.autoencoder, sz.frames, sz.tokens, sz.frames - 1, sz.vertices, sz.stage2_chunk,
                                 per_pass=per_pass, cache_kv=flags.cache_cross_kv, static_chunks=flags.static_chunks)


def vae_field_flops(cfg: dict, tokens: int, points, chunk: int, cache_kv: bool,
                    static_chunks: bool = False) -> float:
    """TripoSG VAE: decode_tokens once + field at ``points`` query points in chunks.

    ``points``: the number of query points of one field call, or a list with the count of each call
    (every call is chunked on its own and computes the cross-attention K/V once, or once per chunk).
    """
    calls = [int(points)] if isinstance(points, (int, float)) else [int(p) for p in points]
    per_call = [math.ceil(p / chunk) for p in calls]
    nchunks = sum(per_call)
    points = sum(n * chunk if (static_chunks and n > 1) else p for p, n in zip(calls, per_call))
    w, c, nf = cfg["width_decoder"], cfg["latent_channels"], cfg.get("embed_frequency", 8)
    qdim = cfg.get("in_channels", 3) * (2 * nf + 1)
    f = _lin(tokens, c, w)
    f += cfg["num_layers_decoder"] * (_lin(tokens, w, 3 * w) + _attn(1, tokens, tokens, w) + _lin(tokens, w, w)
                                      + _lin(tokens, w, 4 * w) + _lin(tokens, 4 * w, w))
    f += _kv_flops(tokens, w, w) * (len(calls) if cache_kv else nchunks)
    f += (_lin(points, qdim, w) + _lin(points, w, w) + _attn(1, points, tokens, w) + _lin(points, w, w)
          + _lin(points, w, 4 * w) + _lin(points, 4 * w, w) + _lin(points, w, 1))
    return f


MESHING_POINTS: Dict[int, list] = {}  # grid -> points of each field call of the last meshing run (narrow band)
PROBE_GRID = 17  # the meshing stage's probe grid (points per axis)


def meshing_flops(sz: Sizes, plain: bool) -> float:
    """SDF field at the points the narrow-band extractor evaluated (dense ``grid``^3 before the first run),
    plus the 17^3 probe grid the meshing stage evaluates first (level choice and path comparison)."""
    with (perf.plain_mode() if plain else contextlib.nullcontext()):
        flags = perf.get_flags()
        points = [PROBE_GRID ** 3] + MESHING_POINTS.get(sz.grid, [sz.grid ** 3])
        return vae_field_flops(sz.vae, sz.tokens, points, sz.field_chunk, cache_kv=flags.cache_cross_kv,
                               static_chunks=flags.static_chunks)


def dino_flops(cfg: dict, images: int) -> float:
    """DINOv2 on ``images`` 224x224 crops (patch conv + transformer layers)."""
    w, p = cfg["hidden_size"], cfg["patch_size"]
    inner = int(w * cfg.get("mlp_ratio", 4))  # transformers' Dinov2MLP uses mlp_ratio (not intermediate_size)
    patches = (224 // p) ** 2
    s = patches + 1
    f = images * _lin(patches, 3 * p * p, w)
    f += images * cfg["num_hidden_layers"] * (_lin(s, w, 3 * w) + _attn(1, s, s, w) + _lin(s, w, w)
                                              + _lin(s, w, inner) + _lin(s, inner, w))
    return f


# --------------------------------------------------------------------------- models and inputs


@dataclass
class Models:
    dit: TripoSGDiT
    dino: DinoV2Encoder
    denoiser: TemporalDenoiser
    autoencoder: TemporalAutoencoder
    vae: TripoSGVAE


def build_models(sz: Sizes, device: torch.device, dtype: torch.dtype, vae_dtype: torch.dtype, seed: int = 0,
                 home: Optional[torch.device] = None) -> Models:
    """Random-weight models of the given sizes (built directly on ``home`` or ``device``)."""
    from transformers import Dinov2Config, Dinov2Model

    where = home or device
    torch.manual_seed(seed)
    with torch.device(where):
        dit = TripoSGDiT(**sz.dit)
        den = TemporalDenoiser(**sz.denoiser)
        ae = TemporalAutoencoder(**sz.autoencoder)
        vae = TripoSGVAE(**sz.vae)
        dcfg = Dinov2Config(**sz.dino, attn_implementation="sdpa")
        dino = Dinov2Model(dcfg)
    for m in (dit, den, dino):
        m.to(dtype)
    ae.to(dtype).keep_query_path_fp32()
    vae.to(vae_dtype)
    models = Models(dit, DinoV2Encoder(dino), den, ae, vae)
    for m in (models.dit, models.dino, models.denoiser, models.autoencoder, models.vae):
        m.eval().requires_grad_(False)
    return models


def sphere_query(n: int) -> torch.Tensor:
    """(n, 6) Fibonacci-sphere points of radius 0.6 with outward unit normals (a stand-in reference mesh)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    d = torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)
    return torch.cat([0.6 * d, d], -1).float()


def grid_points(res: int, device) -> torch.Tensor:
    """(res^3, 3) lattice over [-1.005, 1.005]^3 (ij order)."""
    ax = torch.linspace(-1.005, 1.005, res, device=device)
    return torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)


# --------------------------------------------------------------------------- stage runners


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_stage_fns(models: Models, sz: Sizes, inputs: dict, preset: str, device: torch.device,
                   seed: int = 0) -> Dict[str, Callable[[int], torch.Tensor]]:
    """Stage callables ``fn(steps_override=0) -> output tensor`` on the given inputs.

    ``inputs`` holds ``images`` (T, H, W, 3), and once produced ``context``
    (T, S, Dc), ``anchor`` (1, N, C), ``latents`` (T, N, C), ``query`` (V, 6).
    A non-zero ``steps_override`` shortens the diffusion stages (warm-up).
    """
    def stage0(steps_override: int = 0) -> torch.Tensor:
        steps = steps_override or sz.steps0[preset]
        return sample_image_to_3d(models.dit, inputs["context"][:1], steps=steps, seed=seed, num_tokens=sz.tokens)

    def dinov2(steps_override: int = 0) -> torch.Tensor:
        return models.dino(inputs["images"])

    def stage1(steps_override: int = 0) -> torch.Tensor:
        steps = steps_override or sz.steps1[preset]
        return sample_stage1(models.denoiser, inputs["context"], {0: inputs["anchor"][0]}, steps=steps, seed=seed)

    def stage2(steps_override: int = 0) -> torch.Tensor:
        return decode_stage2(models.autoencoder, inputs["latents"], inputs["query"], chunk_size=sz.stage2_chunk)

    def meshing(steps_override: int = 0) -> torch.Tensor:
        # the library's extractor (narrow band from 2^(d-3) up to 2^d cells, d = log2(grid - 1)), as the
        # pipeline runs it; returns the field on a 17^3 probe grid (to compare the plain and optimised paths)
        from actionmesh_core.geometry.meshing import sdf_to_meshes

        vdtype = next(models.vae.parameters()).dtype
        field = models.vae.field_fn(inputs["anchor"].to(device, vdtype), chunk_size=sz.field_chunk)
        probe = field(grid_points(PROBE_GRID, device))[0]
        calls = []

        def counted_field(points: torch.Tensor) -> torch.Tensor:
            calls.append(points.reshape(-1, 3).shape[0])
            return field(points)

        level = 0.0 if probe.min() < 0.0 < probe.max() else float(probe.float().median())  # random weights
        depth = int(round(math.log2(sz.grid - 1)))
        mesh = sdf_to_meshes(counted_field, 1, octree_depth=max(depth - 3, 1), refine_depth=depth, level=level,
                             inside=models.vae.inside_sign, device=device, allow_empty=True)[0]
        MESHING_POINTS[sz.grid] = calls
        inputs["last_mesh"] = (len(mesh.vertices), len(mesh.faces), level)
        return probe

    return dict(stage0=stage0, dinov2=dinov2, stage1=stage1, stage2=stage2, meshing=meshing)


@dataclass
class Measurement:
    seconds: float
    peak_bytes: Optional[int]
    output: torch.Tensor


def measure(fn: Callable[[], torch.Tensor], device: torch.device) -> Measurement:
    """Wall time (synchronised) and CUDA peak memory of one call."""
    perf.reset_peak_memory(device)
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = fn()
    _sync(device)
    secs = time.perf_counter() - t0
    return Measurement(secs, perf.peak_memory(device), out.detach())


@dataclass
class StageResult:
    stage: str
    plain: Measurement
    opt: Measurement
    flops_plain: float
    flops_opt: float
    max_abs_diff: float
    max_abs_ref: float
    low_vram: Optional[Measurement] = None
    compile_s: Optional[float] = None
    notes: List[str] = field(default_factory=list)
    extra: Dict[str, Measurement] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.plain.seconds / max(self.opt.seconds, 1e-12)


def stage_flops(sz: Sizes, stage: str, preset: str, plain: bool, device="cpu") -> float:
    """Analytic FLOPs of one stage for a path (optimised: with the perf flags in effect)."""
    ctx_len = (224 // sz.dino["patch_size"]) ** 2 + 1
    if stage == "stage0":
        return stage0_flops(sz, sz.steps0[preset], plain, ctx_len)
    if stage == "dinov2":
        return dino_flops(sz.dino, sz.frames)
    if stage == "stage1":
        return stage1_flops(sz, sz.steps1[preset], plain, ctx_len)
    if stage == "stage2":
        return stage2_flops(sz, plain, device)
    if stage == "meshing":
        return meshing_flops(sz, plain)
    raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")


# --------------------------------------------------------------------------- the run


ABLATIONS = {
    # optimised path with one optimisation switched off (does that optimisation pay?)
    "opt without kv cache": dict(cache_cross_kv=False),
    "opt without fused qkv": dict(fused_qkv=False),
    "opt without target batching": dict(batch_targets=False),
    "opt with all targets in one pass": dict(target_batch=1 << 20),
    "opt without token-major qk": dict(token_major=False),
    "opt with contiguous cpu query": dict(contiguous_query=True),
    # low-memory option: identical results, lower peak
    "opt with cfg split": dict(cfg_batch_split=True),
}
ABLATION_STAGES = {
    "opt without kv cache": ("stage0", "stage1", "stage2", "meshing"),
    "opt without fused qkv": ("stage0", "stage1", "stage2", "meshing"),
    "opt without target batching": ("stage2",),
    "opt with all targets in one pass": ("stage2",),
    "opt without token-major qk": ("stage0", "stage1", "stage2"),
    "opt with contiguous cpu query": ("stage0", "stage1", "stage2", "meshing"),
    "opt with cfg split": ("stage0", "stage1"),
}


def run_benchmark(sz: Sizes, device: torch.device, dtype: torch.dtype, *, vae_dtype: torch.dtype = torch.float32,
                  preset: str = "default", stages=STAGES, warmup: int = 0, repeats: int = 1,
                  compile_blocks: bool = False, compile_mode: Optional[str] = None, low_vram: bool = False,
                  cfg_batch_split: bool = False, ablate=False, tf32: bool = False, seed: int = 0,
                  log: Callable[[str], None] = print) -> List[StageResult]:
    """Run every requested stage in the plain and the optimised path; returns per-stage results.

    Each path runs ``repeats`` times (alternating which goes first) and keeps
    its fastest run, which discounts interference from other processes.
    ``ablate`` (True, or a tuple of names) adds the :data:`ABLATIONS` variants (in ``StageResult.extra``).
    ``tf32`` lets the optimised path's fp32 matmuls (SDF field, stage II
    query path) use TF32 tensor cores on CUDA: faster, but not the same
    numerics (off by default; the difference column shows its effect).

    Raises:
        ValueError: unknown stage/preset, ``repeats`` < 1, or
            ``compile_blocks``/``low_vram`` without CUDA.
    """
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stages {bad}; choose from {STAGES}")
    if preset not in sz.steps0:
        raise ValueError(f"preset must be one of {sorted(sz.steps0)}, got {preset!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if (compile_blocks or low_vram) and device.type != "cuda":
        raise ValueError("--compile and --low-vram are CUDA options (torch.compile is off on CPU; "
                         "offloading to the CPU saves nothing there)")
    t0 = time.perf_counter()
    models = build_models(sz, device, dtype, vae_dtype, seed)
    log(f"built random-weight models in {time.perf_counter() - t0:.1f}s")
    inputs = synthetic_inputs(sz, device, seed)
    fns = make_stage_fns(models, sz, inputs, preset, device, seed)
    per_model = dict(stage0=models.dit, dinov2=models.dino, stage1=models.denoiser, stage2=models.autoencoder,
                     meshing=models.vae)
    results: List[StageResult] = []
    opt_flags = dict(cfg_batch_split=cfg_batch_split, static_chunks=compile_blocks)
    for stage in [s for s in STAGES if s in stages]:
        fn = fns[stage]
        variants: Dict[str, Callable[[], contextlib.AbstractContextManager]] = {
            "plain": perf.plain_mode, "optimised": lambda: _opt_context(opt_flags, tf32)}
        if ablate:
            for name, flags in ABLATIONS.items():
                if stage in ABLATION_STAGES[name] and (ablate is True or name in ablate):
                    variants[name] = (lambda f=flags: _opt_context({**opt_flags, **f}, tf32))
        best: Dict[str, Measurement] = {}
        meshes: Dict[str, tuple] = {}

        def run(name: str) -> None:
            with variants[name]():
                for _ in range(warmup if name not in best else 0):
                    fn(2)
                m = measure(fn, device)
            if name in best:  # keep the fastest time, the first output and the highest peak
                prev = best[name]
                peaks = [p for p in (prev.peak_bytes, m.peak_bytes) if p is not None]
                m = Measurement(min(prev.seconds, m.seconds), max(peaks) if peaks else None, prev.output)
            best[name] = m
            meshes[name] = inputs.get("last_mesh")

        compile_s = None
        names = list(variants)
        if compile_blocks and stage != "dinov2":
            for _ in range(repeats):
                run("plain")
            n = compile_model_blocks(per_model[stage], mode=compile_mode)
            with variants["optimised"]():
                c0 = time.perf_counter()
                fn(2)
                _sync(device)
                compile_s = time.perf_counter() - c0
            log(f"  compiled {n} blocks of {stage} (first call {compile_s:.1f}s)")
            for r in range(repeats):
                for name in names[1:]:
                    run(name)
        else:
            for r in range(repeats):
                for name in (names if r % 2 == 0 else names[::-1]):
                    run(name)
        if compile_blocks:
            uncompile_blocks(per_model[stage])
        lv = _low_vram_run(models, per_model[stage], fn, device, lambda: _opt_context(opt_flags, tf32)) \
            if low_vram else None
        plain, opt = best["plain"], best["optimised"]
        ref, out = plain.output.float(), opt.output.float()
        with perf.perf_flags(**opt_flags):
            flops_opt = stage_flops(sz, stage, preset, False, device)
        res = StageResult(stage, plain, opt, stage_flops(sz, stage, preset, True, device),
                          flops_opt, (ref - out).abs().max().item(),
                          ref.abs().max().item(), lv, compile_s)
        res.extra = {k: v for k, v in best.items() if k not in ("plain", "optimised")}
        for name, m in res.extra.items():
            res.notes.append(f"{name}: {m.seconds:.3f}s (optimised {opt.seconds:.3f}s, plain {plain.seconds:.3f}s), "
                             f"max abs diff to plain {(m.output.float() - ref).abs().max().item():.2e}"
                             + ("" if m.peak_bytes is None else f", peak {_gib(m.peak_bytes)} GiB"))
        if stage == "meshing":
            mp, mo = meshes["plain"], meshes["optimised"]
            res.notes.append(f"marching cubes at level {mp[2]:.3g}: plain {mp[0]} vertices / {mp[1]} faces, "
                             f"optimised {mo[0]} / {mo[1]}")
        results.append(res)
        log(f"  {stage}: plain {plain.seconds:.2f}s  optimised {opt.seconds:.2f}s  "
            f"ratio {res.ratio:.2f}  max|diff| {res.max_abs_diff:.2e}")
        _feed(inputs, stage, plain.output)
    return results


@contextlib.contextmanager
def _opt_context(flags: dict, tf32: bool):
    """The optimised path's switches (and TF32 matmuls when asked), restored on exit."""
    with perf.perf_flags(**flags, tf32=tf32), perf.tf32_matmuls():
        yield


def synthetic_inputs(sz: Sizes, device: torch.device, seed: int = 0) -> dict:
    """Random frames, sphere query and stand-ins for every stage's input.

    A stage that is benchmarked replaces its stand-in with its plain-path
    output (``context`` from DINOv2, ``anchor`` from stage 0, ``latents``
    from stage I), so a partial ``--stages`` run never needs the others.
    """
    gen = torch.Generator().manual_seed(seed)
    s = (224 // sz.dino["patch_size"]) ** 2 + 1
    c = sz.denoiser["in_channels"]
    return {
        "images": torch.rand(sz.frames, sz.image, sz.image, 3, generator=gen),
        "context": torch.randn(sz.frames, s, sz.dino["hidden_size"], generator=gen).to(device),
        "anchor": torch.randn(1, sz.tokens, c, generator=gen).to(device),
        "latents": torch.randn(sz.frames, sz.tokens, c, generator=gen).to(device),
        "query": sphere_query(sz.vertices).to(device),
    }


def _feed(inputs: dict, stage: str, output: torch.Tensor) -> None:
    key = dict(stage0="anchor", dinov2="context", stage1="latents").get(stage)
    if key:
        inputs[key] = output


def _low_vram_run(models: Models, model, fn, device, context) -> Measurement:
    """Optimised run with every model parked on the CPU and ``model`` on the GPU only for the stage.

    Eager blocks (no compile); the time includes moving the stage's model to the GPU and back.
    """
    everything = (models.dit, models.dino, models.denoiser, models.autoencoder, models.vae)
    for m in everything:
        m.to("cpu")
    torch.cuda.empty_cache()

    def staged():
        with perf.offload(model, device):
            return fn()

    with context():
        meas = measure(staged, device)
    for m in everything:
        m.to(device)
    return meas


# --------------------------------------------------------------------------- report


def _gib(b: Optional[int]) -> str:
    return "n/a" if b is None else f"{b / 2 ** 30:.2f}"


def format_table(results: List[StageResult], markdown: bool = True) -> str:
    """The per-stage table (and a total row)."""
    head = ["stage", "plain s", "optimised s", "plain/opt", "GFLOP plain", "GFLOP opt", "TFLOP/s plain",
            "TFLOP/s opt", "peak GiB plain", "peak GiB opt", "max abs diff", "max abs ref"]
    if any(r.low_vram for r in results):
        head += ["low-VRAM s", "low-VRAM peak GiB"]
    rows = []
    for r in results:
        row = [r.stage, f"{r.plain.seconds:.3f}", f"{r.opt.seconds:.3f}", f"{r.ratio:.2f}",
               f"{r.flops_plain / 1e9:.1f}", f"{r.flops_opt / 1e9:.1f}",
               f"{r.flops_plain / r.plain.seconds / 1e12:.3f}", f"{r.flops_opt / r.opt.seconds / 1e12:.3f}",
               _gib(r.plain.peak_bytes), _gib(r.opt.peak_bytes), f"{r.max_abs_diff:.2e}", f"{r.max_abs_ref:.2e}"]
        if len(head) > 12:
            row += ["n/a", "n/a"] if r.low_vram is None else [f"{r.low_vram.seconds:.3f}", _gib(r.low_vram.peak_bytes)]
        rows.append(row)
    if results:
        tp = sum(r.plain.seconds for r in results)
        to = sum(r.opt.seconds for r in results)
        fp = sum(r.flops_plain for r in results)
        fo = sum(r.flops_opt for r in results)
        pk = [r.plain.peak_bytes for r in results if r.plain.peak_bytes is not None]
        po = [r.opt.peak_bytes for r in results if r.opt.peak_bytes is not None]
        total = ["total", f"{tp:.3f}", f"{to:.3f}", f"{tp / max(to, 1e-12):.2f}", f"{fp / 1e9:.1f}", f"{fo / 1e9:.1f}",
                 f"{fp / tp / 1e12:.3f}", f"{fo / to / 1e12:.3f}", _gib(max(pk) if pk else None),
                 _gib(max(po) if po else None), "", ""]
        if len(head) > 12:
            lv = [r.low_vram for r in results if r.low_vram is not None]
            total += [f"{sum(m.seconds for m in lv):.3f}", _gib(max((m.peak_bytes or 0) for m in lv))]
        rows.append(total)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, dtype: torch.dtype, sz: Sizes, preset: str) -> Dict[str, str]:
    """Device, dtype and versions for the report header."""
    import transformers

    from actionmesh_core.models.attention import flash_attention_available

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        dev = f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB (CUDA {torch.version.cuda})"
    else:
        dev = f"CPU {_cpu_name()} ({os.cpu_count()} cores), {torch.get_num_threads()} threads"
    return {
        "device": dev, "dtype": str(dtype).replace("torch.", ""), "sizes": sz.name, "preset": preset,
        "steps": f"stage 0 {sz.steps0[preset]}, stage I {sz.steps1[preset]}",
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "flash_attn": "yes" if flash_attention_available() else "no", "attention_backend": get_attention_backend(),
        "date": datetime.date.today().isoformat(),
    }


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="released sizes (GPU)")
    size.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; tests)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="model dtype (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--vae-dtype", default="fp32", choices=["bf16", "fp16", "fp32"],
                   help="SDF field dtype (the pipeline meshes in fp32)")
    p.add_argument("--preset", default="default", choices=["default", "fast"])
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list from {','.join(STAGES)}")
    p.add_argument("--warmup", type=int, default=-1, help="warm-up calls per path (default: 1 on CUDA, 0 on CPU)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per path (the fastest is kept)")
    p.add_argument("--ablations", default=None, help="with --ablate: comma list of the variants to run "
                   f"(default all: {', '.join(ABLATIONS)})")
    p.add_argument("--ablate", action="store_true", help="also time the optimised path with each "
                   "optimisation switched off in turn (and with the CFG split)")
    p.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks (CUDA only)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune, reduce-overhead")
    p.add_argument("--attention", default=None, help="attention backend of the optimised path "
                   "(auto | sdpa | flash | cudnn | math)")
    p.add_argument("--tf32", action="store_true", help="optimised path: TF32 for fp32 matmuls on CUDA "
                   "(SDF field, stage II query path); changes numerics slightly")
    p.add_argument("--cfg-split", action="store_true", help="optimised path runs the CFG branches one by one")
    p.add_argument("--low-vram", action="store_true", help="also run the optimised path with per-stage offloading")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=-1, help="torch CPU threads (default: 1 on CPU, for stable "
                   "timings on a shared machine; 0: torch's default)")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--json", default=None, help="also write results to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> List[StageResult]:
    """Command-line entry point; returns the results (tests call it)."""
    args = _parse(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    threads = args.threads if args.threads >= 0 else (1 if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for but CUDA is not available; run without --device for the CPU mode")
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    dtype = dtypes["bf16" if device.type == "cuda" else "fp32"] if args.dtype == "auto" else dtypes[args.dtype]
    sz = released_sizes() if args.full else tiny_sizes() if args.tiny else reduced_sizes()
    warmup = args.warmup if args.warmup >= 0 else (1 if device.type == "cuda" else 0)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    env = environment(device, dtype, sz, args.preset)
    print(" | ".join(f"{k}: {v}" for k, v in env.items()))
    prev_backend = get_attention_backend()
    if args.attention:
        set_attention_backend(args.attention)
    try:
        results = run_benchmark(sz, device, dtype, vae_dtype=dtypes[args.vae_dtype], preset=args.preset,
                                stages=stages, warmup=warmup, repeats=args.repeats,
                                ablate=(tuple(a.strip() for a in args.ablations.split(",")) if args.ablate and
                                        args.ablations else args.ablate),
                                compile_blocks=args.compile,
                                compile_mode=args.compile_mode, low_vram=args.low_vram,
                                cfg_batch_split=args.cfg_split, tf32=args.tf32, seed=args.seed)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        set_attention_backend(prev_backend)
    print()
    print(format_table(results, markdown=args.markdown))
    for r in results:
        for note in r.notes:
            print(f"note ({r.stage}): {note}")
        if r.compile_s is not None:
            print(f"note ({r.stage}): first compiled call {r.compile_s:.1f}s (not in the table)")
    if args.json:
        payload = {"environment": env, "results": [
            {"stage": r.stage, "plain_s": r.plain.seconds, "optimised_s": r.opt.seconds, "ratio": r.ratio,
             "flops_plain": r.flops_plain, "flops_optimised": r.flops_opt,
             "peak_bytes_plain": r.plain.peak_bytes, "peak_bytes_optimised": r.opt.peak_bytes,
             "low_vram_s": None if r.low_vram is None else r.low_vram.seconds,
             "low_vram_peak_bytes": None if r.low_vram is None else r.low_vram.peak_bytes,
             "max_abs_diff": r.max_abs_diff, "max_abs_ref": r.max_abs_ref, "notes": r.notes}
            for r in results]}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return results


if __name__ == "__main__":
    main()
