"""``torch.compile`` of the transformer blocks of this package's models (a CUDA option)."""
from __future__ import annotations

from typing import Optional, Sequence, Type

from torch import nn

from .layers import TransformerBlock

__all__ = ["compile_blocks", "uncompile_blocks"]


def compile_blocks(model: nn.Module, mode: Optional[str] = None, dynamic: Optional[bool] = None,
                   block_types: Optional[Sequence[Type[nn.Module]]] = None, allow_cpu: bool = False) -> int:
    """``torch.compile`` every transformer block of ``model`` in place.

    Compiling blocks (not the whole model) keeps the Python-side control flow
    (long-skip stack, K/V caches, samplers) eager while fusing the elementwise
    work inside a block (fp32 norms, RoPE, GELU, residual adds). Use
    ``mode="reduce-overhead"`` for CUDA graphs (with the ``static_chunks`` switch).

    Args:
        model: a model of this package (or any module containing ``block_types``).
        mode, dynamic: passed to ``nn.Module.compile``.
        block_types: classes to compile (default: ``TransformerBlock``).
        allow_cpu: compiling on CPU needs a C++ toolchain and rarely pays
            off; refused unless True.

    Returns:
        number of blocks compiled.

    Raises:
        RuntimeError: the model is on the CPU and ``allow_cpu`` is False.
    """
    param = next(model.parameters(), None)
    if param is not None and param.device.type == "cpu" and not allow_cpu:
        raise RuntimeError("compile_blocks: the model is on the CPU; torch.compile is a CUDA option here "
                           "(pass allow_cpu=True to force it)")
    types = tuple(block_types) if block_types else (TransformerBlock,)
    count = 0
    for module in model.modules():
        if isinstance(module, types):
            module.compile(mode=mode, dynamic=dynamic)
            count += 1
    return count


def uncompile_blocks(model: nn.Module) -> int:
    """Undo :func:`compile_blocks` (blocks run eagerly again); returns how many were reset."""
    count = 0
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
            count += 1
    return count
