"""Host device and memory: compute/offload devices, dtypes, moving a model to the device for a block.

Inside ComfyUI ``comfy.model_management`` decides; outside: CUDA if available, else MPS, else CPU.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

from actionmesh_core.stages import Models

from .host_base import _import, model_management



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


def model_patcher(module):
    """ComfyUI's model patcher wrapping a pack model (created once per model and kept on it).

    The patcher is ``comfy.model_patcher.CoreModelPatcher`` (``ModelPatcher``) with ComfyUI's compute
    device as load device and its offload device, as core does for its own non-diffusion models (CLIP
    vision, background removal): ComfyUI then counts the model in its loaded-model list, offloads it to
    make room for other models and evicts it on ``POST /free``.

    Returns:
        the patcher, or None outside ComfyUI or for an object that is not a ``torch.nn.Module``.
    """
    patcher_module = _import("comfy.model_patcher")
    if patcher_module is None or model_management() is None or not isinstance(module, torch.nn.Module):
        return None
    patcher = module.__dict__.get("_comfy_model_patcher")
    if patcher is None:
        cls = getattr(patcher_module, "CoreModelPatcher", None) or patcher_module.ModelPatcher
        patcher = cls(module, load_device=torch_device(), offload_device=offload_device())
        module.__dict__["_comfy_model_patcher"] = patcher  # plain attribute: not a sub-module, not in state_dict
    return patcher


@contextlib.contextmanager
def on_device(*modules) -> Iterator[torch.device]:
    """Have ``modules`` on the compute device for a block.

    Inside ComfyUI every ``torch.nn.Module`` goes through its memory manager: its ``model_patcher`` is loaded
    with ``comfy.model_management.load_models_gpu`` (all of them in one call, fully: the pack's layers are
    plain torch layers without ComfyUI's low-VRAM casting), which first offloads other models as its policy
    says; the models then stay loaded until ComfyUI needs the room (or ``POST /free``) and are moved back to
    the offload device by ComfyUI itself.

    Outside ComfyUI the library keeps its own handling: each movable model goes to the compute device
    (CUDA, else MPS, else CPU) and back to the offload device (CPU) after the block, and the accelerator
    cache is freed, so at most one pack model holds accelerator memory between node runs.
    Objects without ``.to`` are left where they are.

    Yields:
        the compute device.
    """
    device = torch_device()
    patchers = [p for p in (model_patcher(m) for m in modules) if p is not None]
    if patchers:
        model_management().load_models_gpu(patchers, force_full_load=True)
        yield device
        return
    movable = [m for m in modules if callable(getattr(m, "to", None))]
    for module in movable:
        module.to(device)
    try:
        yield device
    finally:
        for module in movable:
            module.to(offload_device())
        if device.type != "cpu":
            soft_empty_cache()


class NodeModels(Models):
    """The stage layer's models (:class:`actionmesh_core.stages.Models`) of a node's inputs: each ``use``
    block runs inside :func:`on_device` (ComfyUI's memory manager inside ComfyUI)."""

    @contextlib.contextmanager
    def use(self, *names: str):
        """The models ``names`` on the compute device for the block (one model, or a tuple)."""
        models = tuple(self.get(name) for name in names)
        with on_device(*models):
            yield models[0] if len(models) == 1 else models
