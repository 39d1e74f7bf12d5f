"""SDF / occupancy field -> triangle meshes: narrow-band hierarchical grid + marching cubes.

Implements the anchor-mesh extraction from a latent the way the release's GPU
path does it (release: third_party/TripoSG/triposg/inference_utils.py,
``flash_extract_geometry``, at depth 9, the default of the anchor pipeline: release:
actionmesh/external/triposg.py, ``TripoSGPipelinePlus.__call__``): the field is evaluated on a
small dense grid over ``[-bounds, bounds]^3`` (``2**octree_depth`` cells per
axis, 64 by default), then level by level only in a *narrow band* of cells
around the sign change, up to ``2**refine_depth`` cells per axis (512 by
default), and marching cubes runs on the band's cells only.  Every tensor
stays on the field's device; marching cubes runs with ``warp-lang`` on CUDA
and scikit-image on the CPU (one code path, the backend picked by device and
logged once).  The field is batched over frames: one call returns the values
of all ``num_fields`` fields (frames / latents) at the same points, and the
band is the union of the fields' bands.

Shape legend: Q query points, F fields (frames or latents), V vertices,
K faces, M cells, N cells per axis of a level (``2**depth``).

The band, level by level (depth ``d`` -> ``d + 1``):

1. the *sign-change cells* of level ``d`` (cells whose 8 corners do not all
   lie on the same side of the level set, in any field) are dilated by
   ``dilation`` cells (the safety band: a thin part that the coarser grid
   straddles shows up at a finer level next to the detected surface),
   joined by the cells the *SDF bound* keeps (below), and split in 8
   children;
2. the children's corners are evaluated (values known at this level or at
   the 3 coarser ones are reused: no grid point is evaluated twice);
3. *closure*: wherever a face with mixed signs separates a band cell from a
   cell outside the band, that cell is added and evaluated, until no
   surface leaves the band.  So every surface component that enters the
   band is meshed whole at the finest level, with exactly the values a
   dense grid would have there: the mesh equals the dense-grid mesh wherever
   the band covers the surface (tests check it against a dense grid,
   ``octree_depth == refine_depth``, which is the dense path).

Storage and bookkeeping are dense per *brick* of 8^3 points / cells (a
level keeps only the bricks the band touches; a dense map of bricks gives
their slots): band membership, the points still to evaluate and the sign
changes are bool masks per brick, updated with shifts and element-wise
operations, so the finest level costs a few passes over its bricks rather
than per-point index lists.  Marching cubes runs on the band's bricks laid
side by side (scikit-image, with a mask keeping only band cells; seams
welded by grid edge) or on the band's cells (warp-lang).

*SDF bound* (thin and free-standing parts, ``sdf_bound=True``): a cell
without a sign change also enters the band when its corner values, read as
distances (value / slope), say that the surface may pass inside it: a thin
plate or rod that the coarser grids straddle without a sign change.  For a
field whose slope is at most ``L`` every corner lies at least
``|value - level| / L`` from the surface, so a cell is kept when its
nearest corner is within half a cell diagonal (before the last step: both
ends of an edge within half a cell, a face's corners within half a face
diagonal or all corners within half the cell diagonal, the only ways a
finest grid point inside can lie across the level).  ``L`` is each field's
steepest edge on the dense coarse grid times :data:`BAND_SAFETY` (1.25), so
a distance field scaled by any constant gives the same band.  At the last
step only the kept cells away from the found surface are added (next to it
the finest level's closure follows whatever is attached).  With it the band
finds what a dense pass finds for distance-like fields (tested against the
dense grid with a free plate 2 voxels thick and rods 1.5 voxels across).

What a band can still miss: a part of a field that is *not* distance-like,
steeper than the coarse grid shows only within less than a coarse cell of
the part (the bound then understates it), that is neither within
``dilation`` cells of the found surface nor attached to it; and a separate
sliver closer than one last-level cell to the found surface all along.
Every finer level measures the slopes of the cells it finds; a slope above
the bound is logged as a warning and flagged in the mesh metadata
(``slope_exceeded``).  Use a larger ``octree_depth`` (up to ``refine_depth``
= dense) if such parts matter.

Precision: the field runs in fp32 by default on every device
(``precision="auto"``). Half precision (``precision="bf16"`` / ``"fp16"``,
opt-in): the dense coarse level runs in fp32 and again under
``torch.autocast``, which measures the half-precision error; the *margin*
is 4x its largest value near the level.  On a half level every point
whose half value lies within the margin of the level is evaluated again
in fp32, and that shell keeps its thickness while the cells halve: a finer
level runs in half precision only while it is expected to re-evaluate at
most :data:`HALF_REEVALUATED` of its points (twice the share of the
coarser level's; see ``_half_level``), the finer ones in fp32 once.  On a half level every point
whose half value lies within the margin of the level is evaluated again in
fp32, so each grid point that decides the surface keeps its fp32 sign
(tested on the CPU with bf16); the values left in half precision are
flagged, and only they lose the margin in the SDF bound and in the slope
check (an fp32 value is exact).  Why: on levels whose cells are small
against the margin nearly every band point was evaluated twice, and the
margin, subtracted from every value, widened the band at every level
(the 2026-12-04 H200 run, ``benchmarks/RESULTS.md`` "GPU check": the
released-size anchor took 28.4 M bf16 points, 21.1 M of them again in fp32,
and 16.4 s, against 5.4 M fp32 points and 4.3 s, same 1,441,323 faces).
The released-size VAE's bf16 margin is ~12 voxels of the 2^9 grid (measured
on the CPU: largest bf16 error near the level 0.0096 for a slope of 0.63),
so for it every refined level now runs in fp32 (the same points as fp32
plus one half-precision pass over the coarse grid).  Half precision pays
only for fields whose half-precision error is small against the cells, and
even then its margin widens the band (tiny random VAE at 2^5 -> 2^8: 1.4x
the points, a third of them in fp32; ``benchmarks/bench_meshing.py
--half``), so fp32 stays the default.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Callable, Optional, Union

import numpy as np
import torch
import trimesh

__all__ = ["sdf_to_meshes", "sdf_to_mesh", "sdf_surface_points", "grid_points", "available_backends", "BACKENDS",
           "BAND_SAFETY"]

log = logging.getLogger(__name__)

FieldFn = Callable[[torch.Tensor], torch.Tensor]
ProgressFn = Callable[[int, int], None]

BACKENDS = ("skimage", "warp")
"""Marching-cubes backends: scikit-image (CPU) and warp-lang (``warp.geometry.sparse_marching_cubes_from_cells``)."""

_SHIFT = 3
_B = 1 << _SHIFT  # brick side: cells / points per axis owned by one storage brick
_B3 = _B**3
_MASK = _B - 1
# the 8 corner offsets of a cell, index 4*i + 2*j + k
_CORNERS = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
# for k = 1, 2, 3 levels up: brick-local offsets of a brick's points (s*u, s*v, s*w), s = 2**k, and of the
# coarser level's points (u, v, w) they equal (u, v, w < 8 / s)
_UP = {k: ([((s * u) << 6) | ((s * v) << 3) | (s * w) for u in range(_B // s) for v in range(_B // s)
            for w in range(_B // s)],
           [(u << 6) | (v << 3) | w for u in range(_B // s) for v in range(_B // s) for w in range(_B // s)])
       for k, s in ((1, 2), (2, 4), (3, 8))}
# warp's corner order (IsoSurfaceMarchingCubes.CUBE_CORNER_OFFSETS)
_WARP_CORNERS = ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1))

_LOGGED: set = set()


def _log_once(key, level, message) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.log(level, message)


def _warp_usable() -> bool:
    try:
        import warp

        warp.config.quiet = True  # no banner on stdout
        import warp.geometry

        return hasattr(warp.geometry, "sparse_marching_cubes_from_cells")
    except Exception:  # pragma: no cover - depends on the host
        return False


def available_backends(device: Union[str, torch.device, None] = None) -> list[str]:
    """Marching-cubes backends usable for fields on ``device``.

    Returns:
        ``["skimage"]`` plus ``"warp"`` when ``warp-lang`` (>= 1.19, with
        ``warp.geometry.sparse_marching_cubes_from_cells``) imports; warp runs
        on the CPU too (tests use it there), ``"auto"`` picks it on CUDA only.

    Raises:
        RuntimeError/TypeError: only for an invalid ``device`` string (from torch).
    """
    torch.device(device) if device is not None else None
    return ["skimage"] + (["warp"] if _warp_usable() else [])


def grid_points(depth: int, bounds: float = 1.005, device=None) -> torch.Tensor:
    """Coordinates of the dense grid with ``2**depth`` cells per axis.

    Args:
        depth: octree depth (>= 1); ``n = 2**depth + 1`` points per axis.
        bounds: half side of the cube ``[-bounds, bounds]^3`` (model units).
        device: torch device of the result.

    Returns:
        (n**3, 3) float32 points in C order (x slowest, z fastest), i.e. point
        ``(i, j, k)`` is row ``(i*n + j)*n + k`` at ``-bounds + (i, j, k)*h``
        with ``h = 2*bounds/2**depth``.

    Raises:
        ValueError: ``depth`` outside [1, 11] or ``bounds <= 0``.
    """
    if not 1 <= int(depth) <= 11 or not bounds > 0:
        raise ValueError(f"grid_points: need 1 <= depth <= 11 and bounds > 0, got depth={depth}, bounds={bounds}")
    n = 2**depth + 1
    axis = torch.linspace(-bounds, bounds, n, device=device, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3)


# --------------------------------------------------------------------------- field evaluation


@contextlib.contextmanager
def _bookkeeping_threads(ev: "_Evaluator"):
    """On the CPU, run the extraction's own torch ops on one thread and the field on the caller's.

    The band's bookkeeping is many short element-wise passes: with OpenMP
    threads on a small machine they ran ~2x slower than on one (measured
    with 2 threads on 2 cores); the field (a model) keeps every thread.
    """
    threads = torch.get_num_threads()
    if ev.device.type != "cpu" or threads <= 1:
        yield
        return
    ev.threads = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        ev.threads = 0


class _Progress:
    def __init__(self, callback: Optional[ProgressFn]):
        self.callback = callback
        self.done = 0
        self.total = 0

    def add(self, units: int) -> None:
        self.total += int(units)

    def step(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, max(self.total, self.done))


class _Evaluator:
    """Chunked calls of the user field (shape/finite checks, counting, optional half precision).

    ``use_half`` (set per level by :func:`_band`): evaluate in ``half_dtype``, then again in fp32 every point
    whose half value lies within ``margin`` of the level.  Counts: ``count`` grid points evaluated (each once),
    ``count_half`` / ``count_fp32`` field evaluations in half precision / fp32 (re-evaluations included)."""

    def __init__(self, field_fn, num_fields, chunk_size, device, bounds, progress, half_dtype):
        self.field_fn = field_fn
        self.num_fields = num_fields
        self.chunk_size = chunk_size
        self.device = device
        self.bounds = bounds
        self.progress = progress
        self.half_dtype = half_dtype  # None = fp32 only
        self.use_half = False  # this level in half precision (see _band)
        self.margin = math.inf  # |half value - level| below which a point is re-evaluated in fp32
        self.count = 0
        self.count_half = 0
        self.count_fp32 = 0
        self.half_levels: list = []  # depths evaluated in half precision
        self.reevaluated = 1.0  # fraction of the last level's points within the margin (see _half_level)
        self.threads = 0  # > 1: torch threads to restore around field calls (see _bookkeeping_threads)

    def __call__(self, idx, cells: int, level: float, sign: float, count: int = -1, sink=None):
        """Field at integer grid points of a grid with ``cells`` cells per axis.

        ``idx`` is a (Q, 3) integer tensor, or a function ``idx(start, stop) -> (q, 3)`` giving the
        points chunk by chunk (then ``count`` = Q).  Returns (F, Q) fp32, or with ``sink`` calls
        ``sink(start, stop, values (F, q), approx)`` per chunk and returns None; ``approx`` (q,) bool marks
        the values left in half precision (None: all fp32).
        """
        q_all = idx.shape[0] if isinstance(idx, torch.Tensor) else count
        out = None if sink is not None else \
            torch.empty(self.num_fields, q_all, dtype=torch.float32, device=self.device)
        half = self.half_dtype if self.use_half and math.isfinite(self.margin) else None
        self.progress.add(math.ceil(q_all / self.chunk_size))
        for start in range(0, q_all, self.chunk_size):
            stop = min(start + self.chunk_size, q_all)
            chunk = idx[start:stop] if isinstance(idx, torch.Tensor) else idx(start, stop)
            pts = self.model_points(chunk, cells)
            vals = self._call(pts, half)
            approx = None
            if half is not None:
                self.count_half += pts.shape[0]
                near = ((vals - level).abs() <= self.margin).any(0)
                if bool(near.any()):
                    vals[:, near] = self._call(pts[near], None)
                    self.count_fp32 += int(near.sum())
                approx = ~near
            else:
                self.count_fp32 += pts.shape[0]
            if sink is not None:
                sink(start, stop, vals, approx)
            else:
                out[:, start:stop] = vals
            self.count += pts.shape[0]
            self.progress.step()
        return out

    def model_points(self, idx: torch.Tensor, cells: int) -> torch.Tensor:
        """(Q, 3) integer grid points of a grid with ``cells`` cells per axis -> (Q, 3) float32 model units."""
        return idx.to(torch.float32) * (2.0 * self.bounds / cells) - self.bounds

    def _call(self, pts: torch.Tensor, half_dtype) -> torch.Tensor:
        from ..perf import tf32_matmuls

        if self.threads > 1:  # the field gets the caller's threads, the bookkeeping runs on one
            torch.set_num_threads(self.threads)
        try:
            with torch.no_grad(), tf32_matmuls():  # TF32 only when opted in (perf flag ``tf32``)
                if half_dtype is not None:
                    with torch.autocast(device_type=pts.device.type, dtype=half_dtype):
                        vals = self.field_fn(pts)
                else:
                    vals = self.field_fn(pts)
        finally:
            if self.threads > 1:
                torch.set_num_threads(1)
        if isinstance(vals, np.ndarray):
            vals = torch.from_numpy(vals)
        if not isinstance(vals, torch.Tensor):
            raise TypeError(
                f"sdf_to_meshes: field_fn must return a torch.Tensor of shape (num_fields, Q), got {type(vals).__name__}"
            )
        q = pts.shape[0]
        if vals.ndim == 1 and self.num_fields == 1:
            vals = vals[None]
        if vals.ndim == 3 and vals.shape[-1] == 1:
            vals = vals[..., 0]
        if tuple(vals.shape) != (self.num_fields, q):
            raise ValueError(
                f"sdf_to_meshes: field_fn returned shape {tuple(vals.shape)} for {q} points; expected "
                f"({self.num_fields}, {q}) = (num_fields, Q). Pass num_fields= matching the number of frames/latents."
            )
        vals = vals.detach().to(self.device, torch.float32)
        if not torch.isfinite(vals).all():
            raise ValueError(
                "sdf_to_meshes: field_fn returned NaN or infinite values; check the latents / decoder "
                "(e.g. run it in float32) before meshing"
            )
        return vals


# --------------------------------------------------------------------------- the SDF bound of the band

#: A level of the band runs in half precision only while the fraction of its points expected within the
#: half-precision margin of the level (evaluated twice) is at most this; the others run in fp32 once
#: (see :func:`_half_level`).
HALF_REEVALUATED = 0.5

#: Safety factor of the band's SDF bound: the field's slope is taken as this many times the slope measured on
#: the coarse grid (covers fields whose gradient norm strays above the measured one, e.g. a learned SDF).
BAND_SAFETY = 1.25


def _corner_reduce(t: torch.Tensor, op) -> torch.Tensor:
    """(..., m+1, m+1, m+1) point values -> (..., m, m, m) ``op`` (torch.minimum / maximum / logical_or) of each
    cell's 8 corners."""
    t = op(t[..., :-1, :, :], t[..., 1:, :, :])
    t = op(t[..., :, :-1, :], t[..., :, 1:, :])
    return op(t[..., :, :, :-1], t[..., :, :, 1:])


