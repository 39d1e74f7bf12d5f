"""Output formats of a batch and the files each writes (kept light: the CLI parser imports it)."""
from __future__ import annotations

from pathlib import Path
from typing import List

__all__ = ["supported_formats", "output_targets"]


def supported_formats() -> List[str]:
    """Output formats of a batch: ``glb`` (the animated GLB writer)."""
    return ["glb"]


def output_targets(out_dir: Path, name: str, fmt: str) -> List[Path]:
    """The files a clip writes in format ``fmt`` (before its record): ``<out>/<name>.glb``."""
    return [Path(out_dir) / f"{name}.{fmt}"]
