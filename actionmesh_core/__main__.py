"""``python -m actionmesh_core`` entry point (exit status: see :mod:`actionmesh_core.cli`)."""
import sys

from .interrupts import exit_code, handle_signals, message

with handle_signals():  # Ctrl-C, SIGTERM or SIGHUP while the libraries are still importing: one line too
    try:
        from .cli import run
    except KeyboardInterrupt as exc:
        sys.stderr.write(f"\n{message(exc)}\n")
        sys.exit(exit_code(exc))

run()
