"""Mesh clean-up: merge, degenerate/duplicate faces, decimation, floaters.

The release's order: release: actionmesh/preprocessing/mesh_processor.py, ``MeshPostprocessor.process_mesh``.
"""
import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from actionmesh_core.geometry.cleanup import clean_mesh, remove_small_components


def raw(vertices, faces):
    return trimesh.Trimesh(np.asarray(vertices, float), np.asarray(faces), process=False)


def test_merges_duplicates_drops_bad_faces_and_unreferenced_vertices():
    sphere = trimesh.creation.icosphere(2)
    split = sphere.copy()
    split.unmerge_vertices()  # every face gets its own 3 vertices
    v = np.concatenate([split.vertices, [[5.0, 5.0, 5.0]]])  # + one unreferenced vertex
    f = np.concatenate(
        [
            split.faces,
            split.faces[:7],  # exact duplicates
            split.faces[7:10, ::-1],  # duplicates with reversed winding
            [[0, 0, 1], [2, 2, 2]],  # repeated indices
        ]
    )
    cleaned = clean_mesh(raw(v, f), target_faces=None, min_component_fraction=0.0)
    assert len(cleaned.vertices) == len(sphere.vertices)
    assert len(cleaned.faces) == len(sphere.faces)
    assert cleaned.is_watertight
    assert cleaned.volume == pytest.approx(sphere.volume, rel=1e-9)


def test_decimation_reaches_budget_and_keeps_shape():
    sphere = trimesh.creation.icosphere(5, radius=0.8)  # 20480 faces
    out = clean_mesh(sphere, target_faces=2000)
    assert 1800 <= len(out.faces) <= 2000
    assert out.is_watertight
    assert out.volume == pytest.approx(sphere.volume, rel=0.02)
    assert np.abs(np.linalg.norm(out.vertices, axis=1) - 0.8).max() < 0.02
    untouched = clean_mesh(sphere, target_faces=50000)
    assert len(untouched.faces) == len(sphere.faces)


def test_floaters_below_fraction_are_removed():
    body = trimesh.creation.icosphere(4)  # 5120 faces
    floater = trimesh.creation.icosphere(1, radius=0.05).apply_translation([2, 0, 0])  # 80 faces (1.6%)
    mid = trimesh.creation.icosphere(3, radius=0.3).apply_translation([-2, 0, 0])  # 1280 faces (25%)
    mesh = trimesh.util.concatenate([body, floater, mid])
    out = clean_mesh(mesh, target_faces=None, min_component_fraction=0.02)
    assert len(out.faces) == 5120 + 1280
    assert out.vertices[:, 0].max() < 1.5  # the floater at x = 2 is gone
    assert out.vertices[:, 0].min() < -1.5  # the 25% component stays
    keep_all = clean_mesh(mesh, target_faces=None, min_component_fraction=0.0)
    assert len(keep_all.faces) == 5120 + 80 + 1280
    assert len(remove_small_components(mesh, 0.5).faces) == 5120


def test_marching_cubes_output_is_cleaned_within_budget():
    from actionmesh_core.geometry.meshing import sdf_to_mesh

    import torch

    def field(p):
        a = p.norm(dim=-1) - 0.6
        b = (p - torch.tensor([0.9, 0.9, 0.9])).norm(dim=-1) - 0.04  # tiny blob = floater
        return torch.minimum(a, b)

    mc = sdf_to_mesh(field, octree_depth=5, refine_depth=6)
    out = clean_mesh(mc, target_faces=3000)
    assert len(out.faces) <= 3000
    assert np.linalg.norm(out.vertices, axis=1).max() < 0.7  # floater removed
    d = cKDTree(out.vertices).query(mc.vertices[np.linalg.norm(mc.vertices, axis=1) < 0.7])[0]
    assert d.max() < 0.1


def test_input_is_not_modified():
    sphere = trimesh.creation.icosphere(3)
    before = sphere.vertices.copy(), sphere.faces.copy()
    clean_mesh(sphere, target_faces=100)
    np.testing.assert_array_equal(sphere.vertices, before[0])
    np.testing.assert_array_equal(sphere.faces, before[1])


