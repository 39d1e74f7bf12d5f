"""The previous SDF extractor (dense 2^8 grid refined to 2^9) and mesh clean-up, from git history (old columns).

The dense-then-refine extractor was removed from the working tree (issue #14:
kept only as long as a benchmark needs it as a baseline). ``load_baseline()``
reads ``benchmarks/_baseline_meshing.py`` as it was at ``BASELINE_COMMIT``
with ``git show``, together with the library's ``meshing.py`` of the same
commit (the baseline imports ``grid_points`` and ``_Progress`` from it, so
later changes to the library cannot change the baseline), and returns it as a
module in memory; nothing is written to disk.

``baseline_tree(dest)`` extracts the whole library as it was before issue
#14 (``PIPELINE_COMMIT``: dense-then-refine extractor, trimesh clean-up,
VAE field chunks, no allocator tuning) with ``git archive``, so that the old
column of the end-to-end CLI run is that pipeline, run as it was.

Outside a git checkout that holds the commit (a source archive, a shallow
clone) it returns ``None`` and says so once; callers then print the new
extractor's rows only.

``python3 benchmarks/_baseline_loader.py [--tree DEST]`` says whether this
checkout can give the old columns (and extracts the pre-#14 library under
``DEST``).
"""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "d0df18571a0a708c0e67eddc79b648d8ad5800cb"  # last commit of benchmarks/_baseline_meshing.py
PIPELINE_COMMIT = "c0000f42522a7e3dd094fde258ad0ef34dc642b5"  # the library before the first issue #14 commit
HALF_BAND_COMMIT = "7a32215196212983d341fe625dce3c99c56e9bb6"  # main before the half-precision band fix (#23 follow-up)
_LIB_NAME = "actionmesh_core.geometry._meshing_at_baseline"
_CLEANUP_NAME = "actionmesh_core.geometry._cleanup_at_baseline"
_cached: list = []


def _git_show(path: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:{path}"], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def _module_from_source(name: str, path: str, src: str, package: Optional[str] = None,
                        commit: str = BASELINE_COMMIT) -> types.ModuleType:
    """Run ``src`` (``path`` at ``commit``) as module ``name``, registered in ``sys.modules``."""
    mod = types.ModuleType(name)
    if package is not None:
        mod.__package__ = package
    mod.__file__ = f"<git {commit[:12]}:{path}>"
    sys.modules[name] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


def load_baseline(quiet: bool = False) -> Optional[types.ModuleType]:
    """The old extractor module (``sdf_to_meshes``, ``sdf_to_mesh``) at ``BASELINE_COMMIT``, or None.

    Args:
        quiet: do not print why the old column is unavailable.

    Returns:
        A module named ``_baseline_meshing`` (also registered in
        ``sys.modules``), or ``None`` when git or the commit is not available.
    """
    if _cached:
        return _cached[0]
    try:
        lib_src = _git_show("actionmesh_core/geometry/meshing.py")
        src = _git_show("benchmarks/_baseline_meshing.py")
    except (OSError, subprocess.SubprocessError) as exc:
        why = getattr(exc, "stderr", "") or str(exc)
        if not quiet:
            print(f"old extractor unavailable (needs a git checkout with commit {BASELINE_COMMIT[:12]}: "
                  f"{why.strip().splitlines()[-1] if why.strip() else type(exc).__name__}); "
                  "printing the new extractor only", flush=True)
        _cached.append(None)
        return None
    import actionmesh_core.geometry  # noqa: F401  (parent package of the pinned library module)

    _module_from_source(_LIB_NAME, "actionmesh_core/geometry/meshing.py", lib_src, "actionmesh_core.geometry")
    old_import = "from actionmesh_core.geometry.meshing import"
    if old_import not in src:
        raise RuntimeError(f"the baseline at {BASELINE_COMMIT[:12]} no longer imports from the library as expected")
    src = src.replace(old_import, f"from {_LIB_NAME} import")
    mod = _module_from_source("_baseline_meshing", "benchmarks/_baseline_meshing.py", src)
    _cached.append(mod)
    return mod


def load_meshing_at(commit: str = HALF_BAND_COMMIT, quiet: bool = False) -> Optional[types.ModuleType]:
    """The library's ``geometry/meshing.py`` at ``commit`` as a module in memory (package
    ``actionmesh_core.geometry``: its relative imports take the current library), or None without that commit.

    ``HALF_BAND_COMMIT``: the narrow band before half precision ran per level (the ``--half`` rows of
    ``bench_meshing.py``)."""
    name = f"actionmesh_core.geometry._meshing_at_{commit[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:actionmesh_core/geometry/meshing.py"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        if not quiet:
            print(f"meshing.py at {commit[:12]} unavailable (needs a git checkout with that commit): "
                  f"{type(exc).__name__}; printing the current extractor only", flush=True)
        return None
    import actionmesh_core.geometry  # noqa: F401  (parent package of the pinned module)

    return _module_from_source(name, "actionmesh_core/geometry/meshing.py", src, "actionmesh_core.geometry", commit)


def baseline_tree(dest: Path, quiet: bool = False) -> Optional[Path]:
    """``actionmesh_core/`` at ``PIPELINE_COMMIT`` extracted under ``dest`` (``git archive``); ``dest`` or None.

    Put ``dest`` first on ``PYTHONPATH`` to run that library (``python -m actionmesh_core ...``).
    """
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", PIPELINE_COMMIT, "actionmesh_core"],
                                 capture_output=True, check=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        if not quiet:
            print(f"pre-#14 library unavailable (needs a git checkout with commit {PIPELINE_COMMIT[:12]}): "
                  f"{type(exc).__name__}; timing the current library only", flush=True)
        return None
    import io
    import tarfile

    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def main(argv=None) -> int:
    """Print where the old extractor comes from (and, with ``--tree DEST``, where the pre-#14 library went)."""
    import argparse

    ap = argparse.ArgumentParser(description="Whether this checkout can give the meshing benchmark's old columns.")
    ap.add_argument("--tree", type=Path, default=None, help="also extract the pre-#14 library under this folder")
    args = ap.parse_args(argv)
    if str(ROOT) not in sys.path:  # run as a script: the library of this checkout
        sys.path.insert(0, str(ROOT))
    old = load_baseline()
    print(f"old extractor: {'unavailable' if old is None else old.__file__}")
    if args.tree is not None:
        root = baseline_tree(args.tree)
        print(f"pre-#14 library: {'unavailable' if root is None else root / 'actionmesh_core'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
