"""Autoregressive window plan for clips longer than the model's window (ActionMesh §3.4).

The plan follows the release's window rules (``chunk_from`` in
``actionmesh/model/utils/timesteps.py``, used by stage I and stage II of
``actionmesh/pipeline.py``), so our windows, their run order, the frame order
inside each window and hence the stage II source frame are the release's:

* **Runs.** Windows are laid out in *runs*. A run over the frames ``lo..hi-1``
  is built left to right: its first window holds up to ``window`` frames from
  ``lo``; every next window ends ``slide`` frames further (at most at ``hi``)
  and holds up to ``window`` frames, none below ``lo``. A right-going run is
  used in that order with ascending frames; a left-going run is used in
  reverse order (rightmost window first) with descending frames.
* **Which runs.** Anchor 0: one right-going run over the clip. Anchor on the
  last frame: one left-going run over the clip. Otherwise the side with more
  frames goes first (left first when ``anchor > T - anchor``): left first is
  a left-going run over ``0..anchor`` and then a right-going run over
  ``min(anchor - overlap + 1, T - window)..T-1``; right first is a
  right-going run over ``anchor..T-1`` and then a left-going run over
  ``0..max(min(anchor + overlap, T), window) - 1`` (``overlap = window - slide``).
  Windows can therefore hold fewer than ``window`` frames (e.g. 20 frames,
  anchor 10: ``[10..19]`` then ``[15..0]``).
* **A clip of exactly ``window`` frames** is one window, anchor first and the
  other frames ascending.
* **Clips shorter than ``window``** with the anchor on frame 0 or on the last
  frame are one run (ascending / descending), as the release. With any other
  anchor the release's rules index frames outside the clip (an ``IndexError``,
  or negative indices that wrap around and put frames twice in one window);
  here the clip is one window, anchor first, as for a clip of ``window``
  frames (README "Differences from the official release").

Stage I treats every frame of a window that is already generated as a clean
*source*; stage II deforms the mesh at the window's first frame
(:attr:`Window.order`; see :mod:`actionmesh_core.sampling.stage2`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch

__all__ = ["Window", "plan_windows", "window_alphas"]


@dataclass(frozen=True)
class Window:
    """One window of the plan.

    Attributes:
        order: the window's global frame indices in the release's order (the
            order its latents, image features and frame times are given to the
            models): ascending for a right-going window, descending for a
            left-going one, anchor first for the anchor window. ``order[0]``
            is the frame whose mesh stage II deforms.
        sources: frames of this window already known before it runs (stage I
            keeps them clean), ascending: the anchor for the first window,
            every frame an earlier window generated for later ones.
        direction: ``"anchor"`` for the first window, ``"right"`` or ``"left"``.
    """

    order: Tuple[int, ...]
    sources: Tuple[int, ...]
    direction: str

    @property
    def frames(self) -> Tuple[int, ...]:
        """The window's frames, ascending."""
        return tuple(sorted(self.order))

    @property
    def targets(self) -> Tuple[int, ...]:
        """Frames stage I generates in this window (frames minus sources), ascending."""
        known = set(self.sources)
        return tuple(f for f in self.frames if f not in known)

    @property
    def nearest_source(self) -> int:
        """The known frame closest to the targets (first in the release's order for the anchor window)."""
        if self.direction == "left":
            return min(self.sources)
        if self.direction == "right":
            return max(self.sources)
        return self.order[0]


def window_alphas(frames) -> torch.Tensor:
    """Normalised times of ``frames`` within a window: ``(t - min) / (max - min)`` in float32.

    As the release (``get_scaling`` / ``apply_scaling`` in
    ``actionmesh/model/utils/embeddings.py``), computed in float32 from the
    frame indices; a one-frame window gives 0.

    Args:
        frames: sequence of K global frame indices (the window's; any order).

    Returns:
        (K,) float32 values in [0, 1], in the order given.
    """
    f = torch.tensor(list(frames), dtype=torch.float32)
    lo, span = f.min(), f.max() - f.min()
    return (f - lo) / span if float(span) > 0 else torch.zeros_like(f)


def _run(lo: int, hi: int, window: int, slide: int) -> List[range]:
    """Windows over frames ``lo..hi-1``, left to right (see the module docstring)."""
    stops = [min(lo + window, hi)]
    while stops[-1] < hi:
        stops.append(min(stops[-1] + slide, hi))
    return [range(max(lo, stop - window), stop) for stop in stops]


def _window_orders(num_frames: int, anchor: int, window: int, slide: int) -> List[Tuple[int, ...]]:
    """Every window's frames in run order and in the release's frame order."""

    def right(lo: int, hi: int) -> List[Tuple[int, ...]]:
        return [tuple(r) for r in _run(lo, hi, window, slide)]

    def left(lo: int, hi: int) -> List[Tuple[int, ...]]:
        return [tuple(reversed(r)) for r in reversed(_run(lo, hi, window, slide))]

    t = num_frames
    if t == window or (t < window and 0 < anchor < t - 1):
        return [(anchor,) + tuple(f for f in range(t) if f != anchor)]
    if anchor == 0:
        return right(0, t)
    if anchor == t - 1:
        return left(0, t)
    overlap = window - slide
    if anchor > t - anchor:
        return left(0, anchor + 1) + right(min(max(0, anchor - overlap + 1), t - window), t)
    return right(anchor, t) + left(0, max(min(anchor + overlap, t), window))


def plan_windows(num_frames: int, anchor_frame: int = 0, window: int = 16, slide: int = 15) -> List[Window]:
    """Plan the windows that cover ``num_frames`` frames starting from the anchor (the release's rules).

    Args:
        num_frames: T >= 2.
        anchor_frame: index of the anchor (reference) frame, 0 <= anchor < T.
        window: most frames per window (16 released), >= 2.
        slide: frames between the ends of consecutive windows of a run (15
            released), 1 <= slide < window (at least one frame of overlap).

    Returns:
        list of :class:`Window` in run order; the first holds the anchor as
        its first frame and only source, every later one holds at least one
        frame generated before it, and every frame is generated by exactly one
        window (its stage I target).

    Raises:
        ValueError: any argument out of range (message says the valid range).
    """
    if num_frames < 2:
        raise ValueError(f"ActionMesh needs at least 2 frames, got {num_frames}")
    if not 0 <= anchor_frame < num_frames:
        raise ValueError(f"anchor_frame must be in [0, {num_frames - 1}], got {anchor_frame}")
    if window < 2:
        raise ValueError(f"window must be >= 2 frames, got {window}")
    if not 1 <= slide < window:
        raise ValueError(f"slide must be in [1, {window - 1}] so consecutive windows overlap, got {slide}")
    plans: List[Window] = []
    known = {anchor_frame}
    for order in _window_orders(num_frames, anchor_frame, window, slide):
        if plans:
            direction = "left" if order[0] > order[-1] else "right"
        else:
            direction = "anchor"
        plans.append(Window(order, tuple(sorted(known.intersection(order))), direction))
        known.update(order)
    return plans
