"""SIGTERM and SIGHUP handled like Ctrl-C: one exception, every temporary file removed on the way out.

A process manager stopping a run (``kill``, ``systemctl stop``, a batch scheduler's
time limit), a closed terminal (SIGHUP) and Ctrl-C (SIGINT) all raise
:class:`Interrupted`, a ``KeyboardInterrupt``, in the main thread. Every writer of the
library already cleans up on ``KeyboardInterrupt`` (the atomic writers remove their
temporary files, staging folders are removed, helper processes are stopped), so a
terminated run leaves what an interrupted one leaves: nothing, and every previous
output unchanged. The command line exits with ``128 + signal number``: 130 (SIGINT),
143 (SIGTERM), 129 (SIGHUP).

While the clean-up runs, further signals are held back (a second SIGTERM cannot cut
the clean-up short); :func:`deferred` holds them back around a short critical step
(moving finished files onto their names) and raises afterwards.

Only the main thread can install signal handlers; elsewhere :func:`handle_signals`
does nothing (ComfyUI's worker thread keeps its host's handling).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

__all__ = ["Interrupted", "handle_signals", "deferred", "exit_code", "describe", "message", "received", "SIGNALS"]

#: the signals handled (SIGHUP does not exist on Windows)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

_state = {"installed": 0, "received": None, "defer": 0, "pending": None}


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT, SIGTERM or SIGHUP); a ``KeyboardInterrupt``.

    Attributes:
        signum: the signal number.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """``128 + signum`` (the shell's status of a process ended by that signal): 130, 143, 129."""
        return 128 + self.signum


def _handler(signum, frame) -> None:
    if _state["received"] is not None:
        return  # already stopping: let the clean-up finish
    if _state["defer"]:
        _state["pending"] = _state["pending"] or signum
        return
    _state["received"] = signum
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP raise :class:`Interrupted` in the main thread (then are held back).

    The previous handlers are restored at the end. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in SIGNALS:
        try:
            previous[sig] = signal.signal(sig, _handler)
        except (OSError, ValueError):  # not allowed here (e.g. an embedding host)
            pass
    _state["installed"] += 1
    try:
        yield
    finally:
        _state["installed"] -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if not _state["installed"]:
            _state.update(received=None, pending=None, defer=0)


def reinstall() -> None:
    """Install the handlers again inside :func:`handle_signals` (after a library replaced them, e.g. ``ray.init``)."""
    if _state["installed"] and threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, _handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold signals back during a short critical step; a signal that arrived raises :class:`Interrupted` after it.

    Only signals handled by :func:`handle_signals` are held back (a plain Ctrl-C outside it is not).
    """
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1
    if not _state["defer"] and _state["pending"] is not None and _state["received"] is None:
        signum, _state["pending"] = _state["pending"], None
        _state["received"] = signum
        raise Interrupted(signum)


def received() -> Optional[int]:
    """The signal that stopped this run (inside :func:`handle_signals`), or None."""
    return _state["received"]


def exit_code(exc: Optional[BaseException] = None) -> int:
    """The exit status of an interrupted run: ``128 + signal`` (130 for a plain ``KeyboardInterrupt``)."""
    if isinstance(exc, Interrupted):
        return exc.exit_code
    signum = _state["received"]
    return 128 + int(signum) if signum is not None else 130


def describe(exc: Optional[BaseException] = None) -> str:
    """``"Ctrl-C"``, ``"SIGTERM"`` or ``"SIGHUP"``: what stopped the run, for messages."""
    signum = exc.signum if isinstance(exc, Interrupted) else _state["received"]
    if signum is None or signum == getattr(signal, "SIGINT", 2):
        return "Ctrl-C"
    return signal.Signals(signum).name


def message(exc: Optional[BaseException] = None) -> str:
    """The one line the command line prints when a run was stopped (Ctrl-C, SIGTERM, SIGHUP)."""
    what = describe(exc)
    head = "interrupted" if what == "Ctrl-C" else f"interrupted by {what}"
    return f"{head}: stopped before finishing; no output file was written or changed"
