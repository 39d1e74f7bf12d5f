"""Speed switches shared by the models and samplers (issue #5).

The library runs the *optimised* path by default. :func:`plain_mode` switches
every optimisation off at once so that a benchmark (``benchmarks/bench_pipeline.py``)
or a test can run the *same code* with the same math, one switch apart:

==================  ==========================================  ===========================
flag                optimised (default)                          plain
==================  ==========================================  ===========================
cache_cross_kv      image-context K/V of every cross-attention   recomputed at every model
                    computed once per denoising run (stage 0,    call / every query chunk
                    stage I, SDF field)
fused_qkv           one GEMM for [q|k|v] (self) / [k|v] (cross)  one GEMM per projection,
                                                                 then concatenated
batch_targets       stage II: target times of a window batched   one pass per target time
                    into one pass (exact: the target time only   (and post_quant per pass)
                    enters through the alpha token); how many:
                    :func:`stage2_targets_per_pass`
token_major         QK norm and RoPE applied to the (B, S, H, D)  applied to the (B, H, S, D)
                    views of the fused projection (the loops     transposes (strided loops)
                    follow the memory order; same values)
attention_backend   the backend set by                            ``"sdpa"`` forced
                    :func:`~actionmesh_core.models.attention.set_attention_backend`
                    (``"auto"``: flash-attn for CUDA bf16/fp16)
==================  ==========================================  ===========================

CPU attention layout (off by default, identical results): ``contiguous_query``
copies the fused projection's strided (B, H, S, D) query contiguous before the
CPU SDPA call. Measured side by side it does not pay on the CPUs tried
(``benchmarks/RESULTS.md``, "CPU attention layout": 0.90-1.05x per call at
1 thread, stage times within noise), so the strided query stays the default.

Memory/compile options (off by default, identical results):

- ``cfg_batch_split``: run the two classifier-free-guidance branches one
  after the other instead of as a batch of two (lower peak memory).
- ``static_chunks``: pad the last chunk of chunked query loops (stage II
  query vertices, SDF grid points) to the full chunk size, so every call has
  the same shape (``torch.compile`` without recompiles, CUDA graphs).
- ``target_batch``: stage II target times per pass when batching
  (``None`` = automatic, see :func:`stage2_targets_per_pass`).

Numerics option (off by default, opt-in, CUDA only): ``tf32`` lets the fp32
query paths (the SDF field evaluated for meshing, see
:func:`actionmesh_core.geometry.meshing.sdf_to_meshes`, and anything run inside
:func:`tf32_matmuls`) use TF32 tensor cores: ~8x the fp32 matmul rate on
an H100, 10-bit mantissa products (not bit-identical to fp32).

Helpers: :func:`offload` (low-VRAM mode: a model lives on the device only
while its stage runs), :func:`reset_peak_memory` / :func:`peak_memory`.
The attention kernel dispatch and ``torch.compile`` of the transformer blocks
live with the models (:mod:`actionmesh_core.models.attention`).

Nothing here imports the model modules (they import this one).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import torch
from torch import nn

__all__ = [
    "PerfFlags",
    "get_flags",
    "set_flags",
    "perf_flags",
    "plain_mode",
    "stage2_targets_per_pass",
    "STAGE2_CUDA_TOKEN_BUDGET",
    "query_chunk_points",
    "CPU_QUERY_CHUNK_BYTES",
    "ACCELERATOR_QUERY_CHUNK_BYTES",
    "offload",
    "ATTENTION_BACKENDS",
    "reset_peak_memory",
    "peak_memory",
    "module_bytes",
    "tf32_matmuls",
    "tune_cpu_allocator",
]


@dataclass
class PerfFlags:
    """Current speed switches (see the module docstring for each flag's effect).

    Attributes:
        cache_cross_kv: bool, default True.
        fused_qkv: bool, default True.
        batch_targets: bool, default True.
        token_major: bool, default True.
        attention_backend: None (keep the backend chosen with
            ``set_attention_backend``) or one of its names, forced while set.
        cfg_batch_split: bool, default False (samplers' default when their
            ``cfg_batch_split`` argument is None).
        static_chunks: bool, default False.
        target_batch: None (automatic) or int >= 1, see
            :func:`stage2_targets_per_pass`.
        tf32: bool, default False: TF32 matmuls inside :func:`tf32_matmuls`.
        contiguous_query: bool, default False: the CPU SDPA call gets a
            contiguous query (see :func:`~actionmesh_core.models.attention.scaled_dot_product_attention`).
    """

    cache_cross_kv: bool = True
    fused_qkv: bool = True
    batch_targets: bool = True
    token_major: bool = True
    attention_backend: Optional[str] = None
    cfg_batch_split: bool = False
    static_chunks: bool = False
    target_batch: Optional[int] = None
    tf32: bool = False
    contiguous_query: bool = False


ATTENTION_BACKENDS = ("auto", "sdpa", "flash", "cudnn", "math")
"""Values of the attention backend (:func:`~actionmesh_core.models.attention.set_attention_backend`, the
``attention_backend`` switch)."""

FLAGS = PerfFlags()
_BOOL_FLAGS = ("cache_cross_kv", "fused_qkv", "batch_targets", "token_major", "cfg_batch_split", "static_chunks",
               "tf32", "contiguous_query")


def get_flags() -> PerfFlags:
    """The live :class:`PerfFlags` object (read it, change it through :func:`set_flags`)."""
    return FLAGS


def _validate(changes: dict) -> None:
    names = {f.name for f in dataclasses.fields(PerfFlags)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown perf flag(s) {unknown}; valid flags: {sorted(names)}")
    for key in _BOOL_FLAGS:
        if key in changes and not isinstance(changes[key], bool):
            raise TypeError(f"perf flag {key} must be a bool, got {changes[key]!r}")
    if "attention_backend" in changes and changes["attention_backend"] is not None:
        if changes["attention_backend"] not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be None or one of {ATTENTION_BACKENDS}, "
                             f"got {changes['attention_backend']!r}")
    tb = changes.get("target_batch")
    if tb is not None and (isinstance(tb, bool) or not isinstance(tb, int) or tb < 1):
        raise ValueError(f"target_batch must be None or an int >= 1, got {tb!r}")


def set_flags(**changes) -> PerfFlags:
    """Change speed switches globally; returns the previous values (a copy).

    Raises:
        ValueError: unknown flag name, bad backend name or bad ``target_batch``.
        TypeError: a boolean flag given a non-bool.
    """
    _validate(changes)
    previous = dataclasses.replace(FLAGS)
    for key, value in changes.items():
        setattr(FLAGS, key, value)
    return previous


@contextlib.contextmanager
def perf_flags(**changes) -> Iterator[PerfFlags]:
    """Context manager: set some switches for the ``with`` block, restore them after.

    Example: ``with perf_flags(cfg_batch_split=True): sample_stage1(...)``.

    Raises:
        ValueError / TypeError: as :func:`set_flags`.
    """
    previous = set_flags(**changes)
    try:
        yield FLAGS
    finally:
        for field in dataclasses.fields(PerfFlags):
            setattr(FLAGS, field.name, getattr(previous, field.name))


def plain_mode() -> "contextlib.AbstractContextManager[PerfFlags]":
    """Context manager running the *plain* path: same math, no optimisation.

    Disables cross-attention K/V caching, the fused QKV GEMM, stage II target
    batching, the token-major QK norm/RoPE layout, static chunk padding,
    CFG splitting, TF32 and the contiguous CPU query, and forces PyTorch SDPA
    attention. Everything else (models, samplers, schedules) is the same code.
    """
    return perf_flags(cache_cross_kv=False, fused_qkv=False, batch_targets=False, token_major=False,
                      attention_backend="sdpa", contiguous_query=False,
                      cfg_batch_split=False, static_chunks=False, target_batch=None, tf32=False)


@contextlib.contextmanager
def tf32_matmuls(enabled: Optional[bool] = None) -> Iterator[bool]:
    """Context manager: fp32 matmuls/convolutions may use TF32 inside the block (CUDA), restored after.

    Args:
        enabled: True/False, or None to follow the ``tf32`` flag (off by default).

    Yields:
        whether TF32 is on inside the block. No effect on the CPU.
    """
    on = FLAGS.tf32 if enabled is None else bool(enabled)
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield on
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# --------------------------------------------------------------------------- stage II target batching

STAGE2_CUDA_TOKEN_BUDGET = 2 ** 17
"""Tokens (targets x sequence length) per batched stage II pass on CUDA (automatic policy)."""


def stage2_targets_per_pass(num_targets: int, seq_len: int, device: Union[str, torch.device]) -> int:
    """How many stage II target times one autoencoder pass takes.

    Batching target times is exact (each target is its own sequence; the
    target time only enters through the alpha token). Policy, from the
    benchmark: with ``batch_targets`` off -> 1; an explicit ``target_batch``
    flag wins; otherwise on CUDA as many targets as fit in
    :data:`STAGE2_CUDA_TOKEN_BUDGET` tokens (all 15 of a window for short
    sequences; 3 per pass at the released 16 x 2049 tokens, which bounds the
    activation memory), and on the CPU one per pass (the reduced CPU
    benchmark measured one target per pass 14% faster than all 15 in one
    batch: smaller working set, same FLOPs).

    Args:
        num_targets: target times of the window (>= 1).
        seq_len: tokens of one target's sequence (T·N + T).
        device: where the autoencoder runs.

    Returns:
        int in [1, num_targets].

    Raises:
        ValueError: num_targets or seq_len < 1.
    """
    if num_targets < 1 or seq_len < 1:
        raise ValueError(f"num_targets and seq_len must be >= 1, got {num_targets}, {seq_len}")
    if not FLAGS.batch_targets:
        return 1
    if FLAGS.target_batch is not None:
        return min(FLAGS.target_batch, num_targets)
    if torch.device(device).type == "cuda":
        return max(1, min(num_targets, STAGE2_CUDA_TOKEN_BUDGET // seq_len))
    return 1


CPU_QUERY_CHUNK_BYTES = 8 * 2**20
"""CPU budget of one query chunk's widest activation (bytes): small enough to stay in the caches."""

ACCELERATOR_QUERY_CHUNK_BYTES = 2**30
"""Accelerator budget of one query chunk's widest activation (bytes, counted in fp32): one field of the released
VAE keeps the default 2^16 points (2^16 x 4096 x 4 B = 1 GiB), 16 frames batched get 2^12 (the same rows per
GEMM); without it the 16 batched frames held 16 GiB per feed-forward buffer (our reading of the attention-chain
preset's 54.4 GB peak on an H200, 2026-12-04: not measured part by part)."""


def query_chunk_points(device: Union[str, torch.device], floats_per_point: int, default: int = 2**16) -> int:
    """Points per chunk of a chunked query loop (the SDF field of :class:`~actionmesh_core.models.vae.TripoSGVAE`).

    Each query point is independent, so the chunk size changes no value
    beyond float32 rounding (the GEMM kernels block other row counts
    differently; tested), only speed and memory: the largest power of two
    whose widest activation (``floats_per_point`` fp32 values per point,
    e.g. batch x feed-forward width) fits in a byte budget, within [2^10,
    ``default``].  On the CPU the budget is :data:`CPU_QUERY_CHUNK_BYTES`:
    the feed-forward pass then runs in the caches instead of streaming
    through memory (tiny-weights VAE field on 2 cores: 0.42 us per point at
    2^14 points vs 0.87 us at 2^18 and 0.74 us at 2^16,
    ``benchmarks/bench_meshing.py --cpu-parts``).  On CUDA (and other
    accelerators) it is :data:`ACCELERATOR_QUERY_CHUNK_BYTES`, which bounds
    the peak memory of a field batched over many latents (the attention
    chain's 16 frames: 1 GiB per activation instead of 16 GiB at the
    released width) and leaves one latent's chunk at ``default``.

    Args:
        device: where the queries run.
        floats_per_point: fp32 values of the widest per-point activation (>= 1).
        default: the chunk on accelerators and the CPU's upper bound (>= 1).

    Returns:
        int >= 1.

    Raises:
        ValueError: floats_per_point or default < 1.
    """
    if floats_per_point < 1 or default < 1:
        raise ValueError(f"floats_per_point and default must be >= 1, got {floats_per_point}, {default}")
    budget = CPU_QUERY_CHUNK_BYTES if torch.device(device).type == "cpu" else ACCELERATOR_QUERY_CHUNK_BYTES
    fit = budget // (4 * int(floats_per_point))
    return int(min(default, max(2**10, 1 << max(0, fit.bit_length() - 1))))


def tune_cpu_allocator(threshold: int = 1 << 30) -> bool:
    """Let glibc's malloc keep large freed CPU buffers for reuse (process-wide; the CLI calls it).

    By default glibc maps every allocation above a few MB afresh and unmaps it
    when freed, so each large temporary tensor or array (SDF meshing, mesh
    clean-up) starts on zeroed pages: millions of page faults and seconds of
    system time in a CPU run. This raises the mmap and trim thresholds
    (``mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD)``) to ``threshold`` bytes,
    so buffers below it come from the heap and freed ones are reused
    (tiny-weights 16-frame CLI run on 2 cores: page faults 0.80 M -> 0.34 M,
    wall 18.4 -> 17.5 s, ~60-140 MB more peak RSS;
    ``benchmarks/bench_meshing.py --cpu-parts``). The freed memory (up to
    ``threshold``) stays with the process until it exits. Nothing is changed when the user set any ``MALLOC_*`` variable
    (glibc's own tuning), off Linux, or without glibc.

    Args:
        threshold: bytes (> 0).

    Returns:
        True when both thresholds were set.
    """
    import ctypes
    import os
    import sys

    if threshold <= 0:
        raise ValueError(f"threshold must be > 0 bytes, got {threshold}")
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, int(threshold))) and bool(mallopt(m_trim_threshold, int(threshold)))