def test_bad_input_raises():
    with pytest.raises(TypeError, match="trimesh.Trimesh"):
        clean_mesh(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no vertices"):
        clean_mesh(trimesh.Trimesh())
    with pytest.raises(ValueError, match="no faces"):
        clean_mesh(raw([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.zeros((0, 3), int)))
    with pytest.raises(ValueError, match="NaN"):
        clean_mesh(raw([[0, 0, 0], [1, np.nan, 0], [0, 1, 0]], [[0, 1, 2]]))
    with pytest.raises(ValueError, match="area is 0"):
        clean_mesh(raw([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]]))
    with pytest.raises(ValueError, match="target_faces"):
        clean_mesh(trimesh.creation.box(), target_faces=2)
    with pytest.raises(ValueError, match="min_component_fraction"):
        clean_mesh(trimesh.creation.box(), min_component_fraction=1.5)
    with pytest.raises(TypeError, match="Scene"):
        clean_mesh(trimesh.Scene(trimesh.creation.box()))


def _trimesh_weld_and_drop(vertices, faces):
    """The same steps done by trimesh's own methods (the semantics clean_mesh promises)."""
    m = raw(vertices, faces)
    m.merge_vertices()
    m.update_faces(m.nondegenerate_faces())
    m.update_faces(m.unique_faces())
    m.remove_unreferenced_vertices()
    return np.asarray(m.vertices), np.asarray(m.faces)


@pytest.mark.parametrize("packed", [True, False, "collide"], ids=["packed-face-keys", "row-keys", "hash-collisions"])
def test_array_weld_matches_trimesh_methods_on_a_messy_mesh(packed, monkeypatch):
    import actionmesh_core.geometry.cleanup as cleanup
    from actionmesh_core.geometry.cleanup import _drop_bad_faces, _merge_vertices

    if packed is not True:  # the branch meshes above 2^21 vertices take (hashed face keys, exact where they repeat)
        monkeypatch.setattr(cleanup, "_PACKED_VERTS", 8)
    if packed == "collide":  # every hash equal: the exact grouping alone must decide (vertices and faces)
        monkeypatch.setattr(cleanup, "_row_hash", lambda rows: np.zeros(len(rows), np.uint64))

    rng = np.random.default_rng(0)
    sphere = trimesh.creation.icosphere(3)
    split = sphere.copy()
    split.unmerge_vertices()
    # shuffle the split vertices, add tiny jitter below the merge tolerance, unreferenced and collinear vertices
    perm = rng.permutation(len(split.vertices))
    v = split.vertices[perm] + rng.uniform(-1e-13, 1e-13, (len(perm), 3))
    inv = np.argsort(perm)
    f = inv[split.faces]
    v = np.concatenate([v, [[9.0, 9.0, 9.0], [0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 4.0]]])
    n = len(v)
    f = np.concatenate([f, f[rng.integers(0, len(f), 25)][:, ::-1], [[n - 3, n - 2, n - 1], [0, 0, 1]]])
    f = f[rng.permutation(len(f))]
    want_v, want_f = _trimesh_weld_and_drop(v, f)
    got_v, got_f = _drop_bad_faces(*_merge_vertices(v, f, None))
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_array_equal(got_f, want_f)
    assert len(got_v) == len(sphere.vertices) and len(got_f) == len(sphere.faces)


def test_two_pass_decimation_welds_its_seams(monkeypatch):
    import actionmesh_core.geometry.cleanup as cleanup

    sphere = trimesh.creation.icosphere(5, radius=0.8)  # 20480 faces, closed
    single = clean_mesh(sphere, target_faces=600)
    monkeypatch.setattr(cleanup, "_PART_FACES", 2000)  # 11 slabs, then the whole mesh
    calls = []
    real = __import__("fast_simplification").simplify
    monkeypatch.setattr("fast_simplification.simplify", lambda *a, **k: calls.append(k) or real(*a, **k))
    out = clean_mesh(sphere, target_faces=600, processes=1)  # every call in this process, to count them
    assert sum(bool(k.get("preserve_border")) for k in calls) == 11 and not calls[-1].get("preserve_border")
    assert 500 <= len(out.faces) <= 600
    assert out.is_watertight  # every seam between slabs welded, no cracks or T-junctions
    assert out.euler_number == 2
    r = np.linalg.norm(out.vertices, axis=1)
    r1 = np.linalg.norm(single.vertices, axis=1)
    assert np.abs(r - 0.8).max() < 0.02 and np.abs(r - 0.8).mean() < 2 * np.abs(r1 - 0.8).mean() + 1e-4


def test_slab_decimation_in_helper_processes_gives_the_same_mesh(monkeypatch, caplog):
    """The first decimation pass shared with helper processes (fast-simplification holds the GIL): same output as
    one process, bit for bit, whatever the number of processes; a helper that fails or cannot start leaves its
    slabs to this process (logged), same output again."""
    import logging
    import sys

    import actionmesh_core.geometry.cleanup as cleanup

    sphere = trimesh.creation.icosphere(5, radius=0.8)
    sphere.vertices += 0.01 * np.sin(7.0 * sphere.vertices[:, [1, 2, 0]])  # not symmetric: slabs differ
    monkeypatch.setattr(cleanup, "_PART_FACES", 2000)  # 11 slabs
    one = clean_mesh(sphere, target_faces=600, processes=1)
    started = []
    real_start = cleanup._start_helper
    monkeypatch.setattr(cleanup, "_start_helper", lambda: started.append(1) or real_start())
    for processes in (2, 4):
        started.clear()
        got = clean_mesh(sphere, target_faces=600, processes=processes)
        assert len(started) == processes - 1
        np.testing.assert_array_equal(got.faces, one.faces)
        np.testing.assert_array_equal(got.vertices, one.vertices)
    assert cleanup._slab_processes(None, 11) >= 1 and cleanup._slab_processes(8, 11) == 5  # <= half the slabs
    # a helper that dies: its slabs are decimated here, same mesh, one warning; no helper is tried again
    monkeypatch.setattr(cleanup, "_HELPERS_OFF", [])
    monkeypatch.setattr(cleanup, "_HELPER_MODULE", "actionmesh_core.geometry.no_such_helper")
    with caplog.at_level(logging.WARNING, logger=cleanup.__name__):
        got = clean_mesh(sphere, target_faces=600, processes=2)
    np.testing.assert_array_equal(got.faces, one.faces)
    assert "No module named actionmesh_core.geometry.no_such_helper" in caplog.text
    assert cleanup._start_helper() is None
    # an embedding application's binary (not a Python interpreter) is never started: this process alone
    monkeypatch.setattr(cleanup, "_HELPERS_OFF", [])
    for exe in ("", "/opt/blender/blender"):
        monkeypatch.setattr(sys, "executable", exe)
        assert cleanup._start_helper() is None
        np.testing.assert_array_equal(clean_mesh(sphere, target_faces=600, processes=3).faces, one.faces)


def test_helper_sees_the_packages_of_this_process(monkeypatch, tmp_path):
    """Packages this process found through a runtime sys.path entry (as ComfyUI custom nodes add) are found by
    the helper too, after its own paths: a module of that folder named like a standard one (or like numpy) does
    not shadow it, and the helper's working folder (the package root) is not on its path."""
    import os

    from actionmesh_core.geometry.decimation_helper import helper_sys_path

    here = ["/root/pkg", "/usr/lib/python3.11", "/site"]
    extra = os.pathsep.join(["/host", "/site", "", "/root/pkg"])
    assert helper_sys_path(["/root/pkg"] + here[1:], "/root/pkg", extra) == ["/usr/lib/python3.11", "/site",
                                                                             "/host", "/root/pkg"]
    assert helper_sys_path(["", "/site"], "/x", "") == ["/site"]

    import actionmesh_core.geometry.cleanup as cleanup

    (tmp_path / "numpy.py").write_text("raise ImportError('a host folder shadowed numpy')\n")
    (tmp_path / "json.py").write_text("raise ImportError('a host folder shadowed the standard library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cleanup, "_HELPERS_OFF", [])
    v = trimesh.creation.icosphere(3).vertices.astype(np.float32)
    f = trimesh.creation.icosphere(3).faces.astype(np.int32)
    helper = cleanup._start_helper()
    writer = __import__("threading").Thread(target=cleanup._send_jobs, args=(helper, [(v, f, 100)], 7.0))
    writer.start()
    got = cleanup._collect(helper, writer, 1)
    assert got is not None and not cleanup._HELPERS_OFF  # the real numpy: the decimation ran in the helper
    want = __import__("fast_simplification").simplify(v, f, target_count=100, agg=7.0, preserve_border=True)
    np.testing.assert_array_equal(got[0][1], want[1])


def test_helper_module_starts_without_torch_or_the_library(tmp_path):
    """``python -m`` the helper: only numpy and fast-simplification are imported (no torch, no heavy module of
    actionmesh_core); an empty job list is answered with nothing."""
    import os
    import subprocess
    import sys

    import actionmesh_core.geometry.cleanup as cleanup
    from numpy.lib import format as npf
    import io

    request = io.BytesIO()
    npf.write_array(request, np.array([0], np.int64))
    root = os.path.dirname(os.path.dirname(os.path.abspath(cleanup.__file__)))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", cleanup._HELPER_MODULE],
                          input=request.getvalue(), capture_output=True, cwd=os.path.dirname(root), timeout=120)
    assert proc.returncode == 0 and proc.stdout == b"", proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line}
    assert "fast_simplification" in imported and "numpy" in imported
    assert not any(name.split(".")[0] in ("torch", "trimesh", "scipy") for name in imported), imported
    heavy = {n for n in imported if n.startswith("actionmesh_core.")} - {
        "actionmesh_core.geometry", "actionmesh_core.geometry.decimation_helper"}
    assert not heavy, heavy


