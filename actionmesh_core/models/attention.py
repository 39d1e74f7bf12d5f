"""Attention kernel dispatch shared by every model of this package.

Shape legend: B batch, H heads, S query tokens, L key tokens, D head dim.

The backend (:func:`set_attention_backend`) picks the kernel behind
:func:`scaled_dot_product_attention`; the switches it reads (the plain-mode
override ``attention_backend``, ``contiguous_query``) live in
:mod:`actionmesh_core.perf`, which imports nothing from the models.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..perf import ATTENTION_BACKENDS
from ..perf import FLAGS as _PERF

__all__ = [
    "set_attention_backend",
    "get_attention_backend",
    "active_attention_backend",
    "flash_attention_available",
    "scaled_dot_product_attention",
]

_BACKEND = "auto"

try:  # optional: flash-attn is only used on CUDA in half precision
    from flash_attn import flash_attn_func as _flash_attn_func  # type: ignore
except Exception:  # pragma: no cover - depends on the host
    _flash_attn_func = None


def set_attention_backend(name: str) -> None:
    """Choose the attention kernel used by every model in this package.

    Args:
        name: ``"auto"`` (flash-attn when installed and the tensors are CUDA
            fp16/bf16, otherwise PyTorch SDPA), ``"sdpa"`` (always PyTorch
            ``scaled_dot_product_attention``), ``"flash"`` (flash-attn where it
            applies, SDPA elsewhere), ``"cudnn"`` (PyTorch SDPA restricted to
            the cuDNN attention kernel, falling back to flash/memory-efficient
            SDPA kernels where cuDNN does not apply; plain SDPA off CUDA),
            ``"math"`` (explicit softmax(QK^T)V, for debugging).

    :func:`actionmesh_core.perf.plain_mode` overrides the choice with
    ``"sdpa"`` while it is active.

    Raises:
        ValueError: unknown backend name.
    """
    global _BACKEND
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {ATTENTION_BACKENDS}")
    _BACKEND = name


def get_attention_backend() -> str:
    """Return the attention backend name set by :func:`set_attention_backend`."""
    return _BACKEND


def active_attention_backend() -> str:
    """The backend in effect now: the perf-flag override (plain mode) or :func:`get_attention_backend`."""
    return _PERF.attention_backend or _BACKEND


_CUDNN_KERNELS = None


def _cudnn_kernels():
    global _CUDNN_KERNELS
    if _CUDNN_KERNELS is None:
        from torch.nn.attention import SDPBackend

        _CUDNN_KERNELS = [getattr(SDPBackend, name) for name in
                          ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
                          if hasattr(SDPBackend, name)]
    return _CUDNN_KERNELS


def flash_attention_available() -> bool:
    """True when the ``flash_attn`` package imported successfully."""
    return _flash_attn_func is not None


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v with the selected backend.

    On the CPU, with the ``contiguous_query`` switch on (off by default: it
    did not pay when measured, ``benchmarks/RESULTS.md``, "CPU attention
    layout"), a strided query (the (B, S, H, D) -> (B, H, S, D) transpose of a
    fused projection) is copied contiguous first: the same values (tested
    bitwise).

    Args:
        q: (B, H, S, D); k, v: (B, H, L, D). Same dtype and device.

    Returns:
        (B, H, S, D) attention output.
    """
    backend = _PERF.attention_backend or _BACKEND
    use_flash = (
        backend in ("auto", "flash")
        and _flash_attn_func is not None
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] <= 256
    )
    if use_flash:
        out = _flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    if backend == "math":
        scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
        return torch.matmul(scores.softmax(-1), v)
    if backend == "cudnn" and q.is_cuda:
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel(_cudnn_kernels(), set_priority=True):
            return F.scaled_dot_product_attention(q, k, v)
    if _PERF.contiguous_query and q.device.type == "cpu":
        q = q.contiguous()
    return F.scaled_dot_product_attention(q, k, v)
