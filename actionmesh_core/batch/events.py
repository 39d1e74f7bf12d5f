"""What a batch reports while it runs (events, the console display) and its one error type.

Shared by the driver (:mod:`.engine`) and the engines (:mod:`.ray_engine`), so
neither imports the other for them.

Events: ``on_event(event: dict)`` receives ``{"event": "planned", ...}``,
``"start"`` (clip, worker, attempt), ``"status"`` (a worker's clip, stage, step,
total, pid), ``"finish"`` (the report row), ``"worker-ready"``,
``"worker-died"`` and ``"end"``; :class:`ConsoleProgress` is one such listener.
"""
from __future__ import annotations

import sys
from typing import Any, Dict

from ..errors import InputError

__all__ = ["BatchError", "Event", "ConsoleProgress"]

Event = Dict[str, Any]


class BatchError(InputError):
    """The batch as a whole cannot run (weights missing, Ray missing or unreachable, bad options); one line."""



class ConsoleProgress:
    """One bar over clips plus one status line per worker (a TTY), or one log line per finished clip.

    Args:
        stream: where to draw (default stderr). enabled: False draws nothing.
    """

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        self.workers: Dict[str, Any] = {}
        self.total = 0
        self.finished = 0
        self.counts: Dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        kind = event["event"]
        if kind == "planned":
            self.total = event["total"]
            self.finished = event["total"] - event["to_run"]
            for row in event["rows"]:
                self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
            if self.tty:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=self.total, initial=self.finished, desc="clips", unit="clip",
                                file=self.stream, position=0, dynamic_ncols=True)
                self.bar.set_postfix_str(self._counts())
            else:
                print(f"batch: {self.total} clips, {self.finished} already done or failed to read, "
                      f"{event['to_run']} to run", file=self.stream, flush=True)
        elif kind == "status" and self.tty:
            self._worker_line(event)
        elif kind == "worker-died":
            self._write(f"worker {event['worker']} died while running {event.get('clip')}: {event.get('error')}"
                        + (" (retrying the clip)" if event.get("retry") else ""))
        elif kind == "finish":
            row = event["row"]
            self.finished += 1
            self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix_str(self._counts())
            if row["status"] != "done" or not self.tty:
                total = row.get("total_seconds") or 0.0
                detail = (f"{total:.1f}s" if row["status"] == "done"
                          else f"[{row.get('error_kind')}] {row.get('error')}")
                self._write(f"[{self.finished}/{self.total}] {row['clip']}: {row['status']} {detail} "
                            f"({row.get('worker')})")
        elif kind == "end":
            self.close()

    def _counts(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _worker_line(self, status: Event) -> None:
        from tqdm.auto import tqdm

        name = status["worker"]
        bar = self.workers.get(name)
        if bar is None:
            bar = self.workers[name] = tqdm(total=1, desc=name, file=self.stream, position=len(self.workers) + 1,
                                            leave=False, dynamic_ncols=True,
                                            bar_format="{desc}: {n_fmt}/{total_fmt} {bar:20} {postfix}")
        clip = status.get("clip") or "-"
        bar.total = max(int(status.get("total") or 0), 1)
        bar.n = min(int(status.get("step") or 0), bar.total)
        bar.set_postfix_str(f"{clip} {status.get('stage', '')}", refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self.workers.values():
            bar.close()
        self.workers.clear()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
