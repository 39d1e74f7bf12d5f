"""The meshing benchmark's moving parts (no timing): the old extractor read from git history, its rows' helpers.

``benchmarks/bench_meshing.py`` compares the library's extractor with the pre-#14 one, which is no longer in the
tree: ``benchmarks/_baseline_loader.py`` reads it from git history at a pinned commit. A benchmark nobody runs rots;
this checks, at small depths, that the baseline still loads and meshes the same surface as the library.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _module(name):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def test_baseline_from_git_history_meshes_the_same_surface():
    bench = _module("bench_meshing")
    old = _module("_baseline_loader").load_baseline(quiet=True)
    if old is None:  # a shallow clone or a source tarball: the benchmark prints the new column only
        pytest.skip("the pinned baseline commit is not in this checkout's git history")
    from actionmesh_core.geometry.meshing import sdf_to_meshes

    def sphere(p):
        return p.norm(dim=-1) - 0.6

    depths = dict(octree_depth=4, refine_depth=6)
    mesh_old, _, _ = bench.run(old.sdf_to_meshes, sphere, "negative", **depths)
    mesh_new, _, _ = bench.run(sdf_to_meshes, sphere, "negative", **depths)
    assert len(mesh_new.faces) == len(mesh_old.faces) > 1000
    assert mesh_old.is_watertight and mesh_new.is_watertight
    st_old, st_new = mesh_old.metadata["meshing"], mesh_new.metadata["meshing"]
    assert st_new["points_evaluated"] < st_old["points_evaluated"]
    voxel = st_new["voxel_size"]
    assert sphere(torch.from_numpy(mesh_new.vertices).float()).abs().max().item() < voxel
    # the plate detector the benchmark reports: a sphere alone has no plate
    assert not bench.plate_present(mesh_new)


def test_end_to_end_baseline_is_the_library_before_issue_14(tmp_path):
    """The CLI comparison's old column runs the whole pre-#14 library (dense 2^8 -> 2^9 extractor), extracted from
    git history; the current tree's changes (field chunks, allocator, clean-up) must not leak into it."""
    loader = _module("_baseline_loader")
    root = loader.baseline_tree(tmp_path / "pre14", quiet=True)
    if root is None:
        pytest.skip("the pinned pre-#14 commit is not in this checkout's git history")
    meshing = (root / "actionmesh_core" / "geometry" / "meshing.py").read_text()
    assert "octree_depth: int = 8" in meshing and "narrow band" not in meshing.lower()
    assert (root / "actionmesh_core" / "cli.py").is_file()
    assert "query_chunk_points" not in (root / "actionmesh_core" / "models" / "vae.py").read_text()