def _pair_reduce(t: torch.Tensor, dims, op) -> torch.Tensor:
    """``op`` of neighbouring entries along each of ``dims`` (negative dims): one entry fewer along each."""
    for d in dims:
        n = t.shape[d]
        t = op(t.narrow(d, 0, n - 1), t.narrow(d, 1, n - 1))
    return t


class _Bound:
    """Which cells without a sign change may still hold a piece of the surface (thin, free-standing parts).

    For a field whose slope is at most ``L`` (``|f(x) - f(y)| <= L |x - y|``; ``L = 1`` for a signed distance
    field), a point ``x`` on the level set satisfies ``|f(c) - level| <= L |x - c|`` at every grid point ``c``.
    ``dist(c) = |f(c) - level| / L`` is therefore a lower bound of the distance from ``c`` to the surface, and
    a cell can only hold a part of the surface if its corners' bounds allow it:

    - a cell that is refined further than one level (it may hold the surface anywhere inside): the nearest
      corner within ``sqrt(3)/2`` cell (the farthest a point of a cube lies from its nearest corner);
    - the last cell level before the finest one: the finest level adds only the cell's edge midpoints, face
      centres and centre, and one of them must lie across the level for a finest cell to change sign: both
      ends of an edge within 1/2 cell, or the 4 corners of a face within ``sqrt(2)/2``, or all 8 corners
      within ``sqrt(3)/2``.

    ``L`` is each field's steepest grid-edge slope on the dense coarse level times :data:`BAND_SAFETY`, so the
    rule does not depend on the field's scale (an SDF times any constant gives the same band).  A field that is
    steeper than that only within less than a coarse cell of a part can hide the part from this bound; the
    extractor then still has the dilation and the closure, and every finer level measures the slopes of the
    cells it finds: a slope above the bound is logged as a warning (``metadata["meshing"]["slope_exceeded"]``)
    and raises the bound for the levels below.
    """

    def __init__(self, slope: torch.Tensor, margin: float, safety: float = BAND_SAFETY, enabled: bool = True):
        self.slope = slope.clamp_min(1e-30) * safety  # (F,) field units per model unit
        self.safety = safety
        self.margin = margin  # error bound of the values left in half precision (field units); 0 in fp32
        self.enabled = enabled
        self.exceeded = False

    @staticmethod
    def measure(dense: torch.Tensor, h: float) -> torch.Tensor:
        """Steepest grid-edge slope of each field: (F, n+1, n+1, n+1) values, spacing ``h`` -> (F,)."""
        out = None
        for d in (1, 2, 3):
            m = torch.diff(dense, dim=d).abs_().flatten(1).amax(1)
            out = m if out is None else torch.maximum(out, m)
        return out / h

    def distance(self, v: torch.Tensor, level: float, approx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(F, ...) field values -> (...) lower bound of the distance to the nearest field's level set (model units).

        ``approx`` (...) bool: the values left in half precision (their error, up to ``margin``, is taken off;
        the fp32 values are exact).  One field at a time (peak memory: one field's block, not F)."""
        out = None
        for f in range(v.shape[0]):
            d = (v[f] - level).abs_()
            if self.margin and approx is not None:
                d = torch.where(approx, (d - self.margin).clamp_min_(0.0), d)
            d.div_(self.slope[f])
            out = d if out is None else torch.minimum(out, d, out=out)
        return out

    def cells(self, v: torch.Tensor, level: float, h: float, last: bool,
              approx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(F, ..., m+1, m+1, m+1) values at the points of cells of side ``h`` -> (..., m, m, m) bool: the cell may
        hold a part of the surface (``last``: the finest level comes next; ``approx``: see :meth:`distance`)."""
        d = self.distance(v, level, approx)
        if not last:
            return _corner_reduce(d, torch.minimum) <= h * (0.5 * 3**0.5)
        out = _corner_reduce(d, torch.maximum) <= h * (0.5 * 3**0.5)  # the centre
        for axis in (-3, -2, -1):
            others = tuple(a for a in (-3, -2, -1) if a != axis)
            edge = _pair_reduce(d, (axis,), torch.maximum) <= 0.5 * h  # edges along ``axis`` -> the cells holding them
            out |= _pair_reduce(edge, others, torch.logical_or)
            face = _pair_reduce(d, others, torch.maximum) <= h * 0.5**0.5  # faces normal to ``axis``
            out |= _pair_reduce(face, (axis,), torch.logical_or)
        return out

    def check(self, v: torch.Tensor, cells: torch.Tensor, h: float, field: int = 0,
              approx: Optional[torch.Tensor] = None) -> None:
        """Slopes of field ``field``'s values ``v`` (S, m+1, m+1, m+1) on the edges of its own sign-change ``cells``
        (S, m, m, m): above the bound -> warn once, raise the bound.  ``approx`` (S, m+1, m+1, m+1): values left
        in half precision (an edge's difference is lowered by ``margin`` per such end: half-precision noise is
        not a slope)."""
        rows = torch.nonzero(cells.flatten(1).any(1)).flatten()
        if rows.numel() == 0:
            return
        v, cells = v[rows], cells[rows]
        approx = approx[rows] if approx is not None and self.margin else None
        steep = torch.zeros_like(self.slope)
        for dim in (-3, -2, -1):  # edge slopes along each axis -> the cells holding the edges -> the field's cells
            others = tuple(d for d in (-3, -2, -1) if d != dim)
            diff = torch.diff(v, dim=dim).abs_()
            if approx is not None:
                n = approx.shape[dim]
                ends = approx.narrow(dim, 0, n - 1).to(diff.dtype) + approx.narrow(dim, 1, n - 1).to(diff.dtype)
                diff.sub_(ends.mul_(self.margin)).clamp_min_(0.0)
            cell = _pair_reduce(diff, others, torch.maximum)
            steep[field] = torch.maximum(steep[field], torch.where(cells, cell, 0.0).amax() / h)
        over = steep > self.slope
        if bool(over.any()):
            if not self.exceeded:  # once per process (a clip meshes many fields of one model)
                _log_once("slope", logging.WARNING,
                          f"sdf_to_meshes: the field is steeper near its surface ({float(steep.max()):.3g}) than its "
                          f"coarse grid showed ({float(self.slope.max()):.3g} with the safety factor): it does not "
                          "behave like a distance field, so a thin part away from the found surface may be missed; "
                          "raise octree_depth or dilation if parts are missing (metadata: slope_exceeded)")
            self.exceeded = True
            self.slope = torch.maximum(self.slope, steep * self.safety)


# --------------------------------------------------------------------------- brick storage of one level


def _inside(v: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    """Bool: the value lies inside (above ``level`` for ``sign > 0``, below it otherwise)."""
    return v > level if sign > 0 else v < level


def _sign_changes(ins: torch.Tensor):
    """Edge crossings of point signs ``ins`` (..., n+1, n+1, n+1) bool -> cells and faces with mixed signs.

    Returns ``cells`` (..., n, n, n): the cell's 8 corners are not all on one
    side; ``fx`` (..., n+1, n, n), ``fy`` (..., n, n+1, n), ``fz`` (..., n, n,
    n+1): the face normal to x / y / z at that plane has mixed corners (one
    of its 4 edges crosses the level).
    """
    ex = ins[..., :-1, :, :] ^ ins[..., 1:, :, :]  # (n, n+1, n+1) x edges
    ey = ins[..., :, :-1, :] ^ ins[..., :, 1:, :]
    ez = ins[..., :, :, :-1] ^ ins[..., :, :, 1:]
    fx = ey[..., :, :, :-1] | ey[..., :, :, 1:] | ez[..., :, :-1, :] | ez[..., :, 1:, :]
    fy = ex[..., :, :, :-1] | ex[..., :, :, 1:] | ez[..., :-1, :, :] | ez[..., 1:, :, :]
    fz = ex[..., :, :-1, :] | ex[..., :, 1:, :] | ey[..., :-1, :, :] | ey[..., 1:, :, :]
    # a cell whose two x faces are uniform changes sign iff its x edges cross
    cells = fx[..., :-1, :, :] | fx[..., 1:, :, :] | ex[..., :, :-1, :-1]
    return cells, fx, fy, fz


class _Level:
    """Field values and band cells of one level, dense inside bricks of ``_B**3`` points / cells.

    Point (or cell) ``p`` (integer, 0..N per axis) is owned by brick ``p >> 3``
    at local index ``p & 7``; a dense (N/8 + 1)^3 map gives each allocated
    brick's slot.  Per slot: field values ``vals`` (F, 8, 8, 8), ``known``
    points, ``active`` cells (in the band, all 8 corners known) and ``sc``
    cells (active with a sign change in some field).  All bookkeeping is
    dense per brick (masks, shifts), so its cost does not grow with a
    per-point index list.
    """

    def __init__(self, cells: int, num_fields: int, device: torch.device, track_half: bool = False):
        self.cells = cells
        self.nb = (cells >> _SHIFT) + 1
        self.device = device
        self.num_fields = num_fields
        self.map = torch.full((self.nb**3,), -1, dtype=torch.long, device=device)
        self.size = 0
        self.cap = 0
        self.bricks = torch.zeros(0, 3, dtype=torch.long, device=device)
        self.vals = torch.zeros(num_fields, 0, _B, _B, _B, dtype=torch.float32, device=device)
        self.known = torch.zeros(0, _B, _B, _B, dtype=torch.bool, device=device)
        self.active = torch.zeros_like(self.known)
        self.sc = torch.zeros_like(self.known)
        self.near = torch.zeros_like(self.known)  # active cells without sign change the SDF bound keeps (_Bound)
        self.pending = torch.zeros_like(self.known)
        # values left in half precision (their error is up to the evaluator's margin); None: fp32 only
        self.approx = torch.zeros_like(self.known) if track_half else None
        self.cached = None  # (slots (S,), values (F, S, 9, 9, 9)) of the last band pass
        self.closure_cells = 0  # cells the closure added

    # ---- slots
    def _grow(self, need: int) -> None:
        if need < self.cap:  # at least one slot stays free and zero: ``gather``'s stand-in for missing bricks
            return
        cap = max(need + need // 2, 2 * self.cap, 64)

        def ext(t, dim=0):
            shape = list(t.shape)
            shape[dim] = cap
            out = t.new_zeros(shape)
            out.narrow(dim, 0, self.size).copy_(t.narrow(dim, 0, self.size))
            return out

        self.bricks = ext(self.bricks)
        self.vals = ext(self.vals, 1)
        self.known, self.active, self.sc, self.near, self.pending = (
            ext(t) for t in (self.known, self.active, self.sc, self.near, self.pending))
        if self.approx is not None:
            self.approx = ext(self.approx)
        self.cap = cap

    def key(self, bricks: torch.Tensor) -> torch.Tensor:
        return (bricks[:, 0] * self.nb + bricks[:, 1]) * self.nb + bricks[:, 2]

    def slots(self, keys: torch.Tensor) -> torch.Tensor:
        """Slots of the bricks with dense keys ``keys`` (Q,), allocating the missing ones -> (Q,)."""
        miss = keys[self.map[keys] < 0]
        if miss.numel():
            new = _unique(miss, self.nb**3)
            self._grow(self.size + new.numel())
            self.map[new] = torch.arange(self.size, self.size + new.numel(), device=self.device)
            nb = self.nb
            self.bricks[self.size : self.size + new.numel()] = torch.stack([new // (nb * nb), (new // nb) % nb,
                                                                            new % nb], 1)
            self.size += new.numel()
        return self.map[keys]

    def masks(self, coords: torch.Tensor, shift: int):
        """Cells (M, 3) of this level (``shift=3``) or of its parent level (``shift=2``, each -> its 8 children)
        -> (S,) unique brick slots and (S, 8, 8, 8) bool cell masks."""
        keys = self.key(coords >> shift)
        uk, inv = _unique(keys, self.nb**3, inverse=True)
        r = 1 << shift
        loc = coords & (r - 1)
        m = torch.zeros(uk.numel(), r, r, r, dtype=torch.bool, device=self.device)
        m[inv, loc[:, 0], loc[:, 1], loc[:, 2]] = True
        if shift == 2:
            m = m[:, :, None, :, None, :, None].expand(-1, 4, 2, 4, 2, 4, 2).reshape(-1, _B, _B, _B)
        return self.slots(uk), m

    def gather(self, store: torch.Tensor, slots: torch.Tensor, lo: int, hi: int, faces_only: bool = False):
        """(..., S, lo+8+hi, ...) block of per-brick ``store`` (..., cap, 8, 8, 8) around ``slots`` (S,), with
        ``lo`` / ``hi`` points of the neighbour bricks before / after (zeros where a neighbour is missing)."""
        n = lo + _B + hi
        dim = store.dim() - 4
        out = torch.nn.functional.pad(store.index_select(dim, slots), (lo, hi) * 3)
        b = self.bricks[slots]
        zero = self.size  # a free slot, all zero (the capacity always exceeds the size)
        rng = range(-1 if lo else 0, 2 if hi else 1)
        for d in ((x, y, z) for x in rng for y in rng for z in rng):
            if faces_only and sum(map(abs, d)) > 1:
                continue
            src = tuple(slice(_B - lo, _B) if x < 0 else slice(0, _B) if x == 0 else slice(0, hi) for x in d)
            dst = tuple(slice(0, lo) if x < 0 else slice(lo, lo + _B) if x == 0 else slice(lo + _B, n) for x in d)
            if d == (0, 0, 0):
                continue
            nbr = b + torch.tensor(d, device=self.device)
            ok = ((nbr >= 0) & (nbr < self.nb)).all(1)
            s = self.map[self.key(nbr.clamp(0, self.nb - 1))]
            s = torch.where(ok & (s >= 0), s, zero)
            out[(Ellipsis, slice(None)) + dst] = store[(Ellipsis, slice(None)) + src].index_select(dim, s)
        return out

    # ---- filling
    def set_dense(self, vals: torch.Tensor, sc: torch.Tensor, near: Optional[torch.Tensor] = None) -> None:
        """The dense coarse level: values (F, N+1, N+1, N+1), sign-change cells (N, N, N) and the cells the SDF
        bound keeps (N, N, N, optional); every cell active."""
        n, nb = self.cells, self.nb
        self.slots(torch.arange(nb**3, device=self.device))

        def bricked(t, size):
            pad = nb * _B - size
            t = torch.nn.functional.pad(t, (0, pad, 0, pad, 0, pad))
            lead = t.shape[:-3]
            t = t.reshape((-1, nb, _B, nb, _B, nb, _B)).permute(0, 1, 3, 5, 2, 4, 6)
            return t.reshape(lead + (nb**3, _B, _B, _B))

        self.vals[:, : nb**3] = bricked(vals, n + 1)
        self.known[: nb**3] = bricked(torch.ones((n + 1,) * 3, dtype=torch.bool, device=self.device), n + 1)
        self.active[: nb**3] = bricked(torch.ones((n,) * 3, dtype=torch.bool, device=self.device), n)
        self.sc[: nb**3] = bricked(sc, n)
        if near is not None:
            self.near[: nb**3] = bricked(near & ~sc, n)

    def sc_cells(self, store: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(M, 3) integer coordinates of the sign-change cells (or of the cells of another per-brick mask)."""
        store = self.sc if store is None else store
        flat = torch.nonzero(store[: self.size].view(-1)).flatten()
        return self.bricks[flat >> 9] * _B + torch.stack([(flat >> 6) & _MASK, (flat >> 3) & _MASK, flat & _MASK], 1)

    def refine(self, parents: torch.Tensor, coarser: list, ev: "_Evaluator", level: float, sign: float,
               bound: Optional[_Bound] = None, finest: int = 0) -> None:
        """Put the children of ``parents`` (M, 3 parent-level cells) in the band, then close it: while a
        sign-change cell has a face with mixed signs whose neighbour is not in the band, add that neighbour.
        ``coarser``: the coarser levels, nearest first (their values are reused at the points they share).
        ``bound``: the SDF bound (marks the cells it keeps, checks the slopes), ``finest``: cells per axis of the
        finest level."""
        if parents.numel() == 0:
            return
        slots, mask = self.masks(parents, 2)
        passes = 0
        while slots.numel():
            front = self._activate(slots, mask, coarser, ev, level, sign, fresh=passes == 0, bound=bound,
                                   finest=finest)
            passes += 1
            if front.numel() == 0:
                break
            slots, mask = self.masks(front, 3)
            self.closure_cells += int(mask.sum()) - int((mask & self.active[slots]).sum())
        if passes > 1:  # the closure added cells: values gathered before it may miss their far faces
            self.cached = None

    def _activate(self, slots, mask, coarser, ev, level, sign, fresh=False, bound=None, finest=0) -> torch.Tensor:
        """Add the cells ``mask`` (S, 8, 8, 8) of bricks ``slots`` (S,) to the band: evaluate their corners
        (reusing known values and those of the ``coarser`` levels), mark their sign changes, and return the
        (Q, 3) cells the closure must add next."""
        dev, F = self.device, self.num_fields
        if fresh:  # nothing of this level is in the band yet
            self.active[slots] = mask
        else:
            mask = mask & ~self.active[slots]
            self.active[slots] |= mask
        # corners of the new cells, (S, 9, 9, 9), routed to the bricks that own them
        need = torch.nn.functional.pad(mask, (0, 1, 0, 1, 0, 1))
        need[:, 1:] |= need[:, :-1].clone()
        need[:, :, 1:] |= need[:, :, :-1].clone()
        need[:, :, :, 1:] |= need[:, :, :, :-1].clone()
        owners = [slots]
        self.pending[slots] |= need[:, :_B, :_B, :_B]
        for d in _CORNERS[1:]:
            part = need[(slice(None),) + tuple(slice(_B, _B + 1) if x else slice(0, _B) for x in d)]
            hit = torch.nonzero(part.flatten(1).any(1)).flatten()
            if hit.numel() == 0:
                continue
            own = self.slots(self.key(self.bricks[slots[hit]] + torch.tensor(d, device=dev)))
            dst = (own,) + tuple(slice(0, 1) if x else slice(0, _B) for x in d)
            self.pending[dst] |= part[hit]
            owners.append(own)
        own = _unique(torch.cat(owners), self.size) if len(owners) > 1 else slots
        pend, known = self.pending[own], self.known[own]
        todo = pend & ~known
        self.known[own] = known | pend
        self.pending[own] = False
        del pend, known
        todo = todo.view(own.numel(), _B3)
        vals = self.vals.view(F, -1)
        o = self.bricks[own]
        for k, up in enumerate(coarser[:3], 1):  # points of the coarser levels: their values, where known there
            m = _B >> k
            pslot = up.map[up.key(o >> k)]
            h = (o & ((1 << k) - 1)) * m
            pidx = ((pslot.clamp_min(0) << 9) | (h[:, 0] << 6) | (h[:, 1] << 3) | h[:, 2])[:, None] \
                + torch.tensor(_UP[k][1], device=dev)
            pk = up.known.view(-1)[pidx] & (pslot >= 0)[:, None]
            fo = torch.tensor(_UP[k][0], device=dev)
            te = todo[:, fo]
            take = te & pk
            r, c = torch.nonzero(take, as_tuple=True)
            if r.numel():
                vals[:, (own[r] << 9) | fo[c]] = up.vals.view(F, -1)[:, pidx[r, c]]
                if self.approx is not None:  # a half-precision value stays one
                    self.approx.view(-1)[(own[r] << 9) | fo[c]] = up.approx.view(-1)[pidx[r, c]]
                todo[:, fo] = te & ~pk
        r, c = torch.nonzero(todo, as_tuple=True)
        if r.numel():
            # integer coordinates held exactly in float32 (< 2**24): the same points as an integer grid
            base, local = (self.bricks[own] << _SHIFT).to(torch.float32), _local_table(dev)

            def points(a, b):
                return base.index_select(0, r[a:b]) + local.index_select(0, c[a:b])

            def store(a, b, values, approx):
                at = (own.index_select(0, r[a:b]) << 9) | c[a:b]
                vals[:, at] = values
                if self.approx is not None:
                    self.approx.view(-1)[at] = False if approx is None else approx

            ev(points, self.cells, level, sign, count=r.numel(), sink=store)
            del points, store, base
        del r, c, todo, need, own  # (peak memory: the finest level's lists are the largest)
        # sign changes of the new cells and the closure
        v = self.gather(self.vals, slots, 0, 1)
        self.cached = (slots, v)  # reused by marching cubes when the closure adds nothing
        approx = self.gather(self.approx, slots, 0, 1) if self.approx is not None and bound is not None else None
        h = 2.0 * ev.bounds / self.cells
        cells = fx = fy = fz = None
        for f in range(F):  # one field at a time (peak memory), the band is their union
            one = _sign_changes(_inside(v[f], level, sign))
            if bound is not None:  # each field's slopes where that field changes sign
                bound.check(v[f], one[0] & mask, h, f, approx)
            cells, fx, fy, fz = one if cells is None else (a.logical_or_(b) for a, b in zip((cells, fx, fy, fz), one))
            del one
        sc = cells & mask
        self.sc[slots] |= sc
        if bound is not None:
            if bound.enabled and self.cells < finest:  # cells the SDF bound keeps (children evaluated next level)
                self.near[slots] |= bound.cells(v, level, h, last=2 * self.cells == finest, approx=approx) & mask & ~sc
        del v, approx
        # closure: a face with mixed signs between a band cell and a cell outside the band (both cells of
        # such a face change sign; all its corners are known, they belong to the band cell)
        act = self.gather(self.active, slots, 1, 1, faces_only=True)
        inner = slice(1, _B + 1)
        opens = (fx & (act[:, :-1, inner, inner] ^ act[:, 1:, inner, inner]),
                 fy & (act[:, inner, :-1, inner] ^ act[:, inner, 1:, inner]),
                 fz & (act[:, inner, inner, :-1] ^ act[:, inner, inner, 1:]))
        front = []
        for axis, op in enumerate(opens):
            rows = torch.nonzero(op.flatten(1).any(1)).flatten()
            if rows.numel() == 0:
                continue
            s, i, j, k = torch.nonzero(op[rows], as_tuple=True)
            face = (self.bricks[slots[rows[s]]] << _SHIFT) + torch.stack([i, j, k], 1)
            face[:, axis] -= 1
            front.append(face)  # the cell before the face; the one after it: below
            face = face.clone()
            face[:, axis] += 1
            front.append(face)  # (the band one of the two is dropped by the next pass)
        if not front:
            return slots.new_zeros(0, 3)
        front = torch.cat(front)
        front = front[((front >= 0) & (front < self.cells)).all(1)]
        slot = self.map[self.key(front >> _SHIFT)]
        loc = front & _MASK
        inband = self.active.view(-1)[(slot.clamp_min(0) << 9) | (loc[:, 0] << 6) | (loc[:, 1] << 3) | loc[:, 2]]
        return front[~(inband & (slot >= 0))]

    def field_band(self, field: int, level: float, sign: float):
        """Band cells with a sign change in field ``field``: (S,) slots, (S, 8, 8, 8) cell mask and the
        (S, 9, 9, 9) values of the field at the bricks' points (zeros where unknown)."""
        slots = torch.nonzero(self.sc[: self.size].flatten(1).any(1)).flatten()
        if self.cached is not None:
            pos = torch.full((self.size,), -1, dtype=torch.long, device=self.device)
            pos[self.cached[0]] = torch.arange(self.cached[0].numel(), device=self.device)
            rows = pos[slots]
        if self.cached is not None and bool((rows >= 0).all()):
            v = self.cached[1][field, rows]
        else:
            v = self.gather(self.vals[field], slots, 0, 1)
        if field == self.num_fields - 1:
            self.cached = None  # (peak memory) marching cubes asks for the fields in order: this was the last
        mask = self.sc[slots]
        if self.num_fields > 1:
            mask = mask & _sign_changes(_inside(v, level, sign))[0]
            keep = mask.flatten(1).any(1)
            slots, v, mask = slots[keep], v[keep], mask[keep]
        return slots, mask, v


_LOCAL: dict = {}


def _local_table(device) -> torch.Tensor:
    """(512, 3) float32 brick-local coordinates of the storage index ``(i << 6) | (j << 3) | k``."""
    if device not in _LOCAL:
        g = torch.arange(_B, device=device, dtype=torch.float32)
        _LOCAL[device] = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return _LOCAL[device]


def _unique(keys: torch.Tensor, bound: int, inverse: bool = False):
    """Sorted unique values of ``keys`` (Q,) in [0, bound) (a dense flag array when small), optionally with
    the inverse index (Q,)."""
    if bound <= 2**25:
        flag = torch.zeros(bound, dtype=torch.bool, device=keys.device)
        flag[keys] = True
        uk = torch.nonzero(flag).flatten()
        if not inverse:
            return uk
        pos = torch.cumsum(flag, 0) - 1
        return uk, pos[keys]
    return torch.unique(keys, return_inverse=inverse)


class _Marks:
    """Membership of cells (M, 3) of a level: a dense bool volume when small, sorted keys otherwise."""

    def __init__(self, cells: int, device: torch.device):
        self.n = cells
        self.dense = torch.zeros(cells**3, dtype=torch.bool, device=device) if cells**3 <= 2**27 else None
        self.keys = torch.zeros(0, dtype=torch.long, device=device)

    def _key(self, c):
        return (c[:, 0] * self.n + c[:, 1]) * self.n + c[:, 2]

    def new(self, cells: torch.Tensor) -> torch.Tensor:
        """The cells (unique) not marked yet; marks them."""
        k = torch.unique(self._key(cells))
        if self.dense is not None:
            k = k[~self.dense[k]]
            self.dense[k] = True
        else:
            k = k[~torch.isin(k, self.keys)]
            self.keys = torch.cat([self.keys, k])
        n = self.n
        return torch.stack([k // (n * n), (k // n) % n, k % n], 1)


def _dilate(cells: torch.Tensor, radius: int, ncells: int) -> torch.Tensor:
    """Cells (M, 3) within ``radius`` (Chebyshev) of ``cells``, unique, inside [0, ncells)^3."""
    if radius <= 0 or cells.numel() == 0:
        return cells
    if ncells**3 > 2**27:
        r = torch.arange(-radius, radius + 1, device=cells.device)
        offs = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        nb = (cells[:, None, :] + offs[None]).reshape(-1, 3)
        nb = nb[((nb >= 0) & (nb < ncells)).all(1)]
        return _Marks(ncells, cells.device).new(nb)
    mark = torch.zeros(ncells**3, dtype=torch.bool, device=cells.device)
    r = range(-radius, radius + 1)
    for dx in r:
        for dy in r:
            for dz in r:
                nb = cells + torch.tensor([dx, dy, dz], device=cells.device)
                nb = nb[((nb >= 0) & (nb < ncells)).all(1)]
                mark[(nb[:, 0] * ncells + nb[:, 1]) * ncells + nb[:, 2]] = True
    key = torch.nonzero(mark).flatten()
    return torch.stack([key // (ncells * ncells), (key // ncells) % ncells, key % ncells], 1)


def _touches(cells: torch.Tensor, others: torch.Tensor, ncells: int) -> torch.Tensor:
    """(M,) bool: cell ``cells[m]`` (M, 3) is one of ``others`` (K, 3) or one of their 26 neighbours."""
    if cells.numel() == 0 or others.numel() == 0:
        return torch.zeros(cells.shape[0], dtype=torch.bool, device=cells.device)
    near = _dilate(others, 1, ncells)
    key = lambda c: (c[:, 0] * ncells + c[:, 1]) * ncells + c[:, 2]  # noqa: E731
    if ncells**3 <= 2**27:
        flag = torch.zeros(ncells**3, dtype=torch.bool, device=cells.device)
        flag[key(near)] = True
        return flag[key(cells)]
    return torch.isin(key(cells), key(near))


# --------------------------------------------------------------------------- marching cubes on the band


def _mc_skimage(lv: _Level, field: int, level: float, sign: float):
    """Band marching cubes with scikit-image: the band's bricks laid side by side, seams masked, then welded.

    The bricks (``_B**3`` cells each, with their far faces) that hold band
    cells are packed into one small 3-D array of bricks; scikit-image's
    ``mask`` keeps exactly the band's cells (it keeps a cell when the mask is
    True at the cell's far corner), so no cell across two packed bricks and no
    cell outside the band is meshed.  Vertices on brick faces appear once per
    brick and are welded by the grid edge they lie on.

    Returns (V, 3) float64 vertices in grid-index units and (K, 3) int64 faces, outward winding.
    """
    from skimage.measure import marching_cubes

    slots, cells, v = lv.field_band(field, level, sign)
    nbr = slots.numel()
    if nbr == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    n1 = _B + 1
    # packing: gx * gy * gz >= S bricks, small coordinates (float32 vertices stay precise)
    gx = max(1, round(nbr ** (1 / 3)))
    gy = gx
    gz = -(-nbr // (gx * gy))
    total = gx * gy * gz
    vol = torch.empty(total, n1, n1, n1, dtype=torch.float32, device=v.device)
    torch.sub(v, level, out=vol[:nbr]) if sign > 0 else torch.sub(level, v, out=vol[:nbr])
    vol[nbr:] = -1.0  # unknown points: their cells are masked out
    mask = torch.zeros(total, n1, n1, n1, dtype=torch.bool, device=v.device)
    mask[:nbr, 1:, 1:, 1:] = cells  # far corner of each band cell
    del v, cells  # (peak memory: only the packed copies are needed from here on)

    def pack(t):
        out = t.new_empty(gx, n1, gy, n1, gz, n1)
        out.permute(0, 2, 4, 1, 3, 5).copy_(t.view(gx, gy, gz, n1, n1, n1))
        return out.view(gx * n1, gy * n1, gz * n1).cpu().numpy()

    packed_vol, packed_mask = pack(vol), pack(mask)
    del vol, mask
    # inside > 0 with "ascent": counter-clockwise faces seen from outside (positive volume; tested)
    verts, faces = marching_cubes(packed_vol, level=0.0, gradient_direction="ascent", mask=packed_mask)[:2]
    del packed_vol, packed_mask
    block = verts.astype(np.int32) // n1  # packed brick of each vertex (coordinates >= 0)
    verts -= block * n1  # exact: integer shifts of small float32 values
    onface = ((verts == 0) | (verts == _B)).any(1)
    sid = (block[:, 0] * gy + block[:, 1]) * gz + block[:, 2]
    verts = verts.astype(np.float64) + (lv.bricks[slots] * _B).cpu().numpy()[sid]
    return _weld(verts, faces, onface, lv.cells + 1)


def _weld(verts: np.ndarray, faces: np.ndarray, candidates: np.ndarray, n: int):
    """Merge duplicated vertices among ``candidates`` (brick-face vertices) by the grid edge they lie on.

    ``verts`` (V, 3) float64 in grid-index units (a vertex lies on a grid edge: two integer coordinates),
    ``faces`` (K, 3) int, ``n`` points per axis.  Returns the welded vertices and (K, 3) int64 faces.
    """
    idx = np.nonzero(candidates)[0]
    if idx.size == 0:
        return verts, faces.astype(np.int64)
    p = verts[idx]
    base = np.floor(p)
    axis = (p - base).argmax(1)  # the edge's direction (its fractional coordinate)
    base = base.astype(np.int64)
    key = ((base[:, 0] * n + base[:, 1]) * n + base[:, 2]) * 3 + axis
    order = np.argsort(key)
    sk = key[order]
    head = np.empty(sk.size, dtype=bool)
    head[0] = True
    np.not_equal(sk[1:], sk[:-1], out=head[1:])
    rep = np.empty(idx.size, dtype=np.int64)
    rep[order] = order[head][np.cumsum(head) - 1]  # each candidate -> one representative of its edge
    keep = np.ones(len(verts), dtype=bool)
    keep[idx] = False
    keep[idx[order[head]]] = True
    new_index = np.cumsum(keep) - 1
    remap = np.arange(len(verts))
    remap[idx] = idx[rep]
    return verts[keep], new_index[remap][faces]


def _mc_warp(lv: _Level, field: int, level: float, sign: float):
    """Band marching cubes with warp-lang's sparse marching cubes (cells + corner values, watertight).

    Returns (V, 3) float64 vertices in grid-index units and (K, 3) int64 faces, outward winding.
    """
    import warp as wp
    import warp.geometry as wg

    slots, cells, v = lv.field_band(field, level, sign)
    s, i, j, k = torch.nonzero(cells, as_tuple=True)
    if s.numel() == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    occ = torch.stack([v[s, i + a, j + b, k + c] for a, b, c in _WARP_CORNERS], 1)
    occ = sign * (occ - level)
    cells = (lv.bricks[slots[s]] << _SHIFT) + torch.stack([i, j, k], 1)
    # given an SDF (inside < 0, here -occ) warp winds faces counter-clockwise seen from outside
    # (tests: positive volume and the same faces as scikit-image, on the CPU, where warp runs the same kernels)
    device = "cpu" if cells.device.type == "cpu" else f"cuda:{cells.device.index or 0}"
    wp.init()  # idempotent; from_torch needs warp's runtime, which only warp's own array calls start by themselves
    wcells = wp.from_torch(cells.to(torch.int32).contiguous(), dtype=wp.int32) if device != "cpu" else \
        cells.to(torch.int32).cpu().numpy()
    wvals = wp.from_torch((-occ).contiguous()) if device != "cpu" else (-occ).cpu().numpy()
    verts, indices = wg.sparse_marching_cubes_from_cells(wcells, wvals, origin=(0.0, 0.0, 0.0), cell_width=1.0,
                                                          threshold=0.0, device=device)
    vtx = verts.numpy().astype(np.float64).reshape(-1, 3)
    f = indices.numpy().astype(np.int64).reshape(-1, 3)
    return vtx, f


# --------------------------------------------------------------------------- public API


def _band(ev: _Evaluator, d0: int, d1: int, level: float, sign: float, dilation: int, half, sdf_bound: bool,
          stop=None):
    """Build the narrow band from the dense ``2**d0`` level down to the ``2**d1`` level -> (finest _Level, _Bound).

    Per level: the sign-change cells (dilated by ``dilation`` above the last step) and the cells the SDF bound
    keeps (:class:`_Bound`) are split, their children evaluated, then the closure follows every surface that
    leaves the band.  ``stop(level, depth) -> bool``, called after each refined level but the last: True ends
    the band at that level (which is returned).
    """
    num_fields, dev = ev.num_fields, ev.device
    # ---- dense coarse level in fp32 (in half precision it also calibrates the half-precision error)
    n0 = 2**d0
    track = half is not None  # levels keep a mask of their values left in half precision
    lv = _Level(n0, num_fields, dev, track)
    g = torch.arange(n0 + 1, device=dev)
    pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    ev.use_half = False
    exact = ev(pts, n0, level, sign)
    if half is not None:
        approx = torch.empty_like(exact)
        for s in range(0, pts.shape[0], ev.chunk_size):
            p = ev.model_points(pts[s : s + ev.chunk_size], n0)
            approx[:, s : s + p.shape[0]] = ev._call(p, half)
            ev.count_half += p.shape[0]
        dist = (exact - level).abs()
        near = dist <= torch.quantile(dist.flatten()[: 2**24], 0.05)
        ev.margin = 4.0 * float((approx - exact).abs()[near].max()) + 1e-6 * float(dist.max())
        # the share of the points around the surface (the sign-change cells' corners) within the margin
        dense = exact.view(num_fields, n0 + 1, n0 + 1, n0 + 1)
        corners = torch.nn.functional.pad(_sign_changes(_inside(dense, level, sign))[0].any(0), (0, 1) * 3)
        for d in (0, 1, 2):
            corners = corners | corners.roll(1, d)
        within = ((dense - level).abs() <= ev.margin).any(0)[corners]
        ev.reevaluated = float(within.float().mean()) if within.numel() else 1.0
        del approx, dist, near, corners, within
    dense = exact.view(num_fields, n0 + 1, n0 + 1, n0 + 1)
    h0 = 2.0 * ev.bounds / n0
    bound = _Bound(_Bound.measure(dense, h0), ev.margin if math.isfinite(ev.margin) else 0.0, enabled=sdf_bound)
    sc = _sign_changes(_inside(dense, level, sign))[0].any(0)
    near = bound.cells(dense, level, h0, last=d0 + 1 == d1) if sdf_bound and d0 < d1 else None
    lv.set_dense(dense, sc, near)
    del pts, exact, dense, sc, near

    # ---- narrow band, level by level: children of the (dilated) sign-change cells and of the cells the SDF
    # bound keeps, then closure
    coarser: list[_Level] = []  # the last 3 levels, nearest first: values reused at the points they share
    for depth in range(d0, d1):
        cells = lv.sc_cells()
        if depth < d1 - 1:  # the safety band; the finest level relies on the closure
            cells = _dilate(cells, dilation, 2**depth)
        if sdf_bound:
            near = lv.sc_cells(lv.near)
            if depth == d1 - 1 and near.numel():
                # last step: a kept cell next to a sign-change cell lies on the found surface's flank, where the
                # finest level's closure follows anything attached; only the free-standing ones are added
                near = near[~_touches(near, lv.sc_cells(), 2**depth)]
            if near.numel():
                cells = torch.cat([cells, near])
                n = 2**depth
                key = _unique((cells[:, 0] * n + cells[:, 1]) * n + cells[:, 2], n**3)
                cells = torch.stack([key // (n * n), (key // n) % n, key % n], 1)
            del near
        lv.cached = None
        coarser = [lv] + coarser[:2]
        fine = _Level(2 ** (depth + 1), num_fields, dev, track)
        fine.closure_cells = lv.closure_cells
        half_here = _half_level(ev)
        evaluated, again = ev.count, ev.count_fp32
        fine.refine(cells, coarser, ev, level, sign, bound, finest=2**d1)
        if half_here:
            ev.half_levels.append(depth + 1)
            ev.reevaluated = (ev.count_fp32 - again) / max(1, ev.count - evaluated)
        elif half is not None:
            ev.reevaluated = 1.0  # an fp32 level: the finer ones too (the fraction only grows)
        lv = fine
        del cells
        if stop is not None and depth + 1 < d1 and stop(lv, depth + 1):
            break
    del coarser
    ev.use_half = False
    return lv, bound


def _half_level(ev: _Evaluator) -> bool:
    """Evaluate the next level in half precision?  Sets and returns ``ev.use_half``.

    Every point within the margin of the level is evaluated twice, and that shell keeps its thickness while the
    cells halve: the fraction of a level's points in it about doubles from one level to the next.  So the next
    level runs in half precision while twice the coarser level's fraction (``ev.reevaluated``: its fp32
    re-evaluations, or on the dense level the share of the sign-change cells' corners within the margin) is at
    most :data:`HALF_REEVALUATED`; past that half precision costs about as much as fp32 (and its margin widens the
    SDF bound), so the finer levels run in fp32 once.
    """
    ev.use_half = (ev.half_dtype is not None and math.isfinite(ev.margin)
                   and 2.0 * ev.reevaluated <= HALF_REEVALUATED)
    return ev.use_half




def _stats(ev: _Evaluator, lv: _Level, bound: _Bound, d0: int, d1: int, dilation: int, bounds: float,
           sdf_bound: bool) -> dict:
    """The extraction's figures (``metadata["meshing"]`` of :func:`sdf_to_meshes`)."""
    dense = (2**d1 + 1) ** 3
    half = ev.half_dtype
    return {
        "points_evaluated": int(ev.count),
        "points_fp32": int(ev.count_fp32),
        "points_half": int(ev.count_half),
        "half_levels": list(ev.half_levels),
        "half_margin": float(ev.margin) if half is not None and math.isfinite(ev.margin) else 0.0,
        "dense_points": int(dense),
        "ratio": float(ev.count) / float(dense),
        "band_cells": int(torch.count_nonzero(lv.sc[: lv.size])),
        "closure_cells": int(lv.closure_cells),
        "sdf_bound": bool(sdf_bound),
        "slope": [float(x) for x in bound.slope.cpu()],
        "slope_exceeded": bool(bound.exceeded),
        "octree_depth": d0,
        "refine_depth": d1,
        "dilation": int(dilation),
        "voxel_size": 2.0 * bounds / 2**d1,
        "bounds": bounds,
        "precision": "fp32" if half is None else str(half).replace("torch.", ""),
    }


def _setup(name, field_fn, num_fields, octree_depth, refine_depth, inside, bounds, chunk_size, dilation, level,
           device, precision, callback):
    """The shared argument checks and set-up of :func:`sdf_to_meshes` and :func:`sdf_surface_points`.

    Returns (field evaluator, half dtype or None, inside sign +-1, level, coarse depth, final depth)."""
    num_fields = _check_args(name, field_fn, num_fields, octree_depth, refine_depth, inside, bounds, chunk_size,
                             dilation)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    half = _resolve_precision(precision, dev)
    progress = _Progress(callback)
    progress.add(num_fields)
    ev = _Evaluator(field_fn, num_fields, int(chunk_size), dev, float(bounds), progress, half)
    return ev, half, (1.0 if inside == "positive" else -1.0), float(level), int(octree_depth), int(refine_depth)


def _check_args(name, field_fn, num_fields, octree_depth, refine_depth, inside, bounds, chunk_size, dilation) -> int:
    """The argument checks of :func:`_setup` -> ``num_fields`` (int)."""
    if not callable(field_fn):
        raise TypeError(f"{name}: field_fn must be callable, got {type(field_fn).__name__}")
    if int(num_fields) != num_fields or num_fields < 1:
        raise ValueError(f"{name}: num_fields must be a positive integer, got {num_fields!r}")
    num_fields = int(num_fields)
    if not (1 <= int(octree_depth) <= 11):
        raise ValueError(f"{name}: octree_depth must be in [1, 11], got {octree_depth}")
    if not (int(octree_depth) <= int(refine_depth) <= 11):
        raise ValueError(
            f"{name}: refine_depth must be in [octree_depth, 11] = [{octree_depth}, 11], got {refine_depth}"
        )
    if inside not in ("negative", "positive"):
        raise ValueError(f"{name}: inside must be 'negative' (SDF) or 'positive' (occupancy), got {inside!r}")
    if not (bounds > 0 and math.isfinite(bounds)):
        raise ValueError(f"{name}: bounds must be a positive finite half side, got {bounds}")
    if chunk_size < 1:
        raise ValueError(f"{name}: chunk_size must be >= 1, got {chunk_size}")
    if dilation < 0:
        raise ValueError(f"{name}: dilation must be >= 0, got {dilation}")
    return num_fields


def _resolve_precision(precision: str, dev: torch.device):
    names = {"auto": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in names:
        raise ValueError(f"sdf_to_meshes: precision must be one of {sorted(names)}, got {precision!r}")
    return names[precision]  # "auto": fp32 on every device (half precision widens the band: module docstring)


def sdf_to_meshes(
    field_fn: FieldFn,
    num_fields: int = 1,
    *,
    bounds: float = 1.005,
    octree_depth: int = 6,
    refine_depth: int = 9,
    level: float = 0.0,
    inside: str = "negative",
    chunk_size: int = 2**18,
    device: Union[str, torch.device, None] = None,
    callback: Optional[ProgressFn] = None,
    backend: str = "auto",
    dilation: int = 1,
    precision: str = "auto",
    allow_empty: bool = False,
    sdf_bound: bool = True,
) -> list[trimesh.Trimesh]:
    """Extract the level set of ``num_fields`` scalar fields as triangle meshes (narrow band).

    Anchor mesh from a latent (release: third_party/TripoSG/triposg/inference_utils.py,
    ``flash_extract_geometry``): a dense grid of
    ``2**octree_depth`` cells per axis over ``[-bounds, bounds]^3``, then a
    narrow band around the surface refined level by level up to
    ``2**refine_depth`` cells per axis, marching cubes at ``level`` on the
    band's cells (see the module docstring for the band and its closure).
    ``octree_depth == refine_depth`` is the dense path (every cell meshed);
    the band gives the same mesh wherever it covers the surface.

    Args:
        field_fn: ``field_fn(points) -> values``; ``points`` is a (Q, 3) float32
            tensor on ``device`` (model units); ``values`` is (num_fields, Q)
            (``(Q,)`` accepted when ``num_fields == 1``), one row per field
            (frame / latent) -- all fields are evaluated at the same points.
            Called under ``torch.no_grad()`` with Q <= ``chunk_size`` (and
            under ``torch.autocast`` for half precision).
        num_fields: number of fields F returned per call (>= 1).
        bounds: half side of the sampled cube (default 1.005; release:
            actionmesh/external/triposg.py, ``TripoSGPipelinePlus.__call__``).
        octree_depth: depth of the dense coarse grid (``2**d`` cells per axis),
            1..11; default 6 (64^3 cells, as the release's 63^3 coarse level).
        refine_depth: final depth (>= octree_depth, <= 11); default 9 (512^3).
        level: iso value of the surface (0 for an SDF or logits).
        inside: ``"negative"`` when values below ``level`` are inside (true SDF,
            TripoSG decoder output after its negation) or ``"positive"`` when
            values above ``level`` are inside (occupancy / logits).  Decides the
            winding: faces always wind counter-clockwise seen from outside.
        chunk_size: max points per ``field_fn`` call.
        device: device of the query points and of every tensor of the
            extraction (default CPU); use the field's (model's) device.
        callback: optional ``callback(done, total)`` progress hook, called after
            each chunk of field evaluations and after each marching cubes;
            ``total`` grows as the band is discovered (``done`` never decreases
            and ends at ``total``).
        backend: ``"auto"`` (warp-lang on CUDA when installed, scikit-image
            otherwise; the choice is logged once per device), ``"skimage"`` or
            ``"warp"`` (also runs on the CPU).
        dilation: safety band, in cells, around the sign-change cells of each
            level before refining (>= 0).
        precision: ``"auto"`` (= ``"fp32"``, on every device; see the module
            docstring for why half precision is not the CUDA default),
            ``"fp32"``, ``"bf16"`` or ``"fp16"``: dtype of the field evaluation
            under autocast, on the levels whose cells are large against the
            half-precision error (fp32 on the others); points whose half value
            lies within 4x the measured half-vs-fp32 error of ``level`` are
            re-evaluated in fp32.
        allow_empty: return an empty ``Trimesh`` for a field without surface
            instead of raising.
        sdf_bound: also refine the cells without a sign change whose values
            say, read as a distance bound, that the surface may pass inside
            (thin and free-standing parts the coarser grid straddles; see the
            module docstring).  False: sign changes, dilation and closure only.

    Returns:
        List of F ``trimesh.Trimesh`` (vertices (V, 3) float64 in model units,
        faces (K, 3) int64, outward winding, vertices welded, not otherwise
        processed; apply :func:`actionmesh_core.geometry.cleanup.clean_mesh`
        next).  Each mesh's ``metadata["meshing"]`` holds
        ``points_evaluated`` (grid points evaluated, each once, shared by the
        F fields), ``points_fp32`` / ``points_half`` (field evaluations in
        fp32 / half precision, the half-precision calibration pass and the
        fp32 re-evaluations included), ``half_levels`` (depths evaluated in
        half precision), ``half_margin`` (field units; 0 in fp32), ``dense_points``
        (``(2**refine_depth + 1)**3``), their ``ratio``, ``band_cells`` (final
        sign-change cells), ``closure_cells`` (cells the closure added, all
        levels), ``slope`` (the SDF bound's slope per field, field units per
        model unit, safety factor included) and ``slope_exceeded`` (a finer
        level found the field steeper than that; a warning was logged), the
        depths, ``voxel_size``, ``precision`` and ``backend``.

    Raises:
        TypeError: ``field_fn`` not callable or returns a non-tensor.
        ValueError: bad depths / ``inside`` / ``backend`` / ``precision`` /
            ``num_fields`` / ``chunk_size`` / ``dilation``; ``field_fn``
            returns the wrong shape or NaN/inf; a field has no surface at
            ``level`` (unless ``allow_empty``).
        RuntimeError: ``backend="warp"`` requested but warp-lang is missing.
    """
    ev, half, sign, level, d0, d1 = _setup("sdf_to_meshes", field_fn, num_fields, octree_depth, refine_depth, inside,
                                           bounds, chunk_size, dilation, level, device, precision, callback)
    num_fields, dev, progress = ev.num_fields, ev.device, ev.progress
    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"sdf_to_meshes: backend must be 'auto', 'skimage' or 'warp', got {backend!r}")
    if backend == "auto":
        if dev.type == "cuda" and _warp_usable():
            backend = "warp"
        else:
            backend = "skimage"
            if dev.type == "cuda":
                _log_once(("no-warp", dev.type), logging.WARNING,
                          "sdf_to_meshes: warp-lang (>= 1.19) is not installed: marching cubes runs on the CPU with "
                          "scikit-image (pip install warp-lang for GPU marching cubes)")
        _log_once(("backend", dev.type, backend), logging.INFO,
                  f"sdf_to_meshes: marching cubes with {backend} for fields on {dev.type}")
    elif backend == "warp" and not _warp_usable():
        raise RuntimeError("sdf_to_meshes: backend='warp' needs warp-lang >= 1.19 (pip install warp-lang); "
                           "or use backend='skimage'")

    with _bookkeeping_threads(ev):
        lv, bound = _band(ev, d0, d1, level, sign, dilation, half, sdf_bound)

        # ---- marching cubes on the final band, one mesh per field
        h = 2.0 * float(bounds) / 2**d1
        meshes: list[trimesh.Trimesh] = []
        empty_fields = []
        for f in range(num_fields):
            verts, faces = (_mc_warp if backend == "warp" else _mc_skimage)(lv, f, level, sign)
            if len(faces) == 0:
                empty_fields.append(f)
            meshes.append(trimesh.Trimesh(verts * h - float(bounds), faces, process=False))
            progress.step()
        if empty_fields and not allow_empty:
            raise ValueError(
                f"sdf_to_meshes: field(s) {empty_fields} have no surface at level {level} inside "
                f"[-{bounds}, {bounds}]^3 (all values on one side); check the latent, the level and the "
                "`inside` convention, or pass allow_empty=True"
            )
        stats = _stats(ev, lv, bound, d0, d1, dilation, float(bounds), sdf_bound)
        stats["backend"] = backend
        for m in meshes:
            m.metadata["meshing"] = dict(stats)
        return meshes


def sdf_to_mesh(field_fn: FieldFn, **kwargs) -> trimesh.Trimesh:
    """One-field convenience wrapper of :func:`sdf_to_meshes`.

    ``field_fn(points (Q, 3)) -> (Q,)`` or ``(1, Q)``; all keyword options of
    :func:`sdf_to_meshes` apply (``num_fields`` is fixed to 1).

    Returns:
        One ``trimesh.Trimesh`` (see :func:`sdf_to_meshes`).

    Raises:
        The errors of :func:`sdf_to_meshes`.
    """
    if "num_fields" in kwargs and kwargs["num_fields"] != 1:
        raise ValueError("sdf_to_mesh meshes one field; use sdf_to_meshes for num_fields > 1")
    kwargs.pop("num_fields", None)
    return sdf_to_meshes(field_fn, 1, **kwargs)[0]


def _crossings(lv: _Level, field: int, level: float, sign: float) -> torch.Tensor:
    """Points where the finest grid's edges of field ``field``'s sign-change cells cross ``level`` -> (P, 3)
    float32 in grid-index units, one per edge (an edge shared by bricks counted once), in grid-edge order."""
    slots, cells, v = lv.field_band(field, level, sign)
    if slots.numel() == 0:
        return torch.zeros(0, 3, dtype=torch.float32, device=lv.device)
    ins = _inside(v, level, sign)
    base = lv.bricks[slots] << _SHIFT
    n1 = lv.cells + 1
    keys, points = [], []
    for axis in range(3):
        dim = axis + 1
        cross = ins.narrow(dim, 0, _B) ^ ins.narrow(dim, 1, _B)  # edges along ``axis``: 8 along it, 9 across
        own = torch.zeros_like(cross)  # the edges of the band cells (each cell has 4 along each axis)
        others = [d for d in (1, 2, 3) if d != dim]
        for o1 in (0, 1):
            for o2 in (0, 1):
                own.narrow(others[0], o1, _B).narrow(others[1], o2, _B).logical_or_(cells)
        s, i, j, k = torch.nonzero(cross & own, as_tuple=True)
        step = [0, 0, 0]
        step[axis] = 1
        v0 = v[s, i, j, k]
        v1 = v[s, i + step[0], j + step[1], k + step[2]]
        g = base[s] + torch.stack([i, j, k], 1)
        p = g.to(torch.float32)
        p[:, axis] += (level - v0) / (v1 - v0)  # linear interpolation along the edge, in [0, 1]
        keys.append(((g[:, 0] * n1 + g[:, 1]) * n1 + g[:, 2]) * 3 + axis)
        points.append(p)
    keys, points = torch.cat(keys), torch.cat(points)
    uk, inverse = torch.unique(keys, return_inverse=True)  # sorted: the same order on every device
    out = torch.empty(uk.numel(), 3, dtype=points.dtype, device=points.device)
    out[inverse] = points  # duplicates (an edge on a brick face) carry identical values
    return out


def sdf_surface_points(
    field_fn: FieldFn,
    num_fields: int = 1,
    *,
    bounds: float = 1.005,
    octree_depth: int = 5,
    refine_depth: int = 7,
    level: float = 0.0,
    inside: str = "negative",
    chunk_size: int = 2**18,
    device: Union[str, torch.device, None] = None,
    callback: Optional[ProgressFn] = None,
    dilation: int = 1,
    precision: str = "auto",
    sdf_bound: bool = True,
    min_points: Optional[int] = None,
    stats: Optional[dict] = None,
) -> list[torch.Tensor]:
    """Points on the level set of ``num_fields`` fields: the finest grid's edge crossings, no mesh.

    The same narrow band as :func:`sdf_to_meshes` (dense ``2**octree_depth``
    grid, band refined up to ``2**refine_depth`` cells per axis, SDF bound,
    dilation, closure; the fields batched in every call), then, instead of
    marching cubes, one point per grid edge of the band's sign-change cells
    whose ends lie across ``level``, placed by linear interpolation of the two
    values: exactly the vertices marching cubes would place (tested), without
    faces, welding or clean-up.  Used for the attention chain's candidate
    surface points (attention-chains §4.1, "candidate surface points S_f").

    A surface of area A gives about ``1.5 * A / voxel**2`` points (an edge
    crossing per grid edge the surface cuts; 1.5 = mean of ``|n_x| + |n_y| +
    |n_z|``), spaced at most one voxel apart along the surface.

    Args:
        field_fn, num_fields, bounds, level, inside, chunk_size, device,
        callback, dilation, precision, sdf_bound: as :func:`sdf_to_meshes`.
        octree_depth: dense coarse depth (default 5: 32^3 cells).
        refine_depth: depth of the points' grid (default 7: 128^3 cells,
            voxel 0.0157 model units).
        min_points: stop refining at the first level (from ``octree_depth +
            1``) where every field already has this many crossings (a large
            surface: a coarser grid gives the points wanted; the level used
            is ``stats["depth"]``).  None: always ``refine_depth``.
        stats: optional dict, filled with the extraction's figures (as
            ``metadata["meshing"]`` of :func:`sdf_to_meshes`, plus ``points``:
            the count per field).

    Returns:
        List of F float32 tensors (P_f, 3) in model units on ``device``,
        sorted by grid edge (the same order on every device); (0, 3) for a
        field without surface.

    Raises:
        TypeError, ValueError: as :func:`sdf_to_meshes` (bad arguments, field
            shape, NaN/inf values).
    """
    ev, half, sign, level, d0, d1 = _setup("sdf_surface_points", field_fn, num_fields, octree_depth, refine_depth,
                                           inside, bounds, chunk_size, dilation, level, device, precision, callback)
    num_fields, progress = ev.num_fields, ev.progress
    found: dict = {}

    def enough(lv: _Level, depth: int) -> bool:  # every field has min_points crossings at this level
        found["points"] = [_crossings(lv, f, level, sign) for f in range(num_fields)]
        return all(len(p) >= min_points for p in found["points"])

    with _bookkeeping_threads(ev):
        lv, bound = _band(ev, d0, d1, level, sign, dilation, half, sdf_bound,
                          stop=enough if min_points is not None else None)
        depth = int(round(math.log2(lv.cells)))
        grid = found.pop("points") if depth < d1 else [_crossings(lv, f, level, sign) for f in range(num_fields)]
        h = 2.0 * float(bounds) / 2**depth
        out = []
        for f in range(num_fields):
            out.append(grid[f].mul_(h).sub_(float(bounds)))
            progress.step()
        if stats is not None:
            stats.update(_stats(ev, lv, bound, d0, depth, dilation, float(bounds), sdf_bound))
            stats["points"] = [int(p.shape[0]) for p in out]
            stats["depth"] = depth
        return out
