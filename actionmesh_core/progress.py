"""Progress output fit for where it goes: bars on a terminal, plain lines in logs.

On a terminal the pipeline draws one tqdm bar per stage (and per window). When
stderr is not a terminal (ComfyUI's console log, CI, a batch log, ``2> run.log``)
cursor-up and carriage-return codes would pile up as hundreds of lines, so
:class:`LineProgress` prints plain lines instead: one line when a stage ends (all
its windows), and for a long stage one line every ``interval`` seconds
(``$ACTIONMESH_PROGRESS_INTERVAL``, default 30; 0 prints every step). No escape
codes, no carriage returns.

:func:`quiet_library_bars` mutes the progress bars of the libraries we load
through (transformers' "Loading weights") while stderr is not a terminal.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Dict, Iterator, Optional, TextIO

__all__ = ["LineProgress", "is_terminal", "progress_interval", "quiet_library_bars"]

INTERVAL_VARIABLE = "ACTIONMESH_PROGRESS_INTERVAL"


def is_terminal(stream: Optional[TextIO] = None) -> bool:
    """Whether ``stream`` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_interval(default: float = 30.0) -> float:
    """Seconds between the progress lines of one stage (``$ACTIONMESH_PROGRESS_INTERVAL``; >= 0)."""
    try:
        value = float(os.environ.get(INTERVAL_VARIABLE, default))
    except ValueError:
        return default
    return value if value >= 0 else default


class LineProgress:
    """A pipeline ``progress(info)`` callback that writes plain lines (see the module docstring).

    ``info``: ``{"stage", "step", "total", "window", "num_windows"}`` as the samplers report it.

    Args:
        stream: where to write (default stderr). interval: seconds between lines of one stage
            (default :func:`progress_interval`).
    """

    def __init__(self, stream: Optional[TextIO] = None, interval: Optional[float] = None):
        self.stream = stream
        self.interval = progress_interval() if interval is None else float(interval)
        self._started: Dict[str, float] = {}
        self._last: Dict[str, float] = {}
        self._steps: Dict[str, int] = {}

    def __call__(self, info: dict) -> None:
        stage = str(info.get("stage", "stage"))
        step, total = int(info.get("step", 0)), int(info.get("total", 0))
        window, windows = int(info.get("window", 1) or 1), int(info.get("num_windows", 1) or 1)
        now = time.monotonic()
        start = self._started.setdefault(stage, now)
        if step > 0:
            self._steps[stage] = self._steps.get(stage, 0) + 1
        where = f" window {window}/{windows}" if windows > 1 else ""
        if step >= total and window >= windows:
            self._write(f"{stage}: done, {self._steps.pop(stage, 0)} steps in {now - start:.1f}s")
            self._started.pop(stage, None)
            self._last.pop(stage, None)
        elif now - self._last.get(stage, start) >= self.interval and step > 0:
            self._last[stage] = now
            self._write(f"{stage}{where}: step {step}/{total} ({now - start:.1f}s)")
        return None

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(line, file=stream, flush=True)


@contextlib.contextmanager
def quiet_library_bars() -> Iterator[None]:
    """Mute transformers' progress bars while the block runs, when stderr is not a terminal."""
    if is_terminal():
        yield
        return
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
