"""The pipeline as a workload of given sizes, and its analytic cost (issue #5).

One configuration (:class:`Sizes`: the released sizes, a reduced CPU set, a
tiny set for tests) gives random-weight models of every stage
(:func:`build_models`), synthetic inputs (:func:`synthetic_inputs`) and one
callable per stage (:func:`make_stage_fns`) that runs the library's own
samplers, decoder and extractor on them. :func:`stage_flops` counts, for the
same configuration, the matmul FLOPs of each stage analytically, in the plain
path (:func:`actionmesh_core.perf.plain_mode`) or the optimised one (the perf
switches in effect): what each switch saves, and the achieved TFLOP/s of a
timed run (``benchmarks/bench_pipeline.py`` times the stages; the tests count
the FLOPs of the same calls with ``torch.utils.flop_counter`` and compare).

Stages: DINOv2 features of the frames, stage 0 (TripoSG rectified flow, the
anchor latent), stage I (masked flow matching over one window, ActionMesh
§3.2), stage II (temporal 3D autoencoder decoding the reference vertices at
every target time, §3.3) and SDF meshing of the anchor latent (narrow-band
marching cubes of the TripoSG VAE field).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from actionmesh_core import perf
from actionmesh_core.models import TemporalAutoencoder, TemporalDenoiser, TripoSGDiT, TripoSGVAE
from actionmesh_core.models.dino import DinoV2Encoder
from actionmesh_core.sampling.stage1 import sample_stage1
from actionmesh_core.sampling.stage2 import decode_stage2
from actionmesh_core.sampling.triposg import sample_image_to_3d

STAGES = ("dinov2", "stage0", "stage1", "stage2", "meshing")  # execution order (stage 0 needs DINOv2 features)

# --------------------------------------------------------------------------- sizes


@dataclass
class Sizes:
    """Model and problem sizes of one workload configuration.

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


PROBE_GRID = 17  # the meshing stage's probe grid (points per axis)


def meshing_flops(sz: Sizes, plain: bool, points: Optional[List[int]] = None) -> float:
    """SDF field at the points the narrow-band extractor evaluated, plus the 17^3 probe grid the meshing stage
    evaluates first (level choice and path comparison).

    ``points``: the number of points of each field call of a meshing run (``inputs["meshing_points"]`` once the
    meshing callable of :func:`make_stage_fns` has run: the band depends on the field); ``None``: one dense
    ``grid``^3 call (an upper bound before any run).
    """
    with (perf.plain_mode() if plain else contextlib.nullcontext()):
        flags = perf.get_flags()
        points = [PROBE_GRID ** 3] + (list(points) if points is not None else [sz.grid ** 3])
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
    """Random-weight models of every stage (:func:`build_models`), in eval mode without gradients."""

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


def make_stage_fns(models: Models, sz: Sizes, inputs: dict, preset: str, device: torch.device,
                   seed: int = 0) -> Dict[str, Callable[[int], torch.Tensor]]:
    """Stage callables ``fn(steps_override=0) -> output tensor`` on the given inputs.

    ``inputs`` (:func:`synthetic_inputs`) holds ``images`` (T, H, W, 3) in
    [0, 1], ``context`` (T, S, Dc) DINOv2 tokens, ``anchor`` (1, N, C) and
    ``latents`` (T, N, C) shape latents, ``query`` (V, 6) points and unit
    normals; a caller may replace each by a previous stage's output. A
    non-zero ``steps_override`` shortens the diffusion stages (warm-up). The
    meshing callable leaves ``inputs["meshing_points"]`` (points of each
    field call, for :func:`meshing_flops`) and ``inputs["last_mesh"]``
    (vertices, faces, level).

    Outputs: dinov2 (T, S, Dc), stage0 (1, N, C), stage1 (T, N, C), stage2
    (T, V, 3) vertex positions, meshing the field on the 17^3 probe grid (17^3,).
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
        inputs["meshing_points"] = calls
        inputs["last_mesh"] = (len(mesh.vertices), len(mesh.faces), level)
        return probe

    return dict(stage0=stage0, dinov2=dinov2, stage1=stage1, stage2=stage2, meshing=meshing)


def stage_flops(sz: Sizes, stage: str, preset: str, plain: bool, device="cpu",
                meshing_points: Optional[List[int]] = None) -> float:
    """Analytic matmul FLOPs of one stage of :func:`make_stage_fns` for a path (optimised: the perf flags in effect).

    ``meshing_points``: see :func:`meshing_flops`.

    Raises:
        ValueError: ``stage`` is not one of :data:`STAGES`.
    """
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
        return meshing_flops(sz, plain, meshing_points)
    raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")


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

