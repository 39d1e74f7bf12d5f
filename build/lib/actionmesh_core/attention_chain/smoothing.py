"""Confidence-weighted Gaussian temporal smoothing of displacements (attention-chains app. D.1).

``v_hat[f] = v_a + sum_j G(f, j) c[j] (v_tilde[j] - v_a) / (sum_j G(f, j) c[j] + eps)``
with ``G(f, j) = exp(-(f - j)^2 / (2 sigma^2))`` (sigma in frames): the
*displacements* from the anchor pose are smoothed, so a landmark that never
moves stays exactly where it is, and frames with confidence 0 (outliers) are
bridged from their reliable neighbours.  The anchor frame is an observation
with zero displacement and is pinned to the anchor geometry in the output.
Used with sigma = 1.5 on landmarks and, with all confidences 1, sigma = 1.0 on
the final dense vertex displacement field (appendix C).

Shape legend: T frames, L points (landmarks or vertices).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ._checks import as_numpy, check_frame, check_positive

__all__ = ["SIGMA_LANDMARK", "SIGMA_FINAL", "smooth_trajectories"]

#: Published temporal sigma (frames) of the landmark displacement smoothing.
SIGMA_LANDMARK = 1.5
#: Published temporal sigma (frames) of the final vertex displacement smoothing.
SIGMA_FINAL = 1.0

_TRUNCATE = 4.0  # kernel support in sigmas (the kernel beyond is < 3.4e-4 of its peak)


def smooth_trajectories(anchor_positions, trajectories, anchor_frame: int,
                        confidence=None, sigma: float = SIGMA_LANDMARK,
                        eps: float = 1e-8) -> np.ndarray:
    """Confidence-weighted Gaussian smoothing of per-point displacements over time (app. D.1).

    The sums run over the frames inside the sequence only (no padding or
    reflection at the ends); the kernel is truncated at 4 sigma.  The anchor
    frame's displacement is taken as 0 with the largest confidence of that
    point, and the output at the anchor frame is exactly ``anchor_positions``.
    Invalid (non-finite) trajectory entries must carry confidence 0.

    Args:
        anchor_positions: (L, 3) positions on the anchor mesh v_a.
        trajectories: (T, L, 3) raw positions v_tilde (entries with confidence 0
            may be NaN).
        anchor_frame: index in [0, T).
        confidence: optional (T, L) non-negative weights c (e.g. the outlier
            mask of :func:`~actionmesh_core.attention_chain.landmarks.reject_outliers`);
            default all ones.
        sigma: Gaussian sigma in frames (> 0); published 1.5 for landmarks, 1.0
            for the final vertex field.
        eps: the paper's stabiliser of the denominator (weights are the
            normalised kernel, so a point with no reliable frame within reach
            keeps a displacement of about 0).

    Returns:
        (T, L, 3) float64 smoothed positions v_hat.

    Raises:
        ValueError: on shape mismatch, negative confidence, a non-finite
            trajectory entry with positive confidence, or sigma <= 0.
    """
    a = as_numpy("anchor_positions", anchor_positions, ndim=2, last=3)
    tr = as_numpy("trajectories", trajectories, ndim=3, last=3, finite=False)
    if tr.shape[1:] != a.shape:
        raise ValueError(f"trajectories {tr.shape} must be (T, {a.shape[0]}, 3) to match anchor_positions")
    num_frames = tr.shape[0]
    anchor_frame = check_frame(anchor_frame, num_frames)
    sigma = check_positive("sigma", sigma)
    eps = check_positive("eps", eps, allow_zero=True)
    if confidence is None:
        c = np.ones(tr.shape[:2])
    else:
        c = as_numpy("confidence", confidence, ndim=2)
        if c.shape != tr.shape[:2]:
            raise ValueError(f"confidence must be (T, L) = {tr.shape[:2]}, got {c.shape}")
        if (c < 0).any():
            raise ValueError("confidence must be non-negative")
    finite = np.isfinite(tr).all(-1)
    if ((~finite) & (c > 0)).any():
        raise ValueError("trajectories has NaN/inf entries with positive confidence; give them confidence 0")
    disp = np.where(finite[..., None], tr - a[None], 0.0)
    c = c.astype(np.float64).copy()
    disp[anchor_frame] = 0.0
    c[anchor_frame] = np.maximum(c.max(0), 1e-12) if num_frames > 1 else 1.0
    num = gaussian_filter1d(disp * c[..., None], sigma, axis=0, mode="constant", cval=0.0, truncate=_TRUNCATE)
    den = gaussian_filter1d(c, sigma, axis=0, mode="constant", cval=0.0, truncate=_TRUNCATE)
    out = a[None] + num / (den[..., None] + eps)
    out[anchor_frame] = a
    return out
