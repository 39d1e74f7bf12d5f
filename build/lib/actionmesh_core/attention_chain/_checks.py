"""Input checks shared by the attention-chain modules (private).

Every public function of the package converts and validates its inputs here so
that bad input fails early with a specific, actionable message instead of a
deep numpy/torch stack trace.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch


def as_numpy(name: str, value: Any, dtype=np.float64, ndim: Optional[int] = None,
             last: Optional[int] = None, finite: bool = True) -> np.ndarray:
    """Return ``value`` (numpy array, torch tensor or nested list) as a numpy array.

    Raises:
        TypeError: if ``value`` is not array-like.
        ValueError: on a wrong number of dimensions, a wrong last dimension or
            non-finite entries.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu")
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()   # numpy has no bfloat16
        arr = value.numpy()
    elif isinstance(value, (np.ndarray, list, tuple)):
        arr = np.asarray(value)
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}")
    if arr.dtype == object:
        raise TypeError(f"{name} must be a rectangular numeric array (got ragged/object data)")
    arr = arr.astype(dtype, copy=False)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(arr.shape)}")
    if last is not None and (arr.ndim == 0 or arr.shape[-1] != last):
        raise ValueError(f"{name} must have last dimension {last}, got shape {tuple(arr.shape)}")
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values; clean the input first")
    return arr


def as_tensor(name: str, value: Any, ndim: Optional[int] = None,
              device: Optional[torch.device] = None) -> torch.Tensor:
    """Return ``value`` as a floating torch tensor (float32 unless already float64).

    Raises:
        TypeError: if ``value`` is not a tensor/array.
        ValueError: on a wrong number of dimensions or non-finite entries.
    """
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(value))
    else:
        raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(value).__name__}")
    if not t.is_floating_point():
        t = t.float()
    elif t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    if device is not None:
        t = t.to(device)
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def check_faces(faces: Any, num_vertices: int, name: str = "faces") -> np.ndarray:
    """Return ``faces`` as an (F, 3) int64 array with indices in ``[0, num_vertices)``."""
    arr = as_numpy(name, faces, dtype=np.float64, ndim=2, last=3)
    if arr.size and not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must contain integer vertex indices")
    arr = arr.astype(np.int64)
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty; the anchor mesh needs at least one triangle")
    if arr.min() < 0 or arr.max() >= num_vertices:
        raise ValueError(f"{name} index outside [0, {num_vertices}) vertices")
    return arr


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """Return ``float(value)`` after checking it is finite and > 0 (or >= 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return v


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``int(value)`` after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_frame(anchor_frame: Any, num_frames: int) -> int:
    """Return the anchor frame index after checking ``0 <= anchor_frame < num_frames``."""
    a = check_int("anchor_frame", anchor_frame, minimum=0)
    if a >= num_frames:
        raise ValueError(f"anchor_frame={a} is outside the {num_frames} frames")
    return a


def seq_len(name: str, seq: Sequence, expected: int) -> None:
    """Raise ValueError unless ``len(seq) == expected``."""
    if len(seq) != expected:
        raise ValueError(f"{name} must have one entry per frame ({expected}), got {len(seq)}")