def test_interrupted_decimation_leaves_no_helper_process(monkeypatch):
    """Ctrl-C (or any error) while this process decimates its own slabs: the helper processes are stopped."""
    import actionmesh_core.geometry.cleanup as cleanup

    sphere = trimesh.creation.icosphere(5, radius=0.8)
    monkeypatch.setattr(cleanup, "_PART_FACES", 2000)
    started = []
    real_start = cleanup._start_helper
    monkeypatch.setattr(cleanup, "_start_helper", lambda: started.append(real_start()) or started[-1])
    real = __import__("fast_simplification").simplify

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("fast_simplification.simplify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        clean_mesh(sphere, target_faces=600, processes=2)
    assert len(started) == 1 and started[0].poll() is not None  # stopped and reaped
    monkeypatch.setattr("fast_simplification.simplify", real)


@pytest.mark.parametrize("offset, welded", [(0.0, True), (2e-9, True), (1e-8, False), (3e-8, False), (1e-7, False)])
def test_vertices_1e8_to_1e7_apart_stay_apart(offset, welded):
    """The weld merges positions equal to 8 decimals (trimesh's tolerance) and nothing coarser: two triangles
    whose corners are 1e-8..1e-7 apart keep both corners, exact duplicates (or 2e-9 apart) are one vertex."""
    a = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    b = [[1.0 + offset, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    mesh = trimesh.Trimesh(np.array(a + b), [[0, 1, 2], [3, 4, 5]], process=False)
    out = clean_mesh(mesh, target_faces=None, min_component_fraction=0.0)
    assert len(out.faces) == 2
    assert len(out.vertices) == (4 if welded else 5)
    if not welded:
        xs = np.sort(out.vertices[:, 0][out.vertices[:, 1] == 0.0])
        np.testing.assert_array_equal(xs, [0.0, 1.0, 1.0 + offset])  # not moved either
