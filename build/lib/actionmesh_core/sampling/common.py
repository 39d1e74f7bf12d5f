"""Shared sampler utilities: cancellation, progress callbacks, seeded noise."""
from __future__ import annotations

from typing import Callable, Optional

import torch

ProgressCallback = Callable[[dict], Optional[bool]]


class SamplingCancelled(RuntimeError):
    """Raised when a progress callback returns ``False`` (user cancelled)."""


def report(callback: Optional[ProgressCallback], **info) -> None:
    """Call ``callback(info)``; raise :class:`SamplingCancelled` if it returns False."""
    if callback is not None and callback(info) is False:
        raise SamplingCancelled(f"cancelled during {info.get('stage', 'sampling')} "
                                f"step {info.get('step')}/{info.get('total')}")


def seeded_noise(shape, seed: int, correlation: float = 0.0, frame_dim: int = 0) -> torch.Tensor:
    """Standard normal noise made on the CPU from ``seed`` (device-independent results).

    With ``correlation`` c > 0, the noise is shared across frames (ShapeGen4D
    style): ``sqrt(c)·shared + sqrt(1-c)·independent``; c = 1 gives the same
    noise for every frame.

    Args:
        shape: tuple, frames along ``frame_dim`` (e.g. (T, N, C)).
        seed: integer seed.
        correlation: c in [0, 1].

    Returns:
        float32 CPU tensor of ``shape``.

    Raises:
        ValueError: correlation outside [0, 1].
    """
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"noise correlation must be in [0, 1], got {correlation}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    independent = torch.randn(shape, generator=gen, dtype=torch.float32)
    if correlation == 0.0:
        return independent
    shared_shape = list(shape)
    shared_shape[frame_dim] = 1
    shared = torch.randn(shared_shape, generator=gen, dtype=torch.float32)
    return correlation ** 0.5 * shared + (1.0 - correlation) ** 0.5 * independent
