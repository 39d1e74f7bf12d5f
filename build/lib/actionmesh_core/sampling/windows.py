"""Autoregressive window plan for clips longer than the model's window (REFERENCE §3).

Windows of ``window`` frames slide by ``slide`` frames; they are built outward
from the anchor frame (towards the longer side first: right of the anchor
when it sits left of the middle). Each later window takes the frames already
generated in its overlap as *source* frames and generates the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

__all__ = ["Window", "plan_windows"]


@dataclass(frozen=True)
class Window:
    """One window of the plan.

    Attributes:
        frames: global frame indices of the window, increasing (length
            ``min(window, num_frames)``).
        sources: frames of this window already known before it runs (the
            anchor for the first window, the overlap for later ones).
        direction: ``"anchor"`` for the first window, ``"right"`` or ``"left"``.
    """

    frames: Tuple[int, ...]
    sources: Tuple[int, ...]
    direction: str

    @property
    def targets(self) -> Tuple[int, ...]:
        """Frames this window generates (frames minus sources)."""
        known = set(self.sources)
        return tuple(f for f in self.frames if f not in known)

    @property
    def nearest_source(self) -> int:
        """The known frame closest to the targets (the stage II source frame)."""
        if self.direction == "left":
            return min(self.sources)
        if self.direction == "right":
            return max(self.sources)
        return self.sources[0]


def plan_windows(num_frames: int, anchor_frame: int = 0, window: int = 16, slide: int = 15) -> List[Window]:
    """Plan the windows that cover ``num_frames`` frames starting from the anchor.

    Args:
        num_frames: T >= 2.
        anchor_frame: index of the anchor (reference) frame, 0 <= anchor < T.
        window: frames per window (16 released), >= 2.
        slide: frames between consecutive window starts (15 released),
            1 <= slide < window (at least one frame of overlap).

    Returns:
        list of :class:`Window`; the first contains the anchor as its only
        source; together the windows' targets cover every other frame once.

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
    size = min(window, num_frames)
    right_first = anchor_frame < (num_frames - 1) / 2
    start = anchor_frame if right_first else anchor_frame - size + 1
    start = max(0, min(start, num_frames - size))
    plans = [Window(tuple(range(start, start + size)), (anchor_frame,), "anchor")]
    lo, hi = start, start + size - 1  # covered range

    def right() -> None:
        nonlocal hi
        last_start = plans[0].frames[0]
        while hi < num_frames - 1:
            last_start = min(last_start + slide, num_frames - size)
            frames = tuple(range(last_start, last_start + size))
            plans.append(Window(frames, tuple(f for f in frames if f <= hi), "right"))
            hi = frames[-1]

    def left() -> None:
        nonlocal lo
        first_start = plans[0].frames[0]
        while lo > 0:
            first_start = max(first_start - slide, 0)
            frames = tuple(range(first_start, first_start + size))
            plans.append(Window(frames, tuple(f for f in frames if f >= lo), "left"))
            lo = frames[0]

    for extend in ((right, left) if right_first else (left, right)):
        extend()
    return plans
