"""Helper process of the clean-up's slab decimation: ``python -m actionmesh_core.geometry.decimation_helper``.

Started by :func:`actionmesh_core.geometry.cleanup._start_helper` (fast-simplification
holds the GIL, so the first decimation pass of a large marching-cubes mesh is shared
between processes). It imports numpy and fast-simplification only: not torch, not the
rest of ``actionmesh_core`` (its package ``__init__`` files import nothing).

Protocol (``numpy.lib.format`` .npy records, no pickle): on stdin the number of slabs
``n`` as a (1,) int64 array, then per slab its (V, 3) float32 vertices, (F, 3) int32
faces and a (2,) float64 array ``[target faces, aggressiveness]``; on stdout, after
every slab is read and decimated in order, each slab's (V', 3) vertices and (F', 3)
faces as fast-simplification returns them (open borders kept in place).

``sys.path``: the parent starts this module with its working folder set to the folder
that holds ``actionmesh_core`` (so ``-m`` finds it); that entry is dropped at once, and
the parent's own ``sys.path`` (``ACTIONMESH_HELPER_PATH``) is appended after this
interpreter's standard paths, so a host folder on the parent's path (ComfyUI's root, a
folder holding a ``json.py``) is searched after the standard library, never before it.
"""
from __future__ import annotations

import os
import sys
from typing import List, Sequence

PATH_VARIABLE = "ACTIONMESH_HELPER_PATH"


def helper_sys_path(current: Sequence[str], working_folder: str, extra: str) -> List[str]:
    """The helper's ``sys.path``: ``current`` without the working folder (``""`` or ``working_folder``), then the
    entries of ``extra`` (``os.pathsep``-separated, the parent's path) not already there, in their order."""
    out = [p for p in current if p not in ("", working_folder)]
    for entry in extra.split(os.pathsep):
        if entry and entry not in out:
            out.append(entry)
    return out


class _Pipe:
    """Read/write view of a pipe: ``numpy.lib.format`` would seek a real file object, which a pipe cannot."""

    def __init__(self, f):
        self.read, self.write = getattr(f, "read", None), getattr(f, "write", None)


def main() -> None:
    """Read every slab from stdin, decimate them in order, write the results to stdout (see module docstring)."""
    import numpy as np
    import fast_simplification
    from numpy.lib import format as npf

    src, dst = _Pipe(sys.stdin.buffer), _Pipe(sys.stdout.buffer)
    jobs = [[npf.read_array(src) for _ in range(3)] for _ in range(int(npf.read_array(src)[0]))]
    out = []
    for v, f, p in jobs:
        out += fast_simplification.simplify(v, f, target_count=int(p[0]), agg=float(p[1]), preserve_border=True)
    for a in out:
        npf.write_array(dst, np.ascontiguousarray(a))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    sys.path[:] = helper_sys_path(sys.path, os.getcwd(), os.environ.get(PATH_VARIABLE, ""))
    main()
