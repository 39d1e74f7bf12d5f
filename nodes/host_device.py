"""Host device and memory: compute/offload devices, dtypes, moving a model to the device for a block.

Inside ComfyUI ``comfy.model_management`` decides; outside: CUDA if available, else MPS, else CPU.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

from .host_base import model_management



def torch_device() -> torch.device:
    """ComfyUI's compute device, else CUDA, then MPS, then CPU."""
    mm = model_management()
    if mm is not None and hasattr(mm, "get_torch_device"):
        return torch.device(mm.get_torch_device())
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def offload_device() -> torch.device:
    """Where models rest between node runs (ComfyUI's offload device, else CPU)."""
    mm = model_management()
    if mm is not None and hasattr(mm, "unet_offload_device"):
        try:
            return torch.device(mm.unet_offload_device())
        except Exception:
            pass
    return torch.device("cpu")


def soft_empty_cache() -> None:
    """Free cached accelerator memory (ComfyUI's ``soft_empty_cache`` or torch's)."""
    mm = model_management()
    if mm is not None and hasattr(mm, "soft_empty_cache"):
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_dtype(choice: str, device: Optional[torch.device] = None) -> str:
    """Weight dtype name (``fp32``/``fp16``/``bf16``) for a loader's ``dtype`` choice.

    ``auto`` = bf16 on CUDA when supported, else fp16 on CUDA, fp32 elsewhere.

    Raises:
        ValueError: unknown choice.
    """
    if choice in ("fp32", "fp16", "bf16"):
        return choice
    if choice != "auto":
        raise ValueError(f"unknown dtype {choice!r}; choose auto, fp32, fp16 or bf16")
    device = device or torch_device()
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def module_dtype(module, default: torch.dtype = torch.float32) -> torch.dtype:
    """Floating dtype of a module's first floating parameter (``default`` if none)."""
    params = getattr(module, "parameters", None)
    if callable(params):
        for p in params():
            if p.is_floating_point():
                return p.dtype
    return default


@contextlib.contextmanager
def on_device(module) -> Iterator[torch.device]:
    """Move ``module`` to the compute device for a block, then back to the offload device.

    Keeps at most one ActionMesh model on the accelerator at a time (models
    rest on the offload device between node runs) and frees the cache after.
    Objects without ``.to`` are left where they are.

    Yields:
        the compute device.
    """
    device = torch_device()
    movable = callable(getattr(module, "to", None))
    if movable:
        module.to(device)
    try:
        yield device
    finally:
        if movable:
            module.to(offload_device())
        if device.type != "cpu":
            soft_empty_cache()
