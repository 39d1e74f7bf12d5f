"""Host progress and interruption: ComfyUI's progress bar and Cancel, tqdm and a flag outside it."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .host_base import _import, model_management

class Interrupted(Exception):
    """Raised by ``check_interrupted`` outside ComfyUI when an interrupt was requested."""


_interrupt_requested = False


def request_interrupt(value: bool = True) -> None:
    """Fallback interrupt flag (outside ComfyUI): the next ``check_interrupted`` raises."""
    global _interrupt_requested
    _interrupt_requested = bool(value)


def processing_interrupted() -> bool:
    """True when the user pressed Cancel in ComfyUI (or ``request_interrupt`` was called)."""
    mm = model_management()
    if mm is not None and hasattr(mm, "processing_interrupted"):
        return bool(mm.processing_interrupted())
    return _interrupt_requested


def check_interrupted() -> None:
    """Raise the host's interrupt exception if processing was cancelled.

    Inside ComfyUI this is ``comfy.model_management.throw_exception_if_processing_interrupted``
    (raises ``InterruptProcessingException``); outside it raises ``Interrupted``.
    """
    mm = model_management()
    if mm is not None and hasattr(mm, "throw_exception_if_processing_interrupted"):
        mm.throw_exception_if_processing_interrupted()
        return
    global _interrupt_requested
    if _interrupt_requested:
        _interrupt_requested = False
        raise Interrupted("processing interrupted")




class _TqdmBar:
    def __init__(self, total: int, desc: str):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, leave=False)
        self.total = total
        self.current = 0

    def update_absolute(self, value: int, total: Optional[int] = None) -> None:
        if total is not None and total != self.total:
            self.total = self._bar.total = total
        value = min(value, self.total)
        self._bar.update(value - self.current)
        self.current = value

    def update(self, amount: int = 1) -> None:
        self.update_absolute(self.current + amount)

    def close(self) -> None:
        self._bar.close()


def _preview_image(image):
    """(H, W, 3) float image in [0, 1] -> the host's preview tuple ("JPEG", PIL image, max side)."""
    from PIL import Image

    array = image.detach().float().cpu().numpy() if hasattr(image, "detach") else np.asarray(image, np.float32)
    pixels = (np.clip(array[..., :3], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    args = getattr(_import("comfy.cli_args"), "args", None)
    return "JPEG", Image.fromarray(pixels), getattr(args, "preview_size", 512)


class Progress:
    """Progress bar + interrupt check for a node's long loop.

    Uses ``comfy.utils.ProgressBar`` inside ComfyUI (the node's green bar)
    and tqdm outside.  ``step``/``set`` also call ``check_interrupted`` so a
    Cancel in the UI stops the loop at the next step.
    """

    def __init__(self, total: int, desc: str = "ActionMesh"):
        self.total = max(int(total), 1)
        self.current = 0
        utils = _import("comfy.utils")
        self._on_host = utils is not None and hasattr(utils, "ProgressBar")
        if self._on_host:
            self._bar = utils.ProgressBar(self.total)
        else:
            self._bar = _TqdmBar(self.total, desc)

    def set(self, value: int, total: Optional[int] = None, preview=None) -> None:
        """Set absolute progress ``value`` of ``total`` (and check for interruption).

        ``preview``: an optional (H, W, 3) image in [0, 1] (numpy or torch) shown on the node while it
        runs, through ComfyUI's progress API (``ProgressBar.update_absolute``'s preview); ignored outside it.
        """
        if total is not None:
            self.total = max(int(total), 1)
        self.current = min(int(value), self.total)
        if preview is not None and self._on_host:
            self._bar.update_absolute(self.current, self.total, _preview_image(preview))
        else:
            self._bar.update_absolute(self.current, self.total)
        check_interrupted()

    def step(self, amount: int = 1) -> None:
        """Advance by ``amount`` (and check for interruption)."""
        self.set(self.current + amount)

    def close(self) -> None:
        """Close the bar (tqdm outside ComfyUI; a no-op inside)."""
        close = getattr(self._bar, "close", None)
        if callable(close):
            close()

    def callback(self, *args, **kwargs):
        """A callback for library loops: accepts ``(info_dict)``, ``(done, total)`` or ``(step,)``.

        Understands the sampler info dict ``{stage, step, total, window,
        num_windows}`` (``step`` and ``window`` 1-based, as the samplers report them).  Always returns
        None (never cancels by return value; interruption raises instead).
        """
        info = args[0] if args and isinstance(args[0], dict) else kwargs
        if isinstance(info, dict) and "step" in info:
            total = int(info.get("total") or 1)
            windows = int(info.get("num_windows") or 1)
            window = max(int(info.get("window") or 1), 1)
            self.set((window - 1) * total + int(info["step"]), total * windows)
        elif len(args) >= 2 and all(isinstance(a, (int, np.integer)) for a in args[:2]):
            self.set(int(args[0]), int(args[1]))
        elif len(args) == 1 and isinstance(args[0], (int, np.integer)):
            self.set(int(args[0]))
        else:
            check_interrupted()
        return None
