"""Mesh clean-up after marching cubes (the anchor mesh made from a latent).

As the release cleans the TripoSG anchor (release: actionmesh/preprocessing/mesh_processor.py,
``MeshPostprocessor.process_mesh``), with its budgets (release: actionmesh/configs/actionmesh.yaml,
``face_decimation``, ``floaters_threshold``: 40 000 faces, 2 %).

Order: merge duplicate vertices -> drop degenerate and duplicate faces and
unreferenced vertices -> quadric decimation to a face budget
(``fast-simplification``) -> drop floaters (connected components with fewer
than a fraction of the largest component's faces).

Shape legend: V vertices, F faces.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import List, Optional, Tuple

import numpy as np
import trimesh

__all__ = ["clean_mesh", "validate_mesh", "remove_small_components"]

_CHUNK = 1 << 15  # faces per chunk of the per-face geometry (bounds the (chunk, 3, 3) copies; cache-sized)
_PACKED_VERTS = 1 << 21  # below this many vertices a sorted face packs into one int64 (3 x 21 bits)
_PART_FACES = 1 << 18  # larger meshes are decimated in parts of about this many faces first (see _decimate)
_MAX_PROCESSES = 4  # slab decimation: at most this many processes (this one + helpers), see _simplify_slabs

log = logging.getLogger(__name__)

# The helper process of _simplify_slabs (numpy + fast-simplification only; see its module docstring)
_HELPER_MODULE = "actionmesh_core.geometry.decimation_helper"


def validate_mesh(mesh, what: str = "mesh", *, require_area: bool = True) -> trimesh.Trimesh:
    """Check that ``mesh`` is a usable triangle mesh and return it.

    Args:
        mesh: a ``trimesh.Trimesh``.
        what: name used in error messages.
        require_area: also reject meshes whose total surface area is 0.

    Returns:
        The same ``trimesh.Trimesh``.

    Raises:
        TypeError: not a ``trimesh.Trimesh`` (e.g. a ``Scene`` or point cloud;
            load files with :func:`actionmesh_core.io.mesh_io.load_mesh`).
        ValueError: no vertices or faces, faces not (F, 3) triangles, face
            indices out of range, NaN/inf vertices, or zero surface area.
    """
    if isinstance(mesh, trimesh.Scene):
        raise TypeError(f"{what}: got a trimesh.Scene; flatten it first (actionmesh_core.io.mesh_io.load_mesh does)")
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"{what}: expected a trimesh.Trimesh, got {type(mesh).__name__}")
    verts = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    if verts.ndim != 2 or verts.shape[-1] != 3 or len(verts) == 0:
        raise ValueError(f"{what}: has no vertices (vertices shape {verts.shape}); nothing to process")
    if faces.ndim != 2 or len(faces) == 0:
        raise ValueError(f"{what}: has no faces; a triangle mesh (not a point cloud) is required")
    if faces.shape[-1] != 3:
        raise ValueError(f"{what}: faces must be triangles (F, 3), got {faces.shape}; triangulate the mesh first")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise ValueError(f"{what}: face indices outside [0, {len(verts)})")
    if not np.isfinite(verts).all():
        bad = int((~np.isfinite(verts)).any(-1).sum())
        raise ValueError(f"{what}: {bad} vertices are NaN or infinite; fix or remove them first")
    if require_area and not _faces_with_area(verts, faces):
        raise ValueError(f"{what}: total surface area is 0 (all faces degenerate); nothing to sample or render")
    return mesh


def remove_small_components(mesh: trimesh.Trimesh, min_fraction: float = 0.02) -> trimesh.Trimesh:
    """Drop connected components with fewer than ``min_fraction`` x the largest component's faces.

    Components are face-connected through shared edges (floaters below 2% of
    the largest component are removed; release: actionmesh/preprocessing/mesh_processor.py,
    ``remove_floaters``).

    Args:
        mesh: (V, 3) / (F, 3) triangle mesh (vertices should be merged first).
        min_fraction: in [0, 1]; 0 keeps everything.

    Returns:
        A new ``trimesh.Trimesh`` without the small components and their
        unreferenced vertices.

    Raises:
        ValueError: ``min_fraction`` outside [0, 1].
    """
    if not 0.0 <= float(min_fraction) <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    if min_fraction == 0 or len(mesh.faces) == 0:
        return mesh.copy()
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    counts = np.bincount(labels)
    keep = counts[labels] >= float(min_fraction) * counts.max()
    out = mesh.copy()
    out.update_faces(keep)
    out.remove_unreferenced_vertices()
    return out


def _faces_with_area(verts: np.ndarray, faces: np.ndarray) -> bool:
    """True when at least one (F, 3) face of (V, 3) ``verts`` has a nonzero area (chunked, stops early)."""
    for start in range(0, len(faces), _CHUNK):
        if (trimesh.triangles.area(verts[faces[start:start + _CHUNK]]) > 0).any():
            return True
    return False


def _first_occurrence(keys: np.ndarray, exact) -> np.ndarray:
    """For each row, the index of the first row equal to it: (N,) int64 (``arange`` when all rows differ).

    ``keys`` (N,) int64/uint64: equal rows have equal keys (an exact packed
    key, or a hash that may also collide). Only rows whose key repeats are
    grouped exactly, with ``exact(idx) -> (len(idx),)`` labels equal for
    equal rows among the rows ``idx``. A marching-cubes mesh has few such
    rows, so this costs one sort of the keys instead of a full row grouping
    (``np.unique(..., return_index=True)`` / ``trimesh.grouping.unique_rows``,
    whose result it reproduces: tested).
    """
    rep = np.arange(len(keys))
    srt = np.sort(keys)
    repeated = np.unique(srt[1:][srt[1:] == srt[:-1]])
    del srt
    if len(repeated) == 0:
        return rep
    cand = np.flatnonzero(repeated[np.searchsorted(repeated, keys).clip(max=len(repeated) - 1)] == keys)
    first = np.unique(exact(cand), return_index=True, return_inverse=True)
    rep[cand] = cand[first[1][first[2].reshape(-1)]]
    return rep


def _row_hash(rows: np.ndarray) -> np.ndarray:
    """(N, 3) integers -> (N,) uint64 hash (multiply-xor; equal rows, equal hashes)."""
    r = rows.astype(np.uint64, copy=False)
    return (r[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ (r[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F)) \
        ^ (r[:, 2] * np.uint64(0x165667B19E3779F9))


def _merge_vertices(verts: np.ndarray, faces: np.ndarray, digits: Optional[int]):
    """Weld vertices whose positions are equal after rounding to ``digits`` decimals.

    Same result as ``trimesh.Trimesh.merge_vertices(digits_vertex=digits)`` on
    a mesh without UVs or normals (first occurrence kept, vertices in input
    order, unreferenced vertices dropped), computed with trimesh's own
    array-level rounding and grouping (``trimesh.grouping.float_to_int``,
    ``unique_rows``, the latter only on rows whose rounded hash repeats: see
    :func:`_first_occurrence`) without building a Trimesh and its caches.

    Returns:
        ((V', 3) vertices, (F, 3) int64 faces).
    """
    if digits is None:
        digits = trimesh.util.decimal_to_digits(trimesh.tol.merge)
    referenced = np.zeros(len(verts), dtype=bool)
    referenced[faces] = True
    ref = np.flatnonzero(referenced)
    rounded = trimesh.grouping.float_to_int(verts[ref], digits)
    rep = _first_occurrence(_row_hash(rounded), lambda idx: trimesh.grouping.unique_rows(rounded[idx])[1])
    del rounded
    kept = rep == np.arange(len(rep))
    inverse = np.zeros(len(verts), dtype=np.int64)
    inverse[ref] = (np.cumsum(kept) - 1)[rep]
    return verts[ref[kept]], inverse[faces]


def _drop_bad_faces(verts: np.ndarray, faces: np.ndarray):
    """Drop degenerate faces, duplicate faces and unreferenced vertices.

    Degenerate as ``trimesh.Trimesh.nondegenerate_faces`` (a side of the
    face's oriented bounding box <= ``trimesh.tol.merge``; evaluated in chunks
    so no (F, 3, 3) copy is held), duplicate as ``unique_faces`` (same vertex
    set in any order; the first occurrence is kept): the sorted index triple
    packed into one int64 key (up to 2^21 vertices; a hash above, grouped
    exactly with ``trimesh.grouping.unique_rows`` where it repeats), see
    :func:`_first_occurrence`.

    Returns:
        ((V', 3) vertices, (F', 3) int64 faces), faces in input order.
    """
    keep = np.empty(len(faces), dtype=bool)
    for start in range(0, len(faces), _CHUNK):
        tri = verts[faces[start:start + _CHUNK]]
        keep[start:start + _CHUNK] = trimesh.triangles.nondegenerate(tri, areas=trimesh.triangles.area(tri))
    faces = faces[keep]
    srt = np.sort(faces, axis=1)
    if len(verts) <= _PACKED_VERTS:
        key = (srt[:, 0] << 42) | (srt[:, 1] << 21) | srt[:, 2]
        rep = _first_occurrence(key, lambda idx: key[idx])
    else:
        rep = _first_occurrence(_row_hash(srt), lambda idx: trimesh.grouping.unique_rows(srt[idx])[1])
    del srt
    first = rep == np.arange(len(rep))
    if not first.all():
        faces = faces[first]
    referenced = np.zeros(len(verts), dtype=bool)
    referenced[faces] = True
    if not referenced.all():
        inverse = np.cumsum(referenced) - 1
        verts, faces = verts[referenced], inverse[faces]
    return verts, faces


def _decimate(verts: np.ndarray, faces: np.ndarray, target_faces: int, aggressiveness: float,
              processes: Optional[int] = None):
    """Quadric decimation of (V, 3) / (F, 3) arrays to at most ``target_faces`` faces (fast-simplification).

    fast-simplification holds about 350 bytes per input face while it works
    (and keeps that capacity until its next call): ~1.2 GB for the ~3.4 M-face
    marching-cubes mesh of a 512^3 grid. Meshes above 2 x ``_PART_FACES``
    faces are therefore decimated in two passes: first in slabs of about
    ``_PART_FACES`` faces along the longest bounding-box axis, each to its
    share of 4 x ``target_faces`` with its open border (the seams) kept in
    place, then, after welding the seams, the whole mesh to ``target_faces``.
    The second pass sees the whole surface, so the seams leave no trace; the
    distance to the input surface is the same as a single pass (measured on
    the tiny-weights anchor mesh: mean 1.19 voxels both ways, max lower).
    One difference: the first pass also keeps the input's own open borders
    (a surface cut by the grid's bounds), so those end finer than after a
    single pass (closed surfaces are not affected).

    The slabs are independent: fast-simplification holds the GIL, so they are
    shared between this process and up to ``processes - 1`` helper processes
    (see :func:`_simplify_slabs`); the result does not depend on it.

    Returns:
        ((V', 3) float64, (F', 3) int64) as fast-simplification's last pass
        leaves them (``clean_mesh`` welds and drops bad faces afterwards).
    """
    import fast_simplification

    parts = -(-len(faces) // _PART_FACES)
    if parts > 2 and len(faces) > 8 * target_faces:
        axis = int(np.argmax(verts.max(0) - verts.min(0)))
        key = verts[faces[:, 0], axis]
        slab = np.searchsorted(np.quantile(key, np.linspace(0.0, 1.0, parts + 1)[1:-1]), key)
        del key
        budget = 4 * target_faces

        def slab_job(k):
            part = faces[slab == k]
            used = np.zeros(len(verts), dtype=bool)
            used[part] = True
            index = np.cumsum(used) - 1
            return (verts[used].astype(np.float32), index[part].astype(np.int32),
                    max(4, budget * len(part) // len(faces)))

        done = _simplify_slabs(slab_job, parts, aggressiveness, _slab_processes(processes, parts))
        del slab
        out_v, out_f, offset = [], [], 0
        for pv, pf in done:
            out_v.append(np.asarray(pv, np.float64))
            out_f.append(np.asarray(pf, np.int64) + offset)
            offset += len(pv)
        del done
        verts, faces = _drop_bad_faces(*_merge_vertices(np.concatenate(out_v), np.concatenate(out_f), None))
        del out_v, out_f
    if len(faces) > target_faces:
        verts, faces = fast_simplification.simplify(
            verts.astype(np.float32), faces.astype(np.int32), target_count=int(target_faces), agg=aggressiveness)
    return np.asarray(verts, np.float64), np.asarray(faces, np.int64)


def _slab_processes(processes: Optional[int], parts: int) -> int:
    """Processes for ``parts`` slabs: ``processes`` when given, else the CPUs this process may use (<= 4)."""
    if processes is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            cpus = os.cpu_count() or 1
        processes = min(cpus, _MAX_PROCESSES)
    return max(1, min(int(processes), parts // 2))


def _simplify_slabs(job, parts: int, aggressiveness: float, processes: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """fast-simplification of ``parts`` slabs with their borders kept, ``processes`` at a time.

    ``job(k) -> ((V_k, 3) float32, (F_k, 3) int32, target faces)`` builds slab
    ``k``. fast-simplification holds the GIL, so threads would not overlap:
    with ``processes > 1`` the first slabs go, in contiguous groups, to
    ``processes - 1`` helper Python processes (numpy + fast-simplification
    only, started with ``sys.executable``; arrays over pipes as .npy records),
    while this process decimates the last group. A helper that cannot start
    or fails leaves its slabs to this process (logged): the output is the
    same either way (fast-simplification is deterministic; tested).

    Returns:
        One ((V'_k, 3) float32, (F'_k, 3) int32) pair per slab, in slab order.
    """
    import fast_simplification

    bounds = np.linspace(0, parts, processes + 1).round().astype(int)
    groups = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    helpers = []
    results: dict = {}

    def here(k):
        v, f, target = job(k)
        results[k] = fast_simplification.simplify(v, f, target_count=target, agg=aggressiveness, preserve_border=True)

    try:
        for group in groups[:-1]:
            helper = _start_helper()
            if helper is None:
                break
            helpers.append([group, helper, None])
            jobs = [job(k) for k in group]
            writer = threading.Thread(target=_send_jobs, args=(helper, jobs, aggressiveness), daemon=True)
            writer.start()  # the helper imports numpy first: do not wait for it here
            helpers[-1][2] = writer
        for k in range(bounds[len(helpers)], parts):  # this process: the groups no helper took
            here(k)
        for entry in list(helpers):
            group, helper, writer = entry
            got = _collect(helper, writer, len(group))
            helpers.remove(entry)
            for k, pair in zip(group, got or ()):
                results[k] = pair
            if got is None:
                for k in group:
                    here(k)
    finally:  # interrupted or failed here: no helper outlives this call
        for _group, helper, _writer in helpers:
            helper.kill()
            helper.wait()
    return [results[k] for k in range(parts)]


_HELPERS_OFF: list = []  # set after a helper failed once: this process decimates alone from then on


def _start_helper() -> Optional[subprocess.Popen]:
    """A helper Python process (``sys.executable -m`` :mod:`.decimation_helper`), or None.

    It starts in the folder that holds ``actionmesh_core`` (where ``-m`` finds it; the helper drops that entry
    from its path at once) and gets this process's ``sys.path`` appended after its own paths. None when helpers
    failed before in this process or ``sys.executable`` is not a Python interpreter (an embedding application
    such as Blender reports its own binary there).
    """
    from .decimation_helper import PATH_VARIABLE

    exe = sys.executable or ""
    if _HELPERS_OFF or not os.path.basename(exe).lower().startswith("python"):
        return None
    # the packages this process sees, after the helper's own paths (a host folder on sys.path, e.g. ComfyUI's, must
    # not shadow the standard library in the helper, as PYTHONPATH entries would)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}  # safe-path mode would hide the module
    env[PATH_VARIABLE] = os.pathsep.join(p for p in sys.path if p)
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        return subprocess.Popen([exe, "-m", _HELPER_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=package_root, env=env)
    except OSError as exc:
        _HELPERS_OFF.append(True)
        log.warning("clean_mesh: no helper process for decimation (%s); decimating in this process", exc)
        return None


def _send_jobs(helper: subprocess.Popen, jobs, aggressiveness: float) -> None:
    from numpy.lib import format as npf

    from .decimation_helper import _Pipe

    try:
        pipe = _Pipe(helper.stdin)
        npf.write_array(pipe, np.array([len(jobs)], np.int64))
        for v, f, target in jobs:
            for a in (v, f, np.array([target, aggressiveness], np.float64)):
                npf.write_array(pipe, a)
        helper.stdin.close()
    except (OSError, ValueError):  # the helper died; _collect reports it
        pass


def _collect(helper: subprocess.Popen, writer: threading.Thread, count: int):
    """The helper's ``count`` decimated slabs, or None (logged) when it failed."""
    from numpy.lib import format as npf

    from .decimation_helper import _Pipe

    got, pipe = [], _Pipe(helper.stdout)
    try:
        for _ in range(count):
            got.append((npf.read_array(pipe), npf.read_array(pipe)))
    except (OSError, ValueError, EOFError):
        got = None
        helper.kill()  # a helper that stopped reading would otherwise block the writer
    writer.join()
    err = helper.stderr.read()
    for stream in (helper.stdout, helper.stderr):
        stream.close()
    helper.wait()
    if helper.returncode != 0 or got is None:
        lines = err.decode(errors="replace").strip().splitlines()
        _HELPERS_OFF.append(True)
        log.warning("clean_mesh: the decimation helper process failed (%s); decimating in this process from now on",
                    lines[-1] if lines else f"exit status {helper.returncode}")
        return None
    return got


def clean_mesh(
    mesh: trimesh.Trimesh,
    *,
    target_faces: Optional[int] = 40000,
    min_component_fraction: float = 0.02,
    merge_digits: Optional[int] = None,
    aggressiveness: float = 7.0,
    processes: Optional[int] = None,
) -> trimesh.Trimesh:
    """Clean a marching-cubes mesh (the release's order; release:
    actionmesh/preprocessing/mesh_processor.py, ``MeshPostprocessor.process_mesh``).

    1. merge duplicate vertices (positions equal after rounding to
       ``merge_digits`` decimals; default: trimesh's tolerance, 8 digits);
    2. drop degenerate faces (repeated index or zero area), duplicate faces
       (same vertex set in any order) and unreferenced vertices;
    3. quadric decimation to at most ``target_faces`` faces with
       fast-simplification (skipped when already below or ``None``; above
       ~0.5 M faces in two passes to bound memory, see ``_decimate``);
    4. drop components with fewer than ``min_component_fraction`` x the
       largest component's faces, then unreferenced vertices.

    Steps 1-2 give the same result as trimesh's ``merge_vertices``,
    ``nondegenerate_faces``, ``unique_faces`` and
    ``remove_unreferenced_vertices``, computed on plain arrays (a ~3 M-face
    marching-cubes mesh would otherwise cost seconds and ~1 GB of trimesh
    caches before the decimation starts).

    Vertex attributes other than positions (UVs, colors) do not survive
    decimation; use this on generated meshes, not on textured user meshes.

    Args:
        mesh: input (V, 3) / (F, 3) triangle mesh in any units.
        target_faces: face budget (>= 4) or ``None`` for no decimation.
        min_component_fraction: floater threshold in [0, 1] (0 disables).
        merge_digits: decimals used to merge vertices (None = trimesh default).
        aggressiveness: fast-simplification ``agg`` (higher = faster, coarser).
        processes: processes that share the first decimation pass of a large
            mesh (``None``: the CPUs this process may use, at most 4; 1: this
            process only). Helpers are plain Python processes running
            fast-simplification; the result does not depend on it.

    Returns:
        A new ``trimesh.Trimesh`` (V', 3) float64 / (F', 3) int64; the input
        is not modified.

    Raises:
        TypeError: ``mesh`` is not a ``trimesh.Trimesh``.
        ValueError: empty mesh, non-triangle faces, NaN vertices, zero area,
            or bad options.
    """
    validate_mesh(mesh, "clean_mesh", require_area=False)
    if target_faces is not None and int(target_faces) < 4:
        raise ValueError(f"clean_mesh: target_faces must be >= 4 or None, got {target_faces}")
    if not 0.0 <= float(min_component_fraction) <= 1.0:
        raise ValueError(f"clean_mesh: min_component_fraction must be in [0, 1], got {min_component_fraction}")
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    # 1. merge duplicate vertices; 2. degenerate / duplicate faces, unreferenced vertices
    verts, faces = _drop_bad_faces(*_merge_vertices(verts, faces, merge_digits))
    if len(faces) == 0:
        raise ValueError("clean_mesh: total surface area is 0 (every face is degenerate); nothing is left to clean")
    # 3. quadric decimation to the face budget
    if target_faces is not None and len(faces) > int(target_faces):
        verts, faces = _decimate(verts, faces, int(target_faces), aggressiveness, processes)
        verts, faces = _drop_bad_faces(*_merge_vertices(verts, faces, merge_digits))
    # 4. floaters
    out = remove_small_components(trimesh.Trimesh(verts, faces, process=False), min_component_fraction)
    out.metadata.update(getattr(mesh, "metadata", {}) or {})
    return out
