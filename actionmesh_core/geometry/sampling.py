"""Point sampling on meshes and point clouds.

Shape legend: P points, K samples.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["farthest_point_sampling"]


def farthest_point_sampling(
    points: torch.Tensor,
    k: int,
    seed: int = 0,
    start: Optional[int] = None,
    score_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Vectorised farthest-point sampling (runs on any torch device).

    Greedy FPS: start from one point, then repeatedly take the point whose
    (optionally weighted) distance to the chosen set is largest.  Used for the
    TripoSG encoder query points (release: actionmesh/external/triposg.py,
    ``TripoSGVAE._sample_features``) and for attention-chain
    landmarks (attention-chains paper §4.2, with curvature ``score_weights``).

    Args:
        points: (P, 3) float tensor, any units.
        k: number of samples, 1 <= k <= P.
        seed: seeds the choice of the first point when ``start`` is None
            (same seed -> same samples).
        start: index of the first point; overrides ``seed``.
        score_weights: optional (P,) non-negative multipliers of the squared
            distance used to pick the next point (e.g. ``1 + alpha*curvature``).

    Returns:
        (K,) int64 indices into ``points`` (distinct while k <= number of
        distinct points), on ``points.device``.

    Raises:
        ValueError: if ``points`` is not (P, 3), ``k`` is out of range, or
            ``score_weights`` has the wrong shape.
    """
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"farthest_point_sampling expects points of shape (P, 3), got {tuple(points.shape)}")
    num = points.shape[0]
    if not 1 <= k <= num:
        raise ValueError(f"farthest_point_sampling: k must be in [1, {num}] for {num} points, got {k}")
    if score_weights is not None and score_weights.shape != (num,):
        raise ValueError(f"score_weights must have shape ({num},), got {tuple(score_weights.shape)}")
    pts = points.float()
    if start is None:
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        start = int(torch.randint(num, (1,), generator=gen))
    chosen = torch.empty(k, dtype=torch.long, device=pts.device)
    chosen[0] = start
    min_d2 = ((pts - pts[start]) ** 2).sum(-1)
    weights = None if score_weights is None else score_weights.to(pts.device, torch.float32)
    for i in range(1, k):
        score = min_d2 if weights is None else min_d2 * weights
        nxt = torch.argmax(score)
        chosen[i] = nxt
        min_d2 = torch.minimum(min_d2, ((pts - pts[nxt]) ** 2).sum(-1))
    return chosen
