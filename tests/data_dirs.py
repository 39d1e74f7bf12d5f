"""Where the tests find their data: the copies in ``tests/data/`` unless an environment variable names another set.

``ACTIONMESH_PARITY_DIR`` selects another parity vector set (same layout as ``tests/data/parity``: one folder per
case with ``case.json``, ``io.safetensors`` and ``checkpoint/``); ``ACTIONMESH_FIXTURES_DIR`` selects other RGBA
frame sequences (``davis_camel/`` and ``spring/``). A named folder that does not exist is an error, never a skip:
a test must not pass silently because its data is missing.
"""
from __future__ import annotations

import os
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent  # tests/: the shared helper modules (on sys.path through conftest.py)
REPO_ROOT = TESTS_DIR.parent  # the repository root (tests live one or two folders below it: tests/<kind>/test_*.py)
DATA_DIR = TESTS_DIR / "data"


def _resolve(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    path = Path(value).expanduser() if value else default
    if not path.is_dir():
        raise FileNotFoundError(f"{variable}={value!r}: folder {path} not found; unset it to use the copy in "
                                f"{default}" if value else f"test data folder {path} missing from the checkout")
    return path


def parity_dir() -> Path:
    """Parity vector folder: ``$ACTIONMESH_PARITY_DIR`` or ``tests/data/parity``."""
    return _resolve("ACTIONMESH_PARITY_DIR", DATA_DIR / "parity")


def fixtures_dir() -> Path:
    """Real RGBA frame sequences: ``$ACTIONMESH_FIXTURES_DIR`` or ``tests/data/fixtures``."""
    return _resolve("ACTIONMESH_FIXTURES_DIR", DATA_DIR / "fixtures")
