"""Host detection for the ``host`` family: ComfyUI modules imported once, or None outside ComfyUI.

Only the ``nodes/host*.py`` modules import ComfyUI; everything else goes through ``nodes/host.py``.
"""
from __future__ import annotations

import functools
import importlib


@functools.lru_cache(maxsize=None)
def _import(name: str):
    """Import a host module once; None when it is missing (plain fallbacks are used)."""
    try:
        return importlib.import_module(name)
    except Exception:  # ComfyUI missing or broken
        return None


def folder_paths_module():
    """ComfyUI's ``folder_paths`` module, or None outside ComfyUI."""
    return _import("folder_paths")


def model_management():
    """ComfyUI's ``comfy.model_management`` module, or None outside ComfyUI."""
    return _import("comfy.model_management")


def has_comfy() -> bool:
    """True when running inside ComfyUI (``folder_paths`` and ``comfy`` importable)."""
    return folder_paths_module() is not None and model_management() is not None
