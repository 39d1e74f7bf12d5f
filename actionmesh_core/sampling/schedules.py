"""Flow-time schedules.

Stage I: release: actionmesh/scheduler/scheduler.py, ``SchedulerFlow._compute_timesteps``,
``SchedulerFlow.get_schedule``. TripoSG (stage 0): release:
third_party/TripoSG/triposg/schedulers/scheduling_rectified_flow.py, ``RectifiedFlowScheduler.set_timesteps``.
"""
from __future__ import annotations

import torch

__all__ = ["flow_timesteps", "triposg_sigmas", "shift_sigma"]


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift ``sigma -> shift·sigma / (1 + (shift-1)·sigma)`` (sigma in [0, 1])."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def _check_schedule(steps: int, shift: float) -> None:
    """Raise ValueError for steps < 1 or shift <= 0 (shared by both schedules)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")


def flow_timesteps(steps: int, shift: float = 3.0, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Stage I flow times: ``steps + 1`` values in (0, 1000], decreasing.

    sigma_min is the shifted sigma of the smallest training step (s = 1/1000);
    ``steps + 1`` values go linearly from 1000 down to 1000·sigma_min and each is
    mapped through the shift. The denoiser is evaluated at the first ``steps``;
    the update uses consecutive differences.

    Args:
        steps: number of denoising steps (>= 1); 30 default, 15 fast.
        shift: time shift (3.0 default).

    Returns:
        (steps + 1,) float64 tensor of flow times in [0, 1000].

    Raises:
        ValueError: steps < 1 or shift <= 0.
    """
    _check_schedule(steps, shift)
    n = float(num_train_timesteps)
    s = torch.tensor(1.0 / n, dtype=torch.float64)
    sigma_min = shift_sigma(s, shift)
    lin = torch.linspace(n, n * float(sigma_min), steps + 1, dtype=torch.float64)
    return shift_sigma(lin / n, shift) * n


def triposg_sigmas(steps: int, shift: float = 1.0) -> torch.Tensor:
    """TripoSG rectified-flow sigmas: ``shift(s_i)``, s_i = 1 - i/steps, then a final 0.

    Returns:
        (steps + 1,) float64 tensor from 1 down to 0; the transformer sees 1000·sigma.

    Raises:
        ValueError: steps < 1 or shift <= 0.
    """
    _check_schedule(steps, shift)
    s = 1.0 - torch.arange(steps, dtype=torch.float64) / steps
    return torch.cat([shift_sigma(s, shift), torch.zeros(1, dtype=torch.float64)])
