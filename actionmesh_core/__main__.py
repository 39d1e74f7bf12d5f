"""``python -m actionmesh_core`` entry point (exit status: see :mod:`actionmesh_core.cli`)."""
import sys

try:
    from .cli import run
except KeyboardInterrupt:  # Ctrl-C while the libraries are still importing
    sys.stderr.write("\ninterrupted: stopped before finishing; no output file was written or changed\n")
    sys.exit(130)

run()