# --------------------------------------------------------------------------- low-VRAM mode


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


@contextlib.contextmanager
def offload(model: nn.Module, device: Union[str, torch.device], home: Union[str, torch.device] = "cpu",
            enabled: bool = True) -> Iterator[nn.Module]:
    """Low-VRAM mode: keep ``model`` on ``device`` only inside the ``with`` block.

    The model is moved to ``device`` on entry and back to ``home`` (CPU by
    default) on exit, even when the block raises; on CUDA the caching
    allocator is emptied so the next stage gets the memory. With
    ``enabled=False`` nothing moves (the same code serves both modes).

    Args:
        model: any ``nn.Module`` (e.g. the denoiser for stage I).
        device: where the stage runs ("cuda", "cuda:0", "cpu", torch.device).
        home: where the model waits between stages.
        enabled: False = no-op.

    Yields:
        the model (moved).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"offload() needs a torch.nn.Module, got {type(model).__name__}")
    if not enabled:
        yield model
        return
    device, home = torch.device(device), torch.device(home)
    model.to(device)
    try:
        yield model
    finally:
        model.to(home)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------- memory figures


def reset_peak_memory(device: Union[str, torch.device]) -> None:
    """Reset the CUDA peak-memory counter of ``device`` (no-op elsewhere)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: Union[str, torch.device]) -> Optional[int]:
    """Peak bytes allocated on a CUDA ``device`` since :func:`reset_peak_memory`; None off CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))
