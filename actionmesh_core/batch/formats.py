"""Output formats of a batch: every format of the export dispatcher (:mod:`actionmesh_core.export`)."""
from __future__ import annotations

from pathlib import Path
from typing import List

__all__ = ["supported_formats", "output_path"]


def supported_formats() -> List[str]:
    """The format names of :data:`actionmesh_core.export.FORMATS` (``glb`` first)."""
    from ..export import FORMATS

    return list(FORMATS)


def output_path(out_dir: Path, name: str, fmt: str) -> Path:
    """The main file of clip ``name`` in format ``fmt``: ``<out>/<name><suffix of the format>``.

    Sequences and ``npy`` name their files after it (``<name>_0000.obj``, ``<name>_vertices.npy``).
    """
    from ..export import FORMATS

    return Path(out_dir) / f"{name}{FORMATS[fmt].suffix}"
